"""Sampling throughput on CPU with the bundled SmolLM2: vLLM's CPU build against the transformers
engine on the demo's real requests, and a Ray Data engine pool against calling the engine
directly. Everything compared is measured in the same run (machines here are noisy: compare
ratios, not absolute times).

1. engines: the demo's requests (README main command: `configs/tiny.yaml`'s pairs.sampling, read
   at run time, on `training_prompts(num_per_task=12, seed=0)`; --num-prompts keeps an equal
   share of each task) sampled by `SampleStage` chunk by chunk as the pipeline does: first
   turns, then second turns, with the real seeds and per-task caps. Each engine runs in its own
   process with the same number of threads (vLLM's CPU worker pins torch's thread count once it
   starts, so one process cannot host both fairly); the processes alternate over rounds.
   Generated tokens/s and tokens/s per core; target: vLLM >= 2x the transformers engine.
   Variants, one process each in the first round, say where vLLM's time goes (ratio to vllm):
   `vllm unseeded` (seed=None: vLLM's sampler draws seeded rows one by one), `vllm top_p=1`
   (no top-p sort of the vocabulary), `vllm compiled` (enforce_eager off: torch.compile, start-up
   not timed), `vllm one chunk` (every prompt in one chunk: a bigger batch, fewer drains; only
   differs from vllm with --num-prompts above the config's prompts_per_chunk).
   Per generate() call: sequences, tokens and the longest answer (= decode steps), so
   occupancy = tokens / (sequences x longest) shows how far a batch drains to a few long answers.
   Each engine's first process also times pure decoding (EOS ignored; time of 1 + 32 tokens less
   that of 1) by batch size, then at a chunk's 36 sequences with top_p 1 and (vLLM) unseeded:
   the engines' cost of a step when every sequence runs the whole way.
2. ray: `SampleStage` (vLLM, the demo's sampling config) over the same prompts called in-process
   chunk by chunk, against `generate_candidates` on a local Ray with one engine actor holding
   the same threads. Steady state = the Ray run's span from its first batch's start to its last
   batch's end (actor start-up and model load excluded, scheduling and data movement between
   batches included) against the sum of the direct batches. Target: Ray overhead <= 10%.

    python benchmarks/bench_generate.py --part engines --num-prompts 12 \
        --variants "vllm unseeded" "vllm top_p=1" "vllm compiled" --out generate.json
    python benchmarks/bench_generate.py --part engines --num-prompts 4 --rounds 1 --variants
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from diversens.config import load
from diversens.jobs.chunks import plan_chunks
from diversens.prompts import training_prompts
from diversens.sampling import Request, SampleStage, SamplingConfig, make_engine

CONFIG = "configs/tiny.yaml"  # the README main command's config
ENGINES = ("vllm", "transformers")
VARIANTS = {  # name -> (engine, config overrides, seeded requests)
    "vllm unseeded": ("vllm", {}, False),
    "vllm top_p=1": ("vllm", {"top_p": 1.0}, True),
    "vllm compiled": ("vllm", {"enforce_eager": False}, True),
    "vllm one chunk": ("vllm", {"prompts_per_chunk": 10**6}, True),  # only for n > the chunk
}
SWEEP_BATCHES = (1, 4, 12, 36, 144)  # 36: a chunk's first or second turns; 144: 48 prompts'
SWEEP_TOKENS = 32


def demo_config(**overrides) -> SamplingConfig:
    cfg = load(SamplingConfig, CONFIG, section="pairs.sampling")
    return dataclasses.replace(cfg, **overrides)


def demo_prompts(n: int) -> pd.DataFrame:
    """The demo's 48 prompts (12 per task, task by task), or n of them, an equal share per task."""
    df = training_prompts(num_per_task=12, seed=0)
    return df.groupby("task", sort=False).head(n // df.task.nunique()).reset_index(drop=True)


def unseeded(generate):
    return lambda requests: generate([dataclasses.replace(r, seed=None) for r in requests])


def logged(generate, calls: list):
    """generate() that appends its sequences, tokens, longest answer and seconds to `calls`."""

    def run(requests):
        start = time.perf_counter()
        out = generate(requests)
        n = [c.n_tokens for row in out for c in row]
        truncated = sum(c.finish_reason == "length" for row in out for c in row)
        calls.append(
            {
                "seconds": time.perf_counter() - start,
                "sequences": len(n),
                "tokens": sum(n),
                "longest": max(n, default=0),
                "truncated": truncated,
            }
        )
        return out

    return run


def decode_seconds(engine, cfg: SamplingConfig, batch: int, seeded: bool) -> float:
    """Seconds of one decode step at this batch size: (1 + SWEEP_TOKENS tokens) - (1 token),
    EOS ignored so every sequence runs the whole way."""
    msgs = demo_prompts(48)["messages"].tolist()
    convs = [msgs[i % len(msgs)] for i in range(batch)]
    seeds = list(range(batch)) if seeded else [None] * batch
    seconds = []
    for tokens in (1, 1 + SWEEP_TOKENS):
        start = time.perf_counter()
        if engine.name == "vllm":
            from vllm import SamplingParams

            params = [
                SamplingParams(
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    seed=s,
                    max_tokens=tokens,
                    ignore_eos=True,
                )
                for s in seeds
            ]
            engine.llm.chat(convs, sampling_params=params, use_tqdm=False)
        else:  # its sampler draws every row from its own generator: always seeded
            engine.model.generation_config.min_new_tokens = tokens  # masks EOS until then
            texts = [engine.render(m) for m in convs]
            engine._generate_batch(texts, list(range(batch)), [tokens] * batch)
        seconds.append(time.perf_counter() - start)
    return (seconds[1] - seconds[0]) / SWEEP_TOKENS


def sweep(engine, cfg: SamplingConfig) -> list[dict]:
    """Decode step time by batch size, then seeds and top_p at a chunk's batch (36)."""
    points = [(b, True, cfg.top_p) for b in SWEEP_BATCHES] + [(36, True, 1.0)]
    if engine.name == "vllm":  # the transformers engine has no unseeded path
        points.append((36, False, cfg.top_p))
    out = []
    for batch, seeded, top_p in points:
        engine.cfg = dataclasses.replace(cfg, top_p=top_p)
        step = decode_seconds(engine, engine.cfg, batch, seeded)
        out.append(
            {
                "batch": batch,
                "seeded": seeded,
                "top_p": top_p,
                "step_ms": step * 1e3,
                "tokens_per_s": batch / step,
            }
        )
    engine.cfg = cfg
    return out


def engine_worker(args) -> None:
    """In a child process: one engine (variant), the demo's requests `trials` times, JSON out."""
    name, overrides, seeded = VARIANTS.get(args.worker, (args.worker, {}, True))
    cfg = demo_config(engine=name, **overrides)
    prompts = demo_prompts(args.num_prompts)
    batch = plan_chunks(prompts, cfg.prompts_per_chunk, "bench")  # the demo's chunks, in order
    engine = make_engine(cfg)
    generate = engine.generate if seeded else unseeded(engine.generate)
    generate([Request(prompts.messages[0], seed=0, max_tokens=8)])  # one-off kernel set-up
    trials = []
    for _ in range(args.trials):
        engine.generate = logged(generate, calls := [])
        start = time.perf_counter()
        SampleStage(cfg, engine=engine)(batch)
        trials.append({"seconds": time.perf_counter() - start, "calls": calls})
    print(json.dumps({"trials": trials, "sweep": sweep(engine, cfg) if args.sweep else []}))


def run_worker(name: str, args, sweep_too: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    argv = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--num-prompts",
        str(args.num_prompts),
        "--trials",
        str(args.trials),
        *(["--sweep"] * sweep_too),
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{name} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(trials: list[dict], threads: int) -> dict:
    """Median tokens/s over trials; per turn (SampleStage's calls alternate first turns and
    second turns, chunk by chunk), occupancy and truncation over all calls."""
    calls = [c for t in trials for c in t["calls"]]
    tokens = sum(c["tokens"] for c in calls)
    rate = statistics.median(sum(c["tokens"] for c in t["calls"]) / t["seconds"] for t in trials)
    turns = [[c for t in trials for c in t["calls"][turn::2]] for turn in (0, 1)]
    return {
        "tokens_per_s": rate,
        "tokens_per_s_per_core": rate / threads,
        "tokens_per_s_by_turn": [
            sum(c["tokens"] for c in cs) / sum(c["seconds"] for c in cs) for cs in turns
        ],
        "tokens_per_trial": tokens / len(trials),
        "occupancy": tokens / sum(c["sequences"] * c["longest"] for c in calls),
        "truncated": sum(c["truncated"] for c in calls) / sum(c["sequences"] for c in calls),
    }


def bench_engines(args) -> None:
    runs: dict[str, list[dict]] = {}
    order = [*ENGINES, *args.variants]
    for rnd in range(args.rounds):  # alternate the engines so machine load hits both alike
        for name in order[: len(ENGINES)] if rnd else order:
            got = run_worker(name, args, sweep_too=rnd == 0 and name in ENGINES)
            runs.setdefault(name, []).append(got)
            rates = [sum(c["tokens"] for c in t["calls"]) / t["seconds"] for t in got["trials"]]
            print(
                f"round {rnd} {name:>15}: " + ", ".join(f"{r:.1f}" for r in rates) + " tok/s",
                flush=True,
            )
    result = {
        "config": CONFIG,
        "threads": args.threads,
        "num_prompts": args.num_prompts,
        "command": shlex.join(["python", *sys.argv]),
        "runs": runs,
        "summary": {
            n: summary([t for r in rs for t in r["trials"]], args.threads) for n, rs in runs.items()
        },
    }
    report(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


def report(result: dict) -> None:
    s, runs = result["summary"], result["runs"]
    base = s["vllm"]["tokens_per_s"]
    print(f"\n{result['num_prompts']} demo prompts, {result['threads']} thread(s) per engine")
    print(
        "| engine | tok/s per core | ratio to vllm | tok/s turn 1 / 2 | tokens/trial | "
        "occupancy | truncated |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in s.items():
        turns = " / ".join(f"{r:.0f}" for r in m["tokens_per_s_by_turn"])
        print(
            f"| {name} | {m['tokens_per_s_per_core']:.1f} | {m['tokens_per_s'] / base:.2f} | "
            f"{turns} | {m['tokens_per_trial']:.0f} | {m['occupancy']:.2f} | "
            f"{m['truncated']:.0%} |"
        )
    ratio = base / s["transformers"]["tokens_per_s"]
    print(f"\nvllm / transformers per core: {ratio:.2f}x (target >= 2)")
    print("\ndecode step by batch size (EOS ignored; first process of each engine)")
    print("| engine | batch | seeded | top_p | ms/step | tok/s |")
    print("|---|---|---|---|---|---|")
    for name in ENGINES:
        for p in runs[name][0]["sweep"]:
            print(
                f"| {name} | {p['batch']} | {p['seeded']} | {p['top_p']} | "
                f"{p['step_ms']:.1f} | {p['tokens_per_s']:.0f} |"
            )
    full = {
        n: next(p["tokens_per_s"] for p in runs[n][0]["sweep"] if p["batch"] == 36) for n in ENGINES
    }
    print(
        f"vllm / transformers at a full batch of 36: {full['vllm'] / full['transformers']:.2f}x;"
        " demo tok/s as a share of it: "
        + ", ".join(f"{n} {s[n]['tokens_per_s'] / full[n]:.2f}" for n in ENGINES)
    )


def bench_ray(args) -> None:
    import ray

    from diversens.jobs.dataflow import generate_candidates, prompts_dataset

    prompts = demo_prompts(args.num_prompts)
    cfg = demo_config(num_cpus_per_actor=args.threads)

    class Timed(SampleStage):
        def process(self, batch):
            start = time.time()
            out = super().process(batch)
            return out.assign(batch_start=start, batch_end=time.time())

    import torch

    torch.set_num_threads(args.threads)  # the actor below gets as many (Ray sets OMP_NUM_THREADS)
    stage = Timed(cfg)
    stage(prompts.iloc[:1])  # warm-up, as the actor's first batch is not excluded either
    direct_parts = [
        stage(prompts.iloc[i : i + cfg.prompts_per_chunk])
        for i in range(0, len(prompts), cfg.prompts_per_chunk)
    ]
    direct = pd.concat(direct_parts)
    direct_seconds = sum(p.batch_end.iloc[0] - p.batch_start.iloc[0] for p in direct_parts)
    del stage

    ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    via_ray = generate_candidates(prompts_dataset(prompts, cfg), cfg, stage_cls=Timed).to_pandas()
    ray.shutdown()
    span = via_ray.batch_end.max() - via_ray.batch_start.min()
    first = via_ray.groupby("chunk").batch_end.first().min() - via_ray.batch_start.min()
    direct_first = direct_parts[0].batch_end.iloc[0] - direct_parts[0].batch_start.iloc[0]
    # The actor's first batch carries its warm-up; compare the span after it on both sides.
    steady = (span - first) / (direct_seconds - direct_first)
    same = (
        via_ray.set_index("prompt_id").loc[direct.prompt_id, "responses"].map(list).tolist()
        == direct.responses.map(list).tolist()
    )
    tokens = sum(sum(n) for n in via_ray.n_tokens)
    print(
        f"direct: {direct_seconds:.1f} s in batches; ray: first batch start to last end "
        f"{span:.1f} s; {tokens} tokens; identical texts: {same}"
    )
    print(
        f"ray / direct steady-state time: {steady:.3f} ({(steady - 1) * 100:+.1f}% overhead, "
        "target <= +10%)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "engines", "ray"), default="all")
    p.add_argument("--num-prompts", type=int, default=48, help="of the demo's 48 (equal per task)")
    p.add_argument("--threads", type=int, default=1, help="threads (cores) per engine")
    p.add_argument("--trials", type=int, default=1, help="engines: timed runs per process")
    p.add_argument("--rounds", type=int, default=2, help="engines: processes per engine")
    p.add_argument(
        "--variants",
        nargs="*",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="engines: vLLM variants to run (none: just the two engines)",
    )
    p.add_argument("--out", help="engines: write the raw results here (JSON)")
    p.add_argument("--worker", choices=[*ENGINES, *VARIANTS], help=argparse.SUPPRESS)
    p.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        engine_worker(args)
        return
    if args.part in ("all", "engines"):
        bench_engines(args)
    if args.part in ("all", "ray"):
        bench_ray(args)


if __name__ == "__main__":
    main()
