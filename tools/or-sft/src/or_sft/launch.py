"""Multi-GPU and multi-node runs: the DeepSpeed ZeRO-3 config and the `accelerate launch`
command that starts one or-sft worker per GPU.

The ZeRO-3 config is defined here once; `recipes/deepspeed/zero3.json` is the same dict written
out for people who launch by hand (a test keeps the two equal). A run writes the config it used
into its output folder, so the checkpoint says how it was trained.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from typing import Any

from .settings import Settings

#: ZeRO-3 for the HF Trainer: parameters, gradients and optimizer state sharded over all GPUs;
#: bf16; the 16-bit weights gathered on save so the checkpoint is a plain loadable HF model.
#: "auto" values are filled by transformers from the run's own settings (one source of truth).
ZERO3: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "sub_group_size": 1000000000,
        "stage3_max_live_parameters": 1000000000,
        "stage3_max_reuse_distance": 1000000000,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "steps_per_print": 1000000000,
    "wall_clock_breakdown": False,
}

BUILTIN_DEEPSPEED = {"zero3": ZERO3}


def deepspeed_config(choice: str | None) -> dict[str, Any] | None:
    """The DeepSpeed config a `--deepspeed` value names: a built-in name (`zero3`), a JSON file,
    or None for `none`."""
    if choice in (None, "none"):
        return None
    if choice in BUILTIN_DEEPSPEED:
        return BUILTIN_DEEPSPEED[choice]
    path = Path(choice)
    if not path.is_file():
        raise FileNotFoundError(f"--deepspeed {choice}: no such file (or use zero3 / none)")
    return json.loads(path.read_text())


def write_deepspeed(choice: str | None, output_dir: str) -> str | None:
    """Write the chosen DeepSpeed config into the run's folder and return its path."""
    config = deepspeed_config(choice)
    if config is None:
        return None
    path = Path(output_dir) / "deepspeed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # every machine of a multi-node run writes it (a shared folder) while others may read it:
    # a whole file under a temporary name, then renamed over the old one (atomic on POSIX)
    tmp = path.with_name(f".deepspeed.json.{os.getpid()}.{socket.gethostname()}")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    return str(path)


def needs_launcher(settings: Settings) -> bool:
    """Several processes, several machines or DeepSpeed go through `accelerate launch`; one
    process without DeepSpeed trains in this process."""
    return settings.num_processes * settings.num_machines > 1 or settings.deepspeed is not None


def worker_args(
    inputs: tuple[str, ...], settings: Settings, deepspeed_path: str | None
) -> list[str]:
    """Every resolved setting as an explicit flag, so a worker runs exactly what the parent
    resolved (and the printed command is the whole story)."""
    s = settings
    args = [*inputs, "--model", s.model, "-o", s.output_dir]
    if s.tokenizer:
        args += ["--tokenizer", s.tokenizer]
    args += [
        "--lr", repr(s.learning_rate),
        "--lr-scheduler", s.lr_scheduler,
        "--warmup", repr(s.warmup),
        "--weight-decay", repr(s.weight_decay),
        "--max-grad-norm", repr(s.max_grad_norm),
        "--global-batch", str(s.global_batch),
        "--per-device-batch", str(s.per_device_batch),
        "--epochs", repr(s.epochs),
        "--max-length", str(s.max_length),
        "--precision", s.precision,
        "--gradient-checkpointing" if s.gradient_checkpointing else "--no-gradient-checkpointing",
        "--seed", str(s.seed),
        "--save-steps", str(s.save_steps),
        "--save-total-limit", str(s.save_total_limit),
        "--num-processes", str(s.num_processes),
        "--num-machines", str(s.num_machines),
    ]  # fmt: skip
    if s.max_steps:
        args += ["--max-steps", str(s.max_steps)]
    if s.resume:
        args.append("--resume")
    for target in s.report_to:
        args += ["--report-to", target]
    args += ["--deepspeed", deepspeed_path or "none", "--launched"]
    return args


def launch_command(
    inputs: tuple[str, ...],
    settings: Settings,
    deepspeed_path: str | None,
    accelerate_config: str | None = None,
) -> list[str]:
    """The exact `accelerate launch` command for this run (run once per machine; only
    `--machine_rank` differs between machines)."""
    s = settings
    cmd = ["accelerate", "launch"]
    if accelerate_config:
        cmd += ["--config_file", accelerate_config]
    cmd += [
        "--num_processes", str(s.num_processes * s.num_machines),
        "--num_machines", str(s.num_machines),
        "--machine_rank", str(s.machine_rank),
    ]  # fmt: skip
    if s.num_machines > 1:
        if not s.main_process_ip:
            raise ValueError("--num-machines > 1 needs --main-process-ip (the rank-0 machine)")
        cmd += ["--main_process_ip", s.main_process_ip]
    cmd += ["--main_process_port", str(s.main_process_port)]
    if s.num_machines > 1:
        cmd += ["--rdzv_backend", "static", "--same_network"]
    cmd += ["-m", "or_sft.cli", "train", *worker_args(inputs, s, deepspeed_path)]
    return cmd


def launch_env(settings: Settings) -> dict[str, str]:
    """Environment the launch needs on top of the caller's. With one process accelerate starts
    the worker without torch.distributed's variables, and DeepSpeed would then look for MPI;
    several processes get them from accelerate's torchrun launcher."""
    if settings.num_processes * settings.num_machines > 1:
        return {}
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(settings.main_process_port),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }


def render(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """The command (with the variables it needs) as one copy-pasteable shell line."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join([*prefix, shlex.join(cmd)])
