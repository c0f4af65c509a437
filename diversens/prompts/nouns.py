"""The shipped noun list (`diversens/data/nouns.txt`) that families draw training items from."""

from __future__ import annotations

from functools import cache
from importlib import resources

from diversens.prompts.registry import held_out_words


def nouns() -> tuple[str, ...]:
    """The shipped nouns minus every family's held-out eval words (defence in depth: the file
    lists none of them), sorted and unique."""
    return _nouns_without(held_out_words())


@cache
def _nouns_without(held_out: frozenset[str]) -> tuple[str, ...]:
    text = resources.files("diversens").joinpath("data/nouns.txt").read_text(encoding="utf-8")
    words = {w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")}
    return tuple(sorted(words - held_out))
