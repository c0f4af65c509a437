"""Ray job entrypoint: the whole loop (pairs → DPO → eval) on the cluster the job runs on.

    ray job submit --working-dir . --runtime-env-json "$(python ray_jobs/runtime_env.py)" -- \
        python ray_jobs/pipeline.py --config configs/tiny.yaml -o /mnt/out/run1

Same options as `diversens pipeline`.
"""

import sys

from diversens.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
