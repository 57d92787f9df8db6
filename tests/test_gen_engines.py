"""or-gen's engines and failure paths: the vLLM engine against a fake of vllm 0.31.0's API, the
transformers backend with a tiny random Qwen3, the retry policy, the checks made before the
first record, lost worker exceptions, and a few subprocess smoke tests (`slow`)."""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import subprocess
import sys
import time
import types
from enum import Enum
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from conftest import read_jsonl, tool_path, write_jsonl
from fakeserver import FakeServer
from helpers import QWEN, FakeRunner, make_model, problems, script
from or_common.concurrency import run_concurrently
from or_common.llm import GenerationError, retry_after, with_retries
from or_common.records import flow_text
from or_common.tokens import encode_record, load_tokenizer, prompt_ids
from or_common.turn import STOPS
from or_gen.cli import main
from or_gen.session import ReasonerSession


@pytest.fixture(autouse=True)
def fake_sandbox(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(ReasonerSession, "make_runner", lambda self, limits: runner)
    return runner


def invoke(*args: str, input: str = "", env=None):
    return CliRunner().invoke(main, list(args), input=input, env=env)


# -- checked before the first record: one line, exit 2 ------------------------------------------


SERVED = ["--model", "m", "--api-base", "http://127.0.0.1:9/v1"]


@pytest.mark.parametrize(
    "args,env,message",
    [
        ([*SERVED, "--tokenizer", QWEN, "--sampling-extra", "{bad"], None, "not valid JSON"),
        (
            [*SERVED, "--tokenizer", QWEN, "--sampling-extra", '{"top_k": 20, "stop": []}'],
            None,
            "cannot set stop: or-gen sets them",
        ),
        ([*SERVED, "--tokenizer", "/no/such/dir"], None, "/no/such/dir: no such folder"),
        ([*SERVED, "--tokenizer", "nobody/no-model"], {"HF_HUB_OFFLINE": "1"}, "cannot be reached"),
        (
            ["--backend", "vllm", "--model", "nobody/no-model", "--tokenizer", QWEN],
            {"HF_HUB_OFFLINE": "1"},
            "--model nobody/no-model: not a local folder",
        ),
        (["--backend", "vllm", "--model", "/no/model", "--tokenizer", QWEN], None, "no such model"),
        (["--model", "served-name", "--tokenizer", QWEN], None, "give --api-base URL"),
    ],
)
def test_an_impossible_run_stops_before_the_first_record(args, env, message):
    t = time.monotonic()
    result = invoke(*args, input=problems("good"), env=env)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1  # one line
    assert result.stdout == "" and time.monotonic() - t < 30  # no hub retries (48 s before)


@pytest.mark.parametrize("backend,package", [("transformers", "torch"), ("vllm", "vllm")])
def test_a_local_backend_without_its_engine_stops_at_once(monkeypatch, backend, package):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    result = invoke("--backend", backend, "--model", "m", "--tokenizer", QWEN, input="")
    assert result.exit_code == 2 and f"needs {package}" in result.stderr.replace("vLLM", "vllm")


# -- no exception is ever lost -------------------------------------------------------------------


def test_a_bug_in_a_worker_becomes_error_records_and_exit_1(monkeypatch):
    from or_gen.loop import Generator

    async def broken(self, problem, sample):
        raise KeyError("a bug")

    monkeypatch.setattr(Generator, "trajectory", broken)
    with FakeServer(script) as server:
        result = invoke("--model", "m", "--api-base", server.url, "--tokenizer", QWEN, "--n", "2",
                        "-q", input=problems("good"))  # fmt: skip
    assert result.exit_code == 1
    out = read_jsonl(result.stdout)
    assert [r["gen"]["error"]["type"] for r in out] == ["KeyError", "KeyError"]
    assert "Task exception was never retrieved" not in result.stderr


def test_run_concurrently_raises_the_first_worker_exception_and_stops_reading():
    started, cancelled = [], []

    async def items():
        for i in range(100):
            yield i

    async def handle(i):
        started.append(i)
        if i == 3:
            raise BrokenPipeError("reader went away")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    with pytest.raises(BrokenPipeError):
        asyncio.run(asyncio.wait_for(run_concurrently(items(), 4, handle), 5))
    assert len(started) <= 5 and sorted(cancelled) == [0, 1, 2]


# -- the retry policy ----------------------------------------------------------------------------


def test_bugs_are_not_retried_and_api_errors_are_classified():
    calls = []

    async def bug(n):
        calls.append(n)
        raise TypeError("unexpected keyword")

    with pytest.raises(TypeError):
        asyncio.run(with_retries(bug, retries=5, backoff=0.0))
    assert calls == [0]

    class Status(Exception):
        def __init__(self, code, headers=None):
            self.status_code = code
            self.response = SimpleNamespace(status_code=code, headers=headers or {})

    for code, attempts in ((401, 1), (404, 1), (429, 3), (503, 3)):
        calls.clear()

        async def fail(n, code=code):
            calls.append(n)
            raise Status(code)

        with pytest.raises(GenerationError, match=f"after {attempts} attempts"):
            asyncio.run(with_retries(fail, retries=2, backoff=0.0))
        assert len(calls) == attempts
    assert retry_after(Status(429, {"retry-after": "2"})) == 2.0
    assert retry_after(Status(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after(Status(429, {"retry-after": "9999"})) == 120.0


# -- vLLM, against a fake of its API -------------------------------------------------------------


class EngineDeadError(Exception):
    """vllm.v1.engine.exceptions.EngineDeadError"""


class FakeVLLM:
    """The parts of vllm 0.31.0 or-gen uses, with the same names and shapes: `AsyncEngineArgs`
    (a dataclass of keyword fields), `AsyncLLMEngine.from_engine_args`, `model_config.
    get_diff_sampling_param()`, `generate(prompt, sampling_params, request_id)` as an async
    generator of RequestOutput (`outputs[0].text/token_ids/finish_reason`, `prompt_token_ids`),
    `SamplingParams(**kw)`, `vllm.inputs.TokensPrompt` (a TypedDict: a dict) and
    `vllm.sampling_params.RequestOutputKind`, `vllm.platforms.current_platform` (a GPU one) and
    `vllm.v1.engine.exceptions.EngineDeadError`."""

    def __init__(self, tokenizer, finish: str | None = None):
        self.tokenizer, self.finish = tokenizer, finish
        self.args, self.calls = None, []

    def install(self, monkeypatch) -> None:
        fake = self
        vllm = types.ModuleType("vllm")
        vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)

        class RequestOutputKind(Enum):
            CUMULATIVE, DELTA, FINAL_ONLY = 0, 1, 2

        class Engine:
            model_config = SimpleNamespace(
                get_diff_sampling_param=lambda: {"temperature": 0.6, "top_k": 20, "max_tokens": 9}
            )

            @classmethod
            def from_engine_args(cls, args):
                fake.args = args
                return cls()

            async def generate(self, prompt, sampling_params, request_id):
                fake.calls.append((prompt, sampling_params))
                if fake.finish == "dead":  # the engine core died (vLLM's own message)
                    raise EngineDeadError("EngineCore encountered an issue.")
                text = fake.tokenizer.decode(prompt["prompt_token_ids"])
                out = script(text, {})
                cut = min((out.find(s) + len(s) for s in STOPS[:1] if s in out), default=None)
                ids = fake.tokenizer.encode(out[:cut], add_special_tokens=False)
                if cut is None:
                    ids.append(fake.tokenizer.eos_token_id)
                finish = fake.finish or "stop"
                yield SimpleNamespace(
                    prompt_token_ids=prompt["prompt_token_ids"],
                    outputs=[
                        SimpleNamespace(
                            text=fake.tokenizer.decode(ids), token_ids=ids, finish_reason=finish
                        )
                    ],  # fmt: skip
                )

            def shutdown(self):
                return None

        vllm.AsyncEngineArgs = lambda **kw: SimpleNamespace(**kw)
        vllm.AsyncLLMEngine = Engine
        vllm.SamplingParams = lambda **kw: SimpleNamespace(**kw)
        inputs = types.ModuleType("vllm.inputs")
        inputs.TokensPrompt = lambda **kw: dict(kw)
        sampling = types.ModuleType("vllm.sampling_params")
        sampling.RequestOutputKind = RequestOutputKind
        platforms = types.ModuleType("vllm.platforms")
        platforms.current_platform = SimpleNamespace(is_cpu=lambda: False)
        exceptions = types.ModuleType("vllm.v1.engine.exceptions")
        exceptions.EngineDeadError = EngineDeadError
        modules = {
            "vllm": vllm,
            "vllm.inputs": inputs,
            "vllm.sampling_params": sampling,
            "vllm.platforms": platforms,
            "vllm.v1": types.ModuleType("vllm.v1"),
            "vllm.v1.engine": types.ModuleType("vllm.v1.engine"),
            "vllm.v1.engine.exceptions": exceptions,
        }
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)


def test_vllm_engine_sends_token_ids_with_exact_text_settings(monkeypatch, fake_sandbox):
    qwen = load_tokenizer(QWEN)
    fake = FakeVLLM(qwen)
    fake.install(monkeypatch)
    result = invoke("--backend", "vllm", "--model", QWEN, "--tokenizer", QWEN, "--n", "1",
                    "--max-model-len", "20000", "-q", input=problems("good"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rec = read_jsonl(result.stdout)[0]
    assert fake.args.max_model_len == 20000 and fake.args.enable_prefix_caching is True
    prompt, params = fake.calls[0]
    assert prompt == {"prompt_token_ids": prompt_ids(qwen, rec["messages"])}
    assert (params.top_k, params.temperature, params.top_p) == (20, 0.6, 0.95)  # generation_config
    assert params.skip_special_tokens is False and params.include_stop_str_in_output is True
    assert params.output_kind.name == "FINAL_ONLY" and params.stop == list(STOPS)
    assert params.max_tokens == 16384 and fake.calls[1][1].max_tokens < 16384
    assert rec["gen"]["finish"] == "stop" and rec["gen"]["executions"] == 1
    last = fake.calls[-1][0]["prompt_token_ids"]
    assert encode_record(qwen, rec).input_ids[: len(last)] == last


@pytest.mark.parametrize("finish", ["abort", "error", "repetition"])
def test_vllm_abnormal_finishes_are_errors(monkeypatch, finish, fake_sandbox):
    FakeVLLM(load_tokenizer(QWEN), finish=finish).install(monkeypatch)
    result = invoke("--backend", "vllm", "--model", QWEN, "--tokenizer", QWEN, "--n", "1", "-q",
                    input=problems("good"))  # fmt: skip
    rec = read_jsonl(result.stdout)[0]
    assert result.exit_code == 1 and rec["gen"]["finish"] == "error"
    assert rec["gen"]["error"]["type"] == f"finish_{finish}"


def test_an_in_process_engine_death_stops_the_run_in_one_line(monkeypatch, fake_sandbox):
    FakeVLLM(load_tokenizer(QWEN), finish="dead").install(monkeypatch)
    result = invoke("--backend", "vllm", "--model", QWEN, "--tokenizer", QWEN, "--n", "3", "-q",
                    input=problems("good", "good"))  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the vLLM engine died")
    assert result.stderr.strip().count("\n") == 0


# -- transformers, with a tiny random Qwen3 ------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer_dir):
    pytest.importorskip("torch", reason="the transformers backend needs torch")
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("model")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(path)
    make_model(path, len(tok))
    return path


def test_transformers_backend_with_a_tiny_qwen3(tiny_model, fake_sandbox):
    from or_gen.local_engines import TransformersEngine

    data = json.dumps({"id": "t", "question": "Maximize 3x.", "answer": 1}) + "\n"
    result = invoke("--backend", "transformers", "--model", str(tiny_model), "--n", "2",
                    "--max-tokens", "24", "-q", input=data)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = read_jsonl(result.stdout)
    tok = load_tokenizer(str(tiny_model))
    for rec in out:
        assert rec["gen"]["backend"] == "transformers" and rec["gen"]["token_ids"] == "engine"
        assert 0 < rec["gen"]["completion_tokens"] <= 24 + 8  # + an output block past the budget
        assert flow_text(rec["flow"]) and encode_record(tok, rec).response_tokens > 0
    engine = TransformersEngine(str(tiny_model), tok)
    assert engine.eos_ids == [2]  # generation_config.eos_token_id, the model's own end of turn


# -- subprocess smoke tests ----------------------------------------------------------------------


@pytest.mark.slow
def test_closed_stdout_stops_the_run_promptly(tokenizer_dir):
    with FakeServer(script, latency=0.05) as server:
        cmd = (f"{tool_path('or-gen')} --model m --api-base {server.url} --tokenizer "
               f"{tokenizer_dir} --n 8 --concurrency 2 --workers 1 -q | head -n 1")  # fmt: skip
        many = problems(*["good"] * 50)
        done = subprocess.run(["bash", "-c", cmd], input=many.encode(), capture_output=True, timeout=120)  # fmt: skip
        sent = len(server.requests)
    assert done.returncode == 0 and len(read_jsonl(done.stdout)) == 1
    assert b"Traceback" not in done.stderr and b"never retrieved" not in done.stderr
    assert sent < 20  # 400 trajectories of 2 rounds were asked for


@pytest.mark.slow
def test_resume_with_nothing_left_imports_no_client(tmp_path):
    out = tmp_path / "run.jsonl"
    write_jsonl(out, [{"id": "q0", "sample": s, "flow": [], "gen": {}} for s in range(2)])
    src = tmp_path / "p.jsonl"
    src.write_text(problems("good"))
    code = (
        "import sys\nfrom or_gen.cli import main\n"
        f"sys.argv = ['or-gen', '--model', 'x', '--api-base', 'http://h/v1', '--tokenizer', {QWEN!r},"
        f" '--n', '2', '-o', {str(out)!r}, '--resume', {str(src)!r}, '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print(e.code, *(m in sys.modules for m in ('litellm', 'openai', 'transformers')),"
        " file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.stderr.strip().splitlines()[-1] == "0 False False False"


@pytest.mark.parametrize("folder", ["qwen", "tiny"])
def test_the_light_tokenizer_encodes_like_transformers(folder, tokenizer_dir):
    """or-gen's openai backend loads the tokenizer without transformers; every id must agree."""
    from or_common.tokens import LightTokenizer, encode

    path = QWEN if folder == "qwen" else str(tokenizer_dir)
    light, full = load_tokenizer(path, light=True), load_tokenizer(path)
    assert isinstance(light, LightTokenizer) and not isinstance(full, LightTokenizer)
    messages = [{"role": "user", "content": "Maximize 3x — x ≤ 4, 日本 <think> ```python\n```"}]
    flow = [
        {"role": "reasoner", "text": "Let me model it.\n```python\nprint('é', 1)\n```\n"},
        {"role": "executor", "text": "```output\né 1\n```\n", "status": "ok"},
        {"role": "intervener", "text": "I check it.\n"},
        {"role": "reasoner", "text": "</think>\n\n\\boxed{12}"},
    ]
    a, b = encode(light, messages, flow, "stop"), encode(full, messages, flow, "stop")
    assert (a.input_ids, a.loss_mask) == (b.input_ids, b.loss_mask)
    assert light.decode(a.input_ids) == full.decode(b.input_ids, skip_special_tokens=False)
    assert (light.eos_token_id, light.pad_token_id) == (full.eos_token_id, full.pad_token_id)
