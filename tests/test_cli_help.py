"""`diversens --help` and `diversens COMMAND --help` for every sub-command, run as a user runs
them (the console script, in a subprocess): exit 0, the option list printed, no traceback.

argparse %-formats help strings, so one help text with a bare `%` ("25% headroom") used to crash
`--help` of every command that shows it; the sub-commands are read from the parser itself, so a
new command is covered without editing this file. A command's `--help` lists the options most
runs set and ends pointing to `--help-all`, which lists them all (tests/test_options_help.py
checks both in detail).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diversens.cli import build_parser


def subcommands() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def diversens_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m diversens.cli`."""
    script = Path(sys.executable).with_name("diversens")
    if script.is_file():
        return [str(script)]
    found = shutil.which("diversens")
    return [found] if found else [sys.executable, "-m", "diversens.cli"]


ARGVS = [[], *([c] for c in subcommands())]


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess]:
    """Every `--help` run at once (each spends seconds importing), by sub-command ("" = none)."""
    procs = {
        " ".join(argv): subprocess.Popen([*diversens_command(), *argv, "--help"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, "COLUMNS": "80"})
        for argv in ARGVS
    }  # fmt: skip
    done = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            proc.kill()  # no-op once it has exited
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_there_are_subcommands():
    assert len(ARGVS) > 5  # generate, generate-pairs, measure, train, eval, pipeline, ...


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a) or "diversens")
def test_help_prints_the_options(argv, helps):
    done = helps[" ".join(argv)]
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    assert done.stdout.startswith("usage: diversens"), output
    assert "--help" in done.stdout, output
    if argv:  # a command lists its common options, each with its help, and the way to all
        assert "options:" in done.stdout, output
        assert "--" in done.stdout.split("options:", 1)[1].replace("--help", ""), output
        lines = done.stdout.splitlines()
        assert len(lines) < 80, output
        assert lines[-1].startswith("--help-all lists all "), output
    else:  # the top level lists every command
        assert all(c in done.stdout for c in subcommands()), output
