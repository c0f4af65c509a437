import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# What a reader sees (issue 27): invisible format characters are no characters, and Chinese and
# Japanese, written without spaces, count a word per character.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def test_invisible_characters_inside_words_are_removed():
    from diversens.measures.lexical import measure_texts

    plain, hidden = "hello hello hello hello", "hel\u200blo hello\u200d h\u00adello \ufeffhello"
    assert words(hidden) == words(plain) == ["hello"] * 4
    got, want = measure_texts([hidden]), measure_texts([plain])
    for key in want:
        assert np.array_equal(got[key], want[key], equal_nan=True), key
    assert got["ttr"][0] == 0.25


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=80), st.lists(
    st.tuples(st.integers(min_value=0), st.sampled_from(INVISIBLE)), max_size=8))  # fmt: skip
def test_inserting_invisible_characters_never_changes_a_lexical_measure(text, inserts):
    from diversens.measures.lexical import measure_texts

    spiked = text
    for at, ch in inserts:
        at %= len(spiked) + 1
        spiked = spiked[:at] + ch + spiked[at:]
    assert words(spiked) == words(text)
    a, b = measure_texts([text]), measure_texts([spiked])
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


def test_chinese_and_japanese_count_a_word_per_character():
    from diversens.measures.lexical import measure_texts

    zh = "我爱猫，猫爱我。"  # 6 characters, 3 distinct
    assert words(zh) == list("我爱猫猫爱我")
    m = measure_texts([zh])
    assert m["n_words"][0] == 6 and m["ttr"][0] == 0.5 and m["entropy"][0] > 0
    assert words("ラーメンを食べた") == list("ラーメンを食べた")
    assert words("iPhone用户 한국어 문장") == ["iphone", "用", "户", "한국어", "문장"]


def test_english_words_and_measures_are_unchanged():
    """The rule only touches non-ASCII text with invisible or CJK characters: an English sample
    gives the words and values it gave before (recorded from the previous tokeniser)."""
    from diversens.measures.lexical import measure_texts

    text = ("The cat sat on the mat — don’t ask why; it's well-known that cats (and 3.14 dogs) "
            "like mats. Café naïve résumé: 1,000 ideas!")  # fmt: skip
    assert words(text) == [
        "the", "cat", "sat", "on", "the", "mat", "don't", "ask", "why", "it's", "well-known",
        "that", "cats", "and", "3.14", "dogs", "like", "mats", "café", "naïve", "résumé", "1,000",
        "ideas",
    ]  # fmt: skip
    m = measure_texts([text])
    assert m["n_words"][0] == 23 and m["ttr"][0] == 22 / 23


def test_sentences_read_each_character_of_a_long_paragraph_once(monkeypatch):
    """The word before each period is looked for since the previous sentence end only, not in
    the whole paragraph before it: a 70 kB answer took 0.6 s to split (quadratic), and
    `measure` on a 50 MB file ran at 1.3 rows/s."""
    from diversens import text

    looked = []
    is_boundary = text._is_boundary

    def counting(paragraph, end, since):
        looked.append(end.start() - since)
        return is_boundary(paragraph, end, since)

    monkeypatch.setattr(text, "_is_boundary", counting)
    paragraph = "Mr. Smith met J. Doe. They talked, e.g. about tea. " * 2000
    assert sentences(paragraph)[:2] == ["Mr. Smith met J. Doe.", "They talked, e.g. about tea."]
    assert len(sentences(paragraph)) == 4000
    assert sum(looked) <= 2 * len(paragraph)  # two calls above


def test_as_read_sees_what_a_reader_sees():
    """Invisible characters, Unicode form and spacing do not make texts differ, nor a text of
    them alone non-empty; letters, case and punctuation do."""
    import unicodedata

    from diversens.text import as_read

    for invisible in ("\u200b\u200c\u200d", "\u2060\ufeff", "\u00ad\u180e\u2061", "\u3164 \u2800",
                      "\u034f\ufe0f", "\U000e0041\U000e007f", " \t\n\u00a0\u3000"):  # fmt: skip
        assert as_read(invisible) == "", repr(invisible)
    nfc = "Crème brûlée, naïve café."
    assert as_read(unicodedata.normalize("NFD", nfc)) == as_read(nfc) == nfc
    assert as_read(" Crè\u200bme  brû\u2060lée,\nnaïve\u00a0café. ") == nfc
    assert as_read("e\u200b\u0301") == "\u00e9"  # the accent joins its letter once the ZWSP goes
    assert len({as_read(t) for t in ("Teal.", "teal.", "Teal", "Teal!")}) == 4
