"""The eval across rounds of iterative on-policy DPO: round 0 the base (the null), round 1 a
strategy's label, round k its `@r<k>` label; a "By round" section, plot and summary entry from
the eval's own all-task rows, only where some label has a round."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.report import write_tables
from diversens.evaluation.rounds import rounds
from diversens.evaluation.tables import rank, strategy_of

TASKS = ("aut", "cwt")
WORDS = np.array("sea clock rain dog lamp river stone cloud bread violin".split())


def eval_outputs(labels: list[str], seed: int = 0) -> tuple[pd.DataFrame, object, EvalConfig]:
    """Ranked outputs of the models `labels` (the first the base) as the eval job holds them,
    each later round a little more diverse and longer, with the decile map and the config."""
    cfg = EvalConfig(models=[f"{x}=m{i}" for i, x in enumerate(labels)],
                     dd_measures=["entropy", "ttr"], num_length_buckets=2,
                     min_outputs_per_bucket=3, num_bootstrap=40)  # fmt: skip
    rng = np.random.default_rng(seed)
    keys = [(m, s, t, f"{t}-{p}") for m, _, s in cfg.model_runs() for t in TASKS
            for p in range(4) for _ in range(4)]  # fmt: skip
    out = pd.DataFrame(keys, columns=["model", "seed", "task", "source_prompt_id"])
    n = len(out)
    shift = out.model.map({x: i / 4 for i, x in enumerate(labels)}).to_numpy()
    out["subset"] = 0.0
    out["finish_reason"] = np.where(rng.random(n) < 0.1, "length", "stop")
    out["response"] = [" ".join(rng.choice(WORDS, rng.integers(3, 20))) for _ in range(n)]
    out["valid"] = pd.Series(rng.random(n) > 0.1, dtype=object)
    for m in [*cfg.per_output_measures, *cfg.across_sample_measures, "quality"]:
        out[m] = rng.random(n) + shift
    out["n_words"] = rng.integers(5, 30, n) + 4 * shift
    out["dat_score"] = np.nan
    ranked, dmap = rank(out, cfg)
    return ranked, dmap, cfg


def write(out: Path, labels: list[str]) -> dict:
    outputs, dmap, cfg = eval_outputs(labels)
    out.mkdir()
    return write_tables(out, outputs, dmap, cfg)


@pytest.fixture(scope="module")
def evals(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """One eval with later rounds of dns (labels out of round order; dns@s1 a second training
    run of round 1; divpo trained once) and one without."""
    root = tmp_path_factory.mktemp("rounds")
    runs = {"rounds": ["base", "dns@r3", "divpo", "dns", "dns@r2", "dns@s1"],
            "plain": ["base", "dns", "divpo", "dns@s1"]}  # fmt: skip
    return {name: (root / name, write(root / name, labels)) for name, labels in runs.items()}


def by_round_rows(out: Path) -> list[dict[str, str]]:
    """The rows of the report's "By round" table, {column: cell}."""
    report = (out / "eval_report.md").read_text(encoding="utf-8")
    section = report.split("## By round\n", 1)[1].split("\n## ", 1)[0]
    table = [[c.strip() for c in line.strip("|").split("|")]
             for line in section.splitlines() if line.startswith("|")]  # fmt: skip
    return [dict(zip(table[0], row, strict=True)) for row in table[2:]]


def test_a_training_seed_folds_into_its_round_and_each_round_is_its_own_comparison():
    assert strategy_of("diverse-ns@s1") == "diverse-ns"
    assert strategy_of("diverse-ns@r2") == "diverse-ns@r2"
    assert strategy_of("diverse-ns@r3@s1") == "diverse-ns@r3"


def test_rounds_are_the_base_then_each_iterated_strategy_in_round_order():
    names = ["base", "a", "b", "a@r3", "c@r2", "a@r2"]
    assert rounds(names, "base") == [(0, "", "base"), (1, "a", "a"), (2, "a", "a@r2"),
                                     (2, "c", "c@r2"), (3, "a", "a@r3")]  # fmt: skip
    assert rounds(["base", "a", "b@x", "c@r"], "base") == []


def test_the_section_the_plot_and_the_summary_entry_appear_only_with_round_labels(evals):
    out, summary = evals["rounds"]
    report = (out / "eval_report.md").read_text(encoding="utf-8")
    assert "## By round" in report and "](eval_rounds.png)" in report
    assert (out / "eval_rounds.png").read_bytes().startswith(b"\x89PNG")
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2, 3]
    out, summary = evals["plain"]
    assert "By round" not in (out / "eval_report.md").read_text(encoding="utf-8")
    assert not (out / "eval_rounds.png").exists() and "rounds" not in summary


def test_rows_are_in_round_order_with_the_round_labels(evals):
    out, summary = evals["rounds"]
    expected = [("0", "base (null)"), ("1", "dns"), ("2", "dns@r2"), ("3", "dns@r3")]
    assert [(r["round"], r["model"]) for r in by_round_rows(out)] == expected
    assert [r["model"] for r in summary["rounds"]] == ["base", "dns", "dns@r2", "dns@r3"]


def test_the_figures_are_the_all_task_rows_of_the_eval_tables(evals):
    out, summary = evals["rounds"]
    deltas, lengths, quality = (pd.read_csv(out / f"{name}.csv").query("task == 'all'")
                                for name in ("delta_dd", "length_change", "quality_change"))
    for entry, cells in zip(summary["rounds"], by_round_rows(out), strict=True):
        d = deltas[deltas.model == entry["model"]].set_index("measure")
        assert set(entry["delta_dd"]) == {"entropy", "ttr"}
        for measure, x in d.iterrows():
            assert entry["delta_dd"][measure] == pytest.approx([x.delta_dd, x.ci_low, x.ci_high])
            assert cells[f"ΔDD {measure} [95% CI]"] == \
                f"{x.delta_dd:+.2f} [{x.ci_low:+.2f}, {x.ci_high:+.2f}]"  # fmt: skip
        w = lengths[lengths.model == entry["model"]].iloc[0]
        assert entry["length_change"] == pytest.approx([w.delta_words, w.ci_low, w.ci_high])
        assert entry["relative_length_change"] == pytest.approx(w.relative)
        assert cells["length, words [95% CI]"] == \
            f"{w.delta_words:+.1f} [{w.ci_low:+.1f}, {w.ci_high:+.1f}]"  # fmt: skip
        q = quality[quality.model == entry["model"]].iloc[0]
        assert entry["quality_change"] == pytest.approx([q.delta_quality, q.ci_low, q.ci_high])
        assert cells["quality [95% CI]"] == \
            f"{q.delta_quality:+.3f} [{q.ci_low:+.3f}, {q.ci_high:+.3f}]"  # fmt: skip
    assert deltas.loc[deltas.model == "dns", "runs"].eq(2).all()  # dns@s1 folded into round 1
