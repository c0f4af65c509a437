"""Per-response measures as pipeline stages: length + lexical (plain CPU), semantic (embedder).

Both stages accept two row shapes:
- one response per row (`text_field` holds a string): measures become scalar columns, and the
  across-candidate distance is taken among rows of the batch sharing `group_field` (prompt_id);
- candidates rows (`text_field` holds a list of strings, DESIGN.md §3): measures become list
  columns aligned with the candidates; across-candidate distance among the row's own candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diversens import schema
from diversens.models import DEFAULT_EMBEDDER
from diversens.scoring.lexical import lexical_measures
from diversens.scoring.semantic import Embedder
from diversens.stage import Stage
from diversens.text import words

LEXICAL = schema.names(schema.LEXICAL)
SEMANTIC = schema.names(schema.SEMANTIC)
MEASURES = LEXICAL + SEMANTIC


@dataclass
class MeasureConfig:
    text_field: str = field(
        default="response",
        metadata={"help": "column holding the text (a string, or a list of candidate strings)"},
    )
    task_field: str = field(
        default="task", metadata={"help": "column naming the task (picks the segment splitter)"}
    )
    group_field: str = field(
        default="prompt_id",
        metadata={
            "help": "rows sharing this column are candidates of one prompt (flat rows only; "
            "'' for no across-candidate distance)"
        },
    )
    embedder: str = field(
        default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model name, path or id"}
    )
    device: str | None = field(default=None, metadata={"help": "torch device for the embedder"})
    embed_batch_size: int = field(default=128, metadata={"help": "texts per encode batch"})
    mattr_window: int = field(default=50, metadata={"help": "MATTR moving-window size in words"})
    mtld_threshold: float = field(default=0.72, metadata={"help": "MTLD factor TTR threshold"})
    hdd_draws: int = field(default=42, metadata={"help": "HD-D sample size"})

    def __post_init__(self):
        if self.mattr_window < 1:
            raise ValueError(f"mattr_window must be >= 1, got {self.mattr_window}")
        if not 0 < self.mtld_threshold < 1:
            raise ValueError(f"mtld_threshold must be in (0, 1), got {self.mtld_threshold}")
        if self.hdd_draws < 1:
            raise ValueError(f"hdd_draws must be >= 1, got {self.hdd_draws}")
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {self.embed_batch_size}")


def no_semantic_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """NaN semantic columns for candidates rows when no strategy needs them (keeps the scored
    schema fixed without loading an embedder)."""
    out = batch.copy()
    for name in SEMANTIC:
        out[name] = [[float("nan")] * len(r) for r in batch["responses"]]
    return out


class MeasureStage(Stage):
    """Length, lexical, then semantic measures (NaN columns with `semantic=False`, no embedder
    loaded): one callable, so one actor pool runs them all. As a task of its own, the lexical
    step would need a free CPU, and while the engine and scoring pools hold every CPU it would
    wait for sampling to end, so scoring could not overlap sampling."""

    adds = MEASURES

    def __init__(self, cfg: MeasureConfig | None = None, semantic: bool = True):
        self.lexical = LexicalStage(cfg)
        self.semantic = SemanticStage(cfg) if semantic else None

    def required_columns(self) -> tuple[str, ...]:
        return self.lexical.required_columns()

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = self.lexical(batch)
        return self.semantic(out) if self.semantic else no_semantic_batch(out)


@dataclass
class Responses:
    """A batch's responses flattened: one entry per response, whichever the row shape."""

    texts: list[str]
    tasks: list[str | None]
    sizes: np.ndarray  # (rows,) responses per row
    nested: bool

    @classmethod
    def of(cls, batch: pd.DataFrame, cfg: MeasureConfig) -> Responses:
        col = batch[cfg.text_field]
        nested = len(col) > 0 and not isinstance(col.iloc[0], str)
        groups = [list(v) for v in col] if nested else [[v] for v in col]
        sizes = np.array([len(g) for g in groups], dtype=np.int64)
        row_tasks = batch[cfg.task_field] if cfg.task_field in batch else [None] * len(batch)
        tasks = np.repeat(np.asarray(row_tasks, dtype=object), sizes).tolist()
        return cls([t for g in groups for t in g], tasks, sizes, nested)

    def groups(self) -> list[list[str]]:
        return [list(g) for g in np.split(np.asarray(self.texts, dtype=object), self.bounds)]

    @property
    def bounds(self) -> np.ndarray:
        return np.cumsum(self.sizes)[:-1]

    def assign(self, batch: pd.DataFrame, values: dict[str, np.ndarray]) -> pd.DataFrame:
        """Copy of `batch` with each flat value array as a column (lists for candidate rows)."""
        out = batch.copy()
        for name, v in values.items():
            out[name] = [p.tolist() for p in np.split(v, self.bounds)] if self.nested else v
        return out


class LexicalStage(Stage):
    """Adds word count and the lexical measures; no model, so Ray runs it as plain tasks."""

    adds = LEXICAL

    def __init__(self, cfg: MeasureConfig | None = None):
        self.cfg = cfg or MeasureConfig()

    def required_columns(self) -> tuple[str, ...]:
        return (self.cfg.text_field,)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        cfg, resp = self.cfg, Responses.of(batch, self.cfg)
        values = lexical_measures(
            [words(t) for t in resp.texts],
            mattr_window=cfg.mattr_window,
            mtld_threshold=cfg.mtld_threshold,
            hdd_draws=cfg.hdd_draws,
        )
        return resp.assign(batch, values)


class SemanticStage(Stage):
    """Adds `dsi` and `div_across`. Loads the embedder once (one per Ray actor)."""

    adds = SEMANTIC

    def __init__(self, cfg: MeasureConfig | None = None):
        self.cfg = cfg or MeasureConfig()
        self.embedder = Embedder(self.cfg.embedder, self.cfg.device, self.cfg.embed_batch_size)

    def required_columns(self) -> tuple[str, ...]:
        return (self.cfg.text_field,)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        resp = Responses.of(batch, self.cfg)
        values = {"dsi": self.embedder.within_diversity(resp.texts, resp.tasks)}
        if resp.nested:
            across = self.embedder.across_diversity(resp.groups())
        elif self.cfg.group_field in batch:
            across = self._across_by_group(resp.texts, batch[self.cfg.group_field].to_numpy())
        else:
            across = [np.full(len(resp.texts), np.nan)]
        values["div_across"] = np.concatenate([np.zeros(0), *across])
        return resp.assign(batch, values)

    def _across_by_group(self, texts: list[str], keys: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        groups = [[texts[i] for i in idx] for idx in np.split(order, cuts)]
        out = np.empty(len(texts))
        out[order] = np.concatenate([np.zeros(0), *self.embedder.across_diversity(groups)])
        return [out]
