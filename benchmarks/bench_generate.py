"""Sampling throughput on CPU with the bundled SmolLM2 (transformers engine).

1. batched vs one-at-a-time: the same requests through `TransformersEngine.generate` with
   `engine_batch_size` B and with 1 (same seeds, so nearly the same texts and token counts),
   interleaved trials; output tokens/s, best and median (other processes share the CPU).
2. Ray Data vs direct: `SampleStage` over the same prompts, called in-process batch by batch,
   against `generate_candidates` on a local Ray with one actor holding all CPUs. Reported end to
   end (Ray: actor start-up and model load included; direct: engine construction included) and
   steady state (time spent inside the stage's batches).

    python benchmarks/bench_generate.py                    # both parts
    python benchmarks/bench_generate.py --part batching --num-prompts 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pandas as pd

from diversens.prompts import training_prompts
from diversens.sampling import Request, SampleStage, SamplingConfig, TransformersEngine


def _prompts(n: int) -> pd.DataFrame:
    df = training_prompts(num_per_task=n, seed=0)
    return df.groupby("task").head((n + 3) // 4).head(n).reset_index(drop=True)


def bench_batching(args) -> None:
    prompts = _prompts(args.num_prompts)
    requests = [Request(m, seed=i, n=args.n) for i, m in enumerate(prompts["messages"])]
    engine = TransformersEngine(SamplingConfig(max_new_tokens=args.max_new_tokens))
    engine.generate(requests[:1])  # warm-up: the first call pays one-off kernel set-up
    modes = {"batched": args.batch, "one-at-a-time": 1}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for trial in range(args.trials):  # interleaved, so load from other processes hits both
        for label, size in modes.items():
            engine.cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, engine_batch_size=size)
            start = time.perf_counter()
            out = engine.generate(requests)
            seconds = time.perf_counter() - start
            tokens = sum(c.n_tokens for r in out for c in r)
            rates[label].append(tokens / seconds)
            print(f"trial {trial} {label:>14}: {tokens} tokens in {seconds:.1f} s")
    best = {m: max(r) for m, r in rates.items()}
    med = {m: statistics.median(r) for m, r in rates.items()}
    for m in modes:
        print(f"{m:>14}: best {best[m]:.1f} tokens/s, median {med[m]:.1f} tokens/s")
    print(
        f"batched / one-at-a-time: best {best['batched'] / best['one-at-a-time']:.2f}x, "
        f"median {med['batched'] / med['one-at-a-time']:.2f}x"
    )


def bench_ray(args) -> None:
    import ray

    from diversens.sampling.pipeline import generate_candidates, prompts_dataset

    prompts = _prompts(args.num_prompts)
    threads = os.cpu_count() or 1
    cfg = SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.prompts_per_batch,
        num_cpus_per_actor=threads,
    )

    timed: list[float] = []

    class Timed(SampleStage):
        def process(self, batch):
            start = time.perf_counter()
            out = super().process(batch)
            seconds = [0.0] * len(out)  # on the batch's first row only, so a sum counts it once
            seconds[0] = time.perf_counter() - start
            return out.assign(batch_seconds=seconds)

    start = time.perf_counter()
    stage = SampleStage(cfg)
    loaded = time.perf_counter()
    parts = []
    for i in range(0, len(prompts), cfg.batch_size):
        t = time.perf_counter()
        parts.append(stage(prompts.iloc[i : i + cfg.batch_size]))
        timed.append(time.perf_counter() - t)
    direct = pd.concat(parts)
    direct_total = time.perf_counter() - start
    tokens = sum(sum(n) for n in direct["n_tokens"])
    print(f"direct: {tokens} tokens, {direct_total:.1f} s end to end (load {loaded - start:.1f} s)")
    del stage

    ray.init(num_cpus=threads, include_dashboard=False)
    start = time.perf_counter()
    ds = generate_candidates(prompts_dataset(prompts, cfg), cfg, stage_cls=Timed)
    via_ray = ds.to_pandas()
    ray_total = time.perf_counter() - start
    ray.shutdown()
    ray_tokens = sum(sum(n) for n in via_ray["n_tokens"])
    same = (
        via_ray.set_index("prompt_id").loc[direct["prompt_id"], "responses"].map(list).tolist()
        == direct["responses"].tolist()
    )
    print(f"ray:    {ray_tokens} tokens, {ray_total:.1f} s end to end (identical texts: {same})")
    e2e = (ray_tokens / ray_total) / (tokens / direct_total)
    steady = (ray_tokens / via_ray["batch_seconds"].sum()) / (tokens / sum(timed))
    print(f"ray / direct throughput: end to end {e2e:.2f}, steady state {steady:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "batching", "ray"), default="all")
    p.add_argument("--num-prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=2, help="batching: samples per prompt")
    p.add_argument("--batch", type=int, default=16, help="batching: conversations per call")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--trials", type=int, default=3, help="batching: interleaved repeats")
    p.add_argument("--ray-prompts", type=int, default=16, help="ray: prompts")
    p.add_argument("--prompts-per-batch", type=int, default=8, help="ray: prompts per batch")
    args = p.parse_args()
    if args.part in ("all", "batching"):
        bench_batching(args)
    if args.part in ("all", "ray"):
        args.num_prompts = args.ray_prompts
        bench_ray(args)


if __name__ == "__main__":
    main()
