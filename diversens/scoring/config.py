"""How candidates are scored: ScoringConfig, one section shared by the pairs and the eval jobs,
and QualityConfig, read by the quality scorers, the compliance rules and the validity stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from diversens import measures
from diversens.models import DEFAULT_GENERATOR, DTYPES, check_device_name
from diversens.nodes import Demand
from diversens.pools import Pool, PoolConfig
from diversens.ranges import check_ranges
from diversens.scoring.measure import MeasureConfig

SCORERS = ("offline", "reward-model", "none")


@dataclass
class QualityConfig:
    scorer: str = field(
        default="offline",
        metadata={
            "help": "offline = compliance + fluency under reference_model; reward-model = "
            "reward_model's score; none = compliance only (quality 0)"
        },
    )
    reference_model: str = field(
        default=DEFAULT_GENERATOR, metadata={"help": "causal LM for fluency (mean token log-prob)"}
    )
    reward_model: str | None = field(
        default=None, metadata={"help": "HF sequence-classification reward model, id or path"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the reward model's own code to run (opt-in)"}
    )
    device: str | None = field(default=None, metadata={"help": "torch device (default: auto)"})
    dtype: str = field(
        default="auto",
        metadata={
            "help": f"scorer model dtype: {', '.join(DTYPES)}; auto = the model's own on GPU, "
            "on CPU bfloat16 where the CPU has native bf16 (AVX512-BF16, AMX), else float32. "
            "Scores are compared within a run only (percentiles)"
        },
    )
    batch_size: int = field(
        default=8, metadata={"range": "[1, inf)", "help": "responses per forward pass"}
    )
    max_length_tokens: int = field(
        default=1024, metadata={"range": "[1, inf)", "help": "truncate scored inputs"}
    )
    dat_num_words: int = field(
        default=10, metadata={"range": "[1, 1000]", "help": "DAT: single words required"}
    )
    aut_num_uses: int = field(
        default=5, metadata={"range": "[1, 1000]", "help": "AUT: list items required"}
    )
    cwt_sentences: list[int] = field(
        default_factory=lambda: [3, 8],
        metadata={"range": "[1, 1000]", "help": "CWT: allowed [min, max] sentences"},
    )
    strict_compliance: bool = field(
        default=True,
        metadata={
            "help": "a candidate that breaks its task's format is invalid; when false it stays "
            "valid and compliance_penalty is taken off its quality (small models rarely comply)"
        },
    )
    compliance_penalty: float = field(
        default=1.0,
        metadata={
            "range": "[0, inf)",
            "help": "quality taken off a non-compliant candidate (lenient mode)",
        },
    )
    check_measures: list[str] = field(
        default_factory=list,
        metadata={
            "help": "measure columns that must be finite for any candidate to be valid (default "
            "none: each strategy needs finite values only of the measures it ranks by, so a "
            "one-sentence answer without DSI still takes part in lite, quality and random)"
        },
    )

    def __post_init__(self):
        check_ranges(self)
        check_device_name(self.device)
        if self.scorer not in SCORERS:
            raise ValueError(f"unknown scorer {self.scorer!r} (choose from {SCORERS})")
        if self.scorer == "reward-model" and not self.reward_model:
            raise ValueError("scorer 'reward-model' needs reward_model (an HF id or path)")
        if len(self.cwt_sentences) != 2 or self.cwt_sentences[0] > self.cwt_sentences[1]:
            raise ValueError(f"cwt_sentences must be [min, max], got {self.cwt_sentences}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        measures.check("check_measures", self.check_measures)


@dataclass
class ScoringConfig:
    """Diversity measures and quality of candidate rows, and the pools holding their models."""

    measure: MeasureConfig = field(default_factory=lambda: MeasureConfig(text_field="responses"))
    quality: QualityConfig = field(default_factory=QualityConfig)
    embed_pool: PoolConfig = field(default_factory=PoolConfig)
    # The fluency model peaked at 2.0 GiB per actor on the demo (its logits over the vocabulary);
    # Ray Data asks for 25% headroom over the peak.
    quality_pool: PoolConfig = field(default_factory=lambda: PoolConfig(memory_gib_per_actor=2.5))

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

    def demands(self, prefix: str = "") -> list[Demand]:
        """The two pools at their largest, named as options (`prefix`: "pairs.", "eval.")."""
        return [Demand.of(f"{prefix}scoring.{name}", pool) for name, pool in self.pools(1).items()]

    def gpus(self, engine_gpus: float, prefix: str = "") -> dict[str, float]:
        """GPUs per actor that a job's pools ask for (its engine's and the two scoring pools),
        by option name (`prefix` is the job's section, "pairs." or "eval.")."""
        pools = {f"{prefix}scoring.{name}.num_gpus_per_actor": getattr(self, name)
                 for name in ("embed_pool", "quality_pool")}  # fmt: skip
        pools = {option: pool.num_gpus_per_actor for option, pool in pools.items()}
        return {f"{prefix}sampling.num_gpus_per_actor": engine_gpus, **pools}
