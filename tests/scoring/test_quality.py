"""Quality: fluency under a reference LM and any HF reward model as scorers."""

import numpy as np
import pytest
from candidates import STORY, candidates

from diversens.scoring.config import QualityConfig
from diversens.scoring.quality import QualityStage


@pytest.fixture(scope="module")
def fluency_stage():
    return QualityStage(QualityConfig(scorer="offline", batch_size=2))


@pytest.mark.slow
def test_fluency_prefers_fluent_text(fluency_stage):
    salad = "Letter stamp the of send purple quickly banana the the with. Of send."
    out = fluency_stage(candidates([STORY, salad, STORY]))
    q = np.array(out.quality[0])
    assert np.isfinite(q).all() and q[0] > q[1]
    assert q[0] == pytest.approx(q[2], abs=1e-4)  # batch position does not change the score


@pytest.mark.slow
def test_fluency_runs_in_the_cpus_dtype_and_ranks_as_float32_does(fluency_stage):
    """dtype auto: bf16 where the CPU has it natively (~2x the fp32 forward here, and the
    pairs stage waits on this scorer), with the same ranking as fp32."""
    import torch

    from diversens.models import cpu_has_native_bf16

    native = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert fluency_stage.scorer.model.dtype == native
    fp32 = QualityStage(QualityConfig(scorer="offline", batch_size=2, dtype="float32"))
    assert fp32.scorer.model.dtype == torch.float32
    texts = [STORY, "The the the the the the the the the.", "Blue idea sleeps furious, we."]
    auto, exact = (np.array(s(candidates(texts)).quality[0]) for s in (fluency_stage, fp32))
    assert list(np.argsort(auto)) == list(np.argsort(exact))
    assert np.abs(auto - exact).max() < 0.1  # mean log-prob per token


@pytest.mark.slow
def test_fluency_counts_answer_tokens_only(fluency_stage):
    """The template's end-of-turn tokens after the answer are left out of the mean."""
    scorer = fluency_stage.scorer
    msgs = [{"role": "user", "content": "Write a story."}]
    prompt, full = scorer.render(msgs, None), scorer.render(msgs, STORY)
    start, end = scorer._answer_span(prompt, STORY, full)
    assert end - start == scorer._count(prompt + STORY) - scorer._count(prompt) > 10
    assert scorer._count(full) - end == scorer._count(full[len(prompt + STORY) :]) > 0


@pytest.mark.slow
def test_reward_model_scorer_runs_any_sequence_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from diversens.models import resolve_model

    base = resolve_model("smollm2-135m-instruct")
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path)
    stage = QualityStage(QualityConfig(scorer="reward-model", reward_model=str(tmp_path)))
    a = np.array(stage(candidates([STORY, "Short."]))["quality"][0])
    b = np.array(stage(candidates([STORY, "Short."]))["quality"][0])
    assert np.isfinite(a).all() and a[0] != a[1] and np.array_equal(a, b)


def test_reward_model_requires_a_model():
    with pytest.raises(ValueError, match="needs reward_model"):
        QualityConfig(scorer="reward-model")
