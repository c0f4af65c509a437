"""`diversens` command line: one sub-command per module in `diversens.commands`.

User mistakes (`UserError`, also when raised inside a Ray actor, such as an engine that cannot
start) print one line to stderr and exit 2. Ctrl-C (SIGINT) and SIGTERM (`kill`, a scheduler
ending the job) take one path: the job stops where it is, as on KeyboardInterrupt, and the CLI
prints one line, saying what a rerun does (each command's `ON_INTERRUPT`), and exits 130 or 143,
the shell's codes for the two signals. Nothing else is caught, so a bug still shows its
traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from diversens import __version__, console
from diversens.commands import COMMANDS
from diversens.errors import user_error_in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diversens",
        description="Diverse, not Short: sample, measure and select length-matched diversity "
        "preference pairs, train with DPO, and evaluate length-aware diversity.",
    )
    parser.add_argument("--version", action="version", version=f"diversens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    before = signal.getsignal(signal.SIGTERM)
    try:
        console.on_sigterm()
        args.func(args)
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, console.Terminated) else "interrupted"
        after = getattr(sys.modules[args.func.__module__], "ON_INTERRUPT", "nothing was written")
        print(f"diversens {args.command}: {what}; {after}", file=sys.stderr)
        code = 143 if isinstance(e, console.Terminated) else 130
        console.bounded_exit(code)  # Ray's shutdown at exit may wait on a stopped GCS
        return code
    except Exception as e:
        from diversens.jobs.dataflow import stall_error

        user_error = user_error_in(e) or stall_error(e)
        if user_error is None:
            raise
        print(f"diversens {args.command}: error: {user_error}", file=sys.stderr)
        return user_error.exit_code
    finally:
        console.native_notices_to(None)  # the console's stderr back, the filter drained
        console.on_sigterm(install=False)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)  # in-process callers (tests) get theirs back
    return 0


if __name__ == "__main__":
    sys.exit(main())
