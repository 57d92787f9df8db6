"""One trajectory in the terminal, rendered with rich: a header (id, score and its reason, finish,
executions, tokens, CALM verdict), then each segment under a rule coloured by its role, code and
output blocks highlighted, each hint with the cut it made and the text that cut removed, and the
lint's findings at the end."""

from __future__ import annotations

from typing import Any

from or_common.records import SKIPPED
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text

ROLE_STYLE = {"reasoner": "bold blue", "executor": "bold yellow", "intervener": "bold magenta"}
STATUS_STYLE = {"ok": "green", SKIPPED: "dim"}  # anything else is a failure: red


def _size(seg: dict[str, Any]) -> str:
    if seg.get("tokens") is not None:
        return f"{seg['tokens']} tokens"
    return f"{seg['chars']} chars"


def _verdict(row: dict[str, Any]) -> str:
    if row["correct"] is None:
        return "[dim]not scored[/]"
    return "[green]correct[/]" if row["correct"] else "[red]wrong[/]"


def header(v: dict[str, Any]) -> list[RenderableType]:
    row = v["row"]
    title = f"[bold]{escape(row['id'])}[/] · sample {row['sample']}"
    if row["benchmark"]:
        title += f" · {escape(row['benchmark'])}"
    lines = [title]
    score = v["score"]
    verdict = _verdict(row)
    if score:
        verdict += f" (predicted {score.get('prediction')!s}, reference {row['answer']!s}"
        verdict += f", {escape(str(score.get('reason')))})" if score.get("reason") else ")"
    elif row["answer"] is not None:
        verdict += f" (reference {row['answer']!s})"
    execs = ", ".join(f"{k} {n}" for k, n in row["executions"].items()) or "none"
    lines.append(
        f"score: {verdict} · finish {row['finish'] or '?'} · executions: {execs}"
        + (f" · {row['tokens']} tokens" if row["tokens"] is not None else "")
    )
    if row["verdict"]:
        lines.append(f"CALM: {row['verdict']}, {row['rounds']} round(s)")
    if row["flaws"]:
        lines.append("flaws: " + ", ".join(str(t) for t in row["flaws"]))
    if row["error"]:
        lines.append(f"[red]error: {escape(row['error'])}[/]")
    return [Text.from_markup(line) for line in lines]


def _segment_title(seg: dict[str, Any]) -> Text:
    role = seg["role"]
    title = Text(f" {seg['index']} {role} ", style=ROLE_STYLE.get(role, "bold"))
    if "status" in seg:
        status = str(seg["status"])
        title.append(f"· {status} ", style=STATUS_STYLE.get(status, "red"))
    if isinstance(seg.get("seconds"), int | float):
        title.append(f"· {seg['seconds']:.2f} s ")
    if role == "intervener":
        title.append(f"· trigger {seg.get('trigger', '?')} {seg.get('trigger_name', '')} ")
    title.append(f"· {_size(seg)} ", style="dim")
    return title


def _parts(seg: dict[str, Any], code_theme: str) -> list[RenderableType]:
    out: list[RenderableType] = []
    for part in seg["parts"]:
        text = part["text"].rstrip("\n")
        if part["kind"] == "prose":
            out.append(Text(text, style="magenta" if seg["role"] == "intervener" else ""))
            continue
        lang = part["lang"] or "text"
        label = f"```{part['lang']}" + ("  (continued)" if part.get("continued") else "")
        label += {"no": "  (never closed)", "continues": "  (continues below)"}.get(
            part.get("closed", ""), ""
        )
        lexer = "python" if lang.startswith("python") else "text"
        out.append(
            Panel(
                Syntax(text, lexer, theme=code_theme, word_wrap=True, background_color="default"),
                title=label,
                title_align="left",
                border_style="yellow" if lang == "output" else "cyan",
            )
        )
    return out


def _round(rd: dict[str, Any]) -> RenderableType:
    removed = rd["removed"]
    body: list[RenderableType] = [
        Text(f"cut at character {rd['at']}; target: {rd['target']}", style="dim"),
        Text("removed:", style="bold red"),
        Text(removed if removed is not None else "(not kept by this or-intervene version)"),
        Text("inserted:", style="bold magenta"),
        Text(str(rd["hint"]), style="magenta"),
    ]
    return Panel(
        Group(*body),
        title=f"CALM round {rd['round'] + 1}: trigger {rd['trigger']} {rd['trigger_name']}",
        title_align="left",
        border_style="magenta",
    )


def render(v: dict[str, Any], console: Console, code_theme: str = "monokai") -> None:
    """Print one record's view (from `model.view`) to `console`."""
    for line in header(v):
        console.print(line)
    rounds = {rd["round"]: rd for rd in v["rounds"]}
    shown: set[int] = set()
    for seg in v["segments"]:
        console.print(Rule(_segment_title(seg), align="left", style=ROLE_STYLE.get(seg["role"])))  # type: ignore[arg-type]  # rich's Rule takes style=None (a plain rule) though typed str | Style
        if "round" in seg and seg["round"] in rounds:
            console.print(_round(rounds[seg["round"]]))
            shown.add(seg["round"])
        for item in _parts(seg, code_theme):
            console.print(item)
    gone = [rd for k, rd in rounds.items() if k not in shown]
    if gone:
        console.print(
            Rule(Text(" earlier CALM rounds (their hints were cut later) "), align="left")
        )
        for rd in gone:
            console.print(_round(rd))
    console.print(Rule(style="dim"))
    if v["lint"]:
        for f in v["lint"]:
            console.print(Text(f"lint {f['code']}: {f['message']}", style="bold red"))
    else:
        console.print(Text("lint: nothing found", style="dim"))
