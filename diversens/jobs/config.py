"""The job configs: generate, generate-pairs and the whole pipeline, as plain data (no Ray).

Each section is the dataclass of the step it configures; the CLI, YAML files and `ray job submit`
entrypoints all fill these through `diversens.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diversens import measures
from diversens.config import check_seeds
from diversens.evaluation.config import EvalConfig
from diversens.evaluation.rounds import round_suffix
from diversens.nodes import Demand
from diversens.plan import PlanConfig
from diversens.prompts.config import PromptsConfig
from diversens.ranges import check_ranges
from diversens.sampling.config import SamplingConfig
from diversens.scoring.config import ScoringConfig
from diversens.selection.rules import STRATEGIES, SelectionConfig
from diversens.training.config import TrainConfig

STAGES = ("generate-pairs", "train", "eval")


def round_dir(r: int) -> tuple[str, ...]:
    """Where round r's pairs/ and train/ are under the output: round 1 at its top, as a
    one-round run writes them (so more rounds extend a finished run), round r at round-<r>/."""
    return () if r == 1 else (f"round-{r}",)


def check_strategies(option: str, names: list[str]) -> None:
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown} (choose from {', '.join(STRATEGIES)})")


@dataclass
class GenerateConfig:
    """`diversens generate`: the pair job's first step alone (its `prompts` and `sampling`)."""

    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class GeneratePairsConfig:
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    compare_strategies: list[str] = field(
        default_factory=lambda: list(STRATEGIES),
        metadata={"help": "strategies also selected for the report (pairs_<strategy>.parquet)"},
    )

    def __post_init__(self):
        if self.sampling.num_samples_per_prompt < 2:
            raise ValueError(
                "sampling.num_samples_per_prompt must be >= 2: a pair needs two candidates"
            )
        check_strategies("compare_strategies", self.compare_strategies)

    @property
    def strategies(self) -> list[str]:
        """The main strategy first, then the ones compared with it."""
        main = self.selection.strategy
        return [main] + [s for s in self.compare_strategies if s != main]

    @property
    def measures(self) -> tuple[str, ...]:
        """What scoring computes: the measures every strategy ranks by (overrides included) and
        the ones validity checks, plus what `scoring.measure` adds."""
        ranked = [m for s in self.strategies for m in self.selection_for(s).required_measures]
        return self.scoring.measure.resolve([*ranked, *self.scoring.quality.check_measures])

    def selection_for(self, strategy: str) -> SelectionConfig:
        return dataclasses.replace(self.selection, strategy=strategy)

    @property
    def needs_embedder(self) -> bool:
        return measures.needs_embedder(self.measures)

    def models(self) -> list[str]:
        """Every model the job loads."""
        return [self.sampling.model, *self.scoring.models(self.needs_embedder)]

    def gpus(self, prefix: str = "") -> dict[str, float]:
        """GPUs per actor each pool asks for, by option name."""
        return self.scoring.gpus(self.sampling.gpus_per_actor(), prefix)

    def demands(self, prefix: str = "") -> list[Demand]:
        """The pools of the first pass at their largest: they stream into each other at once."""
        return [Demand.of(f"{prefix}sampling", self.sampling.pool()),
                *self.scoring.demands(prefix)]  # fmt: skip


@dataclass
class PipelineConfig:
    pairs: GeneratePairsConfig = field(default_factory=GeneratePairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train_strategies: list[str] = field(
        default_factory=lambda: ["diverse-ns", "divpo", "diverse-no-length"],
        metadata={"help": "one DPO run per strategy's pairs; each tuned model is evaluated"},
    )
    train_seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "range": "[0, 4294967295]",
            "help": "one DPO run per strategy and seed (train.seed), on the same pairs: the "
            "first seed's model is OUT/train/<strategy>, the others <strategy>@s<seed>; eval "
            "reports each strategy over its runs, with their spread",
        },
    )
    equal_pairs: bool = field(
        default=False,
        metadata={
            "help": "train every strategy on the same number of pairs: the smallest count among "
            "train_strategies, each strategy's first (balanced best) pairs, so tuned models differ "
            "in which pairs they saw, not in how many"
        },
    )
    stages: list[str] = field(
        default_factory=lambda: list(STAGES),
        metadata={"help": f"stages to run: {STAGES}"},
    )
    rounds: int = field(
        default=1,
        metadata={
            "range": "[1, 100]",
            "help": "on-policy DPO rounds: round r+1 samples with and trains from round r's "
            "rounds_strategy model (OUT/round-<r+1>/)",
        },
    )
    rounds_strategy: str = field(
        default="diverse-ns",
        metadata={"help": "the strategy whose tuned model (first train seed) samples the next "
                  "round and is trained in it; one of train_strategies"},
    )
    rounds_num_prompts: int = field(
        default=0,
        metadata={"range": "[0, inf)", "help": "rounds after the first sample this many of "
                  "round 1's prompts, taken in turn from each task (0: all of them)"},
    )
    rounds_mix_pairs: bool = field(
        default=False,
        metadata={"help": "rounds after the first train on their own pairs together with every "
                  "earlier round's pairs of rounds_strategy (off: their own pairs only)"},
    )
    plan: PlanConfig = field(default_factory=PlanConfig)  # `diversens plan` only

    def trained(self) -> list[tuple[str, str, int]]:
        """(label, strategy, seed) of every DPO run: the first seed's label is the strategy."""
        return [
            (s if i == 0 else f"{s}@s{seed}", s, seed)
            for s in self.train_strategies
            for i, seed in enumerate(self.train_seeds)
        ]

    def round_labels(self) -> list[tuple[int, str]]:
        """(round, label) of the models trained after round 1: `<rounds_strategy>@r<round>`."""
        return [(r, f"{self.rounds_strategy}{round_suffix(r)}")
                for r in range(2, self.rounds + 1)]  # fmt: skip

    def for_round(self, r: int, model: str) -> PipelineConfig:
        """Round r (> 1): `model`, round r-1's tuned model of rounds_strategy, samples the
        candidates and is trained (first train seed only); selection and eval are unchanged."""
        sampling = dataclasses.replace(self.pairs.sampling, model=model)
        return dataclasses.replace(
            self,
            pairs=dataclasses.replace(self.pairs, sampling=sampling),
            train=dataclasses.replace(self.train, model=model),
            train_strategies=[self.rounds_strategy],
            train_seeds=self.train_seeds[:1],
        )

    def eval_runs(self) -> int:
        """Sampling passes of the eval: the reference, and every model at every eval seed."""
        return self.eval.num_runs(len(self.trained()) + self.rounds - 1)

    def __post_init__(self):
        check_ranges(self)
        check_strategies("train_strategies", self.train_strategies)
        missing = [s for s in self.train_strategies if s not in self.pairs.strategies]
        if missing:
            raise ValueError(f"train_strategies {missing} are not in pairs.compare_strategies")
        check_seeds("train_seeds", self.train_seeds)
        if not self.stages or any(s not in STAGES for s in self.stages):
            raise ValueError(f"stages must be a non-empty subset of {STAGES}, got {self.stages}")
        if self.rounds > 1 and self.rounds_strategy not in self.train_strategies:
            raise ValueError(
                f"rounds_strategy: {self.rounds_strategy!r} is not in train_strategies "
                f"{self.train_strategies}: round r+1 samples with its round-r model"
            )
