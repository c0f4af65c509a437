"""A training run is never silent for long (a million pairs printed nothing for 300 s): rank 0's
step lines reach the console through the driver, TRL's passes over the pairs say how far they
are, and the optimiser steps say theirs."""

import logging
from types import SimpleNamespace

from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from diversens import console
from diversens.training import progress


def test_a_workers_step_lines_reach_the_console_and_the_rest_its_log(tmp_path, caplog):
    path = console.workers_to(tmp_path / "logs" / "workers.log")
    try:
        with caplog.at_level(logging.INFO, logger="diversens"):
            dispatcher.emit({"pid": 7, "ip": "h", "actor_name": "RayTrainWorker",
                             "lines": ["[diversens] train: step 3/9, 1.0 s/step", "deepspeed x"]})
            console.workers_to(None)  # an output at a URI: no workers.log, the steps still show
            lines = ["[diversens] train: step 9/9", "no file"]
            dispatcher.emit({"pid": 7, "ip": "h", "lines": lines})
    finally:
        console.workers_to(None)
    assert caplog.messages == ["train: step 3/9, 1.0 s/step", "train: step 9/9"]
    assert "deepspeed x" in path.read_text() and "no file" not in path.read_text()


def test_trls_passes_over_the_pairs_print_step_lines(capsys):
    from datasets import Dataset

    pairs = Dataset.from_list([{"prompt": str(i)} for i in range(300)])
    with progress.dataset_progress(every_s=3600):
        pairs.map(lambda row: {"n": len(row["prompt"])}, desc="Tokenizing train dataset")
    pairs.map(lambda row: {"n": 0}, desc="not inside")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[diversens] train: Tokenizing train dataset: 0/300 ")
    assert lines[-1].startswith("[diversens] train: Tokenizing train dataset: 300/300 ")
    assert len(lines) == 2 and "not inside" not in capsys.readouterr().err


def test_steps_say_where_they_are_at_most_every_ten_seconds(capsys):
    now = [0.0]
    steps = progress.StepProgress(every_s=10, clock=lambda: now[0])
    state = SimpleNamespace(global_step=0, max_steps=100, log_history=[])
    steps.on_train_begin(SimpleNamespace(get_warmup_steps=lambda n: 10), state, None)
    for step in range(1, 101):
        now[0] += 2.0
        state.global_step = step
        if step == 50:
            state.log_history.append({"loss": 0.6931, "step": 50})
        steps.on_step_end(None, state, None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[diversens] train: step 1/100, 2.0 s/step"
    assert lines[5] == "[diversens] train: step 26/100, 2.0 s/step"  # 10 s apart
    assert lines[-1] == "[diversens] train: step 100/100, 2.0 s/step, loss 0.6931"
    assert len(lines) == 21  # steps 1, 6, ..., 96 and the last


def test_a_warm_up_that_takes_every_step_is_said(capsys, tmp_path):
    """Linear warm-up starts at rate 0: with max_steps 1 and the default warmup_ratio the one
    step changes nothing, which a smoke test would otherwise not notice."""
    from transformers import TrainingArguments

    for max_steps, warmup, warned in [(1, 0.1, True), (4, 0.5, False), (1, 0.0, False)]:
        args = TrainingArguments(output_dir=str(tmp_path), warmup_steps=warmup, use_cpu=True)
        state = SimpleNamespace(global_step=0, max_steps=max_steps, log_history=[])
        progress.StepProgress().on_train_begin(args, state, None)
        out = capsys.readouterr().out
        assert ("warm-up takes all 1 step(s)" in out) is warned, (max_steps, warmup, out)
