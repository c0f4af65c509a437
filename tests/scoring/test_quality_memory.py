"""Fluency scoring without full (batch x tokens x vocab) logits: same scores, bounded memory."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from candidates import STORY

from diversens.scoring import quality
from diversens.scoring.config import QualityConfig
from diversens.scoring.quality import FluencyScorer

MSGS = [{"role": "user", "content": "Write a story with stamp, letter, send."}]


def full_logits_reference(scorer: FluencyScorer, responses: list[str]) -> np.ndarray:
    """The straightforward computation: log_softmax over the whole (B, T, V) logits tensor."""
    prompt = scorer.render(MSGS, None)
    full = [scorer.render(MSGS, r) for r in responses]
    enc = scorer.encode(full)
    with torch.inference_mode():
        logp = scorer.model(**enc).logits[:, :-1].float().log_softmax(-1)
    logp = logp.gather(-1, enc.input_ids[:, 1:, None])[..., 0]
    out = []
    for row, (r, f) in enumerate(zip(responses, full, strict=True)):
        start, end = scorer._answer_span(prompt, r, f)
        out.append(logp[row, start - 1 : end - 1].mean().item())
    return np.array(out)


@pytest.mark.slow
def test_fluency_matches_full_logits_reference():
    """Chunked over answer tokens across rows of different lengths (chunks of 7 tokens, so a
    chunk straddles rows), the mean log-likelihood is the full-tensor one: one batch, padded
    alike, so only the head's computation differs."""
    scorer = FluencyScorer(QualityConfig(batch_size=8, device="cpu"))
    salad = "Letter stamp the of send purple quickly banana the the with. Of send."
    responses = [STORY, salad, STORY + " " + salad, "Short.", "Yes"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quality, "_HEAD_CHUNK", 7)
        got = scorer.score([MSGS] * len(responses), responses)
    np.testing.assert_allclose(got, full_logits_reference(scorer, responses), rtol=0, atol=1e-4)


# Run in a fresh process so that nothing earlier in the session has set the peak. After a
# warm-up call (thread pools, lazy inits), the kernel's peak-RSS mark is reset (clear_refs 5)
# and the scoring call's peak is read against the resident size just before it.
PEAK_SCRIPT = """
import json, random, re
from diversens.scoring.config import QualityConfig
from diversens.scoring.quality import FluencyScorer

def kib(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

scorer = FluencyScorer(QualityConfig(batch_size=16, device="cpu"))
words = "stamp letter send dawn river lamp quiet garden friend winter road bell".split()
responses = [" ".join(random.Random(i).choices(words, k=280)) + "." for i in range(16)]
messages = [[{"role": "user", "content": "Write a story."}]] * 16
scorer.score(messages[:1], ["Warm up."])
rss = kib("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
scorer.score(messages, responses)
tokens = scorer.encode([scorer.render(m, r) for m, r in zip(messages, responses)]).input_ids
print(json.dumps({"growth": (kib("VmHWM") - rss) * 1024, "shape": list(tokens.shape),
                  "vocab": scorer.model.get_output_embeddings().out_features}))
"""


@pytest.mark.slow
def test_fluency_peak_memory_is_below_one_full_logits_tensor():
    """16 responses x ~300 tokens x 49152 vocab: one fp32 logits tensor is ~0.95 GB, and the
    full-tensor computation holds two (logits and their log_softmax). The chunked one adds the
    model body's activations (~0.1 GB here) and a 256 x vocab slice (50 MB), so a third of
    one tensor is a bound with room on one side and a factor of six on the other."""
    from diversens.models import resolve_model

    resolve_model("smollm2-135m-instruct")  # convert once here, not inside the measured process
    run = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    batch, tokens = out["shape"]
    one_tensor = batch * tokens * out["vocab"] * 4
    assert batch == 16 and tokens > 280
    assert out["growth"] < one_tensor / 3, (out["growth"] / 2**20, one_tensor / 2**20)
