"""What the test modules share, so that no test module imports another: paths, a free port,
the tiny models, the sandbox's root checks, and the fakes (or-gen's scripted Reasoner and
sandbox, or-intervene's rules cases and scripted Intervener, or-grpo's fake verl server manager
and agent-loop harness). conftest.py imports from here; this module imports nothing from tests/.
Heavy and tool imports stay inside the functions: conftest loads this module for every run."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_tiny_model():
    """recipes/demo/tiny_model.py (a script, not a package), loaded once by its path."""
    path = ROOT / "recipes" / "demo" / "tiny_model.py"
    spec = importlib.util.spec_from_file_location("tiny_model", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tiny_model = _load_tiny_model()
#: the real Qwen3-4B-Thinking-2507 tokenizer, config and generation config (no weights)
QWEN_DIR: Path = _tiny_model.QWEN_DIR
QWEN = str(QWEN_DIR)
#: the full tokenizer in ../shared, where present
SHARED_QWEN = ROOT.parent / "shared" / "models" / "qwen3-4b-thinking-2507-tokenizer"
#: a randomly initialised tiny Qwen3 with the real tokenizer (recipes/demo/tiny_model.py)
make_tiny_qwen = _tiny_model.make_tiny_qwen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a tiny tokenizer and model (built with the `tokenizers` library, no downloads) ----------

# Qwen3 thinking models open the think block in the generation prompt; so does this template.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CORPUS = [
    "Let me define the decision variables and the objective.",
    "```python\nimport pulp\nm = pulp.LpProblem('p', pulp.LpMaximize)\nprint('Objective:', pulp.value(m.objective))\n```\n",
    "```output\nObjective: 145.0\n```\n",
    "The maximum profit is \\boxed{145}.",
] * 20


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


def make_model(path: Path, vocab_size: int) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=None,
    )
    Qwen3ForCausalLM(config).save_pretrained(path)


# -- the sandbox -------------------------------------------------------------------------------

ROOT_USER = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT_USER, reason="namespaces and per-slot uids need root")


def leftovers(pool, workers: int = 2) -> list[int]:
    """Live processes (anywhere on the machine) under one of the pool's `workers` slot uids."""
    from or_exec.sandbox.helper import live_processes

    base = pool.pool.uid_base
    return [pid for uid in range(base, base + workers) for pid in live_processes(uid)]


# -- or-gen: a scripted Reasoner and a stand-in sandbox --------------------------------------

CODE = "Let me write the model.\n```python\nprint('Objective:', {value})\n```\n"


class FakeRunner:
    """Stands in for the sandbox: answers `print(...)` lines of the block with their literal
    arguments (no code is executed), and records what it was given."""

    def __init__(self) -> None:
        self.codes: list[str] = []

    async def start(self, tiers=None):
        return {}

    async def run(self, code, limits=None, prelude=()):
        from or_exec.limits import ExecResult

        self.codes.append(code)
        lines = []
        for args in re.findall(r"^print\((.*)\)$", code, re.MULTILINE):
            lines.append(" ".join(str(v) for v in ast.literal_eval(f"({args},)")))
        return ExecResult("ok", 0, "".join(f"{line}\n" for line in lines), "", 0.01)

    async def close(self):
        return None


def behaviour(prompt: str) -> str:
    m = re.search(r"\[behaviour:(\w+)\]", prompt)
    return m.group(1) if m else "good"


def script(prompt, body) -> str:
    """The fake Reasoner: what it writes depends on the problem's behaviour tag and on how many
    outputs the sandbox already inserted."""
    text = prompt if isinstance(prompt, str) else "".join(m["content"] for m in prompt)
    outputs = text.count("```output\n")
    kind = behaviour(text)
    if kind in ("good", "spill"):
        if outputs == 0:  # code, then a made-up output: it must never reach the flow
            after = "\n\nNow wait." if kind == "spill" else "```output\nObjective: 999\n```\n"
            return CODE.format(value=145.0) + after + "</think>\n\n\\boxed{999}"
        return (
            "The solver printed 145.0, which fits.</think>\n\nThe maximum profit is \\boxed{145}."
        )
    if kind == "coder":  # never stops writing code
        return f"Again.\n```python\nprint({outputs})\n```\n"
    if kind == "thinker":  # never closes the think block
        return "hmm " * 5000
    if kind == "faker":  # opens an output block without any code
        return "I already know:\n```output\n42\n```\n"
    raise AssertionError(kind)


def problems(*behaviours: str) -> str:
    return "".join(
        json.dumps(
            {
                "id": f"q{i}",
                "benchmark": "fake",
                "question": f"Maximize profit of shop {i}. [behaviour:{b}]",
                "answer": 145,
                "extra": i,
            }
        )
        + "\n"
        for i, b in enumerate(behaviours)
    )


# -- or-intervene: the rules cases and a scripted Intervener ---------------------------------

BAKERY_QUESTION = (
    "A bakery sells bread ($3) and cakes ($5). How many of each should it bake to maximize profit?"
)
GOOD_CODE = "```python\nimport pulp\nm = pulp.LpProblem('b', pulp.LpMaximize)\nx = pulp.LpVariable('x', 0, cat='Integer')\nm += 3 * x\nm += x <= 48\nm.solve()\nprint('Objective:', pulp.value(m.objective))\n```\n"
OK_OUT = {
    "role": "executor",
    "text": "```output\nStatus: Optimal\nObjective: 145.0\n```\n",
    "status": "ok",
    "seconds": 0.02,
}


def bakery(*segments, answer=145, **extra):
    """A record of the bakery problem whose flow is `segments` (a string is a Reasoner's)."""
    flow = [{"role": "reasoner", "text": s} if isinstance(s, str) else s for s in segments]
    return {
        "id": extra.pop("id", "t"),
        "sample": 0,
        "question": BAKERY_QUESTION,
        "answer": answer,
        "flow": flow,
        **extra,
    }


CASES = {
    "clean": (
        bakery(
            "I define x.\n" + GOOD_CODE,
            OK_OUT,
            "The optimum 145 is plausible: all limits hold.</think>\n\nThe maximum profit is \\boxed{145}.",
        ),
        [],
    ),
    "units in the box": (
        bakery(
            "Model.\n" + GOOD_CODE,
            OK_OUT,
            "Plausible.</think>\n\nThe answer is \\boxed{145 dollars}.",
        ),
        [7],
    ),
    "two boxes": (
        bakery("Model.\n" + GOOD_CODE, OK_OUT, "Fine.</think>\n\n\\boxed{145} or \\boxed{140}"),
        [7],
    ),
    "no box": (bakery("Model.\n" + GOOD_CODE, OK_OUT, "Fine.</think>\n\nThe profit is 145."), [7]),
    "fragmented": (
        bakery(
            "First the data.\n```python\nprofit = [3, 5]\nprint(profit)\n```\n",
            {"role": "executor", "text": "```output\n[3, 5]\n```\n", "status": "ok"},
            "Now the model.\n```python\nimport pulp\nm = pulp.LpProblem('b', pulp.LpMaximize)\nm += profit[0]\n```\n",
            {
                "role": "executor",
                "text": "```output\nTraceback (most recent call last):\nNameError: name 'profit' is not defined\n```\n",
                "status": "error",
            },
            "Let me fix it.\n" + GOOD_CODE,
            OK_OUT,
            "Good.</think>\n\n\\boxed{145}",
        ),
        [2],
    ),
    "solved by hand": (
        bakery(
            "Variables x, y. Objective 3x + 5y.\nAt the vertex x = 40, y = 5: 3*40 + 5*5 = 145.\n</think>\n\n\\boxed{145}"
        ),
        [1],
    ),
    "hand verification": (
        bakery(
            "Model.\n" + GOOD_CODE,
            OK_OUT,
            "Let me verify by hand.\n3*40 = 120 = 120\n5*5 + 0 = 25\n120 + 25 = 145\nSo 145.</think>\n\n\\boxed{145}",
        ),
        [3],
    ),
    "infeasible status, wrong answer": (
        bakery(
            "Model.\n" + GOOD_CODE,
            {
                "role": "executor",
                "text": "```output\nStatus: Infeasible\nObjective: 0.0\n```\n",
                "status": "ok",
            },
            "Hmm.</think>\n\n\\boxed{0}",
        ),
        [6],
    ),
    "fractional counts, wrong answer": (
        bakery(
            "Model.\n```python\nimport pulp\nx = pulp.LpVariable('bread', 0)\n```\n",
            {
                "role": "executor",
                "text": "```output\nbread = 12.5\nObjective: 147.5\n```\n",
                "status": "ok",
            },
            "So.</think>\n\n\\boxed{147.5}",
        ),
        [5],
    ),
    "wrong answer, no evidence": (
        bakery("Model.\n" + GOOD_CODE, OK_OUT, "Hmm.</think>\n\n\\boxed{150}"),
        [5],
    ),
    "debugging after an error is fine": (
        bakery(
            "Model.\n" + GOOD_CODE,
            {
                "role": "executor",
                "text": "```output\nTypeError: bad operand\n```\n",
                "status": "error",
            },
            "Fix the sign.\n" + GOOD_CODE,
            OK_OUT,
            "Plausible.</think>\n\n\\boxed{145}",
        ),
        [],
    ),
    "re-solving a working model again and again": (
        bakery(
            "Model.\n" + GOOD_CODE,
            OK_OUT,
            "Again.\n" + GOOD_CODE,
            OK_OUT,
            "Once more.\n" + GOOD_CODE,
            OK_OUT,
            "Plausible.</think>\n\n\\boxed{145}",
        ),
        [2],
    ),
    "wrong answer but truth unknown": (
        bakery("Model.\n" + GOOD_CODE, OK_OUT, "Hmm.</think>\n\n\\boxed{150}", answer=None),
        [],
    ),
}


HINT = "I should state the solver's optimum exactly."


def reasoner_script(prompt, body):
    """The Reasoner continues differently once it has been given the hint."""
    if prompt.endswith(HINT + "\n") or prompt.endswith(HINT + " "):
        return "The solver printed 145.0.</think>\n\nThe maximum profit is \\boxed{145}."
    return "The model is done.</think>\n\n\\boxed{999}"


def make_intervener(mode: str):
    state = {"calls": 0, "prompts": []}

    def script(messages, body):
        state["calls"] += 1
        state["prompts"].append(messages[0]["content"])
        trajectory = messages[0]["content"].split("## Student trajectory", 1)[1]
        if mode == "always":
            return (
                f"<action>REPLACE_AND_CONTINUE</action><trigger>4</trigger><analysis>again</analysis><target>The model is done.</target><hint>{HINT}</hint>"
                if "The model is done." in trajectory
                else f"<action>REPLACE_AND_CONTINUE</action><trigger>4</trigger><target>The solver printed 145.0.</target><hint>{HINT}</hint>"
            )
        if mode == "not_found":
            return "<action>REPLACE_AND_CONTINUE</action><trigger>5</trigger><target>words the model never wrote</target><hint>I x.</hint>"
        if mode == "malformed_once" and state["calls"] == 1:
            return "I would change the ending."
        if "\\boxed{999}" in trajectory:
            return f"Here you go:\n<action>REPLACE_AND_CONTINUE</action>\n<trigger>Trigger 6</trigger>\n<analysis>The answer ignores the output.</analysis>\n<target>The model is done.</target>\n<hint>{HINT}</hint>"
        return "<action>NO_INTERVENTION</action>"

    return script, state


# -- scoring ---------------------------------------------------------------------------------


def trajectory(text, answer=1160, **extra):
    """A one-segment record with its answer, as the scorers read it."""
    return {
        "id": "p",
        "sample": 0,
        "answer": answer,
        "flow": [{"role": "reasoner", "text": text}],
        **extra,
    }


# -- or-grpo: verl's server manager faked, our agent loop instantiated as verl does ----------

QUESTION = "A factory makes chairs and tables. Maximize profit."


def compose_verl_config():
    """verl's own ppo_trainer config composed with our overrides (as main_ppo does)."""
    from hydra import compose, initialize_config_dir
    from or_grpo import config as cfgmod
    from verl.trainer import config as verl_config_pkg

    cfg = cfgmod.TrainConfig(data="data/rl", model=QWEN, out="runs/storm", val=["v.parquet"])
    cfg.max_response_length = 400  # the agent-loop tests cut responses here
    cfg.overrides = ["trainer.save_freq=7", "actor_rollout_ref.rollout.agent.num_workers=2"]
    with initialize_config_dir(
        config_dir=os.path.dirname(verl_config_pkg.__file__), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=cfgmod.overrides(cfg))


class FakeVerlServer:
    """verl's server manager as the agent loop sees it: `generate(request_id, prompt_ids,
    sampling_params)` -> ids and log probs. Each call plays the next scripted text the way vLLM
    does: token by token until the detokenized text holds a stop string (the token that
    completes it is kept whole, so it may run past the fence), or `max_tokens`, or the text's
    end followed by the end-of-turn token."""

    def __init__(self, tokenizer, script: list[str]):
        self.tok, self.script, self.requests = tokenizer, list(script), []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **_):
        from or_common.tokens import text_ids
        from verl.workers.rollout.replica import TokenOutput

        self.requests.append((list(prompt_ids), dict(sampling_params)))
        text = self.script.pop(0)
        ids = text_ids(self.tok, text)
        out: list[int] = []
        for tid in ids:
            out.append(tid)
            decoded = self.tok.decode(out)
            if any(s in decoded for s in sampling_params["stop"]):
                break
        else:
            out.append(self.tok.convert_tokens_to_ids("<|im_end|>"))
        out = out[: sampling_params["max_tokens"]]
        lps = [-(len(self.requests) + i / 1000) for i in range(len(out))]
        return TokenOutput(token_ids=out, log_probs=lps, extra_fields={"global_steps": 3})


class FakeSandbox:
    def __init__(self, result=None):
        from or_exec.limits import ExecResult

        self.codes: list[str] = []
        self.result = result or ExecResult("ok", 0, "Objective: 1160.0\n", "", 0.2)

    async def run(self, code, limits=None):
        self.codes.append(code)
        return self.result


def make_loop(verl_config, tokenizer, server, sandbox, **kwargs):
    """Instantiate our loop from recipes/verl/agent_loop.yaml the way verl's worker does."""
    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    (entry,) = OmegaConf.load(ROOT / "recipes" / "verl" / "agent_loop.yaml")
    assert entry.name == verl_config.actor_rollout_ref.rollout.agent.default_agent_loop
    return hydra.utils.instantiate(
        config=entry,
        trainer_config=DictConfigWrap(verl_config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type="qwen3",
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(verl_config.data),
        tools=ToolListWrap([]),
        sandbox=sandbox,
        **kwargs,
    )


def run_loop(verl_config, tok, script, sandbox=None, **kwargs):
    from or_common.reasoner import REASONER_PROMPT, build_messages

    server, sandbox = FakeVerlServer(tok, script), sandbox or FakeSandbox()
    loop = make_loop(verl_config, tok, server, sandbox, **kwargs)
    row = {
        "raw_prompt": build_messages(QUESTION, REASONER_PROMPT, 4),
        "global_steps": 3,
        "reward_model": {"ground_truth": "1160"},
        "data_source": "nl4opt",
        "extra_info": {"id": "p1", "split": "train"},
    }
    params = {"temperature": 0.6, "top_p": 0.95, "logprobs": True}
    out = asyncio.run(loop.run(params, **row))
    return out, server, sandbox


def split_flow(text: str, executor_texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The response as flow segments, the given output blocks located by their exact text, in
    order (tests read the agent loop's `executor_texts` with it). Never used to judge: a program's
    printed text can make the decoded response differ from the blocks' text."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for block in executor_texts or ():
        start = text.find(block, pos)
        if start < 0:  # cut off by the response length
            break
        spans.append((start, start + len(block)))
        pos = start + len(block)
    flow: list[dict[str, Any]] = []
    pos = 0
    for start, end in spans:
        if start > pos:
            flow.append({"role": "reasoner", "text": text[pos:start]})
        flow.append({"role": "executor", "text": text[start:end]})
        pos = end
    if pos < len(text):
        flow.append({"role": "reasoner", "text": text[pos:]})
    return flow
