"""Intervals for the eval's comparisons: a model's mean of a per-output value minus the
reference's, per task, and over tasks weighted equally.

Outputs are not independent draws: they cluster by prompt, by sampling seed (a tuned model and
the base sampled with one seed share per-request seeds) and by training seed. So the bootstrap
resamples every level that varies, outermost first, each with replacement:
1. runs, per side: the model's training runs (labels `strategy@sN` of one strategy), then
   within each drawn run its sampling seeds;
2. prompts, per task: the same draw for both sides (a paired design: both answered them);
3. outputs within each drawn (run, prompt) cell.
A level with one member (one training seed, one sampling seed, a task of one prompt) is drawn
as itself; the outputs within a prompt still vary, so a one-prompt task has an interval.

A percentile interval from n units is too narrow when n is small (CWT has 7 prompts; a
one-prompt task's across-sample measures 10 subsets): its spread is the plug-in one, short by
sqrt((n-1)/n), and its tails are normal where a mean of n is t-distributed. Each task's draws
are widened about the estimate by sqrt(n/(n-1)) t_{n-1} / z (Hesterberg's expanded percentile
interval), n its prompts, or its values where it has one prompt; "all" averages the widened
draws. Measured on null data without it, across-sample intervals excluded 0 up to 18% of the
time (benchmarks/results/coverage.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

ALL = "all"  # the row that averages the tasks
RUN = "run"  # column naming a side's training run (a model label); absent: one run
SEED = "seed"  # column of sampling seeds; absent: one seed


def compare(
    model: pd.DataFrame,
    ref: pd.DataFrame,
    column: str,
    num_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """{task: (delta, ci_low, ci_high)} for every task both sides have, and "all": the mean of
    the tasks' deltas (equal weights), its interval from the same draws. NaN values of
    `column` are left out; {} when a side has none."""
    sides = [df[np.isfinite(df[column].to_numpy(float))] for df in (model, ref)]
    tasks = sorted(set(sides[0].task) & set(sides[1].task))
    if not tasks:
        return {}
    rng = np.random.default_rng(seed)
    points, boots = {}, {}
    for task in tasks:
        parts = [df[df.task == task] for df in sides]
        points[task] = float(parts[0][column].mean() - parts[1][column].mean())
        prompts = sorted(set(parts[0].prompt) | set(parts[1].prompt))
        prompt_times = rng.multinomial(len(prompts), np.full(len(prompts), 1 / len(prompts)),
                                       size=num_boot)  # fmt: skip
        index = {p: i for i, p in enumerate(prompts)}
        means = [_side_means(df, column, prompt_times, index, rng) for df in parts]
        units = len(prompts) if len(prompts) > 1 else min(len(df) for df in parts)
        boots[task] = points[task] + expansion(units, level) * (means[0] - means[1] - points[task])
    points[ALL] = float(np.mean(list(points.values())))
    boots[ALL] = np.mean(np.stack(list(boots.values())), axis=0)
    alpha = (1 - level) / 2 * 100
    out = {}
    for task, point in points.items():
        boot = boots[task][np.isfinite(boots[task])]
        lo, hi = np.percentile(boot, [alpha, 100 - alpha]) if boot.size else (np.nan, np.nan)
        out[task] = (point, float(lo), float(hi))
    return out


def expansion(units: int, level: float) -> float:
    """How much wider than the plain percentile interval a bootstrap from `units` units is
    made: sqrt(n/(n-1)) t_{n-1} / z at the interval's level (1 as n grows)."""
    if units < 2:
        return 1.0  # one unit: nothing varies at that level, the draws are all there is
    q = 1 - (1 - level) / 2
    return float(np.sqrt(units / (units - 1)) * student_t.ppf(q, units - 1) / norm.ppf(q))


def _side_means(
    df: pd.DataFrame,
    column: str,
    prompt_times: np.ndarray,
    index: dict,
    rng: np.random.Generator,
) -> np.ndarray:
    """(B,) one side's mean of `column` in each draw: runs and seeds drawn (`run_times`),
    prompts as `prompt_times` (B, P) says, outputs within each cell drawn again."""
    num_boot = len(prompt_times)
    runs = df.assign(**{k: df.get(k, 0) for k in (RUN, SEED)})
    run_times = _run_times(runs[[RUN, SEED]].drop_duplicates(), num_boot, rng)
    sums, counts = np.zeros(num_boot), np.zeros(num_boot)
    for (run, s, prompt), cell in runs.groupby([RUN, SEED, "prompt"], sort=True):
        times = run_times[(run, s)] * prompt_times[:, index[prompt]]
        values = cell[column].to_numpy(float)
        sums += _resampled_sums(values, times, rng)
        counts += times * len(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _run_times(runs: pd.DataFrame, num_boot: int, rng: np.random.Generator) -> dict:
    """{(run, seed): (B,) copies in each draw}: runs drawn with replacement, then each drawn
    run's sampling seeds with replacement."""
    names = sorted(runs[RUN].unique())
    drawn = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=num_boot)
    out = {}
    for j, name in enumerate(names):
        seeds = sorted(runs.loc[runs[RUN] == name, SEED])
        p = np.full(len(seeds), 1 / len(seeds))
        # each copy of the run draws len(seeds) seeds; their sum over copies is one multinomial
        times = np.stack([rng.multinomial(n * len(seeds), p) for n in drawn[:, j]])  # (B, S)
        out.update({(name, s): times[:, k] for k, s in enumerate(seeds)})
    return out


def _resampled_sums(values: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) for each draw, the sum over `times[b]` copies of a cell, each its outputs drawn
    again with replacement."""
    total = int(times.sum())
    copies = values[rng.integers(0, len(values), (total, len(values)))].sum(axis=1)  # (total,)
    owner = np.repeat(np.arange(len(times)), times)  # which draw each copy belongs to
    return np.bincount(owner, weights=copies, minlength=len(times))
