"""A run's tables and plots by path, to compare two runs' reports byte for byte (the tests of
`diversens report`)."""

import hashlib
from pathlib import Path

from diversens.artifacts import artifact_files

REPORT_SUFFIXES = (".md", ".csv", ".png")


def report_hashes(root: Path) -> dict[str, str]:
    """The SHA-256 of every table and plot under root (not under model/, checkpoints/, ...)."""
    return {str(rel): hashlib.sha256((root / rel).read_bytes()).hexdigest()
            for rel in artifact_files(root) if rel.suffix in REPORT_SUFFIXES}  # fmt: skip
