"""Options of a run rather than of its steps: where it writes and which Ray cluster it joins.

They come from the command line only: one config file can drive several runs, to different
outputs and clusters, and its hash (stamped on the outputs) says what was computed, not where.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def __post_init__(self):
        check_ranges(self)


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
        default=512, metadata={"range": "[1, inf)", "help": "rows per progress step"}
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
