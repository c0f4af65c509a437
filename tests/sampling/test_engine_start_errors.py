"""A model the vLLM engine cannot load is one line (`EngineStartError`, exit code 2) from the
engine's constructor, as every other start-up failure is, not a traceback per engine actor.
The engine is built directly, without Ray; the model's config fails before any weight loads.
`sampling.engine_kwargs` reach vLLM's constructor as given; a key vLLM does not know is one line
too, before Ray starts. When vLLM starts (a double of `vllm.LLM` here), a model at an S3 URI is
already a local copy, and `sampling.reproducible` is in its environment."""

import json
import os
import types
from pathlib import Path

import pytest

from diversens.cli import main
from diversens.sampling import SamplingConfig
from diversens.sampling.engines import EngineCrashError, EngineStartError, vllm_start_error


@pytest.fixture
def vllm_engine(monkeypatch):
    pytest.importorskip("vllm")
    from diversens.sampling.engines import VLLMEngine

    # what the constructor sets for vLLM on CPU, undone after the test
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    return VLLMEngine


@pytest.mark.parametrize(
    "config_json, problem",
    [("{not json", "not a valid JSON file"), (json.dumps({"hidden_size": 8}), "model_type")],
    ids=["config-not-json", "config-without-model-type"],
)
def test_a_model_that_cannot_load_is_one_line(vllm_engine, tmp_path, config_json, problem):
    (tmp_path / "config.json").write_text(config_json)
    with pytest.raises(EngineStartError) as caught:
        vllm_engine(SamplingConfig(engine="vllm", model=str(tmp_path)))
    message = str(caught.value)
    assert "\n" not in message and problem in message, message
    assert "sampling.model" in message and repr(str(tmp_path)) in message
    assert caught.value.exit_code == 2  # the user's model, not a crash


def test_gated_or_unreachable_models_are_the_users_to_fix():
    cfg = SamplingConfig(engine="vllm", model="meta-llama/Llama-3.1-8B-Instruct")
    gated = OSError("You are trying to access a gated repo.\nMake sure to have access to it.")
    error = vllm_start_error(gated, cfg, on_cpu=False)
    assert type(error) is EngineStartError and "\n" not in str(error)
    assert "sampling.model" in str(error) and "HF_TOKEN" in str(error)
    # a system error (it has an errno) is not the model's fault
    full = OSError(28, "No space left on device")
    assert type(vllm_start_error(full, cfg, on_cpu=False)) is EngineCrashError


LLAMA_CONFIG = {"model_type": "llama", "max_position_embeddings": 2048}


@pytest.fixture
def recording_llm(monkeypatch):
    """vllm.LLM replaced by a double: the engine's constructor runs, vLLM does not start. Yields
    what the double saw: its keyword arguments, the environment and the model dir's files
    (name: bytes) at the moment vLLM would have started."""
    import vllm

    seen = {}

    class RecordingLLM:
        def __init__(self, **kwargs):
            model = Path(kwargs["model"])
            files = {f.name: f.read_bytes() for f in model.iterdir()} if model.is_dir() else None
            seen.update(kwargs=kwargs, environ=dict(os.environ), files=files)
            model_config = types.SimpleNamespace(max_model_len=kwargs["max_model_len"])
            self.llm_engine = types.SimpleNamespace(model_config=model_config)

        def get_tokenizer(self):
            return None

    monkeypatch.setattr(vllm, "LLM", RecordingLLM)
    return seen


def test_engine_kwargs_reach_the_vllm_constructor_over_the_options(
    vllm_engine, recording_llm, tmp_path
):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    passed = {"quantization": "fp8", "enable_chunked_prefill": True, "max_num_batched_tokens": 64}
    engine = vllm_engine(SamplingConfig(model=str(tmp_path), max_model_len=512,
                                        engine_kwargs=passed))  # fmt: skip
    seen = recording_llm["kwargs"]
    assert {k: seen[k] for k in passed} == passed  # chunked prefill: over the CPU default
    assert seen["model"] == str(tmp_path) and engine.context_length == 512


def test_a_model_at_an_s3_uri_is_a_local_copy_before_vllm_starts(
    vllm_engine, recording_llm, bucket, tmp_path, monkeypatch
):
    from diversens import storage

    monkeypatch.setenv("DIVERSENS_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "model"
    src.mkdir()
    files = {"config.json": json.dumps(LLAMA_CONFIG).encode(), "tokenizer.json": b"{}",
             "model.safetensors": b"weights"}  # fmt: skip
    for name, data in files.items():
        (src / name).write_bytes(data)
    storage.upload(src, f"{bucket}/train/model")
    vllm_engine(SamplingConfig(model=f"{bucket}/train/model", max_model_len=512))
    model = Path(recording_llm["kwargs"]["model"])
    assert model.is_relative_to(tmp_path / "cache") and recording_llm["files"] == files


def test_reproducible_sets_batch_invariance_before_vllm_starts_on_a_gpu(
    vllm_engine, recording_llm, tmp_path, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "")  # restored (unset) after the test
    monkeypatch.delenv("VLLM_BATCH_INVARIANT")
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    vllm_engine(SamplingConfig(model=str(tmp_path), max_model_len=512))
    assert "VLLM_BATCH_INVARIANT" not in recording_llm["environ"]
    vllm_engine(SamplingConfig(model=str(tmp_path), max_model_len=512, reproducible=True))
    assert recording_llm["environ"]["VLLM_BATCH_INVARIANT"] == "1"


def test_unknown_engine_kwargs_key_fails_in_one_line_before_ray_starts(tmp_path, capsys):
    pytest.importorskip("vllm")
    out = str(tmp_path / "c.parquet")
    argv = ["generate", "--prompts.split", "eval", "-o", out,
            "--sampling.engine_kwargs", "max_num_batched_tokens=4096,quantisation=fp8"]  # fmt: skip
    assert main(argv) == 2  # Ray would start only after the checks: ray.init fails this test
    err = capsys.readouterr().err
    assert err == (
        "diversens generate: error: option sampling.engine_kwargs.quantisation: not an engine "
        "argument of vLLM (a field of its EngineArgs); did you mean quantization or "
        "quantization_config?\n"
    )
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"engine": "transformers", "engine_kwargs": {"quantization": "fp8"}},
         "engine_kwargs: vLLM engine arguments, but engine is transformers"),
        ({"engine_kwargs": {"max_model_len": 8}},
         r"engine_kwargs.max_model_len: has an option of its own \(max_model_len\)"),
        ({"engine_kwargs": {"kv_cache_memory_bytes": 2**30}},
         r"engine_kwargs.kv_cache_memory_bytes: has an option of its own \(kv_cache_gib\)"),
    ],
    ids=["transformers-engine", "an-option", "an-option-by-another-name"],
)  # fmt: skip
def test_engine_kwargs_an_option_sets_or_the_engine_cannot_take_are_refused(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        SamplingConfig(**kwargs)
