"""The "not shorter" half of the claim, and the quality cost: mean length and quality change per
model against the reference (the base at its map seed 0; models at eval seed 1), with a
prompt-cluster interval."""

import numpy as np
import pandas as pd

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.tables import length_change_table, quality_change_table


def outputs(model: str, words_by_prompt: dict[str, list[int]], task: str = "aut",
            seed: int | None = None) -> pd.DataFrame:  # fmt: skip
    """A model's outputs; the base's at the map seed (the reference) unless `seed` is given."""
    seed = (0 if model == "base" else 1) if seed is None else seed
    rows = [{"model": model, "seed": seed, "task": task, "source_prompt_id": p, "n_words": w}
            for p, ws in words_by_prompt.items() for w in ws]  # fmt: skip
    return pd.DataFrame(rows)


def test_longer_model_has_positive_change_with_interval_around_it():
    rng = np.random.default_rng(0)
    base = {f"p{i}": list(rng.integers(40, 60, 10)) for i in range(15)}
    longer = {p: [w + 10 for w in ws] for p, ws in base.items()}
    df = pd.concat([outputs("base", base), outputs("tuned", longer)])
    table = length_change_table(df, EvalConfig(num_bootstrap=300))
    row = table[(table.task == "all")].iloc[0]
    assert row.model == "tuned" and np.isclose(row.delta_words, 10.0)
    assert row.ci_low < 10.0 < row.ci_high
    assert np.isclose(row.relative, 10.0 / row.base_words)
    assert set(table.task) == {"all", "aut"}


def test_interval_widens_when_prompts_differ_in_length():
    # Same outputs per prompt count, but one model's change is carried by a few prompts:
    # resampling prompts must show that uncertainty.
    base = {f"p{i}": [50] * 10 for i in range(10)}
    even = {p: [55] * 10 for p in base}
    lumpy = {p: [100] * 10 if i == 0 else [50] * 10 for i, p in enumerate(base)}
    df = pd.concat([outputs("base", base), outputs("even", even), outputs("lumpy", lumpy)])
    table = length_change_table(df, EvalConfig(num_bootstrap=300)).set_index("model")
    even, lumpy = table[table.task == "all"].loc["even"], table[table.task == "all"].loc["lumpy"]
    assert np.isclose(even.delta_words, 5.0) and np.isclose(lumpy.delta_words, 5.0)
    assert even.ci_high - even.ci_low < 1e-9 < lumpy.ci_high - lumpy.ci_low


def test_quality_change_leaves_out_unscored_outputs_and_has_the_same_interval_rule():
    rng = np.random.default_rng(1)
    base = outputs("base", {f"p{i}": [50] * 8 for i in range(12)}).assign(
        quality=lambda d: rng.normal(-2.0, 0.2, len(d))
    )
    tuned = base.assign(model="tuned", seed=1, quality=base.quality - 0.5)
    tuned.loc[tuned.index[:8], "quality"] = np.nan  # one prompt's outputs not scored
    table = quality_change_table(pd.concat([base, tuned]), EvalConfig(num_bootstrap=300))
    row = table[table.task == "all"].iloc[0]
    scored = tuned.quality.notna()
    assert np.isclose(row.delta_quality, tuned.quality[scored].mean() - base.quality.mean())
    assert row.ci_low < row.delta_quality < row.ci_high < 0
    assert list(table.columns[:5]) == ["model", "task", "base_quality", "quality",
                                       "delta_quality"]  # fmt: skip


def test_the_base_at_the_eval_seeds_is_the_null_row_beside_the_tuned_models():
    rng = np.random.default_rng(3)
    words = {f"p{i}": list(rng.integers(40, 60, 10)) for i in range(15)}
    again = {p: list(rng.integers(40, 60, 10)) for p in words}
    df = pd.concat(
        [
            outputs("base", words),
            outputs("base", again, seed=1),
            outputs("tuned", {p: [w + 20 for w in ws] for p, ws in again.items()}),
        ]
    )
    table = length_change_table(df, EvalConfig(num_bootstrap=300))
    rows = table[table.task == "all"].set_index("model")
    assert list(rows.index) == ["base", "tuned"]  # the null first
    assert rows.loc["base"].ci_low < 0 < rows.loc["base"].ci_high
    assert rows.loc["tuned"].ci_low > 10


def test_untruncated_columns_leave_out_outputs_that_hit_the_cap():
    base = outputs("base", {f"p{i}": [50] * 10 for i in range(6)})
    tuned = outputs("tuned", {f"p{i}": [60] * 5 + [192] * 5 for i in range(6)})
    tuned["finish_reason"] = np.where(tuned.n_words == 192, "length", "stop")
    row = length_change_table(pd.concat([base, tuned]), EvalConfig(num_bootstrap=100)).iloc[0]
    assert np.isclose(row.delta_words, (60 + 192) / 2 - 50)
    assert np.isclose(row.delta_untruncated, 10.0)
    assert row.ci_low_untruncated <= 10.0 <= row.ci_high_untruncated


def test_training_seeds_of_a_strategy_are_one_comparison_with_their_spread():
    base = {f"p{i}": [50] * 10 for i in range(8)}
    df = pd.concat([outputs("base", base), outputs("dns", {p: [60] * 10 for p in base}),
                    outputs("dns@s1", {p: [70] * 10 for p in base})])  # fmt: skip
    table = length_change_table(df, EvalConfig(num_bootstrap=200))
    row = table[table.task == "all"].iloc[0]
    assert list(table.model.unique()) == ["dns"] and row.runs == 2
    assert np.isclose(row.delta_words, 15.0) and np.isclose(row.run_sd, np.std([10, 20], ddof=1))
    assert row.ci_low < 15.0 < row.ci_high  # the runs disagree: the interval shows it
