"""Projection from a pilot (`diversens plan --plan.measured RUN_DIR`): a pipeline config's wall time
per stage on the machine at hand, from the rates a small finished run of it measured there.

A CPU run has no FLOP/s or MFU worth assuming; what decides its length is measured directly:
- sample + score: the pairs stage's wall seconds per generated token (engine start and scoring
  included), and the tokens per candidate;
- pairs: each strategy's pairs per prompt; with `equal_pairs`, N = the smallest count among the
  train strategies (capped by `selection.num_pairs`);
- DPO: seconds per optimiser step and fixed seconds per run (train_summary.json `phases_s`);
- eval: the pilot's eval outputs' mean tokens per task, generated and scored at the pairs
  stage's seconds per token; the rest of its eval wall time is a fixed cost per model (engine
  start, a LoRA merge, scorer loads, the across-sample measures), which a pilot of few outputs
  per model would otherwise smear over every output.
- rounds: each round r > 1 repeats generate-pairs on its prompts (rounds_num_prompts) at the same
  rates and yield (its sampler, round r-1's tuned model, is timed as pairs.sampling.model was)
  and trains one DPO run of rounds_strategy on its pairs (every round's with rounds_mix_pairs);
  the eval, a model per round.
The pilot must share the projected config's sampling, train and eval settings except the
counts; the rates are only as good as that match, and the table says which run they came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from diversens.errors import UserError


@dataclass(frozen=True)
class Rates:
    """What a pilot run measured."""

    run: str
    sample_s_per_token: float
    tokens_per_candidate: float
    pairs_per_prompt: dict[str, float]
    dpo_s_per_step: float
    dpo_fixed_s: float
    eval_tokens_per_output: dict[str, float]
    eval_fixed_s_per_model: float

    @classmethod
    def from_run(cls, run_dir: Path) -> Rates:
        summary = _read(run_dir / "pipeline_summary.json")
        missing = [s for s in ("generate-pairs", "train", "eval") if s not in summary["wall_s"]]
        if missing or not summary.get("complete"):
            raise UserError(f"{run_dir}: a pilot must be a complete run of every stage "
                            f"(missing {missing or 'the complete flag'})")  # fmt: skip
        yields = summary["pairs"]["yield"]
        trained = [_read(p) for p in sorted(run_dir.glob("train/*/train_summary.json"))]
        phases = [t["phases_s"] for t in trained if math.isfinite(t["phases_s"]["per_step_s"])]
        if not phases:
            raise UserError(f"{run_dir}/train: no DPO run with two or more steps to time")
        path = run_dir / "eval" / "outputs.parquet"
        runs = ["model", "seed"] if "seed" in pq.read_schema(path).names else ["model"]
        outputs = pq.read_table(path, columns=[*runs, "task", "n_tokens"]).to_pandas()
        s_per_token = summary["wall_s"]["generate-pairs"] / yields["generated_tokens"]
        fixed = summary["wall_s"]["eval"] - outputs.n_tokens.sum() * s_per_token
        return cls(
            run=str(run_dir),
            sample_s_per_token=s_per_token,
            tokens_per_candidate=yields["tokens_per_candidate"],
            pairs_per_prompt={
                s: y["pairs"] / yields["prompts"] for s, y in yields["strategies"].items()
            },  # fmt: skip
            dpo_s_per_step=_mean([p["per_step_s"] for p in phases]),
            dpo_fixed_s=_mean([p["fixed_s"] for p in phases]),
            eval_tokens_per_output=outputs.groupby("task").n_tokens.mean().to_dict(),
            # per sampling pass: a model at one seed (a run before eval seeds: one label each)
            eval_fixed_s_per_model=max(fixed, 0.0) / len(outputs[runs].drop_duplicates()),
        )


def project(cfg, num_prompts: int, rates: Rates) -> list[tuple[str, str, float]]:
    """(stage, arithmetic, minutes) for the pipeline config `cfg` over `num_prompts` prompts."""
    from diversens.plan import eval_samples_per_task, round_models, round_pairs, round_prompts

    s, t = cfg.pairs.sampling, cfg.train

    def selected(prompts: int, strategy: str) -> int:
        found = math.floor(prompts * rates.pairs_per_prompt.get(strategy, 0))
        return min(cfg.pairs.selection.num_pairs, found)

    def sampling(prompts: int) -> tuple[str, float]:
        tokens = prompts * s.num_samples_per_prompt * rates.tokens_per_candidate
        return (f"{prompts} prompts × {s.num_samples_per_prompt} × "
                f"{rates.tokens_per_candidate:.0f} tokens = {tokens:,.0f} tokens × "
                f"{rates.sample_s_per_token * 1e3:.2f} ms",
                tokens * rates.sample_s_per_token / 60)  # fmt: skip

    pairs = {x: selected(num_prompts, x) for x in cfg.train_strategies}
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_workers
    runs = []
    for strategy, n in pairs.items():
        n = min(pairs.values()) if cfg.equal_pairs else n
        runs.append((strategy, n, _steps(t, n, batch)))
    dpo_s = len(cfg.train_seeds) * sum(steps * rates.dpo_s_per_step + rates.dpo_fixed_s
                                       for _, _, steps in runs)  # fmt: skip
    models = cfg.eval_runs()
    per_task = eval_samples_per_task(cfg.eval.num_samples)
    eval_tokens = sum(n * rates.eval_tokens_per_output.get(t, 0) for t, n in per_task.items())
    eval_s = models * (eval_tokens * rates.sample_s_per_token + rates.eval_fixed_s_per_model)
    sample, sample_min = sampling(num_prompts)
    per_run = f" × {rates.dpo_s_per_step:.1f} s + {rates.dpo_fixed_s:.0f} s per run"
    rows = [
        ("generate-pairs", sample, sample_min),
        ("train", "; ".join(f"{x}: {n} pairs, {steps} steps" for x, n, steps in runs) + per_run,
         dpo_s / 60),
    ]  # fmt: skip
    labels, later = round_models(cfg), round_prompts(cfg, num_prompts)
    for r, label in cfg.round_labels():
        n = round_pairs(cfg, r, pairs[cfg.rounds_strategy], selected(later, cfg.rounds_strategy))
        steps = _steps(t, n, batch)
        mixed = f" (rounds 1-{r})" if cfg.rounds_mix_pairs else ""
        arithmetic, minutes = sampling(later)
        rows += [(f"round {r}: generate-pairs", f"sampled by {labels[r - 1]}: {arithmetic}",
                  minutes),
                 (f"round {r}: train", f"{label}: {n} pairs{mixed}, {steps} steps{per_run}",
                  (steps * rates.dpo_s_per_step + rates.dpo_fixed_s) / 60)]  # fmt: skip
    rows.append(
        ("eval", f"{models} models × ({sum(per_task.values())} outputs × "
         f"{eval_tokens / sum(per_task.values()):.0f} tokens × "
         f"{rates.sample_s_per_token * 1e3:.2f} ms + {rates.eval_fixed_s_per_model:.0f} s)",
         eval_s / 60)
    )  # fmt: skip
    return rows


def _steps(t, pairs: int, batch: int) -> int:
    """Optimiser steps of a DPO run of the train section `t` on `pairs` pairs."""
    return t.max_steps if t.max_steps > 0 else math.ceil(math.ceil(pairs / batch)
                                                         * t.num_train_epochs)  # fmt: skip


def figures(cfg, num_prompts: int, rates: Rates) -> list[float]:
    """Every number `render` prints of the stages: their minutes and the total."""
    minutes = [m for *_, m in project(cfg, num_prompts, rates)]
    return [*minutes, sum(minutes)]


def render(cfg, num_prompts: int, rates: Rates) -> str:
    rows = project(cfg, num_prompts, rates)
    lines = [f"Projected from the measured rates of {rates.run}:", "",
             "| stage | arithmetic | wall (min) |", "|---|---|---|",
             *(f"| {name} | {how} | {minutes:.1f} |" for name, how, minutes in rows),
             f"| **total** | | **{sum(m for *_, m in rows):.0f}** |", "",
             "Pairs per 100 prompts: " + ", ".join(
                 f"{s} {100 * p:.1f}" for s, p in rates.pairs_per_prompt.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable run summary ({e.__class__.__name__})") from None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
