"""Preference-pair selection (DESIGN.md §5): pure functions over one prompt's candidate scores.

`select_pair(c, cfg, stats, key)` looks at one prompt's k candidates and returns the indices of a
(chosen, rejected) pair and its margin, or a reason why there is none. Strategies:

- diverse-ns: length parity with the chosen not shorter (0 ≤ words(c+) − words(c−) ≤ max(a,
  r·max words); `length_rule: symmetric` allows |Δwords| within the same tolerance), chosen more
  diverse on the lexical AND the semantic measure, chosen quality ≥ floor and ≥ rejected
  quality − max drop; the pair with the largest diversity margin wins, ties → higher chosen
  quality, then smaller length gap.
- diverse-ns-symmetric: diverse-ns under the symmetric length rule whatever `length_rule` says,
  so one run can compare the two rules (the study does).
- diverse-ns-lite: the same rule with TTR (lexical) and Maas (lower = more diverse) instead of
  entropy and embedding diversity; needs no embedder or reward model.
- divpo: chosen = most diverse with quality ≥ floor, rejected = least diverse below it; no length
  control (Lanchantin et al. 2025).
- diverse-no-length: most vs least diverse, no length or quality control.
- quality: highest vs lowest quality, no diversity.
- random: two distinct valid candidates, seeded by (seed, prompt_id).

Diversity margins add the two measures, each divided by its run-level scale (`SelectionStats`), so
margins are comparable across prompts for the global top-N. Quality is a percentile rank in [0, 1]
within the prompt's task over the run, so the floor and the allowed drop are percentiles, not
constants of one scorer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

STRATEGIES = ("diverse-ns", "diverse-ns-symmetric", "diverse-ns-lite", "divpo", "diverse-no-length",
              "quality", "random")  # fmt: skip
LENGTH_RULES = ("one-sided", "symmetric")

# +1: larger is more diverse; -1: smaller is more diverse (Maas a² falls as vocabulary grows).
DIVERSITY_SIGN = {"entropy": 1, "ttr": 1, "mattr": 1, "mtld": 1, "hdd": 1, "dsi": 1, "maas": -1}
STRATEGY_MEASURES = {
    "diverse-ns": ("entropy", "dsi"),
    "diverse-ns-symmetric": ("entropy", "dsi"),
    "diverse-ns-lite": ("ttr", "maas"),
}


@dataclass
class SelectionConfig:
    strategy: str = field(
        default="diverse-ns", metadata={"help": f"pair selection rule: {', '.join(STRATEGIES)}"}
    )
    num_pairs: int = field(default=3000, metadata={"help": "pairs kept after the global step"})
    length_tolerance_words: int = field(
        default=5, metadata={"help": "parity tolerance a: |Δwords| ≤ max(a, r·max words)"}
    )
    length_tolerance_ratio: float = field(
        default=0.1, metadata={"help": "parity tolerance r (fraction of the longer response)"}
    )
    length_rule: str = field(
        default="one-sided",
        metadata={
            "help": "one-sided: the chosen is never shorter, at most the tolerance longer; "
            "symmetric: either side may be up to the tolerance longer (then a chosen can be "
            "shorter, which lets the length bias back in)"
        },
    )
    quality_floor: float = field(
        default=0.25,
        metadata={
            "help": "chosen quality quantile must reach this (quality is the response's "
            "quantile within its task, 0–1)"
        },
    )
    max_quality_drop: float = field(
        default=0.25,
        metadata={
            "help": "chosen quality quantile may sit at most this far below the rejected's (0–1)"
        },
    )
    lexical_measure: str | None = field(
        default=None, metadata={"help": "override the strategy's lexical measure"}
    )
    semantic_measure: str | None = field(
        default=None, metadata={"help": "override the strategy's semantic measure"}
    )
    length_buckets: list[int] = field(
        default_factory=lambda: [0, 50, 100, 200],
        metadata={"help": "word-count bucket lower edges for balancing (chosen length)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for random pairs and tie-breaking"})

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (choose from {STRATEGIES})")
        for name in ("lexical_measure", "semantic_measure"):
            value = getattr(self, name)
            if value is not None and value not in DIVERSITY_SIGN:
                raise ValueError(f"{name} {value!r} is not one of {sorted(DIVERSITY_SIGN)}")
        if self.num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1, got {self.num_pairs}")
        if self.length_rule not in LENGTH_RULES:
            raise ValueError(f"length_rule must be one of {LENGTH_RULES}, got {self.length_rule!r}")
        if self.length_tolerance_words < 0 or not 0 <= self.length_tolerance_ratio < 1:
            raise ValueError("length tolerances must be >= 0 (ratio below 1)")
        for name in ("quality_floor", "max_quality_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        edges = self.length_buckets
        if not edges or edges[0] != 0 or bool((np.diff(edges) <= 0).any()):
            raise ValueError(f"length_buckets must start at 0 and increase, got {edges}")

    @property
    def measures(self) -> tuple[str, str]:
        """(lexical, semantic) diversity measures this strategy ranks by."""
        lex, sem = STRATEGY_MEASURES.get(self.strategy, STRATEGY_MEASURES["diverse-ns"])
        return self.lexical_measure or lex, self.semantic_measure or sem


@dataclass(frozen=True)
class SelectionStats:
    """Run-level reference values, computed once over all scored candidates before selection."""

    scales: dict[str, float]  # per measure, a robust spread (IQR) to put margins on one scale
    quality_quantiles: np.ndarray  # (Q,) sorted, all tasks: maps raw quality to a rank
    task_quality_quantiles: dict[str, np.ndarray] = field(default_factory=dict)  # per task

    @classmethod
    def from_columns(
        cls, columns: dict[str, np.ndarray], tasks: np.ndarray | None = None,
        num_quantiles: int = 1001,
    ):  # fmt: skip
        """`columns`: flat values per measure (and "quality"); `tasks`: the task of each value,
        so quality ranks within its task (a scorer's scale differs between a list of nouns and a
        story, and a run-wide floor could then remove one task whole)."""
        scales = {}
        for name, values in columns.items():
            finite = values[np.isfinite(values)]
            iqr = np.subtract(*np.percentile(finite, [75, 25])) if finite.size else 0.0
            scales[name] = float(iqr) if iqr > 0 else 1.0
        q = columns.get("quality", np.zeros(0))
        per_task = {}
        if tasks is not None:
            per_task = {str(t): _quantiles(q[tasks == t], num_quantiles) for t in np.unique(tasks)}
        return cls(scales, _quantiles(q, num_quantiles), per_task)

    def quality_rank(self, quality: np.ndarray, task: str | None = None) -> np.ndarray:
        """Percentile rank in [0, 1] of raw quality scores within the task (the run where the
        task is unknown)."""
        qq = self.task_quality_quantiles.get(task, self.quality_quantiles)
        lo = np.searchsorted(qq, quality, side="left")
        hi = np.searchsorted(qq, quality, side="right")
        return ((lo + hi) / 2) / len(qq)


def _quantiles(values: np.ndarray, num: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    return np.percentile(finite, np.linspace(0, 100, num)) if finite.size else np.zeros(1)


@dataclass(frozen=True)
class Candidates:
    """One prompt's k candidates: (k,) arrays. `valid` already folds in every reject reason."""

    n_words: np.ndarray
    valid: np.ndarray
    quality: np.ndarray  # percentile rank in [0, 1]
    diversity: dict[str, np.ndarray]


@dataclass(frozen=True)
class Pair:
    chosen: int
    rejected: int
    margin: float


def prompt_key(seed: int, prompt_id: str) -> int:
    """Deterministic 63-bit key per (seed, prompt): seeds `random` and breaks global ties."""
    digest = hashlib.blake2b(f"{seed}:{prompt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def diversity_score(c: Candidates, cfg: SelectionConfig, stats: SelectionStats) -> np.ndarray:
    """(k,) sum of the two measures, each signed (higher = more diverse) and run-scaled."""
    total = np.zeros(len(c.valid))
    for name in cfg.measures:
        total += DIVERSITY_SIGN[name] * c.diversity[name] / stats.scales.get(name, 1.0)
    return total


def select_pair(c: Candidates, cfg: SelectionConfig, stats: SelectionStats, key: int) -> Pair | str:
    """The best pair of one prompt under `cfg.strategy`, or the reason there is none."""
    score = diversity_score(c, cfg, stats)
    valid = c.valid & np.isfinite(c.quality)
    if cfg.strategy not in ("random", "quality"):  # the ones that rank by diversity
        valid &= np.isfinite(score)  # a one-sentence answer has no DSI: only these lose it
    if valid.sum() < 2:
        return "fewer_than_2_valid"
    idx = np.flatnonzero(valid)
    if cfg.strategy in STRATEGY_MEASURES:
        return _length_matched(c, cfg, stats, idx)
    if cfg.strategy == "random":
        i, j = np.random.default_rng(key).choice(idx, size=2, replace=False)
        return Pair(int(i), int(j), float(score[i] - score[j]))
    if cfg.strategy == "quality":
        i, j = idx[np.argmax(c.quality[idx])], idx[np.argmin(c.quality[idx])]
        if c.quality[i] == c.quality[j]:
            return "no_quality_difference"
        return Pair(int(i), int(j), float(c.quality[i] - c.quality[j]))
    if cfg.strategy == "divpo":
        good = idx[c.quality[idx] >= cfg.quality_floor]
        bad = idx[c.quality[idx] < cfg.quality_floor]
        if not len(good) or not len(bad):
            return "no_quality_split"
        i, j = good[np.argmax(score[good])], bad[np.argmin(score[bad])]
    else:  # diverse-no-length
        i, j = idx[np.argmax(score[idx])], idx[np.argmin(score[idx])]
    if score[i] <= score[j]:
        return "no_diversity_difference"
    return Pair(int(i), int(j), float(score[i] - score[j]))


def _length_matched(
    c: Candidates, cfg: SelectionConfig, stats: SelectionStats, idx: np.ndarray
) -> Pair | str:
    """Diverse-NS: all ordered pairs at once as (m, m) matrices over the valid candidates."""
    lex_name, sem_name = cfg.measures
    lex = DIVERSITY_SIGN[lex_name] * c.diversity[lex_name][idx]
    sem = DIVERSITY_SIGN[sem_name] * c.diversity[sem_name][idx]
    words, quality = c.n_words[idx].astype(float), c.quality[idx]
    gap = words[:, None] - words[None, :]  # (m, m): chosen row minus rejected column
    tolerance = np.maximum(
        cfg.length_tolerance_words, cfg.length_tolerance_ratio * np.maximum.outer(words, words)
    )
    parity = np.abs(gap) <= tolerance
    symmetric = cfg.strategy == "diverse-ns-symmetric" or cfg.length_rule == "symmetric"
    if not symmetric:
        parity &= gap >= 0
    ok = (
        parity
        & (lex[:, None] > lex[None, :])
        & (sem[:, None] > sem[None, :])
        & (quality[:, None] >= cfg.quality_floor)
        & (quality[:, None] >= quality[None, :] - cfg.max_quality_drop)
    )
    if not ok.any():
        return "no_admissible_pair"
    margin = (lex[:, None] - lex[None, :]) / stats.scales.get(lex_name, 1.0) + (
        sem[:, None] - sem[None, :]
    ) / stats.scales.get(sem_name, 1.0)
    rows, cols = np.nonzero(ok)
    # lexsort: last key is primary → margin desc, then chosen quality desc, then |gap| asc.
    order = np.lexsort((np.abs(gap[rows, cols]), -quality[rows], -margin[rows, cols]))
    best = order[0]
    i, j = rows[best], cols[best]
    return Pair(int(idx[i]), int(idx[j]), float(margin[i, j]))
