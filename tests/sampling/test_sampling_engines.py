"""The engine contract, on both engines with the bundled SmolLM2: vLLM (its CPU build here, the
same `LLM`/`SamplingParams` API as on GPU) and the transformers fallback. Each engine loads once.

- all n samples of a request are kept, and they differ;
- a request's texts depend on its seed and conversation, not on the other requests of the batch,
  nor (vLLM) on the calls other threads make at the same time;
- follow-ups sent the moment their request ends get what a later call gives them;
- finish reasons and token counts agree with max_new_tokens;
- greedy decoding ignores seeds;
- a request's own token cap holds in a batch of other caps, and cuts the same sample short;
- the frequency penalty counts generated tokens only, and makes answers repeat less;
- a prompt too long for the engine's context is quarantined by the stage, the rest sampled.
"""

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from diversens.prompts import eval_prompts
from diversens.sampling import Request, SampleStage, SamplingConfig, make_engine
from diversens.sampling.stage import followup_messages

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module", params=["vllm", "transformers"])
def engine(request):
    # transformers in float32: in bf16 a batch's other (padded) rows change a row's rounding
    # enough to flip sampled tokens on some CPUs (seen on a Xeon with AMX), which would test
    # the arithmetic, not the per-row seeding. vLLM seeds per request and keeps `auto`.
    dtype = "float32" if request.param == "transformers" else "auto"
    cfg = SamplingConfig(engine=request.param, max_new_tokens=MAX_NEW_TOKENS, engine_batch_size=8,
                         max_model_len=512, dtype=dtype)  # fmt: skip
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


def test_follow_ups_sent_as_their_request_ends_match_a_later_call(engine, convs):
    requests = [Request(convs[0], seed=21, n=2), Request(convs[2], seed=22, n=1)]

    def then(i, completions):
        conv = followup_messages(requests[i].messages, completions[-1].text, "Another one.")
        return [Request(conv, seed=30 + i, n=2)]

    first, follow = engine.generate_then(requests, then)
    assert first == engine.generate(requests)
    later = engine.generate([r for i, c in enumerate(first) for r in then(i, c)])
    assert [f[0] for f in follow] == later  # the same follow-ups, the same completions
    assert all(len(c) == 2 for f in follow for c in f)


def test_calls_from_several_threads_share_the_engine_and_keep_their_texts(engine, convs):
    if engine.name != "vllm":
        pytest.skip("the transformers engine runs one batch at a time (one call per actor)")
    calls = [[Request(m, seed=40 + i, n=2)] for i, m in enumerate(convs)]
    alone = [engine.generate(c) for c in calls]
    with ThreadPoolExecutor(len(calls)) as pool:
        together = list(pool.map(engine.generate, calls))
    assert together == alone


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


def test_min_p_near_one_samples_the_greedy_answer(engine, convs, monkeypatch):
    """min-p 0.99 leaves only the top token (bar near-ties) at temperature 1: the seeded samples
    are the greedy answer, on both engines."""
    monkeypatch.setattr(engine, "cfg", SamplingConfig(max_new_tokens=12, temperature=0))
    greedy = engine.generate([Request(convs[3], seed=1)])[0][0].text
    sampled = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=1.0, min_p=0.99)
    monkeypatch.setattr(engine, "cfg", sampled)
    assert [c.text for c in engine.generate([Request(convs[3], seed=5, n=2)])[0]] == [greedy] * 2


def test_per_request_cap_cuts_the_same_sample(engine, convs):
    """A request's cap holds beside a longer one in the same batch, and its text is the start
    of what the same seed gives with the longer cap."""
    short, full = engine.generate([Request(convs[2], 7, 2, max_tokens=5), Request(convs[2], 7, 2)])
    assert all(c.n_tokens <= 5 for c in short)
    assert all((c.finish_reason == "length") == (c.n_tokens == 5) for c in short)
    assert any(c.n_tokens > 5 for c in full)
    for a, b in zip(short, full, strict=True):
        assert b.text.startswith(a.text.rstrip("\ufffd"))  # a cut may end mid-character


def test_frequency_penalty_repeats_less(engine, convs, monkeypatch):
    """Greedy answers of a 135M model repeat tokens; a frequency penalty on generated tokens
    lowers the share of repeated tokens and still lets answers end (the end-of-turn token sits
    in the prompt, which the penalty does not count)."""

    def repeated_share(cfg):
        monkeypatch.setattr(engine, "cfg", cfg)
        outs = [r[0] for r in engine.generate([Request(m, seed=1) for m in convs])]
        ids = [engine.tokenizer(c.text, add_special_tokens=False).input_ids for c in outs]
        return sum(len(i) - len(set(i)) for i in ids) / sum(map(len, ids)), outs

    base = dict(temperature=0, max_new_tokens=48)
    plain, _ = repeated_share(SamplingConfig(**base))
    penalised, outs = repeated_share(SamplingConfig(**base, frequency_penalty=1.5))
    assert penalised < plain
    assert any(c.finish_reason == "stop" for c in outs)


def test_generated_token_penalty_spares_the_prompt():
    import torch

    from diversens.sampling.engines import _GeneratedTokenPenalty

    ids = torch.tensor([[5, 6, 7, 7, 8], [5, 9, 9, 9, 9]])  # prompt: the first 2 tokens
    out = _GeneratedTokenPenalty(2, frequency=0.5, presence=0.25)(ids, torch.zeros(2, 10))
    assert out[0, 5] == 0 and out[0, 6] == 0  # prompt tokens are not penalised
    assert out[0, 7] == -(2 * 0.5 + 0.25) and out[0, 8] == -(0.5 + 0.25)
    assert out[1, 9] == -(3 * 0.5 + 0.25) and out[1, 5] == 0


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


def test_min_p_draws_only_tokens_near_the_top_one():
    """min-p keeps tokens at least min_p times as likely as the top one: over many seeds every
    draw is among them, and without min-p the tail is drawn too."""
    import torch

    from diversens.sampling.engines import _PerRowSampler

    probs = torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]])  # kept at min_p 0.5: tokens 0, 1
    scores = probs.log().expand(200, -1)

    def drawn(min_p):
        out = _PerRowSampler(list(range(200)), 1.0, 1.0, min_p)(None, scores.clone())
        return set(out.argmax(-1).tolist())

    assert drawn(0.5) == {0, 1}
    assert drawn(0.0) > {0, 1}
