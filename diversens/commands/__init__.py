"""Sub-commands of the `diversens` CLI; each module has `add_parser(subparsers)`."""

from diversens.commands import measure

COMMANDS = [measure]
