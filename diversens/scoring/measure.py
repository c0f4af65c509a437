"""The measures as one pipeline stage: every registered measure a run asks for
(`diversens.measures`), over batches of responses.

The stage accepts two row shapes:
- one response per row (`text_field` holds a string): measures become scalar columns, and a
  prompt's samples are the rows of the batch sharing `group_field` (prompt_id);
- candidates rows (`text_field` holds a list of strings, docs/design.md §6): measures become list
  columns aligned with the candidates; a prompt's samples are the row's own candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diversens import measures
from diversens.models import DEFAULT_EMBEDDER, check_device_name
from diversens.ranges import check_ranges
from diversens.stage import Stage


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
    embed_batch_size: int = field(
        default=128, metadata={"range": "[1, inf)", "help": "texts per encode batch"}
    )
    mattr_window: int = field(
        default=50, metadata={"range": "[1, inf)", "help": "MATTR moving-window size in words"}
    )
    mtld_threshold: float = field(
        default=0.72, metadata={"range": "(0, 1)", "help": "MTLD factor TTR threshold"}
    )
    hdd_draws: int = field(default=42, metadata={"range": "[1, 10000]", "help": "HD-D sample size"})
    measures: list[str] = field(
        default_factory=list,
        metadata={
            "help": "measures to compute beyond those the run ranks by (the measure command: "
            f"beyond every default one); registered: {', '.join(measures.names())}"
        },
    )
    options: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "range": "(-inf, inf)",
            "help": "measure tunables as MEASURE.KEY=VALUE, e.g. token_dsi.layer=4",
        },
    )

    def __post_init__(self):
        check_ranges(self)  # a measure's tunables: any finite number here, its own check on use
        check_device_name(self.device)
        measures.check("measures", self.measures)
        for key in self.options:
            name, _, option = key.partition(".")
            if option not in (measures.MEASURES[name].options if name in measures.MEASURES else {}):
                raise ValueError(f"options: {key!r} is not MEASURE.KEY of a measure's tunable")

    def resolve(self, required: Iterable[str] = ()) -> tuple[str, ...]:
        """The measures a run computes: `required` (what it ranks by), the ones asked for, and
        the defaults its models serve anyway."""
        return measures.resolve(required, self.measures)


class MeasureStage(Stage):
    """Adds the measures `names` (default: every default measure) as columns. Loads the embedder
    once (one per Ray actor) when one of them needs it, nothing otherwise, so a run whose
    strategies rank by words alone runs it as plain CPU work."""

    def __init__(self, cfg: MeasureConfig | None = None, names: Iterable[str] | None = None,
                 embedder=None):  # fmt: skip
        """`embedder`: one already loaded, to share (else the stage loads its own if needed)."""
        self.cfg = cfg or MeasureConfig()
        self.adds = tuple(names) if names is not None else self.cfg.resolve(
            measures.names(lambda m: m.default))  # fmt: skip
        self.embedder = embedder
        if embedder is None and measures.needs_embedder(self.adds):
            from diversens.measures.semantic import Embedder

            cfg = self.cfg
            self.embedder = Embedder(cfg.embedder, cfg.device, cfg.embed_batch_size)

    def required_columns(self) -> tuple[str, ...]:
        return (self.cfg.text_field,)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        resp = Responses.of(batch, self.cfg)
        texts = measures.Texts(resp.texts, resp.tasks, resp.sizes, self.cfg, self.embedder)
        values = {}
        for name in self.adds:
            spec = measures.MEASURES[name]
            v = np.asarray(spec.compute(texts), dtype=np.float64)
            values[name] = np.repeat(v, resp.sizes) if spec.scope == "samples" else v
        return resp.assign(batch, values)


@dataclass
class Responses:
    """A batch's responses flattened in group order (a prompt's samples consecutive), whichever
    the row shape, and the way back to the batch's rows."""

    texts: list[str]
    tasks: list[str | None]
    sizes: np.ndarray  # (G,) responses per group
    order: np.ndarray | None  # flat rows: the batch row of each flat response; None: nested
    row_sizes: np.ndarray  # nested rows: candidates per row

    @classmethod
    def of(cls, batch: pd.DataFrame, cfg: MeasureConfig) -> Responses:
        col = batch[cfg.text_field]
        row_tasks = batch[cfg.task_field] if cfg.task_field in batch else [None] * len(batch)
        if len(col) > 0 and not isinstance(col.iloc[0], str):  # candidates rows
            sizes = np.array([len(v) for v in col], dtype=np.int64)
            tasks = np.repeat(np.asarray(row_tasks, dtype=object), sizes).tolist()
            return cls([t for v in col for t in v], tasks, sizes, None, sizes)
        if cfg.group_field and cfg.group_field in batch:
            keys = batch[cfg.group_field].astype(str).to_numpy()
            order = np.argsort(keys, kind="stable")
            sizes = np.unique(keys[order], return_counts=True)[1]
        else:  # no groups: every response is its own
            order, sizes = np.arange(len(batch)), np.ones(len(batch), dtype=np.int64)
        tasks = np.asarray(row_tasks, dtype=object)[order].tolist()
        return cls(col.to_numpy(dtype=object)[order].tolist(), tasks, sizes, order, sizes)

    def assign(self, batch: pd.DataFrame, values: dict[str, np.ndarray]) -> pd.DataFrame:
        """Copy of `batch` with each flat value array as a column (lists for candidate rows)."""
        out = batch.copy()
        bounds = np.cumsum(self.row_sizes)[:-1]
        for name, v in values.items():
            if self.order is None:
                out[name] = [p.tolist() for p in np.split(v, bounds)]
            else:
                column = np.empty(len(v))
                column[self.order] = v
                out[name] = column
        return out
