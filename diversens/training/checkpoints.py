"""Whole checkpoints: the one a DPO run resumes from.

Ray Train records a checkpoint in its run dir's snapshot (checkpoint_manager_snapshot.json)
after every rank has uploaded it, and only then: a run that fails in between (a disk that
filled, a store gone) leaves a whole checkpoint that Ray Train's own resume does not know, and
its rerun would start again at step 0. So each rank lists its files with their sizes beside
them (`write_inventory`), and a run resumes from the newest checkpoint whose every rank's list
is there with every listed file at its size (`latest_whole`), recorded by Ray Train or not.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from diversens import storage

INVENTORY = "diversens_files_rank{rank}.json"
INVENTORY_NAME = re.compile(r"diversens_files_rank\d+\.json")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    location: str  # the checkpoint dir: a local path or a URI, as the run dir was given
    step: int


def write_inventory(checkpoint_dir: Path, rank: int, world_size: int, step: int) -> None:
    """This rank's files under `checkpoint_dir` (paths relative to it) and their sizes, the
    rank, the number of ranks and the optimiser step, into the dir before it is uploaded."""
    files = {p.relative_to(checkpoint_dir).as_posix(): p.stat().st_size
             for p in sorted(checkpoint_dir.rglob("*")) if p.is_file()}  # fmt: skip
    body = {"rank": rank, "world_size": world_size, "step": step, "files": files}
    (checkpoint_dir / INVENTORY.format(rank=rank)).write_text(json.dumps(body))


def latest_whole(run_dir: str) -> Found | None:
    """The checkpoint of the highest step under `run_dir` (Ray Train's run dir: one subdir per
    checkpoint) that is whole; those with lists that are not are named in the log."""
    fs, root = storage.filesystem(run_dir)
    root = root.rstrip("/")
    with storage.faults(run_dir, doing="read"):
        listed = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    sizes = {f.path: f.size for f in listed if f.is_file}
    lists = defaultdict(list)  # checkpoint dir -> its ranks' lists
    for path in sizes:
        folder, _, name = path.rpartition("/")
        if INVENTORY_NAME.fullmatch(name) and folder.rpartition("/")[0] == root:
            lists[folder].append(path)
    best = None
    for folder in sorted(lists):  # by name, Ray Train's time stamp: the later one of a step wins
        with storage.faults(run_dir, doing="read"):
            ranks = [_read_json(fs, path) for path in lists[folder]]
        step = _whole_step(folder, ranks, sizes)
        if step is None:
            log.warning("checkpoint %s is not whole (a rank's files missing or cut short); "
                        "not resumed from", storage.join(run_dir, Path(folder).name))  # fmt: skip
        elif best is None or step >= best.step:
            best = Found(storage.join(run_dir, Path(folder).name), step)
    return best


def _read_json(fs: pafs.FileSystem, path: str) -> object:
    with fs.open_input_stream(path) as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError:  # cut short: the checkpoint is not whole
        return None


def _whole_step(folder: str, ranks: list, sizes: dict[str, int]) -> int | None:
    """The step of the checkpoint at `folder` if its ranks' lists (`ranks`) agree, cover every
    rank and every listed file is in `sizes` at its size; else None."""
    try:
        world, steps = {r["world_size"] for r in ranks}, {r["step"] for r in ranks}
        if len(world) != 1 or len(steps) != 1:
            return None
        if sorted(r["rank"] for r in ranks) != list(range(world.pop())):
            return None
        files = [(f"{folder}/{name}", size) for r in ranks for name, size in r["files"].items()]
    except (TypeError, KeyError, AttributeError):  # a list that is not one of ours
        return None
    return steps.pop() if all(sizes.get(path) == size for path, size in files) else None


def resume_checkpoint(run_dir: str):
    """The checkpoint this Ray Train worker resumes from: the newest whole one at `run_dir`
    (rank 0 looks, every rank takes its answer), else Ray Train's own (from before the lists
    were written), else None."""
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    found = latest_whole(run_dir) if ray.train.get_context().get_world_rank() == 0 else None
    found = broadcast_from_rank_zero(found)
    return ray.train.Checkpoint(found.location) if found else ray.train.get_checkpoint()
