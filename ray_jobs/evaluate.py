"""Ray job entrypoint: evaluate models on the cluster the job runs on.

    ray job submit --working-dir . -- python ray_jobs/evaluate.py -o /mnt/out/eval \
        --config configs/eval.yaml

Same options as `diversens eval`.
"""

import sys

from diversens.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
