"""User-facing errors: one line, naming the file, row, field or option at fault; exit code 2."""


class UserError(Exception):
    """A mistake in what the user gave (file, row, field, option). The CLI prints it and exits 2."""

    exit_code = 2
