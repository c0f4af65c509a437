"""Quality: compliance rules per task, fluency and reward-model scorers, validity reasons."""

import numpy as np
import pandas as pd
import pytest

from diversens.scoring.quality import QualityConfig, QualityStage, compliance_issue

CFG = QualityConfig(scorer="none")
DAT_OK = "\n".join(f"{i}. {w}" for i, w in enumerate(
    "volcano spoon democracy jellyfish saxophone glacier receipt moth telescope porridge".split(), 1
))  # fmt: skip
STORY = (
    "Mara found an old stamp. She wrote a letter to a friend. "
    "She decided to send it at dawn. Weeks passed. A reply came."
)


@pytest.mark.parametrize(
    ("text", "task", "meta", "reason"),
    [
        ("", "cwt", {}, "empty"),
        ("   \n", "aut", {}, "empty"),
        (DAT_OK, "dat", {}, None),
        ("1. cat\n2. dog\n3. big red bus", "dat", {}, "dat_too_few_single_words"),
        ("1. a\n2. b\n3. c\n4. d\n5. e", "aut", {}, None),
        ("1. a\n2. b\n3. c", "aut", {}, "aut_too_few_uses"),
        ('{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}', "pgt", {}, None),
        ('Sure! ```json\n{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}\n```', "pgt", {}, None),
        ('{"first_name": "Ana", "city": ""}', "pgt", {}, "pgt_missing_field"),
        ('{"first_name": "Ana", "city": ', "pgt", {}, "pgt_invalid_json"),
        (STORY, "cwt", {"words": ["stamp", "letter", "send"]}, None),
        (STORY, "cwt", {"words": ["stamp", "petrol", "send"]}, "cwt_missing_word"),
        ("A stamp, a letter; send.", "cwt", {"words": ["stamp", "letter", "send"]}, "cwt_sentence_count"),
        ("anything goes", "custom", {}, None),
        (STORY, "cwt", {"item": "stamp/letter/send"}, None),
        (STORY, "cwt", {"item": "stamp/letter/pump"}, "cwt_missing_word"),
        ("1. cat\n2. dog\n3. eel", "dat", {"variant": "n3-w0"}, None),
        ("1. cat\n2. dog\n3. eel", "dat", {"variant": "n4-w0"}, "dat_too_few_single_words"),
        ('{"first_name": "Ana", "age": "30"}', "pgt", {"item": "first_name,age"}, None),
        # Words, not prefixes: "single" does not use "sing", "organization" not "organ"; regular
        # inflections, possessives and hyphenated parts do count.
        ("She sang a single song. It was good. Faith grew. Belief too.", "cwt",
         {"words": ["belief", "faith", "sing"]}, "cwt_missing_word"),
        ("The organization grew. The empire fell. They complied. Done now.", "cwt",
         {"words": ["organ", "empire", "comply"]}, "cwt_missing_word"),
        ("The organ's pipes rang. Empires fell. Nobody complies. She is singing. Fine.", "cwt",
         {"words": ["organ", "empire", "comply"]}, None),
        ("A letter-writing day. She sends stamps. It was fine. The end came.", "cwt",
         {"words": ["stamp", "letter", "send"]}, None),
    ],
)  # fmt: skip
def test_compliance(text, task, meta, reason):
    assert compliance_issue(text, task, meta, CFG) == reason


def candidates(responses, task="cwt", finish=None, **measures):
    row = {
        "prompt_id": "p",
        "task": task,
        "messages": [{"role": "user", "content": "Write a story with stamp, letter, send."}],
        "meta": '{"words": ["stamp", "letter", "send"]}',
        "responses": responses,
        "finish_reason": finish or ["stop"] * len(responses),
        **measures,
    }
    return pd.DataFrame([row])


def test_reasons_truncated_and_non_finite_measures():
    df = candidates([STORY, STORY, STORY, ""], finish=["stop", "length", "stop", "stop"],
                    entropy=[1.0, 1.0, float("nan"), float("nan")])  # fmt: skip
    out = QualityStage(QualityConfig(scorer="none", check_measures=["entropy"]))(df)
    assert out.reject_reason[0] == [None, "truncated", "entropy_not_finite", "empty"]
    assert out.valid[0] == [True, False, False, False]
    # By default no measure decides validity: selection asks for the ones it ranks by.
    assert QualityStage(CFG)(df).valid[0] == [True, False, True, False]


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


def test_lenient_compliance_keeps_candidate_and_lowers_quality():
    good, bad = STORY, "A story with no required words at all. It goes on. And on. The end."
    strict = QualityStage(CFG)(candidates([good, bad]))
    assert strict.reject_reason[0] == [None, "cwt_missing_word"]
    lenient = QualityStage(
        QualityConfig(scorer="none", strict_compliance=False, compliance_penalty=2.0)
    )
    out = lenient(candidates([good, bad, ""]))
    assert out.valid[0] == [True, True, False]  # empty stays invalid in any mode
    assert out.quality[0][:2] == [0.0, -2.0]
