"""Options of a run rather than of its steps: where it writes and which Ray cluster it joins.

They come from the command line only: one config file can drive several runs, to different
outputs and clusters, and its hash (stamped on the outputs) says what was computed, not where.

Also which options each command's `--help` shows (`COMMON`), and docs/options.md, the reference
of every option of every command (`markdown`; `python -m diversens.options_doc > docs/options.md`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from diversens.config import type_name
from diversens.pools import DEFAULT_START_TIMEOUT_S
from diversens.ranges import check_ranges


@dataclass
class RunOptions:
    output: str = field(metadata={"help": "output directory or URI (s3://, gs://, file://)",
                                  "short": "-o", "path": True})  # fmt: skip
    ray_address: str | None = field(
        default=None,
        metadata={"help": "Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)"},
    )
    start_timeout_s: float = field(
        default=DEFAULT_START_TIMEOUT_S,
        metadata={
            "range": "(0, inf)",
            "help": "seconds an actor pool or the training worker group may wait to start (and a "
            "Ray Data step may go with nothing moving) before the run fails naming what it asked "
            "for, e.g. a GPU node type with no quota; 30 min by default, as GPU nodes of an "
            "autoscaling cluster take 5-15 min to boot from zero",
        },
    )

    cluster: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster launcher config (cluster.yaml) whose node types, at their "
            "max_workers, every step's actor pools must fit together, checked before Ray starts "
            "(default: the joined cluster's autoscaler node types, where Ray tells them)",
            "path": True,
        },
    )

    def __post_init__(self):
        check_ranges(self)


@dataclass
class PlanOptions:
    cluster: str = field(
        default="cluster.yaml",
        metadata={
            "help": "Ray cluster launcher config whose node types the plan places the pools on "
            "(as its autoscaler would) and prices (plan.node_price_per_h, by node type)",
            "path": True,
        },
    )


@dataclass
class MeasureOptions:
    output: str | None = field(
        default=None,
        metadata={
            "help": "output .parquet (default: FILE.measured.parquet)",
            "short": "-o",
            "path": True,
        },  # fmt: skip
    )
    rows_per_chunk: int = field(
        default=512,
        metadata={"range": "[1, inf)", "help": "most rows per progress step (the first steps "
                  "are smaller: a line within seconds; a prompt's rows are never split)"},
    )

    def __post_init__(self):
        check_ranges(self)


@dataclass
class ReportOptions:
    output: str | None = field(
        default=None,
        metadata={
            "help": "write the reports under OUT, in the run's layout (default: RUN_DIR, "
            "rewritten in place)",
            "short": "-o",
            "path": True,
        },
    )
    artifacts: str | None = field(
        default=None,
        metadata={
            "help": "copy the run's artifacts to DEST (a new or empty directory, or an earlier "
            "copy of this run, which is updated): everything but the merged model/ weights, "
            "checkpoints/, parts/ and logs/; then rebuild the reports there, so `diversens "
            "report DEST` gives the same bytes",
            "path": True,
        },
    )

    def __post_init__(self):
        if self.output and self.artifacts:
            raise ValueError("give -o/--output or --artifacts, not both")


# The options `diversens COMMAND --help` shows, by command (dotted names, as after `--`); every
# other option is still taken, and `--help-all` lists it. They are what the README's commands
# and configs/tiny.yaml, paper.yaml and study.yaml set: a model and its sampling, the pool sizes
# and GPUs of a cluster run, DPO's main knobs, what the eval compares. `--config`, the
# arguments and the required options are always shown. tests/test_options_help.py keeps each
# command's --help under 80 lines.


def _under(section: str, names: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{section}.{name}" for name in names)


RUN = ("output", "ray_address")
PROMPTS = _under("prompts", ("file", "split", "num_per_task"))
SAMPLING = ("model", "engine", "num_samples_per_prompt", "temperature", "max_new_tokens",
            "prompts_per_chunk", "min_actors", "max_actors", "num_gpus_per_actor")  # fmt: skip
SELECTION = _under("selection", ("strategy", "num_pairs"))
GENERATE = (*RUN, *PROMPTS, *_under("sampling", SAMPLING))
TRAIN = ("model", "name", "storage_path", "num_workers", "use_gpu", "deepspeed", "lora",
         "learning_rate", "num_train_epochs", "max_length")  # fmt: skip
# The eval samples every model of `models` with its own sampling section (its caps, its GPUs).
EVAL = ("models", "seeds", "num_samples",
        *_under("sampling", ("engine", "max_new_tokens", "num_gpus_per_actor")))  # fmt: skip
# The whole loop: most of a pipeline comes from --config; these pick the models and size a run.
PIPELINE = (*_under("pairs", ("prompts.split", "prompts.num_per_task", "selection.num_pairs")),
            *_under("pairs.sampling", ("model", "engine", "num_samples_per_prompt",
                                       "max_new_tokens", "max_actors", "num_gpus_per_actor")),
            *_under("train", ("model", "num_workers", "use_gpu", "lora")),
            "train_strategies", "stages", "rounds")  # fmt: skip
PLAN = ("cluster", *_under("plan", ("measured", "num_prompts", "model_params", "gen_tokens_per_s",
                                    "gpu_flops", "mfu", "node_price_per_h")))  # fmt: skip
COMMON: dict[str, tuple[str, ...]] = {
    "generate": GENERATE,
    "generate-pairs": (*GENERATE, *SELECTION, "scoring.quality.scorer"),
    "train": (*RUN, *TRAIN),
    "eval": (*RUN, *EVAL),
    "pipeline": (*RUN, *PIPELINE),
    "measure": ("output", "text_field", "group_field", "measures", "device"),
    "report": ("output", "artifacts"),
    "plan": PLAN,
}

REGENERATE = "python -m diversens.options_doc > docs/options.md"
# The order of docs/options.md: the pipeline first, as it holds every step's section.
DOC_ORDER = ("pipeline", "generate", "generate-pairs", "train", "eval", "measure", "report", "plan")


def markdown(parsers: dict[str, argparse.ArgumentParser]) -> str:
    """docs/options.md: every option of every command (`parsers`, by command name), one table
    per section (the argument groups of `--help-all`). A section that several commands share,
    with the same fields, defaults and help (`sampling` in generate, eval, and twice in
    pipeline), is one table, titled by its shortest name, that says how each command spells it."""
    tables: dict[tuple, list[tuple[str, str, str]]] = {}  # rows -> (command, title, prefix)
    sections: dict[str, list[str]] = {}  # command -> the titles of its sections, in order
    for command in DOC_ORDER:
        for group in parsers[command]._action_groups:
            actions = [a for a in group._group_actions if hasattr(a, "option")]
            if actions:
                prefix = actions[0].option.section
                rows = tuple(_row(a, prefix) for a in actions)
                tables.setdefault(rows, []).append((command, group.title, prefix))
                sections.setdefault(command, []).append(group.title)
    titles = {rows: min((t for _, t, _ in uses), key=len) for rows, uses in tables.items()}
    out = [
        "# Options of every command",
        "",
        f"Generated from the config dataclasses by `{REGENERATE}`; do not edit it by hand.",
        "`diversens COMMAND --help` shows the options most runs set (in **bold** below), and",
        "`--help-all` every option, by section. Every option of a step may also be set in the",
        "`--config` file, at its dotted name (`pairs.sampling.model`); the run options",
        "(`-o/--output`, `--ray_address`, ...) come from the command line only.",
        "",
        "| command | its sections, as `--help-all` shows them |",
        "| --- | --- |",
    ]
    for command in DOC_ORDER:
        out.append(f"| `{command}` | {', '.join(f'`{t}`' for t in sections[command])} |")
    for rows, uses in tables.items():
        title = titles[rows]
        commands = list(dict.fromkeys(c for c, _, _ in uses))
        twice = list(titles.values()).count(title) > 1
        out += ["", f"## `{title}`" + (f" ({', '.join(commands)})" if twice else ""), ""]
        spelt: dict[str, list[str]] = {}
        for command, _, prefix in uses:
            spelt.setdefault(f"`--{prefix}.NAME`" if prefix else "`--NAME`", []).append(command)
        out.append("Options: " + "; ".join(f"{flag} in {', '.join(dict.fromkeys(cs))}"
                                           for flag, cs in spelt.items()) + ".")  # fmt: skip
        out += ["", "| option | type | default | help |", "| --- | --- | --- | --- |"]
        common = {name for c, _, p in uses for name in _relative(COMMON[c], p)}
        for name, *cells in rows:
            shown = f"**`{name}`**" if name in common else f"`{name}`"
            out.append("| " + " | ".join([shown, *cells]) + " |")
    return "\n".join(out) + "\n"


def _relative(names: Iterable[str], prefix: str) -> set[str]:
    """The names of a section's options, as its table lists them."""
    lead = f"{prefix}." if prefix else ""
    return {n.removeprefix(lead) for n in names if n.startswith(lead) and "." not in n[len(lead) :]}


def _row(action: argparse.Action, prefix: str) -> tuple[str, str, str, str, str]:
    option = action.option
    kind = f"`{type_name(option.type)}`"
    if "range" in option.field.metadata:
        kind += f" {option.field.metadata['range']}"
    default = "required" if option.required else f"`{option.default!r}`"
    name = option.name.removeprefix(f"{prefix}." if prefix else "")
    short = f" (`{action.option_strings[0]}`)" if len(action.option_strings) > 1 else ""
    return name, _cell(kind), _cell(default), _cell(_escape(action.option_help) + short)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _escape(text: str) -> str:
    """A help as Markdown: `<`, `>` and `*` outside code spans as themselves (<strategy> would
    be taken for an HTML tag, *x* for emphasis)."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = parts[i].replace("*", "\\*")
    return "".join(parts)
