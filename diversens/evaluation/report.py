"""Eval report: more diverse? at what cost in length and quality? Markdown tables + PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.decile import DecileMap
from diversens.evaluation.tables import (
    across_sample_table,
    delta_dd_table,
    length_change_table,
    quality_change_table,
    summarise,
)
from diversens.io import atomic_path, save_png

# What write_tables reads of every output, beside the config's ΔDD and across-sample measures.
OUTPUT_COLUMNS = ("model", "task", "source_prompt_id", "response", "valid", "n_words", "quality",
                  "ttr", "dat_score")  # fmt: skip


def _headline(
    deltas: pd.DataFrame, lengths: pd.DataFrame, quality: pd.DataFrame, base: str
) -> list[str]:
    """One sentence per model: ΔDD over all tasks, length and quality change against the base."""
    lines = []
    q = quality[quality.task == "all"].set_index("model")
    for r in lengths[lengths.task == "all"].itertuples():
        d = deltas[(deltas.model == r.model) & (deltas.task == "all")].set_index("measure")
        parts = [f"{m} ΔDD {x.delta_dd:+.2f} [{x.ci_low:+.2f}, {x.ci_high:+.2f}]"
                 for m, x in d.iterrows()]  # fmt: skip
        dq = q.loc[r.model]
        lines.append(f"- **{r.model}** vs {base}: {'; '.join(parts)}; length "
                     f"{r.delta_words:+.1f} words [{r.ci_low:+.1f}, {r.ci_high:+.1f}] "
                     f"({r.relative:+.0%}); quality {dq.delta_quality:+.3f} "
                     f"[{dq.ci_low:+.3f}, {dq.ci_high:+.3f}]")  # fmt: skip
    return lines or ["- only the base model was evaluated"]


def console_lines(result: dict) -> list[str]:
    """The eval's results in a few lines for the end of a run: per tuned model, ΔDD of each
    measure over all tasks and the length change, with 95% intervals (the base's are zero)."""
    lines = [f"ΔDD vs {result['base']}, all tasks [95% CI]; length change in words:"]
    for model, (dw, lo, hi) in result["length_change_all"].items():
        parts = [f"{key.split('/', 1)[1]} {d:+.2f} [{a:+.2f}, {b:+.2f}]"
                 for key, (d, a, b) in result["delta_dd_all"].items()
                 if key.split("/", 1)[0] == model]  # fmt: skip
        lines.append(f"  {model}: {' · '.join(parts)} · length {dw:+.1f} [{lo:+.1f}, {hi:+.1f}]")
    return lines


def write_tables(out_dir: Path, outputs: pd.DataFrame, dmap: DecileMap, cfg: EvalConfig) -> dict:
    """decile_map.csv, eval_summary.csv, delta_dd.csv, length_change.csv, quality_change.csv,
    across_samples.csv and eval_report.md with its PNGs, from the outputs ranked by `dmap`
    (`tables.rank`). The eval job calls it with what it holds and `diversens report` with
    outputs.parquet, so both write the same bytes. Returns the eval summary's entries it
    computed."""
    base = cfg.labelled_models()[0][0]
    summary, deltas = summarise(outputs, cfg.dd_measures), delta_dd_table(outputs, cfg, base)
    lengths = length_change_table(outputs, cfg, base)
    quality = quality_change_table(outputs, cfg, base)
    across = across_sample_table(outputs, cfg, base)
    tables = {"decile_map.csv": dmap.to_frame(), "eval_summary.csv": summary,
              "delta_dd.csv": deltas, "length_change.csv": lengths,
              "quality_change.csv": quality, "across_samples.csv": across}  # fmt: skip
    for name, frame in tables.items():
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
    report = write_eval_report(out_dir, outputs, summary, deltas, (lengths, quality), across, base)
    return {
        "base": base,
        "delta_dd_all": {
            f"{r.model}/{r.measure}": [r.delta_dd, r.ci_low, r.ci_high]
            for r in deltas[deltas.task == "all"].itertuples()
        },
        "length_change_all": {
            r.model: [r.delta_words, r.ci_low, r.ci_high]
            for r in lengths[lengths.task == "all"].itertuples()
        },
        "quality_change_all": {
            r.model: [r.delta_quality, r.ci_low, r.ci_high]
            for r in quality[quality.task == "all"].itertuples()
        },
        "report": str(report),
    }


def write_eval_report(
    out_dir: Path,
    outputs: pd.DataFrame,
    summary: pd.DataFrame,
    deltas: pd.DataFrame,
    changes: tuple[pd.DataFrame, pd.DataFrame],
    across: pd.DataFrame,
    base: str,
) -> Path:
    """eval_report.md and its PNGs; `changes` are the length and the quality change tables."""
    lengths, quality = changes
    _plot_diversity_vs_length(outputs, out_dir / "eval_diversity_vs_length.png")
    _plot_delta_bars(deltas, base, out_dir / "eval_delta_dd.png")
    _plot_decile_hist(outputs, out_dir / "eval_deciles.png")
    _plot_lengths(outputs, out_dir / "eval_lengths.png")
    _plot_delta_vs_length(deltas, lengths, out_dir / "eval_diverse_not_short.png")
    lines = [
        "# Evaluation report",
        "",
        f"Base model: **{base}**. ΔDD = mean Diversity Decile of a model's outputs minus the "
        "base's, each output ranked against base outputs of the same task and length bucket "
        "(positive = more diverse at equal length; 95% interval in brackets, from a bootstrap "
        "over prompts within each task). `coverage` is the share of a model's outputs that got "
        "a decile: every output is ranked at its own length (the nearest populated length "
        "bucket when it is shorter or longer than all base outputs); only outputs without a "
        "finite value of the measure (DSI of a one-segment answer) get none.",
        "",
        *_headline(deltas, lengths, quality, base),
        "",
        "![ΔDD against length change](eval_diverse_not_short.png)",
        "",
        "## Length change against the base (words, 95% interval)",
        "",
        lengths.to_markdown(index=False, floatfmt=".3f") if not lengths.empty else "none",
        "",
        "## Quality change against the base (offline score, 95% interval)",
        "",
        "The mean quality score (fluency under the reference LM unless a reward model is "
        "configured; comparable only within one run) minus the base's, with the same bootstrap "
        "over prompts.",
        "",
        quality.to_markdown(index=False, floatfmt=".3f") if not quality.empty else "none",
        "",
        "## ΔDD per task and measure",
        "",
        deltas.to_markdown(index=False, floatfmt=".3f") if not deltas.empty else "none",
        "",
        "![ΔDD per task](eval_delta_dd.png)",
        "",
        "## Across-sample diversity",
        "",
        "Each prompt's value over all of a model's samples of it (distinct-n: unique n-grams / "
        "all; Vendi: effective number of distinct samples), averaged over the task's prompts "
        "(`all`: over outputs); `delta` against the base, with a 95% interval over prompts (none "
        "for DAT and PGT, one prompt each).",
        "",
        across.to_markdown(index=False, floatfmt=".3f") if not across.empty else "none",
        "",
        "## Per model and task",
        "",
        summary.to_markdown(index=False, floatfmt=".3f"),
        "",
        "![diversity vs length](eval_diversity_vs_length.png)",
        "![decile histograms](eval_deciles.png)",
        "![mean length](eval_lengths.png)",
        "",
        "Decile edges: `decile_map.csv`; every output with its measures: `outputs.parquet`.",
        "",
    ]
    path = out_dir / "eval_report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def _plot_diversity_vs_length(outputs: pd.DataFrame, path: Path) -> None:
    tasks = sorted(outputs.task.unique())
    fig = Figure(figsize=(3.3 * len(tasks), 3.2), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        for model, df in outputs[outputs.task == task].groupby("model", sort=False):
            ax.scatter(df.n_words, df.ttr, s=8, alpha=0.5, label=model)
        ax.set(title=task, xlabel="words", ylabel="TTR")
    axes[0].legend(fontsize=7)
    fig.suptitle("Lexical diversity vs length")
    save_png(fig, path)


def _plot_delta_bars(deltas: pd.DataFrame, base: str, path: Path) -> None:
    d = deltas[deltas.model != base]
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    if not d.empty:
        keys = d.task + "/" + d.measure
        labels = list(dict.fromkeys(keys))
        models = list(dict.fromkeys(d.model))
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            m = d[d.model == model].set_index(keys[d.model == model])
            x = np.arange(len(labels)) + i * width
            y = m.reindex(labels)
            err = np.vstack([y.delta_dd - y.ci_low, y.ci_high - y.delta_dd])
            ax.bar(x, y.delta_dd, width, yerr=err, capsize=2, label=model)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=70, fontsize=7)
        ax.legend(fontsize=7)
    ax.axhline(0, color="grey", lw=1)
    ax.set(ylabel="ΔDD vs base", title="Diversity at equal length (95% CI)")
    save_png(fig, path)


def _plot_decile_hist(outputs: pd.DataFrame, path: Path) -> None:
    cols = [c for c in outputs.columns if c.startswith("decile_")]
    fig = Figure(figsize=(3.2 * max(len(cols), 1), 3), layout="constrained")
    axes = fig.subplots(1, max(len(cols), 1), squeeze=False)[0]
    for ax, col in zip(axes, cols, strict=False):
        for model, df in outputs.groupby("model", sort=False):
            v = df[col].dropna()
            ax.hist(v, bins=np.arange(0.5, 11.5), histtype="step", density=True, label=model)
        ax.set(title=col.removeprefix("decile_"), xlabel="decile")
    axes[0].legend(fontsize=7)
    save_png(fig, path)


def _plot_lengths(outputs: pd.DataFrame, path: Path) -> None:
    means = outputs.groupby(["task", "model"], sort=False).n_words.mean().unstack()
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    means.plot.bar(ax=ax, rot=0)
    ax.set(ylabel="mean words", title="Mean length per model and task")
    save_png(fig, path)


def _plot_delta_vs_length(deltas: pd.DataFrame, lengths: pd.DataFrame, path: Path) -> None:
    """The claim in one picture: per measure, each tuned model's ΔDD (all tasks) against its
    relative length change, both with 95% intervals; "diverse, not short" is the upper right."""
    d = deltas[deltas.task == "all"]
    change = lengths[lengths.task == "all"].set_index("model")
    measures = list(dict.fromkeys(d.measure))
    fig = Figure(figsize=(3.2 * max(len(measures), 1), 3.4), layout="constrained")
    axes = fig.subplots(1, max(len(measures), 1), squeeze=False)[0]
    for ax, measure in zip(axes, measures, strict=False):
        for r in d[(d.measure == measure) & d.model.isin(change.index)].itertuples():
            x = change.loc[r.model]
            xerr = np.array([[x.delta_words - x.ci_low], [x.ci_high - x.delta_words]])
            yerr = np.array([[r.delta_dd - r.ci_low], [r.ci_high - r.delta_dd]])
            ax.errorbar(100 * x.relative, r.delta_dd, xerr=100 * xerr / x.base_words, yerr=yerr,
                        fmt="o", capsize=2, label=r.model)  # fmt: skip
        ax.axhline(0, color="grey", lw=1)
        ax.axvline(0, color="grey", lw=1)
        ax.set(title=measure, xlabel="length change vs base (%)", ylabel="ΔDD")
    if len(change):
        axes[0].legend(fontsize=6)
    fig.suptitle("Diverse, not short? (all tasks, 95% intervals)")
    save_png(fig, path)
