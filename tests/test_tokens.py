"""The token layer and the turn step, token-exact on the real Qwen3-4B-Thinking-2507
tokenizer (tests/fixtures/qwen3-tokenizer, no weights)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import QWEN
from or_common.records import flow_text
from or_common.tokens import (
    IGNORE_INDEX,
    EncodeError,
    TokenizerError,
    align_ids,
    encode,
    encode_record,
    load_tokenizer,
    prompt_ids,
    stop_ids,
    take_completion,
    text_ids,
)
from or_common.turn import (
    FENCE_STOP,
    SKIPPED_MESSAGE,
    Execute,
    Finish,
    Generate,
    Skip,
    SkippedResult,
    Turn,
    TurnLimits,
    after_generation,
    after_output,
    cut_completion,
    next_request,
    output_block,
    output_segment,
)

IM_END = 151645
MESSAGES = [{"role": "user", "content": "Maximise 3x + 2y subject to x + y <= 4."}]


def two_execution_flow() -> list[dict]:
    """Two executions, a hint inserted mid-sentence, multi-byte text, output blocks that begin
    and end without a newline around them."""
    return [
        {
            "role": "reasoner",
            "text": "Let x, y ≥ 0 be the amounts (in €).\n```python\nimport pulp\nprint('Objective: 12.0')\n```\n",
        },
        {"role": "executor", "text": "```output\nObjective: 12.0\n```\n", "status": "ok"},
        {"role": "reasoner", "text": "The solver says 12, which I"},
        {"role": "intervener", "text": " should sanity-check: 3·4 = 12 fits the bound."},
        {"role": "reasoner", "text": "\n```python\nprint(3*4)\n```\n"},
        {"role": "executor", "text": "```output\n12\n```\n", "status": "ok"},
        {"role": "reasoner", "text": "Confirmed.\n</think>\n\nThe optimum is \\boxed{12}."},
    ]


def test_prompt_ids_are_the_chat_template_with_the_opened_think_block(tok):
    ids = prompt_ids(tok, [{"role": "user", "content": "hi"}])
    assert ids == [151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198, 151667, 198]


def test_fences_tokenize_as_the_turn_rules_expect(tok):
    enc = encode(tok, MESSAGES, [{"role": "reasoner", "text": "```python\n"}], None)
    assert enc.input_ids[enc.prompt_tokens :] == [73594, 12669, 198]
    enc = encode(
        tok,
        MESSAGES,
        [
            {"role": "reasoner", "text": "x\n```\n"},
            {"role": "executor", "text": "```output\n4\n```\n"},
        ],
        None,
    )
    tail = enc.input_ids[enc.prompt_tokens :]
    assert tail[:3] == [87, 198, 13874] and tail[3] == 3989  # "x" "\n" "``" "`\n"
    assert tail[4:7] == [73594, 3006, 198]  # "```output\n", no merge across the boundary


def test_masks_train_exactly_reasoner_and_intervener_text_plus_end_of_turn(tok):
    flow = two_execution_flow()
    enc = encode(tok, MESSAGES, flow, "stop")
    assert len(enc.input_ids) == len(enc.loss_mask)
    assert enc.input_ids[: enc.prompt_tokens] == prompt_ids(tok, MESSAGES)
    assert enc.input_ids[-1] == IM_END and enc.loss_mask[-1] == 1
    trained = [t for t, m in zip(enc.input_ids, enc.loss_mask, strict=True) if m]
    expected = "".join(s["text"] for s in flow if s["role"] != "executor") + "<|im_end|>"
    assert tok.decode(trained, skip_special_tokens=False) == expected
    masked_out = [
        t
        for t, m in zip(
            enc.input_ids[enc.prompt_tokens :], enc.loss_mask[enc.prompt_tokens :], strict=True
        )
        if not m
    ]
    assert tok.decode(masked_out) == "".join(s["text"] for s in flow if s["role"] == "executor")
    labels = enc.labels
    assert labels[: enc.prompt_tokens] == [IGNORE_INDEX] * enc.prompt_tokens
    # the whole sequence decodes to prompt + assistant text byte for byte
    assert tok.decode(enc.input_ids, skip_special_tokens=False) == (
        tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
        + flow_text(flow)
        + "<|im_end|>"
    )


def test_segments_are_tokenized_on_their_own(tok):
    flow = two_execution_flow()
    enc = encode(tok, MESSAGES, flow, "stop")
    expected = prompt_ids(tok, MESSAGES)
    for seg in flow:
        expected += tok.encode(seg["text"], add_special_tokens=False)
    assert enc.input_ids == expected + [IM_END]


def test_no_end_of_turn_when_the_turn_did_not_end(tok):
    flow = [{"role": "reasoner", "text": "Still thinking about"}]
    for finish in ("length", "rounds", "error", None):
        enc = encode(tok, MESSAGES, flow, finish)
        assert IM_END not in enc.input_ids[enc.prompt_tokens :]


def test_chat_mode_and_malformed_records_are_refused(tok):
    record = {
        "messages": MESSAGES,
        "flow": two_execution_flow(),
        "gen": {"mode": "chat", "finish": "stop"},
    }
    with pytest.raises(EncodeError, match="chat-mode"):
        encode_record(tok, record)
    with pytest.raises(EncodeError, match="messages"):
        encode_record(tok, {"flow": []})
    with pytest.raises(EncodeError, match="role"):
        encode(tok, MESSAGES, [{"role": "assistant", "text": "x"}], None)


def test_encode_record_prefers_the_corrected_flows_finish(tok):
    record = {
        "messages": MESSAGES,
        "flow": [{"role": "reasoner", "text": "done \\boxed{1}"}],
        "gen": {"finish": "length"},
        "calm": {"final": {"finish": "stop"}},
    }
    assert encode_record(tok, record).input_ids[-1] == IM_END


def test_align_ids_keeps_generated_ids_and_retokenizes_a_token_that_ran_past_the_fence(tok):
    # "`\n\n" is one token: a server stopping on "\n```\n" may return it whole
    generated = tok.encode("x = 1\n```\n\nNext", add_special_tokens=False)
    text = tok.decode(generated)
    cut, finish = cut_completion(text, "stop")
    assert (cut, finish) == ("x = 1\n```\n", "fence")
    ids = align_ids(tok, generated, cut)
    assert tok.decode(ids) == cut
    assert ids[:3] == generated[:3]  # the ids before the boundary are kept verbatim
    # non-canonical ids are kept as the model produced them
    odd = tok.encode("x = 1\n", add_special_tokens=False) + [73594, 198]  # "```" + "\n"
    assert align_ids(tok, odd, "x = 1\n```\n") == odd


def test_missing_tokenizers_fail_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerError, match="no such folder"):
        load_tokenizer(str(tmp_path / "nope" / "x" / "y"))
    with pytest.raises(TokenizerError, match="cannot be reached"):
        load_tokenizer("someone/not-a-cached-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="no tokenizer in this folder"):
        load_tokenizer(str(tmp_path / "empty"))


def test_a_cached_hub_name_loads_light_from_its_snapshot(tmp_path, monkeypatch, tok):
    """A hub name that `vllm serve` already downloaded loads from the local cache without
    transformers (or-gen's first request, or-filter --max-tokens), token for token the same."""
    import shutil

    import huggingface_hub.constants
    from or_common.tokens import LightTokenizer

    snapshot = tmp_path / "models--Qwen--Qwen3-4B-Thinking-2507" / "snapshots" / ("a" * 40)
    shutil.copytree(QWEN, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    light = load_tokenizer("Qwen/Qwen3-4B-Thinking-2507", light=True)
    assert isinstance(light, LightTokenizer) and light.name_or_path == str(snapshot)
    assert prompt_ids(light, MESSAGES) == prompt_ids(tok, MESSAGES)
    with pytest.raises(TokenizerError, match="cannot be reached"):
        load_tokenizer("Qwen/another-model", light=True)


# --- the turn step -----------------------------------------------------------------------


def test_cut_completion_stops_at_the_first_closing_fence():
    raw = "```python\nprint(1)\n```\n```output\n1\n```\nSo \\boxed{1}"
    assert cut_completion(raw, "stop") == ("```python\nprint(1)\n```\n", "fence")
    assert cut_completion("I think ```output\n5", "stop") == ("I think ", "fake_output")
    # a server that honoured the stop but dropped it from the text
    assert cut_completion("print(1)", "stop", "```python\n") == ("print(1)" + FENCE_STOP, "fence")
    assert cut_completion("the end", "length") == ("the end", "length")
    assert cut_completion("the end", "stop") == ("the end", "stop")


def ok(stdout: str):
    return SimpleNamespace(status="ok", stdout=stdout, stderr="", seconds=0.1, message=None)


def test_a_turn_runs_blocks_caps_executions_and_finishes():
    limits = TurnLimits(max_tokens=1000, max_executions=1)
    turn = Turn()
    assert next_request(turn, limits) == Generate(1000)
    action = after_generation(turn, limits, "a\n```python\nprint(1)\n```\n", "fence", 10)
    assert action == Execute("print(1)\n")
    action = after_output(turn, limits, output_segment(ok("1\n")), 5)
    assert action == Generate(985)
    action = after_generation(turn, limits, "again\n```python\nprint(2)\n```\n", "fence", 10)
    assert action == Skip(SKIPPED_MESSAGE.format(n=1))
    skipped = SkippedResult(action.message)
    assert output_block(skipped) == f"```output\n{action.message}\n```\n"
    action = after_output(turn, limits, output_segment(skipped), 20)
    assert action == Generate(955) and turn.executions == 1
    assert after_generation(turn, limits, "\\boxed{1}", "stop", 3) == Finish("stop")
    assert turn.finish == "stop" and [s["role"] for s in turn.flow] == [
        "reasoner",
        "executor",
        "reasoner",
        "executor",
        "reasoner",
    ]


def test_budget_rounds_and_fake_outputs_end_a_turn():
    limits = TurnLimits(max_tokens=10, max_executions=4)
    turn = Turn()
    assert after_generation(turn, limits, "x" * 10, "fence", 10) == Finish("length")
    # a python block closed by the budget's last token is not run: its output would lie past
    # the budget, where the model can never read it
    turn = Turn()
    code = "```python\nprint(1)\n```\n"
    assert after_generation(turn, limits, code, "fence", 10) == Finish("length")
    assert turn.executions == 0 and [s["role"] for s in turn.flow] == ["reasoner"]
    turn = Turn()
    assert after_generation(turn, limits, code, "fence", 9) == Execute("print(1)\n")
    limits = TurnLimits(max_tokens=100, max_fake_outputs=2)
    turn = Turn()
    assert after_generation(turn, limits, "a", "fake_output", 1) == Generate(99)
    assert after_generation(turn, limits, "b", "fake_output", 1) == Generate(98)
    assert after_generation(turn, limits, "c", "fake_output", 1) == Finish("fake_output")
    assert flow_text(turn.flow) == "abc"
    limits = TurnLimits(max_tokens=100, max_rounds=2)
    turn = Turn()
    after_generation(turn, limits, "```text\nhi\n```\n", "fence", 1)  # not python: no run
    assert after_generation(turn, limits, "```text\nhi\n```\n", "fence", 1) == Finish("rounds")


def test_output_block_format():
    assert output_block(ok("Objective: 12.0\n")) == "```output\nObjective: 12.0\n```\n"
    assert output_block(ok("")) == "```output\n(no output)\n```\n"
    err = SimpleNamespace(
        status="error", stdout="a", stderr="NameError: x", seconds=0.1, message=None
    )
    assert output_block(err) == "```output\na\nNameError: x\n```\n"
    slow = SimpleNamespace(status="timeout", stdout="", stderr="", seconds=10.04, message=None)
    assert output_block(slow) == "```output\nTimeoutError: execution stopped after 10.0 s\n```\n"


def test_stop_ids_are_eos_pad_and_the_generation_configs(tmp_path, tok):
    """One rule for or-gen and or-grpo: the tokenizer's eos (each of a list), its pad, and the
    generation config's eos ids (Qwen3: `<|im_end|>` and `<|endoftext|>`)."""
    assert stop_ids(tok) == {151643, IM_END}
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [7, 8]}')
    fake = SimpleNamespace(eos_token_id=[1, 2], pad_token_id=3, name_or_path=str(tmp_path))
    assert stop_ids(fake) == {1, 2, 3, 7, 8}
    assert stop_ids(SimpleNamespace(eos_token_id=None, pad_token_id=None)) == set()


def test_take_completion_drops_the_end_of_turn_and_cuts_at_the_fence(tok):
    """The step or-gen's loop and or-grpo's rollout share: the end-of-turn id ends the turn (a
    token of it, no part of its text), a completion that ran past the fence is cut there with
    the ids before the cut kept verbatim, and log probs follow the kept ids."""
    stops = stop_ids(tok)
    ids = text_ids(tok, "\\boxed{12}") + [IM_END]
    for text in (None, tok.decode(ids, skip_special_tokens=False)):  # or-grpo, or-gen
        taken = take_completion(tok, text, ids, "stop", "", stops, log_probs=[-0.5] * len(ids))
        assert (taken.text, taken.finish, taken.end_id) == ("\\boxed{12}", "stop", IM_END)
        assert taken.ids == ids[:-1] and taken.ids_with_end == ids and taken.tokens == len(ids)
        assert taken.log_probs == [-0.5] * len(ids)
    ran_past = text_ids(tok, "a\n```python\nprint(1)\n```\n\nNow the answer")
    taken = take_completion(tok, None, ran_past, "stop", "", stops, log_probs=[-1.0] * 40)
    assert (taken.text, taken.finish) == ("a\n```python\nprint(1)\n```\n", "fence")
    assert tok.decode(taken.ids) == taken.text and taken.end_id is None
    assert taken.ids[:-1] == ran_past[: len(taken.ids) - 1]
    assert len(taken.log_probs) == taken.tokens == len(taken.ids)
    # a server that gives no ids: its text is tokenized, and an end-of-turn text ends the turn
    taken = take_completion(tok, "done<|im_end|>", None, "stop", "```python\n", stops)
    assert (taken.text, taken.finish, taken.ids) == ("done", "stop", text_ids(tok, "done"))
    # chat mode, no tokenizer: the text is cut and the engine's count is the cost
    taken = take_completion(None, "x\n```\ny", None, "stop", "```python\n", set(), engine_tokens=9)
    assert (taken.text, taken.finish, taken.ids, taken.tokens) == ("x\n```\n", "fence", None, 9)
