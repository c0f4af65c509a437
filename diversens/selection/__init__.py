"""Selection: the strategies' rules, the streaming pair stage, the balanced top-N, the report."""
