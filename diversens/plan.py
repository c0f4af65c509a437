"""Cost planner (`diversens plan`): GPU-hours, memory per GPU, wall time and cost per stage of a
pipeline config, computed from the config itself (model shape, prompts, k, max tokens, pairs,
epochs, batch, pools) and from stated assumptions (`PlanConfig`: throughputs, MFU, prices,
start-up). Every assumption is a config value and is printed with the plan.

Arithmetic (Llama-style decoder, N parameters, ZeRO-3 over G GPUs of one node):
- sample: prompts × k × mean response tokens / (engine GPUs × generated tokens/s per GPU), plus
  one drain at the end (the longest answer's decode steps). The rate is that of a full engine,
  and the engine stays full while chunks are queued (diversens.sampling.engine_loop): on a GPU a
  decode step of an 8B model costs about the same for 1 or ~200 sequences (it reads the weights
  once a step: 16 GB at an A10G's 600 GB/s is 27 ms, and compute takes over only near 200
  sequences at 125 TFLOP/s), so tokens/s falls with every sequence that has ended. An engine
  that drained to each chunk's longest answer, twice per chunk for second turns, ran at its
  occupancy (0.55-0.64 measured on CPU, benchmarks/results/generate.md) of this rate;
- score: fluency prefill of every candidate (prompt + response tokens) on the quality pool;
- DPO: tokens T = pairs × epochs × 2 sequences × (prompt + response); FLOPs = 10·N·T (policy
  forward + backward 6NT, checkpoint recompute 2NT, reference forward 2NT); time = FLOPs /
  (G × peak × MFU), plus checkpoint writes (12 B/parameter of optimizer state + 2 B weights)
  at a storage bandwidth, plus load and export;
- memory per GPU: bf16 weights and grads 4N/G, fp32 master + Adam 12N/G, reference 2N/G,
  gathered embedding, checkpointed activations, one recomputed layer, logits and context;
- eval: models × samples × max tokens over the eval engines (an engine pool per model, all at
  once), plus one model load and one drain;
- rounds: each round r > 1 adds rows `round <r>: sample, score, select, DPO` of round 1's cost
  on its prompts (rounds_num_prompts; its sampler, round r-1's tuned model, has train.model's
  shape) with one DPO run on selection.num_pairs pairs (r times as many with
  rounds_mix_pairs); the eval, a model per round.

Nodes: each stage holds the nodes the autoscaler starts for its actors (diversens.nodes.pack on
the node types of `--cluster`): sample, every pool of the first pass (they stream into each
other, so the scorers are up while the engines sample); score, the scoring pools; DPO, the
training workers; eval, the engine pools; the head, the whole run. A type at its max_workers
makes the autoscaler start a bigger one, priced at that type's rate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diversens import config
from diversens.errors import UserError
from diversens.nodes import Cluster, pack
from diversens.ranges import check_ranges

GB = 1e9


@dataclass
class PlanConfig:
    measured: str | None = field(
        default=None,
        metadata={
            "help": "a finished pilot run (`diversens pipeline ... -o RUN_DIR`): project the "
            "config's wall time per stage on the machine it ran on from its measured rates, "
            "instead of the GPU assumptions below",
            "path": True,
        },
    )
    num_prompts: int = field(
        default=6000, metadata={"range": "[1, inf)", "help": "training prompts sampled"}
    )
    response_tokens: int = field(
        default=250,
        metadata={"range": "[1, inf)", "help": "assumed mean generated tokens per candidate"},
    )
    prompt_tokens: int = field(
        default=150,
        metadata={
            "range": "[0, inf)",
            "help": "assumed mean prompt tokens (a second turn included)",
        },
    )
    model_params: float = field(
        default=8.03e9, metadata={"range": "(0, inf)", "help": "parameters N of the model"}
    )
    hidden_size: int = field(
        default=4096, metadata={"range": "[1, inf)", "help": "model hidden size"}
    )
    num_layers: int = field(default=32, metadata={"range": "[1, inf)", "help": "model layers"})
    vocab_size: int = field(
        default=128256, metadata={"range": "[1, inf)", "help": "model vocabulary"}
    )
    gen_tokens_per_s: float = field(
        default=1500,
        metadata={"range": "(0, inf)", "help": "assumed vLLM generated tokens/s per sampling GPU"},
    )
    decode_step_ms: float = field(
        default=27.0,
        metadata={"range": "(0, inf)",
                  "help": "assumed ms per decode step (8B bf16 on an A10G: weights / bandwidth)"},
    )  # fmt: skip
    prefill_tokens_per_s: float = field(
        default=5000,
        metadata={"range": "(0, inf)", "help": "assumed fluency-scoring prefill tokens/s per GPU"},
    )
    select_rows_per_s: float = field(
        default=6600,
        metadata={"range": "(0, inf)", "help": "selection rows/s on the head (benchmarks/)"},
    )
    gpu_flops: float = field(
        default=312e12, metadata={"range": "(0, inf)", "help": "peak bf16 FLOP/s per GPU"}
    )
    mfu: float = field(
        default=0.35, metadata={"range": "(0, 1]", "help": "assumed model FLOPs utilisation"}
    )
    checkpoint_gb_per_s: float = field(
        default=2.0,
        metadata={"range": "(0, inf)", "help": "assumed checkpoint write bandwidth (GB/s)"},
    )
    load_export_min: float = field(
        default=4.0,
        metadata={
            "range": "[0, inf)",
            "help": "assumed model load + ZeRO-3 init + export (minutes)",
        },
    )
    eval_min_per_model: float = field(
        default=4.0,
        metadata={
            "range": "[0, inf)",
            "help": "assumed eval engine start + model load (min; every model's pool loads at "
            "once)",
        },
    )
    node_startup_min: float = field(
        default=10.0,
        metadata={"range": "[0, inf)", "help": "assumed node boot + image pull (minutes)"},
    )
    node_price_per_h: dict[str, float] = field(
        default_factory=lambda: {"head": 0.38, "gpu_1x": 1.21, "gpu_8x": 32.77},
        metadata={"range": "[0, inf)",
                  "help": "on-demand $/hour per node type of --cluster (cluster.yaml, us-west-2: "
                          "m5.2xlarge, g5.2xlarge, p4d.24xlarge)"},
    )  # fmt: skip

    def __post_init__(self):
        check_ranges(self)


@dataclass(frozen=True)
class Stage:
    name: str
    arithmetic: str
    minutes: float  # wall time, node start-up included where the stage waits for it
    gpus: float  # GPUs held
    nodes: dict[str, int]  # nodes per node type held for `minutes`

    def cost(self, plan: PlanConfig) -> float:
        return sum(n * plan.node_price_per_h[t] for t, n in self.nodes.items()) * self.minutes / 60


def stages(cfg, plan: PlanConfig, cluster: Cluster) -> list[Stage]:
    """The pipeline config's stages, planned on `cluster`'s node types: round 1's, each later
    round's (`round <r>: ...`), the eval and the head. `cfg` is a PipelineConfig."""
    s = cfg.pairs.sampling
    models = cfg.eval_runs()
    engine_gpus = s.max_actors * s.gpus_per_actor()
    eval_gpus = models * cfg.eval.sampling.max_actors * cfg.eval.sampling.gpus_per_actor()
    if not engine_gpus or not eval_gpus:
        raise UserError(
            "plan: the engines run on CPU (pairs.sampling / eval.sampling: 0 GPUs), which this "
            "GPU plan cannot price; project a CPU run with --plan.measured RUN_DIR (a finished "
            "pilot run of the same settings)"
        )
    out = round_stages(cfg, plan, cluster, cfg.pairs.selection.num_pairs)
    labels = round_models(cfg)
    for r, label in cfg.round_labels():
        # The sampler is round r-1's tuned model: train.model's shape, so round 1's rates.
        n = cfg.pairs.selection.num_pairs
        pairs, rcfg = round_pairs(cfg, r, n, n), cfg.for_round(r, cfg.train.model)
        rplan = dataclasses.replace(plan, num_prompts=round_prompts(cfg, plan.num_prompts))
        sample, score, select, dpo = round_stages(rcfg, rplan, cluster, pairs)
        mixed = f" (rounds 1-{r})" if cfg.rounds_mix_pairs else ""
        by = f"sampled by {labels[r - 1]}: "
        sample = dataclasses.replace(sample, arithmetic=by + sample.arithmetic)
        dpo = dataclasses.replace(dpo, arithmetic=f"{label} from {labels[r - 1]} on {pairs:,} "
                                  f"pairs{mixed}: {dpo.arithmetic}")  # fmt: skip
        out += [dataclasses.replace(x, name=f"round {r}: {x.name}")
                for x in (sample, score, select, dpo)]  # fmt: skip
    out.append(eval_stage(cfg, plan, cluster, models, eval_gpus))
    head = {cluster.head: 1}
    check_prices({**{x.name: x.nodes for x in out}, "head": head}, plan, cluster)
    total = sum(x.minutes for x in out)
    out.append(Stage("head", "the whole run", total, 0, head))
    return out


def round_models(cfg) -> dict[int, str]:
    """The label of each round's tuned model of rounds_strategy (round 1's: its first seed's)."""
    return {1: cfg.rounds_strategy, **dict(cfg.round_labels())}


def round_pairs(cfg, r: int, first: int, later: int) -> int:
    """The pairs round r (> 1) trains on when round 1 selects `first` and every later round
    `later`: with rounds_mix_pairs, those of rounds 1 to r."""
    return first + (r - 1) * later if cfg.rounds_mix_pairs else later


def round_prompts(cfg, num_prompts: int) -> int:
    """The prompts a round after the first samples (rounds_num_prompts of round 1's)."""
    return min(cfg.rounds_num_prompts or num_prompts, num_prompts)


def round_stages(cfg, plan: PlanConfig, cluster: Cluster, pairs: int) -> list[Stage]:
    """One round's sample, score, select and DPO (a run on `pairs` pairs)."""
    s, q, t = cfg.pairs.sampling, cfg.pairs.scoring.quality_pool, cfg.train
    k = s.num_samples_per_prompt
    engine_gpus = s.max_actors * s.gpus_per_actor()
    tokens = plan.num_prompts * k * plan.response_tokens
    drain_min = s.max_new_tokens * plan.decode_step_ms / 1000 / 60
    sample_min = tokens / (engine_gpus * plan.gen_tokens_per_s) / 60 + drain_min
    prefill = plan.num_prompts * k * (plan.prompt_tokens + plan.response_tokens)
    score_gpus = max(q.max_actors * q.num_gpus_per_actor, 1e-9)
    score_min = prefill / (score_gpus * plan.prefill_tokens_per_s) / 60
    select_min = plan.num_prompts / plan.select_rows_per_s / 60
    dpo, runs = train_plan(cfg, plan, pairs), len(cfg.trained())  # one after another
    start = plan.node_startup_min
    placed = {"sample": pack(cfg.pairs.demands("pairs."), cluster, "generate-pairs"),
              "score": pack(cfg.pairs.scoring.demands("pairs."), cluster, "generate-pairs"),
              "DPO": pack([t.demand("train.")], cluster, "train")}  # fmt: skip
    return [
        Stage("sample", f"{plan.num_prompts:,} × {k} × {plan.response_tokens} = {tokens:.1e} "
              f"tokens / ({engine_gpus:g} GPUs × {plan.gen_tokens_per_s:,.0f} tok/s) + final "
              f"drain {s.max_new_tokens} steps × {plan.decode_step_ms:g} ms",
              sample_min + start, engine_gpus, placed["sample"]),
        Stage("score", f"fluency prefill {prefill:.1e} tokens / ({score_gpus:g} GPUs × "
              f"{plan.prefill_tokens_per_s:,.0f} tok/s)", score_min, score_gpus, placed["score"]),
        Stage("select", f"{plan.num_prompts:,} rows / {plan.select_rows_per_s:,.0f} rows/s",
              select_min, 0, {}),
        Stage("DPO", f"{runs} run{'s' * (runs > 1)} × ({dpo['flops']:.3g} FLOPs / "
              f"({t.num_workers} × {plan.gpu_flops:.3g} × {plan.mfu:.0%} MFU) + {dpo['saves']} "
              "checkpoint saves + load/export)", runs * dpo["minutes"] + start, t.num_workers,
              placed["DPO"]),
    ]  # fmt: skip


def eval_stage(cfg, plan: PlanConfig, cluster: Cluster, models: int, eval_gpus: float) -> Stage:
    """The eval: an engine pool per model run (`models`), all at once."""
    eval_samples = eval_sample_count(cfg.eval.num_samples)
    eval_tokens = models * eval_samples * cfg.eval.sampling.max_new_tokens
    eval_drain_min = cfg.eval.sampling.max_new_tokens * plan.decode_step_ms / 1000 / 60
    eval_min = plan.eval_min_per_model + eval_drain_min + eval_tokens / (
        eval_gpus * plan.gen_tokens_per_s) / 60  # fmt: skip
    placed = pack(cfg.eval.demands(models, "eval.")["eval sampling"], cluster, "eval sampling")
    return Stage("eval", f"{models} models × {eval_samples} samples × "
                 f"{cfg.eval.sampling.max_new_tokens} tokens on {eval_gpus:g} GPUs (a pool per "
                 f"model, at once) + {plan.eval_min_per_model:g} min load and one drain",
                 eval_min, eval_gpus, placed)  # fmt: skip


def check_prices(placed: dict[str, dict[str, int]], plan: PlanConfig, cluster: Cluster) -> None:
    """Every node type a stage starts has a price."""
    for kind in dict.fromkeys(k for nodes in placed.values() for k in nodes):
        if kind not in plan.node_price_per_h:
            raise UserError(f"plan.node_price_per_h: no price for node type {kind!r} of "
                            f"{cluster.source}, which the plan starts")  # fmt: skip


def eval_samples_per_task(num_samples: dict[str, int]) -> dict[str, int]:
    """Samples per model and task over the eval split: DAT and PGT one prompt, AUT 15, CWT 7."""
    from diversens.prompts import eval_prompts

    prompts = eval_prompts().task.value_counts()
    return {task: int(n * prompts.get(task, 0)) for task, n in num_samples.items()}


def eval_sample_count(num_samples: dict[str, int]) -> int:
    return sum(eval_samples_per_task(num_samples).values())


def train_plan(cfg, plan: PlanConfig, pairs: int | None = None) -> dict[str, float]:
    """DPO steps, tokens, FLOPs, checkpoint saves and minutes of one run of the train section
    on `pairs` pairs (default: selection.num_pairs)."""
    t, n = cfg.train, plan.model_params
    pairs = cfg.pairs.selection.num_pairs if pairs is None else pairs
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_workers
    steps = t.max_steps if t.max_steps > 0 else math.ceil(pairs / batch) * t.num_train_epochs
    tokens = steps * batch * 2 * (plan.prompt_tokens + plan.response_tokens)
    flops = 10 * n * tokens
    compute_s = flops / (t.num_workers * plan.gpu_flops * plan.mfu)
    saves = math.ceil(steps / t.save_steps)
    save_s = saves * n * (12 + 2) / GB / plan.checkpoint_gb_per_s
    minutes = (compute_s + save_s) / 60 + plan.load_export_min
    return {"steps": steps, "tokens": tokens, "flops": flops, "compute_s": compute_s,
            "saves": saves, "save_s": save_s, "minutes": minutes}  # fmt: skip


def memory_per_gpu(cfg, plan: PlanConfig) -> list[tuple[str, float]]:
    """(item, GB) per GPU for ZeRO-3 DPO with bf16 weights, gradient checkpointing, SDPA."""
    t, n, g = cfg.train, plan.model_params, cfg.train.num_workers
    seqs = 2 * t.per_device_train_batch_size  # chosen + rejected per pair
    h, layers = plan.hidden_size, plan.num_layers
    rows = [
        ("policy weights + grads (bf16)", n * 4 / g),
        ("fp32 master weights + Adam m, v", n * 12 / g),
        ("reference model (bf16, sharded)", n * 2 / g),
        ("gathered embedding / lm_head + buckets", plan.vocab_size * h * 2 + 1 * GB),
        ("checkpointed layer inputs", seqs * t.max_length * h * 2 * layers),
        ("one layer recomputed", 34 * t.max_length * seqs * h),
        ("logits (chunked) + CUDA context, fragmentation", 4 * GB),
    ]
    return [(item, b / GB) for item, b in rows]


def figures(cfg, plan: PlanConfig, cluster: Cluster) -> list[float]:
    """Every number `render` prints of the stages and the memory, totals included."""
    rows = stages(cfg, plan, cluster)
    per_stage = [(x.minutes, x.gpus * x.minutes / 60, x.cost(plan)) for x in rows]
    gpu_h, cost = (sum(f[i] for f in per_stage) for i in (1, 2))
    mem = [gb for _, gb in memory_per_gpu(cfg, plan)]
    return [*(f for row in per_stage for f in row), gpu_h, cost, *mem, sum(mem)]


def check_finite(cfg, project: Callable[[Any], list[float]]) -> None:
    """Refuse a pipeline config `cfg` whose projection (`project(cfg)`: the plan's figures) holds
    a number that is not finite, as a value far out of scale gives (1e308 epochs overflow, a
    rate of 5e-324 tokens/s takes forever), naming the options that feed it (`_feeding`)."""
    if _finite(project, cfg):
        return
    given = [o for o in config.options(type(cfg))  # numbers only: no other value overflows
             if "range" in o.field.metadata and _value(cfg, o.name) != o.default]  # fmt: skip
    names = _feeding(project, cfg, given)
    raise UserError(
        f"option{'s' * (len(names) > 1)} {', '.join(names)}: the plan projected from "
        f"{'them' if len(names) > 1 else 'it'} is not a finite number (a value too large, or "
        "a rate too small); give a value nearer the default"
    )


def _feeding(project: Callable[[Any], list[float]], cfg, given: list[config.Option]) -> list[str]:
    """The options set (`given`) each of whose default alone makes the projection finite; where
    none does, a smallest set that does together: reset one by one (skipping one whose default
    the checks refuse beside the others) until it is, then each kept only where resetting the
    others leaves it not finite. Every option set where no such set exists."""
    alone = [o.name for o in given if _finite_at_defaults(project, cfg, [o])]
    if alone:
        return alone
    reset: list[config.Option] = []
    for option in given:
        finite = _finite_at_defaults(project, cfg, [*reset, option])
        if finite is not None:
            reset.append(option)
        if finite:
            break
    else:
        return [o.name for o in given]
    for option in list(reset):
        others = [o for o in reset if o is not option]
        if _finite_at_defaults(project, cfg, others):
            reset = others
    return [o.name for o in reset]


def _finite(project: Callable[[Any], list[float]], cfg) -> bool:
    try:
        return all(math.isfinite(f) for f in project(cfg))
    except ArithmeticError:  # an int too large for a float, the ceiling of inf
        return False


def _finite_at_defaults(
    project: Callable[[Any], list[float]], cfg, options: list[config.Option]
) -> bool | None:
    """Whether the projection is finite with `options` at their defaults; None where the
    config's checks, or the plan's, refuse those defaults beside the other values."""
    try:
        for option in options:
            cfg = _with(cfg, option.name, option.default)
        return _finite(project, cfg)
    except (ValueError, TypeError, UserError):
        return None


def _value(cfg, dotted: str) -> Any:
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def _with(cfg, dotted: str, value: Any) -> Any:
    """`cfg` with the option `dotted` set to `value`, checked again."""
    head, _, rest = dotted.partition(".")
    inner = _with(getattr(cfg, head), rest, value) if rest else value
    return dataclasses.replace(cfg, **{head: inner})


def render(cfg, plan: PlanConfig, cluster: Cluster) -> str:
    """The plan as Markdown: stages, DPO memory per GPU, and the assumptions."""
    rows = stages(cfg, plan, cluster)
    lines = ["| stage | arithmetic | nodes | wall (min) | GPU-hours | cost ($) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for x in rows:
        held = " + ".join(f"{n} {kind}" for kind, n in x.nodes.items()) or "(head)"
        lines.append(f"| {x.name} | {x.arithmetic} | {held} | {x.minutes:.1f} | "
                     f"{x.gpus * x.minutes / 60:.2f} | {x.cost(plan):.2f} |")  # fmt: skip
    cost = sum(x.cost(plan) for x in rows)
    gpu_h = sum(x.gpus * x.minutes / 60 for x in rows)
    lines.append(f"| **total** | | | **{rows[-1].minutes:.0f}** | **{gpu_h:.1f}** | "
                 f"**{cost:.1f}** |")  # fmt: skip
    mem = memory_per_gpu(cfg, plan)
    total = sum(gb for _, gb in mem)
    lines += ["", f"DPO memory per GPU (ZeRO-3 over {cfg.train.num_workers} GPUs):", "",
              "| item | GB |", "|---|---|", *(f"| {i} | {gb:.1f} |" for i, gb in mem),
              f"| **total** | **{total:.1f}** |", "", "Assumptions:", ""]  # fmt: skip
    lines += [f"- node types: {cluster.source}"]
    lines += [f"- {name}: {value}" for name, value in vars(plan).items() if name != "measured"]
    return "\n".join(lines) + "\n"
