"""or_common: JSONL codec, resume repair, the stdout guard, records."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from or_common.jsonl import BadLine, decode, dumps, existing_keys, repair_tail
from or_common.records import (
    RecordError,
    check_trajectory,
    find_error,
    flow_text,
    record_key,
    set_error,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
@settings(max_examples=300)
def test_jsonl_codec_round_trips_any_object(record):
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record, one line
    assert decode(line, "f", 1) == record


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_decode_never_raises_anything_but_badline(raw):
    try:
        value = decode(raw + b"\n", "f.jsonl", 7)
    except BadLine as bad:
        assert str(bad).startswith("f.jsonl:7: ")
    else:
        assert isinstance(value, dict)


def test_repair_tail_cuts_only_an_incomplete_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "sa')
    assert "removed" in repair_tail(str(path))
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert repair_tail(str(path)) is None
    assert existing_keys(str(path)) == {("a", None), ("b", None)}
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "x": ')  # complete-looking but broken
    repair_tail(str(path))
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_repair_tail_on_a_single_long_partial_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "' + b"x" * 200_000)
    repair_tail(str(path))
    assert path.read_bytes() == b""


def test_stdout_guard_sends_library_prints_to_stderr():
    code = """
import os, sys
from or_common.guard import stdout_guard
with stdout_guard() as out:
    print("python print")
    os.write(1, b"c-level write\\n")
    out.write(b'{"id": 1}\\n')
print("after")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == '{"id": 1}\nafter\n'
    assert "python print" in result.stderr and "c-level write" in result.stderr


def test_records_helpers():
    rec = {
        "id": 3,
        "sample": 2,
        "flow": [{"role": "reasoner", "text": "a"}, {"role": "executor", "text": "b"}],
    }
    assert record_key(rec) == ("3", 2)
    assert flow_text(rec["flow"]) == "ab"
    check_trajectory(rec)
    with pytest.raises(RecordError, match=r"flow\[0\].role"):
        check_trajectory({"id": 1, "flow": [{"role": "user", "text": ""}]})
    assert find_error(rec) is None
    set_error(rec, "or-exec", "Timeout", "pool died")
    assert rec["exec"]["error"] == {"tool": "or-exec", "type": "Timeout", "message": "pool died"}
    assert find_error(rec)["tool"] == "or-exec"
