"""Sampling stage: k candidate responses per prompt by sequential prompting, on engine actors."""

from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import (
    Completion,
    Engine,
    Request,
    TransformersEngine,
    VLLMEngine,
    derive_seed,
    make_engine,
)
from diversens.sampling.stage import SampleStage, candidate_plan, followup_messages

__all__ = [
    "Completion",
    "Engine",
    "Request",
    "SampleStage",
    "SamplingConfig",
    "TransformersEngine",
    "VLLMEngine",
    "candidate_plan",
    "derive_seed",
    "followup_messages",
    "make_engine",
]
