"""What a run prints, and where its details go.

The console keeps this project's step lines (logger "diversens", INFO), WARNING and above from Ray,
Ray Data and Ray Train, and Ray Data's progress bars on a terminal (they redraw in place).
Everything below WARNING (Ray's start-up notes, Ray Data's plans and, off a terminal, its progress
logged every minute) and Python warnings go to the run's log file; of that progress, the console
gets one line a minute, the rows each step has done. Engines and trainers print inside Ray's
workers; that output goes to `workers.log` beside it (`workers_to`). A record logged with
`extra=FILE_ONLY` goes to the log file only. Only the CLI edge calls this module: the library just
logs.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


FILE_ONLY = {"file_only": True}
PROGRESS_LOGGER = "ray.data._internal.progress.logging_progress"  # Ray Data, off a terminal
PROGRESS_EVERY_S = 60
LOGGED = (*RAY_LOGGERS, "py.warnings", "diversens")  # what the run's log file receives
# Ray's notices that are not warnings about this run: the log file keeps them, the console not.
# Ray Data warns a dataset "will hang" whenever no CPU is free the moment it starts, which is
# the normal state while this run's own pools hold the CPUs (they are checked to fit before
# start, and a starved step still gets Ray Data's separate "may hang forever" warning).
NOTICES = (
    "Token authentication is enabled for this Ray cluster",
    "currently does not have any available CPUs",
    # Ray Data's memory note at a dataset's end (a pool's peak against the memory it asked for,
    # with a figure to ask instead; the pools' requests are measured peaks, README) and its
    # "Found N issues" line: sizing notes. Its warning while a dataset runs (a pool above its
    # request) stays on the console, once (`_FirstOfEach`).
    "logical memory was",
    "To disable issue detection",
)


class _Held(logging.Handler):
    """The last records before the log file opens (bounded: a run may never open one)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=10_000)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_early = _Held()
_sink = None  # the open workers.log
_stopped: list[str] = []  # why a log file stopped: the store under it failed (`logs_stopped`)
_handle_error = logging.Handler.handleError


def _stop_on_fault(error: BaseException, path: str | Path | None) -> bool:
    """True, and the reason kept for `logs_stopped`, if `error` is the fault of the store under
    the log file at `path` (`storage.fault`: a full disk, permission lost)."""
    from diversens.storage import fault

    found = fault(error, *([path] if path else []), doing="write the log")
    if found is not None and not _stopped:
        _stopped.append(str(found))
    return found is not None


def _handle_log_error(handler: logging.Handler, record: logging.LogRecord) -> None:
    """`logging.Handler.handleError` for every handler of the run (this run's log file, Ray
    Data's): a store that fails under a log file stops that handler, without Python's
    "--- Logging error ---" traceback for each record (38 lines on a disk that filled mid-run);
    the run goes on, and its next output write names the store if it stays full."""
    if _stop_on_fault(sys.exc_info()[1], getattr(handler, "baseFilename", None)):
        handler.setLevel(logging.CRITICAL + 1)
    else:
        _handle_error(handler, record)


def stop_logs_on_faults() -> None:
    """From now on a store that fails under a log file stops that log (`_handle_log_error`)."""
    _stopped.clear()
    logging.Handler.handleError = _handle_log_error


def logs_stopped() -> str | None:
    """Why the run's logs end early (the store under them failed), or None."""
    return _stopped[0] if _stopped else None


class _ProgressLines(logging.StreamHandler):
    """Off a terminal Ray Data logs a progress block per interval (to the log file); of each,
    the console gets one line, the rows out of every step, once any are done:
    "progress: SampleStage 24/48 · MeasureStage 24/48 · QualityStage 0 · validity_batch 0"."""

    STEP = re.compile(r"^(?:\w+\()?([^():]+)\)?: (\d+)/(\S+)$")  # "MapBatches(X): 24/48"

    def __init__(self, stream):
        super().__init__(stream)
        self.steps: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("=") and "Running Dataset" in message:
            self.steps = []
        elif message and set(message) == {"="}:
            if any(done != "0" for _, done, _ in self.steps):
                parts = [f"{name} {done}" + ("" if (done, total) == ("0", "1") else f"/{total}")
                         for name, done, total in self.steps]  # fmt: skip
                self.stream.write(f"[diversens] progress: {' · '.join(parts)}\n")
                self.flush()
        elif (step := self.STEP.match(message)) and step.group(1) != "Total Progress":
            self.steps.append(step.groups())


def _not_a_notice(record: logging.LogRecord) -> bool:
    return not any(notice in record.getMessage() for notice in NOTICES)


class _FirstOfEach(logging.Filter):
    """Ray Data's issue detectors repeat a warning every 30 s while it holds (a pool above its
    memory request: 13 lines each time, 100 an hour in a long run): the console shows each
    kind once per run (its words up to the first figure: "Operator 'X' uses "), the log file
    every one."""

    ISSUES = "ray.data._internal.issue_detection"

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.ISSUES):
            return True
        kind = re.split(r"\d", " ".join(record.getMessage().split()), maxsplit=1)[0]
        new = kind not in self.seen
        self.seen.add(kind)
        return new


_first_of_each = _FirstOfEach()


def quiet() -> None:
    """Before Ray starts: Ray's console handlers to WARNING (less its notices), warnings into
    logging, this project's step lines to stderr, and everything held until the log file opens
    (Ray's start-up lines come before the checks that decide whether a run starts at all)."""
    os.environ.setdefault("RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL", str(PROGRESS_EVERY_S))
    import ray.data  # noqa: F401 - sets up Ray Data's own handlers, adjusted below

    stop_logs_on_faults()

    _first_of_each.seen.clear()  # a new run: each kind of issue once on its console
    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.WARNING)
                handler.addFilter(_not_a_notice)
                handler.addFilter(_first_of_each)
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.propagate = False  # to the log file only, never to the console
    if not warnings_log.handlers:
        warnings_log.addHandler(logging.NullHandler())
    steps_to_console()
    for name in LOGGED:
        if _early not in logging.getLogger(name).handlers:
            logging.getLogger(name).addHandler(_early)
    progress = logging.getLogger(PROGRESS_LOGGER)
    if not any(isinstance(h, _ProgressLines) for h in progress.handlers):
        progress.addHandler(_ProgressLines(sys.stderr))


class _Stderr(logging.StreamHandler):
    """To whatever `sys.stderr` is when a record comes (a test's capture, a redirect)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def steps_to_console() -> logging.Logger:
    """This project's step lines (logger "diversens", INFO and up) on stderr, "[diversens] ..."
    (records with `extra=FILE_ONLY` excepted); returns the logger. Needs no Ray."""
    steps = logging.getLogger("diversens")
    steps.setLevel(logging.INFO)
    if not any(getattr(h, "diversens_console", False) for h in steps.handlers):
        console = _Stderr()
        console.setFormatter(logging.Formatter("[diversens] %(message)s"))
        console.diversens_console = True
        console.addFilter(lambda record: not any(getattr(record, k, False) for k in FILE_ONLY))
        steps.addHandler(console)
    return steps


class Progress:
    """Step lines of a loop over rows in the driver: "measure: 1,024/50,000 rows, 85 rows/s",
    after the first step, then at most one per `every_s` seconds, and after the last."""

    def __init__(self, what: str, total: int, every_s: float = 10.0, clock=time.monotonic):
        self.what, self.total, self.every_s, self.clock = what, total, every_s, clock
        self.done, self.start, self.last = 0, clock(), None
        self.log = logging.getLogger("diversens")

    def add(self, rows: int) -> None:
        self.done += rows
        now = self.clock()
        if self.last is None or now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            speed = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
            self.log.info("%s: %s/%s rows, %s rows/s", self.what, f"{self.done:,}",
                          f"{self.total:,}", speed)  # fmt: skip


def log_to(path: Path) -> Path:
    """Everything the loggers above see, from INFO, into `path`, starting with what they saw
    before it opened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    for name in LOGGED:
        logging.getLogger(name).removeHandler(_early)
        logging.getLogger(name).addHandler(handler)
    while _early.records:
        handler.handle(_early.records.popleft())
    return path


def workers_to(path: Path | None) -> Path | None:
    """Ray workers' stdout and stderr (engines, trainers: vLLM, DeepSpeed, torch), streamed to
    the driver by `ray.init(log_to_driver=True)`, and the raylet's messages about them (an
    actor killed, a task retried: "There are 3 retries remaining"), into `path` instead of the
    console; the autoscaler's events (nodes added or removed) and the lines a worker marks as
    step lines (`WORKER_STEP`: training's progress) stay on the console as step lines. With no
    path, the rest stays in Ray's session logs only."""
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    global _sink
    dispatcher.remove_handler("ray_print_logs")  # Ray's own: prints every line to the console
    dispatcher.remove_handler("diversens_workers")
    if _sink is not None:
        _sink.close()
        _sink = None
    # The driver's error listener prints the raylet's messages through this module function,
    # past the dispatcher (Ray's own handler holds the original, bound at ray.init).
    ray_print = getattr(ray_worker.print_to_stdstream, "ray_print", ray_worker.print_to_stdstream)
    ray_worker.print_to_stdstream = _raylet_messages_to(None, ray_print)
    if path is None:
        dispatcher.add_handler("diversens_workers", _relay_steps)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = _sink = path.open("a", encoding="utf-8", buffering=1)
    steps = logging.getLogger("diversens")
    stopped = False

    def write(data: dict) -> None:
        nonlocal stopped
        if data.get("pid") == "autoscaler":  # the monitor's log: of it, the events only
            for event in ray_worker.filter_autoscaler_events(data.get("lines", [])):
                if not event.startswith("Tip: "):
                    steps.info("autoscaler: %s", event.strip())
            return
        _relay_steps(data)
        if stopped:
            return
        who = data.get("actor_name") or data.get("task_name") or "worker"
        prefix = f"({who} pid={data.get('pid')}, ip={data.get('ip')}) "
        try:
            sink.writelines(prefix + line + "\n" for line in data.get("lines", []))
        except OSError as e:  # raised on, it would end Ray's log thread with a console line
            stopped = _stop_on_fault(e, path)
            if not stopped:
                raise
            with contextlib.suppress(OSError):
                sink.close()  # closed now, not at exit with "Exception ignored" lines

    dispatcher.add_handler("diversens_workers", write)
    ray_worker.print_to_stdstream = _raylet_messages_to(write, ray_print)
    return path


# A line a Ray worker prints starting with this is a step line of the run: the driver shows it
# on the console (`workers_to`), without the mark; the worker's other output goes to workers.log.
WORKER_STEP = "[diversens] "


def _relay_steps(data: dict) -> None:
    steps = logging.getLogger("diversens")
    for line in data.get("lines", []):
        if line.startswith(WORKER_STEP):
            steps.info("%s", line.removeprefix(WORKER_STEP))


def _raylet_messages_to(write, ray_print):
    """Ray's `print_to_stdstream` with the raylet's messages (pid "raylet") sent to `write`,
    or dropped for None; anything else printed as Ray would."""

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            ray_print(data, ignore_prefix)
        elif write is not None:
            write(data)

    print_to_stdstream.ray_print = ray_print
    return print_to_stdstream


def run_log(output: str | Path) -> Path | None:
    """The log file of a run writing to `output` (a local directory); None for a URI."""
    from diversens.storage import is_uri

    return None if is_uri(str(output)) else Path(output) / "logs" / "diversens.log"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`signum`), raised where the program is, like Ctrl-C's
    KeyboardInterrupt."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = signum


STOPS = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}
SIGNALS = (signal.SIGINT, *STOPS)  # what the CLI takes over while it runs
_handlers: dict[int, object] = {}  # what the CLI installed, while it runs


def stopped_by(e: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped a run, for its one line, and its exit code: 128 + the signal, as shells
    report it (130 for Ctrl-C)."""
    if isinstance(e, Terminated):
        return STOPS[e.signum], 128 + e.signum
    return "interrupted", 128 + signal.SIGINT


def on_sigterm(install: bool = True) -> None:
    """SIGTERM and SIGHUP (a closed terminal, `kill -HUP`) raise `Terminated` in the main thread
    (the CLI's `main`, while it runs), as Ctrl-C raises KeyboardInterrupt; a second one while
    the run winds down ends the process at once (exit 128 + the signal). Ctrl-C does so even
    where SIGINT came ignored (a job a script started with `&`); SIGHUP stays ignored under
    `nohup`. `install=False` forgets them. `reclaim_sigterm` puts them back after `ray.init`,
    which sets its own SIGTERM handler (an exit without cleanup) and whose core worker installs
    a native one that prints a stack dump."""

    def terminate(signum, frame):
        for stop in STOPS:
            signal.signal(stop, lambda again, _: os._exit(128 + again))
        raise Terminated(signum)

    _handlers.clear()
    if install:
        _handlers[signal.SIGINT] = signal.default_int_handler
        for stop in STOPS:
            if stop != signal.SIGHUP or signal.getsignal(stop) != signal.SIG_IGN:
                _handlers[stop] = terminate
    reclaim_sigterm()


def reclaim_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        for signum, handler in _handlers.items():
            signal.signal(signum, handler)


# Ray's core worker in the driver writes its ERROR lines straight to stderr (fd 2), past Python's
# logging. Lines holding one of these are no news about the run: they go to the log file.
NATIVE_NOTICES = (
    # Ray Data hands every actor pool its stage and context as object refs that the driver
    # holds while the dataset runs, so a restarted actor finds them; Ray's core worker still
    # warns of ray-project/ray#53727 once per process for a pool with max_restarts != 0.
    "has constructor arguments in the object store and max_restarts > 0",
)
# The filter: a child process (it outlives a crash of the driver, so a fatal error's dump still
# reaches the console) that ignores Ctrl-C, SIGTERM and SIGHUP (sent to the whole process group:
# the driver's one line still passes through it) and ends when the driver's stderr closes. A
# partial line passes at once (progress bars redraw without a newline) unless it may be the
# start of a native log line ("[2026-...").
_FILTER = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
out, notices = int(sys.argv[1]), [n.encode() for n in sys.argv[3:]]
log = open(sys.argv[2], "ab", buffering=0)
held = b""
while chunk := os.read(0, 1 << 16):
    *lines, held = (held + chunk).split(b"\n")
    for line in lines:
        if not any(n in line for n in notices):
            os.write(out, line + b"\n")
        elif not log.closed:
            try:
                os.write(log.fileno(), line + b"\n")
            except OSError:  # the log's disk is full: notices are dropped, the rest still passes
                log.close()
    if held and not (held.startswith(b"[20") or b"[20".startswith(held)):
        os.write(out, held)
        held = b""
if held:
    os.write(out, held)
"""
_native = None  # (the filter process, the driver's own stderr)


def native_notices_to(path: Path | None) -> None:
    """Lines of NATIVE_NOTICES that native code writes to this process's stderr go to `path`
    from now on, the rest to the console as before; None: stop filtering, once all written
    (the CLI's `main` does at its end, so in-process callers get their stderr back; also at
    exit)."""
    import atexit
    import subprocess

    global _native
    if _native is not None:
        process, saved = _native
        _native = None
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the filter drains it and ends
        os.close(saved)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    if path is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    process = subprocess.Popen(
        [sys.executable, "-c", _FILTER, str(saved), str(path), *NATIVE_NOTICES],
        stdin=subprocess.PIPE, pass_fds=(saved,),
    )  # fmt: skip
    os.dup2(process.stdin.fileno(), 2)
    process.stdin.close()
    _native = process, saved
    atexit.unregister(native_notices_to)
    atexit.register(native_notices_to, None)  # the CLI stops it itself; for other callers


SHUTDOWN_S = 60  # at most this long from an interrupted run's line to the end of the process


def last_line_said() -> None:
    """After an interruption's one line, what the process writes while Ray winds down goes to
    workers.log (nowhere for a run without one), at the file descriptors: such as its core
    worker's native "Failed to push error to driver", each second once the same signal stopped
    the GCS. Only a process's own stdout moves: a caller's capture (a test, a notebook) is left
    alone."""
    if sys.stdout is not sys.__stdout__:
        return
    native_notices_to(None)
    sys.stdout.flush()
    sys.stderr.flush()
    target = _sink if _sink is not None else open(os.devnull, "w")  # open until the exit
    for fd in (1, 2):
        os.dup2(target.fileno(), fd)


def bounded_exit(code: int, seconds: float = SHUTDOWN_S) -> None:
    """After an interruption: if the process is still there `seconds` from now, its main thread
    done (the CLI returned), it ends with `code`: Ray's shutdown at exit, or a worker thread
    the interpreter waits for, may wait on a GCS or raylet that the same Ctrl-C stopped (it
    reaches the whole process group). Parts and summaries were written atomically before, so
    nothing is lost. An in-process caller still running (a test) is left alone."""

    def end() -> None:
        if threading.main_thread().is_alive():
            return
        sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()


def _as_typed(error: UnicodeEncodeError) -> tuple[bytes, int]:
    """Encoding error handler of the console streams: a lone surrogate that stands for a byte
    of a file name the locale could not decode (PEP 383, as under LC_ALL=C) is written as that
    byte, so the name reads as it was typed; any other character the stream cannot encode as
    a \\uXXXX escape, as Python's default does."""
    chunk = error.object[error.start : error.end]
    out = b"".join(bytes([ord(c) - 0xDC00]) if "\udc80" <= c <= "\udcff"
                   else c.encode("ascii", "backslashreplace") for c in chunk)  # fmt: skip
    return out, error.end


codecs.register_error("diversens.as_typed", _as_typed)


def paths_as_typed() -> None:
    """stdout and stderr write file names as the user typed them (`_as_typed`)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="diversens.as_typed")


def writable_matplotlib_dir() -> None:
    """Where matplotlib cannot write its config and font cache (a read-only home, no home),
    it makes a temporary dir and warns twice as it loads, before the run's own lines: then
    MPLCONFIGDIR goes to a dir of this user's in the temp dir first, quietly (Ray workers this
    run starts inherit it). A font cache built there is kept for later runs."""
    if os.environ.get("MPLCONFIGDIR") or all(map(_can_write, _matplotlib_dirs())):
        return
    own = Path(tempfile.gettempdir()) / f"diversens-matplotlib-{os.getuid()}"
    with contextlib.suppress(OSError):
        own.mkdir(mode=0o700, exist_ok=True)
    safe = own.is_dir() and not own.is_symlink() and own.stat().st_uid == os.getuid()
    os.environ["MPLCONFIGDIR"] = str(own) if safe and _can_write(own) else tempfile.mkdtemp(
        prefix="diversens-matplotlib-")  # fmt: skip


def _matplotlib_dirs() -> list[Path | None]:
    """The dirs matplotlib writes its config and cache to (None: no home to find them in)."""
    try:
        home = Path.home()
    except RuntimeError:
        return [None]
    if not sys.platform.startswith(("linux", "freebsd")):
        return [home / ".matplotlib"]
    return [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config", "matplotlib"),
            Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache", "matplotlib")]  # fmt: skip


def _can_write(path: Path | None) -> bool:
    """`path` is a writable dir, or could be made in its nearest existing parent."""
    if path is None:
        return False
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)

