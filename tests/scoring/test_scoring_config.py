"""One ScoringConfig for the pairs and the eval jobs: both enforce the same checks."""

import pytest

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs.config import GeneratePairsConfig


@pytest.mark.parametrize("cls", [GeneratePairsConfig, EvalConfig])
@pytest.mark.parametrize(
    ("scoring", "option"),
    [
        ({"measure": {"text_field": "response"}}, "scoring.measure.text_field"),
        ({"measure": {"device": "cuda"}}, "scoring.measure.device"),
        ({"quality": {"device": "cuda:1"}}, "scoring.quality.device"),
    ],
)
def test_both_jobs_refuse_the_same_scoring_mistakes(cls, scoring, option):
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(cls, {"scoring": scoring})
    assert e.value.option == option


def test_scoring_models_follow_the_scorer_and_the_embedder():
    cfg = config.from_dict(GeneratePairsConfig, {"scoring": {"quality": {"scorer": "none"}}})
    assert cfg.models() == [cfg.sampling.model, cfg.scoring.measure.embedder]
    lite = config.from_dict(
        GeneratePairsConfig,
        {"selection": {"strategy": "diverse-ns-lite"}, "compare_strategies": ["diverse-ns-lite"]},
    )
    assert lite.models() == [lite.sampling.model, lite.scoring.quality.reference_model]


def test_gpu_requests_are_named_by_the_option_that_asks():
    cfg = config.from_dict(
        GeneratePairsConfig,
        {"sampling": {"engine": "vllm", "num_gpus_per_actor": 1},
         "scoring": {"embed_pool": {"num_gpus_per_actor": 0.25}}},
    )  # fmt: skip
    assert cfg.gpus("pairs.") == {
        "pairs.sampling.num_gpus_per_actor": 1,
        "pairs.scoring.embed_pool.num_gpus_per_actor": 0.25,
        "pairs.scoring.quality_pool.num_gpus_per_actor": 0.0,
    }
