"""The selection report's yield: pairs per 100 prompts and per 100k generated tokens, and where
prompts and candidates were lost (docs/design.md §11)."""

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from diversens.selection.report import pair_yield, write_report

DROPS = {"diverse-ns": {"fewer_than_2_valid": 2, "no_admissible_pair": 3, "not_in_top_n": 0},
         "random": {"fewer_than_2_valid": 2, "not_in_top_n": 1}}  # fmt: skip
REASONS = {"non_compliant": 5, "truncated": 12}


def hand_made(**overrides) -> dict:
    # 12 prompts, 2 quarantined: 10 sampled x 4 candidates, 16,000 tokens.
    args = {"prompts": 12, "quarantined": 2, "candidates": 40, "generated_tokens": 16_000}
    return pair_yield({"diverse-ns": 5, "random": 7}, DROPS, REASONS, **{**args, **overrides})


def test_yield_arithmetic():
    y = hand_made()
    assert y["tokens_per_candidate"] == 400
    assert y["candidates_lost"] == REASONS and y["candidates_valid"] == 23
    ns = y["strategies"]["diverse-ns"]
    assert ns["pairs"] == 5
    assert math.isclose(ns["per_100_prompts"], 100 * 5 / 12)
    assert math.isclose(ns["per_100k_tokens"], 31.25)
    assert ns["prompts_lost"] == {"quarantined": 2, **DROPS["diverse-ns"]}
    assert y["strategies"]["random"]["per_100k_tokens"] == 43.75


def test_rates_over_nothing_are_nan_not_an_error():
    y = hand_made(prompts=0, candidates=0, generated_tokens=0)
    ns = y["strategies"]["diverse-ns"]
    assert math.isnan(ns["per_100_prompts"]) and math.isnan(ns["per_100k_tokens"])
    assert math.isnan(y["tokens_per_candidate"])


@given(
    quarantined=st.integers(0, 50),
    lost=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    pairs=st.integers(0, 300),
    rejected=st.lists(st.integers(0, 30), max_size=4),
    valid=st.integers(0, 500),
    tokens=st.integers(1, 10**9),
)
def test_yield_accounts_for_every_prompt_and_candidate(
    quarantined, lost, pairs, rejected, valid, tokens
):
    drops = {"s": {f"reason_{i}": n for i, n in enumerate(lost)}}
    reasons = {f"why_{i}": n for i, n in enumerate(rejected)}
    prompts = quarantined + sum(lost) + pairs  # every prompt: a pair, or lost for a reason
    y = pair_yield({"s": pairs}, drops, reasons, prompts=prompts, quarantined=quarantined,
                   candidates=sum(rejected) + valid, generated_tokens=tokens)  # fmt: skip
    s = y["strategies"]["s"]
    assert math.isclose(s["per_100k_tokens"] * tokens / 1e5, pairs, abs_tol=1e-9)
    if prompts:
        assert math.isclose(s["per_100_prompts"] * prompts / 100, pairs, abs_tol=1e-9)
    assert s["pairs"] + sum(s["prompts_lost"].values()) == prompts
    assert sum(y["candidates_lost"].values()) + y["candidates_valid"] == y["candidates"]


def test_report_has_the_yield_section(tmp_path):
    pairs = {s: pd.DataFrame({"chosen_n_words": [10.0] * n, "rejected_n_words": [9.0] * n,
                              "margin": [0.1] * n,
                              **{f"{side}_{m}": [0.5] * n for side in ("chosen", "rejected")
                                 for m in ("entropy", "ttr", "maas", "dsi", "quality")}})
             for s, n in (("diverse-ns", 5), ("random", 7))}  # fmt: skip
    correlations = pd.DataFrame(columns=["measure", "spearman_rho", "ci_low", "ci_high"])
    path = write_report(tmp_path, pairs, DROPS, REASONS, correlations, hand_made())
    text = path.read_text()
    assert text.index("## Yield") < text.index("## Length bias")  # near the top
    assert (
        "12 prompts, 40 candidates, 16,000 generated tokens (mean 400.0 per candidate); "
        "candidates lost: non_compliant 5, truncated 12; valid 23." in text
    )
    section = text[text.index("## Yield") : text.index("## Length bias")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in section.splitlines() if line.startswith("| ")}  # fmt: skip
    header = rows.pop("strategy")
    assert header[:4] == ["pairs", "per 100 prompts", "per 100k tokens", "quarantined"]
    assert dict(zip(header, rows["diverse-ns"], strict=True)) == {
        "pairs": "5", "per 100 prompts": "41.7", "per 100k tokens": "31.2", "quarantined": "2",
        "fewer_than_2_valid": "2", "no_admissible_pair": "3", "not_in_top_n": "0",
    }  # fmt: skip
    assert rows["random"][:3] == ["7", "58.3", "43.8"]
    assert dict(zip(header, rows["random"], strict=True))["no_admissible_pair"] == "0"
