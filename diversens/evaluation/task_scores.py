"""Task-specific eval scores (docs/design.md §7): DAT semantic distance of the nouns, PGT
uniqueness.

AUT and CWT are scored by the shared lexical and semantic measures plus compliance; these two
tasks have their own literature scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from diversens.errors import UserError
from diversens.prompts.tasks.dat import dat_words
from diversens.prompts.tasks.pgt import EVAL_KEYS
from diversens.storage import is_uri, local_copy
from diversens.text import json_object


def dat_score(word_vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance × 100 of the words' vectors (W, D); NaN below two words."""
    w = len(word_vectors)
    if w < 2:
        return float("nan")
    unit = word_vectors / np.linalg.norm(word_vectors, axis=1, keepdims=True)
    sim = unit @ unit.T  # (W, W)
    return float(100 * (1 - sim[np.triu_indices(w, 1)]).mean())


def check_glove(path: str | Path | None, option: str = "glove_path") -> None:
    """A GloVe file is read only after sampling: before it, its first line must be text (UTF-8,
    not gzip) of a word and its numbers, and so a later line of another width is the only
    fault left to find then."""
    if path is None:
        return
    if is_uri(path):
        with local_copy(str(path)) as local:
            check_glove(local, option)
        return
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head[:2] == b"\x1f\x8b":
        raise UserError(f"option {option} {path}: gzip-compressed; decompress it first (gunzip)")
    line = head.split(b"\n", 1)[0]
    try:
        word, *values = line.decode("utf-8").rstrip().split(" ")
        floats = [float(v) for v in values]
    except UnicodeDecodeError as e:
        where = f"option {option} {path}: line 1"
        raise UserError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except ValueError:
        floats = []
    if not word or not floats or not all(np.isfinite(floats)):
        raise UserError(f"option {option} {path}: line 1: not a GloVe vector line (a word, then "
                        "its numbers separated by spaces)")  # fmt: skip


class GloVe:
    """Word vectors from a GloVe text file (`word v1 v2 ...` per line), as the DAT paper uses."""

    def __init__(self, path: str | Path, vocabulary: set[str] | None = None):
        if is_uri(path):
            with local_copy(str(path)) as local:
                self.__init__(local, vocabulary)
            return
        path = Path(path)
        if not path.is_file():
            raise UserError(f"GloVe file {path} does not exist")
        self.vectors: dict[str, np.ndarray] = {}
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    word, *values = raw.decode("utf-8").rstrip().split(" ")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}: line {lineno}: not UTF-8 (byte {e.start})") from None
                if vocabulary is not None and word not in vocabulary:
                    continue
                try:
                    self.vectors[word] = np.asarray(values, dtype=np.float32)
                except ValueError:
                    raise UserError(f"{path}: line {lineno}: not a GloVe vector line") from None

    def __call__(self, words_: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[w] for w in words_]) if words_ else np.zeros((0, 1))

    def known(self, word: str) -> bool:
        return word in self.vectors


def score_dat(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], known=None
) -> dict[str, np.ndarray]:
    """Per DAT answer: score, valid words used, invalid items (incl. words without a vector)."""
    scores, n_valid, n_invalid = [], [], []
    for text in texts:
        valid, invalid = dat_words(text)
        if known is not None:
            invalid += sum(not known(w) for w in valid)
            valid = [w for w in valid if known(w)]
        scores.append(dat_score(embed(valid)) if len(valid) >= 2 else float("nan"))
        n_valid.append(len(valid))
        n_invalid.append(invalid)
    return {"dat_score": np.array(scores), "dat_words": np.array(n_valid),
            "dat_invalid": np.array(n_invalid)}  # fmt: skip


def score_pgt(texts: Sequence[str], fields: Sequence[str] = EVAL_KEYS) -> dict[str, float]:
    """JSON validity rate and, per field, the number of unique values (case/space-normalised)."""
    objects = [json_object(t) for t in texts]
    valid = [o for o in objects if o is not None and all(isinstance(o.get(f), str) for f in fields)]
    out = {"pgt_json_valid_rate": len(valid) / len(texts) if texts else float("nan")}
    for f in fields:
        out[f"pgt_unique_{f}"] = len({" ".join(o[f].lower().split()) for o in valid})
    return out
