"""The eval's intervals on synthetic outputs whose truth is known: with nothing to find (the
reference and the eval side drawn alike, prompts carrying strong effects on length, diversity
and quality, tasks of one prompt x 100 samples and of many prompts x 10) at most 10% of the 95%
intervals exclude 0, per measure; a real shift is found."""

import numpy as np
import pandas as pd

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.coverage import NULL, coverage, null_tables, seed_pairs

TASKS = {"dat": (1, 100), "pgt": (1, 100), "aut": (15, 10), "cwt": (7, 10)}  # prompts, samples
CFG = EvalConfig(dd_measures=["ttr"], num_bootstrap=200, min_outputs_per_bucket=20)


def prompt_effects(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Per prompt: its mean length, TTR and quality (what the prompt decides)."""
    return {f"{t}{p}": (rng.uniform(30, 120), rng.normal(0.6, 0.08), rng.normal(-2, 0.3))
            for t, (n, _) in TASKS.items() for p in range(n)}  # fmt: skip


def sample(rng, effects, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """One seed's outputs: per prompt its samples around the prompt's effects; `shift` raises
    TTR at equal length."""
    rows = []
    for task, (n, k) in TASKS.items():
        for p in range(n):
            words, ttr, quality = effects[f"{task}{p}"]
            lengths = np.maximum(rng.normal(words, 15, k).round(), 3)
            # Longer answers repeat more words: TTR falls with length, as in real text.
            ttrs = ttr - 0.002 * (lengths - words) + shift + rng.normal(0, 0.05, k)
            rows += [{"task": task, "source_prompt_id": f"{task}{p}", "seed": seed,
                      "prompt_id": f"{task}{p}#{i}", "n_words": lengths[i], "ttr": ttrs[i],
                      "quality": rng.normal(quality, 0.2)} for i in range(k)]  # fmt: skip
    return pd.DataFrame(rows).assign(model="base", response="x")


def test_null_intervals_exclude_zero_at_most_one_time_in_ten_per_measure():
    rng = np.random.default_rng(11)
    datasets = []
    for _ in range(12):
        effects = prompt_effects(rng)  # new prompts each time: prompts are drawn too
        base = pd.concat([sample(rng, effects, s) for s in range(3)], ignore_index=True)
        datasets += seed_pairs(base)  # 3 pairs of seeds
    table, rows = coverage(datasets, CFG, across=False)
    assert set(table.measure) == {"ttr", "words", "quality"}
    assert (table.intervals == 36 * 5).all()  # 4 tasks and the all-task row per dataset
    assert (table.share <= 0.10).all(), table


def test_a_diversity_shift_at_equal_length_is_found():
    rng = np.random.default_rng(12)
    effects = prompt_effects(rng)
    data = pd.concat([sample(rng, effects, 0),
                      sample(rng, effects, 1, shift=0.06).assign(model=NULL)])  # fmt: skip
    rows = null_tables(data, CFG, across=False).set_index(["measure", "task"])
    assert rows.loc[("ttr", "all")].ci_low > 0.5  # deciles up at equal length
    assert rows.loc[("words", "all")].ci_low < 0 < rows.loc[("words", "all")].ci_high


def test_seed_groups_split_the_seeds_once_each_and_keep_them():
    from diversens.evaluation.coverage import seed_groups

    base = pd.DataFrame({"seed": np.repeat(np.arange(6), 2), "x": 0.0, "model": "base"})
    groups = seed_groups(base, 3)
    assert len(groups) == 10  # C(6, 3) / 2: each split once
    for _, data in groups:
        ref, other = (set(data.seed[data.model == m]) for m in ("base", NULL))
        assert len(ref) == len(other) == 3 and not ref & other
