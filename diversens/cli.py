"""`diversens` command line: one sub-command per module in `diversens.commands`.

User mistakes (`UserError`, also when raised inside a Ray actor, such as an engine that cannot
start) print one line to stderr and exit 2; Ctrl-C prints one line and exits 130 (the shell's
code for SIGINT); nothing else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import sys

from diversens import __version__
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
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"diversens {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    except Exception as e:
        user_error = user_error_in(e)
        if user_error is None:
            from diversens.jobs.dataflow import stall_error  # imports Ray: only when needed

            user_error = stall_error(e)
        if user_error is None:
            raise
        print(f"diversens {args.command}: error: {user_error}", file=sys.stderr)
        return user_error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
