"""Numeric ranges of config fields: `metadata={"range": "[1, 1000000]"}` on a dataclass field,
checked by `check_ranges` (lowest layer, so every config, the pool configs included, can call it).

A range is an interval: "[" / "]" include the bound, "(" / ")" exclude it, "inf" is no bound;
"(-inf, inf)" means any (finite) number. It applies to every number of the field: the value, a
list's items, a dict's values.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_RANGE = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])$")


# One file or directory name: letters, digits and ._+@- (no separator, no `~`), not . or ..
SAFE_NAME = re.compile(r"(?!\.\.?$)[\w.+@-]+")


def check_name(option: str, name: str, what: str) -> None:
    """A name that becomes a path component (a run directory) is one safe component: `..`,
    `.`, `a/b` or `` would put the run into, beside or above the directory meant to hold it."""
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(
            f"{option}: {name!r} is not a {what}: one file name of letters, digits and ._+@- "
            "(not '.' or '..', no '/')"
        )


def describe_range(spec: str) -> str:
    """'[0, inf)' -> '>= 0', '(0, 1]' -> 'in (0, 1]'."""
    m = _RANGE.match(spec)
    if m is None:
        raise ValueError(f"malformed range {spec!r} (expected e.g. '[0, 1]' or '(0, inf)')")
    left, lo, hi, right = m.groups()
    if hi == "inf" and lo == "-inf":
        return "finite"
    if hi == "inf":
        return f"{'>=' if left == '[' else '>'} {lo}"
    if lo == "-inf":
        return f"{'<=' if right == ']' else '<'} {hi}"
    return f"in {spec}"


def _in_range(value: float, spec: str) -> bool:
    left, lo, hi, right = _RANGE.match(spec).groups()
    low, high = float(lo), float(hi)
    above = value >= low if left == "[" else value > low
    below = value <= high if right == "]" else value < high
    return above and below


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def check_ranges(obj: Any) -> None:
    """Every number of a config dataclass instance lies in its field's metadata["range"]
    (items of a list, values of a dict alike; None is "unset" and passes). Raises ValueError
    "FIELD: must be ..., got X", which `from_dict` turns into a one-line error naming the
    option. Called first in each config's `__post_init__`, so code that builds a config
    directly is checked too."""
    for f in dataclasses.fields(obj):
        spec = f.metadata.get("range")
        if spec is None:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            items = [(f"{f.name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(f"{f.name}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(f.name, value)]
        for where, v in items:
            if v is not None and not _in_range(v, spec):
                raise ValueError(f"{where}: must be {describe_range(spec)}, got {_show(v)}")
