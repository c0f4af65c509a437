"""DPO on Ray Train for real: local Ray, 2 CPU workers, gloo, DeepSpeed ZeRO-3 (and ZeRO-2 + LoRA),
a tiny SmolLM2-shaped model and 8 pairs repeated for a few steps at a high learning rate."""

import json

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
    from diversens.training.trainer import train

    return train(pairs, TrainConfig(model=str(model), **{**FAST, **overrides}), out)


@pytest.fixture(scope="module")
def zero3_run(ray_local, tiny_model, tmp_path_factory):
    from train_fixtures import pair_rows

    tmp = tmp_path_factory.mktemp("zero3")
    pd.DataFrame(pair_rows()).to_parquet(tmp / "pairs.parquet")
    summary = _train(tmp / "pairs.parquet", tiny_model, tmp / "out", max_steps=4, save_steps=2)
    return summary, tmp / "out"


def test_zero3_loss_falls_and_margin_rises(zero3_run):
    summary, out = zero3_run
    steps = pd.read_csv(out / "train_log.csv")
    assert steps["step"].tolist() == [1, 2, 3, 4] and summary["global_step"] == 4
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

    _, out = zero3_run
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [not torch.equal(p, base.state_dict()[n]) for n, p in model.state_dict().items()]
    assert any(changed)
    tok = AutoTokenizer.from_pretrained(out / "model")
    ids = tok.apply_chat_template([{"role": "user", "content": "Tell a story."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 5


def test_stopped_run_resumes_at_next_step(ray_local, tiny_model, pairs_file, tmp_path):
    out = tmp_path / "out"
    first = _train(pairs_file, tiny_model, out, max_steps=1, save_steps=1)
    assert first["global_step"] == 1
    # Rerun the same run name and storage through the CLI, now for 3 steps: it must resume.
    opts = {k: str(v) for k, v in {**FAST, "max_steps": 3, "save_steps": 1}.items()}
    argv = ["train", str(pairs_file), "-o", str(out), "--model", str(tiny_model)]
    assert main(argv + [a for k, v in opts.items() for a in (f"--{k}", v)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    steps = pd.read_csv(out / "train_log.csv")
    assert summary["global_step"] == 3 and summary["resumed_from_step"] == 1
    second = steps[steps["run_start_step"] == 1]
    assert second["step"].tolist() == [2, 3]  # first logged step of the rerun is 2, not 1
    assert steps.loc[steps["step"] == 1, "run_start_step"].tolist() == [0]


def test_zero2_lora_ld_alpha_precomputed_ref(ray_local, tiny_model, pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM

    summary = _train(pairs_file, tiny_model, tmp_path / "out", deepspeed="zero2", lora=True,
                     lora_r=8, ld_alpha=0.5, precompute_ref_log_probs=True, max_steps=3,
                     save_steps=3, learning_rate=5e-3)  # fmt: skip
    steps = pd.read_csv(tmp_path / "out" / "train_log.csv")
    assert summary["global_step"] == 3
    assert steps["loss"].iloc[-1] < steps["loss"].iloc[0]
    model_dir = tmp_path / "out" / "model"
    assert not (model_dir / "adapter_config.json").exists()  # merged into a plain model
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])
