"""or-sft: supervised fine-tuning on (golden) trajectories with executor output masked."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import click
from or_common.cli import (
    EXIT_FAILED,
    EXIT_OK,
    DefaultGroup,
    ToolRun,
    echo_err,
    epilog,
    io_options,
)
from or_common.guard import stdout_guard
from or_common.records import RecordError

from .settings import Settings, SettingsError, grad_accum_for, resolve

REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb"}
#: the flags' defaults are Settings' own (one definition of each reference default)
FLAG_DEFAULTS = {f.name: f.default for f in fields(Settings)}


@click.group(
    cls=DefaultGroup,
    default="train",
    epilog=epilog(
        "or-sft golden.jsonl --model Qwen/Qwen3-4B-Thinking-2507 -o ckpt/sft",
        "or-sft encode golden.jsonl --tokenizer Qwen/Qwen3-4B-Thinking-2507 --show",
    ),
)
def main() -> None:
    """Supervised fine-tuning on trajectories (trl SFTTrainer, DeepSpeed ZeRO-3 on GPUs).

    `or-sft TRAJ.jsonl …` trains (the `train` command); `or-sft encode` writes the examples.
    """


def _train_options(func):
    opts = [
        click.argument("inputs", nargs=-1, required=True, type=click.Path(allow_dash=True)),
        click.option("--model", required=True, help="Base model: a local folder or a hub name."),
        click.option("-o", "--output-dir", required=True, help="Checkpoint folder to write."),
        click.option("--tokenizer", help="Tokenizer folder or hub name [default: the model's]."),
        click.option(
            "--lr",
            "learning_rate",
            type=float,
            default=FLAG_DEFAULTS["learning_rate"],
            show_default=True,
        ),
        click.option("--lr-scheduler", default=FLAG_DEFAULTS["lr_scheduler"], show_default=True),
        click.option(
            "--warmup",
            type=float,
            default=FLAG_DEFAULTS["warmup"],
            show_default=True,
            help="Warmup: a fraction of the steps if < 1, else a number of steps.",
        ),
        click.option(
            "--weight-decay", type=float, default=FLAG_DEFAULTS["weight_decay"], show_default=True
        ),
        click.option(
            "--max-grad-norm", type=float, default=FLAG_DEFAULTS["max_grad_norm"], show_default=True
        ),
        click.option(
            "--global-batch",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["global_batch"],
            show_default=True,
            help="Examples per optimizer step = per-device batch x grad accumulation x processes.",
        ),
        click.option(
            "--per-device-batch",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["per_device_batch"],
            show_default=True,
        ),
        click.option("--epochs", type=float, default=FLAG_DEFAULTS["epochs"], show_default=True),
        click.option(
            "--max-length",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["max_length"],
            show_default=True,
            help="Longer examples are skipped and counted, never cut.",
        ),
        click.option("--max-steps", type=click.IntRange(min=1), help="Stop after N steps."),
        click.option(
            "--precision",
            type=click.Choice(["auto", "bf16", "fp32"]),
            default=FLAG_DEFAULTS["precision"],
            show_default=True,
            help="auto: bf16 on a GPU that supports it, else fp32.",
        ),
        click.option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            default=FLAG_DEFAULTS["gradient_checkpointing"],
            show_default=True,
        ),
        click.option("--seed", type=int, default=FLAG_DEFAULTS["seed"], show_default=True),
        click.option(
            "--save-steps",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["save_steps"],
            show_default=True,
        ),
        click.option(
            "--save-total-limit",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["save_total_limit"],
            show_default=True,
        ),
        click.option("--resume", is_flag=True, help="Continue from the last checkpoint in -o."),
        click.option(
            "--report-to",
            multiple=True,
            type=click.Choice(sorted(REPORTERS)),
            help="Also log to TensorBoard / W&B (must be installed).",
        ),
        click.option(
            "--num-processes",
            default="auto",
            show_default=True,
            help="Processes (GPUs) per machine; auto = every visible GPU, else 1.",
        ),
        click.option(
            "--num-machines",
            type=click.IntRange(min=1),
            default=FLAG_DEFAULTS["num_machines"],
            show_default=True,
        ),
        click.option(
            "--machine-rank",
            type=click.IntRange(min=0),
            default=FLAG_DEFAULTS["machine_rank"],
            show_default=True,
        ),
        click.option("--main-process-ip", help="Address of the rank-0 machine (multi-node)."),
        click.option(
            "--main-process-port",
            type=int,
            default=FLAG_DEFAULTS["main_process_port"],
            show_default=True,
        ),
        click.option(
            "--deepspeed",
            help="zero3, none, or a DeepSpeed JSON [default: zero3 with several processes].",
        ),
        click.option("--accelerate-config", type=click.Path(dir_okay=False, exists=True)),
        click.option("--dry-run", is_flag=True, help="Print the launch command and settings."),
        click.option("--strict", is_flag=True, help="Stop at the first rejected record."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, no notes."),
        click.option("--launched", is_flag=True, hidden=True),
    ]
    for decorate in reversed(opts):
        func = decorate(func)
    return func


TRAIN_EXAMPLES = epilog(
    "or-sft golden.jsonl --model Qwen/Qwen3-4B-Thinking-2507 -o ckpt/sft",
    "or-sft golden.jsonl --model Qwen/Qwen3-4B-Thinking-2507 -o ckpt/sft --num-processes 8 --dry-run",
    "or-sft golden.jsonl --model ckpt/tiny -o /tmp/sft --max-steps 10 --precision fp32",
    "or-sft golden.jsonl --model ckpt/tiny -o /tmp/sft --max-steps 20 --resume",
)


@main.command(epilog=TRAIN_EXAMPLES)
@_train_options
def train(inputs, launched, dry_run, strict, quiet, accelerate_config, num_processes, **kw):
    """Train on trajectories: the token layer's input_ids + labels (prompt and executor output
    masked), trl's SFTTrainer, reference defaults. Writes the checkpoint (weights, tokenizer,
    chat template, generation config), metrics.jsonl, loss.png and run.json into -o.

    Several processes (or --deepspeed) are started through `accelerate launch`, which runs this
    same command once per GPU; one process trains here. Rejected records are reported as
    FILE:LINE: reason on stderr and make the exit status 1.
    """
    settings = _settings(kw, num_processes, launched)
    try:
        grad_accum_for(settings)  # a batch that does not divide is known before any reading
    except SettingsError as err:
        raise click.UsageError(str(err)) from None
    from . import launch

    if launch.needs_launcher(settings) and "-" in inputs:
        raise click.UsageError("every process reads the data: pass a file, not stdin (-)")
    _check_reporters(settings)
    tokenizer = _tokenizer(settings.tokenizer or settings.model)
    _check_resume(settings)

    from .data import Counts, examples

    counts = Counts()
    say = (lambda m: None) if launched or quiet else echo_err

    def report(message: str) -> None:
        say(message)
        if strict and ": note:" not in message:
            raise click.ClickException("stopping at the first rejected record (--strict)")

    items = list(examples(tokenizer, inputs, counts, report, settings.max_length))
    if not launched and not quiet:
        echo_err(counts.summary(settings.max_length))
    if not items:
        raise click.ClickException("no examples left to train on")
    plan = resolve(settings, len(items))
    # a worker under accelerate leaves the verdict on rejected records to the parent that
    # reported them (a non-zero worker makes accelerate print a traceback)
    status = EXIT_FAILED if counts.rejected and not launched else EXIT_OK

    if dry_run:
        _print_dry_run(inputs, settings, plan, counts, accelerate_config)
        sys.exit(status)
    if launch.needs_launcher(settings) and not launched:
        ds_path = launch.write_deepspeed(settings.deepspeed, settings.output_dir)
        cmd = launch.launch_command(inputs, settings, ds_path, accelerate_config)
        env = launch.launch_env(settings)
        if not quiet:
            echo_err("or-sft: " + launch.render(cmd, env))
        code = subprocess.call([_accelerate(), *cmd[1:]], env={**os.environ, **env})
        sys.exit(code or status)
    ds_path = settings.deepspeed  # a worker gets the file its parent wrote
    if ds_path in launch.BUILTIN_DEEPSPEED:  # a worker started by hand with a built-in name
        ds_path = launch.write_deepspeed(ds_path, settings.output_dir)
    _run(inputs, settings, plan, counts, items, tokenizer, ds_path, quiet)
    sys.exit(status)


def _settings(kw: dict, num_processes: str, launched: bool) -> Settings:
    kw = dict(kw)
    kw["report_to"] = tuple(kw.pop("report_to"))
    if num_processes == "auto":
        n = _gpus() or 1
    else:
        try:
            n = int(num_processes)
        except ValueError:
            raise click.BadParameter("a number or auto", param_hint="--num-processes") from None
        if n < 1:
            raise click.BadParameter("at least 1", param_hint="--num-processes")
    deepspeed = kw.pop("deepspeed")
    if deepspeed is None and not launched:
        deepspeed = "zero3" if n * kw["num_machines"] > 1 else None
    if deepspeed == "none":
        deepspeed = None
    if deepspeed is not None and deepspeed != "zero3" and not Path(deepspeed).is_file():
        raise click.BadParameter(f"{deepspeed}: no such file", param_hint="--deepspeed")
    if kw["num_machines"] > 1 and not kw["main_process_ip"]:
        raise click.UsageError("--num-machines > 1 needs --main-process-ip (the rank-0 machine)")
    return Settings(num_processes=n, deepspeed=deepspeed, **kw)


def _accelerate() -> str:
    """The `accelerate` of this environment (next to this Python), else the one on PATH."""
    import shutil

    here = Path(sys.executable).parent / "accelerate"
    found = str(here) if here.exists() else shutil.which("accelerate")
    if found is None:
        raise click.UsageError("accelerate is not installed: uv sync --extra gpu")
    return found


def _gpus() -> int:
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return torch.cuda.device_count()


def _check_reporters(settings: Settings) -> None:
    for target in settings.report_to:
        if importlib.util.find_spec(REPORTERS[target]) is None:
            raise click.UsageError(f"--report-to {target}: install {REPORTERS[target]} first")


def _tokenizer(name: str):
    from or_common.tokens import TokenizerError, load_tokenizer

    try:
        return load_tokenizer(name)
    except TokenizerError as err:
        raise click.UsageError(str(err)) from None


def _check_resume(settings: Settings) -> None:
    from .train import last_checkpoint

    found = last_checkpoint(settings.output_dir)
    if settings.resume and found is None:
        raise click.UsageError(f"--resume: no checkpoint-N folder in {settings.output_dir}")
    if not settings.resume and found is not None:
        raise click.UsageError(
            f"{settings.output_dir} already holds {Path(found).name}: pass --resume to continue "
            "that run, or choose another -o"
        )


def _print_dry_run(inputs, settings, plan, counts, accelerate_config) -> None:
    from . import launch

    if launch.needs_launcher(settings):
        ds_path = str(Path(settings.output_dir) / "deepspeed.json") if settings.deepspeed else None
        cmd = launch.launch_command(inputs, settings, ds_path, accelerate_config)
        click.echo(launch.render(cmd, launch.launch_env(settings)))
    else:
        click.echo("# one process: trains in this process, no launcher")
    resolved = {
        "settings": settings.to_dict(),
        "plan": plan.to_dict(),
        "data": counts.to_dict(),
        "deepspeed": launch.deepspeed_config(settings.deepspeed),
    }
    click.echo(json.dumps(resolved, indent=2, sort_keys=True))


def _run(inputs, settings, plan, counts, items, tokenizer, ds_path, quiet) -> None:
    from or_common.stamp import sha256

    from .outputs import LOSS_PNG, Progress, plot_loss, write_run_json
    from .train import METRICS, train

    with stdout_guard():
        done = train(settings, plan, items, tokenizer, ds_path, Progress(not quiet))
    if not done["is_main"]:
        return
    out = Path(settings.output_dir)
    from or_common.figures import source_line

    title = f"or-sft · model {Path(settings.model).name} · lr {settings.learning_rate:g} · global batch {settings.global_batch}\n"
    png = plot_loss(out / METRICS, out / LOSS_PNG, title + source_line(inputs, 6.5))
    write_run_json(
        settings.output_dir,
        {
            "settings": settings.to_dict(),
            "plan": plan.to_dict(),
            "data": {
                "files": [{"path": p, "sha256": sha256(p)} for p in inputs],
                **counts.to_dict(),
            },
            "deepspeed_config": ds_path,
            "result": done,
            "loss_plot": png and png.name,
        },
    )
    if not quiet:
        echo_err(
            f"or-sft: {done['global_step']} step{'s' if done['global_step'] != 1 else ''}, mean loss {done['train_loss']:.4f}, "
            f"checkpoint in {settings.output_dir}"
        )


@main.command(
    epilog=epilog(
        "or-sft encode golden.jsonl --tokenizer Qwen/Qwen3-4B-Thinking-2507 > examples.jsonl",
        "or-sft encode golden.jsonl --tokenizer Qwen/Qwen3-4B-Thinking-2507 --show | less -R",
    )
)
@io_options
@click.option("--tokenizer", required=True, help="Tokenizer folder or hub name.")
@click.option("--max-length", type=click.IntRange(min=1), help="Skip (and report) longer ones.")
@click.option(
    "--show",
    is_flag=True,
    help="Print the first example as text on stdout, trained spans marked «…» (green on a "
    "terminal), instead of writing JSONL.",
)
def encode(io, tokenizer, max_length, show) -> None:
    """Write the training examples as JSONL: id, sample, input_ids, labels (-100 = masked).

    The same records are rejected as by training (errors, chat mode, a broken flow), each as
    FILE:LINE: reason on stderr.
    """
    from or_common.tokens import encode_record

    from .data import check_record, show_example, to_example

    tok = _tokenizer(tokenizer)
    shown = None
    with ToolRun("or-sft encode", io, unit="examples") as run:
        for line in run.records():
            try:
                check_record(line.record)
                encoded = encode_record(tok, line.record)
            except RecordError as err:
                run.bad_record(line, err)
                continue
            n = len(encoded.input_ids)
            if max_length is not None and n > max_length:
                echo_err(f"{line.where()}: note: {n} tokens > --max-length {max_length}, skipped")
                continue
            example = to_example(line.record, encoded)
            if show:
                shown = example
                break
            run.write(example)
    if shown is not None:  # after the run, whose guard points stdout at stderr
        click.echo(show_example(tok, shown, color=sys.stdout.isatty()), nl=False)
    sys.exit(run.exit_code)


if __name__ == "__main__":  # `accelerate launch -m or_sft.cli` runs the workers this way
    main()
