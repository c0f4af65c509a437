"""User-facing errors: one line, naming the file, row, field or option at fault; exit code 2."""

from __future__ import annotations

import errno
import re
import reprlib
from typing import Any

PREVIEW_CHARS = 200  # of a value a message echoes: a path in full, not a file
MESSAGE_CHARS = 1000  # of a whole message: the guard for a value echoed without `shown`

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.fillvalue = 3, "…"
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = PREVIEW_CHARS


def shown(value: Any) -> str:
    """`value` as a message echoes it: its repr, or where that would be long a preview and the
    size, `'aaaa…' (312,089,845 chars)` or `[1, 2, 3, 4, …] (10,000 items)`, so no message
    grows with what the user gave (nor takes long to build: a nested value is not walked)."""
    if isinstance(value, str):
        if len(value) <= PREVIEW_CHARS:
            return repr(value)
        head = repr(value[:PREVIEW_CHARS])
        return f"{head[:-1]}…{head[-1]} ({len(value):,} chars)"
    text = _REPR.repr(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > _REPR.maxlist:
        text += f" ({len(value):,} items)"
    return text


def bounded(message: str) -> str:
    """`message` with its middle cut where it is over MESSAGE_CHARS: its start (what is at
    fault) and its end (what to do) stay."""
    if len(message) <= MESSAGE_CHARS:
        return message
    keep = MESSAGE_CHARS // 2
    return f"{message[:keep]}…[{len(message) - 2 * keep:,} chars]…{message[-keep:]}"


class UserError(Exception):
    """A mistake in what the user gave (file, row, field, option). The CLI prints it and exits 2.
    Subclasses register by name, so one raised inside a Ray actor can be rebuilt from its text.
    The message is `bounded`: a value echoed whole cannot make it a line of megabytes."""

    exit_code = 2
    by_name: dict[str, type[UserError]] = {}

    def __init__(self, message: Any = "", *args: Any):
        super().__init__(bounded(str(message)), *args)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        UserError.by_name[cls.__name__] = cls


def path_too_long(error: BaseException) -> UserError | None:
    """A path the user gave that the OS refuses as too long (a name over 255 bytes, a path over
    4,096), wherever a check first touched it: one line naming it."""
    if not (isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG):
        return None
    name = error.filename if error.filename is not None else "a path"
    return UserError(f"{shown(str(name))}: path too long for this file system (at most 255 bytes "
                     "a name and 4,096 in all)")  # fmt: skip


def user_error_in(error: BaseException) -> UserError | None:
    """The UserError behind `error`: itself, one in its cause chain, or one raised inside a Ray
    actor, which reaches the driver only as the last line of a traceback in the error's text
    (`diversens.<module>.<Class>: <message>`)."""
    seen = error
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    found = re.findall(r"diversens\.[\w.]+\.(\w+Error): (.+)", str(error))
    if not found:
        return None
    name, message = found[-1]
    cls = UserError.by_name.get(name, UserError if name == "UserError" else None)
    return None if cls is None else cls(message)
