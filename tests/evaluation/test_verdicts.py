"""Verdicts: each claim decided by its fixed rule from the eval's own rows, checked on untruncated
outputs, and withheld where the null's interval excludes 0."""

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_rounds import write

from diversens.evaluation.verdicts import NO_VERDICT, verdict_table

BASE = "base"


def dd_row(model, task, delta, lo, hi, u=None, measure="ttr") -> dict:
    """A delta_dd.csv row; `u` the untruncated (delta, lo, hi), the same as all outputs if None."""
    du, lu, hu = u or (delta, lo, hi)
    return {"model": model, "task": task, "measure": measure, "delta_dd": delta, "ci_low": lo,
            "ci_high": hi, "delta_untruncated": du, "ci_low_untruncated": lu,
            "ci_high_untruncated": hu}  # fmt: skip


def words_row(model, delta, lo, hi, base_words=100.0, task="all") -> dict:
    return {"model": model, "task": task, "base_words": base_words, "delta_words": delta,
            "ci_low": lo, "ci_high": hi, "delta_untruncated": delta, "ci_low_untruncated": lo,
            "ci_high_untruncated": hi}  # fmt: skip


def verdicts(dd_rows, word_rows=()) -> pd.DataFrame:
    return verdict_table(pd.DataFrame(dd_rows), pd.DataFrame(list(word_rows)), BASE)


def one(table: pd.DataFrame, claim: str, model: str = "dns") -> str:
    (verdict,) = table.loc[(table.claim == claim) & (table.model == model), "verdict"]
    return verdict


NULL = dd_row(BASE, "all", 0.1, -0.5, 0.6)


@pytest.mark.parametrize(
    "mine, expected",
    [
        ((1.5, 0.8, 2.2), "supported"),  # above 0 and above the null's interval
        ((1.0, 0.4, 1.6), "unresolved"),  # above 0, meets the null's interval
        ((-1.0, -1.6, -0.2), "contradicted"),  # below 0
        ((0.2, -0.3, 0.7), "unresolved"),
    ],
)
def test_more_diverse_needs_an_interval_above_0_and_above_the_nulls(mine, expected):
    table = verdicts([NULL, dd_row("dns", "all", *mine)])
    assert one(table, "more diverse") == expected
    row = table.iloc[0]
    assert (row.delta, row.ci_low, row.ci_high) == mine  # the numbers it rests on, as given
    assert (row.versus, row.versus_ci_low, row.versus_ci_high) == (BASE, -0.5, 0.6)


def test_a_verdict_the_untruncated_outputs_do_not_repeat_is_unresolved():
    table = verdicts([NULL, dd_row("dns", "all", 1.5, 0.8, 2.2, u=(0.9, 0.3, 1.5))])
    row = table.iloc[0]
    assert (row.verdict_all, row.verdict_untruncated, row.verdict) == \
        ("supported", "unresolved", "unresolved")  # fmt: skip


def test_no_verdict_where_the_nulls_interval_excludes_0_on_either_outputs():
    for null in (dd_row(BASE, "all", 0.9, 0.2, 1.6),
                 dd_row(BASE, "all", 0.1, -0.5, 0.6, u=(-0.9, -1.5, -0.1))):  # fmt: skip
        table = verdicts([null, dd_row("dns", "all", 3.0, 2.5, 3.5)])
        assert one(table, "more diverse") == NO_VERDICT


def test_each_task_and_measure_is_read_against_the_nulls_own_row():
    rows = [NULL, dd_row(BASE, "aut", 0.0, -2.0, 2.0), dd_row("dns", "all", 1.5, 0.8, 2.2),
            dd_row("dns", "aut", 1.5, 0.8, 2.2),
            dd_row(BASE, "all", 0.0, -0.1, 0.1, measure="dsi"),
            dd_row("dns", "all", 0.5, 0.2, 0.8, measure="dsi")]  # fmt: skip
    table = verdicts(rows).set_index(["task", "measure"])
    assert table.loc[("all", "ttr"), "verdict"] == "supported"
    assert table.loc[("aut", "ttr"), "verdict"] == "unresolved"  # the null's AUT reaches 2.0
    assert table.loc[("all", "dsi"), "verdict"] == "supported"
    assert table.loc[("aut", "ttr"), "versus_ci_high"] == 2.0


@pytest.mark.parametrize(
    "mine, shorter, changed",
    [
        ((30.0, 20.0, 40.0), "supported", "supported"),
        ((2.0, -3.0, 7.0), "supported", "contradicted"),  # within 5% and inside the null's
        ((-4.0, -9.0, 1.0), "unresolved", "unresolved"),  # may be 9% shorter
        ((-20.0, -30.0, -10.0), "contradicted", "supported"),
    ],
)
def test_not_shorter_and_length_changed(mine, shorter, changed):
    table = verdicts([NULL, dd_row("dns", "all", 1, 0.8, 1.2)],
                     [words_row(BASE, 1.0, -4.0, 8.0), words_row("dns", *mine)])  # fmt: skip
    assert one(table, "not shorter") == shorter
    assert one(table, "length changed") == changed
    assert table.loc[table.claim == "not shorter", "bound"].item() == -5.0  # 5% of 100 words
    assert math.isnan(table.loc[table.claim == "length changed", "bound"].item())


def test_a_later_round_is_read_against_the_round_before():
    rows = [NULL, dd_row("dns", "all", 1.0, 0.7, 1.3), dd_row("dns@r2", "all", 2.0, 1.6, 2.4),
            dd_row("dns@r3", "all", 2.1, 1.5, 2.7)]  # fmt: skip
    table = verdicts(rows)
    assert one(table, "round 2 adds to round 1", "dns@r2") == "supported"
    assert one(table, "round 3 adds to round 2", "dns@r3") == "unresolved"
    assert table.loc[table.claim == "round 3 adds to round 2", "versus"].item() == "dns@r2"
    assert len(table[table.claim.str.startswith("round")]) == 2  # no round claim for round 1
    assert verdicts([dd_row("dns", "all", 1.0, 0.7, 1.3)]).empty  # no null, no verdict


interval = st.tuples(st.floats(-5, 5), st.floats(0, 3), st.floats(0, 3)).map(
    lambda t: (t[0], t[0] - t[1], t[0] + t[2]))  # fmt: skip


@given(mine=interval, before=interval)
def test_round_verdicts_swap_when_the_rounds_swap(mine, before):
    def verdict(later, earlier):
        rows = [dd_row(BASE, "all", 0, -0.1, 0.1), dd_row("s", "all", *earlier),
                dd_row("s@r2", "all", *later)]  # fmt: skip
        return one(verdicts(rows), "round 2 adds to round 1", "s@r2")

    swap = {"supported": "contradicted", "contradicted": "supported", "unresolved": "unresolved"}
    assert verdict(mine, before) == swap[verdict(before, mine)]


@given(mine=interval, null=interval)
def test_more_diverse_is_never_supported_by_an_interval_that_meets_0_or_the_nulls(mine, null):
    table = verdicts([dd_row(BASE, "all", *null), dd_row("dns", "all", *mine)])
    verdict = one(table, "more diverse")
    if null[1] > 0 or null[2] < 0:
        assert verdict == NO_VERDICT
    elif verdict == "supported":
        assert mine[1] > 0 and mine[1] > null[2]
    elif verdict == "contradicted":
        assert mine[2] < 0


def test_the_eval_writes_the_verdicts_of_its_own_all_task_rows(tmp_path):
    write(tmp_path / "eval", ["base", "dns", "dns@r2", "dns@s1"])
    out = tmp_path / "eval"
    table, deltas = pd.read_csv(out / "verdicts.csv"), pd.read_csv(out / "delta_dd.csv")
    assert set(table.model) == {"dns", "dns@r2"}  # dns@s1 is a run of dns; the base is the null
    assert set(table.claim) == {"more diverse", "not shorter", "length changed",
                                "round 2 adds to round 1"}  # fmt: skip
    for r in table[table.claim == "more diverse"].itertuples():
        (d,) = deltas[(deltas.model == r.model) & (deltas.task == r.task)
                      & (deltas.measure == r.measure)].itertuples()  # fmt: skip
        assert (r.delta, r.ci_low, r.ci_high) == pytest.approx((d.delta_dd, d.ci_low, d.ci_high))
    report = (out / "eval_report.md").read_text(encoding="utf-8")
    section = report.split("## Verdicts, all tasks weighted equally\n", 1)[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == (table.task == "all").sum()
