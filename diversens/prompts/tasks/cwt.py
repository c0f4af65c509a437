"""CWT, the Creative Writing Task: a 5-sentence story that uses three given words.

Eval: the literature's 7 word triples (docs/design.md §7). Training: other noun triples from the
shipped noun list, which holds no family's eval word; a triple in another order is the same
task, so it is drawn once.
"""

from __future__ import annotations

import random
from typing import Any

from diversens.prompts.nouns import nouns
from diversens.prompts.registry import register
from diversens.prompts.spec import Items, TaskSpec, asked_item
from diversens.text import sentences, words

EVAL_TRIPLES = (
    ("stamp", "letter", "send"),
    ("petrol", "diesel", "pump"),
    ("statement", "stealth", "detect"),
    ("belief", "faith", "sing"),
    ("gloom", "payment", "exist"),
    ("organ", "empire", "comply"),
    ("year", "week", "embark"),
)
TEMPLATE = (
    "Write a very short story of about 5 sentences that uses all three of these words: "
    "{a}, {b}, {c}."
)


def render(item: str, variant: str) -> str:
    a, b, c = item.split("/")  # "stamp/letter/send"
    return TEMPLATE.format(a=a, b=b, c=c)


def inflections(word: str) -> set[str]:
    """A required word and its regular inflections (plural, past, -ing, third person): a story
    "sends" a letter, and "single" does not use "sing" (a prefix match would say it does)."""
    forms = {word, word + "s", word + "es", word + "ed", word + "d", word + "ing"}
    if word.endswith("e"):
        forms.add(word[:-1] + "ing")
    if word.endswith("y"):
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    return forms


def word_forms_in(text: str) -> set[str]:
    """The text's words, with possessives and the parts of hyphenated words as words too."""
    out = set()
    for token in words(text):
        out |= {token, token.removesuffix("'s"), *token.split("-")}
    return out


def compliance(text: str, meta: dict, fallbacks: Any) -> str | None:
    """All three words used (user prompts may list them in `meta.words`), and a sentence count
    within `fallbacks.cwt_sentences`."""
    used = word_forms_in(text)
    required = [w.lower() for w in meta.get("words") or asked_item(meta).split("/") if w]
    if not all(inflections(w) & used for w in required):
        return "cwt_missing_word"
    lo, hi = fallbacks.cwt_sentences
    return None if lo <= len(sentences(text)) <= hi else "cwt_sentence_count"


def draw_triples(n: int, rng: random.Random) -> Items:
    """n distinct noun triples, none an eval triple."""
    words_, held_out = nouns(), {"/".join(t) for t in EVAL_TRIPLES}
    seen: dict[frozenset, str] = {}
    while len(seen) < n:
        triple = rng.sample(words_, 3)
        item = "/".join(triple)
        if frozenset(triple) not in seen and item not in held_out:
            seen[frozenset(triple)] = item
    return [(item, "") for item in seen.values()]


register(
    TaskSpec(
        name="cwt",
        followup="Now write a different story that uses the same three words, unlike your "
        "previous one.",
        segments=sentences,
        compliance=compliance,
        render=render,
        eval_items=tuple(("/".join(t), "") for t in EVAL_TRIPLES),
        training_items=draw_triples,
        literature_samples=10,
        held_out_words=frozenset(w for t in EVAL_TRIPLES for w in t),
        example_answer="Mara found an old stamp. She wrote a letter to a friend. She decided to "
        "send it at dawn. Weeks passed. A reply came.",
        order=40,
    )
)
