"""The training settings (reference defaults, SPEC §1) and the verl command they become.

Our settings are a small typed config; everything else is verl's own config
(`verl/trainer/config/ppo_trainer.yaml`), reached with hydra overrides. The overrides are built
here once, printed by `--dry-run`, and composed against verl's config in the tests, so a key
that verl renamed or does not have fails there rather than on a GPU node.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from or_common.reasoner import REASONER_DEFAULTS

from .data import AGENT_NAME

VERL_ENTRY = "verl.trainer.main_ppo"
REWARD_MODULE = "pkg://or_grpo.reward"
AGENT_LOOP_CLASS = "or_grpo.agent_loop.CodeInThinkingAgentLoop"


@dataclass
class TrainConfig:
    """One GRPO run. Defaults are the reference hyper-parameters (SPEC §1, GRPO row)."""

    data: str
    model: str
    out: str
    val: list[str] = field(default_factory=list)
    lr: float = 1e-6
    epochs: int = 100
    batch_size: int = 64
    mini_batch_size: int = 64
    n: int = 8
    temperature: float = REASONER_DEFAULTS.temperature
    top_p: float = REASONER_DEFAULTS.top_p
    #: None: the model's generation_config top_k (Qwen3: 20), which or-gen's evaluation gets
    #: from vLLM too, so rollouts, validation and evaluation sample alike; else -1 (off)
    top_k: int | None = None
    max_prompt_length: int = 3000
    max_response_length: int = REASONER_DEFAULTS.max_tokens
    max_executions: int = REASONER_DEFAULTS.max_executions
    exec_timeout: float = REASONER_DEFAULTS.exec_timeout
    sandbox: str = "local"
    val_n: int = REASONER_DEFAULTS.samples  # pass@1: the mean over them, at the Reasoner's sampling
    test_freq: int = 10
    save_freq: int = 20
    nnodes: int = 1
    gpus_per_node: int = 8
    rollout_tp: int = 1
    gpu_memory_utilization: float = 0.6
    attn_implementation: str = "sdpa"  # the lock has no flash-attn; flash_attention_2 if installed
    project: str = "calm-storm"
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    #: set when a run starts: a relaunch (verl resumes from the last checkpoint) logs apart, and
    #: metrics.jsonl keeps the latest launch's figures for a step seen twice
    launch: str | None = None

    @property
    def verl_metrics_path(self) -> Path:
        name = f"verl-metrics-{self.launch}.jsonl" if self.launch else "verl-metrics.jsonl"
        return self.out_dir / name

    @property
    def model_path(self) -> str:
        """A local folder as an absolute path (Ray workers on other nodes, in other working
        directories, would read a relative one as a hub name); a hub name as given."""
        path = Path(self.model).expanduser()
        return str(path.resolve()) if path.exists() else self.model

    @property
    def sampling_top_k(self) -> int:
        if self.top_k is not None:
            return self.top_k
        from or_common.reasoner import model_sampling_defaults

        return int(model_sampling_defaults(self.model_path).get("top_k", -1))

    @property
    def out_dir(self) -> Path:
        return Path(self.out).resolve()

    @property
    def agent_loop_path(self) -> Path:
        return self.out_dir / "agent_loop.yaml"

    @property
    def train_files(self) -> list[str]:
        return [str(Path(self.data, "train.parquet").resolve())]

    @property
    def val_files(self) -> list[str]:
        """Parquet files as given; problem files (JSONL) become OUT/val-<name>.parquet."""
        return [
            str(self.out_dir / f"val-{Path(v).name.split('.')[0]}.parquet")
            if is_problem_file(v)
            else str(Path(v).resolve())
            for v in self.val
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_problem_file(path: str) -> bool:
    return path.endswith((".jsonl", ".jsonl.gz"))


def _list(items: list[str]) -> str:
    """Hydra list syntax; a path with characters hydra reads specially is quoted."""

    def item(value: str) -> str:
        if re.fullmatch(r"[\w./+-]+", value):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "[" + ",".join(item(i) for i in items) + "]"


def agent_loop_yaml(cfg: TrainConfig) -> str:
    """The registry entry verl's workers load (`agent_loop_config_path`)."""
    return (
        f"- name: {AGENT_NAME}\n"
        f"  _target_: {AGENT_LOOP_CLASS}\n"
        f"  sandbox: {cfg.sandbox}\n"
        f"  max_executions: {cfg.max_executions}\n"
        f"  exec_timeout: {cfg.exec_timeout}\n"
        f"  rollout_log: {cfg.out_dir / 'rollouts'}\n"
        + (f"  launch: '{cfg.launch}'\n" if cfg.launch else "")
    )


def overrides(cfg: TrainConfig) -> list[str]:
    """Hydra overrides of verl's ppo_trainer config: ours first, the user's last (they win)."""
    out = cfg.out_dir
    rollout = "actor_rollout_ref.rollout"
    actor = "actor_rollout_ref.actor"
    val_files = cfg.val_files or cfg.train_files[:1]
    top_k = cfg.sampling_top_k
    ours = [
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",
        f"data.train_files={_list(cfg.train_files)}",
        f"data.val_files={_list(val_files)}",
        f"data.train_batch_size={cfg.batch_size}",
        f"data.max_prompt_length={cfg.max_prompt_length}",
        f"data.max_response_length={cfg.max_response_length}",
        "data.filter_overlong_prompts=True",
        "data.truncation=error",
        f"actor_rollout_ref.model.path={cfg.model_path}",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        f"+actor_rollout_ref.model.override_config.attn_implementation={cfg.attn_implementation}",
        f"{actor}.optim.lr={cfg.lr}",
        f"{actor}.ppo_mini_batch_size={cfg.mini_batch_size}",
        f"{actor}.ppo_micro_batch_size_per_gpu=1",
        f"{actor}.use_kl_loss=False",
        f"{actor}.entropy_coeff=0",
        f"{rollout}.name=vllm",
        f"{rollout}.mode=async",
        f"{rollout}.n={cfg.n}",
        f"{rollout}.temperature={cfg.temperature}",
        f"{rollout}.top_p={cfg.top_p}",
        f"{rollout}.top_k={top_k}",
        # vLLM reserves KV cache for max_model_len (Qwen3-2507 declares 262,144: 36 GiB for
        # the 4B in bf16, more than a 40/48 GB GPU has); no sequence is longer than this
        f"{rollout}.max_model_len={cfg.max_prompt_length + cfg.max_response_length}",
        f"{rollout}.calculate_log_probs=True",
        f"{rollout}.tensor_model_parallel_size={cfg.rollout_tp}",
        f"{rollout}.gpu_memory_utilization={cfg.gpu_memory_utilization}",
        f"{rollout}.log_prob_micro_batch_size_per_gpu=1",
        f"{rollout}.val_kwargs.n={cfg.val_n}",
        f"{rollout}.val_kwargs.temperature={cfg.temperature}",
        f"{rollout}.val_kwargs.top_p={cfg.top_p}",
        f"{rollout}.val_kwargs.top_k={top_k}",
        f"{rollout}.val_kwargs.do_sample=True",
        f"{rollout}.agent.agent_loop_config_path={cfg.agent_loop_path}",
        f"{rollout}.agent.default_agent_loop={AGENT_NAME}",
        f"reward.custom_reward_function.path={REWARD_MODULE}",
        "reward.custom_reward_function.name=compute_score",
        f"trainer.total_epochs={cfg.epochs}",
        f"trainer.nnodes={cfg.nnodes}",
        f"trainer.n_gpus_per_node={cfg.gpus_per_node}",
        "trainer.logger=[console,file]",
        f"trainer.project_name={cfg.project}",
        f"trainer.experiment_name={cfg.experiment or out.name}",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        f"trainer.save_freq={cfg.save_freq}",
        f"trainer.test_freq={cfg.test_freq if cfg.val else -1}",
        f"trainer.val_before_train={bool(cfg.val)}",
        # verl 0.9.1's default V1 trainer imports transfer_queue, which verl does not
        # install; the legacy trainer runs with what the lock has
        "trainer.use_v1=False",
        # verl's file logger writes where this variable says, in its own Ray actor
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={cfg.verl_metrics_path}",
    ]
    theirs = {_key(o) for o in cfg.overrides}
    return [o for o in ours if _key(o) not in theirs] + list(cfg.overrides)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def command(cfg: TrainConfig, python: str | None = None) -> list[str]:
    """The exact command `or-grpo train` runs."""
    return [python or sys.executable, "-m", VERL_ENTRY, *overrides(cfg)]


def format_command(argv: list[str]) -> str:
    """The command as a shell line, one argument per line."""
    head = shlex.join(argv[:3])
    return " \\\n    ".join([head, *(shlex.quote(a) for a in argv[3:])])
