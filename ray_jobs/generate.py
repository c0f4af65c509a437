"""Ray job entrypoint: sample candidates on the cluster the job runs on.

    ray job submit --working-dir . -- python ray_jobs/generate.py --prompts.split train \
        -o /mnt/out/candidates.parquet --config sampling.yaml --sampling.engine vllm \
        --sampling.max_actors 4

Same options as `diversens generate`; inside a Ray job $RAY_ADDRESS points at the cluster, so
`ray.init` joins it (and starts a local Ray when run by hand without one).
"""

import sys

from diversens.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
