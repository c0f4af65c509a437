"""The lock a run holds on its output, and the settings whose results the output holds.

One run writes an output at a time: two runs into one output write the same final files
(scored/, pairs, summaries), and the one that ends last leaves its files over the other's while
both report success. A run takes the lock once its checks pass, before Ray starts (`hold`, from
diversens.commands.common.connect_ray), and gives it back when it ends, also on an error or a
signal (`release_all`, from the CLI). The lock's record is a JSON file, `.diversens-lock.json`
in an output directory (`.<stem>.lock.json` beside an output file): the command, pid, host and
start time of the run that holds it, its heartbeat, and whether it was released.

- A local output is locked with `flock` on the record: the kernel frees it when the process
  ends, however it ends (SIGKILL included), so a dead run's lock is taken over at once.
- At a URI (s3://, gs://) there is no lock to take: the record is written, read back after
  SETTLE_S (of two runs starting together the last write wins; the other is refused), and its
  heartbeat is refreshed every HEARTBEAT_S by a daemon thread. A record not released belongs
  to a live run unless its heartbeat is older than STALE_S, or it names this host and a pid
  that is gone.

A resumed output never mixes settings: the record keeps the command and fingerprint of the
first run that began work there (`begin_work`, once every check passed and Ray is up: a run
refused by a check fixes nothing), and a run of another command or fingerprint is refused.
A record that a run made and that never saw work is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

from diversens.config import redacted
from diversens.errors import UserError
from diversens.storage import filesystem, join, reason, split_location

LOCK_FILE = ".diversens-lock.json"
HEARTBEAT_S = 30.0
STALE_S = 300.0
SETTLE_S = 1.0
MAX_RECORD = 1 << 16  # bytes read of a record: a few hundred are ours
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A run's claim on its output (`kind` "dir", or "parquet" for one file): its command and
    the fingerprint of the settings that decide its resumable results (None: the command
    checks its own, as `train` does beside its checkpoints)."""

    output: str
    kind: str
    command: str
    fingerprint: str | None = None


def record_location(output: str, kind: str) -> str:
    """Where the lock record of `output` is: in the directory, or beside the file."""
    if kind == "dir":
        return join(output, LOCK_FILE)
    folder, name = split_location(output)
    return join(folder, f".{name.rpartition('.')[0] or name}.lock.json")


class OutputLock:
    """The lock of one run on one output: `acquire`, `begin_work`, `release`."""

    def __init__(self, claim: Claim):
        self.claim = claim
        self.location = record_location(claim.output, claim.kind)
        self.fs, self.path = filesystem(self.location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.record: dict = {}
        self.created = False  # no record was there before this run
        self.worked = False
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._mutex = threading.Lock()  # the heartbeat thread writes the record too

    def acquire(self) -> None:
        """Take the lock, or raise a UserError naming the run that holds it, or the settings
        the output holds results of when they are not this run's."""
        try:
            self._acquire()
        except BaseException:
            if self.created and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            self._unlock()
            raise

    def _acquire(self) -> None:
        earlier = self._lock_file() if self.local else self._read()
        self.created = earlier is None
        if not self.local and earlier and not earlier.get("released") and alive(earlier):
            raise UserError(self._in_use(earlier))
        self._check_holds(earlier)
        if earlier and not earlier.get("released"):
            log.warning("%s: the run that held it (%s) is gone; this run takes it over",
                        self._where(), holder(earlier))  # fmt: skip
        now = time.time()
        self.record = {"command": self.claim.command, "pid": os.getpid(),
                       "host": socket.gethostname(), "started": now, "heartbeat": now,
                       "released": False, "run": uuid.uuid4().hex,
                       "holds": (earlier or {}).get("holds")}  # fmt: skip
        self._write()
        if not self.local:
            self._settle()

    def begin_work(self) -> None:
        """The run's work starts: the output holds results of its settings from now on."""
        self.worked = True
        self._update(holds={"command": self.claim.command, "fingerprint": self.claim.fingerprint})

    def release(self) -> None:
        """Give the lock back (a record this run made and never worked under is removed).
        Never raises: the run's own outcome is what its end reports."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        try:
            if self.created and not self.worked:
                self.fs.delete_file(self.path)
            elif self.local or (self._read() or {}).get("run") == self.record["run"]:
                self._update(released=True)
        except (OSError, UserError) as e:  # a store gone: the next run takes a stale record
            log.debug("%s: not released (%s)", self.location, e)
        self._unlock()

    def beat(self) -> None:
        """Refresh the heartbeat of a record at a URI, unless another run has taken it over."""
        current = self._read()
        if (current or {}).get("run") != self.record["run"]:
            log.warning("%s: taken over by another run (%s), which took this run for dead",
                        self._where(), holder(current or {}))  # fmt: skip
            self._stop.set()
            return
        self._update(heartbeat=time.time())

    def _heartbeats(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError, UserError):  # a store away: the next beat retries
                self.beat()

    def _settle(self) -> None:
        """Object stores have no create-if-absent here: of two runs that wrote the record at
        once, the one whose write is there a moment later holds the lock."""
        time.sleep(SETTLE_S)
        current = self._read() or {}
        if current.get("run") != self.record["run"]:
            raise UserError(self._in_use(current))
        self._beat = threading.Thread(target=self._heartbeats, name="output-lock", daemon=True)
        self._beat.start()

    def _lock_file(self) -> dict | None:
        """flock the local record (made if missing), then return what it held before; a record
        removed while this run opened it is opened again."""
        try:
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holding = _parse(os.pread(fd, MAX_RECORD, 0))
                    os.close(fd)
                    raise UserError(self._in_use(holding or {})) from None
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                        self._fd = fd
                        return _parse(os.pread(fd, MAX_RECORD, 0))
                os.close(fd)
        except OSError as e:
            raise UserError(f"{self._where()}: cannot take the lock ({reason(e)})") from None

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # frees the flock
            self._fd = None

    def _read(self) -> dict | None:
        try:
            if self.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
                return None
            with self.fs.open_input_stream(self.path) as f:
                return _parse(f.read(MAX_RECORD))
        except FileNotFoundError:  # removed in between
            return None
        except OSError as e:
            raise UserError(f"{self._where()}: cannot read its lock ({reason(e)})") from None

    def _update(self, **changes) -> None:
        with self._mutex:
            self.record.update(changes)
            self._write()

    def _write(self) -> None:
        data = json.dumps(self.record).encode()
        try:
            if self._fd is not None:  # in place: the flock is on this file, not a new one
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, data, 0)
                return
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
        except OSError as e:
            raise UserError(f"{self._where()}: cannot write its lock ({reason(e)})") from None

    def _check_holds(self, earlier: dict | None) -> None:
        holds = (earlier or {}).get("holds")
        if not holds:
            return
        command = self.claim.command
        if holds.get("command") != command:
            raise UserError(f"{self._where()}: holds the results of a {holds.get('command')} "
                            f"run; name another output for this {command} run")  # fmt: skip
        theirs, ours = holds.get("fingerprint"), self.claim.fingerprint
        if theirs and ours and theirs != ours:
            raise UserError(
                f"{self._where()}: holds a {command} run with other settings "
                f"(fingerprint {theirs}, this run's {ours}); rerun with those settings to "
                "resume it, or name another output (or remove it to start over)"
            )

    def _in_use(self, record: dict) -> str:
        return (f"{self._where()}: in use by another run ({holder(record)}); wait for it to "
                "end, or name another output")  # fmt: skip

    def _where(self) -> str:
        return f"output {redacted(self.claim.output)}"


def holder(record: dict) -> str:
    """The run a record names: 'generate-pairs, pid 12 on host h, since 2026-12-06 10:00:00 UTC'."""
    if not record.get("pid"):
        return "unknown: its lock record is being written"
    since = datetime.datetime.fromtimestamp(_seconds(record, "started"), datetime.timezone.utc)
    return (f"{record.get('command', '?')}, pid {record['pid']} on host "
            f"{record.get('host', '?')}, since {since:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip


def alive(record: dict) -> bool:
    """Whether the run of a record not released still runs: on this host its pid decides,
    elsewhere a heartbeat of the last STALE_S."""
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True
    return time.time() - _seconds(record, "heartbeat") < STALE_S


def _seconds(record: dict, key: str) -> float:
    """A time of a record, in epoch seconds (0 where it has none)."""
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and abs(value) < 1e11 else 0.0


def _parse(data: bytes) -> dict | None:
    """A record, or None for none (empty, cut short, not ours)."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


_held: list[OutputLock] = []


def hold(claim: Claim) -> None:
    """Take the lock of `claim`, kept until `release_all`."""
    lock = OutputLock(claim)
    lock.acquire()
    _held.append(lock)


def begin_work() -> None:
    """The held locks' runs begin their work (see `OutputLock.begin_work`)."""
    for lock in _held:
        lock.begin_work()


def release_all() -> None:
    while _held:
        _held.pop().release()


def _forget_in_child() -> None:
    """A process forked without exec shares the locked file: its copy is closed, so the lock
    stays the parent's alone and ends with it."""
    for lock in _held:
        lock._unlock()
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
