"""DPO fixed cost per run: where a training run's time goes besides its optimiser steps.

    python benchmarks/bench_train.py                        # the demo's train section, 2 runs each
    python benchmarks/bench_train.py --modes zero3 --runs 1  # one run

Trains the README demo's train section (configs/tiny.yaml: SmolLM2-135M-Instruct, LoRA, 2 Ray
Train CPU workers, gloo) through `diversens.training.train` on synthetic length-matched pairs,
`--runs` times per DeepSpeed mode under one local Ray, as the pipeline runs one training per
strategy. Each run's `phases_s` (train_summary.json) gives: time to the first optimiser step
(worker start, imports, trainer build, DeepSpeed set-up, the step itself), seconds per later
step, checkpoint time, save + LoRA merge + export, teardown, and the fixed cost: wall time less
the run's steps at the later steps' rate. Ratios are against the first mode's first run,
measured in the same invocation (machines here are noisy: compare ratios, not absolute times).
Target: fixed cost <= 60 s per run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

SUBJECTS = ["a lighthouse", "a violin", "a glacier", "a market", "an owl", "a train", "a clock"]
VARIED = [
    "copper foxes argued about rain beside velvet maps",
    "seven ravens traded riddles over marble bridges",
    "a baker folded comets into warm bread",
    "old sailors painted storms on teacups",
    "children stitched kites from forgotten letters",
]
SHOWN = ("first_step_total_s", "per_step_s", "checkpoints_s", "save_merge_export_s",
         "teardown_s", "fixed_s", "wall_s")  # fmt: skip


def make_pairs(n: int, path: Path) -> Path:
    """Length-matched pairs: a varied story (chosen) vs a repetitive one (rejected)."""
    rows = []
    for i in range(n):
        subject, varied = SUBJECTS[i % len(SUBJECTS)], VARIED[i % len(VARIED)]
        rows.append({
            "prompt": [{"role": "user", "content": f"Write a short story about {subject}."}],
            "chosen": [{"role": "assistant", "content": f"Near {subject}, {varied}; then the "
                        "night hummed, silver and strange, while lanterns drifted east."}],
            "rejected": [{"role": "assistant", "content": f"There was {subject}. It was nice. "
                          f"There was {subject}. It was nice. It was very nice and nice."}],
        })  # fmt: skip
    pd.DataFrame(rows).to_parquet(path)
    return path


def demo_train_config(path: str, **over):
    from diversens.config import from_dict, read_yaml
    from diversens.training.config import TrainConfig

    return from_dict(TrainConfig, {**read_yaml(path)["train"], **over}, prefix="train.")


def run_phases(summary: dict) -> dict:
    """A run's phases, with the time from fit() to the end of its first optimiser step."""
    p = summary["phases_s"]
    first = ("worker_start_s", "imports_s", "trainer_build_s", "engine_setup_s", "first_step_s")
    return {**p, "first_step_total_s": round(sum(p[k] for k in first), 2),
            "steps": summary["global_step"]}  # fmt: skip


def table(results: list[dict]) -> str:
    base = results[0]
    head = ["mode", "run", *SHOWN, "fixed × base", "per step × base"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ratios = [f"{r[k] / base[k]:.2f}" for k in ("fixed_s", "per_step_s")]
        cells = [r["mode"], str(r["run"]), *(f"{r[k]:.1f}" for k in SHOWN), *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml", help="pipeline config (train:)")
    parser.add_argument("--modes", nargs="+", default=["zero3", "none"], help="deepspeed stages")
    parser.add_argument("--runs", type=int, default=2, help="runs per mode, as one per strategy")
    parser.add_argument("--pairs", type=int, default=24, help="the demo trains on ~20-40 pairs")
    parser.add_argument("--out", type=Path, help="write the results as JSON and Markdown here")
    args = parser.parse_args()

    import ray

    from diversens.storage import Output
    from diversens.training.trainer import train

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = make_pairs(args.pairs, tmp / "pairs.parquet")
        for mode in args.modes:
            for run in range(1, args.runs + 1):
                cfg = demo_train_config(args.config, deepspeed=mode, name=f"{mode}-{run}")
                out = tmp / cfg.name
                summary = train(str(pairs), cfg, Output(str(out), out))
                results.append({"mode": mode, "run": run, **run_phases(summary)})
                print(json.dumps(results[-1]), flush=True)
    ray.shutdown()
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
