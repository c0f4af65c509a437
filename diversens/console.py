"""What a run prints, and where its details go.

The console keeps this project's step lines (logger "diversens", INFO), WARNING and above from
Ray, Ray Data and Ray Train, and Ray Data's progress bars on a terminal (they redraw in place).
Everything below WARNING (Ray's start-up notes, Ray Data's plans and, off a terminal, its progress
logged every 10 s) and Python warnings go to the run's log file. Engines and trainers log inside
Ray's workers; `connect_ray` keeps that output in Ray's session logs (the log file says where).
Only the CLI edge calls this module: the library just logs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet() -> None:
    """Before Ray starts: Ray's console handlers to WARNING, warnings into logging, and this
    project's step lines to stderr."""
    import ray.data  # noqa: F401 - sets up Ray Data's own handlers, adjusted below

    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.propagate = False  # to the log file only, never to the console
    if not warnings_log.handlers:
        warnings_log.addHandler(logging.NullHandler())
    steps = logging.getLogger("diversens")
    steps.setLevel(logging.INFO)
    if not any(getattr(h, "diversens_console", False) for h in steps.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[diversens] %(message)s"))
        console.diversens_console = True
        steps.addHandler(console)


def log_to(path: Path) -> Path:
    """Everything the loggers above see, from INFO (DEBUG for this project), into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    for name in (*RAY_LOGGERS, "py.warnings", "diversens"):
        logging.getLogger(name).addHandler(handler)
    return path


def run_log(output: str | Path) -> Path | None:
    """The log file of a run writing to `output` (a local directory); None for a URI."""
    from diversens.storage import is_uri

    return None if is_uri(str(output)) else Path(output) / "logs" / "diversens.log"
