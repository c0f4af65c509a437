"""The eval's tables per model and task: the summary (means, task scores), and against the base
model ΔDD per measure, the length and quality change and the across-sample measures, with
prompt-cluster bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.decile import DecileMap, delta_dd
from diversens.evaluation.task_scores import score_pgt


def rank(outputs: pd.DataFrame, cfg: EvalConfig) -> tuple[pd.DataFrame, DecileMap]:
    """The decile map fitted on the base model's (the first model's) outputs, and every output
    with its decile of each ΔDD measure (`decile_<measure>`)."""
    base = cfg.labelled_models()[0][0]
    dmap = DecileMap.fit(outputs[outputs.model == base], cfg.dd_measures, cfg.num_length_buckets,
                         cfg.min_outputs_per_bucket)  # fmt: skip
    deciles = {f"decile_{m}": dmap.deciles(outputs, m) for m in cfg.dd_measures}
    return outputs.assign(**deciles), dmap


def summarise(outputs: pd.DataFrame, shown: list[str]) -> pd.DataFrame:
    """Per model and task: counts, length, quality, the `shown` measures, task scores."""
    agg = outputs.groupby(["model", "task"], sort=False).agg(
        outputs=("response", "size"),
        valid_rate=("valid", "mean"),
        words=("n_words", "mean"),
        quality=("quality", "mean"),
        **{m: (m, "mean") for m in dict.fromkeys([*shown, "dat_score"])},
    )
    pgt = {
        model: score_pgt(df.response.tolist())
        for model, df in outputs[outputs.task == "pgt"].groupby("model", sort=False)
    }
    agg = agg.reset_index()
    for key in next(iter(pgt.values()), {}):
        pairs = zip(agg.model, agg.task, strict=True)
        agg[key] = [pgt[m][key] if t == "pgt" else np.nan for m, t in pairs]
    return agg


def model_task_slices(outputs: pd.DataFrame, base: str):
    """(model, task, the model's outputs, the base's outputs) per model and task, "all" first;
    a `prompt` column (the source prompt) added for the prompt-cluster bootstrap."""
    outputs = outputs.assign(prompt=outputs["source_prompt_id"])
    b = outputs[outputs.model == base]
    for model, df in outputs.groupby("model", sort=False):
        for task in ["all", *sorted(df.task.unique())]:
            if task == "all":
                yield model, task, df, b
            else:
                yield model, task, df[df.task == task], b[b.task == task]


def delta_dd_table(outputs: pd.DataFrame, cfg: EvalConfig, base: str) -> pd.DataFrame:
    """ΔDD per model × task (and "all") × measure, with prompt-cluster bootstrap intervals and
    coverage: the share of the model's outputs that got a decile (the rest have no finite
    value of the measure, such as DSI of a one-sentence answer)."""
    rows = []
    for measure in cfg.dd_measures:
        col = f"decile_{measure}"
        for model, task, mine, ref in model_task_slices(outputs, base):
            d, lo, hi = delta_dd(mine, ref, col, cfg.num_bootstrap, cfg.seed)
            if np.isfinite(d):
                rows.append({"model": model, "task": task, "measure": measure,
                             "dd": float(np.nanmean(mine[col])), "delta_dd": d,
                             "ci_low": lo, "ci_high": hi,
                             "coverage": float(mine[col].notna().mean())})  # fmt: skip
    return pd.DataFrame(rows)


def change_table(
    outputs: pd.DataFrame, cfg: EvalConfig, base: str, column: str, name: str
) -> pd.DataFrame:
    """Each tuned model's mean of a per-output `column` minus the base's, per task and "all",
    with the same prompt-cluster bootstrap as ΔDD; columns base_<name>, <name>, delta_<name>,
    ci_low, ci_high and relative (the delta over the base's mean)."""
    rows = []
    for model, task, mine, ref in model_task_slices(outputs, base):
        if model == base:
            continue
        d, lo, hi = delta_dd(mine, ref, column, cfg.num_bootstrap, cfg.seed)
        before = float(ref[column].mean())
        rows.append({"model": model, "task": task, f"base_{name}": before,
                     name: float(mine[column].mean()), f"delta_{name}": d, "ci_low": lo,
                     "ci_high": hi, "relative": d / before if before else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "task", f"base_{name}", name, f"delta_{name}",
                                       "ci_low", "ci_high", "relative"])  # fmt: skip


def length_change_table(outputs: pd.DataFrame, cfg: EvalConfig, base: str) -> pd.DataFrame:
    """Words: the "not shorter" half of the claim, with its interval."""
    return change_table(outputs, cfg, base, "n_words", "words")


def quality_change_table(outputs: pd.DataFrame, cfg: EvalConfig, base: str) -> pd.DataFrame:
    """The offline quality score: what the diversity cost in fluency, with its interval."""
    return change_table(outputs, cfg, base, "quality", "quality")


def across_sample_table(outputs: pd.DataFrame, cfg: EvalConfig, base: str) -> pd.DataFrame:
    """Per model × task (and "all") × across-sample measure (distinct-n, Vendi, ...): the mean
    over the task's prompts of each prompt's value (over all the model's samples of it), and
    its difference from the base with a bootstrap interval over prompts. A prompt has one value,
    so a task with one prompt (DAT, PGT) gets no interval (NaN), not a false point."""
    rows = []
    for measure in cfg.across_sample_measures:
        for model, task, mine, ref in model_task_slices(outputs, base):
            d, lo, hi = delta_dd(mine, ref, measure, cfg.num_bootstrap, cfg.seed)
            if mine.prompt.nunique() < 2:
                lo = hi = np.nan
            rows.append({"model": model, "task": task, "measure": measure,
                         "value": float(mine[measure].mean()), "delta": d, "ci_low": lo,
                         "ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "task", "measure", "value", "delta", "ci_low",
                                       "ci_high"])  # fmt: skip
