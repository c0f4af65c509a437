"""The measure registry: every table that lists measures is derived from it, and what a run
computes follows from what it ranks by."""

import numpy as np
import pandas as pd
import pytest

from diversens import measures, schema
from diversens.evaluation.config import DD_MEASURES, TASK_SCORES, EvalConfig
from diversens.jobs.config import GeneratePairsConfig
from diversens.scoring.measure import MeasureConfig, MeasureStage
from diversens.selection.report import CORRELATED
from diversens.selection.rules import STRATEGIES, SelectionConfig


def test_every_spec_is_consistent():
    assert len(measures.MEASURES) >= 15
    for m in measures.MEASURES.values():
        assert m.help and m.scope in measures.registry.SCOPES
        if m.ranks_dd:
            assert m.scope == "output" and m.sign == 1
    with pytest.raises(ValueError, match="per-output measures of sign"):
        measures.Measure("bad", "h", lambda t: t, sign=-1)


def test_derived_tables_follow_the_registry():
    assert DD_MEASURES == (*measures.names(lambda m: m.ranks_dd), *TASK_SCORES)
    assert "maas" not in DD_MEASURES and "vendi" not in DD_MEASURES and "token_dsi" in DD_MEASURES
    assert CORRELATED[:-1] == measures.names(lambda m: m.ranks_candidates)
    assert set(schema.measures(["ttr"])) == {"ttr"}
    for s in STRATEGIES.values():
        assert all(measures.MEASURES[m].ranks_candidates for m in s.measures)


def test_a_registered_measure_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        measures.register(measures.MEASURES["ttr"])


def test_lite_alone_loads_no_embedder_and_its_dsi_override_does():
    lite = GeneratePairsConfig(selection=SelectionConfig(strategy="diverse-ns-lite"),
                               compare_strategies=[])  # fmt: skip
    assert not lite.needs_embedder and "dsi" not in lite.measures
    assert lite.models() == [lite.sampling.model, lite.scoring.quality.reference_model]
    ranked_by_dsi = GeneratePairsConfig(
        selection=SelectionConfig(strategy="diverse-ns-lite", semantic_measure="dsi"),
        compare_strategies=[],
    )
    assert ranked_by_dsi.needs_embedder and "dsi" in ranked_by_dsi.measures
    # The embedder, once loaded, serves every default measure that needs it.
    assert {"div_across", "vendi"} <= set(ranked_by_dsi.measures)
    assert "token_dsi" not in ranked_by_dsi.measures  # not a default: asked for by name


def test_eval_sample_counts_not_given_keep_the_literatures():
    from diversens.prompts import literature_samples

    assert EvalConfig(num_samples={"dat": 3}).num_samples == {**literature_samples(), "dat": 3}


def test_requested_and_eval_measures_are_computed():
    cfg = MeasureConfig(measures=["token_dsi"])
    assert "token_dsi" in cfg.resolve() and "dsi" in cfg.resolve()
    ev = EvalConfig(dd_measures=["ttr", "token_dsi", "dat_score"])
    assert {"ttr", "token_dsi", "distinct_4", "vendi"} <= set(ev.measures)
    assert "dat_score" not in ev.measures


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MeasureConfig(measures=["nope"]), "measures: 'nope' is not a measure"),
        (lambda: MeasureConfig(options={"token_dsi.depth": 2}), "token_dsi.depth"),
        (lambda: SelectionConfig(lexical_measure="vendi"), "not a per-output diversity"),
        (lambda: SelectionConfig(semantic_measure="n_words"), "not a per-output diversity"),
        (lambda: EvalConfig(dd_measures=["maas"]), r"unknown \[.maas.\].*maas falls"),
    ],
)
def test_unknown_or_unusable_measures_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_new_measure_flows_through_the_stage(monkeypatch):
    """A measure registered at run time (as a new module would) is computed by the stage and
    selectable by strategies, with no other change."""
    shout = measures.Measure("shout", "share of upper-case letters",
                             lambda t: np.array([sum(c.isupper() for c in s) / max(len(s), 1)
                                                 for s in t.texts]))  # fmt: skip
    monkeypatch.setitem(measures.MEASURES, "shout", shout)
    rows = pd.DataFrame({"task": ["cwt"], "responses": [["AB cd", "ab cd"]]})
    out = MeasureStage(MeasureConfig(text_field="responses"), ("shout",))(rows)
    assert out["shout"][0] == pytest.approx([0.4, 0.0])
    assert SelectionConfig(strategy="diverse-ns", lexical_measure="shout").measures[0] == "shout"
