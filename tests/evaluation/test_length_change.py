"""The "not shorter" half of the claim, and the quality cost: mean length and quality change per
model, with a prompt-cluster interval."""

import numpy as np
import pandas as pd

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.tables import length_change_table, quality_change_table


def outputs(model: str, words_by_prompt: dict[str, list[int]], task: str = "aut") -> pd.DataFrame:
    rows = [{"model": model, "task": task, "source_prompt_id": p, "n_words": w}
            for p, ws in words_by_prompt.items() for w in ws]  # fmt: skip
    return pd.DataFrame(rows)


def test_longer_model_has_positive_change_with_interval_around_it():
    rng = np.random.default_rng(0)
    base = {f"p{i}": list(rng.integers(40, 60, 10)) for i in range(15)}
    longer = {p: [w + 10 for w in ws] for p, ws in base.items()}
    df = pd.concat([outputs("base", base), outputs("tuned", longer)])
    table = length_change_table(df, EvalConfig(num_bootstrap=300), "base")
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
    table = length_change_table(df, EvalConfig(num_bootstrap=300), "base").set_index("model")
    even, lumpy = table[table.task == "all"].loc["even"], table[table.task == "all"].loc["lumpy"]
    assert np.isclose(even.delta_words, 5.0) and np.isclose(lumpy.delta_words, 5.0)
    assert even.ci_high - even.ci_low < 1e-9 < lumpy.ci_high - lumpy.ci_low


def test_quality_change_leaves_out_unscored_outputs_and_has_the_same_interval_rule():
    rng = np.random.default_rng(1)
    base = outputs("base", {f"p{i}": [50] * 8 for i in range(12)}).assign(
        quality=lambda d: rng.normal(-2.0, 0.2, len(d))
    )
    tuned = base.assign(model="tuned", quality=base.quality - 0.5)
    tuned.loc[tuned.index[:8], "quality"] = np.nan  # one prompt's outputs not scored
    table = quality_change_table(pd.concat([base, tuned]), EvalConfig(num_bootstrap=300), "base")
    row = table[table.task == "all"].iloc[0]
    scored = tuned.quality.notna()
    assert np.isclose(row.delta_quality, tuned.quality[scored].mean() - base.quality.mean())
    assert row.ci_low < row.delta_quality < row.ci_high < 0
    assert list(table.columns[:5]) == ["model", "task", "base_quality", "quality",
                                       "delta_quality"]  # fmt: skip
