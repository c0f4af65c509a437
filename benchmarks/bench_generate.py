"""Sampling throughput on CPU with the bundled SmolLM2: vLLM's CPU build against the transformers
engine, and a Ray Data engine pool against calling the engine directly. Everything compared is
measured in the same run (machines here are noisy: compare ratios, not absolute times).

1. engines: the same requests (prompts × n samples × max_new_tokens, same seeds) through
   `VLLMEngine` and `TransformersEngine`, each in its own process with the same number of
   threads (vLLM's CPU worker pins torch's thread count once it starts, so one process cannot
   host both fairly), interleaved trials; generated tokens/s and tokens/s per core.
   Target: vLLM >= 2x the transformers engine per core.
2. ray: `SampleStage` (vLLM) over the same prompts called in-process batch by batch, against
   `generate_candidates` on a local Ray with one engine actor holding the same threads.
   Steady state = the Ray run's span from its first batch's start to its last batch's end
   (actor start-up and model load excluded, scheduling and data movement between batches
   included) against the sum of the direct batches. Target: Ray overhead <= 10%.

    python benchmarks/bench_generate.py                  # both parts
    python benchmarks/bench_generate.py --part engines --num-prompts 16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import pandas as pd

from diversens.prompts import training_prompts
from diversens.sampling import Request, SampleStage, SamplingConfig, make_engine


def _prompts(n: int) -> pd.DataFrame:
    df = training_prompts(num_per_task=n, seed=0)
    return df.groupby("task").head((n + 3) // 4).head(n).reset_index(drop=True)


def _cfg(args, engine: str, **kw) -> SamplingConfig:
    return SamplingConfig(engine=engine, max_new_tokens=args.max_new_tokens, dtype=args.dtype,
                          temperature=0.8, engine_batch_size=64, **kw)  # fmt: skip


def engine_worker(args) -> None:
    """In a child process: load one engine, run the requests `trials` times, print JSON."""
    prompts = _prompts(args.num_prompts)
    requests = [Request(m, seed=i, n=args.n) for i, m in enumerate(prompts["messages"])]
    engine = make_engine(_cfg(args, args.worker))
    engine.generate(requests[:1])  # warm-up: the first call pays one-off kernel set-up
    rates = []
    for _ in range(args.trials):
        start = time.perf_counter()
        out = engine.generate(requests)
        seconds = time.perf_counter() - start
        rates.append(sum(c.n_tokens for r in out for c in r) / seconds)
    print(json.dumps({"rates": rates}))


def bench_engines(args) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rates: dict[str, list[float]] = {"vllm": [], "transformers": []}
    for trial in range(args.rounds):  # alternate the engines so machine load hits both
        for name in rates:
            argv = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{name} worker failed:\n{proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])["rates"]
            rates[name] += got
            print(f"round {trial} {name:>12}: " + ", ".join(f"{r:.0f}" for r in got) + " tok/s")
    med = {m: statistics.median(r) for m, r in rates.items()}
    for m, r in med.items():
        print(f"{m:>12}: median {r:.1f} tok/s, {r / args.threads:.1f} tok/s per core "
              f"({args.threads} thread(s))")  # fmt: skip
    print(f"vllm / transformers per core: {med['vllm'] / med['transformers']:.2f}x (target >= 2)")


def bench_ray(args) -> None:
    import ray

    from diversens.jobs.dataflow import generate_candidates, prompts_dataset

    prompts = _prompts(args.num_prompts)
    cfg = _cfg(
        args, "vllm", prompts_per_chunk=args.prompts_per_batch, num_cpus_per_actor=args.threads
    )

    class Timed(SampleStage):
        def process(self, batch):
            start = time.time()
            out = super().process(batch)
            return out.assign(batch_start=start, batch_end=time.time())

    import torch

    torch.set_num_threads(args.threads)  # the actor below gets as many (Ray sets OMP_NUM_THREADS)
    stage = Timed(cfg)
    stage(prompts.iloc[:1])  # warm-up, as the actor's first batch is not excluded either
    direct_parts = [stage(prompts.iloc[i : i + cfg.prompts_per_chunk])
                    for i in range(0, len(prompts), cfg.prompts_per_chunk)]  # fmt: skip
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
    same = (via_ray.set_index("prompt_id").loc[direct.prompt_id, "responses"].map(list).tolist()
            == direct.responses.map(list).tolist())  # fmt: skip
    tokens = sum(sum(n) for n in via_ray.n_tokens)
    print(f"direct: {direct_seconds:.1f} s in batches; ray: first batch start to last end "
          f"{span:.1f} s; {tokens} tokens; identical texts: {same}")  # fmt: skip
    print(
        f"ray / direct steady-state time: {steady:.3f} ({(steady - 1) * 100:+.1f}% overhead, "
        "target <= +10%)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "engines", "ray"), default="all")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=4, help="engines: samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument(
        "--dtype", default="auto", help="both engines' dtype (auto: bf16 where the CPU has it)"
    )
    p.add_argument("--threads", type=int, default=1, help="threads (cores) per engine")
    p.add_argument("--trials", type=int, default=2, help="engines: timed runs per process")
    p.add_argument("--rounds", type=int, default=2, help="engines: processes per engine")
    p.add_argument("--prompts-per-batch", type=int, default=8, help="ray: prompts per batch")
    p.add_argument("--worker", choices=("vllm", "transformers"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        engine_worker(args)
    else:
        if args.part in ("all", "engines"):
            bench_engines(args)
        if args.part in ("all", "ray"):
            bench_ray(args)


if __name__ == "__main__":
    main()
