"""The per-worker DPO loop that Ray Train runs on each worker (docs/design.md §12).

Each worker reads the pairs through `ray.train.get_dataset_shard("train")`, builds TRL's
`DPOTrainer` with DeepSpeed ZeRO through the Hugging Face Trainer integration, and reports every
Hugging Face checkpoint to Ray Train; a run whose storage already holds a whole checkpoint
resumes from the newest (diversens.training.checkpoints, also one Ray Train did not record):
weights, optimizer, scheduler, RNG and data position. A store that fails under a worker (its
local disk full, the run's storage gone) is one line naming it (`storage.faults`).

Every rank writes its own ZeRO shards into its own local dir, and Hugging Face rotates old
checkpoints on rank 0 only: each rank moves its checkpoint into the report and drops it once Ray
Train has stored it (`ReportCheckpoint`), so no node keeps local copies. At the end rank 0 writes
the final model (weights, config, tokenizer; a LoRA adapter merged) and the trainer state straight
to the run's output: nobody ever downloads a whole checkpoint with its optimizer state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.train.huggingface.transformers import RayTrainReportCallback
from transformers import TrainerCallback

from diversens.io import atomic_dir
from diversens.storage import faults, is_uri, upload
from diversens.training.checkpoints import resume_checkpoint, write_inventory
from diversens.training.config import TrainConfig
from diversens.training.export import (
    export_adapter,
    has_adapter,
    publish_model,
    publish_state,
)
from diversens.training.pairs_input import PAIR_FIELDS
from diversens.training.progress import StepProgress, dataset_progress, say


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry: `loop_config` holds `train` (TrainConfig as a dict),
    `deepspeed` (the ZeRO config dict, or None for plain DDP), `output` (the run's output dir
    or URI, where rank 0 writes model/ and trainer_state.json) and `run_dir` (Ray Train's run
    dir, where the checkpoints are)."""
    clock = PhaseClock()  # wall-clock marks: the driver turns them into the run's phase times
    import ray.train
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from diversens.models import resolve_model

    clock.mark("imported")
    cfg = TrainConfig(**loop_config["train"])
    model_path = resolve_model(cfg.model)  # a path: under ZeRO-3 TRL loads the reference from it
    rows = [
        {k: row[k] for k in PAIR_FIELDS} for row in ray.train.get_dataset_shard("train").iter_rows()
    ]
    context = ray.train.get_context()
    rank = context.get_world_rank()
    if loop_config["deepspeed"] is not None:
        import deepspeed

        if not cfg.use_gpu:
            skip_shm_comm_op()
        # Ray Train already formed the process group; DeepSpeed's comm layer must wrap it before
        # ZeRO-3 partitions the weights at load (with use_cpu the HF integration skips this).
        deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    # Hugging Face writes checkpoints here first; the report callback copies each into Ray storage.
    with (
        tempfile.TemporaryDirectory(prefix=f"diversens-dpo-rank{rank}-") as output_dir,
        faults(loop_config["run_dir"], output_dir),
    ):
        args = DPOConfig(
            output_dir=output_dir, deepspeed=loop_config["deepspeed"], **_dpo_args(cfg)
        )
        if args.precompute_ref_log_probs:
            dataset = _on_disk_dataset(rows, is_local_leader=context.get_local_rank() == 0)
        else:
            dataset = Dataset.from_list(rows)
        # With report_to tensorboard rank 0 writes events to OUTPUT/logs/tensorboard (for a URI
        # locally first, uploaded at the end); transformers' TensorBoardCallback reads the dir
        # from the environment, else it writes under output_dir, which goes at the end.
        tensorboard = f"{loop_config['output']}/logs/tensorboard"
        events = Path(output_dir, "tensorboard") if is_uri(tensorboard) else Path(tensorboard)
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(events)
        if rank == 0:
            say(f"each of {context.get_world_size()} worker(s) has TRL prepare (tokenise) all "
                f"{len(rows):,} pairs before the first step")
        with dataset_progress(enabled=rank == 0):  # TRL's passes over the pairs: on the console
            trainer = DPOTrainer(
                model=model_path,
                args=args,
                train_dataset=dataset,
                processing_class=AutoTokenizer.from_pretrained(model_path),
                peft_config=_lora_config(cfg),
                callbacks=[RunLogCallback(), ReportCheckpoint(), clock,
                           *([StepProgress()] if rank == 0 else [])],  # fmt: skip
            )
        clock.mark("trainer_built")
        checkpoint = resume_checkpoint(loop_config["run_dir"])
        if checkpoint is None:
            trainer.train()
        else:
            with checkpoint.as_directory() as ckpt_dir:
                hf_dir = os.path.join(ckpt_dir, ReportCheckpoint.CHECKPOINT_NAME)
                trainer.train(resume_from_checkpoint=hf_dir)
        clock.mark("train_end")
        final = Path(output_dir) / "final"
        trainer.save_model(str(final))  # every rank: ZeRO-3 gathers the weights; rank 0 writes
        if rank == 0:
            publish_model(final, model_path, f"{loop_config['output']}/model")
            if has_adapter(final):
                publish_model(final, cfg.model, f"{loop_config['output']}/adapter", export_adapter)
            clock.mark("published")
            publish_state(trainer.state.log_history, trainer.state.global_step,
                          f"{loop_config['output']}/trainer_state.json", clock.marks)  # fmt: skip
            if is_uri(tensorboard) and events.is_dir():
                upload(events, tensorboard)


def skip_shm_comm_op() -> None:
    """On CPU DeepSpeed's comm backend builds its shared-memory all-reduce op as it starts: a C++
    JIT compile that took ~2 minutes of the first DPO run on a 2-core machine (then cached per
    machine). Only DeepSpeed inference's tensor-parallel all-reduce uses that op; training's
    collectives go through the process group (gloo), so the backend starts without it."""
    import importlib

    # By name: the attribute deepspeed.comm.torch is the torch package, which that module imports
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def _on_disk_dataset(rows: list[dict], is_local_leader: bool):
    """The pairs as an on-disk Dataset that all ranks of this node share.

    TRL writes precomputed reference log-probs as a cache file beside the dataset's files, from
    rank 0 only, and every rank reads it back; an in-memory Dataset's cache lives in a per-process
    temp dir, so the others would not find it. (Across nodes this needs a shared temp dir.)
    """
    import torch.distributed as dist
    from datasets import Dataset, load_from_disk

    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"diversens-dpo-pairs-{digest}"
    if is_local_leader and not path.exists():
        with atomic_dir(path, replace=False) as tmp:
            Dataset.from_list(rows).save_to_disk(tmp)
    dist.barrier()
    return load_from_disk(str(path))


def _dpo_args(cfg: TrainConfig) -> dict[str, Any]:
    """DPOConfig's keyword arguments: the options, then the user's dpo_args over them."""
    curated = dict(
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",  # also saves at the last step
        save_steps=cfg.save_steps,
        save_total_limit=1,  # local copies only; Ray storage keeps num_checkpoints_to_keep
        bf16=cfg.use_bf16,
        gradient_checkpointing=cfg.use_gradient_checkpointing,
        use_cpu=not cfg.use_gpu,
        ddp_find_unused_parameters=False,  # every parameter gets a gradient; True costs a pass
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",  # unless dpo_args asks (transformers 4 reported to all it found)
        disable_tqdm=True,
    )
    return {**curated, **cfg.dpo_args}


def _lora_config(cfg: TrainConfig):
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


class RunLogCallback(TrainerCallback):
    """Stamps every log row with the step this run started from (0, or the checkpoint it resumed)
    and the seconds since training began, so the log shows resumes and gives throughput."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step, self.start_time = state.global_step, time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history:
            row = state.log_history[-1]
            row["run_start_step"] = self.start_step
            row["elapsed_s"] = time.perf_counter() - self.start_time


class PhaseClock(TrainerCallback):
    """Wall-clock marks of a worker's run (loop start, imports done, trainer built, train begin,
    first step end, train end, model published) and the seconds its checkpoints took (save +
    report, after the step that triggered them): where a run's time goes beside its optimiser
    steps. Listed after ReportCheckpoint so a checkpoint's time includes its upload."""

    def __init__(self):
        self.marks: dict[str, float] = {"checkpoint_s": 0.0}
        self.mark("loop_start")

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()  # epoch seconds: comparable with the driver's

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark("train_begin")

    def on_step_end(self, args, state, control, **kwargs):
        self.last_step_end = time.time()
        self.marks.setdefault("first_step", self.last_step_end)

    def on_save(self, args, state, control, **kwargs):
        self.marks["checkpoint_s"] += time.time() - self.last_step_end


class ReportCheckpoint(RayTrainReportCallback):
    """Ray's report callback, but the checkpoint is moved into the report instead of copied, and
    is gone from this rank's disk once Ray Train has stored it (the report uploads before it
    returns): without this, ranks other than 0 keep every checkpoint they ever saved. Each rank
    reports its list of files with them (`write_inventory`), so a rerun knows the checkpoint is
    whole even if Ray Train never recorded it."""

    def on_save(self, args, state, control, **kwargs):
        import ray.train
        import transformers.trainer
        from ray.train import Checkpoint

        metrics = {k: v for row in state.log_history for k, v in row.items()}
        source = transformers.trainer.get_last_checkpoint(args.output_dir)
        context = ray.train.get_context()
        with tempfile.TemporaryDirectory(dir=args.output_dir) as tmp:
            if source is not None:
                os.rename(source, os.path.join(tmp, self.CHECKPOINT_NAME))
            write_inventory(Path(tmp), context.get_world_rank(), context.get_world_size(),
                            state.global_step)  # fmt: skip
            ray.train.report(metrics=metrics, checkpoint=Checkpoint.from_directory(tmp))
        for old in Path(args.output_dir).glob("checkpoint-*"):  # older saves, if any
            shutil.rmtree(old, ignore_errors=True)
