"""or-grpo's rollout on CPU: the code-in-thinking agent loop, instantiated from
recipes/verl/agent_loop.yaml the way verl's workers do, against a fake verl server manager that
generates scripted token ids like vLLM (real Qwen3 tokenizer; the real or-exec sandbox for the
timeout); verl's own worker padding our outputs into a training batch; the reward. The commands
(prepare, train, plot, export) are tested in test_grpo_train.py. Needs the training stack
(`uv run just test-deps`): verl, torch (CPU), hydra."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import (
    QUESTION,
    FakeSandbox,
    FakeVerlServer,
    make_loop,
    run_loop,
    split_flow,
)
from or_common.reasoner import REASONER_PROMPT, build_messages
from or_common.tokens import encode, text_ids
from or_common.turn import STOPS
from or_exec.limits import ExecResult
from or_grpo.reward import compute_score

CODE = "```python\nprint(1160)\n```\n"  # a block the fake sandbox answers


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
    assert out.extra_fields["prompt_opens_think"] is True  # the Qwen3 template opens <think>
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
    server = FakeVerlServer(tok, script)
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
    # the prompt opened <think>: an answer that never closes it is unfinished thinking
    opened = {"prompt_opens_think": True}
    assert compute_score("nl4opt", "so \\boxed{1160}", "1160", opened)["score"] == 0.0
    assert compute_score("nl4opt", "ok</think>\\boxed{1160}", "1160", opened)["score"] == 1.0
    full = compute_score("nl4opt", text, "1160", {**extra, "code_blocks": 2, "executions": 2})
    assert (full["n_code_blocks"], full["n_executions"], full["truncated"]) == (2.0, 2.0, 0.0)
    assert compute_score("nl4opt", text, "1160")["n_code_blocks"] == 2.0  # counted in the text
    assert set(full) == {"score", "acc", "truncated", "n_code_blocks", "n_executions"}
    assert split_flow("a" + out_box + "b", [out_box]) == [
        {"role": "reasoner", "text": "a"},
        {"role": "executor", "text": out_box},
        {"role": "reasoner", "text": "b"},
    ]


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
