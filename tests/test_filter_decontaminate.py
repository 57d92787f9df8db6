"""or-filter --decontaminate on records other tools wrote: the problem text is read from
`--text-key` (default `question`, then the last user message of `messages`) in the inputs and
in every reference file, and nothing that lacks it passes as checked (issue 19)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import read_jsonl, write_jsonl
from or_filter.cli import main as filter_main

Q = (
    "A factory makes chairs and tables. Each chair needs 2 hours of labour and each table 3 "
    "hours; 120 hours are available. Profit is 30 per chair and 50 per table. Maximize profit."
)
OTHER = "A zoo feeds its animals two foods with vitamins A and B at least 8 and 12 units a day."


def run(args, records):
    data = "".join(json.dumps(r) + "\n" for r in records)
    return CliRunner().invoke(filter_main, [*args, "-q"], input=data)


def test_prompt_keyed_records_and_references_are_compared_with_text_key(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "r1", "prompt": Q}])
    records = [{"id": "a", "prompt": Q}, {"id": "b", "prompt": OTHER}]
    result = run(["--decontaminate", str(ref), "--text-key", "prompt"], records)
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["b"]


def test_llmopt_en_question_key(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "r1", "en_question": Q}])
    records = [{"id": "a", "en_question": Q}]
    result = run(["--decontaminate", str(ref), "--text-key", "en_question"], records)
    assert (result.exit_code, result.stdout) == (0, "")


def test_chat_messages_user_turn_is_the_default_text(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "r1", "question": Q}])
    chat = {
        "id": "m",
        "messages": [
            {"role": "system", "content": "You are an OR expert."},
            {"role": "user", "content": Q},
        ],
    }
    result = run(["--decontaminate", str(ref)], [chat, {"id": "o", "question": OTHER}])
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["o"]


def test_an_input_without_the_text_is_a_file_line_error(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "r1", "question": Q}])
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "question": OTHER}, {"id": "b"}])
    result = CliRunner().invoke(filter_main, [str(src), "--decontaminate", str(ref)])
    assert result.exit_code == 1
    assert f"{src}:2: no problem text: expected 'question', then the last user message" in (
        result.stderr
    )
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["a"]  # b is not passed as clean
    keyed = CliRunner().invoke(
        filter_main, [str(src), "--decontaminate", str(ref), "--text-key", "prompt"]
    )
    # the reference is checked first, before any input is read
    assert keyed.exit_code == 2
    assert f"--decontaminate {ref}:1: no problem text under --text-key 'prompt'" in keyed.stderr


def test_empty_or_keyless_reference_is_a_usage_error_before_reading(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    keyless = write_jsonl(tmp_path / "keyless.jsonl", [{"id": "r1", "prompt": Q}])
    for ref, message in (
        (empty, f"--decontaminate {empty} holds no record: nothing to compare with"),
        (keyless, f"--decontaminate {keyless}:1: no problem text"),
    ):
        result = run(["--decontaminate", str(ref)], [{"id": "a", "question": Q}])
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr and result.stderr.count("\n") == 1
        assert result.stdout == ""


def test_a_short_generic_question_is_judged_by_its_whole_text(tmp_path):
    ref = write_jsonl(
        tmp_path / "ref.jsonl",
        [
            {
                "id": "L",
                "question": "A shop sells three breads. " + Q + " Maximize the total profit.",
            }
        ],
    )
    short = {"id": "s", "question": "Maximize the total profit."}
    embedded = {"id": "e", "question": Q}  # long enough: containment still drops it
    rejects = tmp_path / "rejects.jsonl"
    result = run(["--decontaminate", str(ref), "--rejects", str(rejects)], [short, embedded])
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["s"]
    assert [r["filter"]["reason"] for r in read_jsonl(rejects)] == ["near_duplicate_of:L:1.0"]
    lowered = run(["--decontaminate", str(ref), "--containment-min-words", "2"], [short])
    assert read_jsonl(lowered.stdout) == []  # the old behaviour, when asked for
