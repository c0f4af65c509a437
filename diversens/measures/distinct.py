"""Distinct-n across a prompt's samples: the share of the samples' word n-grams that are unique
(Li et al. 2016), n = 1…4, the across-sample lexical figure the paper reports.

n-grams are taken within each sample (none spans two samples), over `diversens.text.words`;
a group without any n-gram has no value (NaN).
"""

from __future__ import annotations

import numpy as np

from diversens.measures.registry import Measure, Texts, register

ORDERS = (1, 2, 3, 4)


def distinct_n(samples: list[list[str]], n: int) -> float:
    """Unique n-grams / all n-grams over the samples' word lists."""
    grams = [tuple(ws[i : i + n]) for ws in samples for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def _distinct(n: int):
    def compute(texts: Texts) -> np.ndarray:
        words = texts.words()
        return np.array([distinct_n(words[g], n) for g in texts.groups()])

    return compute


register(*(Measure(f"distinct_{n}", f"unique / all word {n}-grams across a prompt's samples",
                   _distinct(n), scope="samples", ranks_dd=False) for n in ORDERS))  # fmt: skip
