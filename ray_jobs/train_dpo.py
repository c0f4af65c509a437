"""Ray job entrypoint: DPO fine-tuning on the cluster the job runs on.

    ray job submit --working-dir . -- python ray_jobs/train_dpo.py /mnt/out/pairs.parquet \
        -o /mnt/out/dpo --config train.yaml --use_gpu true --num_workers 8 \
        --storage_path s3://bucket/diversens-ckpt

Same options as `diversens train`; resubmitting with the same --name and --storage_path resumes
from the latest checkpoint.
"""

import sys

from diversens.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
