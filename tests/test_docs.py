"""The documentation cannot drift from the code.

- every command and subcommand of every tool (found from `[project.scripts]` in
  `tools/*/pyproject.toml`, walking the click groups) has a help text and an example: its `--help`
  epilog has an `Examples:` block with at least one command line that runs it;
- every example command line (those epilogs, and the shell blocks of README.md and docs/*.md)
  parses: each option it gives exists on the command it runs, with its value;
- the `--help` blocks of docs/<tool>.md are what the tools print (regenerate with `just docs`);
- every tool has a page the README links to, and the pages' relative links and anchors resolve;
- the code names they cite (`or_common.tokens.executor_ids`) are defined where they say.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest
from conftest import ROOT, TOOLS

DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
assert _spec and _spec.loader
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

ENTRY_POINTS = generate.tools()
COMMANDS = {
    full: command
    for name, tool in ENTRY_POINTS.items()
    for full, command in generate.commands(name, tool)
}
EXAMPLES_HEADER = "Examples:"
SEPARATORS = {"|", "||", "&&", "&", ";"}
REDIRECTS = {">", ">>", "<", ">&", "&>", "<<", "<<<"}
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}


def examples(command: click.Command) -> list[str]:
    """The command lines of a command's `Examples:` epilog block."""
    epilog = command.epilog or ""
    if EXAMPLES_HEADER not in epilog:
        return []
    block = epilog.split(EXAMPLES_HEADER, 1)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def stages(line: str) -> list[list[str]]:
    """The simple commands of a shell line, without redirections, leading `VAR=value`
    assignments and a leading `uv run`."""
    line = re.sub(r"\$\([^)]*\)", "X", line)  # a command substitution is one word
    line = re.sub(r"(?<![\w-])\d+(?=[<>])", "", line)  # the fd of `2> FILE`
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    found: list[list[str]] = [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in SEPARATORS:
            found.append([])
        elif word in REDIRECTS:
            skip = True
        elif word not in ("(", ")"):
            found[-1].append(word)
    out = []
    for stage in found:
        while stage and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", stage[0]):
            stage = stage[1:]
        if stage[:2] == ["uv", "run"]:
            stage = stage[2:]
        if stage:
            out.append(stage)
    return out


def resolve(words: list[str]) -> tuple[str, click.Command, list[str]] | None:
    """(full command name, command, its arguments) that WORDS run, or None for another program."""
    if not words or words[0] not in ENTRY_POINTS:
        return None
    full, command, args = words[0], ENTRY_POINTS[words[0]], words[1:]
    while isinstance(command, click.Group):
        if args and args[0] in command.commands:
            full, command, args = f"{full} {args[0]}", command.commands[args[0]], args[1:]
        elif getattr(command, "default", None) and not (args and args[0] in ("--help", "-h")):
            name = command.default  # an or_common.cli.DefaultGroup
            full, command = f"{full} {name}", command.commands[name]
        else:
            break
    return full, command, args


def parse_error(words: list[str]) -> str | None:
    """Why WORDS would not parse (an unknown option, an option without its value, a value its
    type refuses, an argument too many), or None. Paths are not checked for existence, and
    values holding a shell variable or an ellipsis are left alone."""
    target = resolve(words)
    assert target is not None, words
    full, command, args = target
    if "--help" in args or "-h" in args:
        return None
    ctx = click.Context(command, info_name=full)
    try:
        opts, extra, _ = command.make_parser(ctx).parse_args(list(args))
    except click.UsageError as exc:
        return exc.format_message()
    settings = command.context_settings or {}
    if (
        extra
        and not isinstance(command, click.Group)
        and not settings.get("ignore_unknown_options")
    ):
        return f"unexpected arguments {extra}"
    for param in command.params:
        raw = opts.get(param.name)
        if raw is None or param.nargs != 1 or isinstance(param.type, (click.Path, click.File)):
            continue
        for value in raw if isinstance(raw, (list, tuple)) else [raw]:
            if not isinstance(value, str) or any(m in value for m in ("$", "…", "...")):
                continue
            try:
                param.type.convert(value, param, ctx)
            except click.BadParameter as exc:
                return f"{param.opts[0] if param.opts else param.name}: {exc.format_message()}"
    return None


def runs(line: str, full: str) -> bool:
    """Whether LINE runs FULL (or, for a group, one of its subcommands)."""
    for stage in stages(line):
        target = resolve(stage)
        if target and (target[0] == full or target[0].startswith(full + " ")):
            return True
    return False


@pytest.mark.parametrize("full", sorted(COMMANDS))
def test_every_command_has_help_and_an_example(full):
    command = COMMANDS[full]
    assert (command.help or "").strip(), f"{full}: no help text (its docstring)"
    lines = examples(command)
    assert lines, f"{full}: no `Examples:` block in its epilog (or_common.cli.epilog)"
    assert any(runs(line, full) for line in lines), f"{full}: no example runs it: {lines}"


def test_every_tool_is_found_from_its_entry_point():
    assert sorted(ENTRY_POINTS) == sorted(TOOLS)


def doc_command_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command line) of the shell blocks of a markdown file: the `$ ` lines of a
    block that has prompts, else every line; continuation lines joined; --help blocks left out."""
    text = generate.BLOCK.sub(lambda m: "\n" * m[0].count("\n"), path.read_text())
    found: list[tuple[int, str]] = []
    block: list[tuple[int, str]] | None = None
    fence, shell = "", False
    for number, line in enumerate(text.splitlines(), 1):
        if block is None:
            opening = re.match(r"^(`{3,})(\S*)\s*$", line)
            if opening:
                fence, shell, block = opening[1], opening[2] in SHELL_LANGUAGES, []
        elif line.strip() == fence:
            if shell:
                found.extend(shell_lines(block))
            block = None
        else:
            block.append((number, line))
    return found


def shell_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    prompted = any(line.startswith("$ ") for _, line in block)
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in block:
        if pending is not None:
            start, text = pending
            text = text[:-1] + " " + line.strip()
        elif prompted and not line.startswith("$ "):
            continue
        else:
            start, text = number, line[2:] if prompted else line
        if text.rstrip().endswith("\\"):
            pending = (start, text.rstrip())
        else:
            pending = None
            out.append((start, text))
    return out


def all_example_lines() -> list[tuple[str, str]]:
    """(where, command line) of every example: the epilogs, README.md and docs/*.md."""
    found = [
        (f"{full} --help", line) for full, command in COMMANDS.items() for line in examples(command)
    ]
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        found += [(f"{path.relative_to(ROOT)}:{n}", line) for n, line in doc_command_lines(path)]
    return found


def test_every_example_uses_options_its_command_has():
    bad = []
    checked = 0
    for where, line in all_example_lines():
        try:
            parts = stages(line)
        except ValueError as exc:  # an unclosed quote: not a shell line unless it runs a tool
            if re.search(r"(^|[\s|])or-[a-z]+\s", line):
                bad.append(f"{where}: `{line}`: {exc}")
            continue
        for stage in parts:
            if resolve(stage) is None:
                continue
            checked += 1
            error = parse_error(stage)
            if error:
                bad.append(f"{where}: `{' '.join(stage)}`: {error}")
    assert checked > 50  # the scan found the examples
    assert not bad, "\n".join(bad)


def test_the_help_blocks_are_current(capsys):
    status = generate.main(["--check"])
    assert status == 0, capsys.readouterr().err


def test_every_tool_has_a_page_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for tool in TOOLS:
        assert (DOCS / f"{tool}.md").exists(), tool
        assert f"(docs/{tool}.md)" in readme, tool


def anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_and_anchors_resolve():
    bad = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = generate.BLOCK.sub("", page.read_text())
        text = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.DOTALL | re.MULTILINE)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, mailto:
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}: no such file")
                continue
            if fragment and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", file.read_text(), flags=re.MULTILINE)
                if fragment not in {anchor(h) for h in headings}:
                    bad.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "or-score report a.jsonl --format markdown > t.md",
            [["or-score", "report", "a.jsonl", "--format", "markdown"]],
        ),
        (
            "OR_EXEC_TOKEN=$(openssl rand -hex 16) or-exec serve --workers 64",
            [["or-exec", "serve", "--workers", "64"]],
        ),
        (
            "uv run or-gen --model m < in.jsonl 2> log | jq '.a | .b'",
            [["or-gen", "--model", "m"], ["jq", ".a | .b"]],
        ),
        (
            "or-view x.jsonl --check || echo 'bad'  # the lint",
            [["or-view", "x.jsonl", "--check"], ["echo", "bad"]],
        ),
    ],
)
def test_stages_of_a_shell_line(line, expected):
    assert stages(line) == expected


def test_a_wrong_option_in_an_example_is_caught():
    assert parse_error(["or-score", "report", "a.jsonl", "--no-such-flag"])
    assert parse_error(["or-score", "report", "a.jsonl", "--format"])  # a value is missing
    assert parse_error(["or-exec", "doctor", "extra"])
    assert parse_error(["or-score", "report", "a.jsonl", "--format", "html"])  # not a choice
    assert parse_error(["or-score", "run.jsonl", "--protocol", "orlm:x"])
    assert parse_error(["or-score", "run.jsonl", "--protocol", "orlm"]) is None
    assert resolve(["or-score", "run.jsonl"])[0] == "or-score score"
    assert resolve(["or-exec", "solvers"])[0] == "or-exec solvers"


def defined(path: Path, name: str) -> bool:
    """Whether the module at PATH defines NAME at its top level (read, not imported: some pull
    in torch or verl)."""
    pattern = rf"^(?:async def|def|class) {name}\b|^{name}\s*[:=]|^from \S+ import .*\b{name}\b"
    return re.search(pattern, path.read_text(), flags=re.MULTILINE) is not None


def module_file(dotted: str) -> Path | None:
    """The source of a workspace module (`or_common.tokens`), or None."""
    top, *rest = dotted.split(".")
    for src in [ROOT / "common" / "src", *sorted((ROOT / "tools").glob("*/src"))]:
        base = src.joinpath(top, *rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.exists():
                return candidate
    return None


def test_code_names_in_the_docs_exist():
    """`or_common.tokens.executor_ids` and the like, as the docs name them, are in the code."""
    bad = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for dotted in set(re.findall(r"`(?:python -m )?(or_[a-z_]+(?:\.\w+)+)", page.read_text())):
            parts = dotted.split(".")
            cut = next((i for i in range(len(parts), 0, -1) if module_file(".".join(parts[:i]))), 0)
            module = module_file(".".join(parts[:cut])) if cut else None
            if module is None or (cut < len(parts) and not defined(module, parts[cut])):
                bad.append(f"{page.relative_to(ROOT)}: `{dotted}`")
    assert not bad, "\n".join(bad)
