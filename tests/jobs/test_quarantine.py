"""SampleStage quarantines the prompts an engine cannot take, and only those (no model needed)."""

import pandas as pd
import pytest

from diversens.sampling import SampleStage, SamplingConfig
from diversens.sampling.engines import Completion, Engine

CFG = SamplingConfig(max_new_tokens=10, num_samples_per_prompt=4)


class FakeEngine(Engine):
    """Echoes the last user message; raises on a conversation that mentions a poison word;
    counts a token per word; a context of 100 tokens."""

    name = "fake"
    context_length = 100

    def __init__(self, poison=("BOOM",), template_error=("{%",)):
        self.poison, self.template_error, self.calls = poison, template_error, 0

    def render(self, messages):
        text = " ".join(m["content"] for m in messages)
        if any(p in text for p in self.template_error):
            raise ValueError("unbalanced template tag")
        return text

    def count_tokens(self, messages):
        return len(self.render(messages).split())

    def generate(self, requests):
        self.calls += 1
        if any(p in self.render(r.messages) for r in requests for p in self.poison):
            raise RuntimeError("engine exploded")
        return [[Completion(f"{r.seed % 97} answer", "stop", 2)] * r.n for r in requests]


def batch(*texts: str) -> pd.DataFrame:
    return pd.DataFrame({
        "prompt_id": [f"p{i}" for i in range(len(texts))],
        "task": ["custom"] * len(texts),
        "messages": [[{"role": "user", "content": t}] for t in texts],
    })  # fmt: skip


def test_engine_error_quarantines_that_prompt_alone():
    out = SampleStage(CFG, engine=FakeEngine())(batch("hello", "BOOM now", "a third"))
    assert out["quarantine"][1] == "engine_error: RuntimeError: engine exploded"
    assert out["responses"][1] == [] and out["turn"][1] == [] and out["n_tokens"][1] == []
    for i in (0, 2):
        assert out["quarantine"][i] is None and len(out["responses"][i]) == 4
        assert out["turn"][i] == [1, 1, 2, 2]
    clean = SampleStage(CFG, engine=FakeEngine())(batch("hello", "x", "a third"))
    # Seeds are per prompt: isolating the bad one changes no other prompt's candidates.
    assert out["responses"][0] == clean["responses"][0]


def test_too_long_and_template_errors_are_quarantined_before_generating():
    engine = FakeEngine()
    # 100-token context: prompt + follow-up (9 words) + 2 x 10 new tokens must fit.
    out = SampleStage(CFG, engine=engine)(batch("word " * 80, "{% broken", "fine"))
    assert out["quarantine"][0].startswith("too_long: needs ")
    assert "context is 100" in out["quarantine"][0]
    assert out["quarantine"][1] == "tokenizer_error: ValueError: unbalanced template tag"
    assert out["quarantine"][2] is None and len(out["responses"][2]) == 4
    assert engine.calls == 2, "one call per turn, for the one healthy prompt"


def test_an_engine_that_fails_every_prompt_raises():
    engine = FakeEngine(poison=("",))  # every conversation is poison
    with pytest.raises(RuntimeError, match="engine exploded"):
        SampleStage(CFG, engine=engine)(batch("a", "b"))
