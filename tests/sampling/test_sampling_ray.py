"""The sampling stage on a real local Ray: an actor pool of two engines of half a (logical)
GPU each, whose text matches a direct run's, and the CLI."""

import os
import time

import pandas as pd
import pytest
import torch

from diversens.cli import main
from diversens.jobs.dataflow import generate_candidates, prompts_dataset
from diversens.prompts import eval_prompts
from diversens.sampling import SampleStage, SamplingConfig
from diversens.sampling.config import CPU_ENGINE_OVERHEAD_GIB

pytestmark = pytest.mark.slow


def test_two_actors_share_the_work_and_match_a_direct_run(ray_local, monkeypatch):
    class PidStage(SampleStage):  # defined here so Ray pickles it by value
        def process(self, batch):
            import ray

            gpus = ray.get_runtime_context().get_assigned_resources().get("GPU")
            return super().process(batch).assign(actor_pid=os.getpid(), actor_gpus=gpus)

    # Ray Data dispatches once one actor is up; on 2 busy cores the second vLLM engine can start
    # after the first has run every batch. Wait for both, so the test checks the sharing.
    import ray.data

    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 600)

    # Shaped as two engines sharing a GPU (the session's GPUs are logical, the models run on
    # the CPU): half a GPU and half a CPU each, and GPU memory shares that fit together.
    cfg = SamplingConfig(max_new_tokens=10, prompts_per_chunk=1, min_actors=2, max_actors=2,
                         num_cpus_per_actor=0.5, num_gpus_per_actor=0.5,
                         gpu_memory_utilization=0.45)  # fmt: skip
    prompts = eval_prompts().iloc[[0, 1, 2, 17]].reset_index(drop=True)
    out = generate_candidates(prompts_dataset(prompts, cfg), cfg, stage_cls=PidStage).to_pandas()

    assert sorted(out["prompt_id"]) == sorted(prompts["prompt_id"])
    assert out["actor_pid"].nunique() == 2, "both actors of the pool should have run batches"
    assert set(out["actor_gpus"]) == {0.5}
    for r in out.itertuples():
        assert len(r.responses) == 4 and all(r.responses) and len(set(r.responses)) > 1
    # Seeds are per request: which actor ran a batch changes no text. Same batches (one prompt)
    # and the actors' one torch thread, so even float rounding matches.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stage = SampleStage(cfg)
        direct = pd.concat([stage(prompts.iloc[[i]]) for i in range(len(prompts))])
    finally:
        torch.set_num_threads(threads)
    direct = direct.set_index("prompt_id")
    got = out.set_index("prompt_id").loc[direct.index]
    assert got["responses"].map(list).tolist() == direct["responses"].tolist()


def test_cli_generate_writes_candidates_in_prompt_order(ray_local, tmp_path, capsys):
    src = tmp_path / "prompts.jsonl"
    pd.DataFrame(
        {"prompt": ["Name three fruits.", "Describe rain in one sentence.", "Say hello."]}
    ).to_json(src, orient="records", lines=True)
    out = tmp_path / "cands.parquet"
    argv = ["generate", str(src), "-o", str(out), "--sampling.max_new_tokens", "8",
            "--sampling.prompts_per_chunk", "1"]  # fmt: skip
    assert main([*argv, "--sampling.num_samples_per_prompt", "3", "--sampling.seed", "5"]) == 0
    first = capsys.readouterr().out
    assert "wrote 3 prompts x 3 candidates" in first and "chunks: 3 sampled, 0 reused" in first
    df = pd.read_parquet(out)
    assert [m[0]["content"] for m in df["messages"]] == [
        "Name three fruits.",
        "Describe rain in one sentence.",
        "Say hello.",
    ]
    assert df["turn"].map(list).tolist() == [[1, 1, 2]] * 3
    assert set(df["task"]) == {"custom"}
    assert not list(tmp_path.glob(".cands.parquet.*"))  # no temporary left behind

    # A rerun with every chunk kept samples nothing (no engine starts) and gives the same rows.
    # A partial resume, one chunk lost: tests/jobs/test_resume.py and test_chunks.py.
    assert main([*argv, "--sampling.num_samples_per_prompt", "3", "--sampling.seed", "5"]) == 0
    assert "chunks: 0 sampled, 3 reused" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)


def test_engine_that_cannot_start_is_one_line_naming_the_option(ray_local, tmp_path, capsys):
    """vLLM refuses a KV cache larger than the machine's RAM: the actor's start-up error reaches
    the console as one line naming the option, exit 2, no output, and no restart storm."""
    out = tmp_path / "c.parquet"
    argv = ["generate", "--prompts.split", "eval", "--prompts.limit", "1",
            "--sampling.max_new_tokens", "4", "--sampling.kv_cache_gib", "100000",
            "--sampling.memory_gib_per_actor", "0", "-o", str(out)]  # fmt: skip
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("diversens generate: error: vLLM could not start"), err
    assert "sampling.kv_cache_gib" in last and "not enough memory" in last
    assert not out.exists()
    assert time.monotonic() - start < 240, "a failed start must not be retried for minutes"


def test_engine_pool_that_cannot_fit_the_cluster_fails_before_waiting(ray_local, tmp_path, capsys):
    out = tmp_path / "c.parquet"
    argv = ["generate", "--prompts.split", "eval", "--prompts.limit", "1",
            "--sampling.kv_cache_gib", "100000",
            "-o", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    need = f"{100_000 + CPU_ENGINE_OVERHEAD_GIB:g}"  # the KV cache asked for + the process
    assert (
        f"need {need} GiB of memory at once (sampling {need}: min_actors x memory_gib_per_actor)"
        in err
    ), err
    assert not out.exists()
