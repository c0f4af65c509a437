"""Lexical diversity of a whole batch of responses at once, on flat numpy arrays.

All tokens of the batch are mapped to integer ids once; counts, first occurrences and windows are
then array operations over the concatenation (no per-token Python). Values equal those of the
`lexicalrichness` package (v0.5.1, `LexicalRichness(tokens, preprocessor=None, tokenizer=None)`)
to 1e-9 on the same tokens; entropy (which it lacks) is the plain unigram Shannon entropy.

Definitions (N tokens, V types, c_t the count of type t):
- entropy: -sum_t (c_t/N) log2(c_t/N), in bits.
- ttr: V / N.
- mattr: mean TTR over all windows of `mattr_window` consecutive tokens (Covington & McFall 2010).
- maas: a² = (ln N − ln V) / (ln N)²; lower means more diverse (Maas 1972).
- mtld: mean of the forward and the backward pass; a factor ends at the token where the running
  TTR drops to <= threshold, the leftover is a partial factor (1 − TTR) / (1 − threshold), and a
  text whose TTR never drops gets one factor (McCarthy & Jarvis 2010, as lexicalrichness does it).
- hdd: sum_t (1 − P[type t absent from `hdd_draws` draws without replacement]) / draws (McCarthy &
  Jarvis 2007). It is the expected TTR of a random sample of `hdd_draws` tokens.

Edge values, documented instead of raising (lexicalrichness raises or divides by zero there):

    case                     n_words  entropy  ttr   mattr  maas  mtld  hdd
    empty (N = 0)            0        NaN      NaN   NaN    NaN   NaN   NaN
    one word (N = 1)         1        0.0      1.0   1.0    NaN   1.0   NaN (N < draws)
    0 < N < mattr_window     N        ...      ...   = ttr  ...   ...   ...
    N < hdd_draws            N        ...      ...   ...    ...   ...   NaN
    all tokens distinct      N        log2 N   1.0   1.0    0.0   N     1.0 (N >= draws)

MATTR for 0 < N < window: lexicalrichness raises; we take the whole text as the single window,
i.e. TTR. Maas needs ln N > 0, i.e. N >= 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np
import pandas as pd

from diversens.measures.registry import Measure, Texts, register
from diversens.text import words

KEYS = ("n_words", "entropy", "ttr", "mattr", "maas", "mtld", "hdd")


class _Flat(NamedTuple):
    """The batch as flat arrays; T tokens, B responses, K (response, type) pairs."""

    lengths: np.ndarray  # (B,) tokens per response
    starts: np.ndarray  # (B,) offset of each response in the flat arrays
    row: np.ndarray  # (T,) response of each token
    prev: np.ndarray  # (T,) local position of the previous same token in the response, or -1
    next: np.ndarray  # (T,) local position of the next same token in the response, or -1
    type_row: np.ndarray  # (K,) response of each (response, type) pair
    type_count: np.ndarray  # (K,) its count


def lexical_measures(
    token_lists: Sequence[Sequence[str]],
    mattr_window: int = 50,
    mtld_threshold: float = 0.72,
    hdd_draws: int = 42,
) -> dict[str, np.ndarray]:
    """Lexical measures per response: float64 arrays of length len(token_lists), keys `KEYS`."""
    if mattr_window < 1 or hdd_draws < 1 or not 0 < mtld_threshold < 1:
        raise ValueError("need mattr_window >= 1, hdd_draws >= 1 and 0 < mtld_threshold < 1")
    flat = _flatten(token_lists)
    n = flat.lengths.astype(np.float64)
    types = np.bincount(flat.type_row, minlength=len(n)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttr = np.where(n > 0, types / n, np.nan)
        log_n = np.log(n)
        maas = np.where(n >= 2, (log_n - np.log(types)) / log_n**2, np.nan)
    return {
        "n_words": n,
        "entropy": _entropy(flat, n),
        "ttr": ttr,
        "mattr": _mattr(flat, mattr_window, ttr),
        "maas": maas,
        "mtld": _mtld(flat, mtld_threshold, ttr),
        "hdd": _hdd(flat, hdd_draws),
    }


def measure_texts(texts: Sequence[str], **kwargs) -> dict[str, np.ndarray]:
    """`lexical_measures` of raw texts, tokenised with `diversens.text.words`."""
    return lexical_measures([words(t) for t in texts], **kwargs)


def _flatten(token_lists: Sequence[Sequence[str]]) -> _Flat:
    lengths = np.fromiter((len(t) for t in token_lists), np.int64, len(token_lists))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tokens = np.fromiter(chain.from_iterable(token_lists), object, int(lengths.sum()))
    ids = pd.factorize(tokens)[0].astype(np.int64)  # hash-based: ~10x faster than np.unique
    row = np.repeat(np.arange(len(lengths)), lengths)
    # Stable sort by (response, type): equal tokens of a response become adjacent, in text order.
    key = row * (ids.max(initial=0) + 1) + ids
    order = np.argsort(key, kind="stable")
    key = key[order]
    same = key[1:] == key[:-1]  # sorted neighbours k, k+1 are the same token of one response
    local = np.arange(len(ids)) - starts[row]
    prev = np.full(len(ids), -1, np.int64)
    prev[order[1:][same]] = local[order[:-1][same]]
    nxt = np.full(len(ids), -1, np.int64)
    nxt[order[:-1][same]] = local[order[1:][same]]
    first = np.flatnonzero(np.concatenate([[True], ~same])) if len(ids) else np.zeros(0, np.int64)
    counts = np.diff(np.append(first, len(ids)))
    return _Flat(lengths, starts, row, prev, nxt, row[order[first]], counts)


def _entropy(flat: _Flat, n: np.ndarray) -> np.ndarray:
    # H = log2 N − (1/N) sum_t c_t log2 c_t, one weighted bincount for the whole batch.
    c = flat.type_count.astype(np.float64)
    s = np.bincount(flat.type_row, weights=c * np.log2(c), minlength=len(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.log2(n) - s / n, np.nan)


def _mattr(flat: _Flat, window: int, ttr: np.ndarray) -> np.ndarray:
    """Sum over windows of distinct counts = sum over tokens of the windows they are new in.

    Token at local position t (previous occurrence p) counts as new in window i (covering
    i..i+w−1) iff i <= t <= i+w−1 and p < i: i ranges over [max(0, t−w+1, p+1), min(t, N−w)].
    """
    n = flat.lengths
    n_tok = n[flat.row]
    t = np.arange(len(flat.row)) - flat.starts[flat.row]
    lo = np.maximum(np.maximum(t - window + 1, flat.prev + 1), 0)
    hi = np.minimum(t, n_tok - window)
    new_in = np.maximum(hi - lo + 1, 0).astype(np.float64)
    total = np.bincount(flat.row, weights=new_in, minlength=len(n))
    n_windows = n - window + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_windows >= 1, total / window / n_windows, ttr)


def _mtld(flat: _Flat, threshold: float, ttr: np.ndarray) -> np.ndarray:
    """Both MTLD passes as 2B sequences run in lockstep: one numpy step per token position.

    Factor boundaries depend on earlier ones, so positions are walked in order, but each step
    advances every sequence of the batch at once. The token at position j of a sequence is new
    in the current factor iff its previous occurrence lies before the factor's start.
    """
    n, starts = flat.lengths, flat.starts
    n_tok = n[flat.row]
    # Backward pass as a forward pass over the reversed text: reversed position j holds the
    # token at forward position N−1−j, and its previous occurrence is the forward next one.
    src = 2 * starts[flat.row] + n_tok - 1 - np.arange(len(flat.row))
    prev_rev = np.where(flat.next[src] >= 0, n_tok - 1 - flat.next[src], -1)
    prev_all = np.concatenate([flat.prev, prev_rev])
    seq_start = np.concatenate([starts, starts + len(flat.row)])
    seq_len = np.concatenate([n, n])
    by_len = np.argsort(-seq_len, kind="stable")  # active sequences are always a prefix
    seq_start, seq_len = seq_start[by_len], seq_len[by_len]
    n_active = np.searchsorted(-seq_len, -np.arange(seq_len.max(initial=0)), side="left")

    factor_start = np.zeros(len(seq_len), np.int64)
    distinct = np.zeros(len(seq_len), np.int64)
    factors = np.zeros(len(seq_len))
    last_ttr = np.ones(len(seq_len))
    for j, a in enumerate(n_active):
        fs = factor_start[:a]
        d = distinct[:a] + (prev_all[seq_start[:a] + j] < fs)
        run_ttr = d / (j - fs + 1)
        hit = run_ttr <= threshold
        factors[:a] += hit
        distinct[:a] = np.where(hit, 0, d)
        factor_start[:a] = np.where(hit, j + 1, fs)
        last_ttr[:a] = run_ttr

    partial = seq_len > factor_start
    factors[partial] += (1 - last_ttr[partial]) / (1 - threshold)
    # No factor completed nor partial credit: lexicalrichness falls back to the whole-text TTR.
    whole_ttr = np.concatenate([ttr, ttr])[by_len]
    none = factors == 0
    factors[none] = np.where(whole_ttr[none] == 1, 1.0, (1 - whole_ttr[none]) / (1 - threshold))
    per_seq = np.empty(len(seq_len))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_seq[by_len] = np.where(seq_len > 0, seq_len / factors, np.nan)
    return (per_seq[: len(n)] + per_seq[len(n) :]) / 2


def _hdd(flat: _Flat, draws: int) -> np.ndarray:
    """P[type absent from the draws] = prod_{i<d} (N−c−i)/(N−i), hypergeometric pmf at 0.

    Computed once per distinct (N, c) pair of the batch, as a running product over the draws.
    """
    n = flat.lengths
    n_type = n[flat.type_row]
    ok = n_type >= draws  # lexicalrichness raises for N < draws: NaN below
    pair = n_type[ok] * (n.max(initial=0) + 1) + flat.type_count[ok]
    pairs, inverse = np.unique(pair, return_inverse=True)
    big_n = (pairs // (n.max(initial=0) + 1)).astype(np.float64)
    c = (pairs % (n.max(initial=0) + 1)).astype(np.float64)
    absent = np.ones(len(pairs))
    for i in range(draws):
        absent *= np.maximum(big_n - c - i, 0) / (big_n - i)
    contrib = (1 - absent[inverse]) / draws
    out = np.bincount(flat.type_row[ok], weights=contrib, minlength=len(n))
    return np.where(n >= draws, out, np.nan)


def _of_texts(texts: Texts) -> dict[str, np.ndarray]:
    """All lexical measures of the batch in one pass, shared by the registered measures."""
    s = texts.settings
    return texts.memo("lexical", lambda: lexical_measures(
        texts.words(), s.mattr_window, s.mtld_threshold, s.hdd_draws))  # fmt: skip


def _lexical(name: str, help: str, sign: int = 1, ranks_dd: bool = True) -> Measure:
    return Measure(name, help, lambda t: _of_texts(t)[name], sign=sign, ranks_dd=ranks_dd)


register(
    _lexical("n_words", "words (diversens.text.words): the length", sign=0, ranks_dd=False),
    _lexical("entropy", "Shannon entropy of the unigram distribution, bits"),
    _lexical("ttr", "type-token ratio"),
    _lexical("mattr", "moving-average TTR over mattr_window words"),
    _lexical("maas", "Maas a²: lower is more diverse", sign=-1, ranks_dd=False),
    _lexical("mtld", "measure of textual lexical diversity"),
    _lexical("hdd", "HD-D: expected TTR of hdd_draws words"),
)
