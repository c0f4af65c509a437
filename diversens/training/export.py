"""The final model as a plain Hugging Face dir that the sampling engines load directly.

Rank 0 of the training run calls this on what `Trainer.save_model` wrote (ZeRO-3 gathers the
weights for it, `stage3_gather_16bit_weights_on_model_save`): full fine-tuning weights are copied
without any training state; LoRA adapters are merged into the base model. The result goes
straight to the run's output, a local dir or a URI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from diversens import storage
from diversens.io import atomic_dir, atomic_path
from diversens.models import without_progress_bars

# Files and dirs of a Hugging Face + DeepSpeed checkpoint that only matter for resuming.
_TRAINING_STATE = ("global_step", "latest", "zero_to_", "optimizer", "scheduler", "rng_state",
                   "trainer_state", "training_args")  # fmt: skip


def export_model(checkpoint_dir: Path, base_model: str, out: Path) -> Path:
    """Write `out` (replacing it) as a loadable model dir from a Hugging Face checkpoint dir."""
    with atomic_dir(out) as tmp:
        if (checkpoint_dir / "adapter_config.json").exists():
            _merge_lora(checkpoint_dir, base_model, tmp)
        else:
            for src in checkpoint_dir.iterdir():
                if not src.name.startswith(_TRAINING_STATE):
                    copy = shutil.copytree if src.is_dir() else shutil.copy2
                    copy(src, tmp / src.name)
    return out


def publish_model(saved_dir: Path, base_model: str, location: str) -> str:
    """Export `saved_dir` to `location` (a local dir, replaced; or a URI, whose old files go)."""
    if not storage.is_uri(location):
        export_model(saved_dir, base_model, Path(location))
        return location
    with tempfile.TemporaryDirectory(prefix="diversens-export-") as tmp:
        storage.replace_dir(export_model(saved_dir, base_model, Path(tmp) / "model"), location)
    return location


def publish_state(
    log_history: list[dict], global_step: int, location: str, marks: dict[str, float]
) -> None:
    """The trainer's log history and rank 0's phase marks beside the model: the driver's logs
    and summary read them."""
    state = {"global_step": global_step, "log_history": log_history, "marks": marks}
    body = json.dumps(state, default=str)
    if storage.is_uri(location):
        storage.write_text(location, body)
        return
    with atomic_path(location) as tmp:
        tmp.write_text(body, encoding="utf-8")


def _merge_lora(checkpoint_dir: Path, base_model: str, out: Path) -> None:
    import torch

    if not torch.cuda.is_available():  # peft imports DeepSpeed, which warns it falls back to CPU
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the merge runs on CPU in any case
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # Rank 0 merges inside the training process: under the trainer's ZeRO-3 config
    # from_pretrained would partition the base model with a collective the other ranks, done
    # with training, never join (a hang). The merge wants a plain load.
    unset_hf_deepspeed_config()

    with without_progress_bars():
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
        merged = PeftModel.from_pretrained(base, str(checkpoint_dir)).merge_and_unload()
        merged.save_pretrained(out)
        AutoTokenizer.from_pretrained(str(checkpoint_dir)).save_pretrained(out)
