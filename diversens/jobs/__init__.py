"""Jobs: the only place that composes Ray Data and writes outputs (docs/design.md §2)."""
