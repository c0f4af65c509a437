"""Validity: why a candidate may not take part (empty, format, truncated, non-finite values)."""

import pytest
from candidates import CFG, STORY, candidates

from diversens.scoring.config import QualityConfig
from diversens.scoring.quality import QualityStage
from diversens.scoring.validity import ValidityStage

LENIENT = QualityConfig(scorer="none", strict_compliance=False)
OFF_FORMAT = "A story with no required words at all. It goes on. And on. The end."


def scored(responses, cfg=CFG, **columns):
    return QualityStage(cfg)(candidates(responses, **columns))


def test_reasons_truncated_and_non_finite_measures():
    df = scored([STORY, STORY, STORY, ""], finish=["stop", "length", "stop", "stop"],
                entropy=[1.0, 1.0, float("nan"), float("nan")])  # fmt: skip
    out = ValidityStage(QualityConfig(scorer="none", check_measures=["entropy"]))(df)
    assert out.reject_reason[0] == [None, "truncated", "entropy_not_finite", "empty"]
    assert out.valid[0] == [True, False, False, False]
    # By default no measure decides validity: selection asks for the ones it ranks by.
    assert ValidityStage(CFG)(df).valid[0] == [True, False, True, False]


def test_non_finite_quality_is_a_reason():
    df = scored([STORY, STORY]).assign(quality=[[0.5, float("nan")]])
    assert ValidityStage(CFG)(df).reject_reason[0] == [None, "quality_not_finite"]


def test_strict_rejects_off_format_and_lenient_keeps_it_with_lower_quality():
    strict = ValidityStage(CFG)(scored([STORY, OFF_FORMAT]))
    assert strict.reject_reason[0] == [None, "cwt_missing_word"]
    assert strict.quality[0] == [0.0, 0.0]  # strict mode: rejected, so no penalty is needed
    penalised = QualityConfig(scorer="none", strict_compliance=False, compliance_penalty=2.0)
    out = ValidityStage(penalised)(scored([STORY, OFF_FORMAT, ""], penalised))
    assert out.valid[0] == [True, True, False]  # empty stays invalid in any mode
    assert out.reject_reason[0][2] == "empty"
    assert out.quality[0] == [0.0, -2.0, 0.0]


def test_declares_what_it_reads():
    """finish_reason, quality and the checked measures are required, not silently skipped."""
    df = scored([STORY])
    with pytest.raises(KeyError, match=r"\['quality'\]"):
        ValidityStage(CFG)(df.drop(columns=["quality"]))
    with pytest.raises(KeyError, match=r"\['entropy'\]"):
        ValidityStage(QualityConfig(scorer="none", check_measures=["entropy"]))(df)
    assert ValidityStage(LENIENT)(df.iloc[:0]).columns[-2:].tolist() == ["reject_reason", "valid"]
