"""The four creative task families (DAT, PGT, AUT, CWT): templates, eval items, training items.

The eval split is exactly the items of DESIGN.md §2 (one DAT prompt, one PGT prompt, 15 AUT
objects, 7 CWT triples) in their reported framing. Training prompts come from the same families
with other items, drawn reproducibly from a seed:
- DAT: other list lengths (5-15 but never 10) in three wordings of the same instruction;
- PGT: other field sets (`first_name` plus two attributes, never the eval set) in two wordings;
- AUT: other objects, from the shipped noun list `diversens/data/nouns.txt`;
- CWT: other noun triples from the same list.
The eval objects and words are absent from the noun list and filtered again here, and the eval
items (DAT's 10-noun list, PGT's field set) are excluded in every wording, so no eval prompt, nor a
rewording of one, can appear in a training split.

`prompt_id` is a stable hash of task + item + variant: the same prompt gets the same id on every
machine and in every run, whatever the seed that drew it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from functools import cache
from importlib import resources

import pandas as pd

TASKS = ("dat", "pgt", "aut", "cwt")

EVAL_AUT_OBJECTS = (
    "belt", "brick", "broom", "bucket", "candle", "clock", "comb", "knife",
    "lamp", "pencil", "pillow", "purse", "rope", "sock", "table",
)  # fmt: skip
EVAL_CWT_TRIPLES = (
    ("stamp", "letter", "send"),
    ("petrol", "diesel", "pump"),
    ("statement", "stealth", "detect"),
    ("belief", "faith", "sing"),
    ("gloom", "payment", "exist"),
    ("organ", "empire", "comply"),
    ("year", "week", "embark"),
)
EVAL_WORDS = frozenset(EVAL_AUT_OBJECTS) | {w for t in EVAL_CWT_TRIPLES for w in t}
# Samples per eval prompt used in the literature (recorded in `meta`, used by evaluation).
EVAL_NUM_SAMPLES = {"dat": 100, "pgt": 100, "aut": 10, "cwt": 10}

DAT_WORDINGS = (
    "Please write {count} nouns in English that are as different from each other as possible, "
    "in all meanings and uses of the words. Rules: only single words, only nouns (things, "
    "objects, concepts), no proper nouns and no specialised vocabulary. Write them as a numbered "
    "list, one word per line.",
    "List {count} English nouns that are as unrelated to each other as you can make them. Use "
    "single common words only: no proper nouns, no technical terms. Give a numbered list, one "
    "word per line.",
    "Think of {count} single-word English nouns that have as little in common as possible "
    "(different meanings, different uses). No names of people or places, no jargon. Answer with "
    "a numbered list, one noun per line.",
)
DAT_EVAL_VARIANT = "n10-w0"
DAT_COUNTS = range(5, 16)

PGT_FIELDS = {
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
PGT_EVAL_KEYS = ("first_name", "city", "occupation")
PGT_WORDINGS = (
    "Generate a random persona: give their {described}. Answer only with a JSON object with "
    "the keys {keys}.",
    "Invent a random person and describe them by their {described}. Reply with nothing but a "
    "JSON object that has exactly the keys {keys}.",
)

AUT_TEMPLATE = (
    "List exactly {count} creative and unusual uses for {article} {object}. Write them as a "
    "numbered list, one use per line."
)
AUT_COUNT = 5
CWT_TEMPLATE = (
    "Write a very short story of about 5 sentences that uses all three of these words: "
    "{a}, {b}, {c}."
)


def prompt_id(task: str, item: str, variant: str = "") -> str:
    """Stable 16-hex id of task + item + variant (unit separator keeps the parts apart)."""
    return hashlib.sha256("\x1f".join((task, item, variant)).encode()).hexdigest()[:16]


@cache
def nouns() -> tuple[str, ...]:
    """The shipped noun list, minus any eval word (defence in depth), sorted and unique."""
    text = resources.files("diversens").joinpath("data/nouns.txt").read_text(encoding="utf-8")
    words = {w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")}
    return tuple(sorted(words - EVAL_WORDS))


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" or (word[0] == "u" and not word.startswith("uni")) else "a"


def _join(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def render(task: str, item: str, variant: str) -> str:
    """The user prompt text for one (task, item, variant)."""
    if task == "dat":
        count, wording = (int(p[1:]) for p in variant.split("-"))
        return DAT_WORDINGS[wording].format(count=count)
    if task == "pgt":
        keys = item.split(",")
        described = _join([PGT_FIELDS[k] for k in keys])
        quoted = _join([json.dumps(k) for k in keys])
        return PGT_WORDINGS[int(variant[1:])].format(described=described, keys=quoted)
    if task == "aut":
        return AUT_TEMPLATE.format(count=int(variant[1:]), article=_article(item), object=item)
    if task == "cwt":
        a, b, c = item.split("/")
        return CWT_TEMPLATE.format(a=a, b=b, c=c)
    raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")


def _row(task: str, item: str, variant: str, split: str, **meta) -> dict:
    return {
        "prompt_id": prompt_id(task, item, variant),
        "task": task,
        "messages": [{"role": "user", "content": render(task, item, variant)}],
        "meta": json.dumps({"split": split, "item": item, "variant": variant, **meta}),
    }


def eval_items() -> list[tuple[str, str, str]]:
    """(task, item, variant) of the held-out eval split, DESIGN.md §2."""
    return [
        ("dat", "", DAT_EVAL_VARIANT),
        ("pgt", ",".join(PGT_EVAL_KEYS), "w0"),
        *(("aut", obj, f"n{AUT_COUNT}") for obj in EVAL_AUT_OBJECTS),
        *(("cwt", "/".join(t), "") for t in EVAL_CWT_TRIPLES),
    ]


def eval_prompts() -> pd.DataFrame:
    """The eval split: 24 prompts; `meta.num_samples` is the literature's samples per prompt."""
    rows = [_row(t, i, v, "eval", num_samples=EVAL_NUM_SAMPLES[t]) for t, i, v in eval_items()]
    return pd.DataFrame(rows)


def _train_space(task: str) -> list[tuple[str, str]]:
    """All (item, variant) training candidates of a finite family, eval pairs removed."""
    if task == "dat":
        space = [("", f"n{c}-w{w}") for c in DAT_COUNTS for w in range(len(DAT_WORDINGS))]
    elif task == "pgt":
        others = [k for k in PGT_FIELDS if k != "first_name"]
        sets = [("first_name", *pair) for pair in itertools.combinations(others, 2)]
        space = [(",".join(s), f"w{w}") for s in sets for w in range(len(PGT_WORDINGS))]
    elif task == "aut":
        space = [(obj, f"n{AUT_COUNT}") for obj in nouns()]
    else:
        raise ValueError(task)
    # Hold out the eval item in every wording: a paraphrase of an eval prompt is still the item.
    held_out = {_item_key(i, v) for t, i, v in eval_items() if t == task}
    return [(i, v) for i, v in space if _item_key(i, v) not in held_out]


def _item_key(item: str, variant: str) -> str:
    return variant.split("-")[0] if item == "" else item  # DAT items are their count


def _cwt_triples(n: int, rng: random.Random) -> list[tuple[str, str]]:
    words, held_out = nouns(), {"/".join(t) for t in EVAL_CWT_TRIPLES}
    seen: dict[frozenset, str] = {}  # a triple in another order is the same story task
    while len(seen) < n:
        triple = rng.sample(words, 3)
        item = "/".join(triple)
        if frozenset(triple) not in seen and item not in held_out:
            seen[frozenset(triple)] = item
    return [(item, "") for item in seen.values()]


def training_prompts(num_per_task: int = 250, seed: int = 0, tasks=TASKS) -> pd.DataFrame:
    """Up to `num_per_task` training prompts per task, drawn reproducibly from `seed`.

    Finite families give at most their size: 30 DAT and 70 PGT variants, ~400 AUT objects; CWT
    triples are practically unlimited.
    """
    if num_per_task < 0:
        raise ValueError(f"num_per_task must be >= 0, got {num_per_task}")
    rows = []
    for task in tasks:
        rng = random.Random(f"{seed}:{task}")  # per-task stream: adding a task changes no other
        if task == "cwt":
            picked = _cwt_triples(num_per_task, rng)
        else:
            space = _train_space(task)
            picked = rng.sample(space, min(num_per_task, len(space)))
        rows += [_row(task, item, variant, "train", seed=seed) for item, variant in picked]
    return pd.DataFrame(rows, columns=["prompt_id", "task", "messages", "meta"])


def build_prompts(split: str, num_per_task: int = 250, seed: int = 0) -> pd.DataFrame:
    """The `train` or `eval` prompt table (DESIGN.md §3 prompts contract)."""
    if split == "eval":
        return eval_prompts()
    if split == "train":
        return training_prompts(num_per_task, seed)
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
