"""Signals and the environment a run meets (issue 37, class 8): SIGHUP takes SIGTERM's path,
Ctrl-C always interrupts, a read-only home or a C locale changes nothing the user sees but the
error itself, and a model path cut at a comma is named as such. No Ray starts here."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from diversens.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# A command whose work is to receive a signal (argv[1]) from its own process.
SIGNALLED = """
import os, signal, sys
from diversens import cli
from diversens.commands import measure

def run(args):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    print("went on", file=sys.stderr)

measure.run = run
sys.exit(cli.main(["measure", "in.jsonl"]))
"""


def signalled(name: str, ignored: int | None = None) -> subprocess.CompletedProcess:
    """Run SIGNALLED with signal `name`, starting with signal `ignored` ignored (as `nohup`, or
    a shell's background job, leaves it)."""

    def start():  # the signals' defaults, whatever this test run inherited (nohup, `&`)
        for sig in (signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN if sig == ignored else signal.SIG_DFL)

    return subprocess.run([sys.executable, "-c", SIGNALLED, name], capture_output=True, text=True,
                          timeout=120, preexec_fn=start, cwd=ROOT)  # fmt: skip


def test_sighup_stops_a_run_like_sigterm_and_nohup_still_ignores_it():
    proc = signalled("SIGHUP")
    assert proc.returncode == 129, proc
    assert proc.stderr.splitlines() == ["diversens measure: hung up (SIGHUP); nothing was written"]
    under_nohup = signalled("SIGHUP", ignored=signal.SIGHUP)
    assert under_nohup.returncode == 0 and under_nohup.stderr == "went on\n", under_nohup


def test_ctrl_c_interrupts_a_run_that_started_with_sigint_ignored():
    """A job a script starts with `&` inherits SIGINT ignored: `kill -INT` let it run on."""
    proc = signalled("SIGINT", ignored=signal.SIGINT)
    assert proc.returncode == 130, proc
    assert proc.stderr.splitlines() == ["diversens measure: interrupted; nothing was written"]


def test_ray_trains_fit_runs_off_the_main_thread_where_ctrl_c_interrupts_the_wait():
    """Ray Train's fit installs a SIGINT handler of its own when on the main thread (a Ctrl-C
    then only asks the run to abort, and a later one in the same process was swallowed)."""
    from diversens.training.trainer import off_the_main_thread

    # Python's own Ctrl-C handler, also where this test run inherited SIGINT ignored (`&`).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    started, release = threading.Event(), threading.Event()

    def fit():
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda *_: None)  # as Ray Train's fit does there
        started.set()
        release.wait(60)

    def ctrl_c():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            off_the_main_thread(fit)
    finally:
        release.set()
        restored = signal.signal(signal.SIGINT, outer)
    assert restored is before
    assert off_the_main_thread(lambda: threading.current_thread().name) == "ray-train-fit"
    with pytest.raises(ValueError, match="inside"):
        off_the_main_thread(lambda: (_ for _ in ()).throw(ValueError("inside")))


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diversens.cli", *args], capture_output=True,
                          timeout=120, env={**os.environ, **env}, cwd=ROOT)  # fmt: skip


def test_a_read_only_home_leaves_only_the_runs_own_error(tmp_path):
    """matplotlib (loaded with the commands) wrote two lines where it could not write its
    config dir, before the real error."""
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"  # under a file: nothing can be made there, even as root
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPLCONFIGDIR", "XDG_"))}
    proc = subprocess.run([sys.executable, "-m", "diversens.cli", "measure", "missing.jsonl"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**env, "HOME": str(home)})  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["diversens measure: error: missing.jsonl: no such file"]


def test_file_names_are_printed_as_typed_under_a_c_locale(tmp_path):
    """Without UTF-8 (LC_ALL=C, UTF-8 mode off) the name's bytes came out as \\udcc3 escapes."""
    name = os.fsencode(tmp_path) + "/café.jsonl".encode()
    proc = cli("measure", os.fsdecode(name), LC_ALL="C", PYTHONUTF8="0")
    assert proc.returncode == 2
    assert proc.stderr == b"diversens measure: error: " + name + b": no such file\n"


def test_a_model_path_cut_at_its_comma_is_named_as_such(tmp_path):
    from diversens.evaluation.config import check_split_paths

    (tmp_path / "my,model").mkdir()
    with pytest.raises(UserError, match=r"'.*/my' does not exist, but '.*/my,model' does: the "
                       r"list is split at each comma.*--models '\[\"base=b\", \"tuned=.*/my,model"):
        check_split_paths(["base=b", f"tuned={tmp_path}/my", "model"])
    with pytest.raises(UserError, match=r"/gone/my' does not exist \(given as one option, "
                       r"'/gone/my,model' is split at its comma"):  # fmt: skip
        check_split_paths(["/gone/my", "model"])
    check_split_paths(["base=b", f"tuned={tmp_path}/my,model", "org/id"])  # nothing cut


def test_a_temp_dir_too_long_for_rays_sockets_is_swapped_for_tmp_in_one_line(
    tmp_path, monkeypatch, caplog
):
    from diversens.jobs import local_ray

    monkeypatch.setattr(local_ray, "end_dead_sessions", lambda: None)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", "/" + "t" * 60)
    with caplog.at_level("INFO", logger="diversens"):
        local_ray.prepare()
    assert os.environ["RAY_TMPDIR"] == "/tmp"
    assert caplog.messages == ["$TMPDIR is too long for the socket paths Ray makes under it (39 "
                               "bytes at most): Ray's session files go under /tmp"]  # fmt: skip
    monkeypatch.setenv("RAY_TMPDIR", "/" + "r" * 60)
    monkeypatch.setattr(local_ray, "SHORT_TEMP", str(tmp_path / "none"))
    with pytest.raises(UserError, match=r"\$RAY_TMPDIR \(61 bytes\) is too long .* set "
                       "RAY_TMPDIR to a shorter directory"):  # fmt: skip
        local_ray.prepare()
    monkeypatch.setenv("RAY_TMPDIR", "/tmp")
    local_ray.prepare()  # short enough: as it is


def test_the_next_run_ends_the_daemons_a_killed_runs_ray_left(tmp_path):
    """Processes of a Ray session whose GCS and raylet are gone (a driver killed with SIGKILL
    left its dashboard and runtime-env agents) are ended; a live session's are not."""
    from diversens.jobs import local_ray

    dead, live = "session_2001-01-01_00-00-00_000001_1", "session_2001-01-01_00-00-00_000002_2"
    sleep = "import time; time.sleep(120)"

    def start(argv0: str, session: str) -> subprocess.Popen:
        return subprocess.Popen([argv0, "-c", sleep, f"--session-dir=/tmp/ray/{session}"],
                                executable=sys.executable)  # fmt: skip

    procs = [start("dashboard_agent", dead), start("runtime_env_agent", dead),
             start("raylet", live), start("dashboard_agent", live)]  # fmt: skip
    try:
        local_ray.end_dead_sessions()
        assert [p.poll() is not None for p in procs] == [True, True, False, False]
    finally:
        for p in procs:
            p.kill()
            p.wait()
