"""Sub-commands of the `diversens` CLI; each module has `add_parser(subparsers)`."""

from diversens.commands import evaluate, generate, generate_pairs, measure

COMMANDS = [measure, generate, generate_pairs, evaluate]
