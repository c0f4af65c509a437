"""Semantic diversity from sentence embeddings.

- within-response (DSI-style): mean pairwise cosine distance between the segments (sentences or
  list items: its task's splitter, `diversens.prompts.segments`) of one response;
- across-candidates: mean cosine distance of a response's embedding from the other candidates of
  the same prompt.

Undefined values are NaN, never 0: a response with fewer than two segments has no pair to compare
(empty and one-sentence responses), and a candidate with no other non-empty candidate has no
neighbour. Downstream stages treat NaN as "not measurable", with a reject reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diversens.measures.registry import Measure, Texts, register
from diversens.models import DEFAULT_EMBEDDER, resolve_model, without_progress_bars
from diversens.prompts import segments


def group_mean_pairwise_distance(emb: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine distance within consecutive groups of unit-norm rows.

    emb: (sum(sizes), D) L2-normalised; sizes: (G,). For a group E of n rows,
    sum_{i!=j} e_i.e_j = |sum_i e_i|^2 - n, so no (n, n) matrix is built.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.full(len(sizes), np.nan)
    nonempty = sizes > 0
    if not nonempty.any():
        return out
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[nonempty]
    sums = np.add.reduceat(emb.astype(np.float64), starts, axis=0)  # (G', D)
    n = sizes[nonempty].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = (np.einsum("gd,gd->g", sums, sums) - n) / (n * (n - 1))
    out[nonempty] = np.where(n >= 2, 1.0 - mean_sim, np.nan)
    return out


def distance_to_others(emb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per candidate, mean cosine distance to the other valid candidates of the same prompt.

    emb: (k, D) unit-norm; valid: (k,) bool. Invalid rows, or rows with no valid neighbour, get NaN.
    """
    k = len(valid)
    out = np.full(k, np.nan)
    m = int(valid.sum())
    if m < 2:
        return out
    e = emb[valid].astype(np.float64)
    total = e.sum(axis=0)  # (D,)
    out[valid] = 1.0 - (e @ total - 1.0) / (m - 1)
    return out


class Embedder:
    """Holds one SentenceTransformer; encodes unique texts once, unit-normalised.

    Heavy state is created in `__init__` so a Ray actor pool loads the model once per actor.
    """

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, device: str | None = None, batch_size: int = 128
    ):
        from sentence_transformers import SentenceTransformer

        self.model_id = model
        with without_progress_bars():  # also loaded on the driver (eval's DAT scores)
            self.model = SentenceTransformer(resolve_model(model), device=device)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32, L2-normalised; duplicate texts are encoded once."""
        if len(texts) == 0:
            dim = self.model.get_embedding_dimension()
            return np.zeros((0, dim), dtype=np.float32)
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        emb = self.model.encode(
            list(unique),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return emb[inverse]

    def within_diversity(
        self, responses: Sequence[str], tasks: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """DSI-style diversity per response: one encode call for all segments of the batch."""
        tasks = tasks if tasks is not None else [None] * len(responses)
        segs = [segments(text, task) for text, task in zip(responses, tasks, strict=True)]
        flat = [s for group in segs for s in group]
        return group_mean_pairwise_distance(self.encode(flat), np.array([len(g) for g in segs]))


def _dsi(texts: Texts) -> np.ndarray:
    return texts.embedder.within_diversity(texts.texts, texts.tasks)


def _div_across(texts: Texts) -> np.ndarray:
    """Each response's mean distance to the other non-empty responses of its group."""
    emb = texts.embeddings()
    valid = np.array([bool(t.strip()) for t in texts.texts], dtype=bool)
    parts = [distance_to_others(emb[g], valid[g]) for g in texts.groups()]
    return np.concatenate([np.zeros(0), *parts])


register(
    Measure("dsi", "mean pairwise cosine distance of the response's segments", _dsi,
            needs="embedder"),
    Measure("div_across", "mean cosine distance to the other samples of the prompt", _div_across,
            needs="embedder"),
)  # fmt: skip
