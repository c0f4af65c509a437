"""Steps as specs, and the one runner every Ray command goes through (docs/design.md §4).

A step (generate, generate-pairs, train, eval, and the pipeline of them) declares in one place
what a command used to spell out in its own sequence: the checks of its config and inputs, what
the preflight must find (`Needs`: models, inputs, stores, the paths it writes at its output), the
GPUs and pools it asks Ray for, its claim on the output, its run and its console lines. The
runner (`run_step`) takes any step through the same order: checks, preflight, the checks that
need it, claim, Ray, run, console lines; so a check is written once, in its step, and holds
for the command that runs the step alone and for the pipeline that runs it with others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from diversens import console
from diversens.commands.common import connect_ray, preflight
from diversens.commands.options import RunOptions
from diversens.nodes import Demand
from diversens.output_lock import Claim
from diversens.storage import Output, output_dir, split_location


@dataclass
class Needs:
    """What `preflight` checks before Ray starts: the models the step loads, its input files,
    the storage URIs it writes besides its output, and `layout`, the paths it writes at its
    output ("name/": a directory; see `check_layout`)."""

    models: list[str | None] = field(default_factory=list)
    inputs: list[str | Path | None] = field(default_factory=list)
    stores: list[str] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)

    def __add__(self, other: Needs) -> Needs:
        return Needs(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class Step:
    """One step, as a command runs it alone or the pipeline with others. `prefix` is its config
    section's option prefix in a pipeline config ("pairs."; "" alone): every option a message
    names carries it. Defaults: nothing to check, no GPU, no pool."""

    name: ClassVar[str]  # the command that runs it alone; its pools' and its claim's name
    kind: ClassVar[str] = "dir"  # its output: a directory, or "parquet" for one file
    prefix: str = ""
    where: str = ""  # in a pipeline, where it writes under the output ("pairs/", "round-2/")

    def check(self) -> None:
        """Checks of the config and inputs that need nothing else (they run first)."""

    def needs(self, output: str) -> Needs:
        return Needs()

    def verify(self, output: str) -> None:
        """Checks that need the preflight passed (a model that resolves, an output's earlier
        results)."""

    def gpus(self) -> dict[str, float]:
        """GPUs per actor or worker each of its pools asks for, by option."""
        return {}

    def pools(self) -> dict[str, list[Demand]]:
        """The pools it runs at once, by step (diversens.nodes)."""
        return {}

    def worker_paths(self, output: str) -> dict[str, str]:
        """Paths Ray workers write (training checkpoints), by option."""
        return {}

    def fingerprint(self) -> str | None:
        """What decides its resumable results (see `Claim`); None: the step checks its own."""
        return None

    def log_file(self, output: str) -> Path | None:
        return console.run_log(output)

    def run(self, out: Output) -> dict:
        """Do the work into `out` (the output directory, or the folder of an output file), at
        `where` under it, publishing each part when done; returns the summary `lines` reads."""
        raise NotImplementedError

    def part(self, out: Output) -> Output:
        """Where it writes under `out`."""
        return out.sub(*Path(self.where).parts) if self.where else out

    def record(self, summary: dict, result: dict) -> None:
        """What a pipeline's summary keeps of its `run`'s result."""
        summary[self.name] = result

    def lines(self, summary: dict, output: str) -> list[str]:
        """What the console says when it is done."""
        return []


def run_step(step: Step, opts: RunOptions) -> None:
    """Run `step` into `opts.output`, as every Ray command does: each fault a user can make is
    found before Ray starts and before anything is created at the output (`preflight`); the
    output is claimed before Ray starts (a second run into it stops there); then the cluster is
    joined (pools, GPUs and worker paths checked against it, waits bounded), the step runs, and
    its lines go to the console."""
    output = opts.output
    step.check()
    needs = step.needs(output)
    preflight(needs.models, output, step.kind, needs.inputs, needs.stores, needs.layout)
    step.verify(output)
    connect_ray(opts, step.gpus(), log_file=step.log_file(output),
                worker_paths=step.worker_paths(output), stages=step.pools(),
                claim=Claim(output, step.kind, step.name, step.fingerprint()))  # fmt: skip
    folder = output if step.kind == "dir" else split_location(output)[0]
    with output_dir(folder) as out:
        summary = step.run(out)
    for line in step.lines(summary, output):
        print(line)
