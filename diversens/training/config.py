"""TrainConfig: DPO hyper-parameters, LoRA, DeepSpeed stage and Ray Train resources
(docs/design.md §12).

The options users set most are typed fields with defaults chosen here; any other field of TRL's
`DPOConfig` goes through `dpo_args` as is (its keys checked against TRL by `check_dpo_args`).

Defaults (the paper gives no DPO hyper-parameters, docs/design.md §1), chosen for full
fine-tuning of an 8B model on ~3,000 pairs on 8 GPUs:
- beta 0.1: TRL's and the DPO paper's default; larger keeps the policy closer to the reference.
- learning_rate 5e-7 with cosine decay and 10% warm-up: what Zephyr and Tulu 3 used for full-FT
  DPO of 7-8B models; much higher rates over-optimise DPO within one epoch. LoRA needs ~10-100x
  more (e.g. 5e-6 to 5e-5); tiny CPU runs use 1e-4 and up.
- 2 epochs at 4 pairs per device × 2 accumulation steps (64 pairs per step on 8 GPUs):
  3,000 pairs give ~94 optimiser steps, enough for the warm-up and decay to mean something.
- max_length 1024 tokens for prompt + response: a two-turn prompt (first answer + "a different
  answer" request) plus a 256-token response fits; longer pairs are truncated at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diversens.config import check_names
from diversens.errors import UserError
from diversens.nodes import Demand
from diversens.ranges import check_name, check_ranges
from diversens.storage import is_uri

DEEPSPEED_STAGES = ("zero3", "zero2", "none")
PLACEMENT_STRATEGIES = ("STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD")  # Ray placement groups
# DPOConfig fields the training loop sets itself, and why a user's value would break the run
# (`deepspeed` is an option of its own, the ZeRO stage).
OWNED_DPO_ARGS = {
    "output_dir": "each rank's local checkpoint dir",
    "save_strategy": "Ray Train stores a checkpoint every train.save_steps",
    "save_total_limit": "Ray Train keeps train.num_checkpoints_to_keep",
    "resume_from_checkpoint": "a rerun with the same name resumes from Ray's checkpoint",
    "use_cpu": "follows train.use_gpu",
    "local_rank": "Ray Train assigns the ranks",
    "ddp_backend": "Ray Train forms the process group (gloo on CPU, nccl on GPU)",
}


@dataclass
class TrainConfig:
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "built-in model name, local HF dir or Hugging Face id (policy and ref)"},
    )
    name: str = field(
        default="dpo",
        metadata={"help": "run name under storage_path; rerunning the same name resumes it"},
    )
    storage_path: str | None = field(
        default=None,
        metadata={"help": "Ray Train checkpoint storage: local dir or s3://, gs:// URI "
                  "(default: OUTPUT/checkpoints)", "path": True},
    )  # fmt: skip
    num_workers: int = field(
        default=2, metadata={"range": "[1, inf)", "help": "Ray Train workers (one per GPU)"}
    )
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker (nccl backend)"})
    num_cpus_per_worker: float = field(
        default=1.0, metadata={"range": "(0, inf)", "help": "CPUs per Ray worker"}
    )
    placement_strategy: str = field(
        default="STRICT_PACK",
        metadata={
            "help": f"Ray placement of the workers ({', '.join(PLACEMENT_STRATEGIES)}); "
            "STRICT_PACK keeps ZeRO-3 on one node (the autoscaler then starts one 8-GPU node, "
            "not eight 1-GPU ones); PACK or SPREAD for a run meant to span nodes"
        },
    )
    accelerator_type: str | None = field(
        default=None,
        metadata={
            "help": "GPU type every worker needs (A100, H100, ...; the node type must offer "
            "the resource accelerator_type:<TYPE>)"
        },
    )
    deepspeed: str = field(
        default="zero3",
        metadata={"help": "DeepSpeed ZeRO stage: zero3 (params, grads and optimizer sharded), "
                  "zero2 (grads and optimizer sharded) or none (plain DDP)"},
    )  # fmt: skip
    beta: float = field(
        default=0.1,
        metadata={"range": "(0, inf)", "help": "DPO beta: KL strength to the reference"},
    )
    learning_rate: float = field(
        default=5e-7, metadata={"range": "(0, inf)", "help": "peak AdamW learning rate"}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler"})
    warmup_ratio: float = field(
        default=0.1, metadata={"range": "[0, 1)", "help": "linear warm-up, share of steps"}
    )
    num_train_epochs: float = field(
        default=2.0, metadata={"range": "(0, inf)", "help": "passes over the pairs"}
    )
    max_steps: int = field(
        default=-1,
        metadata={"range": "[-1, inf)", "help": "optimiser steps; > 0 overrides num_train_epochs"},
    )
    per_device_train_batch_size: int = field(
        default=4, metadata={"range": "[1, inf)", "help": "pairs per worker step"}
    )
    gradient_accumulation_steps: int = field(
        default=2, metadata={"range": "[1, inf)", "help": "micro-batches per step"}
    )
    max_length: int = field(
        default=1024,
        metadata={
            "range": "[1, inf)",
            "help": "max tokens of prompt + response (truncated beyond)",
        },
    )
    lora: bool = field(
        default=False, metadata={"help": "train LoRA adapters (peft), merged at export"}
    )
    lora_r: int = field(default=16, metadata={"range": "[1, inf)", "help": "LoRA rank"})
    lora_alpha: int = field(
        default=32, metadata={"range": "[1, inf)", "help": "LoRA scaling alpha"}
    )
    lora_dropout: float = field(default=0.05, metadata={"range": "[0, 1)", "help": "LoRA dropout"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={
            "help": "modules given LoRA adapters (comma-separated; all-linear = every linear)"
        },
    )
    logging_steps: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "log metrics every N steps"}
    )
    save_steps: int = field(
        default=25, metadata={"range": "[1, inf)", "help": "checkpoint every N steps (and at end)"}
    )
    num_checkpoints_to_keep: int = field(
        default=2, metadata={"range": "[1, inf)", "help": "Ray checkpoints kept"}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bfloat16 mixed precision (default: on with GPUs)"}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "recompute activations (default: on with GPUs)"}
    )
    seed: int = field(
        default=0,
        metadata={"range": "[0, 4294967295]", "help": "seed for data order and initialisation"},
    )
    dpo_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "any other TRL DPOConfig field, key=value,... (numbers and true/false "
            "typed; lists in YAML), set after the options above, e.g. "
            "report_to=tensorboard (events in logs/tensorboard beside the model), loss_type=ipo, "
            "ld_alpha=0.5, precompute_ref_log_probs=true, weight_decay=0.01. Keys that are "
            "options here, or that diversens sets itself (output_dir, save_strategy, ...), "
            "are refused"
        },
    )

    def checkpoints(self, output: str | Path) -> str:
        """Where Ray Train checkpoints go: storage_path, else OUTPUT/checkpoints, a local path
        made absolute (decided here only, for the preflight check and the trainer alike)."""
        path = self.storage_path or f"{str(output).rstrip('/')}/checkpoints"
        # Ray Train refuses a relative local path ("URI has empty scheme").
        return path if is_uri(path) else str(Path(path).absolute())  # `~`: expanded at parse

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.deepspeed not in DEEPSPEED_STAGES:
            raise ValueError(f"deepspeed must be one of {DEEPSPEED_STAGES}, got {self.deepspeed!r}")
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(
                f"placement_strategy must be one of {PLACEMENT_STRATEGIES}, "
                f"got {self.placement_strategy!r}"
            )
        if self.accelerator_type is not None and not self.use_gpu:
            raise ValueError("accelerator_type needs use_gpu: true")
        targets = self.lora_target_modules
        if not targets or any(not str(t).strip() for t in targets):
            raise ValueError(
                f"lora_target_modules: expected module names (e.g. q_proj,v_proj) or all-linear, "
                f"got {','.join(targets)!r}"
            )
        if "all-linear" in targets and len(targets) > 1:
            raise ValueError("lora_target_modules: all-linear stands alone (it means every linear)")
        check_name("name", self.name, "run name")
        options = {f.name for f in fields(self)}
        for key in self.dpo_args:
            if key in options:
                raise ValueError(f"dpo_args.{key}: has an option of its own ({key}); set that")
            if key in OWNED_DPO_ARGS:
                raise ValueError(f"dpo_args.{key}: set by diversens ({OWNED_DPO_ARGS[key]})")

    def resources_per_worker(self) -> dict[str, float]:
        """What each Ray Train worker asks for, as `ScalingConfig.resources_per_worker`."""
        return {"CPU": self.num_cpus_per_worker, **({"GPU": 1} if self.use_gpu else {})}

    def demand(self, prefix: str = "") -> Demand:
        """The worker group as the autoscaler sees it: one bundle of every worker on one node
        with STRICT_PACK, else one per worker (Ray adds 0.001 of the accelerator_type)."""
        worker = self.resources_per_worker()
        if self.accelerator_type:
            worker[f"accelerator_type:{self.accelerator_type}"] = 0.001
        option = f"{prefix}num_workers"
        if self.placement_strategy == "STRICT_PACK":
            group = {k: v * self.num_workers for k, v in worker.items()}
            return Demand("the training worker group (STRICT_PACK: one node)", 1, group, option,
                          option)  # fmt: skip
        return Demand("the training workers", self.num_workers, worker, option,
                      f"{prefix}num_cpus_per_worker")  # fmt: skip

    @property
    def use_bf16(self) -> bool:
        return self.use_gpu if self.bf16 is None else self.bf16

    @property
    def use_gradient_checkpointing(self) -> bool:
        return self.use_gpu if self.gradient_checkpointing is None else self.gradient_checkpointing


def check_dpo_args(dpo_args: dict[str, Any], option: str = "dpo_args") -> None:
    """Every key of `dpo_args` is a field of TRL's DPOConfig. Importing TRL (and torch with it)
    takes seconds, so the commands call this before Ray starts, not the config; without keys
    there is nothing to import."""
    if not dpo_args:
        return
    import trl

    known = {f.name for f in fields(trl.DPOConfig)}
    check_names(option, dpo_args, known, f"a field of TRL {trl.__version__}'s DPOConfig")


def check_lora_targets(cfg: TrainConfig, option: str = "lora_target_modules") -> None:
    """With LoRA, every target module names a module of the model (peft matches a name or its
    last dotted parts), told from the tensor names in the safetensors headers of a local model
    dir without loading any weights; where those cannot be read cheaply, peft says it later."""
    if not cfg.lora or cfg.lora_target_modules == ["all-linear"]:
        return
    from diversens.models import resolve_model
    from diversens.weights import loaded_tensors

    if is_uri(cfg.model):
        return
    path = Path(resolve_model(cfg.model))
    names = loaded_tensors(path, f"model {cfg.model!r}", "copy it again") if path.is_dir() else None
    if not names:
        return
    modules = {n.rsplit(".", 1)[0] for n in names}
    for target in cfg.lora_target_modules:
        if not any(m == target or m.endswith("." + target) for m in modules):
            leaves = sorted({m.rsplit(".", 1)[-1] for m in modules} - {"weight", "bias"})
            more = ", ..." if len(leaves) > 12 else ""
            raise UserError(
                f"option {option}: {target!r} names no module of the model {cfg.model} "
                f"(its modules end in: {', '.join(leaves[:12])}{more})"
            )
