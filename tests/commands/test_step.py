"""Steps as specs (diversens.commands.step): one runner takes every Ray command's step from its
checks through the preflight, the claim and Ray to its run and console lines, and `pipeline`
runs the steps `stages` selects, each with its own section's options."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diversens import config
from diversens.cli import main
from diversens.commands import evaluate, generate, generate_pairs, pipeline, train
from diversens.commands import step as runner
from diversens.commands.evaluate import EvalStep
from diversens.commands.generate import GenerateStep
from diversens.commands.generate_pairs import PairsStep
from diversens.commands.options import RunOptions
from diversens.commands.pipeline import PipelineEval, PipelineStep, PipelineTrain, steps
from diversens.commands.step import Needs, Step, run_step
from diversens.commands.train import TrainStep
from diversens.errors import UserError
from diversens.jobs.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


class Fake(Step):
    """A step that records what the runner asks of it, and when."""

    name = "fake"

    def __init__(self, calls: list):
        self.calls = calls

    def check(self):
        self.calls.append("check")

    def needs(self, output):
        self.calls.append("needs")
        return Needs(layout=["result.txt"])

    def verify(self, output):
        self.calls.append("verify")

    def gpus(self):
        return {"fake.gpus": 0.0}

    def pools(self):
        return {"fake": []}

    def fingerprint(self):
        return "fp"

    def run(self, out):
        self.calls.append("run")
        (out.local / "result.txt").write_text("done")
        return {"made": 1}

    def lines(self, summary, output):
        return [f"made {summary['made']} → {output}"]


def fake_ray(calls: list):
    def connect(opts, gpus, log_file, worker_paths, stages, claim):
        calls.append(("ray", claim.command, claim.kind, claim.fingerprint, gpus, stages))

    return connect


def test_the_runner_checks_then_claims_and_joins_ray_then_runs_and_prints(
    tmp_path, monkeypatch, capsys
):
    calls = []
    monkeypatch.setattr(runner, "connect_ray", fake_ray(calls))
    out = tmp_path / "out"
    run_step(Fake(calls), RunOptions(output=str(out)))
    assert calls == ["check", "needs", "verify",
                     ("ray", "fake", "dir", "fp", {"fake.gpus": 0.0}, {"fake": []}), "run"]  # fmt: skip
    assert (out / "result.txt").read_text() == "done"
    assert capsys.readouterr().out == f"made 1 → {out}\n"


def test_the_runner_refuses_a_step_whose_layout_is_taken_before_ray(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "connect_ray", fake_ray(calls))
    (tmp_path / "out" / "result.txt").mkdir(parents=True)
    with pytest.raises(UserError, match=r"result\.txt is a directory, where this run writes"):
        run_step(Fake(calls), RunOptions(output=str(tmp_path / "out")))
    assert calls == ["check", "needs"]  # no Ray, no run


@pytest.fixture
def pairs(tmp_path) -> str:
    rows = [{"prompt": f"Name colour {i}.", "chosen": "teal", "rejected": "red"} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    return str(tmp_path / "pairs.parquet")


@pytest.mark.parametrize(
    "command, module, args, kind",
    [
        ("generate", generate, ["--prompts.split", "train", "-o", "{t}/c.parquet"], GenerateStep),
        ("generate-pairs", generate_pairs, ["-o", "{t}/o"], PairsStep),
        ("train", train, ["{pairs}", "-o", "{t}/o"], TrainStep),
        ("eval", evaluate, ["-o", "{t}/o"], EvalStep),
        ("pipeline", pipeline, ["-o", "{t}/o"], PipelineStep),
    ],
)
def test_every_ray_command_runs_its_step_through_the_runner(
    command, module, args, kind, tmp_path, pairs, monkeypatch, capsys
):
    """Each command hands its step to `run_step`, which checks it all before it joins Ray:
    stopped there, the command's step and claim are what reached it."""
    reached = []

    def stop(step, opts):
        reached.append(step)
        return real(step, opts)

    def no_ray(opts, gpus, log_file, worker_paths, stages, claim):
        raise UserError(f"reached Ray as {claim.command}")

    real = runner.run_step
    monkeypatch.setattr(runner, "connect_ray", no_ray)
    monkeypatch.setattr(module, "run_step", stop)
    argv = [command, "--config", TINY, *(a.format(t=tmp_path, pairs=pairs) for a in args)]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"diversens {command}: error: reached Ray as {command}\n"
    assert [type(s) for s in reached] == [kind]


@pytest.mark.parametrize(
    "stages, kinds, prefixes",
    [
        (["generate-pairs", "train", "eval"], [PairsStep, PipelineTrain, PipelineEval],
         {"pairs.", "train.", "eval."}),
        (["eval", "train"], [PipelineTrain, PipelineEval], {"train.", "eval."}),
        (["generate-pairs"], [PairsStep], {"pairs."}),
        (["eval"], [PipelineEval], {"eval."}),
    ],
)  # fmt: skip
def test_the_pipeline_runs_the_steps_its_stages_select(stages, kinds, prefixes):
    """In the order they run, each naming its options with its section's prefix; the
    pipeline's pools, GPUs and layout are theirs and no others'."""
    cfg = config.load(PipelineConfig, TINY, {"stages": stages})
    assert [type(s) for s in steps(cfg)] == kinds
    whole = PipelineStep(cfg)
    gpus = whole.gpus()
    assert gpus and {option.split(".")[0] + "." for option in gpus} == prefixes
    pools = {"generate-pairs", "train", "eval sampling", "eval scoring"}
    wanted = {"generate-pairs"} & set(stages) | {"train"} & set(stages)
    wanted |= {"eval sampling", "eval scoring"} if "eval" in stages else set()
    assert set(whole.pools()) == wanted <= pools
    tops = {p.split("/")[0] for p in whole.needs("out").layout} - {"pipeline_summary.json"}
    assert tops <= {"pairs", "train", "eval", "checkpoints"}
    assert ("pairs" in tops) == ("generate-pairs" in stages)
    assert ("eval" in tops) == ("eval" in stages)
    assert ("train" in tops) == ("train" in stages)


def test_later_rounds_are_round_1s_steps_at_their_own_paths(tmp_path):
    """Round r's steps are round 1's with round r-1's model: their paths are under
    OUT/round-<r>/ and their checkpoints `dpo-<strategy>@r<r>`; the models they are made from do
    not exist before the run, so only round 1's models are checked before Ray."""
    cfg = config.load(PipelineConfig, TINY, {"rounds": 3, "rounds_strategy": "diverse-ns"})
    out = str(tmp_path / "out")
    needs = PipelineStep(cfg).needs(out)
    for r in (2, 3):
        assert f"round-{r}/pairs/pairs.parquet" in needs.layout
        assert f"round-{r}/train/diverse-ns/model/" in needs.layout
        assert f"checkpoints/dpo-diverse-ns@r{r}/" in needs.layout
        assert not any(p.startswith(f"round-{r}/train/diverse-no-length") for p in needs.layout)
    assert set(needs.models) <= {cfg.pairs.sampling.model, cfg.train.model,
                                 *cfg.pairs.scoring.models(True), *cfg.eval.scoring.models()}  # fmt: skip
    later = PipelineStep(cfg).later_rounds(out)
    assert [type(s) for s in later] == [PairsStep, PipelineTrain] * 2
    assert later[0].cfg.sampling.model == str(tmp_path / "out" / "train" / "diverse-ns" / "model")
    assert later[3].cfg.model == str(tmp_path / "out" / "round-2" / "train" / "diverse-ns" / "model")


def test_a_later_round_samples_and_trains_only_rounds_strategy_from_the_model_given():
    cfg = config.load(PipelineConfig, TINY, {"rounds": 2, "rounds_strategy": "diverse-no-length",
                                             "train_seeds": [3, 4]})  # fmt: skip
    later = cfg.for_round(2, "/m")
    assert later.pairs.sampling.model == later.train.model == "/m"
    assert later.train_strategies == ["diverse-no-length"] and later.train_seeds == [3]
    assert later.pairs.selection == cfg.pairs.selection and later.eval == cfg.eval
    assert later.pairs.sampling.seed == cfg.pairs.sampling.seed
    assert cfg.round_labels() == [(2, "diverse-no-length@r2")]
    assert cfg.eval_runs() == cfg.eval.num_runs(len(cfg.trained()) + 1)


def test_rounds_strategy_must_be_trained():
    with pytest.raises(config.ConfigError, match="option rounds_strategy: 'random' is not in "):
        config.load(PipelineConfig, TINY, {"rounds": 2, "rounds_strategy": "random"})
    config.load(PipelineConfig, TINY, {"rounds": 1, "rounds_strategy": "random"})  # unused
