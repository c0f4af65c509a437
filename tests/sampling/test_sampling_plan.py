"""Sequential-prompting plan, config checks and row assembly, with a fake engine (no model)."""

import importlib.util
import json
import types

import pandas as pd
import pytest

from diversens.cli import main
from diversens.errors import UserError
from diversens.sampling import (
    Completion,
    Engine,
    SampleStage,
    SamplingConfig,
    candidate_plan,
    derive_seed,
    followup_messages,
)
from diversens.sampling.engines import check_engine_available, vllm_completion


class EchoEngine(Engine):
    """Answers with the last user message, the seed and the sample index; records requests."""

    name = "echo"

    def __init__(self):
        self.calls = []

    def generate(self, requests):
        self.calls.append(list(requests))
        return [
            [
                Completion(f"{r.messages[-1]['content'][:12]}|{r.seed}|{j}", "stop", 3)
                for j in range(r.n)
            ]
            for r in requests
        ]


def _prompts():
    return pd.DataFrame(
        {
            "prompt_id": ["p1", "p2"],
            "task": ["cwt", "custom"],
            "messages": [
                [{"role": "user", "content": "Tell a story."}],
                [{"role": "user", "content": "Say hi."}],
            ],
        }
    )


def test_candidate_plan():
    assert candidate_plan(4, 2) == [(1, -1), (1, -1), (2, 0), (2, 1)]
    assert candidate_plan(5, 2) == [(1, -1), (1, -1), (2, 0), (2, 1), (2, 0)]
    assert candidate_plan(3, 3) == [(1, -1)] * 3
    assert candidate_plan(3, 1) == [(1, -1), (2, 0), (2, 0)]


def test_config_defaults_and_checks():
    cfg = SamplingConfig()
    assert (cfg.num_samples_per_prompt, cfg.num_first_turn) == (4, 2)
    assert SamplingConfig(num_samples_per_prompt=5).num_first_turn == 3
    assert cfg.engine == "vllm"
    assert SamplingConfig(engine="transformers").gpus_per_actor() == 0
    half = SamplingConfig(num_gpus_per_actor=0.5, gpu_memory_utilization=0.45)
    assert half.gpus_per_actor() == 0.5


def test_vllm_gpus_default_to_tensor_parallel_size_except_on_its_cpu_build(monkeypatch):
    from diversens.sampling import config as sampling_config

    cfg = SamplingConfig(engine="vllm", tensor_parallel_size=2)
    monkeypatch.setattr(sampling_config, "vllm_is_cpu_build", lambda: False)
    assert cfg.gpus_per_actor() == 2
    monkeypatch.setattr(sampling_config, "vllm_is_cpu_build", lambda: True)
    assert cfg.gpus_per_actor() == 0


def test_vllm_options_take_cpu_defaults_only_where_unset():
    cpu = SamplingConfig().vllm_options(on_cpu=True)
    assert cpu["enforce_eager"] is True and cpu["enable_chunked_prefill"] is False
    assert cpu["kv_cache_memory_bytes"] == 2 * 2**30 and cpu["max_model_len"] == 4096
    gpu = SamplingConfig().vllm_options(on_cpu=False)
    assert cpu["enable_prefix_caching"] is False  # rows must not depend on the engine history
    assert gpu["enforce_eager"] is False and "kv_cache_memory_bytes" not in gpu
    assert "enable_chunked_prefill" not in gpu and gpu["gpu_memory_utilization"] == 0.9
    mine = SamplingConfig(
        enforce_eager=False, kv_cache_gib=0.5, max_num_seqs=8, enable_prefix_caching=True
    ).vllm_options(on_cpu=True)
    assert mine["enforce_eager"] is False and mine["kv_cache_memory_bytes"] == 2**29
    assert mine["max_num_seqs"] == 8 and mine["enable_prefix_caching"] is True


def test_engine_pool_reserves_ram_for_a_cpu_vllm_engine():
    cpu = SamplingConfig(engine="vllm", num_gpus_per_actor=0)
    assert cpu.pool().memory_gib == 5.0  # 2 GiB KV cache + the process
    assert SamplingConfig(num_gpus_per_actor=0, kv_cache_gib=1).pool().memory_gib == 4.0
    assert SamplingConfig(num_gpus_per_actor=1).pool().memory_gib == 0.0  # KV cache on the GPU
    assert SamplingConfig(engine="transformers").pool().memory_gib == 0.0
    assert SamplingConfig(memory_gib_per_actor=6).pool().memory_gib == 6.0
    pool = SamplingConfig(prompts_per_chunk=16, max_restarts=2).pool()
    assert (pool.batch_size, pool.max_restarts) == (16, 2)


def test_engine_actor_takes_enough_chunks_to_fill_its_batch():
    # 12 prompts x 6 first turns = 72 sequences a chunk: 4 chunks fill vLLM's 256, one more
    # may be ending. The actor runs them all at once and is sent no more.
    pool = SamplingConfig(prompts_per_chunk=12, num_samples_per_prompt=12, num_first_turn=6).pool()
    assert pool.concurrent_batches == pool.max_tasks_in_flight == 5
    assert SamplingConfig(prompts_per_chunk=64, max_num_seqs=1024).pool().concurrent_batches == 9
    assert SamplingConfig(prompts_per_chunk=512).pool().concurrent_batches == 2
    assert SamplingConfig(prompts_per_chunk=1).pool().concurrent_batches == 16  # at most
    assert SamplingConfig(chunks_in_flight=3).pool().concurrent_batches == 3
    transformers = SamplingConfig(engine="transformers", prompts_per_chunk=1).pool()
    assert transformers.concurrent_batches == transformers.max_tasks_in_flight == 1


def test_config_checks():
    cfg = SamplingConfig()
    assert cfg.followup("unknown") == cfg.followups["custom"]
    for bad in (
        {"engine": "tgi"},
        {"num_first_turn": 5},
        {"top_p": 0},
        {"temperature": -1},
        {"min_actors": 3, "max_actors": 2},
        {"max_new_tokens": 0},
        {"max_model_len": 0},
        {"kv_cache_gib": 0},
        {"kv_cache_gib": float("inf")},
        {"max_num_seqs": 0},
        {"dtype": "int8"},
        {"max_new_tokens_per_task": {"dta": 64}},  # a typo must not silently use the default
        {"max_new_tokens_per_task": {"dat": 0}},
        {"followups": {"dta": "Another one."}},
        {"followups": {"aut": "  "}},
        {"frequency_penalty": 2.5},
        {"min_p": 1.0},
        {"presence_penalty": -3},
    ):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


def test_per_task_caps_from_the_command_line_form():
    from diversens.config import from_dict

    caps = {"max_new_tokens": 100, "max_new_tokens_per_task": "dat=40,cwt=200"}
    cfg = from_dict(SamplingConfig, caps)
    assert [cfg.max_tokens(t) for t in ("dat", "pgt", "cwt", "custom")] == [40, 100, 200, 100]
    assert cfg.sampling_params("dat")["max_new_tokens"] == 40


def test_followups_from_the_command_line_form_keep_the_other_defaults():
    from diversens.config import from_dict
    from diversens.prompts import default_followups

    wording = "Other uses, please, in the same format."
    cfg = from_dict(SamplingConfig, {"followups": f"aut={wording},cwt=Another story."})
    assert cfg.followup("aut") == wording  # the commas stay in the message
    assert cfg.followup("cwt") == "Another story."
    assert cfg.followup("dat") == default_followups()["dat"]
    assert cfg.followup("unknown") == default_followups()["custom"]
    assert SamplingConfig().followups == default_followups()


def test_every_request_carries_its_tasks_cap_and_rows_record_it():
    cfg = SamplingConfig(max_new_tokens=50, max_new_tokens_per_task={"cwt": 120})
    engine = EchoEngine()
    out = SampleStage(cfg, engine=engine)(_prompts())
    caps = {r.messages[0]["content"]: r.max_tokens for call in engine.calls for r in call}
    assert caps == {"Tell a story.": 120, "Say hi.": 50}  # first and second turns alike
    assert [json.loads(s)["max_new_tokens"] for s in out["sampling"]] == [120, 50]


def test_tensor_parallel_beyond_the_actors_gpus_is_refused(monkeypatch):
    """vLLM on GPU runs one worker per tensor-parallel rank: 4 ranks on an actor that reserves
    1 GPU would put them all on that one GPU."""
    from diversens.config import from_dict
    from diversens.sampling import config as sampling_config

    monkeypatch.setattr(sampling_config, "vllm_is_cpu_build", lambda: False)  # a GPU install
    bad = {"engine": "vllm", "tensor_parallel_size": 4, "num_gpus_per_actor": 1}
    with pytest.raises(UserError) as caught:
        from_dict(SamplingConfig, bad, prefix="sampling.")
    message = str(caught.value)
    assert message.startswith("option sampling.tensor_parallel_size: ")
    assert "num_gpus_per_actor" in message and "\n" not in message
    with pytest.raises(ValueError, match="num_gpus_per_actor is 0.5"):
        SamplingConfig(engine="vllm", tensor_parallel_size=2, num_gpus_per_actor=0.5)
    # Enough GPUs, GPUs left to the default, one rank on a shared GPU, or no GPU engine: fine.
    assert SamplingConfig(engine="vllm", tensor_parallel_size=4, num_gpus_per_actor=4)
    assert SamplingConfig(engine="vllm", tensor_parallel_size=4).gpus_per_actor() == 4
    assert SamplingConfig(engine="vllm", num_gpus_per_actor=0.5, gpu_memory_utilization=0.45)
    assert SamplingConfig(engine="vllm", tensor_parallel_size=4, num_gpus_per_actor=0)
    assert SamplingConfig(engine="transformers", tensor_parallel_size=4, num_gpus_per_actor=1)


def test_vllm_engines_sharing_a_gpu_must_fit_its_memory_together():
    """vLLM claims gpu_memory_utilization of the whole GPU and does not start where less is
    free: two engines of half a GPU at 0.9 each would leave the second unable to start."""
    from diversens.config import from_dict

    with pytest.raises(UserError) as caught:
        from_dict(SamplingConfig, {"engine": "vllm", "num_gpus_per_actor": 0.5}, "pairs.sampling.")
    message = str(caught.value)
    assert message.startswith("option pairs.sampling.num_gpus_per_actor: 0.5 puts 2 vLLM engines")
    assert "gpu_memory_utilization 0.9 " in message and "\n" not in message
    assert "set gpu_memory_utilization to 0.47 or less" in message
    # Engines per GPU are floor(1 / share): 0.3 packs 3 (0.99 > 0.95), 0.4 packs 2 (0.9).
    with pytest.raises(ValueError, match="puts 3 vLLM engines"):
        SamplingConfig(engine="vllm", num_gpus_per_actor=0.3, gpu_memory_utilization=0.33)
    assert SamplingConfig(engine="vllm", num_gpus_per_actor=0.4, gpu_memory_utilization=0.45)
    assert SamplingConfig(engine="vllm", num_gpus_per_actor=0.5, gpu_memory_utilization=0.45)
    assert SamplingConfig(engine="vllm", num_gpus_per_actor=0.25, gpu_memory_utilization=0.2375)
    # A whole GPU per engine, or an engine that is not vLLM, is not checked.
    assert SamplingConfig(engine="vllm", num_gpus_per_actor=1, gpu_memory_utilization=0.95)
    assert SamplingConfig(engine="transformers", num_gpus_per_actor=0.5, device="cuda")


def test_derive_seed_is_stable_and_spread():
    assert derive_seed(0, "p1", 1) == derive_seed(0, "p1", 1)
    assert len({derive_seed(s, "p1", 1) for s in range(100)}) == 100
    assert 0 <= derive_seed("x") < 2**63


def test_followup_messages_appends_answer_then_request():
    msgs = [{"role": "user", "content": "Q"}]
    assert followup_messages(msgs, "A", "Other?") == [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "Other?"},
    ]
    assert msgs == [{"role": "user", "content": "Q"}]  # input untouched


def test_stage_rows_with_fake_engine():
    engine = EchoEngine()
    cfg = SamplingConfig(num_samples_per_prompt=5, num_first_turn=2, seed=9)
    out = SampleStage(cfg, engine=engine)(_prompts())
    assert out["turn"].tolist() == [[1, 1, 2, 2, 2]] * 2
    assert out["parent"].tolist() == [[-1, -1, 0, 1, 0]] * 2
    first, second = engine.calls
    assert [r.n for r in first] == [2, 2]
    # Second turns grouped by parent: parent 0 has two, parent 1 one; each sees its parent answer.
    assert [r.n for r in second] == [2, 1, 2, 1]
    row = out.iloc[0]
    assert second[0].messages[1] == {"role": "assistant", "content": row["responses"][0]}
    assert second[1].messages[1] == {"role": "assistant", "content": row["responses"][1]}
    assert second[0].messages[2]["content"] == cfg.followups["cwt"]
    assert out.iloc[1]["responses"][2].startswith(cfg.followups["custom"][:12])
    # Candidates 2 and 4 are samples 0 and 1 of the same request (parent 0).
    assert row["responses"][2].endswith("|0") and row["responses"][4].endswith("|1")
    assert row["finish_reason"] == ["stop"] * 5 and row["truncated"] == [False] * 5
    assert row["engine"] == "echo" and row["model"] == cfg.model
    assert json.loads(row["sampling"])["seed"] == 9
    assert json.loads(row["sampling"])["followup"] == cfg.followups["cwt"]
    assert len(row["config_hash"]) == 16
    assert set(SampleStage.adds) <= set(out.columns)


def test_stage_names_missing_column():
    stage = SampleStage(SamplingConfig(), engine=EchoEngine())
    with pytest.raises(KeyError, match="messages"):
        stage(_prompts().drop(columns=["messages"]))


def test_selecting_missing_vllm_is_a_clear_error(tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else find_spec(n, *a)
    )
    with pytest.raises(UserError, match="needs vLLM"):
        check_engine_available(SamplingConfig(engine="vllm"))
    out = str(tmp_path / "c.parquet")
    assert (
        main(["generate", "--prompts.split", "eval", "--sampling.engine", "vllm", "-o", out]) == 2
    )
    err = capsys.readouterr().err
    assert "option sampling.engine 'vllm' needs vLLM" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize(
    ("finish", "stop_reason", "ids", "expected"),
    [
        ("stop", None, [5, 6, 2], ("stop", 2)),  # EOS kept in token_ids
        ("stop", 128008, [5, 6, 128008], ("stop", 2)),  # another stop token (<|eom_id|>)
        ("stop", "THE END", [5, 6, 7], ("stop", 3)),  # stop string: its tokens are text
        ("length", None, [5, 6, 7, 8], ("length", 4)),
    ],
)
def test_vllm_token_count_excludes_the_stop_token(finish, stop_reason, ids, expected):
    out = types.SimpleNamespace(text=" hi ", finish_reason=finish, stop_reason=stop_reason,
                                token_ids=ids)  # fmt: skip
    c = vllm_completion(out)
    assert (c.finish_reason, c.n_tokens, c.text) == (*expected, "hi")
