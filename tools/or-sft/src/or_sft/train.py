"""Training with trl's SFTTrainer on the token layer's pre-tokenized examples.

What trl 1.16 would otherwise do to our data, and how it is prevented:
- it builds `labels` from masks and truncates every example to `max_length` (default 1024) in
  `_prepare_dataset`, then drops fully masked examples: we pass `skip_prepare_dataset=True` with
  our own `input_ids` + `labels` (examples over `--max-length` were already skipped, never cut),
  and still set `max_length` to ours;
- its `DataCollatorForLanguageModeling` uses an example's `labels` as they are (padded with
  -100); we hand it to the trainer explicitly;
- with `disable_tqdm` the HF Trainer prints its logs to stdout: that printer is removed, our
  progress bar goes to stderr, and stdout is pointed at stderr while training runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from or_common.jsonl import Writer, open_output

from .settings import Plan, Settings

METRICS = "metrics.jsonl"


class TokenCounter:
    """Real (non-padding) tokens this process has trained on, counted as batches are consumed
    (not as collated: the data loader collates ahead)."""

    tokens = 0


def use_bf16(precision: str) -> bool:
    import torch

    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def last_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder of a run, if any."""
    found = [
        (int(p.name.split("-")[1]), p)
        for p in Path(output_dir).glob("checkpoint-*")
        if p.is_dir() and p.name.split("-")[1].isdigit()
    ]
    return str(max(found)[1]) if found else None


def sft_config(settings: Settings, plan: Plan, deepspeed_path: str | None, bf16: bool):
    from trl import SFTConfig

    s = settings
    return SFTConfig(
        output_dir=s.output_dir,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=s.warmup,
        weight_decay=s.weight_decay,
        max_grad_norm=s.max_grad_norm,
        optim="adamw_torch",
        per_device_train_batch_size=s.per_device_batch,
        gradient_accumulation_steps=plan.grad_accum,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps or -1,
        bf16=bf16,
        gradient_checkpointing=s.gradient_checkpointing,
        seed=s.seed,
        data_seed=s.seed,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        logging_steps=s.logging_steps,
        report_to=list(s.report_to) or "none",
        max_length=s.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=True,
        disable_tqdm=True,
        deepspeed=deepspeed_path,
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class MetricsCallback:
    """Writes one `metrics.jsonl` line per logged step (main process only) and drives the
    progress bar."""

    def __init__(self, path: Path, counter: TokenCounter, append: bool, progress=None):
        self.path, self.counter, self.append, self.progress = path, counter, append, progress
        self.writer: Writer | None = None
        self.t0 = time.perf_counter()
        self.tokens0 = 0

    def make(self):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                if state.is_world_process_zero:
                    outer.writer = Writer(open_output(str(outer.path), append=outer.append))
                if outer.progress is not None and state.is_world_process_zero:
                    outer.progress.start(state.max_steps, state.global_step)
                outer.t0, outer.tokens0 = time.perf_counter(), outer.counter.tokens

            def on_step_end(self, args, state, control, **kw):
                if outer.progress is not None:
                    outer.progress.advance(state.global_step)

            def on_log(self, args, state, control, logs=None, **kw):
                if not logs or "loss" not in logs:
                    return
                now = time.perf_counter()
                seconds = now - outer.t0
                tokens = outer.counter.tokens - outer.tokens0
                outer.t0, outer.tokens0 = now, outer.counter.tokens
                row = {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 4),
                    "loss": logs.get("loss"),
                    "lr": logs.get("learning_rate"),
                    "grad_norm": logs.get("grad_norm"),
                    "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
                    "tokens": tokens,
                    "seconds": round(seconds, 4),
                }
                for key in ("num_tokens", "mean_token_accuracy", "entropy"):
                    if key in logs:
                        row[key] = logs[key]
                if outer.writer is not None:
                    outer.writer.write(row)
                if outer.progress is not None:
                    outer.progress.note(row)

            def on_train_end(self, args, state, control, **kw):
                if outer.progress is not None:
                    outer.progress.stop()
                if outer.writer is not None:
                    outer.writer.stream.close()
                    outer.writer = None

        return _Callback()


def dataset_of(examples: list[dict[str, Any]]):
    """The `datasets.Dataset` trl receives: exactly the token layer's input_ids and labels."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [e["input_ids"] for e in examples], "labels": [e["labels"] for e in examples]}
    )


def make_trainer(
    settings: Settings,
    plan: Plan,
    examples: list[dict[str, Any]],
    tokenizer: Any,
    deepspeed_path: str | None,
    progress=None,
):
    """The SFTTrainer for this run (model loaded, dataset, collator and token counter in place)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import SFTTrainer

    bf16 = use_bf16(settings.precision)
    args = sft_config(settings, plan, deepspeed_path, bf16)
    model = AutoModelForCausalLM.from_pretrained(
        settings.model, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    _fix_generation_config(model, tokenizer)
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _pad_id(tokenizer)
    counter = TokenCounter()
    out = Path(settings.output_dir)
    metrics = MetricsCallback(out / METRICS, counter, append=settings.resume, progress=progress)

    class Trainer(SFTTrainer):
        def training_step(self, model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            counter.tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            return super().training_step(model, inputs, *args, **kwargs)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset_of(examples),
        processing_class=tokenizer,
        # trl's own collator: an example's labels are used as they are, padded with -100
        data_collator=DataCollatorForLanguageModeling(pad_token_id=pad),
        callbacks=[metrics.make()],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def train(
    settings: Settings,
    plan: Plan,
    examples: list[dict[str, Any]],
    tokenizer: Any,
    deepspeed_path: str | None,
    progress=None,
) -> dict[str, Any]:
    """Train and save the checkpoint (weights, tokenizer with its chat template, generation
    config) into `settings.output_dir`; returns what happened (for run.json)."""
    import torch

    trainer = make_trainer(settings, plan, examples, tokenizer, deepspeed_path, progress)
    resume_from = last_checkpoint(settings.output_dir) if settings.resume else None
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(settings.output_dir)  # weights, config, generation config, tokenizer
    return {
        "resumed_from": resume_from,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "train_loss": result.training_loss,
        "seconds": round(time.time() - started, 2),
        "bf16": trainer.args.bf16,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "is_main": trainer.is_world_process_zero(),
    }


def _pad_id(tokenizer: Any) -> int:
    from or_common.tokens import end_of_turn_id

    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer))
    return tokenizer.pad_token_id


def _fix_generation_config(model: Any, tokenizer: Any) -> None:
    """The checkpoint must stop generating at the end of the assistant turn."""
    from or_common.tokens import end_of_turn_id

    gen = model.generation_config
    eot = end_of_turn_id(tokenizer)
    eos = gen.eos_token_id
    eos_list = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    if eot not in eos_list:
        gen.eos_token_id = [eot, *eos_list] if eos_list else eot
