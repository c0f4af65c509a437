"""The demo's pairs stage, profiled: where its cores go.

Runs the README main command's generate-pairs (`configs/tiny.yaml`'s `pairs` section, the demo's
48 training prompts: 12 per task) as the pipeline does, on a local Ray with `--cpus` CPUs, with
the sampling stage wrapped to record, per chunk, its start and end and the engine loop's
counters (diversens.sampling.engine_loop.LoopStats: time inside `step`, time with nothing to
run, steps, sequences per step). Then, in this process with one thread each (what a scorer actor
with `num_cpus_per_actor: 0` gets), the scorers' own time on the same candidates: the measures
(embedder included), quality and validity. Last, in a fresh process with the engine's threads,
plain vLLM on the same requests (all first turns in one `LLM.chat`, then all second turns:
`bench_engines.py`'s `plain` path), the limit the stage is compared with.

Where the time goes (one row each, seconds and share of the job's wall time):
- start-up: job start to the engine built (Ray, actor, model load);
- sampling: first chunk in to last chunk out, split into the engine stepping and the engine with
  nothing to run; stepping is compared with the tokens at plain vLLM's rate (the rest of it is
  the engine slowed by what shares its cores: scorers, Ray, the driver);
- tail: last chunk out to the job's end (the last chunks' scoring, selection, writes).

    python benchmarks/bench_pairs_stage.py --out benchmarks/results/pairs_stage.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_engines import machine  # noqa: E402

from diversens.config import load
from diversens.jobs.config import GeneratePairsConfig
from diversens.prompts import training_prompts
from diversens.sampling import SampleStage

CONFIG = "configs/tiny.yaml"
PROFILE = "engine_profile"


class ProfiledStage(SampleStage):
    """SampleStage that adds, per row, its chunk's timing and the engine loop's counters."""

    def __init__(self, cfg):
        start = time.time()
        super().__init__(cfg)
        self.built = (start, time.time())

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        start = time.time()
        out = super().process(batch)
        record = {"pid": os.getpid(), "built": self.built, "start": start, "end": time.time(),
                  "loop": dataclasses.asdict(self.engine.loop.stats)}  # fmt: skip
        return out.assign(**{PROFILE: json.dumps(record)})


def demo(num_prompts: int, chunks: int | None) -> tuple[GeneratePairsConfig, pd.DataFrame]:
    cfg = load(GeneratePairsConfig, CONFIG, section="pairs")
    if chunks is not None:  # an engine actor's chunks at once, instead of the derived default
        sampling = dataclasses.replace(cfg.sampling, chunks_in_flight=chunks)
        cfg = dataclasses.replace(cfg, sampling=sampling)
    prompts = training_prompts(num_per_task=12, seed=0)
    share = num_prompts // prompts.task.nunique()
    return cfg, prompts.groupby("task", sort=False).head(share).reset_index(drop=True)


def run_job(cfg: GeneratePairsConfig, prompts: pd.DataFrame, cpus: int, out: Path) -> dict:
    """The generate-pairs job on a fresh local Ray, timed; the scored rows' profiles."""
    import pyarrow.parquet as pq
    import ray

    from diversens.jobs import generate_pairs

    start = time.time()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        summary = generate_pairs.run(prompts, cfg, out, stage_cls=ProfiledStage)
    finally:
        end = time.time()
        ray.shutdown()
    scored = pq.read_table(out / "scored").to_pandas()
    chunks = [json.loads(p) for p in scored[PROFILE].unique()]
    return {"start": start, "end": end, "chunks": chunks, "scored": scored,
            "pairs": summary["pairs"]}  # fmt: skip


def scorer_seconds(cfg: GeneratePairsConfig, scored: pd.DataFrame) -> dict[str, float]:
    """Each scorer's time on the job's candidates, one thread, chunk by chunk as in the job."""
    import torch

    from diversens.scoring.measure import MeasureStage
    from diversens.scoring.quality import QualityStage
    from diversens.scoring.validity import ValidityStage

    torch.set_num_threads(1)
    rows = scored.drop(columns=[PROFILE])  # validity reads the measures and quality too
    size = cfg.sampling.prompts_per_chunk
    stages = {
        "measures (embedder included)": MeasureStage(cfg.scoring.measure, names=cfg.measures),
        "quality": QualityStage(cfg.scoring.quality),
        "validity": ValidityStage(cfg.scoring.quality),
    }
    seconds = {}
    for name, stage in stages.items():
        began = time.perf_counter()
        for first in range(0, len(rows), size):  # the scored rows are in chunk order
            rows_out = stage(rows.iloc[first : first + size].reset_index(drop=True))
        seconds[name] = time.perf_counter() - began
        del rows_out
    return seconds


def plain_rate(num_prompts: int, threads: int, given: Path | None) -> dict:
    """Plain vLLM on the demo's requests in a fresh process (bench_engines.py's `plain`), or
    read from a bench_engines.py results JSON (`given`: a run of the same session)."""
    if given is not None:
        return json.loads(given.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, str(Path(__file__).with_name("bench_engines.py")),
                "--requests", "two-turn", "--paths", "plain", "--rounds", "1",
                "--num-prompts", str(num_prompts), "--threads", str(threads),
                "--out", f"{tmp}/engines.json"]  # fmt: skip
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(f"{tmp}/engines.json").read_text())


def breakdown(job: dict, tokens: int, plain_tok_s: float, scorers: dict) -> list[tuple]:
    chunks = job["chunks"]
    built = max(c["built"][1] for c in chunks)
    first_in, last_out = min(c["start"] for c in chunks), max(c["end"] for c in chunks)
    loop = max((c["loop"] for c in chunks), key=lambda s: s["steps"])  # the last counters
    wall = job["end"] - job["start"]
    # Idle before the first chunk arrived is start-up, not sampling.
    idle_in_span = max(0.0, loop["idle_s"] - (first_in - built))
    at_plain = tokens / plain_tok_s
    rows = [
        ("job, start to end", wall),
        ("start-up: Ray, engine actor, model load", built - job["start"]),
        ("waiting for the first chunk after start-up", first_in - built),
        ("sampling: first chunk in to last chunk out", last_out - first_in),
        ("  engine stepping", loop["busy_s"]),
        (f"    of which at plain vLLM's rate ({plain_tok_s:.0f} tok/s)", at_plain),
        ("    of which slower than plain vLLM (shared cores, threads)", loop["busy_s"] - at_plain),
        ("  engine with nothing to run", idle_in_span),
        ("tail: last chunk out to the end (scoring, selection, writes)", job["end"] - last_out),
    ]
    rows += [(f"scorer alone, 1 thread: {name}", s) for name, s in scorers.items()]
    return [(name, s, s / wall) for name, s in rows] + [("mean sequences per step",
            loop["sequence_steps"] / max(loop["steps"], 1), None)]  # fmt: skip


def cpu_line() -> str:
    m = machine()  # bench_engines.py's: the CPU, its cores and the flags that decide the dtype
    return f"{m['cpu']}, {m['cores']} cores, flags: {' '.join(m['flags'])}"


def markdown(result: dict) -> str:
    lines = [
        "# The demo's pairs stage, profiled",
        "",
        f"Machine: {result['machine']}. Command: `{result['command']}`",
        "",
        f"{result['prompts']} prompts, {result['tokens']} generated tokens; pairs "
        f"{result['pairs']}. Tokens/s over the job's wall time: **{result['tok_s_job']:.1f}**; "
        f"plain vLLM on the same requests ({result['plain_from']}): {result['plain_tok_s']:.1f} "
        f"(ratio **{result['ratio_to_plain']:.2f}**, target >= 0.7).",
        "",
        "| where the time goes | seconds | share of the job |",
        "|---|---|---|",
    ]
    for name, seconds, share in result["breakdown"]:
        cell = "" if share is None else f"{share:.0%}"
        lines.append(f"| {name} | {seconds:.1f} | {cell} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-prompts", type=int, default=48)
    ap.add_argument("--chunks-in-flight", type=int, help="sampling.chunks_in_flight to use")
    ap.add_argument("--cpus", type=int, default=2, help="Ray's CPUs (and plain vLLM's threads)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pairs_stage.json"))
    ap.add_argument("--plain-json", type=Path,
                    help="take plain vLLM's two-turn rate from this bench_engines.py JSON "
                    "(same machine and session) instead of measuring it after the job")  # fmt: skip
    args = ap.parse_args()
    cfg, prompts = demo(args.num_prompts, args.chunks_in_flight)
    with tempfile.TemporaryDirectory() as tmp:
        job = run_job(cfg, prompts, args.cpus, Path(tmp) / "pairs")
    tokens = int(sum(sum(n) for n in job["scored"]["n_tokens"]))
    keep = {k: v for k, v in job.items() if k != "scored"}  # the job's figures, kept at once
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".job.json").write_text(json.dumps({**keep, "tokens": tokens}))
    scorers = scorer_seconds(cfg, job["scored"])
    plain = plain_rate(args.num_prompts, args.cpus, args.plain_json)
    plain_tok_s = plain["summary"]["two-turn"]["plain"]["steady_tok_s"]
    wall = job["end"] - job["start"]
    result = {
        "machine": cpu_line(),
        "command": shlex.join(["python", *sys.argv]),
        "prompts": len(prompts),
        "tokens": tokens,
        "pairs": job["pairs"],
        "tok_s_job": tokens / wall,
        "plain_tok_s": plain_tok_s,
        "plain_from": str(args.plain_json or "measured after the job, this run"),
        "ratio_to_plain": tokens / wall / plain_tok_s,
        "breakdown": breakdown(job, tokens, plain_tok_s, scorers),
        "chunks": job["chunks"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
