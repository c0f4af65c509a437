"""Compose the sampling stage on Ray Data: an actor pool of engines, resources from config.

The library never calls `ray.init` nor touches the global `DataContext`; the caller connects.
"""

from __future__ import annotations

import math

import pandas as pd
import ray.data
from ray.data import ActorPoolStrategy

from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import check_engine_available
from diversens.sampling.stage import SampleStage


def prompts_dataset(prompts: pd.DataFrame, cfg: SamplingConfig) -> ray.data.Dataset:
    """A Dataset of the prompts table in blocks of `batch_size` rows.

    Ray Data never splits one block across tasks, so one big block would keep all but one actor
    of the pool idle; blocks of a batch each spread the work over the pool.
    """
    n_blocks = max(1, math.ceil(len(prompts) / cfg.batch_size))
    size = cfg.batch_size
    return ray.data.from_pandas([prompts.iloc[i * size : (i + 1) * size] for i in range(n_blocks)])


def generate_candidates(
    ds: ray.data.Dataset, cfg: SamplingConfig, stage_cls: type[SampleStage] = SampleStage
) -> ray.data.Dataset:
    """prompts → candidates (one row per prompt, k responses), lazily, on an engine actor pool.

    `stage_cls` lets a subclass of SampleStage run instead (tests, custom post-processing).
    """
    check_engine_available(cfg)
    return ds.map_batches(
        stage_cls,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="pandas",
        # One batch in flight per actor: a batch is long to generate and tiny to ship, so queueing
        # more on one actor would only idle the others (and actors that start late).
        compute=ActorPoolStrategy(
            min_size=cfg.min_actors, max_size=cfg.max_actors, max_tasks_in_flight_per_actor=1
        ),
        num_gpus=cfg.gpus_per_actor(),
        num_cpus=cfg.num_cpus_per_actor,
    )
