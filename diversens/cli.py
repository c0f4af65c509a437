"""`diversens` command line: one sub-command per module in `diversens.commands`.

User mistakes (`UserError`, also when raised inside a Ray actor, such as an engine that cannot
start) print one line to stderr and exit 2. Ctrl-C (SIGINT), SIGTERM (`kill`, a scheduler
ending the job) and SIGHUP (a closed terminal) take one path: the job stops where it is, as on
KeyboardInterrupt, and the CLI prints one line, saying what a rerun does (each command's
`ON_INTERRUPT`), and exits 130, 143 or 129, the shell's codes for the signals. A store that
fails under a run (`storage.fault`: a full disk, a bucket deleted) is one line too, naming it
and saying what a rerun does. Nothing else is caught, so a bug still shows its traceback.
However a run ends, its lock on its output is given back (diversens.output_lock).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from diversens import __version__, config, console, output_lock, storage
from diversens.errors import UserError, bounded, path_too_long, shown, user_error_in

console.writable_matplotlib_dir()  # before the commands load matplotlib, which warns twice there

from diversens.commands import COMMANDS  # noqa: E402
from diversens.commands.options import COMMON  # noqa: E402

GIVEN, REPEATED = "_given", "_repeated"  # namespace keys of `_Once` (no option is spelt so)


class _Once(argparse._StoreAction):
    """Every argument and option stores once: one given twice is an error (see `check_once`),
    never "last wins". Two spellings of one value (the PROMPTS argument and --prompts.file,
    -o and --output) share a `dest`, so giving both is the same error."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(GIVEN, {})
        name = option_string or self.metavar or self.dest
        if self.dest in given and REPEATED not in vars(namespace):
            first, old = given[self.dest]
            setattr(namespace, REPEATED, (first, old, name, values))
        given[self.dest] = (name, values)
        setattr(namespace, self.dest, values)


class Parser(argparse.ArgumentParser):
    """argparse with `_Once` as its store action; sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)

    def error(self, message: str):
        super().error(bounded(message))  # argparse echoes the arguments it refuses, whole


def check_once(args: argparse.Namespace) -> None:
    """The first option or argument the command line gave twice, as a UserError."""
    if REPEATED not in vars(args):
        return
    first, old, second, new = getattr(args, REPEATED)
    if first == second:
        raise UserError(
            f"option {first} given twice ({shown(old)}, then {shown(new)}); give it once"
        )
    raise UserError(
        f"{first} {shown(old)} and {second} {shown(new)} both given: they are the same option; "
        "give one"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="diversens",
        description="Diverse, not Short: sample, measure and select length-matched diversity "
        "preference pairs, train with DPO, and evaluate length-aware diversity.",
    )
    parser.add_argument("--version", action="version", version=f"diversens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    for name, command in sub.choices.items():  # --help: the common options; --help-all: all
        config.add_help_all(command, COMMON[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    console.paths_as_typed()  # also argparse's own errors
    args = build_parser().parse_args(argv)
    before = {signum: signal.getsignal(signum) for signum in console.SIGNALS}
    try:
        check_once(args)
        console.on_sigterm()
        args.func(args)
        if why := console.logs_stopped():  # the outputs were written: the log has a gap
            print(f"diversens {args.command}: warning: {why}; the log ends there", file=sys.stderr)
    except KeyboardInterrupt as e:
        what, code = console.stopped_by(e)
        print(f"diversens {args.command}: {what}; {on_interrupt(args)}", file=sys.stderr)
        console.last_line_said()
        console.bounded_exit(code)  # Ray's shutdown at exit may wait on a stopped GCS
        return code
    except Exception as e:
        user_error = user_error_in(e) or path_too_long(e) or storage.fault(e, doing="read or write")
        if user_error is None:
            from diversens.jobs.dataflow import stall_error  # imports Ray: only when needed

            user_error = stall_error(e)
        if user_error is None:
            raise
        rerun = f"; {on_interrupt(args)}" if isinstance(user_error, storage.StorageError) else ""
        print(f"diversens {args.command}: error: {user_error}{rerun}", file=sys.stderr)
        return user_error.exit_code
    finally:
        output_lock.release_all()  # ended, failed or stopped: the next run may take the output
        console.native_notices_to(None)  # the console's stderr back, the filter drained
        console.on_sigterm(install=False)
        if threading.current_thread() is threading.main_thread():
            for signum, handler in before.items():  # in-process callers (tests) get theirs back
                signal.signal(signum, handler)
    return 0


def on_interrupt(args: argparse.Namespace) -> str:
    """What a rerun of the stopped command does (its module's ON_INTERRUPT)."""
    return getattr(sys.modules[args.func.__module__], "ON_INTERRUPT", "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
