"""What a training run says on the console while its workers work: rank 0 prints step lines
marked `console.WORKER_STEP`, which the driver shows on the console (the rest of the workers'
output goes to workers.log). Two phases would be silent otherwise: TRL preparing the pairs (a
`datasets` map over every pair on every worker before step 1: minutes for a million pairs) and
the optimiser steps. Each says where it is at most once per `EVERY_S` seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from transformers import TrainerCallback

from diversens.console import WORKER_STEP

EVERY_S = 10.0


def say(message: str) -> None:
    """One step line on the run's console (through the driver)."""
    print(f"{WORKER_STEP}train: {message}", flush=True)


class _Lines:
    """A file for tqdm: each redraw of its status ("\\r..."), as a step line."""

    def write(self, text: str) -> None:
        if text := text.strip():
            say(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def dataset_progress(enabled: bool = True, every_s: float = EVERY_S) -> Iterator[None]:
    """Inside, the progress bars of `datasets` (its `map`, which TRL runs over the pairs to
    tokenise them) are step lines: one as each pass starts, then at most one per `every_s`."""
    if not enabled:
        yield
        return
    from datasets import arrow_dataset
    from tqdm.std import tqdm

    class StepLines(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=_Lines(), mininterval=every_s, disable=False, unit=" pairs",
                          bar_format="{desc}: {n}/{total} ({rate_fmt}, {remaining} left)")
            super().__init__(*args, **kwargs)

    bars = arrow_dataset.hf_tqdm
    arrow_dataset.hf_tqdm = StepLines
    try:
        yield
    finally:
        arrow_dataset.hf_tqdm = bars


class StepProgress(TrainerCallback):
    """The optimiser steps as step lines: the first, then at most one per `every_s`, and the
    last, with the time per step and the last logged loss."""

    def __init__(self, every_s: float = EVERY_S, clock=time.monotonic):
        self.every_s, self.clock = every_s, clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.from_step, self.last = self.clock(), state.global_step, None
        if 0 < state.max_steps <= args.get_warmup_steps(state.max_steps):
            # Linear warm-up starts at 0: a 1-step run with any warm-up leaves the model as it was
            say(f"warning: the warm-up takes all {state.max_steps} step(s), so the learning rate "
                "never reaches learning_rate (and a 1-step run changes nothing): lower "
                "warmup_ratio")  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):
        now = self.clock()
        final = state.global_step >= state.max_steps
        if self.last is not None and now - self.last < self.every_s and not final:
            return
        self.last = now
        per_step = (now - self.start) / max(state.global_step - self.from_step, 1)
        loss = next((row["loss"] for row in reversed(state.log_history) if "loss" in row), None)
        say(f"step {state.global_step:,}/{state.max_steps:,}, {per_step:.1f} s/step"
            + ("" if loss is None else f", loss {loss:.4f}"))  # fmt: skip
