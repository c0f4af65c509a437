"""Semantic diversity: closed forms against brute force, NaN for undefined, real embedder."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diversens.measures import MEASURES, Texts
from diversens.measures.semantic import Embedder, distance_to_others, group_mean_pairwise_distance
from diversens.scoring.measure import MeasureConfig


def _unit(rng, n, d=8):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_group_distance_equals_brute_force(sizes, seed):
    emb = _unit(np.random.default_rng(seed), sum(sizes))
    got = group_mean_pairwise_distance(emb, np.array(sizes))
    start = 0
    for n, value in zip(sizes, got, strict=True):
        e = emb[start : start + n]
        start += n
        if n < 2:
            assert np.isnan(value)
            continue
        sim = e @ e.T
        want = np.mean(1 - sim[~np.eye(n, dtype=bool)])
        assert value == pytest.approx(want, abs=1e-9)
        assert 0.0 <= value <= 2.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_distance_to_others_equals_brute_force(valid, seed):
    valid = np.array(valid)
    emb = _unit(np.random.default_rng(seed), len(valid))
    got = distance_to_others(emb, valid)
    idx = np.flatnonzero(valid)
    for i in range(len(valid)):
        if not valid[i] or len(idx) < 2:
            assert np.isnan(got[i])
            continue
        others = [j for j in idx if j != i]
        assert got[i] == pytest.approx(np.mean(1 - emb[others] @ emb[i]), abs=1e-9)


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.mark.slow
def test_varied_topics_more_diverse_than_repetition(embedder):
    varied = (
        "The volcano erupted at dawn. My grandmother bakes rye bread on Sundays. "
        "Quantum computers use qubits. The football match ended in a draw."
    )
    repeated = "The cat sat on the mat. " * 4
    dsi = embedder.within_diversity([varied, repeated.strip()], ["cwt", "cwt"])
    assert dsi[0] > dsi[1] + 0.3
    assert dsi[1] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.slow
def test_undefined_within_diversity_is_nan(embedder):
    dsi = embedder.within_diversity(["", "Only one sentence here."], [None, None])
    assert np.isnan(dsi).all()


@pytest.mark.slow
def test_across_candidates_outlier_is_farthest(embedder):
    cands = [
        "A dog chased a ball in the park.",
        "A puppy ran after a ball in the park.",
        "The central bank raised interest rates to curb inflation.",
        "",
    ]
    texts = Texts(cands, [None] * 4, np.array([4]), MeasureConfig(), embedder)
    dist = MEASURES["div_across"].compute(texts)
    assert np.argmax(np.nan_to_num(dist, nan=-1)) == 2
    assert np.isnan(dist[3])


@pytest.mark.slow
def test_encode_dedupes_and_keeps_order(embedder):
    emb = embedder.encode(["b text", "a text", "b text"])
    assert np.allclose(emb[0], emb[2])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    direct = embedder.model.encode(["a text"], normalize_embeddings=True)
    assert np.allclose(emb[1], direct[0], atol=1e-6)
