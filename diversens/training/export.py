"""The final model as a plain Hugging Face dir that the sampling engines load directly.

A full fine-tuning checkpoint already holds the consolidated weights (ZeRO-3 gathers them on save,
`stage3_gather_16bit_weights_on_model_save`), so export copies them and leaves the optimizer
shards and trainer state behind; a LoRA checkpoint holds adapters only, which are merged into the
base model here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from diversens.io import atomic_dir
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


def _merge_lora(checkpoint_dir: Path, base_model: str, out: Path) -> None:
    import torch

    if not torch.cuda.is_available():  # peft imports DeepSpeed, which warns it falls back to CPU
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the merge runs on CPU in any case
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with without_progress_bars():
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
        merged = PeftModel.from_pretrained(base, str(checkpoint_dir)).merge_and_unload()
        merged.save_pretrained(out)
        AutoTokenizer.from_pretrained(str(checkpoint_dir)).save_pretrained(out)
