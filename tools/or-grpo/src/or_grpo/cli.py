"""or-grpo: GRPO with code execution inside the reasoning, through verl 0.9.1.

Subcommands: `prepare` (problems to verl's parquet), `train` (launch verl), `plot` (behaviour
curves from OUT/metrics.jsonl) and `export` (final actor to a Hugging Face checkpoint).
verl, torch and ray are imported only by verl's own processes, never here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import click
from or_common.cli import EXIT_FAILED, echo_err, epilog
from or_common.records import TOOL_VERSION
from or_common.scoring import SCORING_VERSION
from or_common.stamp import stamped

from . import config as cfgmod
from .metrics import METRICS, build_metrics, plot_runs

#: the flags' defaults are TrainConfig's own (one definition of each reference default)
FLAG_DEFAULTS = {f.name: f.default for f in fields(cfgmod.TrainConfig)}


@click.group(
    epilog=epilog(
        "or-grpo prepare rl.jsonl -o data/rl --val test.jsonl",
        "or-grpo train data/rl --model ckpt/sft -o runs/storm --dry-run",
        "or-grpo train data/rl --model ckpt/sft -o runs/storm --val data/rl/val.parquet",
        "or-grpo plot runs/storm runs/sft-only -o curves.png",
        "or-grpo export runs/storm -o ckpt/storm && or-gen test.jsonl --model ckpt/storm",
    )
)
def main() -> None:
    """GRPO through verl with code execution in the rollout and executor tokens masked.

    The rollout generates to each closing code fence, runs the block in or-exec's sandbox,
    appends its output (masked out of the loss), at most 4 times per trajectory; the reward is
    or-score's strict verdict on the model's own final answer (1 or 0).
    """


@main.command(
    epilog=epilog(
        "or-grpo prepare rl.jsonl -o data/rl",
        "or-grpo prepare rl.jsonl -o data/rl --val test.jsonl --tokenizer Qwen/Qwen3-4B-Thinking-2507",
    )
)
@click.argument("problems", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for train.parquet (and val.parquet).",
)
@click.option(
    "--val",
    "val",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Problems for periodic validation (written to val.parquet).",
)
@click.option(
    "--prompt",
    "prompt_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A Reasoner prompt template with {question} (default: or-gen's).",
)
@click.option(
    "--max-executions",
    default=FLAG_DEFAULTS["max_executions"],
    show_default=True,
    help="Stated in the prompt.",
)
@click.option(
    "--tokenizer", help="Reject prompts longer than --max-prompt-length with this tokenizer."
)
@click.option("--max-prompt-length", default=FLAG_DEFAULTS["max_prompt_length"], show_default=True)
def prepare(problems, out, val, prompt_file, max_executions, tokenizer, max_prompt_length):
    """Problems (JSONL) to parquet in verl's RL schema, prompts built exactly as or-gen builds
    them. Problems without a usable answer are rejected as FILE:LINE: reason (exit 1)."""
    from or_common.reasoner import load_prompt

    from .data import prepare as prepare_rows
    from .data import write_parquet, write_stamp

    try:
        template, version = load_prompt(prompt_file)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    tok = None
    if tokenizer:
        from or_common.tokens import TokenizerError, load_tokenizer

        try:
            tok = load_tokenizer(tokenizer)
        except TokenizerError as err:
            raise click.UsageError(str(err)) from None
    stamp = {
        "tool": "or-grpo",
        "tool_version": TOOL_VERSION,
        "prompt_version": version,
        "max_executions": max_executions,
        "splits": {},
    }
    rejected = 0
    for split, paths in (("train", problems or ("-",)), ("val", val)):
        if not paths:
            continue
        result = prepare_rows(
            paths, split, template, version, max_executions, tok, max_prompt_length
        )
        for line in result.rejected:
            echo_err(line)
        rejected += len(result.rejected)
        if not result.rows:
            raise click.ClickException(f"no usable problem in {', '.join(paths)}")
        write_parquet(result.rows, Path(out, f"{split}.parquet"))
        stamp["splits"][split] = {
            "files": list(paths),
            "rows": len(result.rows),
            "rejected": len(result.rejected),
        }
        echo_err(
            f"or-grpo prepare: {split}: {result.read} read, {len(result.rows)} rows, "
            f"{len(result.rejected)} rejected -> {Path(out, f'{split}.parquet')}"
        )
    write_stamp(out, stamp)
    sys.exit(EXIT_FAILED if rejected else 0)


METRICS_EVERY_S = 60
STDERR_FD = 2  # verl prints to stdout; it goes to our stderr, as our stdout carries only data


def _need_gpu_stack() -> None:
    missing = [m for m in ("verl", "vllm", "ray") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.UsageError(
            f"{', '.join(missing)} not installed: run `uv sync --extra gpu` on a GPU node "
            "(verl's rollouts need vLLM)"
        )


@main.command(
    context_settings={"ignore_unknown_options": True},
    epilog=epilog(
        "or-grpo train data/rl --model ckpt/sft -o runs/storm --dry-run",
        "or-grpo train data/rl --model ckpt/sft -o runs/storm --val data/rl/val.parquet "
        "--sandbox http://cpu-node:8765 trainer.save_freq=10",
        "ray start --head  # then, on every other node: ray start --address HEAD:6379",
        "or-grpo train data/rl --model ckpt/sft -o /shared/storm --nnodes 4",
    ),
)
@click.argument("data", type=click.Path(file_okay=False))
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--model", required=True, help="The actor to start from (HF folder or hub name).")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: checkpoints, metrics.jsonl, curves.png, run.json.",
)
@click.option(
    "--val",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Validation set: parquet, or problems JSONL (default: DATA/val.parquet when present).",
)
@click.option("--lr", default=FLAG_DEFAULTS["lr"], show_default=True)
@click.option("--epochs", default=FLAG_DEFAULTS["epochs"], show_default=True)
@click.option(
    "--batch-size", default=FLAG_DEFAULTS["batch_size"], show_default=True, help="Prompts per step."
)
@click.option("--mini-batch-size", default=FLAG_DEFAULTS["mini_batch_size"], show_default=True)
@click.option("--n", "n", default=FLAG_DEFAULTS["n"], show_default=True, help="Samples per prompt.")
@click.option("--temperature", default=FLAG_DEFAULTS["temperature"], show_default=True)
@click.option("--top-p", default=FLAG_DEFAULTS["top_p"], show_default=True)
@click.option(
    "--top-k",
    type=int,
    default=FLAG_DEFAULTS["top_k"],
    help="Default: the model's generation_config top_k (as or-gen's evaluation), else -1.",
)
@click.option("--max-prompt-length", default=FLAG_DEFAULTS["max_prompt_length"], show_default=True)
@click.option(
    "--max-response-length", default=FLAG_DEFAULTS["max_response_length"], show_default=True
)
@click.option("--max-executions", default=FLAG_DEFAULTS["max_executions"], show_default=True)
@click.option("--exec-timeout", default=FLAG_DEFAULTS["exec_timeout"], show_default=True)
@click.option(
    "--sandbox",
    default=FLAG_DEFAULTS["sandbox"],
    show_default=True,
    help="'local' (a pool per worker) or the URL of `or-exec serve`.",
)
@click.option(
    "--val-n",
    default=FLAG_DEFAULTS["val_n"],
    show_default=True,
    help="Samples per validation problem.",
)
@click.option("--test-freq", default=FLAG_DEFAULTS["test_freq"], show_default=True)
@click.option("--save-freq", default=FLAG_DEFAULTS["save_freq"], show_default=True)
@click.option("--nnodes", default=FLAG_DEFAULTS["nnodes"], show_default=True)
@click.option("--gpus-per-node", default=FLAG_DEFAULTS["gpus_per_node"], show_default=True)
@click.option(
    "--rollout-tp",
    default=FLAG_DEFAULTS["rollout_tp"],
    show_default=True,
    help="vLLM tensor parallel size.",
)
@click.option(
    "--attn-implementation", default=FLAG_DEFAULTS["attn_implementation"], show_default=True
)
@click.option("--dry-run", is_flag=True, help="Print the verl command and settings; run nothing.")
def train(data, overrides, out, dry_run, **options):
    """Launch verl's GRPO trainer (python -m verl.trainer.main_ppo) with the reference
    settings; extra key=value arguments are hydra overrides passed through to verl."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise click.UsageError(f"not a key=value override: {' '.join(bad)}")
    val = list(options.pop("val")) or (
        [str(Path(data, "val.parquet"))] if Path(data, "val.parquet").exists() else []
    )
    cfg = cfgmod.TrainConfig(data=data, out=out, val=val, overrides=list(overrides), **options)
    argv = cfgmod.command(cfg)
    if dry_run:
        click.echo(cfgmod.format_command(argv))
        click.echo(f"\n# {cfg.agent_loop_path}\n" + cfgmod.agent_loop_yaml(cfg), nl=False)
        click.echo("\n# settings\n" + json.dumps(cfg.to_dict(), indent=2))
        return
    if not Path(data, "train.parquet").is_file():
        raise click.UsageError(f"{data}: no train.parquet (make it with `or-grpo prepare`)")
    _need_gpu_stack()
    stamp_file = Path(data, "prepare.json")
    prepared = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    cfg.launch = time.strftime("%Y%m%dT%H%M%S")
    argv = cfgmod.command(cfg)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    _convert_val(cfg, prepared)
    cfg.agent_loop_path.write_text(cfgmod.agent_loop_yaml(cfg))
    run = stamped(
        {
            "tool": "or-grpo",
            "tool_version": TOOL_VERSION,
            "engine": "verl 0.9.1",
            "prompt_version": prepared.get("prompt_version"),
            "scoring": f"strict ({SCORING_VERSION})",
            "settings": cfg.to_dict(),
            "command": argv,
        },
        leave_out=("scoring_version",),  # `scoring` names it, with the protocol
    )
    (cfg.out_dir / f"run-{cfg.launch}.json").write_text(json.dumps(run, indent=2) + "\n")
    (cfg.out_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")  # the latest
    proc = subprocess.Popen(argv, stdout=STDERR_FD)
    try:
        while True:
            try:
                rc = proc.wait(timeout=METRICS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                build_metrics(cfg.out_dir)  # metrics.jsonl follows the run
    except KeyboardInterrupt:  # verl got the same signal; let it stop, keep what it wrote
        rc = proc.wait()
    records = build_metrics(cfg.out_dir)
    if records:
        plot_runs([(cfg.out_dir.name, records)], cfg.out_dir / "curves.png")
    echo_err(f"or-grpo train: verl exited {rc}; {len(records)} steps in {cfg.out_dir / METRICS}")
    sys.exit(0 if rc == 0 else EXIT_FAILED)


def _convert_val(cfg: cfgmod.TrainConfig, prepared: dict) -> None:
    """Validation problems given as JSONL become parquet in the run folder, prompted like the
    training data (which must use or-gen's prompt; a custom one goes through `prepare --val`)."""
    from or_common.reasoner import PROMPT_VERSION, REASONER_PROMPT

    from .data import prepare as prepare_rows
    from .data import write_parquet

    for src, dst in zip(cfg.val, cfg.val_files, strict=True):
        if not cfgmod.is_problem_file(src):
            continue
        if prepared.get("prompt_version", PROMPT_VERSION) != PROMPT_VERSION:
            raise click.UsageError(
                f"{cfg.data} uses the prompt {prepared['prompt_version']}: prepare {src} with "
                "the same one (`or-grpo prepare … --prompt FILE --val {src}`)"
            )
        result = prepare_rows([src], "val", REASONER_PROMPT, PROMPT_VERSION, cfg.max_executions)
        for line in result.rejected:
            echo_err(line)
        if not result.rows:
            raise click.UsageError(f"{src}: no usable validation problem")
        write_parquet(result.rows, dst)


@main.command(epilog=epilog("or-grpo plot runs/storm runs/sft-only -o curves.png"))
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    "out",
    default="curves.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The PNG to write.",
)
@click.option("--label", "labels", multiple=True, help="A name per run (default: folder name).")
def plot(runs, out, labels):
    """Accuracy, validation accuracy, code blocks and response length per step, several runs
    side by side (rebuilds each run's metrics.jsonl first, so it works during a run)."""
    if labels and len(labels) != len(runs):
        raise click.UsageError("give one --label per run")
    series = []
    for i, run in enumerate(runs):
        records = build_metrics(run)
        if not records:
            raise click.ClickException(
                f"{run}: no metrics yet (no rollouts/ or verl-metrics.jsonl)"
            )
        series.append((labels[i] if labels else Path(run).resolve().name, records))
    plot_runs(series, out)
    echo_err(f"or-grpo plot: {len(runs)} run(s) -> {out}")


def merge_fsdp_actor(actor: Path, out: Path) -> None:
    """What `python -m verl.model_merger merge --backend fsdp` does, in this process (verl
    prints progress to stdout, so stdout points at stderr meanwhile)."""
    from or_common.guard import stdout_guard
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    out.mkdir(parents=True, exist_ok=True)
    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(actor),
        target_dir=str(out.resolve()),
        hf_model_config_path=str(actor / "huggingface"),
    )
    with stdout_guard():
        merger = FSDPModelMerger(config)
        merger.merge_and_save()
        merger.cleanup()


def latest_actor(out: Path, step: int | None) -> Path:
    """OUT/checkpoints/global_step_N/actor for the given or the latest saved step."""
    ckpts = out / "checkpoints"
    if step is None:
        marker = ckpts / "latest_checkpointed_iteration.txt"
        if marker.exists():
            step = int(marker.read_text().strip())
        else:
            steps = [int(p.name.split("_")[-1]) for p in ckpts.glob("global_step_*")]
            if not steps:
                raise click.UsageError(f"{out}: no checkpoint under {ckpts}")
            step = max(steps)
    actor = ckpts / f"global_step_{step}" / "actor"
    if not actor.is_dir():
        raise click.UsageError(f"{actor}: no such checkpoint")
    return actor


@main.command(
    epilog=epilog(
        "or-grpo export runs/storm -o ckpt/storm",
        "or-grpo export runs/storm --step 40 -o ckpt/storm-40",
    )
)
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False))
@click.option("--step", type=int, help="Export this step instead of the latest.")
@click.option(
    "--dry-run", is_flag=True, help="Print the equivalent verl.model_merger command; merge nothing."
)
def export(run, out, step, dry_run):
    """The trained actor as a Hugging Face checkpoint (verl.model_merger), loadable by or-gen."""
    actor = latest_actor(Path(run).resolve(), step)
    argv = [
        sys.executable,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(actor),
        "--target_dir",
        str(Path(out).resolve()),
    ]
    if dry_run:
        click.echo(shlex.join(argv))
        return
    if importlib.util.find_spec("verl") is None:
        raise click.UsageError("verl is not installed: run `uv sync --extra gpu`")
    if not (actor / "fsdp_config.json").is_file():
        raise click.UsageError(f"{actor}: not an FSDP actor checkpoint (no fsdp_config.json)")
    merge_fsdp_actor(actor, Path(out))
    hf = actor / "huggingface"  # verl keeps the config, tokenizer and chat template here
    for name in os.listdir(hf) if hf.is_dir() else []:
        if not Path(out, name).exists() and Path(hf, name).is_file():
            shutil.copy2(hf / name, Path(out, name))
    Path(out, "or-grpo.json").write_text(
        json.dumps({"tool": "or-grpo", "tool_version": TOOL_VERSION, "from": str(actor)}, indent=2)
        + "\n"
    )
    echo_err(f"or-grpo export: {actor} -> {out}")
