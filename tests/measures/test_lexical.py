import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lexicalrichness import LexicalRichness

from diversens.measures.lexical import KEYS, lexical_measures, measure_texts

NAN = float("nan")


def reference(tokens: list[str], window=50, threshold=0.72, draws=42) -> dict[str, float]:
    """lexicalrichness on the same tokens, with our documented values where it raises."""
    if not tokens:
        return {k: (0.0 if k == "n_words" else NAN) for k in KEYS}
    lr = LexicalRichness(tokens, preprocessor=None, tokenizer=None)
    n = len(tokens)
    counts = np.array(list(Counter(tokens).values()), dtype=float)
    return {
        "n_words": float(n),
        "entropy": float(-sum(c / n * math.log2(c / n) for c in counts)),
        "ttr": lr.ttr,
        "mattr": lr.mattr(window) if n >= window else lr.ttr,
        "maas": lr.Maas if n >= 2 else NAN,
        "mtld": lr.mtld(threshold),
        "hdd": lr.hdd(draws) if n >= draws else NAN,
    }


def random_responses(n: int, seed: int, vocab_size: int = 300) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(vocab_size)]
    out = []
    for _ in range(n):
        length = int(rng.choice([rng.integers(0, 5), rng.integers(5, 60), rng.integers(60, 400)]))
        ranks = (rng.zipf(1.2 + rng.random(), size=length) - 1) % vocab_size
        out.append([vocab[r] for r in ranks])
    return out


def assert_close(ours: dict[str, np.ndarray], refs: list[dict[str, float]], tol=1e-9):
    for key in KEYS:
        expected = np.array([r[key] for r in refs])
        np.testing.assert_allclose(ours[key], expected, rtol=0, atol=tol, err_msg=key)


def test_equals_lexicalrichness_on_random_responses():
    responses = random_responses(300, seed=0)
    assert_close(lexical_measures(responses), [reference(r) for r in responses])


@pytest.mark.parametrize("window,threshold,draws", [(10, 0.66, 5), (100, 0.8, 60)])
def test_equals_lexicalrichness_other_parameters(window, threshold, draws):
    responses = random_responses(80, seed=1)
    ours = lexical_measures(responses, window, threshold, draws)
    assert_close(ours, [reference(r, window, threshold, draws) for r in responses])


def test_edge_cases():
    got = lexical_measures([[], ["a"], ["a", "a"], [str(i) for i in range(60)]])
    assert got["n_words"].tolist() == [0, 1, 2, 60]
    for key in KEYS[1:]:
        assert np.isnan(got[key][0]), key  # empty: every measure undefined
    one = {k: got[k][1] for k in KEYS}
    assert one["ttr"] == 1.0 and one["entropy"] == 0.0 and one["mattr"] == 1.0
    assert one["mtld"] == 1.0 and np.isnan(one["maas"]) and np.isnan(one["hdd"])
    assert got["maas"][2] == pytest.approx(1 / math.log(2)) and got["mtld"][2] == 2.0
    distinct = {k: got[k][3] for k in KEYS}
    assert distinct["ttr"] == distinct["mattr"] == 1.0
    assert distinct["hdd"] == pytest.approx(1.0, abs=1e-12)  # = V/N, up to rounding
    assert distinct["maas"] == 0.0 and distinct["mtld"] == 60.0
    assert distinct["entropy"] == pytest.approx(math.log2(60))


def test_empty_batch_and_dtypes():
    assert all(v.shape == (0,) for v in lexical_measures([]).values())
    got = lexical_measures([["x", "y"]])
    assert set(got) == set(KEYS) and all(v.dtype == np.float64 for v in got.values())


def test_mattr_short_text_is_ttr():
    tokens = ["a", "b", "a", "c"]
    got = lexical_measures([tokens], mattr_window=50)
    assert got["mattr"][0] == got["ttr"][0] == 0.75


def test_measure_texts_tokenises_with_words():
    got = measure_texts(["One sentence, one sentence only.", ""])
    assert got["n_words"].tolist() == [5, 0]
    assert got["ttr"][0] == pytest.approx(3 / 5)


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        lexical_measures([["a"]], mtld_threshold=1.0)


# ---------------------------------------------------------------------------------------------
# Properties

token_lists = st.lists(st.sampled_from("abcdefghijklmnop"), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None)
@given(token_lists)
def test_bounds(tokens):
    got = lexical_measures([tokens])
    vocab = len(set(tokens))
    assert 0 < got["ttr"][0] <= 1
    assert -1e-12 <= got["entropy"][0] <= math.log2(vocab) + 1e-12
    assert 0 < got["mattr"][0] <= 1
    assert got["mtld"][0] > 0


@settings(max_examples=60, deadline=None)
@given(token_lists, st.randoms(use_true_random=False))
def test_permutation_invariance(tokens, rnd):
    shuffled = list(tokens)
    rnd.shuffle(shuffled)
    a, b = lexical_measures([tokens]), lexical_measures([shuffled])
    for key in ("n_words", "ttr", "entropy", "maas", "hdd"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=80), min_size=1, max_size=8))
def test_batch_invariance(batch):
    together = lexical_measures(batch)
    reordered = lexical_measures(batch[::-1])
    for i, tokens in enumerate(batch):
        alone = lexical_measures([tokens])
        for key in KEYS:
            np.testing.assert_allclose(together[key][i], alone[key][0], atol=1e-12, rtol=0)
            np.testing.assert_allclose(reordered[key][-1 - i], alone[key][0], atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=2, max_size=60))
def test_repetition_lowers_diversity(tokens):
    got = lexical_measures([tokens, tokens * 3])
    assert got["ttr"][1] < got["ttr"][0]
    assert got["mattr"][1] <= got["mattr"][0] + 1e-12
    # Maas (ln N - ln V)/(ln N)^2 grows with N only while N < V^2: with few types, repeating a
    # text *lowers* it ("a a" -> 1.44, "a a a a a a" -> 0.56), so that part needs 3N <= V^2.
    assume(len(set(tokens)) ** 2 >= 3 * len(tokens))
    assert got["maas"][1] >= got["maas"][0] - 1e-12
