"""A local Ray that a run starts (no cluster to join): a temp dir that leaves room for Ray's
socket paths, workers that know their own Ray, and daemons that end with the run, however it
ends.

Ray makes its Unix sockets under `$RAY_TMPDIR`, else (Linux) `$TMPDIR`, else /tmp; a path of a
Unix socket has at most 107 bytes, so a long temp dir failed in `ray.init` with a traceback.
Killed with SIGKILL, a run's GCS and raylet die with it (Ray's kernel fate-sharing), but the
raylet's dashboard and runtime-env agents stay up for a while more, waiting on the dead GCS:
a watcher process ends them, and the next run ends what a dead session still left. Its
daemons run in process groups of their own, so a signal to the run's group reaches the run alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

from diversens.errors import UserError

SOCKET_MAX = 107  # bytes in a Unix socket path (Linux's sun_path, less its NUL)
# The longest socket a local Ray makes below its temp dir (a 7-digit pid at most).
SOCKET_TAIL = len("/ray/session_2026-12-06_12-34-56_123456_4194304/sockets/plasma_store")
SHORT_TEMP = "/tmp"
SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")
CORE = ("gcs_server", "raylet")  # a session is alive while one of them runs
GRACE_S = 3.0  # from SIGTERM to SIGKILL
GCS_PORT = "RAY_GCS_SERVER_PORT"
log = logging.getLogger("diversens")
_watchers: list[subprocess.Popen] = []  # held: their pipes close only when this process ends


def prepare() -> None:
    """Before this process starts a local Ray: the daemons of dead sessions ended, and a temp
    dir too long for Ray's sockets replaced by /tmp for this run (one line), or refused."""
    end_dead_sessions()
    root, source = temp_root()
    room = SOCKET_MAX - SOCKET_TAIL
    if len(os.fsencode(root)) <= room:
        return
    if os.path.isdir(SHORT_TEMP) and os.access(SHORT_TEMP, os.W_OK | os.X_OK):
        os.environ["RAY_TMPDIR"] = SHORT_TEMP
        log.info("%s is too long for the socket paths Ray makes under it (%d bytes at most): "
                 "Ray's session files go under %s", source, room, SHORT_TEMP)  # fmt: skip
        return
    raise UserError(f"{source} ({len(os.fsencode(root))} bytes) is too long for the socket paths "
                    f"Ray makes under it ({room} bytes at most); set RAY_TMPDIR to a shorter "
                    "directory")  # fmt: skip


@contextlib.contextmanager
def own_addresses() -> Iterator[dict]:
    """While a local Ray starts: `ray.init` arguments that keep its workers on their own Ray.
    A worker that looks its Ray up (Ray's State API: Ray Train's placement-group cleaner asks it
    whether the run's controller is alive) took the Ray started last on the machine, and the
    State API's address that Ray records, 127.0.0.1:8265 even with no dashboard, is where the
    next Ray's dashboard listens: another run's Ray answered that the controller did not exist,
    and the cleaner removed this run's DPO workers mid-run. So its GCS is on a port chosen here,
    given to its workers as RAY_ADDRESS, and its dashboard's port is one of its own."""
    from ray._private.services import get_node_ip_address

    gcs, dashboard = free_port(), free_port()
    before = os.environ.get(GCS_PORT)
    os.environ[GCS_PORT] = str(gcs)  # read when Ray starts a head node
    try:
        yield {"runtime_env": {"env_vars": {"RAY_ADDRESS": f"{get_node_ip_address()}:{gcs}"}},
               "dashboard_port": dashboard}  # fmt: skip
    finally:
        if before is None:
            os.environ.pop(GCS_PORT, None)
        else:
            os.environ[GCS_PORT] = before


@contextlib.contextmanager
def own_process_groups() -> Iterator[None]:
    """While a local Ray starts: each of its daemons (GCS, raylet, and so the workers and engines
    the raylet starts) in a process group of its own, as Ray does on Windows wherever the kernel
    ends them with the run (fate-sharing). SIGTERM or SIGHUP to the run's process group (`kill
    -- -PGID`, a closed terminal) then reaches the run alone, which stops its job and ends its
    Ray in order, as on Ctrl-C (the daemons block SIGINT). Sent to them too, the raylet went down
    at once and Ray's core worker in the run ended it with exit code 1 before its line (CI)."""
    from ray._private import services, utils

    popen = services.ConsolePopen
    if not utils.detect_fate_sharing_support():  # a daemon must then stay in the run's group
        yield
        return

    class GroupPopen(popen):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = GroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def temp_root() -> tuple[str, str]:
    """The directory a local Ray makes its session under, as Ray picks it, and what set it."""
    if "RAY_TMPDIR" in os.environ:
        return os.environ["RAY_TMPDIR"], "$RAY_TMPDIR"
    if sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        return os.environ["TMPDIR"], "$TMPDIR"
    return SHORT_TEMP, SHORT_TEMP


def watch_started() -> None:
    """If this process started the Ray it is connected to (not a join), a process that ends
    that session's daemons once this one has ended, by any means: SIGKILL leaves no time for
    Ray's own shutdown. It waits on a pipe from this process, which closes only as it ends."""
    from ray._private import worker

    node = worker._global_node
    if node is None or not node.all_processes:  # joined: the cluster is not this run's
        return
    package = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
    _watchers.append(subprocess.Popen([sys.executable, "-m", __name__, node.session_name],
                                      stdin=subprocess.PIPE, env=env, start_new_session=True))


def end_dead_sessions() -> None:
    """End this user's processes of Ray sessions whose GCS and raylet are gone."""
    sessions = _sessions()
    alive = {s for s, procs in sessions.items() if any(_name(p) in CORE for p in procs)}
    _end([p for s, procs in sessions.items() if s not in alive for p in procs])


def end_session(session: str) -> None:
    """End this user's processes of `session`."""
    _end(_sessions().get(session, []))


def _sessions() -> dict[str, list[psutil.Process]]:
    """This user's processes (but this one) by the Ray session their command line names."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["uids", "cmdline"]):
        uids, cmdline = proc.info["uids"], proc.info["cmdline"]
        if proc.pid == os.getpid() or not cmdline or uids is None or uids.real != os.getuid():
            continue
        if session := SESSION.search(" ".join(cmdline)):
            found.setdefault(session.group(), []).append(proc)
    return found


def _name(proc: psutil.Process) -> str:
    try:
        return Path(proc.cmdline()[0]).name
    except (psutil.Error, IndexError):
        return ""


def _end(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(procs, timeout=GRACE_S)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":  # the watcher: a session of its own, so no Ctrl-C reaches it
    sys.stdin.buffer.read()  # returns when the run's process has ended
    end_session(sys.argv[1])
