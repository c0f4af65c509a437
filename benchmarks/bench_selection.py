"""The second pass of generate-pairs at scale: driver peak memory and wall time over synthetic
scored parts of 10k, 100k and 1M prompts x 12 candidates.

    python benchmarks/bench_selection.py                         # all three sizes
    python benchmarks/bench_selection.py --sizes 10000 100000    # some
    python benchmarks/bench_selection.py --pass DIR --prompts N  # one measured pass (internal)

Per size, parts are written first as the first pass writes them (`PartStore`, one Parquet file
per chunk of `prompts_per_chunk` prompts, the job's schema and chunk keys, short synthetic
texts and random scores), a part at a time, so the generator never holds the run. Then a fresh
process starts a local Ray (2 CPUs) and runs the job's own second pass on them
(`generate_pairs.select_pairs`: scored/ and quarantine.jsonl, run-level statistics, selection,
pairs files, report), sampling its own RSS every 20 ms in a thread. Reported per size: the
driver's RSS before the pass (imports and Ray started) and its peak during it, the pass's wall
time and its phases. Target: peak RSS at 1M <= 1.5x the peak at 10k; wall time near linear.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from bench_engines import machine  # noqa: E402

from diversens import config, schema  # noqa: E402
from diversens.jobs.chunks import CHUNK, PartStore, plan_chunks  # noqa: E402
from diversens.jobs.config import GeneratePairsConfig  # noqa: E402

TASKS = np.array(["dat", "pgt", "aut", "cwt"])
WORDS = np.array("sea clock rain dog lamp river stone cloud bread violin kite snow".split())
RESULTS = Path(__file__).parent / "results"
# The pass's phases, timed by wrapping these functions: (module, function) and the table's label.
PHASES = (("generate_pairs", "split_parts"), ("dataflow", "in_one_task"),
          ("dataflow", "select_parts"), ("generate_pairs", "write_selection_report"))  # fmt: skip
LABELS = ("scored/", "stats", "selection", "report")


def bench_config(strategies: list[str]) -> GeneratePairsConfig:
    """The paper's chunk size, 12 candidates; selection of `strategies` (the first is main)."""
    return config.from_dict(GeneratePairsConfig, {
        "sampling": {"num_samples_per_prompt": 12, "prompts_per_chunk": 64},
        "selection": {"strategy": strategies[0], "num_pairs": 3000},
        "compare_strategies": strategies,
    })  # fmt: skip


def part(start: int, n: int, cfg: GeneratePairsConfig, key: str) -> pa.Table:
    """Prompts start..start+n-1 as one scored part; every 1000th prompt quarantined."""
    rng, k = np.random.default_rng(start), cfg.sampling.num_samples_per_prompt
    ids = np.arange(start, start + n)
    held = ids % 1000 == 999

    def lists(flat: np.ndarray, tp: pa.DataType) -> pa.Array:
        sizes = np.where(held, 0, k)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        keep = np.repeat(~held, k)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.reshape(-1)[keep], tp))

    valid = rng.random((n, k)) > 0.1
    words = np.clip(rng.integers(10, 300, (n, 1)) + rng.integers(-8, 9, (n, k)), 1, None)
    text = rng.choice(WORDS, (n * k, 6))
    responses = np.array([" ".join(t) for t in text], dtype=object)
    turns = np.tile([1] * (k // 2) + [2] * (k - k // 2), (n, 1))
    turn_one = pa.StructArray.from_arrays(
        [pa.array(["user"] * n), pa.array([f"Prompt {i}." for i in ids])], names=["role", "content"]
    )
    messages = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), turn_one)
    columns = {
        "prompt_id": pa.array([f"p{i}" for i in ids]),
        "task": pa.array(TASKS[ids % 4]),
        "messages": messages,
        "responses": lists(responses, pa.string()),
        "turn": lists(turns, pa.int64()),
        "parent": lists(np.where(turns == 1, -1, np.arange(k) % (k // 2)), pa.int64()),
        "finish_reason": lists(np.where(valid, "stop", "length").astype(object), pa.string()),
        "n_tokens": lists(words * 4 // 3, pa.int64()),
        "truncated": lists(~valid, pa.bool_()),
        "engine": pa.array(["vllm"] * n),
        "model": pa.array(["synthetic"] * n),
        "sampling": pa.array(["{}"] * n),
        "config_hash": pa.array(["0"] * n),
        "quarantine": pa.array(np.where(held, "too_long: synthetic", None).tolist(), pa.string()),
        **{m: lists(rng.random((n, k)), pa.float64()) for m in cfg.measures},
        "n_words": lists(words.astype(float), pa.float64()),
        "quality": lists(-3 * rng.random((n, k)), pa.float64()),
        "reject_reason": lists(np.where(valid, None, "truncated"), pa.string()),
        "valid": lists(valid, pa.bool_()),
        CHUNK: pa.array([key] * n),
    }
    return pa.table(columns)


def write_parts(root: Path, prompts: int, cfg: GeneratePairsConfig) -> list[str]:
    """The parts of a run of `prompts` prompts, a chunk at a time; returns their keys."""
    size, keys = cfg.sampling.prompts_per_chunk, []
    store = PartStore(root / "parts")
    for start in range(0, prompts, size):
        ids = [f"p{i}" for i in range(start, min(start + size, prompts))]
        key = plan_chunks(pa.table({"prompt_id": ids}).to_pandas(), size, "bench")[CHUNK][0]
        table = part(start, len(ids), cfg, key)
        if start == 0:
            schema.check(table.schema, "synthetic part", schema.PROMPT, schema.CANDIDATE,
                         schema.measures(cfg.measures), schema.QUALITY,
                         schema.VALIDITY)  # fmt: skip
        store.write(key, table)
        keys.append(key)
    return keys


def measured_pass(root: Path, prompts: int, strategies: list[str]) -> dict:
    """The job's second pass on the parts under root, in this process, with RSS sampled."""
    import psutil
    import ray

    from diversens.jobs import dataflow, generate_pairs

    cfg = bench_config(strategies)
    keys = json.loads((root / "keys.json").read_text())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    phases: dict[str, float] = {}
    me, stop, now = psutil.Process(), threading.Event(), [""]  # now: the phase running
    peaks = {label: 0 for label in ("", *LABELS)}

    def timed(module, name: str, label: str) -> None:
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            t0, now[0] = time.perf_counter(), label
            try:
                return fn(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - t0
                now[0] = ""

        setattr(module, name, wrapper)

    for (module, name), label in zip(PHASES, LABELS, strict=True):
        timed({"generate_pairs": generate_pairs, "dataflow": dataflow}[module], name, label)

    worker_peak = [0]  # Ray's workers are the driver's descendants (raylet's children)

    def sample() -> None:
        for tick in itertools.count():
            if stop.wait(0.02):
                return
            peaks[now[0]] = max(peaks[now[0]], me.memory_info().rss)
            if tick % 10 == 0:
                worker_peak[0] = max(worker_peak[0], *worker_rss(me), 0)

    before = me.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    out = generate_pairs.select_pairs(PartStore(root / "parts"), keys, cfg, root / "out",
                                      {"config_hash": "bench"}, prompts)  # fmt: skip
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    ray.shutdown()
    peak_mib = {label or "between": rss / 2**20 for label, rss in peaks.items()}
    return {"prompts": prompts, "parts": len(keys), "seconds": seconds, "phases": phases,
            "rss_before_mib": before / 2**20, "rss_peak_mib": max(peak_mib.values()),
            "rss_peak_by_phase_mib": peak_mib, "worker_rss_peak_mib": worker_peak[0] / 2**20,
            "pairs": out["pairs"], "quarantined": out["prompts_quarantined"],
            "candidates": out["candidates"]}  # fmt: skip


def worker_rss(me) -> list[int]:
    """RSS of each Ray worker process under `me` (named ray::<task>)."""
    import psutil

    found = []
    for p in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name().startswith("ray::"):
                found.append(p.memory_info().rss)
    return found


def one_size(prompts: int, strategies: list[str], work: Path) -> dict:
    root = work / f"run-{prompts}"
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    keys = write_parts(root, prompts, bench_config(strategies))
    (root / "keys.json").write_text(json.dumps(keys))
    generated = time.perf_counter() - t0
    argv = [sys.executable, __file__, "--pass", str(root), "--prompts", str(prompts),
            "--strategies", *strategies]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["disk_mib"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    result["generate_s"] = generated
    shutil.rmtree(root)
    return result


def linear(run: dict, ref: dict) -> float:
    """Seconds per prompt of `run` over those of `ref`, the report's constant time left out."""
    def per_prompt(r: dict) -> float:
        return (r["seconds"] - r["phases"].get("report", 0.0)) / r["prompts"]

    return per_prompt(run) / per_prompt(ref)


def markdown(res: dict) -> str:
    m, runs = res["machine"], res["runs"]
    small, large = runs[0], runs[-1]
    lines = [
        "# Selection pass at scale: driver memory and wall time", "",
        f"`{res['command']}`", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or 'none'}; "
        f"local Ray with 2 CPUs. Synthetic scored parts (12 candidates a prompt, "
        f"{res['chunk']} prompts a part, every 1000th prompt quarantined), strategies "
        f"{', '.join(res['strategies'])}, num_pairs 3000, through `generate_pairs.select_pairs`. "
        "RSS: the driver process (psutil, every 20 ms); before = imports done and Ray started. "
        "Phases: scored/ = scored/ and quarantine.jsonl, a part at a time on the driver; stats = "
        "the run-level statistics' task; selection = the selection tasks into the driver's "
        "top-N; report = the selection report on the driver.",
        "",
        "| prompts | parts | disk MiB | RSS before MiB | RSS peak MiB | pass s | µs / prompt | "
        + " | ".join(f"{x} s" for x in LABELS) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(LABELS),
    ]  # fmt: skip
    for r in runs:
        p = [r["phases"].get(label, float("nan")) for label in LABELS]
        lines.append(
            f"| {r['prompts']:,} | {r['parts']:,} | {r['disk_mib']:,.0f} | "
            f"{r['rss_before_mib']:.0f} | {r['rss_peak_mib']:.0f} | {r['seconds']:.1f} | "
            f"{1e6 * r['seconds'] / r['prompts']:.0f} | " + " | ".join(f"{x:.1f}" for x in p) + " |"
        )
    lines += ["", "Driver peak RSS (MiB) while each phase ran (memory a phase freed may stay "
              "with the process), and the largest Ray worker's RSS (sampled every 200 ms):", "",
              "| prompts | " + " | ".join(LABELS) + " | largest worker |",
              "|---|" + "---|" * (len(LABELS) + 1)]  # fmt: skip
    for r in runs:
        by = r["rss_peak_by_phase_mib"]
        lines.append(f"| {r['prompts']:,} | " + " | ".join(f"{by[x]:.0f}" for x in LABELS)
                     + f" | {r['worker_rss_peak_mib']:.0f} |")  # fmt: skip
    ratio = large["rss_peak_mib"] / small["rss_peak_mib"]
    lines += ["", f"Peak RSS {large['prompts']:,} / {small['prompts']:,} prompts: **{ratio:.2f}** "
              "(target <= 1.5). Wall time, the report left out (its length correlations take "
              "at most `CORRELATION_PROMPTS` prompts, so it costs the same at every size), "
              "per prompt relative to the largest run (1 = linear from there): "
              + ", ".join(f"{r['prompts']:,}: **{linear(r, large):.2f}**" for r in runs)
              + ".", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--strategies", nargs="+", default=["diverse-ns"],
                        help="selected strategies, the first is the main one")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the parts are written (deleted after each size)")  # fmt: skip
    parser.add_argument("--pass", dest="one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prompts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "selection.md")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measured_pass(args.one, args.prompts, args.strategies)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-selection-", dir=args.work))
    runs = []
    try:
        for prompts in args.sizes:
            runs.append(one_size(prompts, args.strategies, work))
            r = runs[-1]
            print(f"{prompts:>9,} prompts: RSS before {r['rss_before_mib']:.0f} MiB, peak "
                  f"{r['rss_peak_mib']:.0f} MiB (largest worker {r['worker_rss_peak_mib']:.0f}); "
                  f"pass {r['seconds']:.1f} s "
                  f"{ {k: round(v, 1) for k, v in r['phases'].items()} }", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = {"command": "python benchmarks/bench_selection.py " + " ".join(sys.argv[1:]),
           "machine": machine(), "strategies": args.strategies, "runs": runs,
           "chunk": bench_config(args.strategies).sampling.prompts_per_chunk}  # fmt: skip
    args.out.write_text(markdown(res))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(markdown(res))


if __name__ == "__main__":
    main()
