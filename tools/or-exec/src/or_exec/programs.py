"""`or-exec run FILE.py…`: plain Python programs run in the sandbox, as `python FILE.py` would
run them, with data files beside them (`--file NAME=PATH`).

One program: its stdout and stderr pass through, a one-line summary goes to stderr, and the
exit status is the program's (1 for a timeout, memory or a kill). Several: one JSON record per
program on stdout ({"file", "status", "exit_code", "seconds", "stdout", "stderr"}) and a
summary by status on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from or_common.records import EXEC_STATUSES

from .limits import ExecResult, Limits


def looks_like_programs(paths: Sequence[str]) -> bool:
    """True when every input is a Python file (by its name)."""
    return bool(paths) and all(p.endswith(".py") for p in paths)


def not_jsonl_hint(path: str) -> str | None:
    """For an input that is neither JSONL nor named .py: what to do, when its first line shows
    it is a program rather than records."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                if line.startswith((b"{", b"[")):
                    return None
                return (
                    f"{path} is not JSONL records (its first line is not a JSON object): to run "
                    f"a Python program, name it *.py: or-exec run PROGRAM.py [--file NAME=PATH]"
                )
    except OSError:
        return None
    return None


def parse_files(specs: Sequence[str]) -> dict[str, bytes]:
    """`--file NAME=PATH` (or just PATH: its own name) -> {name: content}. ValueError if bad."""
    files = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name, spec
        try:
            files[name] = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"--file {spec}: {exc.strerror or exc}") from None
    return files


def summary(counts: Counter) -> str:
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in EXEC_STATUSES if counts[s]]
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(parts or ["none"])


def _record(path: str, result: ExecResult) -> dict[str, Any]:
    return {
        "file": path,
        "status": result.status,
        "exit_code": result.exit_code,
        "seconds": result.seconds,
        "stdout": result.stdout,
        "stderr": result.stderr,
        **({"message": result.message} if result.message else {}),
    }


async def run_programs(
    paths: Sequence[str], pool: Any, limits: Limits, files: dict[str, bytes]
) -> tuple[list[tuple[str, ExecResult]], Counter]:
    codes = []
    for path in paths:
        codes.append((path, Path(path).read_text(encoding="utf-8", errors="surrogateescape")))
    results = await asyncio.gather(*(pool.run(code, limits, files=files) for _, code in codes))
    return list(zip(paths, results, strict=True)), Counter(r.status for r in results)


def report(pairs: list[tuple[str, ExecResult]], counts: Counter) -> int:
    """Write the outputs (see the module docstring); the exit status."""
    if len(pairs) == 1:
        path, result = pairs[0]
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        why = f" ({result.message})" if result.message else ""
        print(f"or-exec: {path}: {result.status} in {result.seconds:.2f} s{why}", file=sys.stderr)
        if result.status in ("ok", "error") and result.exit_code is not None:
            return result.exit_code
        return 1
    for path, result in pairs:
        sys.stdout.buffer.write(orjson.dumps(_record(path, result)) + b"\n")
    sys.stdout.flush()
    print(f"or-exec: {summary(counts)}", file=sys.stderr)
    return 0 if counts["ok"] == len(pairs) else 1
