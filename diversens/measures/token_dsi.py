"""Token-level DSI, the original divergent semantic integration (Johnson et al. 2022): the mean
pairwise cosine distance between the contextual vectors of a response's tokens, taken from one
hidden layer of the embedder's own transformer (all-MiniLM-L6-v2 is a 6-layer BERT, so no other
model is loaded). The sentence-level `dsi` compares segments; this compares tokens.

Option `token_dsi.layer`: the hidden layer (0 = the embedding layer, -1 = the last; default).
Special tokens ([CLS], [SEP]) are left out. A response longer than the model's window is read in
consecutive windows, so every token counts. Fewer than two tokens: no value (NaN). Not a default
measure: a second pass through the model, run when a strategy, eval or `measures` asks for it.
"""

from __future__ import annotations

import numpy as np

from diversens.measures.registry import Measure, Texts, register
from diversens.measures.semantic import group_mean_pairwise_distance


def token_vectors(module, texts: list[str], layer: int, batch_size: int) -> list[np.ndarray]:
    """Per text, (T, H) unit-norm hidden states of its tokens at `layer`. `module` is a
    sentence-transformers Transformer (its `auto_model` and tokenizer `processor`)."""
    import torch

    tok, model = module.processor, module.auto_model
    device = next(model.parameters()).device
    parts: list[list[np.ndarray]] = [[] for _ in texts]
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            # A long text overflows into further windows, each with its own special tokens.
            enc = tok(texts[start : start + batch_size], truncation=True, padding=True,
                      max_length=module.max_seq_length, return_overflowing_tokens=True,
                      return_special_tokens_mask=True, return_tensors="pt")  # fmt: skip
            owner = enc.pop("overflow_to_sample_mapping").tolist()
            keep = (enc.pop("special_tokens_mask") == 0) & (enc["attention_mask"] == 1)
            out = model(**enc.to(device), output_hidden_states=True)
            states = out.hidden_states[layer].float().cpu().numpy()
            for i, h, k in zip(owner, states, keep.numpy(), strict=True):
                parts[start + i].append(h[k])
    vectors = []
    for p in parts:
        v = np.concatenate(p) if p else np.zeros((0, model.config.hidden_size))
        vectors.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    return vectors


def _token_dsi(texts: Texts) -> np.ndarray:
    module = texts.embedder.model[0]
    layer = int(texts.option("token_dsi", "layer"))
    batch_size = getattr(texts.settings, "embed_batch_size", 32)
    vectors = token_vectors(module, texts.texts, layer, batch_size)
    sizes = np.array([len(v) for v in vectors])
    flat = np.concatenate(vectors) if vectors else np.zeros((0, 1))
    return group_mean_pairwise_distance(flat, sizes)


register(Measure("token_dsi", "mean pairwise cosine distance of the response's token vectors "
                 "(a hidden layer of the embedder's BERT)", _token_dsi, needs="embedder",
                 default=False, options={"layer": -1}))  # fmt: skip
