"""Verdicts: the eval's claims decided by fixed rules from its own tables, so that every verdict
a report gives is a row of verdicts.csv beside the numbers it rests on.

Each tuned comparison's interval is read against another interval (`versus`): the null's (the
base sampled again) or, for a later round, the round before's. The rules (docs/results.md,
"Decision rules"), per task and over all tasks:

- more diverse (per ΔDD measure): supported when the interval is above 0 and above the null's;
  contradicted when it is below 0.
- not shorter (words): supported when the interval is above -5% of the reference's mean words;
  contradicted when it is below 0.
- length changed (words): supported when the interval excludes 0 and does not meet the null's;
  contradicted when it lies inside the null's.
- round k adds to round k-1 (per ΔDD measure, `strategy@r<k>` labels): supported when round k's
  estimate is above round k-1's interval and round k-1's below round k's; contradicted the
  reverse.

A verdict is decided on all outputs and checked on the untruncated ones (both sides): where the
two differ it is unresolved. Where the null's interval excludes 0 (on either), the procedure did
not hold on null data for that measure and task, and no verdict is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from diversens.evaluation.rounds import round_of, round_suffix

SHORTER_TOLERANCE = 0.05  # "not shorter": within 5% of the reference's mean length
NO_VERDICT = "no verdict: the null's interval excludes 0"
COLUMNS = ["claim", "model", "versus", "task", "measure", "delta", "ci_low", "ci_high",
           "versus_delta", "versus_ci_low", "versus_ci_high", "bound", "verdict_all",
           "verdict_untruncated", "verdict"]  # fmt: skip

Interval = tuple[float, float, float]  # (estimate, low, high)
Rule = Callable[[Interval, Interval, float], tuple[bool, bool]]  # (supported, contradicted)


def _more_diverse(mine: Interval, null: Interval, bound: float) -> tuple[bool, bool]:
    _, lo, hi = mine
    return lo > 0 and lo > null[2], hi < 0


def _not_shorter(mine: Interval, null: Interval, bound: float) -> tuple[bool, bool]:
    _, lo, hi = mine
    return lo > bound, hi < 0


def _length_changed(mine: Interval, null: Interval, bound: float) -> tuple[bool, bool]:
    _, lo, hi = mine
    _, nlo, nhi = null
    return (lo > 0 or hi < 0) and (lo > nhi or hi < nlo), lo >= nlo and hi <= nhi


def _round_adds(mine: Interval, before: Interval, bound: float) -> tuple[bool, bool]:
    d, lo, hi = mine
    bd, blo, bhi = before
    return d > bhi and bd < lo, d < blo and bd > hi


def _decide(rule: Rule, mine: Interval, versus: Interval, bound: float) -> str:
    supported, contradicted = rule(mine, versus, bound)
    return "supported" if supported else "contradicted" if contradicted else "unresolved"


def _intervals(row, suffix: str = "") -> Interval:
    return (row[f"delta{suffix}"], row[f"ci_low{suffix}"], row[f"ci_high{suffix}"])


def _excludes_zero(row) -> bool:
    return any(lo > 0 or hi < 0 for _, lo, hi in (_intervals(row), _intervals(row, "_u")))


def _row(claim: str, rule: Rule, mine, versus, null, bound: float = math.nan) -> dict:
    """One verdict: `mine` read against `versus` by `rule`, on all outputs and untruncated."""
    on_all = _decide(rule, _intervals(mine), _intervals(versus), bound)
    untruncated = _decide(rule, _intervals(mine, "_u"), _intervals(versus, "_u"), bound)
    verdict = NO_VERDICT if _excludes_zero(null) else on_all if on_all == untruncated else \
        "unresolved"  # fmt: skip
    return {"claim": claim, "model": mine["model"], "versus": versus["model"],
            "task": mine["task"], "measure": mine["measure"], "delta": mine["delta"],
            "ci_low": mine["ci_low"], "ci_high": mine["ci_high"],
            "versus_delta": versus["delta"], "versus_ci_low": versus["ci_low"],
            "versus_ci_high": versus["ci_high"], "bound": bound, "verdict_all": on_all,
            "verdict_untruncated": untruncated, "verdict": verdict}  # fmt: skip


def _uniform(frame: pd.DataFrame, delta: str) -> pd.DataFrame:
    """A delta table (delta_dd.csv, length_change.csv) with columns model, task, measure,
    delta, ci_low, ci_high and their untruncated twins (`_u`)."""
    return frame.rename(columns={delta: "delta", "delta_untruncated": "delta_u",
                                 "ci_low_untruncated": "ci_low_u",
                                 "ci_high_untruncated": "ci_high_u"})  # fmt: skip


def verdict_table(deltas: pd.DataFrame, lengths: pd.DataFrame, base: str) -> pd.DataFrame:
    """Every tuned comparison's verdicts per task and over all tasks (module docstring), from
    the eval's ΔDD and length-change tables; empty without a null (the base's rows)."""
    rows = []
    for frame in (_uniform(deltas, "delta_dd"),
                  _uniform(lengths.assign(measure="words"), "delta_words")):  # fmt: skip
        if frame.empty or not (frame.model == base).any():
            continue
        by_key = {(r["model"], r["task"], r["measure"]): r for r in frame.to_dict("records")}
        for (model, task, measure), mine in by_key.items():
            null = by_key.get((base, task, measure))
            if model == base or null is None:
                continue
            if measure != "words":
                rows.append(_row("more diverse", _more_diverse, mine, null, null))
                strategy, k = round_of(model)
                before = by_key.get((strategy + round_suffix(k - 1), task, measure))
                if k > 1 and before is not None:
                    rows.append(_row(f"round {k} adds to round {k - 1}", _round_adds, mine,
                                     before, null))  # fmt: skip
                continue
            bound = -SHORTER_TOLERANCE * mine["base_words"]
            rows.append(_row("not shorter", _not_shorter, mine, null, null, bound))
            rows.append(_row("length changed", _length_changed, mine, null, null))
    return pd.DataFrame(rows, columns=COLUMNS)
