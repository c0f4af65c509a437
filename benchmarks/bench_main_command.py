"""The README's main command at this tree and at a baseline commit, run alternately on one
machine: each run's wall time and each stage's (pipeline_summary.json's `wall_s`), and the ratio
of this tree's to the baseline's.

Issue 38 rebuilt the pipeline as steps run by one runner and added rounds; a one-round run must
be as fast as before. The baseline is a git worktree of `--baseline` put first on PYTHONPATH (the
driver imports it, and Ray's local workers inherit the variable). The command is the main
command's (`configs/tiny.yaml`) with `--num-per-task` training prompts per task (the README's
12 by default): what the runner can change is the fixed cost around the stages, which a smaller
run shows as well. The runs alternate (A B, then B A) so that drift in the machine's speed
falls on both.

    python benchmarks/bench_main_command.py --baseline b4bdcdc --num-per-task 4 \\
        --out benchmarks/results/main_command.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_engines import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, env: dict, out: Path, num_per_task: int) -> dict:
    """One main command from `tree`; its wall time, stage times and pair counts."""
    argv = [sys.executable, "-m", "diversens.cli", "pipeline", "--config", "configs/tiny.yaml",
            "--pairs.prompts.num_per_task", str(num_per_task), "-o", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{tree}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "pipeline_summary.json").read_text())
    return {"wall_s": round(wall, 1), "stages_s": summary["wall_s"],
            "pairs": summary["pairs"]["pairs"]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--num-per-task", type=int, default=12)
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs (A B, B A, ...)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_main_"))
    base_tree = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.baseline],
                   cwd=ROOT, check=True)  # fmt: skip
    trees = {
        "baseline": (base_tree, {**os.environ, "PYTHONPATH": str(base_tree)}),
        "this tree": (ROOT, {**os.environ, "PYTHONPATH": str(ROOT)}),
    }
    for name, (tree, env) in trees.items():  # each side imports its own tree
        probe = [sys.executable, "-c", "import diversens; print(diversens.__file__)"]
        where = subprocess.run(probe, cwd=tmp, env=env, capture_output=True, text=True, check=True)
        assert where.stdout.startswith(str(tree)), (name, where.stdout)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    try:
        for rep in range(args.repeats):
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for name in order:
                tree, env = trees[name]
                result = run(tree, env, tmp / f"{name.replace(' ', '_')}-{rep}", args.num_per_task)
                runs[name].append(result)
                print(f"{name} #{rep}: {result['wall_s']} s {result['stages_s']}", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
    median = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    result = {
        "machine": machine(),
        "baseline": args.baseline,
        "num_per_task": args.num_per_task,
        "runs": runs,
        "median_wall_s": median,
        "ratio": round(median["this tree"] / median["baseline"], 3),
        "same_pairs": all(a["pairs"] == b["pairs"] for a, b in
                          zip(runs["this tree"], runs["baseline"], strict=True)),  # fmt: skip
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wall time, this tree / baseline: {result['ratio']} (medians {median}); same pairs: "
          f"{result['same_pairs']}")  # fmt: skip


if __name__ == "__main__":
    main()
