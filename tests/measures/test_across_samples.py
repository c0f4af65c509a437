"""Across-sample measures against independent references: distinct-n against a plain set count,
Vendi against the `vendi-score` package, token-level DSI against a direct transformers pass."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diversens.measures import MEASURES, Texts
from diversens.measures.distinct import distinct_n
from diversens.measures.vendi import vendi_score
from diversens.scoring.measure import MeasureConfig

words = st.lists(st.lists(st.sampled_from("a b c d e f".split()), max_size=12), max_size=6)


@settings(max_examples=100, deadline=None)
@given(words, st.integers(1, 4))
def test_distinct_n_is_the_share_of_unique_ngrams(samples, n):
    grams = []
    for ws in samples:
        grams += [" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    got = distinct_n(samples, n)
    if not grams:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(len(set(grams)) / len(grams))
        assert 0 < got <= 1


def test_distinct_counts_across_samples_not_within_one():
    texts = Texts(["the cat sat", "the cat sat", "a dog ran"], [None] * 3, np.array([2, 1]),
                  MeasureConfig())  # fmt: skip
    assert MEASURES["distinct_1"].compute(texts) == pytest.approx([0.5, 1.0])
    assert MEASURES["distinct_2"].compute(texts) == pytest.approx([0.5, 1.0])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.integers(2, 20), st.integers(0, 2**31 - 1))
def test_vendi_equals_the_vendi_score_package(n, dim, seed):
    from vendi_score import vendi

    x = np.random.default_rng(seed).normal(size=(n, dim))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert vendi_score(unit) == pytest.approx(vendi.score_X(unit), rel=1e-9, abs=1e-9)


def test_vendi_counts_distinct_samples_and_skips_empty_ones():
    class Fixed:  # an embedder: one axis per distinct text
        def encode(self, texts):
            axes = {t: i for i, t in enumerate(dict.fromkeys(texts))}
            return np.eye(8)[[axes[t] for t in texts]]

    texts = Texts(["a", "a", "a", "b", "c", ""], [None] * 6, np.array([3, 3]), MeasureConfig(),
                  Fixed())  # fmt: skip
    assert MEASURES["vendi"].compute(texts) == pytest.approx([1.0, 2.0])


@pytest.mark.slow
def test_token_dsi_equals_a_direct_pass_through_the_bert():
    import torch

    from diversens.measures.semantic import Embedder

    embedder = Embedder()
    module = embedder.model[0]
    texts = ["The storm broke the old bridge.", "Cats cats cats cats.", "Hi"]
    got = MEASURES["token_dsi"].compute(Texts(texts, [None] * 3, np.ones(3, int),
                                              MeasureConfig(), embedder))  # fmt: skip
    for text, value in zip(texts, got, strict=True):
        enc = module.processor([text], return_tensors="pt")
        with torch.inference_mode():
            h = module.auto_model(**enc, output_hidden_states=True).hidden_states[-1][0, 1:-1]
        v = torch.nn.functional.normalize(h.float(), dim=1).numpy()
        pairs = [1 - v[i] @ v[j] for i in range(len(v)) for j in range(len(v)) if i != j]
        assert value == pytest.approx(np.mean(pairs), abs=1e-5) if pairs else np.isnan(value)
    assert got[0] > got[1]  # a varied sentence spreads its tokens more than a repeated word
