"""Ray job entrypoint: the pair-data job on the cluster the job runs on.

    ray job submit --working-dir . -- python ray_jobs/generate_pairs.py --prompts.split train \
        -o /mnt/out/pairs --config configs/tiny.yaml

Same options as `diversens generate-pairs`.
"""

import sys

from diversens.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-pairs", *sys.argv[1:]]))
