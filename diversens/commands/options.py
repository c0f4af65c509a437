"""Options of a run rather than of its steps: where it writes and which Ray cluster it joins.

They come from the command line only: one config file can drive several runs, to different
outputs and clusters, and its hash (stamped on the outputs) says what was computed, not where.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    output: str = field(metadata={"help": "output directory or URI (s3://, gs://, file://)",
                                  "short": "-o"})  # fmt: skip
    ray_address: str | None = field(
        default=None,
        metadata={"help": "Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)"},
    )


@dataclass
class MeasureOptions:
    output: str | None = field(
        default=None,
        metadata={"help": "output .parquet (default: FILE.measured.parquet)", "short": "-o"},
    )
    rows_per_chunk: int = field(default=512, metadata={"help": "rows per progress step"})

    def __post_init__(self):
        if self.rows_per_chunk < 1:
            raise ValueError(f"rows_per_chunk: must be >= 1, got {self.rows_per_chunk}")
