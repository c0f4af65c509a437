"""EvalConfig's model runs: labels, and the base model again per noise seed."""

import pytest

from diversens.evaluation.config import EvalConfig
from diversens.sampling.config import SamplingConfig


def test_noise_seeds_add_the_base_model_resampled_under_its_own_labels():
    cfg = EvalConfig(models=["base=smollm2-135m-instruct", "tuned=/x/model"], noise_seeds=[1, 7])
    assert cfg.model_runs() == [
        ("base", "smollm2-135m-instruct", 0),
        ("tuned", "/x/model", 0),
        ("base@seed1", "smollm2-135m-instruct", 1),
        ("base@seed7", "smollm2-135m-instruct", 7),
    ]
    assert [label for label, _ in cfg.labelled_models()][0] == "base"  # the decile map's model


@pytest.mark.parametrize("seeds", [[0], [3, 3]])
def test_a_noise_seed_must_differ_from_the_sampling_seed_and_the_others(seeds):
    with pytest.raises(ValueError, match="noise_seeds must be distinct"):
        EvalConfig(sampling=SamplingConfig(seed=0), noise_seeds=seeds)
