"""or-grpo on CPU: the code-in-thinking agent loop against a fake verl server manager (real
Qwen3 tokenizer, real or-exec sandbox for the timeout), the reward, verl's dataset reading our
parquet, our overrides composed with verl's own trainer config, and the `train --dry-run`
golden output. Needs the training stack (`uv run just test-deps`): verl, torch (CPU), hydra."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, GOLDEN, ROOT
from or_common.protocol import STOPS
from or_common.tokens import encode, load_tokenizer, text_ids
from or_exec.limits import ExecResult
from or_gen.prompt import PROMPT_VERSION, REASONER_PROMPT, build_messages
from or_grpo import config as cfgmod
from or_grpo.cli import main
from or_grpo.metrics import build_metrics
from or_grpo.reward import compute_score, split_flow

QWEN = str(FIXTURES / "qwen3-tokenizer")
CODE = "```python\nprint(1160)\n```\n"  # a block the fake sandbox answers
QUESTION = "A factory makes chairs and tables. Maximize profit."


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(QWEN)


@pytest.fixture(scope="module")
def verl_config():
    """verl's own ppo_trainer config composed with our overrides (as main_ppo does)."""
    from hydra import compose, initialize_config_dir
    from verl.trainer import config as verl_config_pkg

    cfg = cfgmod.TrainConfig(data="data/rl", model=QWEN, out="runs/storm", val=["v.parquet"])
    cfg.max_response_length = 400  # the agent-loop tests cut responses here
    cfg.overrides = ["trainer.save_freq=7", "actor_rollout_ref.rollout.agent.num_workers=2"]
    with initialize_config_dir(
        config_dir=os.path.dirname(verl_config_pkg.__file__), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=cfgmod.overrides(cfg))


class FakeServer:
    """verl's server manager as the agent loop sees it: `generate(request_id, prompt_ids,
    sampling_params)` -> ids and log probs. Each call plays the next scripted text the way vLLM
    does: token by token until the detokenized text holds a stop string (the token that
    completes it is kept whole, so it may run past the fence), or `max_tokens`, or the text's
    end followed by the end-of-turn token."""

    def __init__(self, tokenizer, script: list[str]):
        self.tok, self.script, self.requests = tokenizer, list(script), []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **_):
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
    server, sandbox = FakeServer(tok, script), sandbox or FakeSandbox()
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


def check_invariants(out, server, tok):
    """Every request continues the exact previous sequence; masks and log probs line up."""
    full = out.prompt_ids + out.response_ids
    n = len(out.response_ids)
    assert len(out.response_mask) == n == len(out.response_logprobs)
    assert server.requests[0][0] == out.prompt_ids
    lengths = [len(p) for p, _ in server.requests]
    assert lengths == sorted(set(lengths))
    for prompt, params in server.requests:
        assert full[: len(prompt)] == prompt
        assert params["stop"] == list(STOPS) and params["include_stop_str_in_output"] is True
        assert params["max_tokens"] == 400 - (len(prompt) - len(out.prompt_ids))
    masked = [out.response_ids[i] for i in range(n) if out.response_mask[i] == 0]
    outputs = "".join(out.extra_fields["executor_texts"])
    assert tok.decode(masked) == outputs[: len(tok.decode(masked))]
    for m, lp in zip(out.response_mask, out.response_logprobs, strict=True):
        assert (lp == 0.0) if m == 0 else (lp < 0)


def assert_equals_token_layer(out, tok):
    """The loop's ids and mask are the token layer's encoding of the flow they spell."""
    finish = out.extra_fields["finish"]
    ids = out.response_ids[:-1] if finish == "stop" else out.response_ids
    flow = split_flow(tok.decode(ids), out.extra_fields["executor_texts"])
    enc = encode(tok, build_messages(QUESTION, REASONER_PROMPT, 4), flow, finish)
    assert out.prompt_ids + out.response_ids == enc.input_ids
    assert out.response_mask == enc.loss_mask[enc.prompt_tokens :]


def test_a_block_runs_and_the_sequence_equals_the_token_layer(verl_config, tok, tmp_path):
    script = [
        "Let me model it.\n" + CODE + "\nThe rest",
        "The optimum is plausible.\n</think>\n\n\\boxed{1160}",
    ]
    out, server, sandbox = run_loop(verl_config, tok, script, rollout_log=str(tmp_path))
    check_invariants(out, server, tok)
    assert sandbox.codes == ["print(1160)\n"]
    assert len(server.requests) == 2
    flow = [
        {"role": "reasoner", "text": "Let me model it.\n" + CODE},
        {"role": "executor", "text": "```output\nObjective: 1160.0\n```\n"},
        {"role": "reasoner", "text": "The optimum is plausible.\n</think>\n\n\\boxed{1160}"},
    ]
    enc = encode(
        tok, build_messages(QUESTION, REASONER_PROMPT, 4), flow, out.extra_fields["finish"]
    )
    assert out.extra_fields["finish"] == "stop"
    assert out.prompt_ids + out.response_ids == enc.input_ids
    assert_equals_token_layer(out, tok)
    assert out.response_mask == enc.loss_mask[enc.prompt_tokens :]
    assert out.extra_fields["code_blocks"] == 1 and out.extra_fields["executions"] == 1
    assert out.extra_fields["exec_statuses"] == {"ok": 1}
    assert out.extra_fields["min_global_steps"] == out.extra_fields["max_global_steps"] == 3
    assert out.num_turns == 4
    (log,) = tmp_path.glob("*.jsonl")
    line = json.loads(log.read_text())
    assert line["step"] == 3 and line["correct"] == 1.0 and line["split"] == "train"
    assert line["code_blocks"] == 1 and line["response_tokens"] == len(out.response_ids)


def test_last_token_running_past_the_fence_is_cut_and_the_rest_kept_verbatim(verl_config, tok):
    # ")\n```\n\n" tokenizes as [")\n", "``", "`\n\n"]: the engine's last token runs past the fence
    script = ["x\n```python\nprint(1)\n```\n\nThen", "Done.\n</think>\n\n\\boxed{1160}"]
    out, server, _ = run_loop(verl_config, tok, script)
    check_invariants(out, server, tok)
    first = server.requests[1][0][len(out.prompt_ids) :]
    sent = text_ids(tok, script[0])
    j = tok.convert_ids_to_tokens(sent).index("`ĊĊ")  # the token that completes the fence
    assert first[:j] == sent[:j]  # the engine's ids, verbatim
    assert tok.convert_ids_to_tokens(first[j : j + 1]) == ["`Ċ"]  # only the kept piece re-tokenized
    assert tok.decode(first).endswith("print(1)\n```\n```output\nObjective: 1160.0\n```\n")
    # the re-tokenized "`\n" carries the log prob of the token it was cut from
    assert out.response_logprobs[j] == -(1 + j / 1000)
    assert_equals_token_layer(out, tok)


def test_four_executions_then_no_longer_available(verl_config, tok):
    script = [f"Try {k}.\n" + CODE for k in range(5)] + ["</think>\n\n\\boxed{1160}"]
    out, server, sandbox = run_loop(verl_config, tok, script)
    check_invariants(out, server, tok)
    assert len(sandbox.codes) == 4
    assert out.extra_fields["executions"] == 4 and out.extra_fields["code_blocks"] == 5
    assert out.extra_fields["executor_statuses"] == ["ok"] * 4 + ["skipped"]
    assert "no longer available" in out.extra_fields["executor_texts"][-1]
    assert out.response_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert_equals_token_layer(out, tok)


def test_a_model_written_output_block_is_dropped_and_a_plain_fence_does_not_run(verl_config, tok):
    script = [
        # every fence line pauses generation; one that closes no python block just goes on
        "Table:\n```\n",
        "a b\n```\n",
        "I guess it prints\n```output\n1160\n```\n",  # only the sandbox writes output blocks
        "No, let me not guess.\n</think>\n\n\\boxed{1160}",
    ]
    out, server, sandbox = run_loop(verl_config, tok, script)
    check_invariants(out, server, tok)
    assert sandbox.codes == [] and len(server.requests) == 4
    assert all(m == 1 for m in out.response_mask)
    text = tok.decode(out.response_ids)
    assert text.startswith("Table:\n```\na b\n```\nI guess it prints\nNo, let me not guess.")
    assert "```output" not in text and out.extra_fields["code_blocks"] == 0


def test_response_is_cut_at_the_response_length(verl_config, tok):
    long = "I keep thinking about it. " * 200
    out, server, _ = run_loop(verl_config, tok, ["Plan.\n" + CODE, long])
    check_invariants(out, server, tok)
    assert len(out.response_ids) == 400
    assert out.extra_fields["finish"] == "length"
    assert server.requests[-1][1]["max_tokens"] < 400


def test_an_output_block_past_the_budget_is_cut_too(verl_config, tok):
    flood = ExecResult("ok", 0, "row\n" * 600, "", 0.1)
    out, server, _ = run_loop(verl_config, tok, ["Plan.\n" + CODE], sandbox=FakeSandbox(flood))
    assert len(out.response_ids) == 400 and out.response_mask[-1] == 0
    assert out.extra_fields["finish"] == "length" and len(server.requests) == 1


def test_real_sandbox_timeout_becomes_a_timeout_output_block(verl_config, tok):
    script = ["Loop.\n```python\nwhile True:\n    pass\n```\n", "</think>\n\n\\boxed{1160}"]
    server = FakeServer(tok, script)
    loop = make_loop(verl_config, tok, server, "local", exec_timeout=1.0, sandbox_workers=2)
    row = {
        "raw_prompt": build_messages(QUESTION, REASONER_PROMPT, 4),
        "reward_model": {"ground_truth": "1160"},
        "extra_info": {},
    }
    out = asyncio.run(loop.run({"logprobs": True}, **row))
    assert out.extra_fields["executor_statuses"] == ["timeout"]
    assert "TimeoutError" in out.extra_fields["executor_texts"][0]
    assert out.extra_fields["finish"] == "stop"


def test_trajectory_step_from_verl_or_from_the_weight_version():
    from or_grpo.agent_loop import trajectory_step

    assert trajectory_step(5, [4], "train") == 5  # verl's V1 trainer says it
    assert trajectory_step(None, [4, 4], "train") == 5  # step 5 rolls out with weights of 4
    assert trajectory_step(None, [4], "val") == 4  # validation runs after the update
    assert trajectory_step(None, [None], "train") is None


def test_reward_counts_only_the_models_own_final_answer():
    out_box = "```output\n\\boxed{1160}\n```\n"
    assert compute_score("nl4opt", "</think>\n\n\\boxed{1160}", "1160")["score"] == 1.0
    assert compute_score("nl4opt", "</think>\n\n\\boxed{1161.5}", "1160")["score"] == 0.0
    assert compute_score("nl4opt", "</think>\n\n\\boxed{1160.9}", "1160")["score"] == 1.0  # 1e-3
    assert (
        compute_score("x", "</think>\n\n\\boxed{\\text{infeasible}}", "infeasible")["score"] == 1.0
    )
    text = "<think>" + CODE + out_box + "</think>\n\nSee above.\n" + CODE + out_box
    extra = {"executor_texts": [out_box, out_box], "finish": "stop"}
    assert compute_score("nl4opt", text, "1160", extra)["score"] == 0.0
    assert compute_score("nl4opt", text, "1160")["score"] == 0.0  # found by their fence
    cut = "</think>\n\n\\boxed{1160}"
    assert compute_score("nl4opt", cut, "1160", {"finish": "length"})["score"] == 0.0
    assert compute_score("nl4opt", "no box", "1160")["score"] == 0.0
    assert split_flow("a" + out_box + "b", [out_box]) == [
        {"role": "reasoner", "text": "a"},
        {"role": "executor", "text": out_box},
        {"role": "reasoner", "text": "b"},
    ]


def test_prepare_writes_what_verls_dataset_reads(tmp_path, tok):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    problems = tmp_path / "rl.jsonl"
    problems.write_text(
        json.dumps({"id": "a", "benchmark": "nl4opt", "question": QUESTION, "answer": 1160})
        + "\n"
        + json.dumps({"id": 7, "benchmark": "mamo", "question": "Q2", "answer": "infeasible"})
        + "\n"
        + json.dumps({"id": "b", "question": "Q3", "answer": None})
        + "\n"
        + "not json\n"
        + json.dumps({"id": "c", "question": "Q4", "answer": "lots"})
        + "\n"
    )
    result = CliRunner().invoke(
        main, ["prepare", str(problems), "-o", str(tmp_path / "d"), "--val", str(problems)]
    )
    assert result.exit_code == 1
    assert f"{problems}:3: no answer" in result.stderr
    assert f"{problems}:4: " in result.stderr and f"{problems}:5: 'answer' is not" in result.stderr
    # verl's own length filter is left to the real run (it spawns a process per call, ~8 s
    # here); `prepare --tokenizer` applies the same limit up front (tested below)
    config = OmegaConf.create(
        {
            "max_prompt_length": 3000,
            "filter_overlong_prompts": False,
            "cache_dir": str(tmp_path / "cache"),
            "prompt_key": "prompt",
        }
    )
    data = RLHFDataset([str(tmp_path / "d" / "train.parquet")], tok, config)
    assert len(data) == 2
    first, second = data[0], data[1]
    assert first["raw_prompt"] == build_messages(QUESTION, REASONER_PROMPT, 4)
    assert first["data_source"] == "nl4opt" and first["agent_name"] == "code_in_thinking"
    assert first["reward_model"]["ground_truth"] == "1160"
    assert second["reward_model"]["ground_truth"] == "infeasible"
    assert second["extra_info"]["id"] == "7" and second["index"] == 1
    assert first["extra_info"]["prompt_version"] == PROMPT_VERSION
    assert json.loads((tmp_path / "d" / "prepare.json").read_text())["splits"]["val"]["rows"] == 2
    val = RLHFDataset([str(tmp_path / "d" / "val.parquet")], tok, config)
    assert val[0]["extra_info"]["split"] == "val"
    short = CliRunner().invoke(
        main,
        [
            "prepare",
            str(problems),
            "-o",
            str(tmp_path / "e"),
            "--tokenizer",
            QWEN,
            "--max-prompt-length",
            "100",
        ],
    )
    assert f"{problems}:1: prompt is " in short.stderr and "over the limit of 100" in short.stderr


def test_our_overrides_compose_with_verls_trainer_config(verl_config):
    from omegaconf import OmegaConf

    c = verl_config
    assert c.algorithm.adv_estimator == "grpo" and c.algorithm.use_kl_in_reward is False
    actor, rollout = c.actor_rollout_ref.actor, c.actor_rollout_ref.rollout
    assert actor.optim.lr == 1e-6 and actor.ppo_mini_batch_size == 64
    assert actor.use_kl_loss is False and actor.entropy_coeff == 0
    assert (rollout.n, rollout.temperature, rollout.top_p) == (8, 0.6, 0.95)
    assert rollout.prompt_length == 3000 and rollout.response_length == 400
    assert c.data.train_batch_size == 64 and c.trainer.total_epochs == 100
    assert c.trainer.use_v1 is False
    assert c.trainer.save_freq == 7 and rollout.agent.num_workers == 2  # passed through, win
    assert c.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert rollout.agent.default_agent_loop == "code_in_thinking"
    assert c.reward.custom_reward_function.path == "pkg://or_grpo.reward"
    assert c.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH.endswith(
        "runs/storm/verl-metrics.jsonl"
    )
    OmegaConf.resolve(c)  # every interpolation resolves
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    assert not need_critic(c) and not need_reference_policy(c)  # GRPO, no KL: actor only
    validate_config(config=c, use_reference_policy=False, use_critic=False)  # main_ppo's checks
    assert omega_conf_to_dataclass(c.actor_rollout_ref.rollout).response_length == 400
    from verl.utils.import_utils import load_extern_object

    fn = load_extern_object(
        c.reward.custom_reward_function.path, c.reward.custom_reward_function.name
    )
    assert fn is compute_score


def test_train_dry_run_golden(tmp_path, monkeypatch):
    """Regenerate: OR_GRPO_REGEN=1 uv run pytest tests/test_grpo.py -k dry_run"""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "data/rl",
            "--model",
            "ckpt/sft",
            "-o",
            "runs/storm",
            "--dry-run",
            "trainer.save_freq=5",
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.stdout.replace(str(tmp_path.resolve()), "<cwd>").replace(sys.executable, "python")
    golden = GOLDEN / "grpo_train_dry_run.txt"
    if os.environ.get("OR_GRPO_REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_metrics_and_plot_from_a_run_folder(tmp_path):
    run = tmp_path / "storm"
    (run / "rollouts").mkdir(parents=True)
    rows = [
        {
            "step": 1,
            "split": "train",
            "correct": c,
            "code_blocks": b,
            "executions": b,
            "exec_statuses": {"ok": b},
            "response_tokens": 100 * b,
            "finish": "stop",
        }
        for c, b in ((1.0, 1), (0.0, 3))
    ]
    rows.append(
        {
            "step": 1,
            "split": "val",
            "data_source": "nl4opt",
            "correct": 1.0,
            "code_blocks": 1,
            "executions": 1,
            "exec_statuses": {},
            "response_tokens": 9,
        }
    )
    (run / "rollouts" / "h-1.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + "{cut"
    )
    (run / "verl-metrics.jsonl").write_text(
        json.dumps({"step": 1, "data": {"critic/score/mean": 0.5, "other": 1}}) + "\n"
    )
    # a relaunch (verl resumed from a checkpoint) replays step 2: its latest launch counts
    replay = [
        {"step": 2, "split": "train", "correct": c, "launch": launch, "code_blocks": 1}
        for launch, c in (("20260101T000000", 0.0), ("20260102T000000", 1.0))
    ]
    (run / "rollouts" / "h-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replay))
    (run / "verl-metrics-20260102T000000.jsonl").write_text(
        json.dumps({"step": 2, "data": {"critic/score/mean": 1.0}}) + "\n"
    )
    record, second = build_metrics(run)
    assert second["accuracy"] == 1.0 and second["trajectories"] == 1
    assert second["verl"] == {"critic/score/mean": 1.0}
    assert record["accuracy"] == 0.5 == record["reward"] and record["code_blocks"] == 2.0
    assert record["response_tokens"] == 200.0 and record["val_accuracy"] == 1.0
    assert record["val"] == {"nl4opt": 1.0} and record["verl"] == {"critic/score/mean": 0.5}
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) == record
    png = tmp_path / "c.png"
    args = ["plot", str(run), str(run), "--label", "a", "--label", "b", "-o", str(png)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_export_dry_run_picks_the_latest_checkpoint(tmp_path):
    for step in (10, 20):
        (tmp_path / "checkpoints" / f"global_step_{step}" / "actor").mkdir(parents=True)
    result = CliRunner().invoke(main, ["export", str(tmp_path), "-o", "hf", "--dry-run"])
    assert result.exit_code == 0
    assert "verl.model_merger merge --backend fsdp" in result.stdout
    assert "global_step_20/actor" in result.stdout
    empty = CliRunner().invoke(main, ["export", str(tmp_path / "checkpoints"), "-o", "hf"])
    assert empty.exit_code == 2


def test_train_refuses_what_cannot_run_and_converts_jsonl_validation(tmp_path):
    from or_grpo.cli import _convert_val

    runner = CliRunner()
    missing = runner.invoke(
        main, ["train", str(tmp_path), "--model", "m", "-o", str(tmp_path / "o")]
    )
    assert missing.exit_code == 2 and "no train.parquet" in missing.stderr
    (tmp_path / "train.parquet").write_bytes(b"")
    problems = FIXTURES / "problems.jsonl"
    args = [
        "train",
        str(tmp_path),
        "--model",
        "m",
        "-o",
        str(tmp_path / "o"),
        "--val",
        str(problems),
    ]
    if not all(importlib.util.find_spec(m) for m in ("vllm", "ray", "verl")):
        no_gpu = runner.invoke(main, args)
        assert no_gpu.exit_code == 2 and "uv sync --extra gpu" in no_gpu.stderr
        assert "Traceback" not in no_gpu.output
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert f"data.val_files=[{tmp_path}/o/val-problems.parquet]" in dry.stdout
    assert "trainer.test_freq=10" in dry.stdout and "trainer.val_before_train=True" in dry.stdout
    cfg = cfgmod.TrainConfig(
        data=str(tmp_path), model="m", out=str(tmp_path / "o"), val=[str(problems)]
    )
    (tmp_path / "o").mkdir()
    _convert_val(cfg, {})
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o" / "val-problems.parquet").to_pylist()
    assert len(table) == 6 and table[0]["extra_info"]["split"] == "val"
    assert table[0]["prompt"] == build_messages(
        json.loads(problems.read_text().splitlines()[0])["question"], REASONER_PROMPT, 4
    )


FAKE_VERL = """
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
out = os.path.dirname(args["trainer.default_local_dir"])
print("verl says hello on stdout")
with open(args["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"], "w") as f:
    f.write(json.dumps({"step": 1, "data": {"critic/score/mean": 1.0}}) + "\\n")
os.makedirs(os.path.join(out, "rollouts"))
with open(os.path.join(out, "rollouts", "h-1.jsonl"), "w") as f:
    f.write(json.dumps({"step": 1, "split": "train", "correct": 1.0, "code_blocks": 2,
                        "executions": 1, "exec_statuses": {"ok": 1}, "response_tokens": 50}) + "\\n")
sys.exit(int(args.get("fake.exit", 0)))
"""


def test_train_launches_the_command_and_collects_metrics(tmp_path, monkeypatch, capfd):
    """`train` as it runs on a GPU node, with verl's entry point replaced by a stand-in script
    that writes what verl and the agent loop write."""
    import or_grpo.cli as cli

    (tmp_path / "fake_verl.py").write_text(FAKE_VERL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(cfgmod, "VERL_ENTRY", "fake_verl")
    monkeypatch.setattr(cli, "_need_gpu_stack", lambda: None)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").write_bytes(b"")
    out = tmp_path / "run"
    args = ["train", str(tmp_path / "data"), "--model", "m", "-o", str(out)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "verl says hello" in capfd.readouterr().err  # verl's stdout went to stderr
    run = json.loads((out / "run.json").read_text())
    assert run["command"][2] == "fake_verl" and run["scoring"].startswith("strict")
    assert f"launch: '{run['settings']['launch']}'" in (out / "agent_loop.yaml").read_text()
    assert (out / f"verl-metrics-{run['settings']['launch']}.jsonl").exists()
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["accuracy"] == 1.0 and record["code_blocks"] == 2.0
    assert (out / "curves.png").exists()
    failed = CliRunner().invoke(cli.main, [*args, "fake.exit=3"])
    assert failed.exit_code == 1


def test_verls_own_batch_assembly_takes_our_outputs(verl_config, tok):
    """verl's AgentLoopWorker pads our outputs and builds the training batch (its real code, the
    worker built without Ray): masks, log probs and ids land where the actor reads them."""
    from packaging.version import parse
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.padding import left_right_2_no_padding

    outs = [
        run_loop(verl_config, tok, ["Plan.\n" + CODE, "</think>\n\n\\boxed{1160}"])[0],
        run_loop(verl_config, tok, ["Just \\boxed{3}."])[0],
    ]
    worker = object.__new__(AgentLoopWorker)
    worker.config, worker.tokenizer, worker.processor = verl_config, tok, None
    worker.rollout_config = omega_conf_to_dataclass(verl_config.actor_rollout_ref.rollout)
    worker.reward_loop_worker_handles, worker.distillation_enabled = None, False
    worker.mm_processor_kwargs = {}
    raw = build_messages(QUESTION, REASONER_PROMPT, 4)
    padded = [asyncio.run(worker._agent_loop_postprocess(o, False, raw_prompt=raw)) for o in outs]
    batch = worker._postprocess(padded)
    responses, mask = batch.batch["responses"], batch.batch["response_mask"]
    assert responses.shape == (2, 400) and batch.batch["prompts"].shape == (2, 3000)
    for i, out in enumerate(outs):
        n = len(out.response_ids)
        assert responses[i, :n].tolist() == out.response_ids
        assert mask[i, :n].tolist() == out.response_mask and mask[i, n:].sum() == 0
        assert batch.batch["rollout_log_probs"][i, :n].tolist() == pytest.approx(
            out.response_logprobs
        )
    assert list(batch.non_tensor_batch["executions"]) == [1, 0]
    assert batch.non_tensor_batch["executor_texts"][1] == []
    if parse(__import__("tensordict").__version__) >= parse("0.10"):  # the lock's version
        td = left_right_2_no_padding(batch.to_tensordict())  # what _update_actor sends
        assert td["input_ids"].offsets().diff().tolist() == [
            len(o.prompt_ids) + len(o.response_ids) for o in outs
        ]


def test_export_merges_an_fsdp_actor_into_a_loadable_hf_folder(tmp_path):
    """A one-rank checkpoint in verl's FSDP actor layout (the shard file, fsdp_config.json and
    the huggingface/ folder verl writes next to it), merged by verl's own merger."""
    import torch
    from tiny import make_model, make_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    actor = tmp_path / "run" / "checkpoints" / "global_step_2" / "actor"
    hf = actor / "huggingface"
    tokenizer = make_tokenizer(hf)
    make_model(hf, len(tokenizer))
    (hf / "model.safetensors").unlink()  # verl keeps only config and tokenizer there
    original = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(hf))
    torch.save(original.state_dict(), actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"world_size": 1}))
    (tmp_path / "run" / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("2")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the merger's prints went to stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    for name, tensor in original.state_dict().items():
        assert torch.allclose(merged.state_dict()[name].float(), tensor.bfloat16().float()), name
    assert load_tokenizer(str(tmp_path / "hf")).chat_template  # what or-gen renders prompts with
    assert json.loads((tmp_path / "hf" / "or-grpo.json").read_text())["from"] == str(actor)


def test_storm_recipe_dry_run(tmp_path):
    """recipes/verl/storm.sh prepares the data and, with DRY_RUN=1, prints the verl command."""
    import subprocess

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MODEL": "ckpt/sft",
        "RL": str(FIXTURES / "problems.jsonl"),
        "VAL": str(FIXTURES / "problems.jsonl"),
        "OUT": str(tmp_path),
        "DRY_RUN": "1",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "recipes" / "verl" / "storm.sh"), "trainer.save_freq=5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"data.val_files=[{tmp_path}/01-data/val.parquet]" in result.stdout
    command = result.stdout.split("\n\n#")[0]
    assert command.count("trainer.save_freq=") == 1 and "trainer.save_freq=5" in command
    assert (tmp_path / "01-data" / "train.parquet").exists() and not (tmp_path / "02-grpo").exists()
