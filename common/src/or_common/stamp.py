"""Provenance stamps: what made an output (git commit, date, tool, scoring and prompt versions)
and from what (KEY=VALUE settings, with the sha256 of each value that names a file).

The recipes stamp their run folder with `python -m or_common.stamp DIR KEY=VALUE...`
(recipes/lib.sh `stamp`), which writes DIR/stamp.json and refuses a folder whose finished stages
(`.done-*`) were stamped with other values: a rerun must not reuse another run's results.
or-sft and or-grpo put the same `provenance()` fields in their run.json (`stamped`); the prompt
version is not one of them, since only the tool knows which prompt its data was made with.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from .jsonl import STDIN
from .reasoner import PROMPT_VERSION
from .records import TOOL_VERSION
from .scoring import SCORING_VERSION

STAMP_JSON = "stamp.json"
#: provenance that may change between the reruns of one run (a new commit, a new release)
#: without making its finished stages another run's
RERUN_MAY_CHANGE = ("date", "git_commit", "tool_version", "scoring_version")


class StampConflict(Exception):
    """The folder holds finished stages of a run stamped with other values."""


def git_commit() -> str:
    """HEAD of the git checkout in the working directory; empty outside one (or without git)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def provenance() -> dict[str, Any]:
    """The fields every stamp starts with, facts of this checkout whatever the data: date (UTC),
    git commit, tool and scoring versions."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "tool_version": TOOL_VERSION,
        "scoring_version": SCORING_VERSION,
    }


def stamped(record: dict[str, Any], leave_out: Collection[str] = ()) -> dict[str, Any]:
    """`record` followed by the provenance fields it does not set itself (its own win), but
    those in `leave_out` (a field the record already says another way). A prompt version is the
    tool's to give: only it knows what its data was made with."""
    extra = provenance().items()
    return {**record, **{k: v for k, v in extra if k not in record and k not in leave_out}}


def sha256(path: str | Path) -> str | None:
    """The file's sha256 (hex), read in blocks; None for stdin (`-`)."""
    if str(path) == STDIN:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp(pairs: Iterable[str]) -> dict[str, Any]:
    """provenance(), the built-in Reasoner prompt's version (the stamp.json of recipes/lib.sh
    has always held it) and each KEY=VALUE, in order; a VALUE that names a file adds
    KEY_sha256."""
    out = {**provenance(), "prompt_version": PROMPT_VERSION}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
        if value and Path(value).is_file():
            out[key + "_sha256"] = sha256(value)
    return out


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys both stamps set to different values, provenance a rerun may change aside."""
    return [k for k in new if k not in RERUN_MAY_CHANGE and k in old and old[k] != new[k]]


def write_stamp(directory: str | Path, pairs: Iterable[str]) -> dict[str, Any]:
    """Write DIRECTORY/stamp.json (made if missing) and return it. Raises StampConflict when
    the folder holds finished stages (.done-*) stamped with other values."""
    out = Path(directory)
    new = stamp(pairs)
    old_path = out / STAMP_JSON
    if old_path.exists() and any(out.glob(".done-*")):
        old = json.loads(old_path.read_text())
        keys = changed(old, new)
        if keys:
            differences = ", ".join(f"{k}: {old[k]} -> {new[k]}" for k in keys)
            raise StampConflict(
                f"{out} holds finished stages of another run ({differences}); "
                "give another OUT, or remove that folder to start over"
            )
    out.mkdir(parents=True, exist_ok=True)
    old_path.write_text(json.dumps(new, indent=2) + "\n")
    return new


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m or_common.stamp DIR KEY=VALUE...`: exit 1 with the reason on a conflict."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m or_common.stamp DIR [KEY=VALUE...]", file=sys.stderr)
        sys.exit(2)
    try:
        write_stamp(args[0], args[1:])
    except StampConflict as err:
        sys.exit(str(err))


if __name__ == "__main__":
    main()
