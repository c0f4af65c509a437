"""Task families: the eval split is docs/design.md §7's items; training splits are reproducible and
never contain an eval item."""

import json
import re

import pytest

from diversens.prompts import (
    build_prompts,
    eval_prompts,
    literature_samples,
    prompt_id,
    render,
    training_prompts,
)
from diversens.prompts.nouns import nouns
from diversens.prompts.registry import held_out_words
from diversens.prompts.tasks.aut import EVAL_OBJECTS as EVAL_AUT_OBJECTS
from diversens.prompts.tasks.cwt import EVAL_TRIPLES as EVAL_CWT_TRIPLES

EVAL_WORDS = frozenset(EVAL_AUT_OBJECTS) | {w for t in EVAL_CWT_TRIPLES for w in t}


def _text(row) -> str:
    return row["messages"][0]["content"]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_eval_split_is_the_literature_items():
    df = eval_prompts()
    assert df["task"].value_counts().to_dict() == {"aut": 15, "cwt": 7, "dat": 1, "pgt": 1}
    assert df["prompt_id"].is_unique
    aut = [_text(r) for _, r in df[df.task == "aut"].iterrows()]
    assert [obj for obj in EVAL_AUT_OBJECTS if any(f" {obj}." in t for t in aut)] == list(
        EVAL_AUT_OBJECTS
    )
    cwt = [_text(r) for _, r in df[df.task == "cwt"].iterrows()]
    for triple, text in zip(EVAL_CWT_TRIPLES, cwt, strict=True):
        assert all(w in _words(text) for w in triple)
    dat = _text(df[df.task == "dat"].iloc[0])
    assert "10 nouns" in dat and "numbered list" in dat
    pgt = _text(df[df.task == "pgt"].iloc[0])
    assert all(f'"{k}"' in pgt for k in ("first_name", "city", "occupation"))
    assert literature_samples() == {"dat": 100, "pgt": 100, "aut": 10, "cwt": 10}


def test_prompt_id_is_a_stable_hash():
    assert prompt_id("aut", "belt", "n5") == prompt_id("aut", "belt", "n5")
    assert len({prompt_id("aut", "belt", "n5"), prompt_id("aut", "belt", "n3")}) == 2
    # Pinned: ids must not change between releases, or reruns would not match.
    assert prompt_id("aut", "belt", "n5") == "928df8410ee3a253"


def test_noun_list_excludes_eval_words():
    words = nouns()
    assert len(words) >= 300
    assert not set(words) & EVAL_WORDS
    assert held_out_words() == EVAL_WORDS
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_training_prompts_never_contain_eval_items(seed):
    df = training_prompts(num_per_task=300, seed=seed)
    assert df["prompt_id"].is_unique
    ev = eval_prompts()
    assert not set(df["prompt_id"]) & set(ev["prompt_id"])
    assert not {_text(r) for _, r in df.iterrows()} & {_text(r) for _, r in ev.iterrows()}
    for _, row in df.iterrows():
        meta, text = json.loads(row["meta"]), _text(row)
        if row.task in ("aut", "cwt"):
            assert not _words(text) & EVAL_WORDS, text
        elif row.task == "dat":
            assert "10 nouns" not in text
        else:
            assert meta["item"] != "first_name,city,occupation"


def test_training_prompts_are_reproducible_from_the_seed():
    a, b = training_prompts(40, seed=3), training_prompts(40, seed=3)
    assert a.equals(b)
    c = training_prompts(40, seed=4)
    assert set(a["prompt_id"]) != set(c["prompt_id"])
    assert a["task"].value_counts().to_dict() == {"dat": 30, "pgt": 40, "aut": 40, "cwt": 40}


def test_build_prompts_rejects_unknown_split():
    assert len(build_prompts("eval")) == 24
    with pytest.raises(ValueError, match="split"):
        build_prompts("dev")


def test_render_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        render("haiku", "x", "")
