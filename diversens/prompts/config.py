"""Where a job's prompts come from: a user file or a built-in split (plain data, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from diversens.ranges import check_ranges

# The train split's finite families hold at most ~400 items per task; beyond this bound only CWT
# triples grow, and building a million prompts takes seconds and GBs before anything runs.
MAX_PROMPTS_PER_TASK = 100_000


@dataclass
class PromptsConfig:
    file: str | None = field(
        default=None,
        metadata={
            "help": "prompt file (.jsonl or .parquet); also the PROMPTS argument",
            "path": True,
        },  # fmt: skip
    )
    split: Literal["train", "eval"] | None = field(
        default=None,
        metadata={"help": "built-in prompt split, train or eval (instead of a file; the pair "
                  "jobs use train when neither is given)"},
    )  # fmt: skip
    num_per_task: int = field(
        default=250,
        metadata={"range": f"[1, {MAX_PROMPTS_PER_TASK}]", "help": "train split: prompts per task"},
    )
    seed: int = field(
        default=0,
        metadata={"range": "[0, 4294967295]", "help": "train split: seed drawing the items"},
    )
    limit: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "use only the first N prompts"}
    )

    def __post_init__(self):
        check_ranges(self)
        if self.file is not None and self.split is not None:
            raise ValueError(f"split: {self.split!r} and a prompt file given; give one of them")
