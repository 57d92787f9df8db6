"""The Reasoner as a library: its prompt (versioned), its reference sampling settings, the
sampling a local model's generation_config gives, and the options of every tool that runs it
(or-gen, or-intervene). or-grpo's rollouts use the same prompt and settings, so evaluation and
training sample alike."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

PROMPT_VERSION = "reasoner-v1"

REASONER_PROMPT = """You are an expert in operations research and optimization modeling. Solve the problem below.

Work like this:
1. Think the problem through before writing code: name the decision variables, the objective and every constraint, including bounds and which variables must be integers.
2. Write one complete, self-contained Python script in a ```python block that builds and solves the model, using PuLP (numpy, scipy and sympy are available too). Print the solver status, the optimal objective value and the key variable values.
3. When you close the block, the script runs and its output appears right after it in an ```output block. Read the output, check that it makes sense for the problem, and correct the model or the code if it does not. You can run code at most {max_executions} times; each script runs on its own, so repeat any definitions you need.
4. End with the optimal objective value as a single number in \\boxed{}, with no units or words. If the problem has no feasible solution, write \\boxed{infeasible}.

Problem:
{question}"""


def load_prompt(path: str | None) -> tuple[str, str]:
    """(template, version): ours, or a user's file (its version is `custom:<file name>`)."""
    if path is None:
        return REASONER_PROMPT, PROMPT_VERSION
    text = Path(path).read_text()
    if "{question}" not in text:
        raise ValueError(f"{path}: a prompt template needs a {{question}} placeholder")
    return text, f"custom:{Path(path).name}"


def build_messages(question: str, template: str, max_executions: int) -> list[dict[str, str]]:
    """The chat messages for one problem (placeholders filled literally, no str.format)."""
    content = template.replace("{max_executions}", str(max_executions)).replace(
        "{question}", question
    )
    return [{"role": "user", "content": content}]


@dataclass(frozen=True)
class ReasonerDefaults:
    """The Reasoner's reference sampling settings (SPEC §1): or-gen's and or-intervene's flags,
    or-gen's engine and loop, and or-grpo's rollouts all take their defaults from here."""

    temperature: float = 0.6
    top_p: float = 0.95
    #: budget for everything after the prompt: model tokens and output tokens
    max_tokens: int = 16384
    max_executions: int = 4
    seed: int = 1234
    #: samples per problem in evaluation: pass@1 is the mean over them (SPEC §1)
    samples: int = 8
    #: per-execution limits; they restate or-exec's `Limits` defaults (common cannot import
    #: or_exec, and or_exec.limits must import nothing else: the sandbox parent loads it from a
    #: root without or_common); tests/test_defaults.py checks that the two agree
    exec_timeout: float = 10.0
    exec_memory: int = 4096


REASONER_DEFAULTS = ReasonerDefaults()


#: generation_config keys that are sampling settings (what `vllm serve` and or-gen's vllm
#: backend take from the model as defaults under the request's own fields)
MODEL_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)


@functools.lru_cache(maxsize=16)
def generation_config(model_dir: str) -> dict[str, Any]:
    """A local model folder's generation_config.json, read once per process (callers only read
    it); empty for a hub name or a folder without one."""
    try:
        config = json.loads((Path(model_dir) / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def model_sampling_defaults(model_dir: str) -> dict[str, Any]:
    """The sampling settings a local model's generation_config.json gives (Qwen3: top_k 20):
    what vLLM applies to or-gen's requests, so what a trainer's rollouts must use too for
    evaluation and training to sample alike. Empty for a hub name or a folder without one."""
    config = generation_config(model_dir)
    return {k: config[k] for k in MODEL_SAMPLING_KEYS if config.get(k) is not None}


@dataclass(frozen=True)
class ReasonerOptions:
    """The Reasoner's flags (`reasoner_options`), as one typed object: the model and how it is
    run, its sampling, the sandbox its code runs in, and the request policy."""

    model: str
    backend: str = "openai"
    api_bases: tuple[str, ...] = ()
    api_key: str | None = None
    tokenizer: str | None = None
    chat: bool = False
    temperature: float = REASONER_DEFAULTS.temperature
    top_p: float = REASONER_DEFAULTS.top_p
    max_tokens: int = REASONER_DEFAULTS.max_tokens
    max_executions: int = REASONER_DEFAULTS.max_executions
    seed: int = REASONER_DEFAULTS.seed
    sampling_extra: str | None = None
    prompt_file: str | None = None
    concurrency: int = 64
    exec_timeout: float = REASONER_DEFAULTS.exec_timeout
    exec_memory: int = REASONER_DEFAULTS.exec_memory
    workers: int | None = None
    sandbox_url: str | None = None
    retries: int = 5
    retry_backoff: float = 1.0
    request_timeout: float = 600.0
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    cache_path: str | None = None

    @property
    def tokenizer_name(self) -> str:
        """The tokenizer to load: --tokenizer, else the model's own."""
        return self.tokenizer or self.model

    def cache_for(self, output: str | None) -> str | None:
        """The request cache: --cache, else FILE.cache next to -o FILE (none on stdout)."""
        if self.cache_path is not None:
            return self.cache_path
        return output + ".cache" if output else None


_OPTION_DEFAULTS = {f.name: f.default for f in fields(ReasonerOptions)}
_OPTION_NAMES = tuple(_OPTION_DEFAULTS)


def _default(name: str) -> Any:
    """A flag's default, as ReasonerOptions declares it (written once, there)."""
    return _OPTION_DEFAULTS[name]


def reasoner_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the Reasoner flags to a click command; it receives them as `reasoner:
    ReasonerOptions`. Shared by or-gen and or-intervene (which resumes generation the same way)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        values["api_bases"] = tuple(values["api_bases"])
        return func(*args, reasoner=ReasonerOptions(**values), **kwargs)

    options = [
        click.option(
            "--model",
            required=True,
            help="Served model name (openai, with --api-base), a provider/name model "
            "(gemini/…, deepseek/…: through litellm), or a model path / hub name (vllm, "
            "transformers).",
        ),
        click.option(
            "--backend",
            type=click.Choice(["openai", "vllm", "transformers"]),
            default=_default("backend"),
            show_default=True,
        ),
        click.option(
            "--api-base",
            "api_bases",
            multiple=True,
            metavar="URL",
            help="OpenAI-compatible server (repeat to load-balance).",
        ),
        click.option(
            "--api-key",
            envvar="OPENAI_API_KEY",
            help="API key (default: $OPENAI_API_KEY, else none).",
        ),
        click.option(
            "--tokenizer",
            help="The model's tokenizer (chat template and token ids): a local directory or a "
            "cached hub name (default: --model).",
        ),
        click.option(
            "--chat",
            is_flag=True,
            help="Chat-only APIs: outputs go back as user turns (no byte-exact continuation).",
        ),
        click.option(
            "--temperature", type=float, default=_default("temperature"), show_default=True
        ),
        click.option("--top-p", type=float, default=_default("top_p"), show_default=True),
        click.option(
            "--max-tokens",
            type=click.IntRange(min=1),
            default=_default("max_tokens"),
            show_default=True,
            help="Budget for everything after the prompt.",
        ),
        click.option(
            "--max-executions",
            type=click.IntRange(min=0),
            default=_default("max_executions"),
            show_default=True,
        ),
        click.option("--seed", type=int, default=_default("seed"), show_default=True),
        click.option(
            "--sampling-extra",
            default=_default("sampling_extra"),
            metavar="JSON",
            help="Extra sampling fields passed through, e.g. '{\"top_k\": 20}'.",
        ),
        click.option(
            "--prompt",
            "prompt_file",
            type=click.Path(exists=True, dir_okay=False),
            help="Replace the Reasoner prompt ({question} placeholder).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=_default("concurrency"),
            show_default=True,
            help="Trajectories in flight.",
        ),
        click.option(
            "--exec-timeout",
            type=float,
            default=_default("exec_timeout"),
            show_default=True,
            help="Seconds per code execution.",
        ),
        click.option(
            "--exec-memory",
            type=int,
            default=_default("exec_memory"),
            show_default=True,
            help="MiB per code execution.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 128),
            help="Sandbox workers (default: number of cores).",
        ),
        click.option(
            "--sandbox",
            "sandbox_url",
            metavar="URL",
            help="Use an `or-exec serve` pool instead of a local one.",
        ),
        click.option(
            "--retries", type=click.IntRange(min=0), default=_default("retries"), show_default=True
        ),
        click.option(
            "--retry-backoff",
            type=float,
            default=_default("retry_backoff"),
            show_default=True,
            help="First retry delay in seconds (doubles).",
        ),
        click.option(
            "--request-timeout",
            type=float,
            default=_default("request_timeout"),
            show_default=True,
        ),
        click.option(
            "--tensor-parallel-size",
            type=int,
            default=_default("tensor_parallel_size"),
            show_default=True,
            help="vllm backend.",
        ),
        click.option(
            "--max-model-len",
            type=click.IntRange(min=1),
            help="vllm backend: the longest sequence to reserve memory for (default: the "
            "model's; Qwen3-2507 declares 262144, so set e.g. 20000).",
        ),
        click.option(
            "--cache",
            "cache_path",
            type=click.Path(dir_okay=False),
            help="Request cache (default with -o: FILE.cache).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
