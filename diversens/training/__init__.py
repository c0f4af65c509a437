"""DPO fine-tuning on Ray Train with TRL and DeepSpeed ZeRO (docs/design.md §12).

`train(pairs_path, TrainConfig, output_dir)` is the driver entry point (`diversens train`);
`train_loop` is what each Ray Train worker runs.
"""

from diversens.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(*args, **kwargs):
    """`diversens.training.trainer.train`, imported lazily (Ray and TRL load only when used)."""
    from diversens.training.trainer import train as _train

    return _train(*args, **kwargs)
