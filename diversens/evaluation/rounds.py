"""The eval across rounds of iterative on-policy DPO (`pipeline.rounds`): round 0 is the base
(its comparison is the null), round 1 a strategy's first tuned model (label `strategy`), round k
its model of round k (label `strategy@r<k>`); each round is its own comparison. The figures are
the eval's all-task rows (tasks weighted equally), picked out of its tables, not recomputed."""

from __future__ import annotations

import pandas as pd

from diversens.evaluation.bootstrap import ALL

ROUND = "@r"  # a later round's label suffix: diverse-ns@r2


def round_of(label: str) -> tuple[str, int]:
    """(strategy, round) of a tuned comparison's label: `s@r<k>` is round k of s, any other
    label round 1 of itself."""
    strategy, sep, k = label.rpartition(ROUND)
    return (strategy, int(k)) if sep and strategy and k.isdecimal() else (label, 1)


def round_suffix(k: int) -> str:
    """What round k adds to a strategy's label (and its training run's name): nothing in round
    1, `@r<k>` after; `round_of` reads it back."""
    return "" if k == 1 else f"{ROUND}{k}"


def rounds(names: list[str], base: str) -> list[tuple[int, str, str]]:
    """[(round, strategy, comparison)] of the strategies with a `@r<k>` comparison among
    `names`, the base first as round 0 (strategy ""), then in round order; [] when none has."""
    tuned = {name: round_of(name) for name in names if name != base}
    iterated = list(dict.fromkeys(s for s, k in tuned.values() if k != 1))
    if not iterated:
        return []
    rows = [(k, s, name) for name, (s, k) in tuned.items() if s in iterated]
    rows.sort(key=lambda r: (r[0], iterated.index(r[1])))
    return ([(0, "", base)] if base in names else []) + rows


def _all_tasks(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The all-task rows of one of the eval's tables: model and `columns`, renamed."""
    if frame.empty:
        return pd.DataFrame(columns=["model", *columns.values()])
    return frame.loc[frame.task == ALL, ["model", *columns]].rename(columns=columns)


def rounds_table(
    deltas: pd.DataFrame, lengths: pd.DataFrame, quality: pd.DataFrame, base: str
) -> pd.DataFrame:
    """Per round (`rounds` of the eval's comparisons) and ΔDD measure: round, strategy, model,
    measure, delta_dd and its interval, the length change in words (delta_words, words_ci_*,
    relative) and the quality change (delta_quality, quality_ci_*), from the all-task rows of
    delta_dd.csv, length_change.csv and quality_change.csv; empty without `@r<k>` labels."""
    words = _all_tasks(lengths, {"delta_words": "delta_words", "ci_low": "words_ci_low",
                                 "ci_high": "words_ci_high", "relative": "relative"})  # fmt: skip
    order = pd.DataFrame(rounds(list(words.model), base), columns=["round", "strategy", "model"])
    if order.empty:
        return order
    dd = _all_tasks(deltas, {c: c for c in ("measure", "delta_dd", "ci_low", "ci_high")})
    q = _all_tasks(quality, {"delta_quality": "delta_quality", "ci_low": "quality_ci_low",
                             "ci_high": "quality_ci_high"})  # fmt: skip
    return order.merge(dd, on="model", how="left").merge(words, on="model", how="left").merge(
        q, on="model", how="left")  # fmt: skip


def rounds_summary(table: pd.DataFrame) -> list[dict]:
    """The eval summary's `rounds`: per round its model, {measure: [ΔDD, ci_low, ci_high]}, the
    length change [words, ci_low, ci_high] and relative, the quality change [Δ, ci_low,
    ci_high]."""
    out = []
    for (k, model), rows in table.groupby(["round", "model"], sort=False):
        r = rows.iloc[0]
        out.append({
            "round": int(k),
            "model": model,
            "delta_dd": {m.measure: [m.delta_dd, m.ci_low, m.ci_high]
                         for m in rows.dropna(subset=["measure"]).itertuples()},
            "length_change": [r.delta_words, r.words_ci_low, r.words_ci_high],
            "relative_length_change": r.relative,
            "quality_change": [r.delta_quality, r.quality_ci_low, r.quality_ci_high],
        })  # fmt: skip
    return out
