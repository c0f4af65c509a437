"""GPU scheduling without a GPU: the session's local Ray has 2 logical GPUs, and generate-pairs
and eval run end to end with every pool asking for GPUs (engine 1, embedder and quality 0.5 each,
so together they fill both), vLLM's CPU build inside the engine actors. Ray Data refuses a GPU
pool without a batch size, so this is the path a GPU cluster takes. Eval's run is
tests/jobs/test_evaluate.py's (GPU_POOLS): one run checks both. Two engines of half a GPU
sharing the work, and giving a direct run's text: tests/sampling/test_sampling_ray.py."""

import json

import pandas as pd
import pytest

from diversens import config
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import run as run_pairs
from diversens.prompts.loading import load_prompts

pytestmark = pytest.mark.slow

GPU_POOLS = {
    "sampling": {"engine": "vllm", "num_gpus_per_actor": 1, "max_new_tokens": 40,
                 "temperature": 0.8, "prompts_per_chunk": 2, "max_model_len": 1024},
    "scoring": {"embed_pool": {"num_gpus_per_actor": 0.5},
                "quality_pool": {"num_gpus_per_actor": 0.5},
                "quality": {"strict_compliance": False}},
    "selection": {"num_pairs": 20},
    "compare_strategies": ["diverse-ns", "random"],
}  # fmt: skip
TOPICS = ("the sea", "an old clock", "a rainy city", "a tired dog", "a red kite")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    src = tmp_path_factory.mktemp("gpu") / "prompts.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Write two short sentences about {t}."}) + "\n"
                           for t in TOPICS))  # fmt: skip
    return load_prompts(src)


def test_generate_pairs_with_gpu_pools(ray_local, prompts, tmp_path):
    summary = run_pairs(prompts, config.from_dict(GeneratePairsConfig, GPU_POOLS), tmp_path)
    cols = ["prompt_id", "responses", "engine"]
    got = pd.read_parquet(tmp_path / "scored", columns=cols).set_index("prompt_id").sort_index()
    assert list(got.index) == sorted(prompts.prompt_id) and set(got.engine) == {"vllm"}
    assert all(len(r) == 4 and all(r) for r in got.responses)
    assert summary["candidates"] == 4 * len(prompts) and summary["prompts_quarantined"] == {}
    for strategy, n in summary["pairs"].items():
        assert n + sum(summary["prompts_without_pair"][strategy].values()) == len(prompts)
