"""Sub-commands of the `diversens` CLI; each module has `add_parser(subparsers)`."""

from diversens.commands import (
    evaluate,
    generate,
    generate_pairs,
    measure,
    pipeline,
    plan,
    report,
    train,
)

COMMANDS = [measure, generate, generate_pairs, train, evaluate, pipeline, report, plan]
