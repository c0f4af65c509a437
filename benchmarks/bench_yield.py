"""Pair yield per generated token: the sampling levers of the pairs stage, each measured by a real
`diversens generate-pairs` run on the demo's prompts (the README main command's pairs section),
against the demo's earlier sampling (the baseline) run in the same invocation.

Selection rules are the same in every run (parity tolerance, quality floor, one-sided rule): only
how candidates are sampled changes. Per run: candidates, generated tokens, share truncated, pairs
per strategy, pairs per 100 prompts and per 100k generated tokens, and the wall time; ratios are
against the baseline. Pair counts are small (a few dozen): the printed 90% interval of a pair
count treats it as Poisson, a rough guide to what a difference means.

    python benchmarks/bench_yield.py                          # every lever, writes yield.md/.json
    python benchmarks/bench_yield.py --runs baseline caps     # some of them
    python benchmarks/bench_yield.py --runs demo --reuse      # keep the runs already measured

With --reuse, a run already in the results file with the same options is kept, not rerun: its
pair and token counts come from seeded sampling and repeat, but its wall time is from the
invocation that measured it (the "× base" of wall time then compares across invocations).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from scipy.stats import chi2

BASELINE = {  # the demo's sampling before the levers (configs/tiny.yaml at issue 24's start)
    "pairs.sampling.num_samples_per_prompt": 6,
    "pairs.sampling.num_first_turn": 3,
    "pairs.sampling.max_new_tokens": 192,
    "pairs.sampling.max_new_tokens_per_task": "",
    "pairs.sampling.frequency_penalty": 0.0,
    "pairs.sampling.presence_penalty": 0.0,
    "pairs.sampling.top_p": 0.95,
    "pairs.sampling.min_p": 0.0,
}
RUNS = {  # name → options over the baseline: one lever each
    "baseline": {},
    "frequency-0.3": {"pairs.sampling.frequency_penalty": 0.3},
    "k12": {"pairs.sampling.num_samples_per_prompt": 12, "pairs.sampling.num_first_turn": 6},
    "first-turns-only": {"pairs.sampling.num_first_turn": 6},
    "presence-0.5": {"pairs.sampling.presence_penalty": 0.5},
    "demo": {  # configs/tiny.yaml's sampling after issue 24: the levers that helped, together
        "pairs.sampling.num_samples_per_prompt": 12,
        "pairs.sampling.num_first_turn": 6,
        "pairs.sampling.frequency_penalty": 0.3,
        "pairs.sampling.top_p": 1.0,
        "pairs.sampling.min_p": 0.05,
        "pairs.sampling.max_new_tokens_per_task": "pgt=128",
    },
}
# Beyond the demo: one lever more each, on top of its sampling
RUNS["demo-frequency-0.6"] = {**RUNS["demo"], "pairs.sampling.frequency_penalty": 0.6}
RUNS["demo-k8"] = {
    **RUNS["demo"],
    "pairs.sampling.num_samples_per_prompt": 8,
    "pairs.sampling.num_first_turn": 4,
}
STRATEGIES = ("diverse-ns", "diverse-no-length", "divpo")


def poisson_interval(n: int, level: float = 0.90) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson count."""
    a = 1 - level
    lo = chi2.ppf(a / 2, 2 * n) / 2 if n else 0.0
    return lo, chi2.ppf(1 - a / 2, 2 * n + 2) / 2


def run(name: str, options: dict, config: str, out: Path) -> dict:
    """One generate-pairs run with the pipeline config's pairs section and these options."""
    args = [f"--{k.removeprefix('pairs.')}={v}" for k, v in {**BASELINE, **options}.items()]
    cmd = [sys.executable, "-m", "diversens.cli", "generate-pairs", "--config", config,
           "--prompts.split", "train", "--prompts.num_per_task", "12", *args,
           "-o", str(out)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "run_summary.json").read_text())
    return {"name": name, "options": options, "wall_s": round(wall, 1), "yield": summary["yield"]}


def table(results: list[dict]) -> str:
    base = results[0]
    head = ["run", "candidates", "tokens", "tokens/cand", "truncated %"]
    for s in STRATEGIES:
        head += [f"{s} pairs (90% CI)", f"{s} /100k tok", "× base"]
    head += ["wall s", "× base"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        y = r["yield"]
        lost = y["candidates_lost"]
        row = [r["name"], y["candidates"], y["generated_tokens"],
               f"{y['generated_tokens'] / max(y['candidates'], 1):.0f}",
               f"{100 * lost.get('truncated', 0) / max(y['candidates'], 1):.0f}"]  # fmt: skip
        for s in STRATEGIES:
            n = y["strategies"][s]["pairs"]
            lo, hi = poisson_interval(n)
            rate = y["strategies"][s]["per_100k_tokens"]
            ref = base["yield"]["strategies"][s]["per_100k_tokens"]
            row += [f"{n} ({lo:.0f}–{hi:.0f})", f"{rate:.1f}", f"{rate / ref:.2f}" if ref else "–"]
        row += [r["wall_s"], f"{r['wall_s'] / base['wall_s']:.2f}"]
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--work", type=Path, default=Path("out/bench_yield"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/yield"))
    parser.add_argument("--reuse", action="store_true", help="keep runs already in --out's json")
    args = parser.parse_args()
    runs = ["baseline", *(r for r in args.runs if r != "baseline")]  # ratios need the baseline
    done = {}
    if args.reuse and args.out.with_suffix(".json").exists():
        done = {r["name"]: r for r in json.loads(args.out.with_suffix(".json").read_text())}
    results = []
    for name in runs:
        kept = done.get(name)
        if kept is None or kept["options"] != RUNS[name]:
            kept = run(name, RUNS[name], args.config, args.work / name)
        results.append(kept)
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
