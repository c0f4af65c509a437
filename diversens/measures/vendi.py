"""The Vendi score of a prompt's samples (Friedman & Dieng 2023): the exponential of the Shannon
entropy of the eigenvalues of K/n, K the samples' cosine-similarity matrix over the embedder's
unit vectors. It is the effective number of distinct samples: 1 for n copies of one answer, n
for n orthogonal ones. Empty samples are left out; a group with none has no value (NaN).
"""

from __future__ import annotations

import numpy as np

from diversens.measures.registry import Measure, Texts, register


def vendi_score(unit: np.ndarray) -> float:
    """Vendi score of (n, D) unit-norm rows. The eigenvalues of X Xᵀ/n equal those of Xᵀ X/n
    (plus zeros), so the smaller of the two matrices is decomposed."""
    n = len(unit)
    if n == 0:
        return float("nan")
    x = unit.astype(np.float64)
    gram = x @ x.T if n <= x.shape[1] else x.T @ x
    w = np.linalg.eigvalsh(gram / n)
    w = w[w > 1e-12]
    return float(np.exp(-(w * np.log(w)).sum()))


def _vendi(texts: Texts) -> np.ndarray:
    emb = texts.embeddings()
    nonempty = np.array([bool(t.strip()) for t in texts.texts], dtype=bool)
    return np.array([vendi_score(emb[g][nonempty[g]]) for g in texts.groups()])


register(Measure("vendi", "effective number of distinct samples of a prompt (Vendi score over "
                 "sentence embeddings)", _vendi, scope="samples", needs="embedder",
                 ranks_dd=False))  # fmt: skip
