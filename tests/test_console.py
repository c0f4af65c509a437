"""Where a run's output goes: worker output to OUT/logs/workers.log, Ray's start-up lines kept
for the log file that opens after them, autoscaler events on the console."""

import logging

import pytest
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from diversens import console


@pytest.fixture
def clean_logging():
    before = {name: list(logging.getLogger(name).handlers) for name in console.LOGGED}
    yield
    for name, handlers in before.items():
        for handler in set(logging.getLogger(name).handlers) - set(handlers):
            logging.getLogger(name).removeHandler(handler)
            handler.close()
    console.workers_to(None)


def test_worker_lines_go_to_the_file_and_autoscaler_events_to_the_steps(tmp_path, caplog):
    printed = []
    dispatcher.add_handler("ray_print_logs", printed.append)  # Ray's console printer
    path = console.workers_to(tmp_path / "logs" / "workers.log")
    dispatcher.emit(
        {
            "pid": 41,
            "ip": "10.0.0.2",
            "actor_name": "MapWorker(SampleStage)",
            "task_name": None,
            "is_err": True,
            "lines": ["INFO vllm engine up", "x"],
        }
    )
    with caplog.at_level(logging.INFO, logger="diversens"):
        dispatcher.emit({"pid": "autoscaler", "ip": "10.0.0.1", "is_err": False,
                         "lines": ["Adding 1 node(s) of type gpu_1x."]})  # fmt: skip
    assert printed == []
    assert path.read_text().splitlines() == [
        "(MapWorker(SampleStage) pid=41, ip=10.0.0.2) INFO vllm engine up",
        "(MapWorker(SampleStage) pid=41, ip=10.0.0.2) x",
    ]
    assert caplog.messages == ["autoscaler: Adding 1 node(s) of type gpu_1x."]
    console.workers_to(None)
    dispatcher.emit({"pid": 41, "ip": "10.0.0.2", "lines": ["after"]})
    assert "after" not in path.read_text()


def test_lines_logged_before_the_log_file_opens_are_written_to_it(tmp_path, clean_logging):
    early = logging.LogRecord("ray", logging.WARNING, __file__, 1, "started %s", ("head",), None)
    console._early.handle(early)
    path = console.log_to(tmp_path / "logs" / "diversens.log")
    logging.getLogger("diversens").warning("after it opened")
    for handler in logging.getLogger("diversens").handlers:
        handler.flush()
    lines = path.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING ray: started head",
        "WARNING diversens: after it opened",
    ]
    assert not console._early.records


def test_off_a_terminal_the_console_gets_the_total_progress_only():
    import io

    stream = io.StringIO()
    lines = console._ProgressLines(stream)
    for message in ["======= Running Dataset: d_0 =======", "Total Progress: 0/?",
                    "Total Progress: 36/48", "MapBatches(QualityStage): 36/48",
                    "Tasks: 1; Actors: 1; Queued blocks: 0"]:  # fmt: skip
        lines.handle(
            logging.LogRecord(console.PROGRESS_LOGGER, logging.INFO, "", 0, message, (), None)
        )
    assert stream.getvalue() == "[diversens] progress: 36/48 rows\n"
