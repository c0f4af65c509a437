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


def test_a_run_from_before_eval_seeds_reads_as_reference_and_null():
    """Its config had noise_seeds and its outputs `base@seed<S>` labels: the base at the
    sampling seed is the reference, `base@seed1` the base at eval seed 1, and the tuned models
    stay at the reference's seed (the report flags them as not like-for-like)."""
    import pandas as pd

    from diversens.config import from_dict
    from diversens.jobs.evaluate import from_noise_seeds, seeds_of_noise_seeds

    stored = {"models": ["base=m", "tuned=/t"], "sampling": {"seed": 0}, "noise_seeds": [1]}
    cfg = from_dict(EvalConfig, seeds_of_noise_seeds(stored))
    assert (cfg.map_seeds, cfg.seeds) == ([0], [1])
    outputs = pd.DataFrame({"model": ["base", "base@seed1", "tuned", "tuned@seed1x"]})
    got = from_noise_seeds(outputs, cfg)
    assert list(zip(got.model, got.seed, strict=True)) == [
        ("base", 0), ("base", 1), ("tuned", 0), ("tuned@seed1x", 0)]  # fmt: skip
