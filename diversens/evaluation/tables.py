"""The eval's tables: the summary per model and task, and per comparison against the reference
(the base model at the map seeds) ΔDD per measure, the length and quality change and the
across-sample measures, per task first, then over the tasks weighted equally.

Comparisons: every model's outputs at the eval seeds, the base's included, against the
reference; the base's own comparison is the null, what sampling again alone gives. A
strategy trained at several seeds (labels `strategy@sN`) is one comparison over all its runs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from diversens.evaluation.bootstrap import ALL, RUN, SEED, compare
from diversens.evaluation.config import EvalConfig
from diversens.evaluation.decile import DecileMap
from diversens.evaluation.task_scores import score_pgt

TRAIN_SEED = re.compile(r"@s\d+$")  # a label's training-seed suffix: diverse-ns@s1


def strategy_of(label: str) -> str:
    """The comparison a model label belongs to: the label less its training-seed suffix."""
    return TRAIN_SEED.sub("", label)


def is_reference(outputs: pd.DataFrame, cfg: EvalConfig) -> np.ndarray:
    """The rows the decile map is fitted on and every model is compared with."""
    return ((outputs.model == cfg.base) & outputs[SEED].isin(cfg.map_seeds)).to_numpy()


def rank(outputs: pd.DataFrame, cfg: EvalConfig) -> tuple[pd.DataFrame, DecileMap]:
    """The decile map fitted on the reference outputs, and every output with its decile of
    each ΔDD measure (`decile_<measure>`)."""
    dmap = DecileMap.fit(outputs[is_reference(outputs, cfg)], cfg.dd_measures,
                         cfg.num_length_buckets, cfg.min_outputs_per_bucket)  # fmt: skip
    deciles = {f"decile_{m}": dmap.deciles(outputs, m) for m in cfg.dd_measures}
    return outputs.assign(**deciles), dmap


def truncated(outputs: pd.DataFrame) -> np.ndarray:
    """Outputs that hit their token cap: their length and diversity are cut, not answered."""
    if "finish_reason" not in outputs:
        return np.zeros(len(outputs), dtype=bool)
    return (outputs.finish_reason == "length").to_numpy()


def comparisons(outputs: pd.DataFrame, cfg: EvalConfig) -> tuple[pd.DataFrame, dict]:
    """The reference's outputs, and {name: its outputs} per comparison, the base's (the null)
    first; every frame gets the bootstrap's columns `prompt` (the source prompt) and `run` (the
    model label), and `truncated`."""
    ref = is_reference(outputs, cfg)
    outputs = outputs.assign(prompt=outputs.source_prompt_id, **{RUN: outputs.model},
                             truncated=truncated(outputs))  # fmt: skip
    names = outputs.model.map(strategy_of)
    sides = {name: outputs[(names == name).to_numpy() & ~ref]
             for name in dict.fromkeys([cfg.base, *names])}  # fmt: skip
    return outputs[ref], sides


def compared(
    outputs: pd.DataFrame, cfg: EvalConfig, column: str, untruncated: bool = True
) -> pd.DataFrame:
    """Per comparison and task, then "all": the mean of `column` minus the reference's with its
    interval (`bootstrap.compare`), the model's and the reference's means, the number of
    training runs and the SD of their deltas, and (`untruncated`) the delta on the outputs that
    did not hit their token cap, on both sides."""
    ref, sides = comparisons(outputs, cfg)
    rows = []
    for name, mine in sides.items():
        main = compare(mine, ref, column, cfg.num_bootstrap, cfg.seed)
        clean = {}
        if untruncated:
            clean = compare(mine[~mine.truncated], ref[~ref.truncated], column,
                            cfg.num_bootstrap, cfg.seed)  # fmt: skip
        spread = _run_spread(mine, ref, column)
        for task, (d, lo, hi) in main.items():
            row = {"model": name, "task": task, "mean": _mean(mine, task, column),
                   "ref_mean": _mean(ref, task, column), "delta": d, "ci_low": lo, "ci_high": hi,
                   "runs": mine[RUN].nunique(), "run_sd": spread.get(task, np.nan)}  # fmt: skip
            if untruncated:
                u = clean.get(task, (np.nan,) * 3)
                row.update(delta_untruncated=u[0], ci_low_untruncated=u[1],
                           ci_high_untruncated=u[2])  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def _mean(df: pd.DataFrame, task: str, column: str) -> float:
    """The mean of `column` in a task, or over the tasks weighted equally."""
    if task != ALL:
        return float(df.loc[df.task == task, column].mean())
    return float(df.groupby("task")[column].mean().mean())


def _run_spread(mine: pd.DataFrame, ref: pd.DataFrame, column: str) -> dict[str, float]:
    """{task: SD of the delta over the model's training runs} where it has several."""
    runs = sorted(mine[RUN].unique())
    if len(runs) < 2:
        return {}
    deltas = pd.DataFrame({run: {t: _mean(mine[mine[RUN] == run], t, column) - _mean(ref, t, column)
                                 for t in [*sorted(mine.task.unique()), ALL]}
                           for run in runs})  # fmt: skip
    return deltas.std(axis=1, ddof=1).to_dict()


def summarise(outputs: pd.DataFrame, shown: list[str]) -> pd.DataFrame:
    """Per model, sampling seed and task: counts, the share truncated, length, quality, the
    `shown` measures, task scores."""
    outputs = outputs.assign(truncated=truncated(outputs))
    agg = outputs.groupby(["model", SEED, "task"], sort=False).agg(
        outputs=("response", "size"),
        truncated=("truncated", "mean"),
        valid_rate=("valid", "mean"),
        words=("n_words", "mean"),
        quality=("quality", "mean"),
        **{m: (m, "mean") for m in dict.fromkeys([*shown, "dat_score"])},
    )
    keys = ["model", SEED]
    pgt = {key: score_pgt(df.response.tolist())
           for key, df in outputs[outputs.task == "pgt"].groupby(keys, sort=False)}  # fmt: skip
    agg = agg.reset_index()
    for key in next(iter(pgt.values()), {}):
        rows = zip(agg.model, agg[SEED], agg.task, strict=True)
        agg[key] = [pgt[(m, s)][key] if t == "pgt" else np.nan for m, s, t in rows]
    return agg


def truncation_table(outputs: pd.DataFrame) -> pd.DataFrame:
    """Per model, sampling seed and task: outputs, the share that hit the token cap, and the
    mean length of the rest beside all."""
    df = outputs.assign(truncated=truncated(outputs))
    df["untruncated_words"] = df.n_words.where(~df.truncated)
    return (df.groupby(["model", SEED, "task"], sort=False)
              .agg(outputs=("response", "size"), truncated=("truncated", "mean"),
                   words=("n_words", "mean"), untruncated_words=("untruncated_words", "mean"))
              .reset_index())  # fmt: skip


def delta_dd_table(outputs: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    """ΔDD per comparison × task (then "all") × measure; `coverage` is the share of the
    model's outputs that got a decile (the rest have no finite value of the measure, such as
    DSI of a one-sentence answer)."""
    frames = []
    for measure in cfg.dd_measures:
        col = f"decile_{measure}"
        t = compared(outputs, cfg, col).rename(columns={"mean": "dd", "delta": "delta_dd"})
        if t.empty:
            continue
        t.insert(2, "measure", measure)
        cover = outputs.assign(c=outputs[col].notna(), m=outputs.model.map(strategy_of))
        share = cover[~is_reference(outputs, cfg)].groupby(["m", "task"]).c.mean()
        t["coverage"] = [share.xs(m).mean() if k == ALL else share[(m, k)]
                         for m, k in zip(t.model, t.task, strict=True)]  # fmt: skip
        frames.append(t.drop(columns="ref_mean"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def change_table(outputs: pd.DataFrame, cfg: EvalConfig, column: str, name: str) -> pd.DataFrame:
    """Each comparison's mean of a per-output `column` minus the reference's, per task and
    "all"; columns base_<name> (the reference's), <name>, delta_<name>, its interval,
    relative (the delta over the reference's mean) and the run and untruncated columns."""
    t = compared(outputs, cfg, column)
    if t.empty:
        return t
    t = t.rename(columns={"ref_mean": f"base_{name}", "mean": name, "delta": f"delta_{name}"})
    t["relative"] = t[f"delta_{name}"] / t[f"base_{name}"].replace(0, np.nan)
    first = ["model", "task", f"base_{name}", name, f"delta_{name}", "ci_low", "ci_high",
             "relative"]  # fmt: skip
    return t[first + [c for c in t if c not in first]]


def length_change_table(outputs: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    """Words: the "not shorter" half of the claim, with its interval."""
    return change_table(outputs, cfg, "n_words", "words")


def quality_change_table(outputs: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    """The offline quality score: what the diversity cost in fluency, with its interval."""
    return change_table(outputs, cfg, "quality", "quality")


def across_sample_table(
    outputs: pd.DataFrame, cfg: EvalConfig, lengths: pd.DataFrame
) -> pd.DataFrame:
    """Per comparison × task × across-sample measure (distinct-n, Vendi, ...), per task only:
    each subset of `across_sample_size` samples of a prompt has one value (jobs/evaluate.py),
    the table has their mean and its difference from the reference's, with the bootstrap over
    runs, prompts and subsets, and the length change of the same outputs beside it (these
    measures are not length-controlled)."""
    subsets = outputs.dropna(subset=["subset"]).drop_duplicates(["model", SEED, "source_prompt_id",
                                                                 "subset"])  # fmt: skip
    sizes = outputs.dropna(subset=["subset"]).groupby(
        ["model", SEED, "source_prompt_id", "subset"]).size()  # fmt: skip
    words = lengths.set_index(["model", "task"]) if not lengths.empty else None
    frames = []
    for measure in cfg.across_sample_measures:
        t = compared(subsets, cfg, measure, untruncated=False)
        if t.empty:
            continue
        t = t[t.task != ALL].rename(columns={"mean": "value", "ref_mean": "ref_value"})
        t.insert(2, "measure", measure)
        t["samples_per_subset"] = int(sizes.median()) if len(sizes) else np.nan
        if words is not None:
            t["delta_words"] = [words["delta_words"].get((m, k), np.nan)
                                for m, k in zip(t.model, t.task, strict=True)]  # fmt: skip
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
