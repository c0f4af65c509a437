"""The measure spec and its registry: what a measure computes, over what, and how it is used.

A measure is registered once, by the module that computes it (`register` at import); every other
table that lists measures (scored columns, the signs selection ranks by, the measures eval turns
into deciles, the models a run loads) is derived from `MEASURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCOPES = ("output", "samples")  # of one response; of all samples of one prompt
NEEDS = ("text", "embedder")  # what a measure loads: nothing, or the sentence embedder


@dataclass
class Texts:
    """The responses of a batch, flat and in groups (the consecutive samples of one prompt), with
    what measures share: words and embeddings are computed once per batch, whoever asks first.

    `settings` is the measure config (read by attribute: `mattr_window`, `options`, ...).
    """

    texts: list[str]
    tasks: list[str | None]
    sizes: np.ndarray  # (G,) responses per group; sums to len(texts)
    settings: Any = None
    embedder: Any = None  # diversens.measures.semantic.Embedder, when a measure needs it
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def words(self) -> list[list[str]]:
        from diversens.text import words

        return self.memo("words", lambda: [words(t) for t in self.texts])

    def embeddings(self) -> np.ndarray:
        """(len(texts), D) unit-norm sentence embeddings of the whole responses."""
        return self.memo("embeddings", lambda: self.embedder.encode(self.texts))

    def groups(self) -> list[slice]:
        ends = np.cumsum(self.sizes)
        return [slice(int(e - n), int(e)) for n, e in zip(self.sizes, ends, strict=True)]

    def option(self, measure: str, key: str) -> Any:
        """A measure's tunable: `settings.options["<measure>.<key>"]`, else its spec default."""
        given = getattr(self.settings, "options", None) or {}
        return given.get(f"{measure}.{key}", MEASURES[measure].options[key])


@dataclass(frozen=True)
class Measure:
    """One measure. `compute(texts)` returns one float per response for scope "output", one per
    group for scope "samples" (every response then carries its group's value)."""

    name: str
    help: str
    compute: Callable[[Texts], np.ndarray]
    scope: str = "output"
    sign: int = 1  # +1: larger is more diverse; -1: smaller is; 0: not a diversity measure
    needs: str = "text"
    ranks_dd: bool = True  # eval may turn it into deciles for ΔDD (rises with diversity)
    default: bool = True  # computed whenever what it needs is loaded anyway (else on request)
    options: Mapping[str, Any] = field(default_factory=dict)  # tunables, with their defaults

    def __post_init__(self):
        if self.scope not in SCOPES or self.needs not in NEEDS or self.sign not in (-1, 0, 1):
            raise ValueError(f"measure {self.name!r}: scope, needs or sign out of range")
        if self.ranks_dd and (self.scope != "output" or self.sign != 1):
            raise ValueError(f"measure {self.name!r}: ΔDD ranks per-output measures of sign +1")

    @property
    def ranks_candidates(self) -> bool:
        """Selection can order a prompt's candidates by it: per output, and a diversity."""
        return self.scope == "output" and self.sign != 0


MEASURES: dict[str, Measure] = {}


def register(*measures: Measure) -> None:
    for m in measures:
        if m.name in MEASURES:
            raise ValueError(f"measure {m.name!r} is registered twice")
        MEASURES[m.name] = m


def names(keep: Callable[[Measure], bool] = lambda m: True) -> tuple[str, ...]:
    """Registered names (registry order) of the measures `keep` accepts."""
    return tuple(name for name, m in MEASURES.items() if keep(m))


def check(option: str, given: Iterable[str], keep: Callable[[Measure], bool] = lambda m: True,
          what: str = "a measure") -> None:  # fmt: skip
    """ValueError naming the first of `given` that is not a registered measure `keep` accepts."""
    allowed = names(keep)
    for name in given:
        if name not in allowed:
            raise ValueError(f"{option}: {name!r} is not {what} (choose from {', '.join(allowed)})")


def resolve(required: Iterable[str], requested: Iterable[str] = ()) -> tuple[str, ...]:
    """What a run computes: the measures it needs and the ones asked for, plus every default
    measure whose needs those already load (the embedder serves DSI and Vendi alike)."""
    wanted = set(required) | set(requested)
    check("measures", wanted)
    loaded = {"text"} | {MEASURES[n].needs for n in wanted}
    return names(lambda m: m.name in wanted or (m.default and m.needs in loaded))


def needs_embedder(measures: Iterable[str]) -> bool:
    return any(MEASURES[n].needs == "embedder" for n in measures)
