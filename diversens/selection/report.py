"""Selection report: per strategy, how long chosen answers are against rejected ones, how much more
diverse, at what quality gap; the yield (pairs per 100 prompts and per 100k generated tokens); and
why prompts and candidates were dropped. Markdown tables + PNG plots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed
from scipy.stats import spearmanr

from diversens import measures, schema
from diversens.io import atomic_path, read_parquet, save_png

GAINS = tuple(m for m in schema.PAIR_MEASURES if m != "n_words")  # maas: lower = more diverse
# Every measure that can rank candidates: the length bias of each is what the report shows.
CORRELATED = (*measures.names(lambda m: m.ranks_candidates), "quality")
# What write_selection_report reads of the scored rows and of each pairs file (besides CORRELATED).
# The length correlations take every prompt of a run up to this many, else an even spread of
# about as many (every n-th in plan order): their bootstrap holds a draw as big as its input.
CORRELATION_PROMPTS = 10_000
SCORED_COLUMNS = ("prompt_id", "n_words", "valid", "reject_reason", "n_tokens")
PAIR_COLUMNS = ("margin", *(f"{side}_{m}" for m in schema.PAIR_MEASURES
                            for side in ("chosen", "rejected")))  # fmt: skip


def length_correlations(scored: pd.DataFrame, num_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of each measure with length (words) over the valid candidates, with
    a 95% bootstrap interval that resamples prompts (the candidates of a prompt are not
    independent). The paper's first claim: diversity measures and quality scores favour short
    answers (negative rho; for Maas, where lower is more diverse, positive)."""
    cols = [c for c in CORRELATED if c in scored]
    flat = scored[["prompt_id", "n_words", "valid", *cols]].explode(["n_words", "valid", *cols])
    flat = flat[flat["valid"].astype(bool)]
    values = flat[["n_words", *cols]].to_numpy(dtype=float)  # (N, 1 + M)
    prompts = pd.factorize(flat["prompt_id"])[0]
    members = [np.flatnonzero(prompts == p) for p in range(prompts.max() + 1)] if len(flat) else []
    rng = np.random.default_rng(seed)
    boots: list[list[float]] = [[] for _ in cols]
    for _ in range(num_boot if members else 0):  # one draw at a time: each is as big as the data
        d = np.concatenate([members[p] for p in rng.integers(0, len(members), len(members))])
        for m, boot in enumerate(boots, start=1):
            if np.isfinite(r := _spearman(values[d, 0], values[d, m])):
                boot.append(r)
    rows = []
    for m, (name, boot) in enumerate(zip(cols, boots, strict=True), start=1):
        rho = _spearman(values[:, 0], values[:, m])
        lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
        n = int((np.isfinite(values[:, 0]) & np.isfinite(values[:, m])).sum())
        rows.append({"measure": name, "spearman_rho": rho, "ci_low": lo, "ci_high": hi,
                     "candidates": n})  # fmt: skip
    return pd.DataFrame(rows, columns=["measure", "spearman_rho", "ci_low", "ci_high",
                                       "candidates"])  # fmt: skip


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def summarise(pairs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per strategy: the length bias is the `len_ratio` column."""
    rows = []
    for strategy, df in pairs.items():
        ratio = df.chosen_n_words / df.rejected_n_words.clip(lower=1)
        rows.append(
            {
                "strategy": strategy,
                "pairs": len(df),
                "chosen_words": df.chosen_n_words.mean(),
                "rejected_words": df.rejected_n_words.mean(),
                "len_ratio_median": ratio.median(),
                "chosen_shorter_pct": 100 * (df.chosen_n_words < df.rejected_n_words).mean(),
                **{f"{m}_gain": (df[f"chosen_{m}"] - df[f"rejected_{m}"]).mean() for m in GAINS},
            }
        )
    return pd.DataFrame(rows)


def pair_yield(
    pairs: dict[str, int], drops: dict[str, dict[str, int]], candidate_reasons: dict[str, int], *,
    prompts: int, quarantined: int, candidates: int, generated_tokens: int,
) -> dict:  # fmt: skip
    """Per strategy, pairs per 100 prompts and per 100k generated tokens (what a pair costs), and
    where the rest went. `prompts` counts every prompt given to the job: the quarantined ones are
    prompts lost before sampling (no candidates, no tokens), so pairs + prompts lost = prompts.
    A rate over nothing is NaN: no prompts or no tokens is no measurement, not a zero yield."""
    return {
        "prompts": prompts,
        "candidates": candidates,
        "generated_tokens": generated_tokens,
        "tokens_per_candidate": _rate(generated_tokens, candidates, 1),
        "candidates_lost": dict(candidate_reasons),
        "candidates_valid": candidates - sum(candidate_reasons.values()),
        "strategies": {
            strategy: {
                "pairs": n,
                "per_100_prompts": _rate(n, prompts, 100),
                "per_100k_tokens": _rate(n, generated_tokens, 100_000),
                "prompts_lost": {"quarantined": quarantined, **drops[strategy]},
            }
            for strategy, n in pairs.items()
        },
    }


def _rate(n: int, over: int, per: float) -> float:
    return per * n / over if over else float("nan")


def candidate_tokens(table: pa.Table) -> tuple[int, int]:
    """Candidates and the tokens generated for them, truncated and rejected ones included: they
    cost tokens too."""
    flat = pc.list_flatten(table["n_tokens"])
    return len(flat), pc.sum(flat).as_py() or 0


def candidate_reject_counts(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(pc.list_flatten(table["reject_reason"])))
    return dict(sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                           strict=True)))  # fmt: skip


def _yield_lines(yields: dict) -> list[str]:
    """The report's Yield section: one sentence on the candidates, a table row per strategy."""
    lost = ", ".join(f"{r} {n}" for r, n in yields["candidates_lost"].items()) or "none"
    rows = {s: {"pairs": y["pairs"], "per 100 prompts": y["per_100_prompts"],
                "per 100k tokens": y["per_100k_tokens"], **y["prompts_lost"]}
            for s, y in yields["strategies"].items()}  # fmt: skip
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("strategy")
    counts = table.columns.drop(["per 100 prompts", "per 100k tokens"])
    table[counts] = table[counts].fillna(0).astype(int)  # a reason absent for a strategy: 0
    return [
        "## Yield",
        "",
        f"{yields['prompts']:,} prompts, {yields['candidates']:,} candidates, "
        f"{yields['generated_tokens']:,} generated tokens (mean "
        f"{yields['tokens_per_candidate']:.1f} per candidate); candidates lost: {lost}; "
        f"valid {yields['candidates_valid']:,}.",
        "",
        "Pairs per strategy, per 100 prompts and per 100k generated tokens (truncated and",
        "rejected candidates cost tokens too), then the prompts lost, by reason.",
        "",
        table.astype(object).to_markdown(floatfmt=".1f"),  # object: counts stay integers
        "",
    ]


def write_selection_report(
    out_dir: Path, scored: Path, pairs: dict[str, pd.DataFrame],
    drops: dict[str, dict[str, int]], *, prompts: int, quarantined: int,
) -> dict:  # fmt: skip
    """The selection report of a run from its scored rows (the scored/ directory, read a file at
    a time), each strategy's pairs and drop counts, and its prompt counts. The job and
    `diversens report` both call it on what the job wrote, so both write the same bytes.
    Returns the run summary's entries it computed (rejected candidates, length correlations,
    yield, report)."""
    counted: Counter[str] = Counter()
    candidates = tokens = seen = 0
    sample = []  # every step-th prompt: the length correlations' bootstrap holds its draws
    step = max(1, -(-prompts // CORRELATION_PROMPTS))
    for path in (sorted(scored.glob("*.parquet")) if scored.is_dir() else []) or [scored]:
        table = read_parquet(path, SCORED_COLUMNS, columns=CORRELATED)
        counted.update(candidate_reject_counts(table))
        n, t = candidate_tokens(table)
        candidates, tokens = candidates + n, tokens + t
        measured = [c for c in ("prompt_id", "n_words", "valid", *CORRELATED)
                    if c in table.schema.names]  # fmt: skip
        sample.append(table.select(measured).take(np.arange(-seen % step, table.num_rows, step)))
        seen += table.num_rows
    reasons = dict(sorted(counted.items()))
    yields = pair_yield({s: len(p) for s, p in pairs.items()}, drops, reasons, prompts=prompts,
                        quarantined=quarantined, candidates=candidates,
                        generated_tokens=tokens)  # fmt: skip
    correlations = length_correlations(pa.concat_tables(sample).to_pandas())
    report = write_report(out_dir, pairs, drops, reasons, correlations, yields)
    return {
        "candidates_rejected": reasons,
        "length_correlation": {
            r.measure: [r.spearman_rho, r.ci_low, r.ci_high] for r in correlations.itertuples()
        },
        "yield": yields,
        "report": str(report),
    }


def write_report(
    out_dir: Path, pairs: dict[str, pd.DataFrame], drops: dict[str, dict[str, int]],
    candidate_reasons: dict[str, int], correlations: pd.DataFrame, yields: dict,
) -> Path:  # fmt: skip
    """Write selection_report.md with its PNGs into out_dir; returns the Markdown path. `yields`
    is `pair_yield`'s dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(pairs)
    _plot_lengths(pairs, out_dir / "selection_lengths.png")
    _plot_gain_vs_ratio(pairs, out_dir / "selection_gain_vs_length.png")
    reasons = pd.DataFrame(drops).fillna(0).astype(int)
    lines = [
        "# Selection report",
        "",
        "Per strategy: mean words of chosen and rejected answers, the median chosen/rejected",
        "length ratio and the share of pairs whose chosen answer is shorter (the length bias",
        "Diverse-NS removes), and the mean chosen − rejected difference of each measure (for",
        "Maas a negative gain is more diverse; quality is a percentile within the task).",
        "",
        summary.to_markdown(index=False, floatfmt=".3f"),
        "",
        "![chosen vs rejected length](selection_lengths.png)",
        "![diversity gain vs length ratio](selection_gain_vs_length.png)",
        "",
        *_yield_lines(yields),
        "## Length bias of the measures",
        "",
        "Spearman correlation of each measure with length (words) over all valid candidates,",
        "95% interval from a bootstrap over prompts. Negative: the measure favours shorter",
        "answers (for Maas, lower is more diverse, so positive is the bias).",
        "",
        correlations.to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Prompts without a pair, by reason (per strategy)",
        "",
        reasons.to_markdown() if not reasons.empty else "none",
        "",
        "## Candidates rejected before selection, by reason",
        "",
        pd.Series(candidate_reasons, name="candidates").to_markdown()
        if candidate_reasons
        else "none",
        "",
    ]
    path = out_dir / "selection_report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def _plot_lengths(pairs: dict[str, pd.DataFrame], path: Path) -> None:
    cols = min(len(pairs), 4)  # seven strategies in one row are too wide to read
    rows = -(-len(pairs) // cols)
    fig = Figure(figsize=(3.2 * cols, 3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    for ax, (strategy, df) in zip(axes, pairs.items(), strict=False):
        top = max(df.chosen_n_words.max(), df.rejected_n_words.max(), 1) if len(df) else 1
        ax.scatter(df.rejected_n_words, df.chosen_n_words, s=8, alpha=0.6)
        ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
        ax.set(title=strategy, xlabel="rejected words", ylabel="chosen words")
    fig.suptitle("Chosen vs rejected length (dashed: equal length)")
    save_png(fig, path)


def _plot_gain_vs_ratio(pairs: dict[str, pd.DataFrame], path: Path) -> None:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for strategy, df in pairs.items():
        ratio = df.chosen_n_words / df.rejected_n_words.clip(lower=1)
        ax.scatter(np.log2(ratio.clip(lower=1 / 64)), df.margin, s=8, alpha=0.5, label=strategy)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="log2(chosen words / rejected words)", ylabel="selection margin")
    ax.legend(fontsize=7)
    save_png(fig, path)
