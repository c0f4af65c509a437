"""ScoringConfig: how candidates are scored, one section shared by the pairs and the eval jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from diversens.pools import Pool, PoolConfig
from diversens.scoring.measure import MeasureConfig
from diversens.scoring.quality import QualityConfig


@dataclass
class ScoringConfig:
    """Diversity measures and quality of candidate rows, and the pools holding their models."""

    measure: MeasureConfig = field(default_factory=lambda: MeasureConfig(text_field="responses"))
    quality: QualityConfig = field(default_factory=QualityConfig)
    embed_pool: PoolConfig = field(default_factory=PoolConfig)
    quality_pool: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self):
        if self.measure.text_field != "responses":
            raise ValueError("measure.text_field must be 'responses' for candidates rows")
        self.embed_pool.check_device(self.measure.device, "measure.device")
        self.quality_pool.check_device(self.quality.device, "quality.device")

    @property
    def quality_model(self) -> str | None:
        """The model the quality scorer loads (None for compliance only)."""
        q = self.quality
        return {"offline": q.reference_model, "reward-model": q.reward_model}.get(q.scorer)

    def models(self, semantic: bool = True) -> list[str]:
        """Every model scoring loads (the embedder only for semantic measures)."""
        names = [self.measure.embedder if semantic else None, self.quality_model]
        return [n for n in names if n]

    def pools(self, batch_size: int) -> dict[str, Pool]:
        return {"embed_pool": self.embed_pool.pool(batch_size),
                "quality_pool": self.quality_pool.pool(batch_size)}  # fmt: skip

    def gpus(self, engine_gpus: float, prefix: str = "") -> dict[str, float]:
        """GPUs per actor that a job's pools ask for (its engine's and the two scoring pools),
        by option name (`prefix` is the job's section, "pairs." or "eval.")."""
        pools = {f"{prefix}scoring.{name}.num_gpus_per_actor": getattr(self, name)
                 for name in ("embed_pool", "quality_pool")}  # fmt: skip
        pools = {option: pool.num_gpus_per_actor for option, pool in pools.items()}
        return {f"{prefix}sampling.num_gpus_per_actor": engine_gpus, **pools}
