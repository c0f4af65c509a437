"""Quality: fluency under a reference LM, or an HF reward model (docs/design.md §10).

`QualityStage` adds per-candidate `quality` (higher is better; comparable only within a run, so
selection turns it into a percentile). In lenient mode (`strict_compliance: false`) a candidate
that breaks its task's format keeps its place and loses `compliance_penalty` of quality; whether
a candidate may take part at all is the validity stage's call (diversens.scoring.validity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from diversens import schema
from diversens.models import resolve_model, torch_dtype
from diversens.scoring.compliance import candidate_issues
from diversens.scoring.config import QualityConfig
from diversens.stage import Stage

if TYPE_CHECKING:
    import torch


# Answer tokens per slice through the LM head: its fp32 logits are _HEAD_CHUNK x vocab (256 x 128k
# = 128 MB), the peak the scorer adds to the model body's own activations.
_HEAD_CHUNK = 256


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
        dtype = torch_dtype(cfg.dtype, self.device)
        self.model = loader.from_pretrained(path, trust_remote_code=trust, dtype=dtype)
        self.model = self.model.to(self.device).eval()

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
        # _score_batch applies the bare LM head to the body's output, as Llama/Qwen/Mistral-style
        # models do; one that soft-caps its logits (Gemma 2) would get log-probs of the wrong ones.
        if getattr(self.model.config, "final_logit_softcapping", None):
            raise ValueError(f"{cfg.reference_model}: logit soft-capping is not supported")

    def _score_batch(self, messages, responses) -> np.ndarray:
        prompts = [self.render(m, None) for m in messages]
        full = [self.render(m, r) for m, r in zip(messages, responses, strict=True)]
        enc = self.encode(full)
        starts, ends = zip(*(self._answer_span(p, r, f) for p, r, f in
                             zip(prompts, responses, full, strict=True)), strict=True)  # fmt: skip
        targets = enc.input_ids[:, 1:]  # (B, T-1): position t predicts token t + 1
        positions = self.torch.arange(targets.shape[1], device=self.device)[None, :]
        start = self.torch.tensor(starts, device=self.device)[:, None] - 1
        end = self.torch.tensor(ends, device=self.device)[:, None] - 1
        mask = (positions >= start) & (positions < end) & enc.attention_mask[:, 1:].bool()
        # Full (B, T, vocab) logits would dwarf the model's activations (16 x 650 tokens x 128k
        # vocab is 5 GB in fp32, and log_softmax doubles it), so the body runs without the head
        # (and without a KV cache, which scoring never reuses) and the head sees only answer
        # tokens, _HEAD_CHUNK of them at a time.
        body = self.model.base_model(**enc, use_cache=False)
        hidden = body.last_hidden_state[:, :-1][mask]  # (N, H): the answer tokens of all rows
        chunks = zip(hidden.split(_HEAD_CHUNK), targets[mask].split(_HEAD_CHUNK), strict=True)
        logp = self.torch.cat([self._log_probs(h, t) for h, t in chunks])  # (N,)
        rows = mask.nonzero()[:, 0]  # the response each answer token belongs to
        sums = logp.new_zeros(len(responses)).index_add_(0, rows, logp)
        return (sums / mask.sum(1).clamp(min=1)).cpu().numpy()

    def _log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) = logit[target] - logsumexp(logits), in fp32 (the head's output may be
        bf16): the log-softmax of the whole chunk is never stored."""
        logits = self.model.get_output_embeddings()(hidden).float()  # (chunk, V)
        return logits.gather(-1, targets[:, None])[:, 0] - logits.logsumexp(-1)

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
    """Adds per-candidate `quality` to candidates rows."""

    requires = ("task", "messages", "responses")
    adds = schema.names(schema.QUALITY)

    def __init__(self, cfg: QualityConfig | None = None):
        self.cfg = cfg or QualityConfig()
        scorers = {"offline": FluencyScorer, "reward-model": RewardModelScorer}
        self.scorer = scorers[self.cfg.scorer](self.cfg) if self.cfg.scorer in scorers else None

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return batch.assign(quality=[])
        flat_msgs, flat_resp = [], []
        for msgs, resps in zip(batch["messages"], batch["responses"], strict=True):
            flat_msgs += [list(msgs)] * len(resps)
            flat_resp += list(resps)
        if self.scorer is None or not flat_resp:
            scores = np.zeros(len(flat_resp))
        else:
            scores = self.scorer.score(flat_msgs, [r if r.strip() else " " for r in flat_resp])
        scores = scores - self._penalties(batch)
        sizes = [len(r) for r in batch["responses"]]
        return batch.assign(quality=[q.tolist() for q in np.split(scores, np.cumsum(sizes)[:-1])])

    def _penalties(self, batch: pd.DataFrame) -> np.ndarray:
        """Lenient mode: compliance_penalty off every candidate that breaks its format (an empty
        one is rejected in any mode, so it needs none)."""
        if self.cfg.strict_compliance:
            return np.zeros(sum(len(r) for r in batch["responses"]))
        issues = [issue for row in batch.itertuples() for issue in candidate_issues(row, self.cfg)]
        return np.array([self.cfg.compliance_penalty if i not in (None, "empty") else 0.0
                         for i in issues])  # fmt: skip
