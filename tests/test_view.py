"""or-view: the lint, the terminal view (against golden text) and the HTML page's contents.
The page in a real browser is tested in test_view_browser.py."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, GOLDEN, read_jsonl, write_jsonl
from helpers import QWEN
from or_view.cli import main
from or_view.lint import lint_flow
from or_view.model import parts, segments

VIEW = FIXTURES / "view"
CALM = VIEW / "calm.jsonl"
BASE = VIEW / "base.jsonl"

CODE = "```python\nprint(1)\n```\n"
OUT = {"role": "executor", "text": "```output\n1\n```\n", "status": "ok", "seconds": 0.1}


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def codes(flow) -> list[str]:
    return [f.code for f in lint_flow(flow)]


# -- the lint --------------------------------------------------------------------------------------


def test_a_clean_trajectory_has_no_finding():
    flow = [
        {"role": "reasoner", "text": "Model.\n" + CODE},
        OUT,
        {"role": "intervener", "text": "I should check it.\n", "trigger": 4},
        {"role": "reasoner", "text": "Plausible.</think>\n\n\\boxed{1}"},
    ]
    assert codes(flow) == []


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (
            [{"role": "reasoner", "text": "a</think>\n\\boxed{1}</think>\\boxed{1}"}],
            ["think-twice"],
        ),
        (
            [
                {"role": "reasoner", "text": "a</think>\n\n"},
                {"role": "intervener", "text": "Box only the number.\n", "trigger": 7},
                {"role": "reasoner", "text": "\\boxed{1}"},
            ],
            ["hint-after-answer"],
        ),
        (
            [
                {"role": "reasoner", "text": "a</think>\n" + CODE},
                OUT,
                {"role": "reasoner", "text": "\\boxed{1}"},
            ],
            ["output-after-answer"],
        ),
        ([{"role": "reasoner", "text": "a\n```python\nprint(1)\n"}], ["unclosed-block"]),
        (
            [{"role": "reasoner", "text": CODE + "```output\n2\n```\n</think>\\boxed{2}"}],
            ["fake-output"],
        ),
        ([{"role": "reasoner", "text": "a</think>\\boxed{1} or \\boxed{2}"}], ["several-boxes"]),
    ],
    ids=["think-twice", "hint-after", "output-after", "unclosed", "fake-output", "boxes"],
)
def test_each_rule_fires_alone(flow, expected):
    assert codes(flow) == expected


def test_a_program_printing_fences_or_think_is_not_the_models_fault():
    printed = {"role": "executor", "text": "```output\n</think>\n```python\n```\n", "status": "ok"}
    flow = [
        {"role": "reasoner", "text": CODE},
        printed,
        {"role": "reasoner", "text": "</think>\\boxed{1}"},
    ]
    assert codes(flow) == []


def test_the_demos_golden_record_with_two_think_ends_is_caught():
    """`just demo` selected this record as golden: its visible answer closes the thinking twice
    and holds the hint after the first close."""
    record = next(r for r in read_jsonl(CALM) if r["id"] == "mamo_easy-212" and r["sample"] == 0)
    assert record["calm"]["flawless"] is True  # the pipeline let it through
    assert codes(record["flow"]) == ["think-twice", "hint-after-answer"]


def test_check_prints_file_line_id_and_code_and_exits_1():
    result = invoke(str(CALM), "--check")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        f"{CALM}:1: mamo_easy-212 sample 0: think-twice: `</think>` appears 2 times",
        f"{CALM}:1: mamo_easy-212 sample 0: hint-after-answer: segment 3 (hint) follows the closed thinking",
    ]
    flagged = {line.split(": ")[1] for line in lines}
    assert flagged == {"mamo_easy-212 sample 0", "optmath-31 sample 0"}
    assert "or-view --check: 5 records, 2 with 8 findings" in result.stderr


def test_check_of_clean_records_exits_0(tmp_path):
    clean = [r for r in read_jsonl(CALM) if r["id"] in ("nl4opt-15", "nl4opt-72")]
    result = invoke(str(write_jsonl(tmp_path / "clean.jsonl", clean)), "--check")
    assert result.exit_code == 0 and result.stdout == ""


# -- the terminal view -----------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["mamo_easy-212", "nl4opt-72"])
def test_terminal_view_matches_golden(rid):
    """Regenerate with:
    uv run or-view tests/fixtures/view/calm.jsonl --id RID --sample 0 --width 100 --no-color \
      --no-pager > tests/golden/view_RID.txt"""
    result = invoke(
        str(CALM), "--id", rid, "--sample", "0", "--width", "100", "--no-color", "--no-pager"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (GOLDEN / f"view_{rid}.txt").read_text(encoding="utf-8")


def test_terminal_view_shows_cut_removed_text_hint_status_and_lint():
    result = invoke(str(CALM), "--id", "nl4opt-72", "--width", "120", "--no-color", "--no-pager")
    out = result.stdout
    assert "score: correct (predicted 14.0, reference 14, correct) · finish stop" in out
    assert " 1 intervener · trigger 5 flawed reasoning or modeling · 154 chars" in out
    assert "CALM round 1: trigger 5 flawed reasoning or modeling" in out
    assert "cut at character 144" in out
    assert 'v = pulp.LpVariable("vans", lowBound=0)' in out  # the continuous model it removed
    assert re.search(r" 3 executor · ok · 0\.\d\d s · \d+ chars", out)
    assert "```python  (continues below)" in out and "```python  (continued)" in out
    assert out.rstrip().endswith("lint: nothing found")


def test_colour_is_on_only_when_asked():
    plain = invoke(str(CALM), "--no-color", "--no-pager").stdout
    coloured = invoke(str(CALM), "--color", "--no-pager").stdout
    assert "\x1b[" not in plain and "\x1b[" in coloured


def test_tokens_per_segment_with_a_tokenizer():
    from or_common.tokens import count_tokens, load_tokenizer

    result = invoke(str(CALM), "--id", "nl4opt-15", "--tokens", QWEN, "--no-color", "--no-pager")
    record = next(r for r in read_jsonl(CALM) if r["id"] == "nl4opt-15")
    tok = load_tokenizer(QWEN, light=True)
    sizes = [count_tokens(tok, s["text"]) for s in record["flow"]]
    assert re.findall(r"· (\d+) tokens ", result.stdout) == [str(n) for n in sizes]


def test_missing_record_is_one_line_and_bad_lines_are_file_line(tmp_path):
    result = invoke(str(CALM), "--id", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: no record with id nope in {CALM}"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + CALM.read_text(encoding="utf-8"))
    result = invoke(str(bad), "--no-pager", "--no-color")
    assert result.exit_code == 1 and result.stdout.startswith("mamo_easy-212 · sample 0")
    assert result.stderr.startswith(f"{bad}:1: not valid JSON")


def test_reads_stdin():
    result = invoke("-", "--id", "nl4opt-8", "--no-pager", input=CALM.read_text(encoding="utf-8"))
    assert result.exit_code == 0 and result.stdout.startswith("nl4opt-8 · sample 0 · NL4Opt")


# -- the page's contents ---------------------------------------------------------------------------


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="or-view-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def test_page_is_self_contained_and_embeds_every_record(tmp_path):
    out = tmp_path / "view.html"
    result = invoke(str(BASE), str(CALM), "--label", "base", "--label", "CALM", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched
    assert "@import" not in text
    data = page_data(out)
    assert [r["label"] for r in data["runs"]] == ["base", "CALM"]
    assert len(data["records"]) == 10
    golden = next(r for r in data["records"] if r["run"] == 1 and r["row"]["id"] == "mamo_easy-212")
    assert golden["row"]["lint"] == ["think-twice", "hint-after-answer"]
    assert golden["rounds"][0]["removed"] == "The minimum total is \\boxed{150000 support points}."
    assert "CALM: 5 of 5 records" in result.stderr


def test_record_text_cannot_end_the_script_element(tmp_path):
    record = {
        "id": "x</script><script>alert(1)</script>",
        "sample": 0,
        "flow": [{"role": "reasoner", "text": "</script>"}],
    }
    out = tmp_path / "view.html"
    invoke(str(write_jsonl(tmp_path / "r.jsonl", [record])), "-o", str(out))
    data = page_data(out)
    assert data["records"][0]["row"]["id"] == record["id"]


def test_cap_keeps_the_first_records_and_every_failing_one(tmp_path):
    records = [
        {
            "id": f"p{i}",
            "sample": 0,
            "answer": 1,
            "score": {"correct": i % 3 != 2},
            "flow": [{"role": "reasoner", "text": "</think>\\boxed{1}"}],
        }
        for i in range(9)
    ]
    out = tmp_path / "view.html"
    result = invoke(
        str(write_jsonl(tmp_path / "r.jsonl", records)), "--max-records", "3", "-o", str(out)
    )
    ids = [r["row"]["id"] for r in page_data(out)["records"]]
    assert ids == ["p0", "p1", "p2", "p5", "p8"]
    assert "5 of 9 records (the first 3, then only failing ones: 2 more" in result.stderr


def test_parts_split_prose_and_blocks():
    split, left_open = parts("Think.\n```python\nx = 1\n```\nDone.\n```python\ny")
    assert [(p["kind"], p["lang"], p["text"], p.get("closed")) for p in split] == [
        ("prose", "", "Think.\n", None),
        ("block", "python", "x = 1\n", "yes"),
        ("prose", "", "Done.\n", None),
        ("block", "python", "y", "no"),
    ]
    assert left_open == "python"


def test_hints_are_matched_to_their_round():
    record = next(r for r in read_jsonl(CALM) if r["id"] == "optmath-31")
    hints = [s for s in segments(record) if s["role"] == "intervener"]
    assert [s["round"] for s in hints] == [0, 1, 2, 3, 4]


def test_rendering_a_record_imports_no_model_stack():
    """The terminal view and the page load in well under a second: no torch, no transformers
    (only --tokens with a tokenizer needing them would)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from or_view.cli import main\n"
        f"r = CliRunner().invoke(main, [{str(CALM)!r}, '--id', 'optmath-31', '--no-pager'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(main, [{str(CALM)!r}, '-o', sys.argv[1]])\n"
        "heavy = ('torch', 'transformers', 'matplotlib', 'litellm', 'openai', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "/dev/null"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
