"""Driver side of DPO training on Ray Train (docs/design.md §12).

Checks the pairs file before any worker starts, runs `train_loop` on `num_workers` Ray Train
workers (TorchTrainer; gloo on CPU, nccl on GPU), whose rank 0 writes OUTPUT/model (a plain HF
dir) and OUTPUT/trainer_state.json; then writes OUTPUT/train_log.{csv,json,png} and
OUTPUT/train_summary.json from the trainer state. The checkpoint itself is never downloaded.
Rerunning with the same `name` and storage resumes from the latest whole checkpoint in its
storage dir (diversens.training.checkpoints), whether or not Ray Train recorded it; a run that
already finished with the same config and pairs is not run again. A store that fails under the
run (a worker's, or Ray Train's own writes to its run dir) is one line naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.fs as pafs

from diversens import storage
from diversens.config import config_hash, redacted
from diversens.errors import UserError
from diversens.io import earlier_summary, read_json, read_summary, write_summary
from diversens.models import TUNED_MODEL_FILES
from diversens.storage import Output
from diversens.training.checkpoints import latest_whole
from diversens.training.config import TrainConfig
from diversens.training.logs import phase_seconds, step_rows, write_logs
from diversens.training.pairs_input import read_pairs

# Fields that may change between a run and its resumption: where it lives, how long it goes on
# (raising max_steps extends a run), how often it saves or logs. Any other change, or other
# pairs, makes a different run that must not continue from this one's checkpoint.
RESUMABLE_FIELDS = ("name", "storage_path", "max_steps", "num_train_epochs", "save_steps",
                    "logging_steps", "num_checkpoints_to_keep", "num_cpus_per_worker",
                    "placement_strategy", "accelerator_type")  # fmt: skip
RESUMABLE_DPO_ARGS = ("report_to", "run_name")  # where the metrics go, not what is learnt
RUN_FILE = "diversens_run.json"
log = logging.getLogger(__name__)
T = TypeVar("T")
SUMMARY = "train_summary.json"
DIRECTORY = pafs.FileType.Directory

# Scoped to the training workers: Ray Train's print redirect would log the bytecode that dill
# (datasets' fingerprinting in TRL) disassembles into a captured stdout, and the pairs are too few
# for a progress bar to help.
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def deepspeed_config(stage: str) -> dict[str, Any] | None:
    """The shipped ZeRO config (its "auto" values are filled by the HF integration); None = DDP."""
    if stage == "none":
        return None
    return json.loads(
        resources.files("diversens.training").joinpath(f"deepspeed/{stage}.json").read_text()
    )


def train(
    pairs_path: str, cfg: TrainConfig, out: Output, checkpoint_root: str | None = None
) -> dict[str, Any]:
    """Train with DPO on the pairs; returns the run summary (also written as train_summary.json).
    Checkpoints go to `cfg.checkpoints(checkpoint_root or out.location)`."""
    table = read_pairs(pairs_path)  # a bad file fails here, before any worker starts
    fingerprint = run_fingerprint(cfg, table)  # hashes every pair: computed once
    run_key = config_hash([config_hash(cfg), fingerprint])
    if (done := finished_run(out, run_key)) is not None:
        return done

    import ray.data
    from ray.train import (
        CheckpointConfig,
        DataConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        TrainingFailedError,
    )
    from ray.train.torch import TorchConfig, TorchTrainer

    from diversens.pools import TRAIN_START_TIMEOUT_ENV, environment, train_start_timeout_s
    from diversens.training.loop import train_loop

    summary_path = out.local / SUMMARY
    write_summary(summary_path, {"pairs_file": str(pairs_path), "name": cfg.name}, complete=False)
    storage_path = cfg.checkpoints(checkpoint_root or out.location)
    run_dir = f"{storage_path.rstrip('/')}/{cfg.name}"
    claim_run(run_dir, fingerprint, cfg.name)
    resources_per_worker = cfg.resources_per_worker()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "train": dataclasses.asdict(cfg),
            "deepspeed": deepspeed_config(cfg.deepspeed),
            "output": out.at(),
            "run_dir": run_dir,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker=resources_per_worker,
            placement_strategy=cfg.placement_strategy,
            accelerator_type=cfg.accelerator_type,
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_checkpoints_to_keep),
            worker_runtime_env={"env_vars": WORKER_ENV},
            # A worker group that cannot start (its placement group not placed within the start
            # timeout, or a worker dying in setup) fails the run once: Ray Train V2 would retry
            # it forever (controller_failure_limit -1), a node type with no quota included.
            failure_config=FailureConfig(controller_failure_limit=0),
        ),
        # The pairs travel from the driver (a few MB; no shared filesystem needed). Every worker
        # gets all of them and the HF Trainer's distributed sampler deals each rank its part of
        # every batch: splitting in Ray too would shard twice, and resuming mid-epoch needs the
        # one global order the HF sampler keeps.
        datasets={"train": ray.data.from_arrow(table)},
        dataset_config=DataConfig(datasets_to_split=[]),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
    )
    start = time.time()  # epoch seconds: the workers' phase marks are too
    timeout_s = train_start_timeout_s()
    # Ray Train's controller reads the placement-group wait from the driver's environment at fit.
    with environment(TRAIN_START_TIMEOUT_ENV, f"{timeout_s:g}"):
        try:
            result = off_the_main_thread(trainer.fit)
        except TrainingFailedError as e:
            error = failure_error(e, cfg, timeout_s, run_dir)
            if error is None:
                raise
            raise error from None
    end = time.time()
    if result.checkpoint is not None:
        checkpoint = result.checkpoint.path
    elif (found := latest_whole(run_dir)) is not None:  # resumed at the last step from one
        checkpoint = found.location  # that Ray Train had not recorded: no new one was made
    else:
        raise RuntimeError(f"run {cfg.name!r} under {storage_path} ended without a checkpoint")

    state = json.loads(storage.read_text(out.at("trainer_state.json")))
    tensorboard = out.at("logs", "tensorboard")  # rank 0's events, with report_to tensorboard
    log_paths = write_logs(state["log_history"], out.local)
    steps = step_rows(state["log_history"])
    resumed_from = int(steps["run_start_step"].iloc[-1]) if len(steps) else None
    summary = {
        "pairs_file": str(pairs_path),
        "num_pairs": table.num_rows,
        "global_step": state["global_step"],
        "resumed_from_step": resumed_from,
        "final": _final_metrics(steps),
        "wall_s": round(end - start, 2),
        "phases_s": phase_seconds(  # a resumed run's own steps only
            state["marks"], start, end, state["global_step"] - (resumed_from or 0)
        ),
        "model_dir": out.at("model"),
        "checkpoint": checkpoint,
        "logs": {k: out.at(Path(v).name) for k, v in log_paths.items()},
        "tensorboard": tensorboard if storage.file_type(tensorboard) == DIRECTORY else None,
        "config": dataclasses.asdict(cfg),
        "config_hash": config_hash(cfg),
        "run_key": run_key,
    }
    write_summary(summary_path, summary)
    return summary


def off_the_main_thread(fit: Callable[[], T]) -> T:
    """`fit()` in a thread of its own, waited for on this one. On the main thread Ray Train's
    fit installs a SIGINT handler of its own and never puts the previous one back: a Ctrl-C
    during training only asks the run to abort, and one after it (in a pipeline's eval, 52 s
    into sampling) was swallowed and the run ended with exit 0. Off the main thread it installs
    none, so Ctrl-C, SIGTERM and SIGHUP interrupt the wait here like anywhere else in a run."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["result"] = fit()
        except BaseException as e:  # noqa: BLE001 - re-raised on the waiting thread
            done["error"] = e

    thread = threading.Thread(target=run, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in done:
        raise done["error"]
    return done["result"]


def failure_error(e, cfg: TrainConfig, timeout_s: float, run_dir: str) -> UserError | None:
    """The one line for a run Ray Train ended (`TrainingFailedError` `e`), or None for a bug: a
    worker group that could not start (`pools.worker_group_failure`), or a store that failed
    under a worker or under Ray Train's own writes to `run_dir` (`storage.fault`)."""
    from diversens.pools import worker_group_failure

    controller = getattr(e, "controller_failure", None)
    if controller is not None:
        line = worker_group_failure(controller, cfg.num_workers, cfg.resources_per_worker(),
                                    timeout_s, cfg.accelerator_type)  # fmt: skip
        return UserError(line) if line else storage.fault(controller, run_dir)
    failures = getattr(e, "worker_failures", {})
    stored = next(filter(None, (storage.fault(f, run_dir) for f in failures.values())), None)
    return stored or worker_died(failures, run_dir)


def worker_died(failures: dict[int, Exception], run_dir: str) -> UserError | None:
    """One line for a DPO worker whose process died (killed, out of memory, its node or its
    placement group gone), or None where a worker raised (a bug keeps its traceback)."""
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    for rank, failure in sorted(failures.items()):
        if isinstance(failure, WorkerHealthCheckFailedError):
            failure = failure.health_check_failure
        if isinstance(failure, ActorDiedError):
            lines = [ln.strip() for ln in str(failure).splitlines() if ln.strip()]
            why = next((ln for ln in lines if "exit detail:" in ln), lines[-1] if lines else "")
            why = why.split("exit detail:", 1)[-1].split(". Placement group id")[0].strip()
            return UserError(f"train: DPO worker {rank}'s process died ({why or 'no reason given'})"
                             "; the same command resumes the run from its last checkpoint in "
                             f"{redacted(run_dir)}")  # fmt: skip
    return None


def rebuild_logs(run_dir: Path, out_dir: Path) -> Path | None:
    """train_log.csv/.json/.png of the finished training at run_dir, rebuilt into out_dir from
    its train_log.json (`diversens report`); returns the plot's path, None without a log."""
    read_summary(run_dir / SUMMARY)
    path = run_dir / "train_log.json"
    if not path.exists():
        return None
    history = read_json(path)
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise UserError(f"{path}: not a training log (expected a JSON list of objects)")
    return write_logs(history, out_dir)["png"]


def finished_run(out: Output, run_key: str) -> dict[str, Any] | None:
    """The summary of a run that already finished at `out` with this config and these pairs."""
    summary = earlier_summary(out.at(SUMMARY), "the run goes on from its checkpoint")
    if summary is None:
        return None
    if not summary.get("complete") or summary.get("run_key") != run_key:
        return None
    if not any(storage.is_file(out.at(*marker)) for marker in TUNED_MODEL_FILES):
        return None
    return summary


def run_fingerprint(cfg: TrainConfig, pairs) -> str:
    """What decides a run's result: the config but RESUMABLE_FIELDS (and RESUMABLE_DPO_ARGS),
    and the pairs' content."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_FIELDS}
    settings["dpo_args"] = {k: v for k, v in cfg.dpo_args.items() if k not in RESUMABLE_DPO_ARGS}
    rows = json.dumps(pairs.to_pylist(), sort_keys=True, ensure_ascii=False, default=str)
    return config_hash([settings, hashlib.sha256(rows.encode()).hexdigest()])


def claim_run(run_dir: str, fingerprint: str, name: str) -> None:
    """Record the run's fingerprint in its storage dir, or check it against the one recorded: a
    checkpoint made with other pairs or hyper-parameters is never resumed."""
    where = storage.join(run_dir, RUN_FILE)
    if storage.is_file(where):
        try:
            recorded = json.loads(storage.read_text(where))["fingerprint"]
        except (ValueError, TypeError, KeyError):  # cut short: a disk filled as it was written
            raise UserError(f"{redacted(where)}: damaged, so the checkpoints beside it cannot be "
                            "told to be this run's; remove it to resume from them, or give "
                            "another --name") from None  # fmt: skip
        if recorded != fingerprint:
            raise UserError(
                f"run {name!r} in {redacted(run_dir)} was trained on other pairs or "
                f"hyper-parameters (fingerprint {recorded}, now {fingerprint}); give another "
                "--name to start a new run, or remove that directory"
            )
        return
    storage.write_text(where, json.dumps({"fingerprint": fingerprint}))


def _final_metrics(steps) -> dict[str, float]:
    if not len(steps):
        return {}
    keep = ("loss", "rewards/", "logps/", "learning_rate", "grad_norm")
    return {k: float(v) for k, v in steps.iloc[-1].items() if k.startswith(keep)}
