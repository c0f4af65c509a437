"""SampleStage on the bundled SmolLM2 without Ray: k candidates, determinism, real second turns."""

import pytest

from diversens.prompts import eval_prompts
from diversens.sampling import SampleStage, SamplingConfig, TransformersEngine
from diversens.sampling.engines import Engine

pytestmark = pytest.mark.slow
CFG = SamplingConfig(max_new_tokens=16, seed=0)


class Recording(Engine):
    """Wraps an engine and records every request it is given (two generate calls per chunk:
    the base Engine sends follow-ups after all first turns)."""

    def __init__(self, engine):
        self.engine, self.name, self.calls = engine, engine.name, []

    def generate(self, requests):
        self.calls.append(list(requests))
        return self.engine.generate(requests)

    def render(self, messages):
        return self.engine.render(messages)

    def count_tokens(self, messages):
        return self.engine.count_tokens(messages)

    context_length = property(lambda self: self.engine.context_length)


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine(CFG)


@pytest.fixture(scope="module")
def prompts():
    return eval_prompts().iloc[[0, 2, 17]].reset_index(drop=True)


@pytest.fixture(scope="module")
def rows(engine, prompts):
    return SampleStage(CFG, engine=engine)(prompts)


def test_k_candidates_non_empty_and_not_identical(rows):
    assert len(rows) == 3
    for r in rows.itertuples():
        assert len(r.responses) == 4 and all(r.responses)
        assert len(set(r.responses)) > 1
        assert r.turn == [1, 1, 2, 2] and len(r.n_tokens) == 4
        assert r.truncated == [f == "length" for f in r.finish_reason]
        assert r.engine == "transformers" and r.model == "smollm2-135m-instruct"


def test_same_seed_same_rows_different_seed_different_rows(engine, prompts, rows):
    again = SampleStage(CFG, engine=engine)(prompts)
    assert again.drop(columns=["messages"]).equals(rows.drop(columns=["messages"]))
    other_cfg = SamplingConfig(max_new_tokens=16, seed=1)
    other = SampleStage(other_cfg, engine=engine)(prompts)
    assert all(a != b for a, b in zip(other["responses"], rows["responses"], strict=True))
    assert other["config_hash"][0] != rows["config_hash"][0]


def test_second_turn_sees_first_answer(engine, prompts, rows):
    spy = Recording(engine)
    out = SampleStage(CFG, engine=spy)(prompts)
    assert out["responses"].tolist() == rows["responses"].tolist()
    _, second = spy.calls
    assert len(second) == 3 * 2  # per prompt: one follow-up conversation per first answer
    for req, (i, parent) in zip(second, [(i, j) for i in range(3) for j in range(2)], strict=True):
        first_answer = out["responses"][i][parent]
        rendered = spy.render(req.messages)
        prompt = prompts["messages"][i][0]["content"]
        followup = CFG.followup(prompts["task"][i])
        # prompt, then the first answer as the assistant's turn, then the follow-up request
        p, a, f = rendered.index(prompt), rendered.index(first_answer), rendered.index(followup)
        assert p < a < f
        assert "assistant\n" + first_answer in rendered
