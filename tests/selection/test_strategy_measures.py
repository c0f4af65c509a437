"""Every strategy × every measure override: refused at config time, or the run computes the
measures it ranks by and selects pairs on them (a lite run ranked by DSI once computed no DSI and
dropped every prompt, with no error)."""

import numpy as np
import pandas as pd
import pytest

from diversens import measures
from diversens.jobs.config import GeneratePairsConfig
from diversens.scoring.measure import MeasureConfig, MeasureStage
from diversens.selection.rules import STRATEGIES, SelectionConfig, SelectionStats
from diversens.selection.stage import SelectStage

VOCAB = ("river stone market engine garden signal ocean machine letter mountain winter paper "
         "forest candle mirror harbor violin desert lantern bridge thunder orchard velvet comet "
         "prairie anchor meadow glacier circus temple").split()  # fmt: skip


def candidates_rows(num_prompts: int = 6, k: int = 8, seed: int = 0) -> pd.DataFrame:
    """Prompts whose k candidates are five sentences of ~12 words (60 ± 6 words: length-matched
    pairs exist), from vocabularies of different sizes (so diversity differs)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(num_prompts):
        responses = []
        for _ in range(k):
            vocab = rng.choice(VOCAB, size=int(rng.integers(4, len(VOCAB))), replace=False)
            sentences = [" ".join(rng.choice(vocab, size=int(rng.integers(10, 14)))).capitalize()
                         + "." for _ in range(5)]  # fmt: skip
            responses.append(" ".join(sentences))
        rows.append({"prompt_id": f"p{p}", "task": "cwt",
                     "messages": [{"role": "user", "content": f"prompt {p}"}],
                     "responses": responses, "valid": [True] * k,
                     "quality": rng.random(k).tolist()})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scored_every_measure():
    """The rows with every registered measure, computed once (one embedder)."""
    rows = candidates_rows()
    return MeasureStage(MeasureConfig(text_field="responses"), measures.names())(rows)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_override_is_refused_or_selects_on_computed_measures(scored_every_measure, strategy):
    for slot in ("lexical_measure", "semantic_measure"):
        for measure in measures.names():
            check_override(scored_every_measure, strategy, slot, measure)


def check_override(scored: pd.DataFrame, strategy: str, slot: str, measure: str) -> None:
    case = f"{strategy} with {slot}={measure}"
    try:
        selection = SelectionConfig(strategy=strategy, **{slot: measure})
    except ValueError as e:
        assert not measures.MEASURES[measure].ranks_candidates, f"{case}: refused: {e}"
        return
    assert measures.MEASURES[measure].ranks_candidates, f"{case}: accepted"
    cfg = GeneratePairsConfig(selection=selection, compare_strategies=[strategy])
    assert set(selection.required_measures) <= set(cfg.measures), case
    # The run's scored rows hold only what it computes.
    table = scored.drop(columns=[m for m in measures.names() if m not in cfg.measures])
    flat = {m: np.concatenate(table[m].to_numpy()) for m in [*cfg.measures, "quality"]}
    stats = SelectionStats.from_columns(flat, np.repeat(table.task.to_numpy(), 8))
    out = SelectStage(selection, stats)(table)
    pairs = out[out.drop_reason.isna()]
    assert len(pairs) >= 1, f"{case}: {out.drop_reason.value_counts().to_dict()}"
