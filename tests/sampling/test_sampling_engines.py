"""Engines on the bundled SmolLM2 (transformers, CPU) and vLLM where CUDA and vllm exist."""

import importlib.util

import pytest

from diversens.prompts import eval_prompts
from diversens.sampling import Request, SamplingConfig, TransformersEngine

MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine(SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, engine_batch_size=8))


@pytest.fixture(scope="module")
def convs():
    return [m for m in eval_prompts()["messages"].iloc[[0, 2, 17, 1]]]


@pytest.mark.slow
def test_render_uses_chat_template(engine, convs):
    text = engine.render(convs[2])
    assert convs[2][0]["content"] in text
    assert text.rstrip().endswith("assistant")  # generation prompt for the assistant turn


@pytest.mark.slow
def test_per_request_seeds_independent_of_batch(engine, convs):
    alone = engine.generate([Request(convs[0], seed=11, n=2)])[0]
    mixed = engine.generate(
        [Request(convs[1], seed=5, n=1), Request(convs[0], seed=11, n=2), Request(convs[2], 6, 3)]
    )
    assert [c.text for c in mixed[1]] == [c.text for c in alone]
    assert [len(r) for r in mixed] == [1, 2, 3]
    other = engine.generate([Request(convs[0], seed=12, n=2)])[0]
    assert [c.text for c in other] != [c.text for c in alone]
    assert alone[0].text != alone[1].text  # the n samples of one request differ


@pytest.mark.slow
def test_finish_reason_and_token_counts(engine, convs):
    outs = [c for r in engine.generate([Request(m, seed=1, n=2) for m in convs]) for c in r]
    assert all(c.text for c in outs)
    for c in outs:
        assert c.finish_reason in ("stop", "length")
        assert (c.finish_reason == "length") == (c.n_tokens == MAX_NEW_TOKENS)
        assert 0 <= c.n_tokens <= MAX_NEW_TOKENS
    assert any(c.finish_reason == "length" for c in outs)  # 16 tokens truncate a story


@pytest.mark.slow
def test_greedy_is_deterministic(engine, convs, monkeypatch):
    monkeypatch.setattr(engine, "cfg", SamplingConfig(max_new_tokens=8, temperature=0))
    a = engine.generate([Request(convs[3], seed=1, n=2)])[0]
    assert a[0].text == a[1].text  # temperature 0: seeds do not matter


HAS_GPU_VLLM = importlib.util.find_spec("vllm") is not None and (
    importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU_VLLM, reason="needs CUDA and vllm")
def test_vllm_engine_keeps_all_n_outputs(convs):
    from diversens.sampling import VLLMEngine

    eng = VLLMEngine(SamplingConfig(engine="vllm", max_new_tokens=32, gpu_memory_utilization=0.5))
    outs = eng.generate([Request(m, seed=3, n=4) for m in convs])
    assert [len(r) for r in outs] == [4] * len(convs)
    assert all(c.text and c.finish_reason in ("stop", "length") for r in outs for c in r)
    again = eng.generate([Request(convs[0], seed=3, n=4)])[0]
    assert [c.text for c in again] == [c.text for c in outs[0]]
    assert convs[0][0]["content"] in eng.render(convs[0])
