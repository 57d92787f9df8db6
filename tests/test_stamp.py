"""or_common.stamp: the recipes' stamp.json (`python -m or_common.stamp DIR KEY=VALUE...`, as
recipes/lib.sh calls it) and the provenance or-sft's and or-grpo's run.json share."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
from or_common import stamp as stampmod
from or_common.reasoner import PROMPT_VERSION
from or_common.records import TOOL_VERSION
from or_common.scoring import SCORING_VERSION

DATE = re.compile(r'"date": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"')


def run_stamp(cwd, *args: str) -> subprocess.CompletedProcess:
    """The module as lib.sh runs it, in `cwd` (not a git checkout: the commit is empty)."""
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
    return subprocess.run(
        [sys.executable, "-m", "or_common.stamp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def test_stamp_json_exactly(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a"}\n')
    done = run_stamp(tmp_path, "out/eval", "label=base", f"data={data}", "n=8", "flags=")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    text = (tmp_path / "out/eval/stamp.json").read_text()
    assert DATE.search(text), text
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert DATE.sub('"date": "D"', text) == (
        "{\n"
        '  "date": "D",\n'
        '  "git_commit": "",\n'
        f'  "tool_version": "{TOOL_VERSION}",\n'
        f'  "scoring_version": "{SCORING_VERSION}",\n'
        f'  "prompt_version": "{PROMPT_VERSION}",\n'
        '  "label": "base",\n'
        f'  "data": "{data}",\n'
        f'  "data_sha256": "{digest}",\n'
        '  "n": "8",\n'
        '  "flags": ""\n'
        "}\n"
    )


def test_finished_stages_of_another_run_are_refused(tmp_path):
    assert run_stamp(tmp_path, "out", "model=a", "n=2").returncode == 0
    # no finished stage yet: a new stamp replaces the old one
    assert run_stamp(tmp_path, "out", "model=b", "n=2").returncode == 0
    assert json.loads((tmp_path / "out/stamp.json").read_text())["model"] == "b"
    assert run_stamp(tmp_path, "out", "model=a", "n=2").returncode == 0
    first = (tmp_path / "out/stamp.json").read_text()
    (tmp_path / "out/.done-gen-base").touch()
    refused = run_stamp(tmp_path, "out", "model=a", "n=3", "extra=new")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "out holds finished stages of another run (n: 2 -> 3); "
        "give another OUT, or remove that folder to start over\n"
    )
    assert (tmp_path / "out/stamp.json").read_text() == first  # left as it was
    # the same values again (a resumed run): accepted, the date renewed
    assert run_stamp(tmp_path, "out", "model=a", "n=2").returncode == 0


def test_a_new_commit_or_release_is_the_same_run(tmp_path, monkeypatch):
    stampmod.write_stamp(tmp_path, ["model=a"])
    (tmp_path / ".done-gen").touch()
    monkeypatch.setattr(stampmod, "git_commit", lambda: "f" * 40)
    monkeypatch.setattr(stampmod, "TOOL_VERSION", "9.9.9")
    monkeypatch.setattr(stampmod, "SCORING_VERSION", "score-v9")
    again = stampmod.write_stamp(tmp_path, ["model=a"])
    assert again["git_commit"] == "f" * 40 and again["tool_version"] == "9.9.9"
    monkeypatch.setattr(stampmod, "PROMPT_VERSION", "reasoner-v9")  # another prompt: another run
    with pytest.raises(stampmod.StampConflict, match=r"prompt_version: .* -> reasoner-v9"):
        stampmod.write_stamp(tmp_path, ["model=a"])


def test_several_differences_are_listed_in_stamp_order(tmp_path):
    stampmod.write_stamp(tmp_path, ["model=a", "n=2", "protocol=strict"])
    (tmp_path / ".done-x").touch()
    with pytest.raises(stampmod.StampConflict) as err:
        stampmod.write_stamp(tmp_path, ["protocol=orlm", "model=b", "n=2"])
    assert "(protocol: strict -> orlm, model: a -> b)" in str(err.value)


def test_usage(tmp_path):
    done = run_stamp(tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m or_common.stamp")


def test_values_that_name_files(tmp_path):
    (tmp_path / "folder").mkdir()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))  # several read blocks
    got = stampmod.stamp([f"a={big}", f"b={tmp_path / 'folder'}", "c=-", "d=", "e=x=y"])
    assert got["a_sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert "b_sha256" not in got and "c_sha256" not in got and "d_sha256" not in got
    assert got["e"] == "x=y"  # split at the first =
    assert stampmod.sha256("-") is None


def test_run_json_provenance_keeps_the_tools_own_keys(monkeypatch):
    monkeypatch.setattr(stampmod, "git_commit", lambda: "abc")
    got = stampmod.stamped({"tool": "or-grpo", "prompt_version": "custom:p.txt", "settings": {}})
    assert list(got) == [
        "tool",
        "prompt_version",
        "settings",
        "date",
        "git_commit",
        "tool_version",
        "scoring_version",
    ]
    assert got["prompt_version"] == "custom:p.txt" and got["git_commit"] == "abc"


def test_run_json_provenance_claims_no_prompt_version():
    """A trainer's data may come from any prompt (or-gen --prompt): the shared provenance says
    only what this checkout knows; the tool adds a prompt version when it knows it."""
    got = stampmod.stamped({"tool": "or-sft"})
    assert list(got) == ["tool", "date", "git_commit", "tool_version", "scoring_version"]
    assert "prompt_version" not in stampmod.provenance()


def test_run_json_provenance_leaves_out_what_the_record_says_another_way():
    got = stampmod.stamped({"scoring": "strict (v)"}, leave_out=("scoring_version",))
    assert list(got) == ["scoring", "date", "git_commit", "tool_version"]


def test_the_recipes_stamp_keeps_the_fields_of_the_old_lib_sh_heredoc(tmp_path):
    """recipes/lib.sh's stamp wrote date, git_commit, tool_version, scoring_version and
    prompt_version (the built-in prompt's) before the KEY=VALUE pairs: still exactly those."""
    got = stampmod.stamp(["model=m"])
    assert list(got) == [
        "date",
        "git_commit",
        "tool_version",
        "scoring_version",
        "prompt_version",
        "model",
    ]
    assert got["prompt_version"] == PROMPT_VERSION
