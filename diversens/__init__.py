"""diversens: Diverse, not Short — length-controlled diversity preference data and DPO on Ray."""

__version__ = "0.1.0"
