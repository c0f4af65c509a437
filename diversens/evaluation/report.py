"""Eval report: more diverse? at what cost in length and quality? Markdown tables + PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diversens.evaluation.bootstrap import ALL
from diversens.evaluation.config import EvalConfig
from diversens.evaluation.decile import DecileMap
from diversens.evaluation.rounds import rounds_summary, rounds_table
from diversens.evaluation.tables import (
    across_sample_table,
    delta_dd_table,
    length_change_table,
    quality_change_table,
    summarise,
    truncation_table,
)
from diversens.evaluation.verdicts import verdict_table
from diversens.io import atomic_path, save_png

# What write_tables reads of every output, beside the config's ΔDD and across-sample measures.
OUTPUT_COLUMNS = ("model", "seed", "task", "source_prompt_id", "response", "finish_reason",
                  "valid", "n_words", "quality", "ttr", "dat_score", "subset")  # fmt: skip
WEIGHTS = "equal: every task weighs 1/T in each 'all' figure, whatever its number of outputs"


def _interval(row, lo: str = "ci_low", hi: str = "ci_high", fmt: str = "+.2f") -> str:
    return f"[{getattr(row, lo):{fmt}}, {getattr(row, hi):{fmt}}]"


def _headline(deltas, lengths, quality, cfg: EvalConfig) -> list[str]:
    """One line per comparison over all tasks (equal weights), the null (the base) first:
    ΔDD per measure, length and quality change, each with its 95% interval."""
    lines = []
    q = quality[quality.task == ALL].set_index("model")
    for r in lengths[lengths.task == ALL].itertuples():
        d = deltas[(deltas.model == r.model) & (deltas.task == ALL)].set_index("measure")
        parts = [f"{m} ΔDD {x.delta_dd:+.2f} {_interval(x)}" for m, x in d.iterrows()]
        dq = q.loc[r.model]
        who = f"**{r.model}** (the null: the base again)" if r.model == cfg.base else \
            f"**{r.model}**"  # fmt: skip
        lines.append(f"- {who}: {'; '.join(parts)}; length {r.delta_words:+.1f} words "
                     f"{_interval(r, fmt='+.1f')} ({r.relative:+.0%}); quality "
                     f"{dq.delta_quality:+.3f} {_interval(dq, fmt='+.3f')}")  # fmt: skip
    return lines or ["- no model was sampled at the eval seeds"]


def console_lines(result: dict) -> list[str]:
    """The eval's results in a few lines for the end of a run: per comparison (the base's is
    the null), ΔDD of each measure over all tasks and the length change, with 95% intervals."""
    lines = [f"ΔDD vs the reference ({result['base']} at its map seeds), all tasks weighted "
             "equally [95% CI]; length change in words:"]  # fmt: skip
    for model, (dw, lo, hi) in result["length_change_all"].items():
        parts = [f"{key.split('/', 1)[1]} {d:+.2f} [{a:+.2f}, {b:+.2f}]"
                 for key, (d, a, b) in result["delta_dd_all"].items()
                 if key.split("/", 1)[0] == model]  # fmt: skip
        null = " (null)" if model == result["base"] else ""
        lines.append(f"  {model}{null}: {' · '.join(parts)} · length {dw:+.1f} [{lo:+.1f}, "
                     f"{hi:+.1f}]")  # fmt: skip
    return lines


def write_tables(out_dir: Path, outputs: pd.DataFrame, dmap: DecileMap, cfg: EvalConfig) -> dict:
    """decile_map.csv, length_buckets.csv, eval_summary.csv, truncation.csv, delta_dd.csv,
    length_change.csv, quality_change.csv, across_samples.csv, verdicts.csv and eval_report.md
    with its PNGs, from the outputs ranked by `dmap` (`tables.rank`). The eval job calls it
    with what it holds and `diversens report` with outputs.parquet, so both write the same
    bytes. Returns the eval summary's entries it computed."""
    summary, deltas = summarise(outputs, cfg.dd_measures), delta_dd_table(outputs, cfg)
    lengths = length_change_table(outputs, cfg)
    quality = quality_change_table(outputs, cfg)
    tables = {"decile_map.csv": dmap.to_frame(), "length_buckets.csv": dmap.buckets_frame(),
              "eval_summary.csv": summary, "truncation.csv": truncation_table(outputs),
              "delta_dd.csv": deltas, "length_change.csv": lengths,
              "quality_change.csv": quality,
              "across_samples.csv": across_sample_table(outputs, cfg, lengths),
              "verdicts.csv": verdict_table(deltas, lengths, cfg.base)}  # fmt: skip
    for name, frame in tables.items():
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
    rounds = rounds_table(deltas, lengths, quality, cfg.base)
    report = write_eval_report(out_dir, outputs, tables, cfg, rounds)

    def all_tasks(frame, column, key=lambda r: r.model):
        rows = frame[frame.task == ALL] if not frame.empty else frame
        return {key(r): [getattr(r, column), r.ci_low, r.ci_high] for r in rows.itertuples()}

    tasks = sorted(outputs.task.unique())
    return {
        "base": cfg.base,
        "task_weights": {"rule": WEIGHTS, "weights": {t: 1 / len(tasks) for t in tasks}},
        "delta_dd_all": all_tasks(deltas, "delta_dd", lambda r: f"{r.model}/{r.measure}"),
        "length_change_all": all_tasks(lengths, "delta_words"),
        "quality_change_all": all_tasks(quality, "delta_quality"),
        **({"rounds": rounds_summary(rounds)} if not rounds.empty else {}),
        "report": str(report),
    }


def _markdown(frame: pd.DataFrame) -> str:
    """A table for the report: intervals as "[lo, hi]" strings, training-run columns only
    where some comparison has several runs."""
    if frame.empty:
        return "none"
    df = frame.copy()
    for suffix in ("", "_untruncated"):
        lo, hi = f"ci_low{suffix}", f"ci_high{suffix}"
        if lo in df:
            at = df.columns.get_loc(lo)
            ci = [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(df.pop(lo), df.pop(hi), strict=True)]
            df.insert(at, f"95% CI{suffix}", ci)
    if "runs" in df and (df.runs <= 1).all():
        df = df.drop(columns=["runs", "run_sd"])
    return df.to_markdown(index=False, floatfmt=".3f")


def _by_task(frame: pd.DataFrame, every: bool) -> pd.DataFrame:
    """The per-task rows (every=False) or the rows over all tasks (every=True)."""
    if frame.empty:
        return frame
    return frame[(frame.task == ALL) == every]


def _notes(outputs: pd.DataFrame, buckets: pd.DataFrame, cfg: EvalConfig) -> list[str]:
    """What a reader must know to trust the comparisons of this run."""
    notes = []
    same = sorted(set(outputs.loc[(outputs.model != cfg.base) & outputs.seed.isin(cfg.map_seeds),
                                  "model"]))  # fmt: skip
    if same:
        notes.append(f"- **Not like-for-like**: {', '.join(same)} sampled at the reference's "
                     f"seed(s) {cfg.map_seeds} (a run from before eval seeds): same per-request "
                     "seeds as the reference, so its intervals are narrower than the null's "
                     "and the null (the base at other seeds) is not its counterpart.")  # fmt: skip
    single = buckets[buckets.buckets < 2].task.tolist()
    if single:
        notes.append(f"- **No length control in {', '.join(single)}**: too few reference "
                     "outputs (or lengths too tied) to fill two length buckets of "
                     f"{cfg.min_outputs_per_bucket}; ΔDD there is raw diversity.")  # fmt: skip
    return notes


def _few_seeds(cfg: EvalConfig) -> str:
    """A caveat where a side has fewer than three seeds: on null data, Vendi's intervals then
    excluded 0 more often than the target (benchmarks/results/coverage.md)."""
    if min(len(cfg.seeds), len(cfg.map_seeds)) >= 3:
        return ""
    return (" With fewer than three sampling seeds a side these intervals are not proven: on "
            "null data (benchmarks/results/coverage.md), one seed a side gave Vendi more false "
            "exclusions than the 10% target; three a side met it.")  # fmt: skip


def _verdicts(verdicts: pd.DataFrame) -> list[str]:
    """The "Verdicts" section: each claim over all tasks as verdicts.csv decides it (the rules
    of diversens/evaluation/verdicts.py); verdicts.csv has every task's too."""
    rows = verdicts[verdicts.task == ALL]
    if rows.empty:
        return []
    table = pd.DataFrame({
        "claim": rows.claim, "model": rows.model, "measure": rows.measure,
        "estimate [95% CI]": [f"{r.delta:+.2f} {_interval(r)}" for r in rows.itertuples()],
        "read against [95% CI]": [f"{r.versus} {r.versus_delta:+.2f} "
                                  f"{_interval(r, 'versus_ci_low', 'versus_ci_high')}"
                                  for r in rows.itertuples()],
        "bound": [f"{b:+.1f}" if pd.notna(b) else "" for b in rows.bound],
        "all outputs": rows.verdict_all, "untruncated": rows.verdict_untruncated,
        "verdict": rows.verdict})  # fmt: skip
    return [
        "## Verdicts, all tasks weighted equally",
        "",
        "Decided by fixed rules from the tables below (`verdicts.csv`, per task too; "
        "diversens/evaluation/verdicts.py): *more diverse*, ΔDD's interval above 0 and above "
        "the null's (contradicted: below 0); *not shorter*, the length change's interval above "
        "`bound`, −5% of the reference's mean words (contradicted: below 0); *length changed*, "
        "its interval excludes 0 and does not meet the null's (contradicted: inside the "
        "null's); *round k adds to round k−1*, each estimate outside the other's interval, "
        "round k's higher (contradicted: the reverse). Decided on all outputs and checked on "
        "the untruncated ones: where they differ, unresolved. Where the null's interval "
        "excludes 0, no verdict.",
        "",
        table.to_markdown(index=False),
        "",
    ]


def _by_round(rounds: pd.DataFrame, out_dir: Path) -> list[str]:
    """The "By round" section and its plot, where the eval has `@r<k>` labels (`rounds_table`):
    one row per round with its all-task figures (the same as in the rows below)."""
    if rounds.empty:
        return []
    _plot_rounds(rounds, out_dir / "eval_rounds.png")
    rows = []
    for (k, model), d in rounds.groupby(["round", "model"], sort=False):
        r = d.iloc[0]
        rows.append({"round": k, "model": f"{model} (null)" if k == 0 else model,
                     **{f"ΔDD {m.measure} [95% CI]": f"{m.delta_dd:+.2f} {_interval(m)}"
                        for m in d.dropna(subset=["measure"]).itertuples()},
                     "length, words [95% CI]": f"{r.delta_words:+.1f} "
                     f"{_interval(r, 'words_ci_low', 'words_ci_high', '+.1f')}",
                     "length, relative": f"{r.relative:+.0%}",
                     "quality [95% CI]": f"{r.delta_quality:+.3f} "
                     f"{_interval(r, 'quality_ci_low', 'quality_ci_high', '+.3f')}"})  # fmt: skip
    return [
        "## By round",
        "",
        "Iterative on-policy DPO (`pipeline.rounds`): round 0 is the base (the null), round 1 "
        "a strategy's first tuned model, round k its `@r<k>` model. Each round is compared "
        "with the reference on its own; all tasks weighted equally, as in the rows below.",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
        "![ΔDD and length change by round](eval_rounds.png)",
        "",
    ]


def write_eval_report(
    out_dir: Path,
    outputs: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    cfg: EvalConfig,
    rounds: pd.DataFrame,
) -> Path:
    """eval_report.md and its PNGs, from write_tables' tables and `rounds_table`."""
    deltas, lengths = tables["delta_dd.csv"], tables["length_change.csv"]
    quality, across = tables["quality_change.csv"], tables["across_samples.csv"]
    _plot_diversity_vs_length(outputs, out_dir / "eval_diversity_vs_length.png")
    _plot_delta_bars(deltas, cfg.base, out_dir / "eval_delta_dd.png")
    _plot_decile_hist(outputs, out_dir / "eval_deciles.png")
    _plot_lengths(outputs, out_dir / "eval_lengths.png")
    _plot_delta_vs_length(deltas, lengths, cfg.base, out_dir / "eval_diverse_not_short.png")
    ci_note = ("`95% CI_untruncated`/`*_untruncated`: the same comparison on the outputs that "
               "did not hit their token cap, on both sides.")  # fmt: skip
    lines = [
        "# Evaluation report",
        "",
        f"Reference: **{cfg.base}** at sampling seed(s) {cfg.map_seeds}; the decile map is "
        f"fitted on it. Every model, {cfg.base} included, is sampled at the eval seed(s) "
        f"{cfg.seeds} and compared with the reference by the same procedure, so "
        f"**{cfg.base}'s own row is the null**: what sampling again alone gives; read every "
        "tuned model against it. ΔDD = mean Diversity Decile of a model's outputs minus the "
        "reference's, each output ranked among reference outputs of the same task and length "
        "bucket (positive = more diverse at equal length). Intervals are 95% bootstrap "
        "intervals over training runs, sampling seeds, prompts and outputs within prompts "
        '(diversens/evaluation/bootstrap.py). Per task first; the "all" rows weight the '
        f"tasks equally ({WEIGHTS}).",
        "",
        *_notes(outputs, tables["length_buckets.csv"], cfg),
        "",
        "## All tasks, weighted equally",
        "",
        *_headline(deltas, lengths, quality, cfg),
        "",
        "![ΔDD against length change](eval_diverse_not_short.png)",
        "",
        *_verdicts(tables["verdicts.csv"]),
        *_by_round(rounds, out_dir),
        "## Length buckets per task (reference outputs)",
        "",
        tables["length_buckets.csv"].to_markdown(index=False),
        "",
        "## ΔDD per task and measure",
        "",
        ci_note + " `coverage`: the share of the model's outputs with a decile (no finite "
        "value of the measure: none, such as DSI of a one-segment answer).",
        "",
        _markdown(_by_task(deltas, False)),
        "",
        "![ΔDD per task](eval_delta_dd.png)",
        "",
        "## Length change per task (words)",
        "",
        _markdown(_by_task(lengths, False)),
        "",
        "## Quality change per task (offline score)",
        "",
        "The mean quality score (fluency under the reference LM unless a reward model is "
        "configured; comparable only within one run) minus the reference's.",
        "",
        _markdown(_by_task(quality, False)),
        "",
        "## Truncated outputs",
        "",
        "The share of each model's outputs per task that hit the token cap: their length is a "
        "lower bound and their diversity that of a cut text.",
        "",
        _markdown(tables["truncation.csv"]),
        "",
        "## Across-sample diversity, per task",
        "",
        f"Distinct-n and Vendi over disjoint subsets of {cfg.across_sample_size} samples of a "
        "prompt (`samples_per_subset`; the mean over a prompt's subsets), so a task of 100 "
        "samples and one of 10 are measured alike; no row pools tasks. **Not length-"
        "controlled**: longer answers change them by themselves, so read each beside the "
        "model's length change (`delta_words`)." + _few_seeds(cfg),
        "",
        _markdown(across),
        "",
        "## All-task rows (equal weights)",
        "",
        _markdown(
            pd.concat(
                [_by_task(deltas, True), _by_task(lengths, True), _by_task(quality, True)],
                ignore_index=True,
            )
        ),  # fmt: skip
        "",
        "## Per model, seed and task",
        "",
        tables["eval_summary.csv"].to_markdown(index=False, floatfmt=".3f"),
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


def _plot_delta_bars(d: pd.DataFrame, base: str, path: Path) -> None:
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
            name = f"{model} (null)" if model == base else model
            ax.bar(x, y.delta_dd, width, yerr=err, capsize=2, label=name)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=70, fontsize=7)
        ax.legend(fontsize=7)
    ax.axhline(0, color="grey", lw=1)
    ax.set(ylabel="ΔDD vs reference", title="Diversity at equal length (95% CI)")
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


def _plot_delta_vs_length(
    deltas: pd.DataFrame, lengths: pd.DataFrame, base: str, path: Path
) -> None:
    """The claim in one picture: per measure, each model's ΔDD (all tasks, equal weights)
    against its relative length change, both with 95% intervals, the null (the base) in grey;
    "diverse, not short" is the upper right, outside the null's bars."""
    if deltas.empty or lengths.empty:
        deltas = lengths = pd.DataFrame(columns=["model", "task", "measure"])
    d = deltas[deltas.task == ALL]
    change = lengths[lengths.task == ALL].set_index("model")
    measures = list(dict.fromkeys(d.measure))
    fig = Figure(figsize=(3.2 * max(len(measures), 1), 3.4), layout="constrained")
    axes = fig.subplots(1, max(len(measures), 1), squeeze=False)[0]
    for ax, measure in zip(axes, measures, strict=False):
        for r in d[(d.measure == measure) & d.model.isin(change.index)].itertuples():
            x = change.loc[r.model]
            xerr = np.array([[x.delta_words - x.ci_low], [x.ci_high - x.delta_words]])
            yerr = np.array([[r.delta_dd - r.ci_low], [r.ci_high - r.delta_dd]])
            ax.errorbar(100 * x.relative, r.delta_dd, xerr=100 * xerr / x.base_words, yerr=yerr,
                        fmt="o", capsize=2, label=f"{r.model} (null)" if r.model == base else
                        r.model, color="grey" if r.model == base else None)  # fmt: skip
        ax.axhline(0, color="grey", lw=1)
        ax.axvline(0, color="grey", lw=1)
        ax.set(title=measure, xlabel="length change vs base (%)", ylabel="ΔDD")
    if len(change):
        axes[0].legend(fontsize=6)
    fig.suptitle("Diverse, not short? (all tasks weighted equally, 95% intervals)")
    save_png(fig, path)


def _plot_rounds(rounds: pd.DataFrame, path: Path) -> None:
    """ΔDD (per measure) and length change by round, all tasks weighted equally, with 95%
    intervals; each strategy's series starts at the base (round 0)."""
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax_dd, ax_len = fig.subplots(1, 2)
    strategies = [s for s in dict.fromkeys(rounds.strategy) if s]
    series = [(s, m) for s in strategies for m in dict.fromkeys(rounds.measure.dropna())]
    for i, (strategy, measure) in enumerate(series):
        d = rounds[((rounds.strategy == strategy) | (rounds["round"] == 0))
                   & (rounds.measure == measure)]  # fmt: skip
        x = d["round"] + 0.08 * (i - (len(series) - 1) / 2)  # side by side, not on top
        label = measure if len(strategies) == 1 else f"{strategy} {measure}"
        ax_dd.errorbar(x, d.delta_dd, yerr=[d.delta_dd - d.ci_low, d.ci_high - d.delta_dd],
                       fmt="o-", lw=1, capsize=2, label=label)  # fmt: skip
    for i, strategy in enumerate(strategies):
        d = rounds[(rounds.strategy == strategy) | (rounds["round"] == 0)].drop_duplicates("round")
        x = d["round"] + 0.08 * (i - (len(strategies) - 1) / 2)
        ax_len.errorbar(x, d.delta_words, yerr=[d.delta_words - d.words_ci_low,
                        d.words_ci_high - d.delta_words], fmt="o-", lw=1, capsize=2,
                        label=strategy)  # fmt: skip
    for ax, title, ylabel in ((ax_dd, "Diversity at equal length", "ΔDD vs reference"),
                              (ax_len, "Length change", "length change (words)")):  # fmt: skip
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xticks(range(int(rounds["round"].max()) + 1))
        ax.set(title=title, xlabel="round (0 = base, the null)", ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.suptitle("By round (all tasks weighted equally, 95% intervals)")
    save_png(fig, path)
