"""Quality: task compliance, fluency under a reference LM, or an HF reward model (DESIGN.md §4).

`QualityStage` adds per-candidate `quality` (higher is better; comparable only within a run, so
selection turns it into a percentile), `valid` and `reject_reason`. A candidate is invalid when
it is empty, truncated, breaks its task's format, or has a non-finite measure; the reason is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diversens import schema
from diversens.models import DEFAULT_GENERATOR, resolve_model
from diversens.prompts.tasks import PGT_EVAL_KEYS
from diversens.stage import Stage
from diversens.text import dat_words, json_object, list_items, sentences, words

SCORERS = ("offline", "reward-model", "none")


@dataclass
class QualityConfig:
    scorer: str = field(
        default="offline",
        metadata={
            "help": "offline = compliance + fluency under reference_model; reward-model = "
            "reward_model's score; none = compliance only (quality 0)"
        },
    )
    reference_model: str = field(
        default=DEFAULT_GENERATOR, metadata={"help": "causal LM for fluency (mean token log-prob)"}
    )
    reward_model: str | None = field(
        default=None, metadata={"help": "HF sequence-classification reward model, id or path"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the reward model's own code to run (opt-in)"}
    )
    device: str | None = field(default=None, metadata={"help": "torch device (default: auto)"})
    batch_size: int = field(default=8, metadata={"help": "responses per forward pass"})
    max_length_tokens: int = field(default=1024, metadata={"help": "truncate scored inputs"})
    dat_num_words: int = field(default=10, metadata={"help": "DAT: single words required"})
    aut_num_uses: int = field(default=5, metadata={"help": "AUT: list items required"})
    cwt_sentences: list[int] = field(
        default_factory=lambda: [3, 8], metadata={"help": "CWT: allowed [min, max] sentences"}
    )
    strict_compliance: bool = field(
        default=True,
        metadata={
            "help": "a candidate that breaks its task's format is invalid; when false it stays "
            "valid and compliance_penalty is taken off its quality (small models rarely comply)"
        },
    )
    compliance_penalty: float = field(
        default=1.0, metadata={"help": "quality taken off a non-compliant candidate (lenient mode)"}
    )
    check_measures: list[str] = field(
        default_factory=list,
        metadata={
            "help": "measure columns that must be finite for any candidate to be valid (default "
            "none: each strategy needs finite values only of the measures it ranks by, so a "
            "one-sentence answer without DSI still takes part in lite, quality and random)"
        },
    )

    def __post_init__(self):
        if self.scorer not in SCORERS:
            raise ValueError(f"unknown scorer {self.scorer!r} (choose from {SCORERS})")
        if self.scorer == "reward-model" and not self.reward_model:
            raise ValueError("scorer 'reward-model' needs reward_model (an HF id or path)")
        if len(self.cwt_sentences) != 2 or self.cwt_sentences[0] > self.cwt_sentences[1]:
            raise ValueError(f"cwt_sentences must be [min, max], got {self.cwt_sentences}")


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


class _LMScorer:
    """Shared plumbing of the two model scorers: device, tokenizer, chat rendering, batching."""

    def __init__(self, cfg: QualityConfig, model_name: str, loader):
        import torch
        from transformers import AutoTokenizer

        self.torch, self.cfg = torch, cfg
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = resolve_model(model_name)
        trust = cfg.trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"  # scores read positions from the left
        self.model = loader.from_pretrained(path, trust_remote_code=trust).to(self.device).eval()

    def render(self, messages: list[dict], response: str | None) -> str:
        convo = list(messages) + ([{"role": "assistant", "content": response}] if response else [])
        return self.tokenizer.apply_chat_template(
            convo, tokenize=False, add_generation_prompt=response is None
        )

    def encode(self, texts: list[str]):
        """Right-padded, truncated batch on the scorer's device (chat text carries its tokens)."""
        return self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.cfg.max_length_tokens,
            add_special_tokens=False,
        ).to(self.device)

    def score(self, messages: list[list[dict]], responses: list[str]) -> np.ndarray:
        out = np.empty(len(responses))
        for start in range(0, len(responses), self.cfg.batch_size):
            stop = start + self.cfg.batch_size
            with self.torch.inference_mode():
                out[start:stop] = self._score_batch(messages[start:stop], responses[start:stop])
        return out


class FluencyScorer(_LMScorer):
    """Mean log-probability per answer token given the prompt, under a reference causal LM.
    Only the answer's own tokens count: the chat template's end-of-turn tokens after it are
    nearly certain, so counting them would lift short answers (fewer tokens to average them
    with) above long ones."""

    def __init__(self, cfg: QualityConfig):
        from transformers import AutoModelForCausalLM

        super().__init__(cfg, cfg.reference_model, AutoModelForCausalLM)

    def _score_batch(self, messages, responses) -> np.ndarray:
        prompts = [self.render(m, None) for m in messages]
        full = [self.render(m, r) for m, r in zip(messages, responses, strict=True)]
        enc = self.encode(full)
        starts, ends = zip(*(self._answer_span(p, r, f) for p, r, f in
                             zip(prompts, responses, full, strict=True)), strict=True)  # fmt: skip
        logits = self.model(**enc).logits[:, :-1].float()  # (B, T-1, V)
        targets = enc.input_ids[:, 1:]  # (B, T-1): position t predicts token t + 1
        logp = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]  # (B, T-1)
        positions = self.torch.arange(targets.shape[1], device=self.device)[None, :]
        start = self.torch.tensor(starts, device=self.device)[:, None] - 1
        end = self.torch.tensor(ends, device=self.device)[:, None] - 1
        mask = (positions >= start) & (positions < end) & enc.attention_mask[:, 1:].bool()
        return ((logp * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()

    def _answer_span(self, prompt: str, response: str, full: str) -> tuple[int, int]:
        """[first, end) token positions of the answer in the rendered conversation. Where the
        template does not render as prompt + answer + suffix, the suffix counts too."""
        answered = prompt + response
        end = self._count(answered if full.startswith(answered) else full)
        return self._count(prompt), end

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)


class RewardModelScorer(_LMScorer):
    """Scalar score of an HF sequence-classification reward model on (prompt, response)."""

    def __init__(self, cfg: QualityConfig):
        from transformers import AutoModelForSequenceClassification

        super().__init__(cfg, cfg.reward_model, AutoModelForSequenceClassification)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _score_batch(self, messages, responses) -> np.ndarray:
        enc = self.encode([self.render(m, r) for m, r in zip(messages, responses, strict=True)])
        return self.model(**enc).logits[:, 0].float().cpu().numpy()


class QualityStage(Stage):
    """Adds per-candidate `quality`, `valid`, `reject_reason` to candidates rows."""

    requires = ("task", "messages", "responses")
    adds = schema.names(schema.QUALITY)

    def __init__(self, cfg: QualityConfig | None = None):
        self.cfg = cfg or QualityConfig()
        scorers = {"offline": FluencyScorer, "reward-model": RewardModelScorer}
        self.scorer = scorers[self.cfg.scorer](self.cfg) if self.cfg.scorer in scorers else None

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return batch.assign(quality=[], reject_reason=[], valid=[])
        reasons, penalties = zip(*(self._reasons(i, batch) for i in range(len(batch))), strict=True)
        flat_msgs, flat_resp = [], []
        for msgs, resps in zip(batch["messages"], batch["responses"], strict=True):
            flat_msgs += [list(msgs)] * len(resps)
            flat_resp += list(resps)
        if self.scorer is None:
            scores = np.zeros(len(flat_resp))
        else:
            scores = self.scorer.score(flat_msgs, [r if r.strip() else " " for r in flat_resp])
        sizes = [len(r) for r in batch["responses"]]
        scores = scores - np.concatenate([np.zeros(0), *map(np.asarray, penalties)])
        quality = np.split(scores, np.cumsum(sizes)[:-1])
        out = batch.copy()
        out["quality"] = [q.tolist() for q in quality]
        out["reject_reason"] = [
            [
                r or (None if np.isfinite(qv) else "quality_not_finite")
                for r, qv in zip(rs, q, strict=True)
            ]
            for rs, q in zip(reasons, quality, strict=True)
        ]
        out["valid"] = [[r is None for r in rs] for rs in out["reject_reason"]]
        return out

    def _reasons(self, i: int, batch: pd.DataFrame) -> tuple[list[str | None], list[float]]:
        """Per candidate of row i: the reject reason (None = valid) and the quality penalty."""
        row = batch.iloc[i]
        meta = parse_meta(row.get("meta"))
        finish = list(row["finish_reason"]) if "finish_reason" in batch else None
        measures = [m for m in self.cfg.check_measures if m in batch]
        reasons, penalties = [], []
        for j, text in enumerate(row["responses"]):
            reason = compliance_issue(text, row["task"], meta, self.cfg)
            lenient = reason not in (None, "empty") and not self.cfg.strict_compliance
            penalties.append(self.cfg.compliance_penalty if lenient else 0.0)
            reason = None if lenient else reason
            if reason is None and finish is not None and finish[j] == "length":
                reason = "truncated"
            if reason is None:
                bad = [m for m in measures if not np.isfinite(float(row[m][j]))]
                reason = f"{bad[0]}_not_finite" if bad else None
            reasons.append(reason)
        return reasons, penalties
