"""`diversens plan`: the figures follow from the config by docs/cluster.md's arithmetic, change when
the config does, and the planning table of docs/cluster.md is the command's output."""

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diversens import config, nodes, pilot
from diversens.cli import main
from diversens.jobs.config import PipelineConfig
from diversens.plan import PlanConfig, memory_per_gpu, render, stages, train_plan

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = nodes.read(ROOT / "cluster.yaml")


@pytest.fixture(scope="module")
def paper():
    return config.load(PipelineConfig, ROOT / "configs" / "paper.yaml", None)


def by_name(cfg, cluster=CLUSTER):
    return {s.name: s for s in stages(cfg, cfg.plan, cluster)}


def test_training_arithmetic_of_the_paper_setting(paper):
    # 3,000 pairs, global batch 4 x 2 x 8 = 64 -> 47 steps/epoch, 2 epochs; ~400 tokens/sequence.
    t = train_plan(paper, paper.plan)
    assert t["steps"] == 94 and t["tokens"] == pytest.approx(4.8e6, rel=0.01)
    assert t["flops"] == pytest.approx(3.85e17, rel=0.01)  # 10 N T
    assert t["compute_s"] == pytest.approx(440, rel=0.02)  # 8 A100 at 35% MFU
    assert t["saves"] == 4 and t["save_s"] == pytest.approx(4 * 112.4 / 2, rel=0.01)
    mem = dict(memory_per_gpu(paper, paper.plan))
    assert mem["fp32 master weights + Adam m, v"] == pytest.approx(12.0, rel=0.01)
    assert sum(mem.values()) == pytest.approx(27, abs=1)


def test_stage_arithmetic_and_cost(paper):
    s = by_name(paper)
    # 6,000 x 4 x 250 tokens over 8 engine GPUs at 1,500 tok/s, one final drain of 384 steps of
    # 27 ms, plus 10 min node start-up.
    assert s["sample"].minutes == pytest.approx(6.0e6 / (8 * 1500) / 60 + 384 * 0.027 / 60 + 10)
    # The pools of the first pass are up at once: 8 engines, 4 quality scorers, 1 node of
    # embedders, each on a g5; the scorers alone afterwards.
    assert s["sample"].nodes == {"gpu_1x": 13} and s["score"].nodes == {"gpu_1x": 5}
    assert s["sample"].cost(paper.plan) == pytest.approx(13 * 1.21 * s["sample"].minutes / 60)
    assert s["DPO"].nodes == {"gpu_8x": 1}
    assert s["DPO"].cost(paper.plan) == pytest.approx(32.77 * s["DPO"].minutes / 60)
    # Eval: an engine pool per model run (5), at once, one load and one drain.
    assert s["eval"].nodes == {"gpu_1x": 5}
    assert s["eval"].minutes == pytest.approx(
        4 + 256 * 0.027 / 60 + 5 * 420 * 256 / (5 * 1500) / 60
    )
    assert s["head"].minutes == pytest.approx(sum(x.minutes for n, x in s.items() if n != "head"))
    total = sum(x.cost(paper.plan) for x in s.values())
    assert 33 < total < 41  # docs/cluster.md's ~$37: 3 DPO runs, one after another


def test_a_node_type_at_max_workers_is_priced_as_the_type_the_autoscaler_starts(paper):
    """With gpu_1x capped at 8 nodes, the 4 quality scorers and the embedders of the first pass
    start a p4d (gpu_8x), and the plan prices it at its rate."""
    capped = nodes.Cluster(tuple(dataclasses.replace(t, max_workers=8) if t.name == "gpu_1x"
                                 else t for t in CLUSTER.types), "capped", "head")  # fmt: skip
    sample = by_name(paper, capped)["sample"]
    assert sample.nodes == {"gpu_1x": 8, "gpu_8x": 1}
    assert sample.cost(paper.plan) == pytest.approx((8 * 1.21 + 32.77) * sample.minutes / 60)


def test_a_plan_whose_pools_fit_no_node_type_is_one_line(tmp_path, capsys):
    small = tmp_path / "small.yaml"
    small.write_text("head_node_type: head\navailable_node_types:\n"
                     "  head: {resources: {CPU: 0}}\n"
                     "  gpu_1x: {resources: {CPU: 8, GPU: 1}, max_workers: 8}\n")  # fmt: skip
    paper = str(ROOT / "configs" / "paper.yaml")
    assert main(["plan", "--config", paper, "--cluster", str(small)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lower pairs.scoring.quality_pool.max_actors" in err
    priced = tmp_path / "priced.yaml"  # cluster.yaml with a node type that has no price
    priced.write_text((ROOT / "cluster.yaml").read_text().replace("gpu_1x", "gpu_2x"))
    assert main(["plan", "--config", paper, "--cluster", str(priced)]) == 2
    assert "plan.node_price_per_h: no price for node type 'gpu_2x'" in capsys.readouterr().err


def test_figures_follow_the_config(paper):
    more = dataclasses.replace(paper, pairs=dataclasses.replace(
        paper.pairs, sampling=dataclasses.replace(paper.pairs.sampling, max_actors=16)))  # fmt: skip
    drain = 384 * 0.027 / 60  # one per run, however many engines
    fast = by_name(more)["sample"].minutes - 10 - drain
    assert fast == pytest.approx((by_name(paper)["sample"].minutes - 10 - drain) / 2)
    h100 = dataclasses.replace(paper, plan=dataclasses.replace(paper.plan, gpu_flops=989e12))
    assert train_plan(h100, h100.plan)["compute_s"] == pytest.approx(140, rel=0.02)


def test_readme_table_is_the_commands_output(paper, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the default --cluster is the checkout's cluster.yaml
    assert main(["plan", "--config", "configs/paper.yaml"]) == 0
    printed = capsys.readouterr().out
    assert printed == render(paper, paper.plan, nodes.read("cluster.yaml"))
    table = printed.split("\n\nDPO memory")[0]
    assert table in (ROOT / "docs" / "cluster.md").read_text()
    assert "- mfu: 0.35" in printed  # assumptions are shown with the plan


def test_a_later_round_is_one_more_pass_and_one_dpo_run_and_one_more_eval_model(paper):
    """Round 2 samples with round 1's tuned model, of train.model's shape (here also round 1's
    sampler), so it costs what round 1's sample, score and select cost, plus one DPO run (round
    1 trains its 3 strategies one after another); the eval samples 6 model runs, a pool each,
    instead of 5."""
    assert paper.pairs.sampling.model == paper.train.model
    one, two = by_name(paper), by_name(dataclasses.replace(paper, rounds=2))
    first = ["sample", "score", "select", "DPO"]
    assert list(one) == [*first, "eval", "head"]
    assert list(two) == [*first, *(f"round 2: {n}" for n in first), "eval", "head"]
    for name in first:
        later = two[f"round 2: {name}"]
        assert two[name] == one[name]
        assert (later.gpus, later.nodes) == (one[name].gpus, one[name].nodes)
        if name != "DPO":
            assert later.minutes == one[name].minutes
    start, runs = paper.plan.node_startup_min, len(paper.trained())
    assert runs == 3 and one["DPO"].arithmetic.startswith("3 runs × (")
    run_min = train_plan(paper, paper.plan)["minutes"]
    assert one["DPO"].minutes == pytest.approx(runs * run_min + start)
    assert two["round 2: DPO"].minutes == pytest.approx(run_min + start)
    assert two["round 2: DPO"].arithmetic.startswith("diverse-ns@r2 from diverse-ns on 3,000 pairs")
    assert two["eval"].arithmetic.startswith("6 models") and two["eval"].nodes == {"gpu_1x": 6}
    assert two["eval"].cost(paper.plan) == pytest.approx(6 / 5 * one["eval"].cost(paper.plan))
    added = sum(two[f"round 2: {n}"].minutes for n in first)
    assert two["head"].minutes == pytest.approx(one["head"].minutes + added)
    # One round is today's plan, whatever rounds_mix_pairs says.
    mixed_one = dataclasses.replace(paper, rounds_mix_pairs=True)
    assert render(mixed_one, paper.plan, CLUSTER) == render(paper, paper.plan, CLUSTER)


def test_mixed_pairs_grow_each_rounds_dpo(paper):
    """With rounds_mix_pairs, round r trains on rounds 1..r's pairs: r x 3,000 pairs, ~r times
    round 1's DPO tokens; without, every round's run is round 1's."""
    own = by_name(dataclasses.replace(paper, rounds=3))
    mixed = by_name(dataclasses.replace(paper, rounds=3, rounds_mix_pairs=True))
    tokens = train_plan(paper, paper.plan)["tokens"]
    assert own["round 3: DPO"].minutes == own["round 2: DPO"].minutes
    assert own["DPO"].minutes == mixed["DPO"].minutes
    for r in (2, 3):
        dpo = train_plan(paper, paper.plan, r * 3000)
        assert dpo["tokens"] == pytest.approx(r * tokens, rel=0.01)
        assert mixed[f"round {r}: DPO"].minutes == pytest.approx(dpo["minutes"] + 10)
        assert f"on {r * 3000:,} pairs (rounds 1-{r})" in mixed[f"round {r}: DPO"].arithmetic
    assert mixed["round 3: sample"].minutes == own["round 3: sample"].minutes


def test_bad_assumption_is_refused():
    with pytest.raises(ValueError, match="mfu"):
        PlanConfig(mfu=1.5)
    with pytest.raises(ValueError, match="node_price_per_h"):
        PlanConfig(node_price_per_h={"gpu_1x": -1.0})


def pilot_run(root: Path, complete: bool = True) -> Path:
    """A finished pilot's summaries: 16 prompts, 20,000 tokens in 300 s, 8/12/16 pairs, DPO at
    20 s a step + 40 s; 2 models x 50 eval outputs of 100 tokens (DAT) and 60 (AUT) in 200 s."""
    (root / "eval").mkdir(parents=True)
    yields = {"prompts": 16, "generated_tokens": 20_000, "tokens_per_candidate": 100.0,
              "strategies": {"diverse-ns": {"pairs": 8}, "diverse-no-length": {"pairs": 12},
                             "random": {"pairs": 16}}}  # fmt: skip
    summary = {"complete": complete, "pairs": {"yield": yields},
               "wall_s": {"generate-pairs": 300.0, "train": 500.0, "eval": 200.0}}  # fmt: skip
    (root / "pipeline_summary.json").write_text(json.dumps(summary))
    for strategy in ("diverse-ns", "random"):
        (root / "train" / strategy).mkdir(parents=True)
        phases = {"per_step_s": 20.0 if strategy == "random" else 22.0, "fixed_s": 40.0}
        (root / "train" / strategy / "train_summary.json").write_text(
            json.dumps({"phases_s": phases}))  # fmt: skip
    # Two sampling passes of one label: the base at its map seed and at the eval seed.
    outputs = {"model": ["base"] * 100, "seed": [0, 1] * 50,
               "task": ["dat"] * 50 + ["aut"] * 50, "n_tokens": [100] * 50 + [60] * 50}  # fmt: skip
    pq.write_table(pa.table(outputs), root / "eval" / "outputs.parquet")
    return root


def test_measured_rates_project_the_study(tmp_path, capsys):
    study = config.load(PipelineConfig, ROOT / "configs" / "study.yaml", None)
    rates = pilot.Rates.from_run(pilot_run(tmp_path / "pilot"))
    assert rates.sample_s_per_token == pytest.approx(300 / 20_000)
    assert rates.dpo_s_per_step == pytest.approx(21.0)
    assert rates.eval_tokens_per_output == {"dat": 100, "aut": 60}
    # 8,000 eval tokens at 15 ms = 120 s of the 200: the other 80 s are 2 passes' fixed costs.
    assert rates.eval_fixed_s_per_model == pytest.approx(40)
    rows = {name: minutes for name, _, minutes in pilot.project(study, 400, rates)}
    # 400 x 12 candidates x 100 tokens at 15 ms; N = min(200, 300, 400) pairs -> 50 steps of
    # 4 pairs (2 workers x 2) per strategy; 5 eval passes (the base at its map seed, then the
    # base and 3 tuned at the eval seed), each 100 DAT outputs x 100 tokens and 150 AUT x 60
    # (PGT and CWT unmeasured in this pilot) at 15 ms + 40 s.
    assert (study.eval.map_seeds, study.eval.seeds, study.eval_runs()) == ([0], [1], 5)
    assert rows["generate-pairs"] == pytest.approx(400 * 12 * 100 * 0.015 / 60)
    assert rows["train"] == pytest.approx(3 * (50 * 21 + 40) / 60)
    per_model = (100 * 100 + 150 * 60) * 0.015 + 40
    assert rows["eval"] == pytest.approx(5 * per_model / 60)
    # Two eval seeds and two training seeds: 1 + 2 x (1 + 3 x 2) passes, twice the DPO runs.
    seeds = dataclasses.replace(study, eval=dataclasses.replace(study.eval, seeds=[1, 2]),
                                train_seeds=[0, 1])  # fmt: skip
    more = dict((n, m) for n, _, m in pilot.project(seeds, 400, rates))
    assert more["eval"] == pytest.approx(15 * per_model / 60)
    assert more["train"] == pytest.approx(2 * rows["train"])

    code = main(["plan", "--config", str(ROOT / "configs" / "study.yaml"),
                 "--plan.measured", str(tmp_path / "pilot")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "diverse-ns: 200 pairs, 50 steps" in printed
    assert f"| **total** | | **{sum(rows.values()):.0f}** |" in printed


def test_measured_rates_project_every_round(tmp_path, capsys):
    """Round 2 repeats generate-pairs at the pilot's rates and trains one diverse-ns run (200
    pairs, 50 steps; with rounds_mix_pairs round 3 trains on 600); the eval has 6 passes."""
    study = config.load(PipelineConfig, ROOT / "configs" / "study.yaml", None)
    rates = pilot.Rates.from_run(pilot_run(tmp_path / "pilot"))
    one = {name: minutes for name, _, minutes in pilot.project(study, 400, rates)}
    rows = pilot.project(dataclasses.replace(study, rounds=3, rounds_mix_pairs=True), 400, rates)
    names = [name for name, _, _ in rows]
    assert names == ["generate-pairs", "train", "round 2: generate-pairs", "round 2: train",
                     "round 3: generate-pairs", "round 3: train", "eval"]  # fmt: skip
    got = {name: minutes for name, _, minutes in rows}
    assert got["round 2: generate-pairs"] == got["round 3: generate-pairs"] == one["generate-pairs"]
    assert got["train"] == one["train"]
    assert got["round 2: train"] == pytest.approx((100 * 21 + 40) / 60)  # 400 pairs
    assert got["round 3: train"] == pytest.approx((150 * 21 + 40) / 60)  # 600 pairs
    assert got["eval"] == pytest.approx(7 / 5 * one["eval"])  # 2 tuned models more
    own = pilot.project(dataclasses.replace(study, rounds=2), 400, rates)
    assert own[3][0] == "round 2: train" and own[3][2] == pytest.approx((50 * 21 + 40) / 60)

    code = main(["plan", "--config", str(ROOT / "configs" / "study.yaml"), "--rounds", "2",
                 "--plan.measured", str(tmp_path / "pilot")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "| round 2: train | diverse-ns@r2: 200 pairs, 50 steps" in printed


def test_an_unfinished_pilot_and_a_cpu_gpu_plan_are_one_line(tmp_path, capsys):
    pilot_run(tmp_path / "pilot", complete=False)
    for argv in (["plan", "--config", str(ROOT / "configs" / "tiny.yaml"),
                  "--plan.measured", str(tmp_path / "pilot")],
                 ["plan", "--config", str(ROOT / "configs" / "tiny.yaml")],
                 ["plan", "--plan.measured", str(tmp_path / "nothing-here")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--plan.measured" in err or "run summary" in err


@pytest.mark.parametrize("option", ["select_rows_per_s", "prefill_tokens_per_s", "num_layers"])
def test_every_rate_of_the_plan_must_be_positive(option):
    with pytest.raises(ValueError, match=rf"{option}: must be (> 0|>= 1), got 0"):
        PlanConfig(**{option: 0})


def test_a_later_round_on_fewer_prompts_samples_fewer_tokens(paper):
    """rounds_num_prompts: round 2 samples, scores and selects on that many prompts."""
    full = by_name(dataclasses.replace(paper, rounds=2))
    half = by_name(dataclasses.replace(paper, rounds=2, rounds_num_prompts=3000))
    assert "diverse-ns: 3,000 × 4 × 250 = 3.0e+06 tokens" in half["round 2: sample"].arithmetic
    assert half["round 2: select"].minutes == pytest.approx(full["round 2: select"].minutes / 2)
    assert half["sample"] == full["sample"] and half["round 2: DPO"] == full["round 2: DPO"]
