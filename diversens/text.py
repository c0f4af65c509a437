"""The one word tokeniser and the segment splitters that every measure shares.

All are pure, deterministic Python (no nltk, no model): the same text gives the same words and
segments on every machine, so lengths and diversity values are reproducible across runs.
"""

from __future__ import annotations

import json
import re
import unicodedata

# Typographic variants folded so that "don’t" and "don't" are one word.
_FOLD = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2010": "-", "\u2011": "-"})
# A word: starts and ends with a letter or digit; anything but whitespace and dashes inside.
_WORD = re.compile(r"[^\W_](?:[^\s\u2013\u2014]*[^\W_])?")
# Invisible format characters (Unicode category Cf, as of Unicode 14): zero-width space and
# (non-)joiners, word joiner, byte-order mark, soft hyphen, bidi marks and tags. A reader sees
# none of them, so "hel\u200blo" is "hello". Listed, not looked up, so that every Python reads
# the same words.
_INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)
# Invisible too, though not format characters: the rest of Unicode's default-ignorable code points
# (combining grapheme joiner, Hangul fillers, Khmer inherent vowels, variation selectors, tag
# range). Removed only where texts are compared as read (`as_read`), so the words the measures
# count stay as they were.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\ufff0-\ufff8"
    "\U000e0000-\U000e0fff]"
)
# Scripts written without spaces between words: Han ideographs (CJK, its extensions and
# compatibility block), Hiragana, Katakana and their extensions; each character is a word.
_CJK = re.compile(
    "([\u3005\u3007\u3021-\u3029\u3038-\u303b\u3040-\u309f\u30a1-\u30fa\u30fc-\u30ff"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U0001b000-\U0001b16f"
    "\U00020000-\U0003134f])"
)


def normalise(text: str) -> str:
    """Invisible format characters removed, Unicode NFKC, lowercase, curly apostrophes → ',
    Unicode hyphens → -."""
    if not text.isascii():
        text = _INVISIBLE.sub("", text)
    return unicodedata.normalize("NFKC", text).lower().translate(_FOLD)


def as_read(text: str) -> str:
    """`text` as a reader sees it, for deciding whether texts are empty or the same: invisible
    characters removed, Unicode NFC (a precomposed "é" and "e" + combining accent are one
    text), whitespace runs as one space, ends stripped; "" when nothing shows. Only compared,
    never stored: what is sampled or trained on is the text as given."""
    if not text.isascii():
        text = _IGNORABLE.sub("", _INVISIBLE.sub("", text)).replace("\u2800", " ")  # braille blank
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Word tokens of `text`, the unit of every length and lexical measure.

    Rule: `normalise` the text, split on whitespace and on en/em dashes (prose separators, unlike
    hyphens), then strip everything that is not a letter or digit from both ends of each piece;
    pieces left empty (pure punctuation, emoji) are dropped. Inner characters stay, so "don't",
    "well-known", "3.14" and "1,000" are one word each. Numbers are words. Invisible format
    characters (zero-width space, joiners, soft hyphen, BOM: category Cf) are removed first, so
    words are what a reader sees. Chinese and Japanese, written without spaces, count each Han,
    Hiragana or Katakana character as a word (Korean separates words with spaces: as is).

    >>> words("“Don’t” — she said: e.g. 3.14, well-known!")
    ["don't", 'she', 'said', 'e.g', '3.14', 'well-known']
    >>> words("我爱猫，猫爱我。")
    ['我', '爱', '猫', '猫', '爱', '我']
    """
    text = normalise(text)
    if not text.isascii():
        text = _CJK.sub(r" \1 ", text)
    return _WORD.findall(text)


# ---------------------------------------------------------------------------------------------
# Segments: list items, sentences or JSON field values (docs/design.md §7). Which splitter a task's
# answers get is the task's own choice (`diversens.prompts`); these are the splitters.

_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*+\u2022\u00b7\u2013\u2014])\s+")
_SENT_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_OPENERS = "\"'\u201c\u2018([*"
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al approx fig no vol mt".split()
)


def generic_segments(text: str) -> list[str]:
    """Segments of an answer whose format no task rule knows: list items if at least two lines
    carry list markers, else sentences."""
    if sum(bool(_MARKER.match(line)) for line in text.splitlines()) >= 2:
        return list_items(text)
    return sentences(text)


def list_segments(text: str, split_inline: bool = False) -> list[str]:
    """Segments of an answer that was asked for a list: its `list_items`; without list markers
    the non-empty lines if there are at least two, else (with `split_inline`) the comma- or
    semicolon-separated parts, else sentences."""
    items = list_items(text)
    if items:
        return items
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 2:
        return lines
    if split_inline and re.search(r"[,;]", text):
        return [p.strip() for p in re.split(r"[,;]", text) if p.strip()]
    return sentences(text)


def list_items(text: str) -> list[str]:
    """Items of the list in `text`: lines starting with "1." "2)" "-" "*" "•" ..., markers
    stripped; an unmarked line right after an item continues it, text before the first item or
    after a blank line that ends the list (intro, sign-off) is dropped. [] when no line carries a
    list marker."""
    items: list[list[str]] = []  # each item's lines, joined at the end (no quadratic concat)
    in_item = False  # the previous line was an item or its continuation
    for line in text.splitlines():
        marker = _MARKER.match(line)
        if marker:
            items.append([line[marker.end() :].strip()])
            in_item = True
        elif not line.strip():
            in_item = False
        elif in_item:
            items[-1].append(line.strip())
    return [item for item in map(" ".join, items) if item]


def sentences(text: str) -> list[str]:
    """Sentences of `text`: paragraphs (blank-line separated) are split after . ! ? (plus closing
    quotes or brackets) when whitespace and then a capital letter, digit, opening quote or
    bracket follow, except after common abbreviations (Mr, Dr, e.g., i.e., etc., ...) or a
    single-letter initial. Segments are stripped; empty ones are dropped."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        start = since = 0
        for end in _SENT_END.finditer(paragraph):
            if _is_boundary(paragraph, end, since):
                out.append(paragraph[start : end.end()])
                start = end.end()
            since = end.end()
        out.append(paragraph[start:])
    return [" ".join(s.split()) for s in out if s.strip()]


def _is_boundary(paragraph: str, end: re.Match[str], since: int) -> bool:
    """`since`: where the previous match ended (after whitespace), so the word before this one
    is looked for in between only: each character is read once, however long the paragraph."""
    nxt = paragraph[end.end() : end.end() + 1]
    if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
        return False
    if not end.group().startswith(".") or end.group().startswith(".."):
        return True
    # The word the period closes: an abbreviation or an initial ("J. Smith") ends no sentence.
    before = paragraph[since : end.start()].rsplit(None, 1)
    last = before[-1].lstrip(_OPENERS).lower() if before else ""
    return last not in _ABBREVIATIONS and not (len(last) == 1 and last.isalpha())


def json_object(text: str) -> dict | None:
    """The JSON object in `text`, or None if none parses.

    Tries the whole text, then the span from the first "{" to the last "}" (code fences, prose
    around the object).
    """
    candidates = [text.strip()]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    for candidate in candidates:
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def json_values(text: str) -> list[str] | None:
    """Non-empty values of `json_object(text)` in key order, None if there is no object.

    String values are kept as is, other values (numbers, lists) as compact JSON; nulls dropped.
    """
    obj = json_object(text)
    if obj is None:
        return None
    values = [v if isinstance(v, str) else json.dumps(v) for v in obj.values() if v is not None]
    return [v.strip() for v in values if v.strip()]
