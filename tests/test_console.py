"""Where a run's output goes: worker output to OUT/logs/workers.log, Ray's start-up lines kept
for the log file that opens after them, autoscaler events on the console."""

import logging
import sys
import textwrap

import pytest
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from diversens import console


@pytest.fixture
def clean_logging():
    before = {name: list(logging.getLogger(name).handlers) for name in console.LOGGED}
    console._early.records.clear()  # what earlier in-process CLI runs left there
    yield
    for name, handlers in before.items():
        for handler in set(logging.getLogger(name).handlers) - set(handlers):
            logging.getLogger(name).removeHandler(handler)
            handler.close()
    console.workers_to(None)


def test_worker_lines_go_to_the_file_and_autoscaler_events_to_the_steps(
    tmp_path, caplog, monkeypatch
):
    import ray.autoscaler.v2.utils

    monkeypatch.setattr(ray.autoscaler.v2.utils, "is_autoscaler_v2", lambda: False)  # no GCS here
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
        # The monitor's log reaches the driver whole; v1 marks its events with a token.
        lines = ["2026-12-02 14:03:53,089\tINFO autoscaler.py:147 -- took 0.0 seconds",
                 "======== Autoscaler status: 2026-12-02 14:03:58 ========",
                 ":event_summary:Adding 1 node(s) of type gpu_1x."]  # fmt: skip
        dispatcher.emit({"pid": "autoscaler", "ip": "10.0.0.1", "is_err": False, "lines": lines})
    assert printed == []
    assert path.read_text().splitlines() == [
        "(MapWorker(SampleStage) pid=41, ip=10.0.0.2) INFO vllm engine up",
        "(MapWorker(SampleStage) pid=41, ip=10.0.0.2) x",
    ]
    assert caplog.messages == ["autoscaler: Adding 1 node(s) of type gpu_1x."]
    console.workers_to(None)
    dispatcher.emit({"pid": 41, "ip": "10.0.0.2", "lines": ["after"]})
    assert "after" not in path.read_text()


def test_the_raylets_messages_go_to_the_file_and_other_prints_as_ray_would(tmp_path, capsys):
    from ray._private import worker as ray_worker

    retried = "Task MapWorker.submit failed. There are 3 retries remaining"
    path = console.workers_to(tmp_path / "logs" / "workers.log")
    ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": [retried]}, False)
    ray_worker.print_to_stdstream({"pid": 7, "ip": "h", "is_err": False, "lines": ["own"]}, False)
    assert retried in path.read_text() and "own" not in path.read_text()
    printed = capsys.readouterr().out
    assert "own" in printed and "retries remaining" not in printed
    console.workers_to(None)  # no run log: the raylet's messages stay in Ray's logs
    ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": ["gone"]}, False)
    assert "gone" not in capsys.readouterr().out + path.read_text()
    assert not hasattr(ray_worker.print_to_stdstream.ray_print, "ray_print")  # never stacked


def test_lines_logged_before_the_log_file_opens_are_written_to_it(tmp_path, clean_logging):
    early = logging.LogRecord("ray", logging.WARNING, __file__, 1, "started %s", ("head",), None)
    console._early.handle(early)
    path = console.log_to(tmp_path / "logs" / "diversens.log")
    # The file handler itself: earlier in-process CLI runs may have left console handlers on
    # streams pytest has closed since.
    opened = [h for h in logging.getLogger("diversens").handlers
              if getattr(h, "baseFilename", None) == str(path)]  # fmt: skip
    after = logging.LogRecord(
        "diversens", logging.WARNING, __file__, 2, "after it opened", (), None
    )
    opened[0].handle(after)
    opened[0].flush()
    lines = path.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING ray: started head",
        "WARNING diversens: after it opened",
    ]
    assert not console._early.records


def test_off_a_terminal_the_console_gets_one_line_per_progress_block():
    import io

    def block(*steps):
        return ["======= Running Dataset: d_0 =======", "Total Progress: 0/?",
                "Active & requested resources: 2/2 CPU", "", *steps, "=" * 36]  # fmt: skip

    stream = io.StringIO()
    lines = console._ProgressLines(stream)
    blocks = [
        block("MapBatches(SampleStage): 0/1", "  Tasks: 1; Actors: 1", "MapBatches(f): 0/1"),
        block("MapBatches(SampleStage): 24/48", "  Tasks: 1; Actors: 1", "MapBatches(f): 0/1"),
    ]
    for message in blocks[0] + blocks[1]:
        lines.handle(
            logging.LogRecord(console.PROGRESS_LOGGER, logging.INFO, "", 0, message, (), None)
        )
    assert stream.getvalue() == "[diversens] progress: SampleStage 24/48 · f 0\n"


def test_the_console_drops_ray_datas_false_hang_warning_and_keeps_the_real_one():
    """Ray Data warns a dataset "will hang" whenever no CPU is free as it starts: the normal
    state while the run's own pools hold them. Its starvation warning can be true: it stays."""

    def shown(message: str) -> bool:
        record = logging.LogRecord("ray.data", logging.WARNING, __file__, 1, message, (), None)
        return console._not_a_notice(record)

    assert not shown("Warning: The Ray cluster currently does not have any available CPUs. "
                     "The Dataset job will hang unless more CPUs are freed up.")  # fmt: skip
    assert shown("Cluster resources are not enough to run any task from MapBatches(X). "
                 "The job may hang forever unless the cluster scales up.")  # fmt: skip
    # Ray Data's memory note at a dataset's end goes to the log; above-request while running stays
    assert not shown("\nOperator 'MapBatches(SampleStage)' used up to 4.5GiB of memory per\n"
                     "worker. The configured\nlogical memory was 5.0GiB. To avoid ...")  # fmt: skip
    assert not shown("Found 1 issues. To disable issue detection, run DataContext...")
    assert shown("\nOperator 'MapBatches(SampleStage)' uses 6GiB of memory per worker on average "
                 "(up to\n7GiB), but Ray only requests 5GiB per worker at the start")  # fmt: skip


def test_ray_datas_repeated_issue_warning_reaches_the_console_once_per_kind_and_run():
    """Ray Data's issue detectors log the same warning every 30 s while it holds, its figures
    (and so its line breaks) moving: the console handlers show each kind once a run."""
    console.quiet()
    handlers = [h for h in logging.getLogger("ray.data").handlers  # Ray Data's console
                if type(h).__name__ == "PlainRayHandler"]  # fmt: skip
    assert handlers and all(console._first_of_each in h.filters for h in handlers)

    def memory(op: str, avg: float, peak: float) -> str:
        text = (f"Operator '{op}' uses {avg}GiB of memory per worker on average (up to "
                f"{peak}GiB), but Ray only requests 5.0GiB per worker at the start")  # fmt: skip
        return "\n" + textwrap.fill(text, 60)

    first = console._FirstOfEach()
    issues = "ray.data._internal.issue_detection.issue_detector_manager"

    def shown(message: str, name: str = issues) -> bool:
        return first.filter(logging.LogRecord(name, logging.WARNING, __file__, 1, message, (), None))

    assert [shown(memory("MapBatches(SampleStage)", 5.0, 5.3)),
            shown(memory("MapBatches(SampleStage)", 10.25, 12.5)),  # wraps elsewhere
            shown(memory("MapBatches(QualityStage)", 5.0, 5.3)),
            shown(memory("MapBatches(SampleStage)", 5.0, 5.3))] == [True, False, True, False]  # fmt: skip
    # any other logger's record passes every time
    assert shown("Operator 'X' uses 1GiB", "ray.data") and shown("Operator 'X' uses 1GiB", "ray.data")
    console.quiet()  # the next run's console
    assert not console._first_of_each.seen


def test_ray_core_workers_notice_goes_to_the_log_file_and_other_stderr_stays(tmp_path):
    """Ray's C++ core worker writes its once-per-process warning about actor constructor
    arguments (harmless here: the driver holds them) to fd 2, past Python's logging: the line
    goes to the run's log file; anything else on fd 2, a partial progress redraw included,
    still reaches the console, in order; once stopped, stderr is the console's again."""
    import subprocess
    import sys

    log = tmp_path / "diversens.log"
    notice = ("[2026-12-03 17:45:40,466 E 7223 7223] core_worker.cc:2465: Actor with class name: "
              "'MapWorker(MapBatches(SampleStage))' and ID: 'bc7b' has constructor arguments in "
              "the object store and max_restarts > 0. If the arguments ...")  # fmt: skip
    code = f"""
import os, sys
from pathlib import Path
from diversens import console
console.native_notices_to(Path({str(log)!r}))
print("[diversens] a step line", file=sys.stderr)
os.write(2, {notice!r}.encode() + b"\\n")
os.write(2, b"[2026-12-03 17:45:41,000 E 1 1] gcs_client.cc:1: a real error\\n")
os.write(2, b"\\rRunning 5%")
console.native_notices_to(None)  # stopped (the CLI at its end): stderr is the console's again
os.write(2, b"\\nafter")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        b"[diversens] a step line\n"
        b"[2026-12-03 17:45:41,000 E 1 1] gcs_client.cc:1: a real error\n"
        b"\rRunning 5%\nafter"
    )
    assert log.read_text() == notice + "\n"


@pytest.mark.parametrize("hang", ["exit handler", "thread"])
def test_an_interrupted_run_ends_within_its_bound_even_if_shutdown_hangs(hang):
    """Ray's shutdown at exit (or a worker thread the interpreter waits for) may wait on a GCS
    the same Ctrl-C stopped: the process still ends, with the interrupted run's code."""
    import subprocess
    import sys
    import time

    stuck = ("import atexit, time; atexit.register(time.sleep, 60)" if hang == "exit handler"
             else "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()")  # fmt: skip
    code = f"{stuck}\nfrom diversens import console\nconsole.bounded_exit(130, seconds=1)\n"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=50)
    assert proc.returncode == 130 and time.monotonic() - start < 40, proc.stderr


def test_the_bound_leaves_an_in_process_caller_alone():
    import threading
    import time

    console.bounded_exit(130, seconds=0.05)
    time.sleep(0.3)  # the timer has fired by now; this process goes on
    assert threading.main_thread().is_alive()


def test_a_store_that_fails_under_the_log_files_stops_them_without_a_traceback(tmp_path):
    """A store that fails under the run's log files (here every write to a file fails: a file
    size limit of 0, EFBIG, as a full disk fails with ENOSPC): nothing on the console, neither
    Python's "--- Logging error ---" traceback for each record nor the notices filter's nor one
    at exit; other lines on fd 2 still pass, and why the logs stopped is kept for the CLI."""
    import subprocess

    logs = tmp_path / "logs"
    code = f"""
import logging, os, resource, signal
from pathlib import Path
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
from diversens import console
logs = Path({str(logs)!r})
console.steps_to_console()
console.stop_logs_on_faults()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
console.log_to(logs / "diversens.log")
console.workers_to(logs / "workers.log")
console.native_notices_to(logs / "native.log")
for i in range(20):
    logging.getLogger("diversens").info("step %d", i, extra=console.FILE_ONLY)
    dispatcher.emit({{"pid": 7, "ip": "h", "lines": ["engine line"] * 3}})
os.write(2, b"[2026-12-03 17:45:40,466 E 1 1] has constructor arguments in the object store "
            b"and max_restarts > 0\\nother\\n")
console.native_notices_to(None)
print(console.logs_stopped())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"other\n"
    assert proc.stdout.decode() == f"{logs}/diversens.log: cannot write the log (File too large)\n"
    assert {p.name: p.stat().st_size for p in logs.iterdir()} == {
        "diversens.log": 0,
        "workers.log": 0,
        "native.log": 0,
    }


def test_a_logging_error_of_the_program_still_shows(capsys, monkeypatch):
    monkeypatch.setattr(logging.Handler, "handleError", logging.Handler.handleError)  # restored
    console.stop_logs_on_faults()
    log = logging.getLogger("diversens-test-bad-format")
    log.propagate = False  # pytest's own capture handler raises on a bad record
    handler = logging.StreamHandler(sys.stdout)
    log.addHandler(handler)
    try:
        log.error("%d", "not a number")
    finally:
        log.removeHandler(handler)
    assert "--- Logging error ---" in capsys.readouterr().err
    assert console.logs_stopped() is None
