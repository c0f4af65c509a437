import pytest

from diversens.prompts import segments
from diversens.text import normalise, sentences, words


def test_words_rule():
    text = "“Don’t” — she said: e.g. 3.14, well-known!  The END... 1,000 🙂 --"
    assert words(text) == [
        "don't", "she", "said", "e.g", "3.14", "well-known", "the", "end", "1,000",
    ]  # fmt: skip


def test_words_nfkc_and_empty():
    assert normalise("ＡＢＣ ﬁne") == "abc fine"
    assert words("ﬁne Ｆine") == ["fine", "fine"]
    assert words("") == [] and words(" ... — !") == []


def test_dat_numbered_list():
    text = "Here are ten nouns:\n1. Cat\n2. Volcano\n3) Spoon\n10. Algebra\n\nLet me know!"
    assert segments(text, "dat") == ["Cat", "Volcano", "Spoon", "Algebra"]


def test_dat_without_markers():
    assert segments("cat, volcano; spoon", "dat") == ["cat", "volcano", "spoon"]
    assert segments("cat\nvolcano\n", "DAT") == ["cat", "volcano"]


def test_aut_list_with_continuations():
    text = (
        "Five uses for a brick:\n"
        "1. **Doorstop**: keeps a door\n   open on windy days.\n"
        "2. Bookend\n"
        "- Paperweight\n"
        "* Garden border\n"
        "• Step for a child\n"
    )
    assert segments(text, "aut") == [
        "**Doorstop**: keeps a door open on windy days.",
        "Bookend",
        "Paperweight",
        "Garden border",
        "Step for a child",
    ]


def test_cwt_sentences_with_abbreviations():
    text = (
        "Mr. Smith bought a stamp, e.g. a rare one. He wrote a letter to Dr. Jones! "
        '"Will she reply?" he wondered. 3 days later, J. R. Jones sent one back.\n\n'
        "The end"
    )
    assert segments(text, "cwt") == [
        "Mr. Smith bought a stamp, e.g. a rare one.",
        "He wrote a letter to Dr. Jones!",
        '"Will she reply?" he wondered.',
        "3 days later, J. R. Jones sent one back.",
        "The end",
    ]


def test_sentence_needs_capital_after():
    assert sentences("It cost 3.5 dollars. then it rained. Fine.") == [
        "It cost 3.5 dollars. then it rained.",
        "Fine.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"first_name": "Ada", "city": "Lyon", "occupation": "Baker"}',
        'Sure!\n```json\n{"first_name": "Ada", "city": "Lyon", "occupation": "Baker"}\n```',
    ],
)
def test_pgt_json_values(text):
    assert segments(text, "pgt") == ["Ada", "Lyon", "Baker"]


def test_pgt_non_string_values_and_fallback():
    assert segments('{"a": 3, "b": null, "c": ""}', "pgt") == ["3"]
    assert segments("Ada is a baker. She lives in Lyon.", "pgt") == [
        "Ada is a baker.",
        "She lives in Lyon.",
    ]


def test_generic_text():
    assert segments("One idea. Another idea.") == ["One idea.", "Another idea."]
    assert segments("- one\n- two\n", "custom") == ["one", "two"]
    assert segments("- only one bullet. And a sentence.") == [
        "- only one bullet.",
        "And a sentence.",
    ]
    assert segments("") == [] and segments("  \n ") == []
    assert segments("Just one sentence") == ["Just one sentence"]
