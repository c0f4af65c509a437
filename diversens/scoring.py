"""Scoring on Ray Data: candidates rows → measures, quality and validity (DESIGN.md §4).

Lexical measures run as stateless tasks; the embedder and the quality model live in actor pools
whose sizes and GPU shares come from `PoolConfig` (the stages never know who runs them). Every
stage takes whole blocks (one chunk of prompts each, diversens.parts) as its batches; how many
texts a model takes per forward pass is the stage's own setting (`embed_batch_size`,
`quality.batch_size`).

Fault tolerance is Ray Data's default for actor pools: a dead actor is restarted and its batch
retried. These pools take no other remote args, so Ray fuses the task stage before each of them
into the pool (a pool with different args would need its own CPUs, which a small machine lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import ray.data
from ray.data import ActorPoolStrategy

from diversens.measure import SEMANTIC, LexicalStage, MeasureConfig, SemanticStage
from diversens.quality import QualityConfig, QualityStage


@dataclass
class PoolConfig:
    """Resources of one model-holding actor pool (the stage never knows who runs it)."""

    min_actors: int = field(default=1, metadata={"help": "actor pool minimum size"})
    max_actors: int = field(default=1, metadata={"help": "actor pool maximum size"})
    num_gpus_per_actor: float = field(
        default=0.0, metadata={"help": "GPUs per actor (fractions share one GPU)"}
    )
    num_cpus_per_actor: float = field(default=1.0, metadata={"help": "CPUs per actor"})

    def __post_init__(self):
        if not 1 <= self.min_actors <= self.max_actors:
            raise ValueError("need 1 <= min_actors <= max_actors")
        if self.num_gpus_per_actor < 0 or self.num_cpus_per_actor < 0:
            raise ValueError("GPUs/CPUs per actor must be >= 0")

    def check_device(self, device: str | None, option: str) -> None:
        """A CUDA device needs a GPU share: Ray hides GPUs from actors that reserve none."""
        if device and device.startswith("cuda") and self.num_gpus_per_actor == 0:
            raise ValueError(
                f"{option} {device!r} needs num_gpus_per_actor > 0 in its pool: Ray hides GPUs "
                "from actors that reserve none"
            )

    def map_kwargs(self) -> dict:
        return {
            "batch_size": None,  # one chunk per batch (diversens.parts)
            "compute": ActorPoolStrategy(min_size=self.min_actors, max_size=self.max_actors),
            "num_gpus": self.num_gpus_per_actor,
            "num_cpus": self.num_cpus_per_actor,
        }


def lexical_batch(batch: pd.DataFrame, cfg: MeasureConfig) -> pd.DataFrame:
    """Lexical measures as a plain function, so Ray runs them as stateless tasks."""
    return LexicalStage(cfg)(batch)


def no_semantic_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """NaN semantic columns when no strategy needs them (keeps the scored schema fixed)."""
    out = batch.copy()
    for name in SEMANTIC:
        out[name] = [[float("nan")] * len(r) for r in batch["responses"]]
    return out


def score_candidates(
    ds: ray.data.Dataset,
    measure: MeasureConfig,
    quality: QualityConfig,
    embed_pool: PoolConfig,
    quality_pool: PoolConfig,
    semantic: bool = True,
) -> ray.data.Dataset:
    """candidates → scored candidates, lazily: lexical measures as tasks, then the embedder and
    quality actor pools (`semantic=False` skips the embedder and leaves NaN semantic columns)."""
    ds = ds.map_batches(
        lexical_batch, fn_kwargs={"cfg": measure}, batch_size=None, batch_format="pandas"
    )
    if semantic:
        ds = ds.map_batches(
            SemanticStage,
            fn_constructor_kwargs={"cfg": measure},
            batch_format="pandas",
            **embed_pool.map_kwargs(),
        )
    else:
        ds = ds.map_batches(no_semantic_batch, batch_size=None, batch_format="pandas")
    return ds.map_batches(
        QualityStage,
        fn_constructor_kwargs={"cfg": quality},
        batch_format="pandas",
        **quality_pool.map_kwargs(),
    )
