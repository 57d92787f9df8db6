"""Write every tool's `--help` text into its page, so the pages cannot drift from the code.

Each page `docs/<tool>.md` holds, for the tool and each of its subcommands, a block

    <!-- help: or-score report -->
    ```text
    Usage: or-score report [OPTIONS] RUNS...
    ...
    ```
    <!-- /help -->

whose body is exactly what `or-score report --help` prints on an 80-column terminal.

    uv run python docs/generate.py            # rewrite every block (`just docs`)
    uv run python docs/generate.py --check    # exit 1 naming each stale, missing or unknown block

A command without a block gets one at the end of its page; a block naming no command is an error
(rename or delete it by hand). The tools are found from `[project.scripts]` in
`tools/*/pyproject.toml`; the help is rendered in this process with click's test runner.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: the terminal width the help is rendered for (click wraps at COLUMNS - 2)
COLUMNS = "80"
BLOCK = re.compile(
    r"<!-- help: (?P<name>[^>]*?) -->\n(?P<body>.*?)<!-- /help -->", re.DOTALL | re.MULTILINE
)


def tools() -> dict[str, click.Command]:
    """Every tool's entry point, by command name, from `tools/*/pyproject.toml`."""
    found: dict[str, click.Command] = {}
    for pyproject in sorted((ROOT / "tools").glob("*/pyproject.toml")):
        scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
        for name, target in scripts.items():
            module, _, attr = target.partition(":")
            found[name] = getattr(importlib.import_module(module), attr)
    return found


def commands(name: str, command: click.Command) -> Iterator[tuple[str, click.Command]]:
    """The tool and each of its subcommands, depth first, as (full name, command)."""
    yield name, command
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            yield from commands(f"{name} {sub_name}", sub)


def help_text(tool: click.Command, full_name: str) -> str:
    """What `FULL_NAME --help` prints on a terminal COLUMNS wide."""
    prog, *path = full_name.split()
    result = CliRunner().invoke(
        tool, [*path, "--help"], prog_name=prog, env={"COLUMNS": COLUMNS}, catch_exceptions=False
    )
    if result.exit_code != 0:
        raise SystemExit(f"{full_name} --help exited {result.exit_code}:\n{result.output}")
    return result.output.rstrip() + "\n"


def block(full_name: str, text: str) -> str:
    """The marked block for FULL_NAME: a fence longer than any backtick run in the help."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"<!-- help: {full_name} -->\n{fence}text\n{text}{fence}\n<!-- /help -->"


def expected() -> dict[str, dict[str, str]]:
    """page name (the tool) -> {full command name: its block}."""
    return {
        name: {full: block(full, help_text(tool, full)) for full, _ in commands(name, tool)}
        for name, tool in tools().items()
    }


def update(page: str, blocks: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """PAGE with every block rewritten and missing ones appended; what that changed (stale or
    missing blocks); and what it cannot fix (blocks naming no command)."""
    changed: list[str] = []
    unknown: list[str] = []
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"].strip()
        if name not in blocks:
            unknown.append(f"a block for `{name}`, which is not a command")
            return match[0]
        seen.add(name)
        if match[0] != blocks[name]:
            changed.append(f"the help of `{name}` is stale")
        return blocks[name]

    text = BLOCK.sub(replace, page)
    for name in blocks:
        if name not in seen:
            changed.append(f"no block for `{name}`")
            text = text.rstrip("\n") + f"\n\n### `{name}`\n\n{blocks[name]}\n"
    return text, changed, unknown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="Change nothing; exit 1 if any block is stale."
    )
    args = parser.parse_args(argv)
    stale = unfixable = 0
    for name, blocks in expected().items():
        path = DOCS / f"{name}.md"
        where = path.relative_to(ROOT)
        if not path.exists():
            if args.check:
                print(f"{where}: missing (every tool has a page)", file=sys.stderr)
                stale += 1
                continue
            path.write_text(f"# {name}\n\n## Command-line reference\n")
            print(f"{where}: written (add the tool's description above its help)", file=sys.stderr)
        page = path.read_text()
        text, changed, unknown = update(page, blocks)
        for problem in unknown + (changed if args.check else []):
            print(f"{where}: {problem}", file=sys.stderr)
        stale += len(changed)
        unfixable += len(unknown)
        if not args.check and text != page:
            path.write_text(text)
            print(f"{where}: {len(changed)} blocks written", file=sys.stderr)
    if args.check and stale:
        print("docs: run `uv run python docs/generate.py` (or `just docs`)", file=sys.stderr)
    return 1 if unfixable or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
