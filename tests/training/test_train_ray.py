"""DPO on Ray Train for real: local Ray, 2 CPU workers, gloo, DeepSpeed ZeRO-3 (and ZeRO-2 + LoRA),
a tiny SmolLM2-shaped model and 8 pairs repeated for a few steps at a high learning rate."""

import json
import struct
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import torch

from diversens.cli import main
from diversens.training.config import TrainConfig

pytestmark = pytest.mark.slow

# High LR, constant schedule: 8 pairs seen again and again must be learnt within 4 steps.
FAST = dict(learning_rate=1e-3, lr_scheduler_type="constant", warmup_ratio=0.0, max_length=128,
            per_device_train_batch_size=2, gradient_accumulation_steps=1, num_workers=2)  # fmt: skip


def _train(pairs, model, out, **overrides):
    from diversens.storage import Output
    from diversens.training.trainer import train

    cfg = TrainConfig(model=str(model), **{**FAST, **overrides})
    return train(str(pairs), cfg, Output(str(out), Path(out)))


class LocalCheckpoints:
    """Watches the ranks' local Hugging Face output dirs while a run goes: the most
    checkpoints (ZeRO global_step* dirs) each rank held at once."""

    def __init__(self):
        self.most, self.stop = defaultdict(int), threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self):
        while not self.stop.is_set():
            for rank_dir in Path(tempfile.gettempdir()).glob("diversens-dpo-rank*-*"):
                rank = rank_dir.name.split("-")[2]
                try:
                    held = len(list(rank_dir.rglob("global_step*")))  # one per ZeRO save
                except FileNotFoundError:  # a save's temporary dir went while we listed it
                    continue
                self.most[rank] = max(self.most[rank], held)
            self.stop.wait(0.05)


@pytest.fixture(scope="module")
def zero3_run(ray_local, tiny_model, tmp_path_factory):
    from ray.train import Checkpoint
    from train_fixtures import pair_rows

    tmp = tmp_path_factory.mktemp("zero3")
    pd.DataFrame(pair_rows()).to_parquet(tmp / "pairs.parquet")
    watch = LocalCheckpoints()
    watch.thread.start()
    # The driver must never download a checkpoint (112 GB for an 8B model): rank 0 exports.
    refuse = pytest.MonkeyPatch()
    for name in ("as_directory", "to_directory"):
        refuse.setattr(Checkpoint, name, lambda *a, **k: pytest.fail("driver read a checkpoint"))
    try:  # a save every step, as the cluster finding reproduced it
        summary = _train(tmp / "pairs.parquet", tiny_model, tmp / "out", max_steps=4, save_steps=1)
    finally:
        refuse.undo()
        watch.stop.set()
        watch.thread.join()
    return summary, tmp / "out", dict(watch.most)


def test_no_rank_keeps_local_checkpoints_after_reporting(zero3_run):
    _, _, most = zero3_run
    # Each rank writes its own ZeRO shards locally; HF rotates them on rank 0 only, so without
    # the report dropping them rank 1 held checkpoint-1..4 at the end.
    assert set(most) == {"rank0", "rank1"}
    assert max(most.values()) <= 1, most


def test_zero3_loss_falls_and_margin_rises(zero3_run):
    summary, out, _ = zero3_run
    steps = pd.read_csv(out / "train_log.csv")
    assert steps["step"].tolist() == [1, 2, 3, 4] and summary["global_step"] == 4
    phases = summary["phases_s"]  # rank 0's marks against the driver's clock
    assert all(phases[k] >= 0 for k in phases if k != "fixed_s"), phases
    assert phases["checkpoints_s"] > 0  # a save every step
    assert abs(phases["wall_s"] - summary["wall_s"]) < 0.1
    assert steps["loss"].notna().all() and steps["loss"].iloc[-1] < steps["loss"].iloc[0] - 0.1
    assert steps["rewards/margins"].iloc[-1] > steps["rewards/margins"].iloc[0] + 0.1
    assert (out / "train_log.png").stat().st_size > 0
    # Both ranks' ZeRO-3 shards went into the one Ray checkpoint.
    shards = sorted(
        p.name
        for p in (out / "checkpoints" / "dpo").glob("checkpoint_*/checkpoint/global_step4/*optim*")
    )
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]


def test_saved_model_reloads_changed_and_generates(zero3_run, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, out, _ = zero3_run
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [not torch.equal(p, base.state_dict()[n]) for n, p in model.state_dict().items()]
    assert any(changed)
    tok = AutoTokenizer.from_pretrained(out / "model")
    ids = tok.apply_chat_template([{"role": "user", "content": "Tell a story."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 5


def test_stopped_run_resumes_at_next_step_all_at_a_uri(
    ray_local, tiny_model, pairs_file, bucket, tmp_path, monkeypatch, capsys
):
    """Pairs, outputs and checkpoints in a bucket, through the CLI as a user runs it on a
    cluster; nothing is written to a local dir named after the URI. Ray Train's record of the
    checkpoint is gone before the rerun, as after a disk that filled between the checkpoint's
    upload and that record: the whole checkpoint is resumed from all the same."""
    from diversens import io, storage

    monkeypatch.chdir(tmp_path)
    pairs, out = f"{bucket}/run/pairs.parquet", f"{bucket}/train"
    io.write_parquet(pd.read_parquet(pairs_file).pipe(pa_table), pairs)

    def train_cli(max_steps):
        opts = {k: str(v) for k, v in {**FAST, "max_steps": max_steps, "save_steps": 1}.items()}
        argv = ["train", pairs, "-o", out, "--model", str(tiny_model)]
        assert main(argv + [a for k, v in opts.items() for a in (f"--{k}", v)]) == 0
        return json.loads(storage.read_text(f"{out}/train_summary.json"))

    assert train_cli(1)["global_step"] == 1
    fs, snapshot = storage.filesystem(f"{out}/checkpoints/dpo/checkpoint_manager_snapshot.json")
    fs.delete_file(snapshot)
    summary = train_cli(3)  # the same run name and storage, now for 3 steps: it must resume
    assert summary["global_step"] == 3 and summary["resumed_from_step"] == 1
    assert summary["model_dir"] == f"{out}/model" and f"→ {out}/model" in capsys.readouterr().out
    fs, path = storage.filesystem(f"{out}/train_log.csv")
    with fs.open_input_stream(path) as f:
        steps = pd.read_csv(f)
    second = steps[steps["run_start_step"] == 1]
    assert second["step"].tolist() == [2, 3]  # first logged step of the rerun is 2, not 1
    assert steps.loc[steps["step"] == 1, "run_start_step"].tolist() == [0]
    assert storage.is_file(f"{out}/model/config.json")
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.parquet"]  # no local "s3:" dir
    assert train_cli(3)["wall_s"] == summary["wall_s"]  # finished: not run again


def read_scalars(events: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a TensorBoard event file, by tag: (step, value) in order. The file is a
    sequence of records (length, its CRC, an Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    data, pos, scalars = events.read_bytes(), 0, defaultdict(list)
    while pos < len(data):
        (size,) = struct.unpack("<Q", data[pos : pos + 8])
        event = Event.FromString(data[pos + 12 : pos + 12 + size])
        pos += 12 + size + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars[value.tag].append((event.step, value.simple_value))
    return scalars


def test_dpo_args_from_the_cli_reach_trl_and_tensorboard_gets_the_loss(
    ray_local, tiny_model, pairs_file, tmp_path, capsys
):
    """`--dpo_args` typed from the command line (a string, a float, a boolean) reach TRL, and
    with report_to tensorboard rank 0 writes the loss of every step under OUT/logs/tensorboard.
    On ZeRO-2 with LoRA (the reference, its log-probs precomputed, is the model with its adapter
    off), the run learns and ends merged into a plain model."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    opts = {**FAST, "max_steps": 3, "save_steps": 3, "learning_rate": 5e-3, "deepspeed": "zero2",
            "lora": "true", "lora_r": 8}  # fmt: skip
    argv = ["train", str(pairs_file), "-o", str(out), "--model", str(tiny_model), "--dpo_args",
            "report_to=tensorboard,ld_alpha=0.5,precompute_ref_log_probs=true"]  # fmt: skip
    assert main(argv + [a for k, v in opts.items() for a in (f"--{k}", str(v))]) == 0
    (events,) = (out / "logs" / "tensorboard").glob("events.out.tfevents.*")
    loss = read_scalars(events)["train/loss"]
    steps = pd.read_csv(out / "train_log.csv")
    assert [step for step, _ in loss] == steps["step"].tolist() == [1, 2, 3]
    assert [v for _, v in loss] == pytest.approx(steps["loss"].tolist())
    assert steps["loss"].iloc[-1] < steps["loss"].iloc[0]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 3
    assert summary["tensorboard"] == str(out / "logs" / "tensorboard")
    assert summary["config"]["dpo_args"] == {
        "report_to": "tensorboard", "ld_alpha": 0.5, "precompute_ref_log_probs": True
    }  # fmt: skip
    printed = capsys.readouterr()
    assert f"tensorboard: {out / 'logs' / 'tensorboard'}" in printed.out
    # Never silent for long: the driver's line, then rank 0's, relayed from its worker.
    assert "[diversens] train: DPO on 8 pairs, 2 worker(s)" in printed.err
    assert "[diversens] train: Tokenizing train dataset: 0/8 " in printed.out + printed.err
    assert not (out / "model" / "adapter_config.json").exists()  # merged into a plain model
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])


def pa_table(df):
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


def test_a_conversational_prompt_with_plain_answers_trains(ray_local, tiny_model, tmp_path):
    """TRL joins prompt and answer (`prompt + chosen`): a message list and a string failed in
    the workers with TypeError. The driver makes the answers messages before Ray starts."""
    from train_fixtures import pair_rows

    rows = [{**r, "chosen": r["chosen"][0]["content"], "rejected": r["rejected"][0]["content"]}
            for r in pair_rows()]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    summary = _train(tmp_path / "pairs.parquet", tiny_model, tmp_path / "out", deepspeed="none",
                     max_steps=1, save_steps=1)  # fmt: skip
    assert summary["global_step"] == 1
