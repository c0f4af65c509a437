"""The final model as a plain Hugging Face dir that the sampling engines load directly.

Rank 0 of the training run calls this on what `Trainer.save_model` wrote (ZeRO-3 gathers the
weights for it, `stage3_gather_16bit_weights_on_model_save`): full fine-tuning weights are copied
without any training state; LoRA adapters are merged into the base model, and also kept alone
(adapter/, bfloat16). The result goes straight to the run's output, a local dir or a URI.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from diversens import storage
from diversens.io import atomic_dir, atomic_path
from diversens.models import ADAPTER_CONFIG, merge_lora, without_progress_bars

ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Files and dirs of a Hugging Face + DeepSpeed checkpoint that only matter for resuming.
_TRAINING_STATE = ("global_step", "latest", "zero_to_", "optimizer", "scheduler", "rng_state",
                   "trainer_state", "training_args")  # fmt: skip


def export_model(checkpoint_dir: Path, base_model: str, out: Path) -> Path:
    """Write `out` (replacing it) as a loadable model dir from a Hugging Face checkpoint dir."""
    with atomic_dir(out) as tmp:
        if has_adapter(checkpoint_dir):
            _merge_lora(checkpoint_dir, base_model, tmp)
        else:
            for src in checkpoint_dir.iterdir():
                if not src.name.startswith(_TRAINING_STATE):
                    copy = shutil.copytree if src.is_dir() else shutil.copy2
                    copy(src, tmp / src.name)
    return out


def publish_model(saved_dir: Path, base_model: str, location: str, export=export_model) -> str:
    """`export` `saved_dir` to `location` (a local dir, replaced; or a URI, whose old files
    go)."""
    if not storage.is_uri(location):
        export(saved_dir, base_model, Path(location))
        return location
    with tempfile.TemporaryDirectory(prefix="diversens-export-") as tmp:
        storage.replace_dir(export(saved_dir, base_model, Path(tmp) / "model"), location)
    return location


def has_adapter(saved_dir: Path) -> bool:
    return (saved_dir / ADAPTER_CONFIG).exists()


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
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # Rank 0 merges inside the training process: under the trainer's ZeRO-3 config
    # from_pretrained would partition the base model with a collective the other ranks, done
    # with training, never join (a hang). The merge wants a plain load.
    unset_hf_deepspeed_config()
    with without_progress_bars():
        merge_lora(checkpoint_dir, base_model, out)


def export_adapter(checkpoint_dir: Path, base_model: str, out: Path) -> Path:
    """The LoRA adapter alone, in bfloat16 (half the bytes: what a study commits), its base
    named as the user gave it (`base_model`), so `resolve_model` finds it on any machine."""
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((checkpoint_dir / ADAPTER_CONFIG).read_text())
    config["base_model_name_or_path"] = base_model
    weights = load_file(checkpoint_dir / ADAPTER_WEIGHTS)
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}
    with atomic_dir(out) as tmp:
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
        save_file(half, tmp / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    return out
