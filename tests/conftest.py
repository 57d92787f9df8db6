"""pytest's shared fixtures, the repository paths and the tool runner; the rest that test modules
share (fakes, tiny models, a free port) is in helpers.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QWEN, ROOT, compose_verl_config, make_tokenizer

FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent

TOOLS = (
    "or-gen",
    "or-exec",
    "or-intervene",
    "or-filter",
    "or-annotate",
    "or-sft",
    "or-grpo",
    "or-score",
    "or-view",
)


def tool_path(name: str) -> str:
    return str(BIN / name)


def run_tool(
    name: str,
    *args: str,
    input: bytes | str | None = None,
    timeout: float = 120,
    env: dict | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run an installed `or-*` command as a user would, capturing stdout and stderr apart."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(
        [tool_path(name), *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def read_jsonl(data: bytes | str | Path) -> list[dict]:
    if isinstance(data, Path):
        data = data.read_bytes()
    if isinstance(data, bytes):
        data = data.decode()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def problems() -> list[dict]:
    """Six small OR problems written for these tests, answers computed with PuLP/CBC."""
    return read_jsonl(FIXTURES / "problems.jsonl")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny tokenizer with a Qwen3-style thinking chat template, saved to a directory."""
    path = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def tok():
    """The real Qwen3-4B-Thinking-2507 tokenizer (tests/fixtures/qwen3-tokenizer), once per module."""
    from or_common.tokens import load_tokenizer

    return load_tokenizer(QWEN)


@pytest.fixture(scope="module")
def verl_config():
    """verl's own ppo_trainer config composed with our overrides (needs the training stack)."""
    return compose_verl_config()


def shared_data_or_skip() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


#: The longest test files (seconds on 2 cores), run first: `just test` hands whole files to its
#: worker processes in collection order (pytest-xdist, --dist loadfile --no-loadscope-reorder),
#: and a long file handed out last keeps one worker busy while the others idle (3:08 -> 2:35).
#: Order within a file is kept.
LONGEST_FIRST = (
    "test_paper_recipes.py",  # ~52 s: recipes end to end, a tiny SFT
    "test_sft.py",  # ~48 s: real optimizer steps of a tiny Qwen3
    "test_baseline.py",  # ~37 s: every tool's shared CLI contract, kill-and-resume
    "test_exec.py",  # ~23 s
    "test_filter.py",  # ~18 s
    "test_intervene.py",  # ~17 s
    "test_gen.py",  # ~16 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
