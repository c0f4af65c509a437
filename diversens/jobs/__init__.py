"""Jobs: the only place that composes Ray Data and writes outputs (DESIGN.md §1)."""
