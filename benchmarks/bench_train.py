"""DPO training throughput: DeepSpeed ZeRO-3 vs plain DDP, 2 Ray Train CPU workers, one run.

python benchmarks/bench_train.py                       # SmolLM2-135M-Instruct, 64 pairs, 10 steps
python benchmarks/bench_train.py --model tiny --steps 6  # a 2-layer SmolLM2-shaped model (smoke)

Both modes train the same model on the same pairs with the same batch (2 pairs per worker per
step) through `diversens.training.train`, one after the other under one local Ray (2 CPUs, gloo).
Throughput comes from the run's own log (`elapsed_s`, `num_tokens`, global over both workers) and
leaves out step 1 (DeepSpeed/DDP set-up, first allocation). pairs/s counts preference pairs
(each is a chosen and a rejected sequence); tokens/s counts prompt + response tokens of both.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
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


def tiny_model(out: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from diversens.models import resolve_model

    src = resolve_model("smollm2-135m-instruct")
    config = AutoConfig.from_pretrained(src)
    config.update(dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16))  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def throughput(out: Path, pairs_per_step: int) -> dict:
    log = pd.read_csv(out / "train_log.csv")
    timed = log[log["step"] > 1]
    first, last = log[log["step"] == 1].iloc[0], timed.iloc[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    steps = int(last["step"] - first["step"])
    return {
        "timed_steps": steps,
        "seconds": round(seconds, 2),
        "s_per_step": round(seconds / steps, 3),
        "pairs_per_s": round(steps * pairs_per_step / seconds, 3),
        "tokens_per_s": round((last["num_tokens"] - first["num_tokens"]) / seconds, 1),
        "final_loss": round(float(last["loss"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model, or 'tiny'")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2, help="pairs per worker per step")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    import ray

    from diversens.storage import Output
    from diversens.training.config import TrainConfig
    from diversens.training.trainer import train

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = str(tiny_model(tmp / "tiny")) if args.model == "tiny" else args.model
        pairs = make_pairs(args.pairs, tmp / "pairs.parquet")
        for mode in ("zero3", "none"):
            cfg = TrainConfig(model=model, deepspeed=mode, num_workers=2, max_steps=args.steps,
                              per_device_train_batch_size=args.batch,
                              gradient_accumulation_steps=1, learning_rate=5e-7,
                              lr_scheduler_type="constant", warmup_ratio=0.0, max_length=256,
                              save_steps=args.steps, name=f"bench-{mode}")  # fmt: skip
            start = time.perf_counter()
            train(str(pairs), cfg, Output(str(tmp / mode), tmp / mode))
            results[mode] = {**throughput(tmp / mode, 2 * args.batch),
                             "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    ray.shutdown()
    z3, ddp = results["zero3"], results["none"]
    results["zero3_over_ddp"] = {
        k: round(z3[k] / ddp[k], 3) for k in ("pairs_per_s", "tokens_per_s")
    }
    results["setup"] = {
        "model": args.model,
        "pairs": args.pairs,
        "steps": args.steps,
        "pairs_per_step": 2 * args.batch,
        "workers": 2,
        "backend": "gloo",
    }
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
