"""The engine contract, on both engines with the bundled SmolLM2: vLLM (its CPU build here, the
same `LLM`/`SamplingParams` API as on GPU) and the transformers fallback. Each engine loads once.

- all n samples of a request are kept, and they differ;
- a request's texts depend on its seed and conversation, not on the other requests of the batch;
- finish reasons and token counts agree with max_new_tokens;
- greedy decoding ignores seeds;
- a prompt too long for the engine's context is quarantined by the stage, the rest sampled.
"""

import pandas as pd
import pytest

from diversens.prompts import eval_prompts
from diversens.sampling import Request, SampleStage, SamplingConfig, make_engine

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module", params=["vllm", "transformers"])
def engine(request):
    cfg = SamplingConfig(
        engine=request.param, max_new_tokens=MAX_NEW_TOKENS, engine_batch_size=8, max_model_len=512
    )
    eng = make_engine(cfg)
    yield eng
    del eng


@pytest.fixture(scope="module")
def convs():
    return [m for m in eval_prompts()["messages"].iloc[[0, 2, 17, 1]]]


def test_render_uses_chat_template(engine, convs):
    text = engine.render(convs[2])
    assert convs[2][0]["content"] in text
    assert text.rstrip().endswith("assistant")  # generation prompt for the assistant turn


def test_all_n_kept_and_seeds_independent_of_batch(engine, convs):
    alone = engine.generate([Request(convs[0], seed=11, n=2)])[0]
    mixed = engine.generate(
        [Request(convs[1], seed=5, n=1), Request(convs[0], seed=11, n=2), Request(convs[2], 6, 3)]
    )
    assert [len(r) for r in mixed] == [1, 2, 3]
    assert [c.text for c in mixed[1]] == [c.text for c in alone]
    other = engine.generate([Request(convs[0], seed=12, n=2)])[0]
    assert [c.text for c in other] != [c.text for c in alone]
    assert alone[0].text != alone[1].text  # the n samples of one request differ


def test_finish_reason_and_token_counts(engine, convs):
    outs = [c for r in engine.generate([Request(m, seed=1, n=2) for m in convs]) for c in r]
    assert all(c.text for c in outs)
    for c in outs:
        assert c.finish_reason in ("stop", "length")
        assert (c.finish_reason == "length") == (c.n_tokens == MAX_NEW_TOKENS)
        assert 0 <= c.n_tokens <= MAX_NEW_TOKENS
    assert any(c.finish_reason == "length" for c in outs)  # 16 tokens truncate a story
    # A stopped answer's count excludes the stop token: re-tokenised, the text is no longer.
    for c in outs:
        if c.finish_reason == "stop":
            ids = engine.tokenizer(c.text, add_special_tokens=False).input_ids
            assert len(ids) <= c.n_tokens + 1


def test_greedy_is_deterministic(engine, convs, monkeypatch):
    monkeypatch.setattr(engine, "cfg", SamplingConfig(max_new_tokens=8, temperature=0))
    a = engine.generate([Request(convs[3], seed=1, n=2)])[0]
    b = engine.generate([Request(convs[3], seed=2, n=1)])[0]
    assert a[0].text == a[1].text == b[0].text  # temperature 0: seeds do not matter


def test_too_long_prompt_is_quarantined_the_rest_sampled(engine):
    cfg = SamplingConfig(engine=engine.name, max_new_tokens=MAX_NEW_TOKENS)
    stage = SampleStage(cfg, engine=engine)
    limit = engine.context_length
    assert limit == (512 if engine.name == "vllm" else 8192)  # max_model_len caps vLLM's
    batch = pd.DataFrame({
        "prompt_id": ["ok", "long"],
        "task": ["custom", "custom"],
        "messages": [[{"role": "user", "content": "Name a colour."}],
                     [{"role": "user", "content": "word " * (limit + 10)}]],
    })  # fmt: skip
    out = stage(batch).set_index("prompt_id")
    assert out.loc["long", "quarantine"].startswith("too_long: needs ")
    assert list(out.loc["long", "responses"]) == []
    assert out.loc["ok", "quarantine"] is None and len(out.loc["ok", "responses"]) == 4
