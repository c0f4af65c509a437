"""Preference-pair selection (docs/design.md §11): pure functions over one prompt's candidate
scores.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from diversens import measures as registry
from diversens.ranges import check_ranges

LENGTH_RULES = ("one-sided", "symmetric")


@dataclass(frozen=True)
class Strategy:
    """A selection strategy: the pair rule over one prompt's valid candidates (`idx`, with each
    candidate's run-scaled diversity `score`), the measures it ranks by, and how the global cut
    orders its pairs."""

    name: str
    help: str
    rule: Callable[..., Pair | str]  # (candidates, cfg, stats, idx, score, key) -> Pair | reason
    measures: tuple[str, str] = ("entropy", "dsi")  # (lexical, semantic)
    ranks_by_diversity: bool = True  # a candidate without finite diversity cannot take part
    order: str = "margin"  # global cut: largest margin first, or "seeded" (a seeded key)


STRATEGIES: dict[str, Strategy] = {}


def register(*strategies: Strategy) -> None:
    for s in strategies:
        if s.name in STRATEGIES:
            raise ValueError(f"strategy {s.name!r} is registered twice")
        STRATEGIES[s.name] = s


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
        total += registry.MEASURES[name].sign * c.diversity[name] / stats.scales.get(name, 1.0)
    return total


def select_pair(c: Candidates, cfg: SelectionConfig, stats: SelectionStats, key: int) -> Pair | str:
    """The best pair of one prompt under `cfg.strategy`, or the reason there is none."""
    strategy = STRATEGIES[cfg.strategy]
    score = diversity_score(c, cfg, stats)
    valid = c.valid & np.isfinite(c.quality)
    if strategy.ranks_by_diversity:
        valid &= np.isfinite(score)  # a one-sentence answer has no DSI: only these lose it
    if valid.sum() < 2:
        return "fewer_than_2_valid"
    return strategy.rule(c, cfg, stats, np.flatnonzero(valid), score, key)


def _random(c, cfg, stats, idx, score, key) -> Pair | str:
    i, j = np.random.default_rng(key).choice(idx, size=2, replace=False)
    return Pair(int(i), int(j), float(score[i] - score[j]))


def _quality(c, cfg, stats, idx, score, key) -> Pair | str:
    i, j = idx[np.argmax(c.quality[idx])], idx[np.argmin(c.quality[idx])]
    if c.quality[i] == c.quality[j]:
        return "no_quality_difference"
    return Pair(int(i), int(j), float(c.quality[i] - c.quality[j]))


def _divpo(c, cfg, stats, idx, score, key) -> Pair | str:
    good = idx[c.quality[idx] >= cfg.quality_floor]
    bad = idx[c.quality[idx] < cfg.quality_floor]
    if not len(good) or not len(bad):
        return "no_quality_split"
    return _diversity_gap(good[np.argmax(score[good])], bad[np.argmin(score[bad])], score)


def _no_length(c, cfg, stats, idx, score, key) -> Pair | str:
    return _diversity_gap(idx[np.argmax(score[idx])], idx[np.argmin(score[idx])], score)


def _diversity_gap(i: int, j: int, score: np.ndarray) -> Pair | str:
    if score[i] <= score[j]:
        return "no_diversity_difference"
    return Pair(int(i), int(j), float(score[i] - score[j]))


def _length_matched(c, cfg, stats, idx, score, key, symmetric: bool = False) -> Pair | str:
    """Diverse-NS: all ordered pairs at once as (m, m) matrices over the valid candidates."""
    lex_name, sem_name = cfg.measures
    lex = registry.MEASURES[lex_name].sign * c.diversity[lex_name][idx]
    sem = registry.MEASURES[sem_name].sign * c.diversity[sem_name][idx]
    words, quality = c.n_words[idx].astype(float), c.quality[idx]
    gap = words[:, None] - words[None, :]  # (m, m): chosen row minus rejected column
    tolerance = np.maximum(
        cfg.length_tolerance_words, cfg.length_tolerance_ratio * np.maximum.outer(words, words)
    )
    parity = np.abs(gap) <= tolerance
    if not (symmetric or cfg.length_rule == "symmetric"):
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


register(
    Strategy("diverse-ns", "length parity, chosen more diverse on both measures, quality kept",
             _length_matched),
    Strategy("diverse-ns-symmetric", "diverse-ns under the symmetric length rule",
             partial(_length_matched, symmetric=True)),
    Strategy("diverse-ns-lite", "diverse-ns ranked by TTR and Maas: no embedder",
             _length_matched, measures=("ttr", "maas")),
    Strategy("divpo", "most diverse above the quality floor vs least diverse below", _divpo),
    Strategy("diverse-no-length", "most vs least diverse, no length or quality control",
             _no_length),
    Strategy("quality", "highest vs lowest quality", _quality, ranks_by_diversity=False),
    Strategy("random", "two distinct valid candidates, seeded", _random,
             ranks_by_diversity=False, order="seeded"),
)  # fmt: skip


@dataclass
class SelectionConfig:
    strategy: str = field(
        default="diverse-ns", metadata={"help": f"pair selection rule: {', '.join(STRATEGIES)}"}
    )
    num_pairs: int = field(
        default=3000, metadata={"range": "[1, inf)", "help": "pairs kept after the global step"}
    )
    length_tolerance_words: int = field(
        default=5,
        metadata={
            "range": "[0, inf)",
            "help": "parity tolerance a: |Δwords| ≤ max(a, r·max words)",
        },
    )
    length_tolerance_ratio: float = field(
        default=0.1,
        metadata={
            "range": "[0, 1)",
            "help": "parity tolerance r (fraction of the longer response)",
        },
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
            "range": "[0, 1]",
            "help": "chosen quality quantile must reach this (quality is the response's "
            "quantile within its task, 0–1)",
        },
    )
    max_quality_drop: float = field(
        default=0.25,
        metadata={
            "range": "[0, 1]",
            "help": "chosen quality quantile may sit at most this far below the rejected's (0–1)",
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
        metadata={
            "range": "[0, inf)",
            "help": "word-count bucket lower edges for balancing (chosen length)",
        },
    )
    seed: int = field(
        default=0,
        metadata={"range": "[0, 4294967295]", "help": "seed for random pairs and tie-breaking"},
    )

    def __post_init__(self):
        check_ranges(self)
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        for name in ("lexical_measure", "semantic_measure"):
            value = getattr(self, name)
            registry.check(name, [value] if value else [], lambda m: m.ranks_candidates,
                           "a per-output diversity measure")  # fmt: skip
        if self.length_rule not in LENGTH_RULES:
            raise ValueError(f"length_rule must be one of {LENGTH_RULES}, got {self.length_rule!r}")
        edges = self.length_buckets
        if not edges or edges[0] != 0 or bool((np.diff(edges) <= 0).any()):
            raise ValueError(f"length_buckets must start at 0 and increase, got {edges}")

    @property
    def measures(self) -> tuple[str, str]:
        """(lexical, semantic) diversity measures this strategy ranks by."""
        lex, sem = STRATEGIES[self.strategy].measures
        return self.lexical_measure or lex, self.semantic_measure or sem

    @property
    def required_measures(self) -> tuple[str, ...]:
        """The measures a run must compute for this strategy (random and quality rank by none:
        their margin only reports the diversity gap, NaN when it is not computed)."""
        return self.measures if STRATEGIES[self.strategy].ranks_by_diversity else ()
