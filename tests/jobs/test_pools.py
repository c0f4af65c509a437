"""GPU scheduling without a GPU: the session's local Ray has 2 logical GPUs, and generate-pairs
and eval run end to end with every pool asking for GPUs (engine 1, embedder and quality 0.5 each,
so together they fill both), vLLM's CPU build inside the engine actors. Ray Data refuses a GPU
pool without a batch size, so this is the path a GPU cluster takes. Eval's run is
tests/jobs/test_evaluate.py's (GPU_POOLS): one run checks both.

Determinism: the same config and seeds give identical candidates across two runs and across
engine pool sizes (one engine actor, or two sharing the work)."""

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


def pairs_run(prompts, out, **sampling):
    data = {**GPU_POOLS, "sampling": {**GPU_POOLS["sampling"], **sampling}}
    return run_pairs(prompts, config.from_dict(GeneratePairsConfig, data), out)


def candidates(out):
    cols = ["prompt_id", "responses", "turn", "finish_reason", "n_tokens", "engine"]
    return pd.read_parquet(out / "scored", columns=cols).set_index("prompt_id").sort_index()


@pytest.fixture(scope="module")
def first(ray_local, prompts, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs-a")
    return pairs_run(prompts, out), out


def test_generate_pairs_with_gpu_pools(first, prompts):
    summary, out = first
    got = candidates(out)
    assert list(got.index) == sorted(prompts.prompt_id) and set(got.engine) == {"vllm"}
    assert all(len(r) == 4 and all(r) for r in got.responses)
    assert summary["candidates"] == 4 * len(prompts) and summary["prompts_quarantined"] == {}
    for strategy, n in summary["pairs"].items():
        assert n + sum(summary["prompts_without_pair"][strategy].values()) == len(prompts)


def test_second_run_with_another_pool_size_gives_the_same_candidates(first, prompts, tmp_path):
    _, out = first
    # A second run, with two engines of half a GPU and half a CPU each (the scorers take the
    # rest of the cluster); two engines on a GPU must fit its memory together (on CPU the KV
    # cache is set in GiB and the share changes nothing).
    pairs_run(
        prompts,
        tmp_path / "two",
        min_actors=2,
        max_actors=2,
        num_cpus_per_actor=0.5,
        num_gpus_per_actor=0.5,
        gpu_memory_utilization=0.45,
    )
    pd.testing.assert_frame_equal(candidates(tmp_path / "two"), candidates(out))
