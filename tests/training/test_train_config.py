"""Unit tests of the training pieces that run without Ray: config, pairs checks, DeepSpeed
configs, logs, export, and the CLI failing on a bad pairs file before Ray starts."""

import dataclasses
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from train_fixtures import pair_rows

from diversens import config
from diversens.cli import build_parser, main
from diversens.errors import UserError
from diversens.training.config import TrainConfig
from diversens.training.export import export_model
from diversens.training.logs import phase_seconds, write_logs
from diversens.training.pairs_input import read_pairs
from diversens.training.trainer import deepspeed_config


def test_defaults_are_documented_and_valid():
    cfg = TrainConfig()
    assert (cfg.beta, cfg.learning_rate, cfg.deepspeed, cfg.max_length) == (
        0.1,
        5e-7,
        "zero3",
        1024,
    )
    assert not cfg.use_bf16 and not cfg.use_gradient_checkpointing  # CPU defaults
    assert TrainConfig(use_gpu=True).use_bf16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deepspeed": "zero1"},
        {"dpo_args": {"learning_rate": 1e-5}},  # an option of its own
        {"dpo_args": {"save_strategy": "epoch"}},  # Ray Train's checkpoints depend on it
        {"beta": 0},
        {"num_workers": 0},
        {"name": "a/b"},
        {"placement_strategy": "pack"},
        {"accelerator_type": "A100"},
    ],  # the last: no use_gpu
)
def test_bad_values_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_cli_options_fill_the_config(tmp_path):
    args = build_parser().parse_args(
        ["train", "p.parquet", "-o", str(tmp_path), "--lora", "true", "--dpo_args",
         "ld_alpha=0.5,report_to=tensorboard,precompute_ref_log_probs=true",
         "--lora_target_modules", "q_proj,v_proj", "--deepspeed", "none"]
    )  # fmt: skip
    cfg = config.load(TrainConfig, None, config.overrides_from_args(args))
    assert cfg.lora and cfg.deepspeed == "none"
    assert cfg.dpo_args == {"ld_alpha": 0.5, "report_to": "tensorboard",
                            "precompute_ref_log_probs": True}  # fmt: skip
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]


def test_dpo_args_go_over_the_options():
    from diversens.training.loop import _dpo_args

    args = _dpo_args(TrainConfig(dpo_args={"warmup_steps": 10, "weight_decay": 0.01}))
    assert args["warmup_steps"] == 10 and args["weight_decay"] == 0.01  # over warmup_ratio
    assert args["report_to"] == "none" and args["learning_rate"] == 5e-7


def test_unknown_dpo_args_key_fails_in_one_line_before_ray_starts(
    pairs_file, tmp_path, monkeypatch, capsys
):
    import diversens.commands.step as runner

    monkeypatch.setattr(runner, "connect_ray", lambda *a, **k: pytest.fail("Ray started"))
    argv = ["train", str(pairs_file), "-o", str(tmp_path / "out"), "--dpo_args",
            "loss_type=ipo,rpo_alpha=0.5"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(r"diversens train: error: option dpo_args\.rpo_alpha: not a field of "
                        r"TRL [\d.]+'s DPOConfig.*\n", err)  # fmt: skip


def test_shipped_deepspeed_configs():
    assert deepspeed_config("zero3")["zero_optimization"]["stage"] == 3
    assert deepspeed_config("zero3")["zero_optimization"][
        "stage3_gather_16bit_weights_on_model_save"
    ]
    assert deepspeed_config("zero2")["zero_optimization"]["stage"] == 2
    assert deepspeed_config("none") is None


def test_read_pairs_accepts_generate_pairs_rows(pairs_file):
    table = read_pairs(pairs_file)
    assert table.column_names == ["prompt", "chosen", "rejected"] and table.num_rows == 8


def test_read_pairs_accepts_plain_strings(tmp_path):
    path = tmp_path / "p.jsonl"
    pd.DataFrame([{"prompt": "hi", "chosen": "a b c", "rejected": "a a a"}]).to_json(
        path, orient="records", lines=True
    )
    assert read_pairs(path).num_rows == 1


@pytest.mark.parametrize(
    "mixed",
    [{"chosen": "Teal.", "rejected": "Red."},  # a conversational prompt, plain answers
     {"prompt": "Name a colour."},  # a plain prompt, conversational answers
     {"chosen": "Teal."}],  # one answer of each format
    ids=["plain answers", "plain prompt", "one plain answer"],
)  # fmt: skip
def test_pairs_of_mixed_formats_are_made_conversational(tmp_path, mixed):
    """TRL joins a prompt and its answer (`prompt + chosen`): a list and a string fail in the
    workers with TypeError. A plain string becomes one message, its text as given."""
    from trl.data_utils import is_conversational

    conversational = {
        "prompt": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": "Teal."}],
        "rejected": [{"role": "assistant", "content": "Red."}],
    }  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({**conversational, **mixed}) + "\n")
    (row,) = read_pairs(path).to_pylist()
    expected = {**conversational, "prompt": [{"role": "user", "content": "Name a colour."}]}
    assert row == {k: (expected if k in mixed else conversational)[k] for k in row}
    for key in row:  # what TRL looks at to pick the conversational path
        assert is_conversational({key: row[key]})
    assert row["prompt"] + row["chosen"]  # the join the workers make


def _write(tmp_path, rows, name="bad.parquet"):
    path = tmp_path / name
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_missing_chosen_names_file_and_field(tmp_path):
    path = _write(tmp_path, [{k: v for k, v in r.items() if k != "chosen"} for r in pair_rows(2)])
    with pytest.raises(UserError, match=r"bad\.parquet: no field 'chosen'"):
        read_pairs(path)


def test_wrong_type_empty_file_and_empty_value(tmp_path):
    rows = pair_rows(3)
    with pytest.raises(UserError, match="field 'rejected' has type int64"):
        read_pairs(_write(tmp_path, [{**r, "rejected": 1} for r in rows]))
    with pytest.raises(UserError, match=r"no pairs \(0 rows\)"):
        read_pairs(_write(tmp_path, pd.DataFrame(rows).iloc[:0]))
    rows[1]["chosen"] = []
    with pytest.raises(UserError, match="row 2: field 'chosen' is empty"):
        read_pairs(_write(tmp_path, rows))


def test_cli_bad_pairs_fails_before_ray_starts(tmp_path, monkeypatch, capsys):
    import diversens.commands.step as runner

    def no_ray(address):
        raise AssertionError("Ray must not start for a bad pairs file")

    monkeypatch.setattr(runner, "connect_ray", no_ray)
    path = _write(tmp_path, [{k: v for k, v in r.items() if k != "chosen"} for r in pair_rows(2)])
    assert main(["train", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "diversens train: error:" in err and "'chosen'" in err and str(path) in err


def test_logs_are_written_and_plotted(tmp_path):
    history = [
        {"loss": 0.69 - 0.1 * s, "rewards/margins": 0.2 * s, "rewards/chosen": 0.1 * s,
         "rewards/rejected": -0.1 * s, "rewards/accuracies": 1.0, "step": s}
        for s in (1, 2, 3)
    ] + [{"train_runtime": 1.0, "step": 3}]  # fmt: skip
    paths = write_logs(history, tmp_path)
    steps = pd.read_csv(paths["csv"])
    assert steps["step"].tolist() == [1, 2, 3] and "rewards/margins" in steps
    assert json.loads(paths["json"].read_text()) == history
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_phase_seconds_add_up_to_the_wall_time():
    marks = {"loop_start": 110, "imported": 120, "trainer_built": 140, "train_begin": 150, "first_step": 170, "checkpoint_s": 6.0,
             "train_end": 200, "published": 230}  # fmt: skip
    phases = phase_seconds(marks, fit_start=100, fit_end=240, steps=4)
    assert phases["per_step_s"] == 8.0  # (200 - 170 - 6) s over the 3 later steps
    parts = ("worker_start_s", "imports_s", "trainer_build_s", "engine_setup_s", "first_step_s", "later_steps_s", "checkpoints_s",
             "save_merge_export_s", "teardown_s")  # fmt: skip
    assert sum(phases[p] for p in parts) == phases["wall_s"] == 140
    assert phases["fixed_s"] == 140 - 4 * 8.0
    resumed_at_the_end = {k: v for k, v in marks.items() if k != "first_step"}
    assert math.isnan(phase_seconds(resumed_at_the_end, 100, 240, 0)["fixed_s"])


def test_export_keeps_the_model_and_drops_training_state(tmp_path):
    ckpt = tmp_path / "checkpoint"
    (ckpt / "global_step4").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "latest", "trainer_state.json",
                 "rng_state_0.pth", "scheduler.pt", "zero_to_fp32.py", "training_args.bin"):  # fmt: skip
        (ckpt / name).write_text("x")
    out = export_model(ckpt, "unused-base", tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_a_run_is_claimed_by_its_fingerprint(tmp_path):
    """Same config and pairs resume; other pairs or hyper-parameters are refused in one line."""
    import pyarrow as pa

    from diversens.training.trainer import claim_run, run_fingerprint

    pairs = pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]})
    cfg = TrainConfig(max_steps=2)
    run_dir = str(tmp_path / "ckpt" / "dpo")
    claim_run(run_dir, run_fingerprint(cfg, pairs), "dpo")
    # A longer run, saved more often, elsewhere named: the same run, resumable.
    longer = TrainConfig(max_steps=5, save_steps=1, storage_path="x")
    claim_run(run_dir, run_fingerprint(longer, pairs), "dpo")
    logged = TrainConfig(max_steps=2, dpo_args={"report_to": "tensorboard"})  # now logged too
    claim_run(run_dir, run_fingerprint(logged, pairs), "dpo")
    for other in (run_fingerprint(TrainConfig(max_steps=2, beta=0.5), pairs),
                  run_fingerprint(TrainConfig(max_steps=2, dpo_args={"loss_type": "ipo"}), pairs),
                  run_fingerprint(cfg, pa.table({"prompt": ["p"], "chosen": ["c"],
                                                 "rejected": ["b"]}))):  # fmt: skip
        with pytest.raises(UserError, match=r"run 'dpo' in .* was trained on other pairs or "
                                            r"hyper-parameters"):  # fmt: skip
            claim_run(run_dir, other, "dpo")


def test_checkpoints_are_absolute_for_a_relative_local_output(tmp_path, monkeypatch):
    """Ray Train takes only an absolute local storage path (a relative one fails in its
    controller: "URI has empty scheme"), and the README's run writes to out/demo."""
    monkeypatch.chdir(tmp_path)
    assert TrainConfig().checkpoints("out/demo") == str(tmp_path / "out" / "demo" / "checkpoints")
    assert TrainConfig(storage_path="ckpt").checkpoints("out") == str(tmp_path / "ckpt")
    assert TrainConfig().checkpoints("s3://b/run/") == "s3://b/run/checkpoints"
    assert TrainConfig(storage_path="gs://b/c").checkpoints("out") == "gs://b/c"


def test_deepspeed_starts_on_cpu_without_building_its_shm_op(monkeypatch):
    """The comm backend DeepSpeed starts on CPU would JIT-compile its shared-memory all-reduce op
    (~2 min on a machine's first DPO run); training never uses it."""
    import importlib
    import socket

    import torch.distributed as dist

    from diversens.training.loop import skip_shm_comm_op

    ds_torch = importlib.import_module("deepspeed.comm.torch")
    monkeypatch.setattr(ds_torch, "build_shm_op", ds_torch.build_shm_op)  # undone after
    builder = type(ds_torch.get_accelerator().create_op_builder("ShareMemCommBuilder"))
    monkeypatch.setattr(builder, "load", lambda *a, **k: pytest.fail("built the shm op"))
    skip_shm_comm_op()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = ds_torch.TorchBackend("gloo", dist.default_pg_timeout, f"tcp://127.0.0.1:{port}",
                                    rank=0, world_size=1)  # fmt: skip
    try:
        assert backend.shm_comm_op is None and dist.get_world_size() == 1
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("text", ["", '{"complete": tr', "[1, 2]", "\udcff"])
def test_a_damaged_train_summary_is_set_aside_and_the_run_goes_on(tmp_path, caplog, text):
    """A train_summary.json cut short or overwritten with garbage is no finished run: renamed to
    .damaged with one line, and the run resumes from its checkpoint instead of crashing."""
    from diversens.storage import Output
    from diversens.training.trainer import finished_run

    out = Output(str(tmp_path), tmp_path)
    (tmp_path / "train_summary.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with caplog.at_level("WARNING", logger="diversens"):
        assert finished_run(out, "key") is None
    assert (tmp_path / "train_summary.json.damaged").exists()
    assert not (tmp_path / "train_summary.json").exists()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "damaged summary set aside, the run goes on from its checkpoint"
    ]


@pytest.mark.parametrize(
    "config_file, committed, name, seed",
    [("study.yaml", "run/train/random", "dpo-random", 0),
     ("study_v2.yaml", "v2/train/diverse-ns@s1", "dpo-diverse-ns@s1", 1)],
)  # fmt: skip
def test_a_study_run_committed_as_its_adapter_is_finished_for_the_same_config(
    tmp_path, config_file, committed, name, seed
):
    """The study's committed DPO runs (docs/results/study/.../train/<label>: summary, pairs,
    LoRA adapter xz-compressed, no merged weights) are finished runs for their config's train
    config and the same pairs, so a run seeded from them trains them no more (version one's at
    seed 0, version two's at seeds 1 and 2); another seed, or a run dir without its adapter,
    is not finished."""
    import shutil

    from diversens.config import config_hash
    from diversens.jobs.config import PipelineConfig
    from diversens.storage import Output
    from diversens.training.trainer import finished_run, run_fingerprint

    root = Path(__file__).resolve().parents[2]
    study = config.load(PipelineConfig, root / "configs" / config_file, None)
    run = Path(shutil.copytree(root / "docs/results/study" / committed, tmp_path / "r"))
    pairs = read_pairs(run / "pairs.parquet")

    def key(seed: int) -> str:
        tcfg = dataclasses.replace(study.train, name=name, seed=seed)
        return config_hash([config_hash(tcfg), run_fingerprint(tcfg, pairs)])

    out = Output(str(run), run)
    assert finished_run(out, key(seed))["num_pairs"] == pairs.num_rows == 221
    assert finished_run(out, key(seed + 1)) is None
    shutil.rmtree(run / "adapter")
    assert finished_run(out, key(seed)) is None


def test_a_dpo_worker_whose_process_died_is_one_line():
    """A worker killed (its placement group removed, out of memory, its node gone) ends the run
    with one line saying how to resume; an exception a worker raised is a bug: no line, its
    traceback stays."""
    from ray.core.generated.common_pb2 import ActorDiedErrorContext
    from ray.exceptions import ActorDiedError
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    from diversens.training.config import TrainConfig
    from diversens.training.trainer import failure_error

    detail = ("The actor is dead because its worker process has died. Worker exit type: "
              "INTENDED_SYSTEM_EXIT Worker exit detail: Destroying worker since its placement "
              "group was removed. Placement group id: 39c3, bundle index: 1")  # fmt: skip
    died = ActorDiedError(ActorDiedErrorContext(error_message=detail, actor_id=bytes(16)))
    health = WorkerHealthCheckFailedError("A worker health check failed.", failure=died)
    error = failure_error(WorkerGroupError("x", {1: health}), TrainConfig(), 60, "/runs/dpo-a")
    assert str(error) == (
        "train: DPO worker 1's process died (Destroying worker since its placement group was "
        "removed); the same command resumes the run from its last checkpoint in /runs/dpo-a"
    )
    raised = WorkerGroupError("x", {0: ValueError("a bug in the training function")})
    assert failure_error(raised, TrainConfig(), 60, "/runs/dpo-a") is None
