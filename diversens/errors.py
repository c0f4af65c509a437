"""User-facing errors: one line, naming the file, row, field or option at fault; exit code 2."""

from __future__ import annotations

import re


class UserError(Exception):
    """A mistake in what the user gave (file, row, field, option). The CLI prints it and exits 2.
    Subclasses register by name, so one raised inside a Ray actor can be rebuilt from its text."""

    exit_code = 2
    by_name: dict[str, type[UserError]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        UserError.by_name[cls.__name__] = cls


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
