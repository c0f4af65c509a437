"""SamplingConfig: engine, model, sequential-prompting plan and actor-pool resources.

Defaults (the paper gives none, DESIGN.md §2):
- k = 4 candidates per prompt, `num_first_turn` = ceil(k/2): with k = 4, two independent first
  answers, each followed (same conversation) by one "give a different answer" turn. Half and half
  gives every first answer its own second turn, so each candidate pair (1st, 2nd) is comparable.
- temperature 1.0 (the model's own distribution: diversity is the point) with top_p 0.95 to cut
  the degenerate tail that small models produce at temperature 1.
- max_new_tokens 256: a 5-sentence story or a 10-item list fits; longer outputs are flagged
  truncated, and pair selection drops them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

ENGINES = ("transformers", "vllm")
# Fields that size or restart the actor pool without changing any row: not part of the identity
# that resumable runs key their chunks by (a rerun may grow the pool and still reuse them).
POOL_FIELDS = ("min_actors", "max_actors", "max_restarts")
DTYPES = ("auto", "float32", "bfloat16", "float16")

DEFAULT_FOLLOWUPS = {
    "dat": "Now give a different answer: a new list that follows the same rules, using words "
    "you have not used in your previous answer.",
    "pgt": "Now generate a different persona in the same JSON format, with values that differ "
    "from your previous answer.",
    "aut": "Now give a different answer: list other uses than the ones you already gave, in the "
    "same format.",
    "cwt": "Now write a different story that uses the same three words, unlike your previous one.",
    "custom": "Please give a different answer from your previous one.",
}


def _followup(task: str):
    return field(
        default=DEFAULT_FOLLOWUPS[task],
        metadata={"help": f"second-turn user message for {task} prompts"},
    )


@dataclass
class SamplingConfig:
    engine: str = field(
        default="transformers",
        metadata={"help": "generation engine: transformers (CPU or GPU) or vllm (GPU)"},
    )
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "built-in model name, local HF dir or Hugging Face id"},
    )
    num_samples_per_prompt: int = field(
        default=4, metadata={"help": "k: candidates per prompt (first and second turns together)"}
    )
    num_first_turn: int | None = field(
        default=None,
        metadata={
            "help": "independent first answers per prompt; the other k - f candidates are "
            "second turns asking for a different answer (default: ceil(k/2))"
        },
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0: greedy)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(default=256, metadata={"help": "generated tokens per answer"})
    seed: int = field(default=0, metadata={"help": "base seed; per-request seeds derive from it"})
    batch_size: int = field(
        default=8,
        metadata={"help": "prompts per chunk: the batch of every stage and the unit of resume"},
    )
    engine_batch_size: int = field(
        default=32, metadata={"help": "transformers: conversations per generate() call"}
    )
    min_actors: int = field(default=1, metadata={"help": "engine actor pool: minimum size"})
    max_actors: int = field(default=1, metadata={"help": "engine actor pool: maximum size"})
    num_gpus_per_actor: float | None = field(
        default=None,
        metadata={"help": "GPUs per engine actor (default: tensor_parallel_size for vllm, 0 else)"},
    )
    num_cpus_per_actor: float = field(
        default=1.0,
        metadata={"help": "CPUs per engine actor; Ray sets the actor's torch threads from it"},
    )
    max_restarts: int = field(
        default=3,
        metadata={"help": "times Ray restarts a dead engine actor (its batch is retried)"},
    )
    device: str = field(
        default="auto",
        metadata={"help": "transformers: torch device; auto = cuda if the actor has a GPU"},
    )
    dtype: str = field(default="auto", metadata={"help": f"model dtype: {', '.join(DTYPES)}"})
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vllm: GPUs one model is split over (one node)"}
    )
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vllm: fraction of GPU memory for weights and KV cache"}
    )
    followup_dat: str = _followup("dat")
    followup_pgt: str = _followup("pgt")
    followup_aut: str = _followup("aut")
    followup_cwt: str = _followup("cwt")
    followup_custom: str = _followup("custom")

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        k = self.num_samples_per_prompt
        if k < 1:
            raise ValueError(f"num_samples_per_prompt must be >= 1, got {k}")
        if self.num_first_turn is None:
            self.num_first_turn = math.ceil(k / 2)
        if not 1 <= self.num_first_turn <= k:
            raise ValueError(f"num_first_turn must be in [1, {k}], got {self.num_first_turn}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_new_tokens", "batch_size", "engine_batch_size", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.min_actors <= self.max_actors:
            raise ValueError(
                f"need 1 <= min_actors <= max_actors, got {self.min_actors}, {self.max_actors}"
            )
        if self.num_gpus_per_actor is not None and self.num_gpus_per_actor < 0:
            raise ValueError(f"num_gpus_per_actor must be >= 0, got {self.num_gpus_per_actor}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.device.startswith("cuda") and self.gpus_per_actor() == 0:
            raise ValueError(
                f"device {self.device!r} needs num_gpus_per_actor > 0: Ray hides GPUs from "
                "actors that reserve none"
            )
        if self.num_cpus_per_actor < 0:
            raise ValueError(f"num_cpus_per_actor must be >= 0, got {self.num_cpus_per_actor}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")

    def identity(self) -> dict:
        """Every field that can change a row: all but the pool's size and restarts."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in POOL_FIELDS}

    def followup(self, task: str) -> str:
        """The second-turn message for a task (unknown tasks use the custom one)."""
        return getattr(self, f"followup_{task}", self.followup_custom)

    def gpus_per_actor(self) -> float:
        if self.num_gpus_per_actor is not None:
            return self.num_gpus_per_actor
        return float(self.tensor_parallel_size) if self.engine == "vllm" else 0.0

    def sampling_params(self) -> dict:
        """What decides the text (recorded on every output row)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "num_samples_per_prompt": self.num_samples_per_prompt,
            "num_first_turn": self.num_first_turn,
        }
