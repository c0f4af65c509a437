"""EvalConfig: which models, how many samples per task, how diversity is judged against length."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from diversens import measures
from diversens.config import check_seeds
from diversens.errors import UserError
from diversens.nodes import Demand
from diversens.prompts import literature_samples, task_names
from diversens.ranges import check_ranges
from diversens.sampling.config import SamplingConfig
from diversens.scoring.config import ScoringConfig

# Per-output measures that rise with diversity, so a decile over them means "more diverse", and
# the DAT score eval adds to DAT outputs.
TASK_SCORES = ("dat_score",)
DD_MEASURES = (*measures.names(lambda m: m.ranks_dd), *TASK_SCORES)


@dataclass
class EvalConfig:
    models: list[str] = field(
        default_factory=lambda: ["base=smollm2-135m-instruct"],
        metadata={
            "help": "LABEL=MODEL entries (name, local dir or HF id), comma-separated; the first "
            "is the base that the decile map is built from. A label is a name (no '/'); a "
            """path holding a comma goes in a JSON list: '["base=a", "tuned=/x/my,model"]'"""
        },
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    num_samples: dict[str, int] = field(
        default_factory=literature_samples,
        metadata={
            "range": "[1, 10000]",
            "help": "independent samples per eval prompt, per task; a task not given keeps the "
            "literature's count (docs/design.md §7)",
        },
    )
    map_seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "range": "[0, 4294967295]",
            "help": "sampling seeds of the base model's reference outputs: the decile map is "
            "fitted on them and every model is compared with them",
        },
    )
    seeds: list[int] = field(
        default_factory=lambda: [1],
        metadata={
            "range": "[0, 4294967295]",
            "help": "sampling seeds every model, the base included, is evaluated at (disjoint "
            "from map_seeds; eval.sampling.seed is not used): the base's comparison with the "
            "reference is the null each tuned model's is read against",
        },
    )
    glove_path: str | None = field(
        default=None,
        metadata={"help": "GloVe .txt for DAT (default: the sentence embedder)", "path": True},
    )
    dd_measures: list[str] = field(
        default_factory=lambda: ["entropy", "ttr", "mattr", "dsi", "dat_score"],
        metadata={"help": f"diversity measures turned into deciles: {', '.join(DD_MEASURES)}"},
    )
    num_length_buckets: int = field(
        default=4,
        metadata={
            "range": "[1, 1000]",
            "help": "word-count buckets per task (quantiles of base lengths)",
        },
    )
    min_outputs_per_bucket: int = field(
        default=20,
        metadata={
            "range": "[1, inf)",
            "help": "base outputs a length bucket needs; thinner buckets merge into a neighbour "
            "(so every output is ranked among enough base outputs of its length)",
        },
    )
    across_sample_size: int = field(
        default=10,
        metadata={
            "range": "[2, 10000]",
            "help": "samples per subset for the across-sample measures (distinct-n, Vendi): "
            "each prompt's samples in disjoint subsets of this size (fewer where a prompt has "
            "fewer), so every task and model is measured on the same footing",
        },
    )
    num_bootstrap: int = field(
        default=1000, metadata={"range": "[1, 1000000]", "help": "bootstrap resamples for ΔDD CIs"}
    )
    seed: int = field(default=0, metadata={"range": "[0, 4294967295]", "help": "bootstrap seed"})

    def __post_init__(self):
        check_ranges(self)
        if not self.models:
            raise ValueError("models must name at least the base model")
        check_seeds("map_seeds", self.map_seeds)
        check_seeds("seeds", self.seeds)
        if shared := sorted(set(self.seeds) & set(self.map_seeds)):
            raise ValueError(f"seeds and map_seeds must be disjoint (the null is sampled apart "
                             f"from the reference), both hold {shared}")  # fmt: skip
        for entry in self.models:
            check_model_entry(entry)
        labels = [label for label, _ in self.labelled_models()]
        if len(set(labels)) != len(labels):
            raise ValueError(f"model labels must be unique, got {labels}")
        self.num_samples = {**literature_samples(), **self.num_samples}  # dat=3 alone: others kept
        unknown = sorted(set(self.num_samples) - set(task_names()))
        if unknown:
            raise ValueError(f"num_samples: unknown task {unknown[0]!r} (tasks: {task_names()})")
        unknown = [m for m in self.dd_measures if m not in DD_MEASURES]
        if unknown or not self.dd_measures:
            raise ValueError(f"dd_measures: unknown {unknown} (choose from {', '.join(DD_MEASURES)}"
                             "; maas falls as diversity rises: use ttr or mattr)")  # fmt: skip

    @property
    def measures(self) -> tuple[str, ...]:
        """What eval computes: the ΔDD measures and what `scoring.measure` adds, with the
        defaults their models serve (the across-sample ones among them)."""
        ranked = [m for m in self.dd_measures if m not in TASK_SCORES]
        return self.scoring.measure.resolve([*ranked, *self.scoring.quality.check_measures])

    @property
    def per_output_measures(self) -> tuple[str, ...]:
        """Scored with each sampled batch; the across-sample ones wait for all of a prompt's
        samples (`across_sample_measures`)."""
        return tuple(m for m in self.measures if measures.MEASURES[m].scope == "output")

    @property
    def across_sample_measures(self) -> tuple[str, ...]:
        return tuple(m for m in self.measures if measures.MEASURES[m].scope == "samples")

    def labelled_models(self) -> list[tuple[str, str]]:
        """[(label, model)], label defaulting to the model's last path component."""
        out = []
        for entry in self.models:
            label, sep, model = entry.partition("=")
            out.append((label, model) if sep else (Path(entry).name or entry, entry))
        return out

    @property
    def base(self) -> str:
        """The base model's label: the first model."""
        return self.labelled_models()[0][0]

    def model_runs(self) -> list[tuple[str, str, int]]:
        """[(label, model, sampling seed)]: the base at the map seeds (the reference), then
        every model at every eval seed."""
        models = self.labelled_models()
        base, model = models[0]
        return [(base, model, s) for s in self.map_seeds] + [
            (label, model, s) for label, model in models for s in self.seeds
        ]

    def num_runs(self, tuned: int) -> int:
        """Sampling passes of an eval of the base and `tuned` tuned models."""
        return len(self.map_seeds) + len(self.seeds) * (1 + tuned)

    def gpus(self, prefix: str = "") -> dict[str, float]:
        """GPUs per actor each pool asks for, by option name."""
        return self.scoring.gpus(self.sampling.gpus_per_actor(), prefix)

    def demands(self, runs: int, prefix: str = "") -> dict[str, list[Demand]]:
        """The pools of the eval's two steps at their largest: an engine pool per model run
        (`runs` of them) at once, then the scoring pools (diversens.jobs.evaluate)."""
        engines = Demand.of(f"{prefix}sampling", self.sampling.pool(), copies=runs)
        return {"eval sampling": [engines], "eval scoring": self.scoring.demands(prefix)}


def check_model_entry(entry: str) -> None:
    """One `models` entry: MODEL, or LABEL=MODEL with a name for a label (split at the first
    '='), so a path holding '=' or ',' is never read as a label and a model."""
    label, sep, model = entry.partition("=")
    if not entry.strip():
        raise ValueError("models: an empty entry; give LABEL=MODEL or MODEL")
    if not sep:
        return
    if not label.strip() or not model.strip():
        side = "label" if not label.strip() else "model"
        raise ValueError(f"models: {entry!r} has an empty {side} (LABEL=MODEL)")
    if "/" in label or "\\" in label or label.startswith(("~", ".")):
        raise ValueError(
            f"models: {entry!r}: label {label!r} looks like a path; a label is a name "
            "(LABEL=MODEL, e.g. base=/models/m=1). A path holding a comma: give the list "
            """as JSON, --models '["base=a", "tuned=/x/my,model"]'"""
        )


def check_split_paths(models: list[str]) -> None:
    """A local model path of `models` that is not there, followed by an entry without a label,
    is likely one path holding a comma, cut where `--models a,b` splits the list: a UserError
    that says so (the models' own check would only name the missing half)."""
    for i, (entry, after) in enumerate(zip(models, models[1:], strict=False)):
        label, sep, path = entry.partition("=")
        path = path if sep else entry
        joined = f"{path},{after}"
        if "=" in after or Path(path).expanduser().exists():
            continue
        whole = f"{label}={joined}" if sep else joined
        if Path(joined).expanduser().exists():
            raise UserError(f"models: model path {path!r} does not exist, but {joined!r} does: "
                            "the list is split at each comma; give a path holding one in a JSON "
                            f"list, --models '{json.dumps([*models[:i], whole, *models[i + 2:]])}'")
        if path.startswith(("/", ".", "~")):
            raise UserError(f"models: model path {path!r} does not exist (given as one option, "
                            f"{whole!r} is split at its comma into {entry!r} and {after!r}; a "
                            "path holding a comma goes in a JSON list)")  # fmt: skip

