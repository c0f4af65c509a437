"""A model the vLLM engine cannot load is one line (`EngineStartError`, exit code 2) from the
engine's constructor, as every other start-up failure is, not a traceback per engine actor.
The engine is built directly, without Ray; the model's config fails before any weight loads."""

import json

import pytest

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
