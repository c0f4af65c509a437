"""Training logs: a run's Hugging Face log history as CSV/JSON and one PNG of the DPO curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed
from matplotlib.ticker import MaxNLocator

from diversens.io import atomic_path, save_png

CURVES = (
    ("loss", "DPO loss"),
    ("rewards/margins", "reward margin (chosen - rejected)"),
    (("rewards/chosen", "rewards/rejected"), "implicit rewards"),
    ("rewards/accuracies", "reward accuracy"),
)


def step_rows(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per logged training step (the end-of-training summary row is left out)."""
    rows = [r for r in log_history if "loss" in r and "step" in r]
    return pd.DataFrame(rows).sort_values("step", kind="stable").reset_index(drop=True)


def phase_seconds(marks: dict[str, float], fit_start: float, fit_end: float, steps: int) -> dict:
    """Where a run's wall time went, from rank 0's marks (PhaseClock) and the driver's fit():
    worker start (Ray Train's workers up and in the loop), imports (TRL, DeepSpeed), the
    trainer's build (policy load, LoRA, tokenising the pairs), the engine's set-up (DeepSpeed's
    ZeRO partitioning and optimiser), the first optimiser step, the later steps without their
    checkpoints, the checkpoints, the final save + LoRA merge + export, and teardown. `fixed_s`
    is the wall time less `steps` optimiser steps at the later steps' rate: what one more run
    costs beside its training proper."""
    marks = {"first_step": math.nan, **marks}  # a resumed run may have no step left to take
    checkpoints = marks.get("checkpoint_s", 0.0)
    later = marks["train_end"] - marks["first_step"] - checkpoints
    per_step = later / (steps - 1) if steps > 1 else math.nan
    wall = fit_end - fit_start
    phases = {
        "worker_start_s": marks["loop_start"] - fit_start,
        "imports_s": marks["imported"] - marks["loop_start"],
        "trainer_build_s": marks["trainer_built"] - marks["imported"],
        "engine_setup_s": marks["train_begin"] - marks["trainer_built"],
        "first_step_s": marks["first_step"] - marks["train_begin"],
        "later_steps_s": later,
        "checkpoints_s": checkpoints,
        "save_merge_export_s": marks["published"] - marks["train_end"],
        "teardown_s": fit_end - marks["published"],
        "per_step_s": per_step,
        "wall_s": wall,
        "fixed_s": wall - steps * per_step,
    }
    return {k: round(v, 2) for k, v in phases.items()}


def write_logs(log_history: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """train_log.csv (step rows), train_log.json (full history) and train_log.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"train_log.{k}" for k in ("csv", "json", "png")}
    steps = step_rows(log_history)
    with atomic_path(paths["csv"]) as tmp:
        steps.to_csv(tmp, index=False)
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(log_history, indent=1))
    plot_logs(steps, paths["png"])
    return paths


def plot_logs(steps: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(4 * len(CURVES), 3.2), layout="constrained")
    axes = fig.subplots(1, len(CURVES))
    for ax, (keys, title) in zip(axes, CURVES, strict=True):
        for key in (keys,) if isinstance(keys, str) else keys:
            if key in steps:
                ax.plot(steps["step"], steps[key], marker=".", label=key.split("/")[-1])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimiser steps are whole
        if not isinstance(keys, str):
            ax.legend(fontsize=8)
    save_png(fig, path)
