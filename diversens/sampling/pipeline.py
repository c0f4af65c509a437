"""Compose the sampling stage on Ray Data: an actor pool of engines, resources from config.

The library never calls `ray.init` nor touches the global `DataContext`; the caller connects.
"""

from __future__ import annotations

import pandas as pd
import ray.data
from ray.data import ActorPoolStrategy

from diversens.config import config_hash
from diversens.parts import CHUNK, chunk_frames, plan_chunks
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import check_engine_available
from diversens.sampling.stage import SampleStage


def prompts_dataset(prompts: pd.DataFrame, cfg: SamplingConfig) -> ray.data.Dataset:
    """A Dataset of the prompts, one block per chunk (diversens.parts): planned here, `batch_size`
    rows each, unless the table already has a `chunk` column.

    A block is the batch of every stage, so blocks of a batch also spread the work over the pool
    (Ray Data never splits one block across tasks).
    """
    if CHUNK not in prompts:
        prompts = plan_chunks(prompts, cfg.batch_size, config_hash(cfg.identity()))
    return ray.data.from_pandas(chunk_frames(prompts))


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
        batch_size=None,  # one chunk (block) per batch: rows independent of scheduling
        batch_format="pandas",
        # One batch in flight per actor: a batch is long to generate and tiny to ship, so queueing
        # more on one actor would only idle the others (and actors that start late).
        compute=ActorPoolStrategy(
            min_size=cfg.min_actors, max_size=cfg.max_actors, max_tasks_in_flight_per_actor=1
        ),
        num_gpus=cfg.gpus_per_actor(),
        num_cpus=cfg.num_cpus_per_actor,
        # A dead actor (OOM kill, node lost) is restarted and its batch retried; bounded, so a
        # batch that kills every engine fails the run (resumable) instead of looping forever.
        max_restarts=cfg.max_restarts,
        max_task_retries=cfg.max_restarts,
    )
