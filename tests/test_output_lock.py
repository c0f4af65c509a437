"""One run per output at a time (diversens.output_lock): a second run is refused in one line naming
the first, before Ray starts; a first run that died (SIGKILL: nothing released) is taken over; a
resumed output never mixes settings. Locally (flock) and at an S3 URI (moto's server: a record
with a heartbeat, and a stale timeout)."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diversens import config, output_lock
from diversens.commands.common import connect_ray
from diversens.commands.options import RunOptions
from diversens.errors import UserError
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import scored_fingerprint
from diversens.output_lock import LOCK_FILE, STALE_S, Claim, OutputLock

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
HOST = socket.gethostname()
HOLDER = """
import sys
from diversens.output_lock import Claim, OutputLock
OutputLock(Claim(sys.argv[1], "dir", "generate-pairs", "fp-a")).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def _released():
    yield
    output_lock.release_all()  # what `connect_ray` took, as the CLI does at the end


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of the output tmp_path/run, until it is killed."""
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "held\n"
    yield out, proc
    proc.kill()
    proc.wait()


def record(location: str) -> dict:
    fs, path = output_lock.filesystem(location)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def put_record(location: str, **fields) -> None:
    fs, path = output_lock.filesystem(location)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({"command": "generate-pairs", "started": 0, "released": False,
                            "run": "other", **fields}).encode())  # fmt: skip


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_a_second_run_is_refused_naming_the_first_and_takes_over_once_it_died(holder, caplog):
    out, proc = holder
    second = OutputLock(Claim(str(out), "dir", "generate-pairs", "fp-a"))
    with pytest.raises(UserError) as e:
        second.acquire()
    assert str(e.value).startswith(f"output {out}: in use by another run (generate-pairs, pid "
                                   f"{proc.pid} on host {HOST}, since 20")  # fmt: skip
    assert str(e.value).endswith("UTC); wait for it to end, or name another output")
    proc.kill()  # SIGKILL: the first run releases nothing
    proc.wait()
    second.acquire()
    assert f"(generate-pairs, pid {proc.pid} on host {HOST}" in caplog.text
    assert "is gone; this run takes it over" in caplog.text
    assert record(str(out / LOCK_FILE))["pid"] == os.getpid()
    second.release()
    assert record(str(out / LOCK_FILE))["released"] is True


def test_the_lock_is_taken_before_ray_starts(holder):
    """`connect_ray` takes the run's claim first: refused, it never reaches `ray.init` (which
    fails this test, conftest)."""
    out, proc = holder
    with pytest.raises(
        UserError, match=rf"in use by another run \(generate-pairs, pid {proc.pid} "
    ):
        connect_ray(RunOptions(output=str(out)), claim=Claim(str(out), "dir", "generate-pairs"))


def test_a_resumed_output_never_mixes_settings(tmp_path):
    out = tmp_path / "run"
    out.mkdir()

    def run(command: str, fingerprint: str, work: bool = True) -> None:
        lock = OutputLock(Claim(str(out), "dir", command, fingerprint))
        lock.acquire()
        if work:
            lock.begin_work()
        lock.release()

    run("generate-pairs", "fp-a", work=False)  # refused by a later check: fixes nothing
    assert not (out / LOCK_FILE).exists()
    run("generate-pairs", "fp-b")  # the first run that works: the output holds fp-b
    run("generate-pairs", "fp-b")  # resumed
    with pytest.raises(UserError, match=rf"^output {out}: holds a generate-pairs run with other "
                       r"settings \(fingerprint fp-b, this run's fp-a\); rerun with those"):  # fmt: skip
        run("generate-pairs", "fp-a")
    with pytest.raises(UserError, match="holds the results of a generate-pairs run; name another "
                       "output for this eval run"):  # fmt: skip
        run("eval", "fp-b")
    assert record(str(out / LOCK_FILE))["holds"]["fingerprint"] == "fp-b"  # refusals change none


def test_generate_pairs_with_another_temperature_is_refused_before_ray(tmp_path):
    """The case reported: generate-pairs A, then B with another temperature into its output."""
    tiny = config.load(GeneratePairsConfig, TINY, None, section="pairs")
    hotter = dataclasses.replace(tiny, sampling=dataclasses.replace(tiny.sampling,
                                                                    temperature=1.3))  # fmt: skip
    out = tmp_path / "run"
    out.mkdir()
    a = OutputLock(Claim(str(out), "dir", "generate-pairs", scored_fingerprint(tiny)))
    a.acquire()
    a.begin_work()
    a.release()
    b = Claim(str(out), "dir", "generate-pairs", scored_fingerprint(hotter))
    with pytest.raises(UserError, match="holds a generate-pairs run with other settings"):
        connect_ray(RunOptions(output=str(out)), claim=b)


@pytest.mark.slow  # resolves the built-in model (no Ray: the address given answers nothing)
def test_a_run_that_fails_once_it_holds_the_lock_gives_it_back(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "diversens.cli", "generate-pairs", str(src), "--config",
            str(TINY), "-o", str(out), "--ray_address", "127.0.0.1:1"]  # fmt: skip
    # A process of its own: in this one an earlier test's Ray may be connected already, and a
    # connected process never reads --ray_address.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "option --ray_address 127.0.0.1:1: no Ray cluster answers" in proc.stderr
    assert list(out.iterdir()) == []  # the record it made and never worked under is gone
    again = OutputLock(Claim(str(out), "dir", "generate-pairs", "fp-a"))
    again.acquire()  # refused if the failed run still held it (flock: this very process)
    again.release()


def test_a_lock_at_an_s3_uri_has_a_heartbeat_and_a_stale_timeout(bucket, monkeypatch):
    monkeypatch.setattr(output_lock, "SETTLE_S", 0)
    out = f"{bucket}/run"
    where = f"{out}/{LOCK_FILE}"
    claim = Claim(out, "dir", "generate-pairs", "fp-a")
    first = OutputLock(claim)
    first.acquire()
    assert first._beat.is_alive()
    with pytest.raises(UserError, match=rf"^output {out}: in use by another run \(generate-pairs, "
                       rf"pid {os.getpid()} on host {HOST}, since "):  # fmt: skip
        OutputLock(claim).acquire()
    first.begin_work()
    beat = record(where)["heartbeat"]
    first.beat()
    assert record(where)["heartbeat"] > beat
    first.release()
    assert record(where)["released"] is True and not first._beat.is_alive()

    # Another host's run: alive while its heartbeat is recent, dead once it is STALE_S old.
    holds = {"command": "generate-pairs", "fingerprint": "fp-a"}
    put_record(where, pid=1, host="elsewhere", heartbeat=time.time(), holds=holds)
    with pytest.raises(UserError, match=r"in use by another run \(generate-pairs, pid 1 on host "
                       "elsewhere, since 1970-01-01 00:00:00 UTC\\)"):  # fmt: skip
        OutputLock(claim).acquire()
    put_record(where, pid=1, host="elsewhere", heartbeat=time.time() - STALE_S - 1, holds=holds)
    taker = OutputLock(claim)
    taker.acquire()
    taker.release()
    # This host's run whose process is gone is dead at once, whatever its heartbeat.
    put_record(where, pid=dead_pid(), host=HOST, heartbeat=time.time(), holds=holds)
    taker = OutputLock(claim)
    taker.acquire()
    taker.release()
    with pytest.raises(UserError, match="holds a generate-pairs run with other settings"):
        OutputLock(dataclasses.replace(claim, fingerprint="fp-b")).acquire()


def test_of_two_runs_writing_an_s3_lock_at_once_the_last_write_holds_it(bucket, monkeypatch):
    """No create-if-absent at an object store: a run reads its record back after SETTLE_S, and
    one overwritten meanwhile is refused naming the run that wrote last."""
    out = f"{bucket}/run"
    late = {"pid": 7, "host": "elsewhere", "heartbeat": time.time()}
    monkeypatch.setattr(
        output_lock.time, "sleep", lambda s: put_record(f"{out}/{LOCK_FILE}", **late)
    )
    with pytest.raises(UserError, match=r"in use by another run \(generate-pairs, pid 7 on host "):
        OutputLock(Claim(out, "dir", "generate-pairs")).acquire()
