"""Task compliance: whether a response follows its task's format (DESIGN.md §4).

Cheap, deterministic rules over the text and the prompt's `meta`. The quality scorer uses them
to lower a non-compliant candidate's quality (lenient mode) and the validity stage to reject it
(strict mode).
"""

from __future__ import annotations

import json
import re

from diversens.prompts.tasks import PGT_EVAL_KEYS
from diversens.scoring.config import QualityConfig
from diversens.text import dat_words, json_object, list_items, sentences, words


def compliance_issue(text: str, task: str, meta: dict, cfg: QualityConfig) -> str | None:
    """Why `text` fails its task's format, or None. Cheap, deterministic checks.

    What a prompt asked for comes from its `meta` (built-in prompts record `item` and `variant`:
    the CWT words "a/b/c", the PGT fields "f1,f2", the count "n10"); config values are fallbacks.
    """
    if not text.strip():
        return "empty"
    item = str(meta.get("item") or "")
    count = re.match(r"n(\d+)", str(meta.get("variant") or ""))
    if task == "dat":
        need = int(count.group(1)) if count else cfg.dat_num_words
        return None if len(dat_words(text, need)[0]) >= need else "dat_too_few_single_words"
    if task == "aut":
        need = int(count.group(1)) if count else cfg.aut_num_uses
        return None if len(list_items(text)) >= need else "aut_too_few_uses"
    if task == "pgt":
        obj = json_object(text)
        if obj is None:
            return "pgt_invalid_json"
        fields = item.split(",") if item else PGT_EVAL_KEYS
        ok = all(isinstance(obj.get(k), str) and obj[k].strip() for k in fields)
        return None if ok else "pgt_missing_field"
    if task == "cwt":
        used = word_forms_in(text)
        required = [w.lower() for w in meta.get("words") or item.split("/") if w]
        if not all(inflections(w) & used for w in required):
            return "cwt_missing_word"
        lo, hi = cfg.cwt_sentences
        return None if lo <= len(sentences(text)) <= hi else "cwt_sentence_count"
    return None


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


def parse_meta(meta) -> dict:
    if isinstance(meta, dict):
        return meta
    if isinstance(meta, str) and meta:
        return json.loads(meta)
    return {}


def candidate_issues(row, cfg: QualityConfig) -> list[str | None]:
    """The compliance issue (None: compliant) of each candidate of a candidates row (a tuple
    from `DataFrame.itertuples`; `meta` is optional)."""
    meta = parse_meta(getattr(row, "meta", None))
    return [compliance_issue(text, row.task, meta, cfg) for text in row.responses]
