"""Selection streams: driver peak memory over 1,000,000 vs 100,000 synthetic scored prompt rows.

python benchmarks/bench_selection.py            # both sizes, each in a fresh process
python benchmarks/bench_selection.py --rows N   # one run (what the parent calls)

Rows are made inside Ray Data (`range` → synthetic scores), selected by `SelectStage` in
`map_batches` and folded into `BalancedTopN` on the driver, exactly as the job does. Target: peak
RSS at 1M ≤ 1.5× the peak at 100k.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

K = 4  # candidates per prompt


def synthetic_scored(batch: dict) -> pd.DataFrame:
    """Scored prompt rows for ids in `batch`, deterministic per id."""
    ids = batch["id"]
    rng = np.random.default_rng(int(ids[0]))
    n = len(ids)
    base = rng.integers(10, 300, size=(n, 1))
    return pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in ids],
            "task": np.array(["dat", "pgt", "aut", "cwt"])[ids % 4],
            "messages": [[{"role": "user", "content": f"prompt {i}"}] for i in ids],
            "responses": [[f"response {i}-{j}" for j in range(K)] for i in ids],
            "n_words": list(base + rng.integers(-8, 9, size=(n, K))),
            "valid": list(rng.random((n, K)) > 0.1),
            "quality": list(rng.random((n, K))),
            "entropy": list(rng.normal(6, 1, (n, K))),
            "dsi": list(rng.random((n, K))),
        }
    )


def one_run(rows: int) -> dict:
    import ray

    from diversens.jobs.dataflow import select_batch
    from diversens.selection.rules import SelectionConfig, SelectionStats
    from diversens.selection.topn import BalancedTopN

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = SelectionConfig(num_pairs=3000)
    stats = SelectionStats.from_columns({"quality": np.random.default_rng(0).random(10_000)})
    ds = ray.data.range(rows, override_num_blocks=max(8, rows // 10_000))
    ds = ds.map_batches(synthetic_scored, batch_size=2_000, batch_format="numpy")
    ds = ds.map_batches(
        select_batch, fn_kwargs={"cfgs": [cfg], "stats": stats}, batch_format="pandas"
    )
    top = BalancedTopN(cfg)
    t0 = time.perf_counter()
    for batch in ds.iter_batches(batch_format="pandas", batch_size=2_000):
        top.add(batch)
    pairs = top.result()
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    assert top.seen == rows and len(pairs) == cfg.num_pairs
    return {"rows": rows, "peak_rss_mib": peak_mib, "seconds": seconds, "pairs": len(pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="one run of this many rows (prints JSON)")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.rows:
        print(json.dumps(one_run(args.rows)))
        return
    results = []
    for rows in (args.small, args.large):
        out = subprocess.run(
            [sys.executable, __file__, "--rows", str(rows)], capture_output=True, text=True
        )
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['rows']:>9} rows: driver peak RSS {r['peak_rss_mib']:7.1f} MiB, "
              f"{r['seconds']:6.1f} s ({r['rows'] / r['seconds']:,.0f} rows/s)")  # fmt: skip
    ratio = results[1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
    print(f"peak memory ratio large/small: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
