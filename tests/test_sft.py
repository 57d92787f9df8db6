"""or-sft: masks token-exact on the real Qwen3 tokenizer through the batches trl trains on, input
hygiene, the launch plan, and real training of a tiny random Qwen3 on CPU (falling loss, a
reloadable checkpoint, resume). Needs the training stack: `uv run just test-deps`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, GOLDEN, ROOT, read_jsonl, run_tool, write_jsonl
from helpers import QWEN, make_tiny_qwen
from or_sft.cli import main
from or_sft.data import Counts, examples
from or_sft.launch import ZERO3

DATA = FIXTURES / "sft" / "golden.jsonl"  # four hand-written trajectories
IM_END = 151645
TINY = [
    "--global-batch", "2", "--per-device-batch", "2", "--lr", "1e-2", "--warmup", "0", "--lr-scheduler", "constant",
    "--precision", "fp32", "-q",
]  # fmt: skip


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def tok():
    from or_common.tokens import load_tokenizer

    return load_tokenizer(QWEN)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: more threads only contend
    return make_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


# -- masks --------------------------------------------------------------------------------------


def test_trl_batches_train_exactly_reasoner_and_intervener_text_plus_end_of_turn(
    tok, tiny, tmp_path
):
    from or_common.tokens import encode_record, prompt_ids
    from or_sft.settings import Settings, resolve
    from or_sft.train import make_trainer

    record = read_jsonl(DATA)[0]  # two executions and one hint
    flow = record["flow"]
    items = list(examples(tok, [str(DATA)], Counts(), pytest.fail, 22000))
    settings = Settings(model=str(tiny), output_dir=str(tmp_path), global_batch=1, precision="fp32")
    trainer = make_trainer(settings, resolve(settings, 1), items[:1], tok, None)
    batch = next(iter(trainer.get_train_dataloader()))  # what the model is fed, after trl
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert ids == encode_record(tok, record).input_ids  # no re-tokenizing, no cut, no template
    trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
    assert trained == [lab for lab in labels if lab != -100]
    expected = "".join(s["text"] for s in flow if s["role"] != "executor") + "<|im_end|>"
    assert tok.decode(trained, skip_special_tokens=False) == expected
    prompt = len(prompt_ids(tok, record["messages"]))
    masked = [t for t, lab in zip(ids[prompt:], labels[prompt:], strict=True) if lab == -100]
    assert tok.decode(masked) == "".join(s["text"] for s in flow if s["role"] == "executor")
    assert labels[:prompt] == [-100] * prompt and ids[-1] == IM_END


def test_encode_writes_examples_and_show_marks_the_trained_spans():
    result = cli("encode", str(DATA), "--tokenizer", QWEN)
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(result.stdout)
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(DATA)]
    assert set(rows[0]) == {"id", "sample", "input_ids", "labels"}
    shown = cli("encode", str(DATA), "--tokenizer", QWEN, "--show").stdout
    assert "«Let x, y ≥ 0 be the amounts.\n```python" in shown
    assert "»```output\nObjective: 12.0\n```\n«The solver says 12, which I should" in shown
    assert shown.rstrip().endswith("\\boxed{12}.<|im_end|>»")


# -- input hygiene ------------------------------------------------------------------------------

GOOD = read_jsonl(DATA)[1]
BAD = [
    ({**GOOD, "gen": {"mode": "chat", "finish": "stop"}}, "chat-mode trajectory (gen.mode = chat)"),
    (
        {**GOOD, "gen": {"error": {"tool": "or-gen", "type": "server", "message": "HTTP 500"}}},
        "the record carries an error from or-gen: HTTP 500",
    ),
    (
        {**GOOD, "calm": {"error": {"tool": "or-intervene", "type": "parse", "message": "x"}}},
        "the record carries an error from or-intervene: x",
    ),
    ({"id": "q", "question": "a problem, not a trajectory"}, "missing field 'flow'"),
    ({**GOOD, "flow": []}, "flow is empty"),
    (
        {**GOOD, "flow": [{"role": "assistant", "text": "x"}]},
        "flow[0].role is 'assistant'; expected one of reasoner, executor, intervener",
    ),
    (
        {**GOOD, "flow": [GOOD["flow"][0], {"role": "executor", "text": "3\n"}]},
        "flow[1] (executor) is not a ```output block",
    ),
    (
        {**GOOD, "flow": [{"role": "reasoner", "text": "No code.\n"}, GOOD["flow"][1]]},
        "flow[1] (executor) does not follow a closed ```python block",
    ),
    (
        {**GOOD, "flow": [*GOOD["flow"][:2], GOOD["flow"][1]]},
        "flow[2] (executor) does not follow a closed ```python block",
    ),
    (
        {**GOOD, "flow": [{"role": "reasoner", "text": "```python\nx\n```\n```output\n1\n```\n"}]},
        "flow[0] (reasoner) writes a ```output block; only the executor does",
    ),
    ({**GOOD, "messages": []}, "missing field 'messages'"),
]


def hygiene_file(tmp_path: Path) -> Path:
    path = write_jsonl(tmp_path / "mixed.jsonl", [GOOD] + [rec for rec, _ in BAD])
    with path.open("a") as fh:
        fh.write('{"id": "cut", "flow": [\n')
    return path


def expected_reasons(path: Path) -> list[str]:
    lines = [f"{path}:{i}: {reason}" for i, (_, reason) in enumerate(BAD, 2)]
    return [*lines, f"{path}:{len(BAD) + 2}: not valid JSON"]


def test_encode_rejects_bad_records_with_file_line_reasons(tmp_path):
    path = hygiene_file(tmp_path)
    result = cli("encode", str(path), "--tokenizer", QWEN)
    assert result.exit_code == 1
    assert [r["id"] for r in read_jsonl(result.stdout)] == [GOOD["id"]]
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    for got, want in zip(errors, expected_reasons(path), strict=True):
        assert got.startswith(want), (got, want)


def test_train_rejects_the_same_records_and_summarises_what_is_kept(tmp_path):
    path = hygiene_file(tmp_path)
    result = cli(
        str(path), "--model", "m", "--tokenizer", QWEN, "-o", str(tmp_path / "ck"), "--dry-run"
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    for got, want in zip(errors, expected_reasons(path), strict=True):
        assert got.startswith(want), (got, want)
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith(f"or-sft: 1 examples kept of {len(BAD) + 2}, ")
    assert f"{len(BAD) + 1} rejected" in summary and "longest " in summary
    data = json.loads(result.stdout.split("\n", 1)[1])["data"]
    assert data["kept"] == 1 and data["rejected"] == len(BAD) + 1
    assert data["trained_tokens"] + data["masked_tokens"] == data["longest"]


def test_examples_over_max_length_are_skipped_and_counted_not_cut(tok):
    notes: list[str] = []
    counts = Counts()
    kept = list(examples(tok, [str(DATA)], counts, notes.append, 60))
    assert counts.too_long == len(notes) > 0 and counts.rejected == 0
    assert all(len(e["input_ids"]) <= 60 for e in kept)
    assert len(kept) + counts.too_long == 4
    assert all(": note: " in n and "skipped (not cut)" in n for n in notes)


# -- settings and launch ------------------------------------------------------------------------


def test_dry_run_for_one_node_of_8_gpus_is_the_golden_command(monkeypatch):
    """Regenerate after a deliberate change (from the repo root):
    uv run or-sft tests/fixtures/sft/golden.jsonl --model Qwen/Qwen3-4B-Thinking-2507 \
      --tokenizer tests/fixtures/qwen3-tokenizer -o ckpt/sft --num-processes 8 --dry-run \
      > tests/golden/sft_dry_run_8gpu.txt"""
    monkeypatch.chdir(ROOT)
    result = cli(
        "tests/fixtures/sft/golden.jsonl", "--model", "Qwen/Qwen3-4B-Thinking-2507",
        "--tokenizer", "tests/fixtures/qwen3-tokenizer", "-o", "ckpt/sft",
        "--num-processes", "8", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (GOLDEN / "sft_dry_run_8gpu.txt").read_text()
    plan = json.loads(result.stdout.split("\n", 1)[1])["plan"]
    assert plan == {
        "world_size": 8, "grad_accum": 1, "examples": 4, "steps_per_epoch": 1,
        "total_steps": 3, "warmup_steps": 1,
    }  # fmt: skip


def test_dry_run_for_several_machines_and_bad_batches(monkeypatch):
    monkeypatch.chdir(ROOT)
    base = ["tests/fixtures/sft/golden.jsonl", "--model", "m", "--tokenizer", QWEN, "-o", "ck"]
    result = cli(*base, "--num-processes", "8", "--num-machines", "2", "--machine-rank", "1",
                 "--main-process-ip", "10.0.0.1", "--global-batch", "32", "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    command = result.stdout.splitlines()[0]
    assert command.startswith(
        "accelerate launch --num_processes 16 --num_machines 2 --machine_rank 1 "
        "--main_process_ip 10.0.0.1 --main_process_port 29500 --rdzv_backend static "
        "--same_network -m or_sft.cli train tests/fixtures/sft/golden.jsonl"
    )
    assert "--global-batch 32" in command and "--deepspeed ck/deepspeed.json --launched" in command
    assert json.loads(result.stdout.split("\n", 1)[1])["plan"]["grad_accum"] == 2
    one = cli(*base, "--num-processes", "1", "--dry-run")
    assert one.stdout.startswith("# one process")
    assert json.loads(one.stdout.split("\n", 1)[1])["plan"]["grad_accum"] == 8
    bad = cli(*base, "--num-processes", "3", "--dry-run")
    assert bad.exit_code == 2 and "not a multiple" in bad.stderr
    no_ip = cli(*base, "--num-machines", "2", "--dry-run")
    assert no_ip.exit_code == 2 and "--main-process-ip" in no_ip.stderr
    stdin = cli("-", *base[1:], "--num-processes", "2", "--dry-run")
    assert stdin.exit_code == 2 and "not stdin" in stdin.stderr


def test_the_zero3_recipe_is_the_builtin_config():
    recipe = json.loads((ROOT / "recipes" / "deepspeed" / "zero3.json").read_text())
    assert recipe == ZERO3
    assert recipe["zero_optimization"]["stage"] == 3
    assert recipe["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert recipe["bf16"]["enabled"] == "auto"  # bf16 follows --precision (auto: bf16 on GPUs)
    for name in ("1node-8gpu.yaml", "multinode.yaml"):
        text = (ROOT / "recipes" / "accelerate" / name).read_text()
        assert "deepspeed_config_file: recipes/deepspeed/zero3.json" in text


# -- real training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ck"
    result = cli(str(DATA), "--model", str(tiny), "-o", str(out), "--max-steps", "4", *TINY)
    assert result.exit_code == 0, result.stderr
    return out


def test_a_tiny_qwen3_trains_with_falling_loss(trained):
    rows = read_jsonl(trained / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.5, losses
    assert all(r["lr"] == pytest.approx(1e-2) and r["grad_norm"] > 0 for r in rows)
    assert all(r["tokens_per_s"] > 0 for r in rows)
    run = json.loads((trained / "run.json").read_text())
    assert run["data"]["files"][0]["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert run["settings"]["learning_rate"] == 1e-2 and run["tool"] == "or-sft"
    assert run["plan"]["total_steps"] == run["result"]["max_steps"] == 4
    assert run["data"]["kept"] == 4 and run["versions"]["trl"] == "1.16.0"
    # the provenance every stamp carries (or_common.stamp); no prompt version: the data may
    # come from any prompt, and its records say theirs
    assert {"date", "git_commit", "tool_version", "scoring_version"} <= set(run)
    assert "prompt_version" not in run
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checkpoint_reloads_with_transformers(trained, tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(trained)
    assert model.config.vocab_size == 151936 and model.config.num_hidden_layers == 2
    reloaded = AutoTokenizer.from_pretrained(trained)
    assert reloaded.chat_template == tok.chat_template
    assert IM_END in GenerationConfig.from_pretrained(trained).eos_token_id


@pytest.mark.slow
def test_or_gen_generates_from_the_checkpoint(trained):
    data = json.dumps({"id": "t", "question": "Maximise 3x.", "answer": 3}) + "\n"
    result = run_tool("or-gen", "--backend", "transformers", "--model", str(trained), "--n", "1",
                      "--max-tokens", "8", "--workers", "1", "-q", input=data, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    (rec,) = read_jsonl(result.stdout)
    assert rec["gen"]["backend"] == "transformers" and 0 < rec["gen"]["completion_tokens"] <= 8


def test_resume_continues_from_the_saved_step_with_the_optimizer_state(trained, tiny, tmp_path):
    out = tmp_path / "ck"
    args = [str(DATA), "--model", str(tiny), "-o", str(out), *TINY]
    first = cli(*args, "--max-steps", "2")
    assert first.exit_code == 0, first.stderr
    again = cli(*args, "--max-steps", "4")
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = cli(*args, "--max-steps", "4", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # the resumed run logged steps 3-4 only
    straight = read_jsonl(trained / "metrics.jsonl")
    # step 3's loss needs the restored weights, step 4's the restored Adam moments and data order
    for got, want in zip(rows, straight, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4), (got, want)
    run = json.loads((out / "run.json").read_text())
    assert run["result"]["resumed_from"].endswith("checkpoint-2")
    assert cli(*args, "-o", str(tmp_path / "none"), "--resume").exit_code == 2


@pytest.mark.slow
def test_zero3_through_deepspeed_on_cpu(tiny, tmp_path):
    """The launch a GPU node does (accelerate launch + DeepSpeed ZeRO-3 from the built-in config),
    on DeepSpeed's CPU accelerator with one process; the 16-bit save gathers a loadable model."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "z3"
    args = ["--deepspeed", "zero3", "--num-processes", "1", "--max-steps", "2", *TINY]
    result = run_tool("or-sft", str(DATA), "--model", str(tiny), "-o", str(out), *args, timeout=900)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert json.loads((out / "deepspeed.json").read_text()) == ZERO3
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny).parameters()
    )


# -- the pilot converter ------------------------------------------------------------------------


def test_or_instruct_pilot_converts_to_trainable_one_segment_trajectories(tok, tmp_path):
    import importlib.util

    from conftest import shared_data_or_skip
    from or_common.reasoner import REASONER_PROMPT, build_messages
    from or_sft.data import check_record

    spec = importlib.util.spec_from_file_location(
        "or_instruct", ROOT / "recipes" / "or_instruct_to_trajectories.py"
    )
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    source = shared_data_or_skip() / "train_or_instruct_sample100.jsonl"
    raw = read_jsonl(source)[:3]
    path = write_jsonl(tmp_path / "in.jsonl", [*raw, {"id": "x", "question": "no answer"}])
    out = tmp_path / "pilot.jsonl"
    assert conv.main([str(path), "-o", str(out)]) == 1  # the last line has no meta.completion
    rows = read_jsonl(out)
    assert len(rows) == 3
    for src, row in zip(raw, rows, strict=True):
        assert row["messages"] == build_messages(src["question"], REASONER_PROMPT, 4)
        assert row["flow"] == [
            {"role": "reasoner", "text": "\n</think>\n\n" + src["meta"]["completion"].strip()}
        ]
        assert row["gen"]["finish"] == "stop" and row["meta"] == src["meta"]
        check_record(row)
    (first, *_) = examples(tok, [str(out)], Counts(), pytest.fail)
    trained = [t for t in first["labels"] if t != -100]
    assert tok.decode(trained, skip_special_tokens=False) == (
        rows[0]["flow"][0]["text"] + "<|im_end|>"
    )
