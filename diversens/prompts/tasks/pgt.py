"""PGT, the Persona Generation Task: a random persona as a JSON object.

Eval: the literature's one prompt, fields first name, city and occupation (docs/design.md §7).
Training: other field sets (`first_name` plus two attributes) in two wordings; the eval field
set is held out in every wording.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from diversens.prompts.registry import register
from diversens.prompts.spec import Items, TaskSpec, asked_item, sample_from
from diversens.text import generic_segments, json_object, json_values

FIELDS = {
    "first_name": "first name",
    "city": "city of birth",
    "occupation": "current occupation",
    "age": "age",
    "country": "country of residence",
    "hobby": "favourite hobby",
    "favourite_food": "favourite food",
    "pet": "kind of pet they keep",
    "instrument": "musical instrument they play",
    "dream_destination": "dream travel destination",
}
EVAL_KEYS = ("first_name", "city", "occupation")
WORDINGS = (
    "Generate a random persona: give their {described}. Answer only with a JSON object with "
    "the keys {keys}.",
    "Invent a random person and describe them by their {described}. Reply with nothing but a "
    "JSON object that has exactly the keys {keys}.",
)


def _join(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def render(item: str, variant: str) -> str:
    keys = item.split(",")  # "first_name,city,occupation"
    described = _join([FIELDS[k] for k in keys])
    quoted = _join([json.dumps(k) for k in keys])
    return WORDINGS[int(variant[1:])].format(described=described, keys=quoted)


def segments(text: str) -> list[str]:
    """The JSON object's values (also inside a ``` fence or prose); the generic rule if no
    object parses."""
    values = json_values(text)
    return generic_segments(text) if values is None else values


def compliance(text: str, meta: dict, fallbacks: Any) -> str | None:
    obj = json_object(text)
    if obj is None:
        return "pgt_invalid_json"
    fields = asked_item(meta).split(",") if asked_item(meta) else EVAL_KEYS
    ok = all(isinstance(obj.get(k), str) and obj[k].strip() for k in fields)
    return None if ok else "pgt_missing_field"


def training_space() -> Items:
    others = [k for k in FIELDS if k != "first_name"]
    sets = [",".join(("first_name", *pair)) for pair in itertools.combinations(others, 2)]
    return [(s, f"w{w}") for s in sets if s != ",".join(EVAL_KEYS) for w in range(len(WORDINGS))]


register(
    TaskSpec(
        name="pgt",
        followup="Now generate a different persona in the same JSON format, with values that "
        "differ from your previous answer.",
        segments=segments,
        compliance=compliance,
        render=render,
        eval_items=((",".join(EVAL_KEYS), "w0"),),
        training_items=sample_from(training_space),
        literature_samples=100,
        example_answer='{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}',
        order=20,
    )
)
