"""The settings of one SFT run: the reference defaults (SPEC §1) in one typed place.

Flags override these; `resolve` turns them into the numbers a run actually uses (gradient
accumulation from the global batch, steps, warmup steps) so `--dry-run` and `run.json` show
exactly what trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Settings:
    """One SFT run. Defaults are the reference hyper-parameters."""

    model: str = "Qwen/Qwen3-4B-Thinking-2507"
    tokenizer: str | None = None  # default: the model's own
    output_dir: str = "ckpt/sft"
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    #: transformers >= 5: a float < 1 is a fraction of the total steps (the old warmup_ratio)
    warmup: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    global_batch: int = 8  # per_device_batch x grad_accum x processes
    per_device_batch: int = 1
    epochs: float = 3.0
    max_length: int = 22000
    max_steps: int | None = None
    precision: str = "auto"  # auto | bf16 | fp32
    gradient_checkpointing: bool = True
    seed: int = 42
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 1
    resume: bool = False
    report_to: tuple[str, ...] = ()
    deepspeed: str | None = None  # a path, or None for plain DDP/single process
    num_processes: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["report_to"] = list(self.report_to)
        return out


@dataclass(frozen=True)
class Plan:
    """What the settings come to for a given number of examples."""

    world_size: int
    grad_accum: int
    examples: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SettingsError(ValueError):
    """Settings that cannot run together (a usage error)."""


def grad_accum_for(settings: Settings) -> int:
    """Gradient accumulation so that per-device batch x accumulation x processes = global batch."""
    world = settings.num_processes * settings.num_machines
    per_step = settings.per_device_batch * world
    if settings.global_batch % per_step:
        raise SettingsError(
            f"--global-batch {settings.global_batch} is not a multiple of --per-device-batch "
            f"{settings.per_device_batch} x {world} processes"
        )
    return settings.global_batch // per_step


def resolve(settings: Settings, examples: int) -> Plan:
    """The step counts a run of `settings` over `examples` examples takes (as the HF Trainer
    counts them: a step is one optimizer update of `global_batch` examples)."""
    accum = grad_accum_for(settings)
    world = settings.num_processes * settings.num_machines
    per_device_examples = math.ceil(examples / world) if examples else 0
    batches = math.ceil(per_device_examples / settings.per_device_batch)
    steps_per_epoch = max(batches // accum + (1 if batches % accum else 0), 1 if examples else 0)
    total = settings.max_steps or math.ceil(settings.epochs * steps_per_epoch)
    warm = settings.warmup
    warmup_steps = int(warm) if warm >= 1 else math.ceil(total * warm)
    return Plan(world, accum, examples, steps_per_epoch, total, warmup_steps)
