"""A run's artifacts: the small files that check or continue a study, copied into a directory of
their own (`diversens report RUN --artifacts DEST`) to commit, share or archive.

The copy records the run it came from and the files it holds in DEST/artifacts.json: a later
copy of the same run updates DEST (and removes the files the run no longer has); any other
directory that is not empty is refused, so nothing of the user's is overwritten.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
from pathlib import Path

from diversens.errors import UserError
from diversens.io import atomic_path
from diversens.weights import ADAPTER_WEIGHTS, PACKED

# Every file under the run is an artifact but those under these directories, wherever they sit:
# each is large, or serves only the run that made it. A tuned model's LoRA adapter/ (a few MB,
# its weights xz-compressed) is kept beside its skipped merged model/: with the base model it
# is the tuned model, and any model option takes it as it is.
SKIPPED_DIRS = {
    "model": "a tuned model's merged weights (0.5 GB for 135M parameters)",
    "checkpoints": "Ray Train checkpoints (GBs): they resume a training, nothing else",
    "parts": "the chunks that resume a stage; scored/ and outputs.parquet hold all their rows",
    "logs": "console, worker and TensorBoard logs: how the run went, not what it found",
}
# Names starting with "." are skipped too: temporary files and dirs of unfinished writes.
MARKER = "artifacts.json"


def artifact_files(run: Path) -> list[Path]:
    """The run's artifact files, relative to it, in a stable order."""
    found = []
    for root, dirs, names in os.walk(run):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        rel = Path(root).relative_to(run)
        skip = {MARKER} if rel == Path(".") else set()  # a copy's record, not the run's
        found += [rel / n for n in sorted(names) if not n.startswith(".") and n not in skip]
    return found


def copy_artifacts(run: Path, dest: Path) -> tuple[int, int]:
    """Copy the run's artifacts into dest; returns the files and bytes copied."""
    earlier = _check_dest(run, dest)
    record = {"run": str(run.resolve()), "files": earlier}
    _write_record(dest, record)  # first: an interrupted copy is still this run's, to update
    files, size = [], 0
    for rel in artifact_files(run):
        packed = rel.name in ADAPTER_WEIGHTS
        target = rel.with_name(rel.name + PACKED) if packed else rel
        with atomic_path(dest / target) as tmp:
            if packed:  # the model option reads it as it is (models.unpacked_adapter)
                with open(run / rel, "rb") as src, lzma.open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copyfile(run / rel, tmp)
        files.append(target)
        size += (dest / target).stat().st_size
    # Only files DEST holds and the earlier copy made: never one of the user's, never outside.
    for gone in {str(f) for f in artifact_files(dest)} & set(earlier) - {str(f) for f in files}:
        (dest / gone).unlink()
    _write_record(dest, {**record, "files": [str(f) for f in files]})
    return len(files), size


def _check_dest(run: Path, dest: Path) -> list[str]:
    """DEST is new, empty, or an earlier copy of this run (then the files it holds)."""
    source, target = run.resolve(), dest.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise UserError(f"artifacts {dest}: is the run {run}, inside it or above it; "
                        "name a directory elsewhere")  # fmt: skip
    if target.exists() and not target.is_dir():
        raise UserError(f"artifacts {dest}: exists and is not a directory")
    if not target.exists() or not any(target.iterdir()):
        return []
    record = _read_record(dest)
    if record.get("run") != str(source):
        raise UserError(f"artifacts {dest}: exists and is not empty, nor an earlier artifact "
                        f"copy of {run}; name a new directory")  # fmt: skip
    return [str(f) for f in record.get("files", [])]


def _read_record(dest: Path) -> dict:
    try:
        record = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or not ours: not a copy
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(dest: Path, record: dict) -> None:
    with atomic_path(dest / MARKER) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
