"""EvalConfig's model runs: the base at the map seeds (the reference), then every model, the
base included, at every eval seed."""

import pytest

from diversens.evaluation.config import EvalConfig


def test_every_model_is_sampled_at_the_eval_seeds_and_the_base_also_at_the_map_seeds():
    cfg = EvalConfig(models=["base=smollm2-135m-instruct", "tuned=/x/model"], map_seeds=[0],
                     seeds=[1, 7])  # fmt: skip
    assert cfg.model_runs() == [
        ("base", "smollm2-135m-instruct", 0),
        ("base", "smollm2-135m-instruct", 1),
        ("base", "smollm2-135m-instruct", 7),
        ("tuned", "/x/model", 1),
        ("tuned", "/x/model", 7),
    ]
    assert cfg.base == "base" and cfg.num_runs(tuned=1) == len(cfg.model_runs())


@pytest.mark.parametrize(("seeds", "map_seeds", "message"), [
    ([0], [0], "disjoint"), ([3, 3], [0], "distinct"), ([], [0], "one or more"),
    ([1], [], "one or more")])  # fmt: skip
def test_eval_seeds_are_distinct_and_apart_from_the_map_seeds(seeds, map_seeds, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(seeds=seeds, map_seeds=map_seeds)
