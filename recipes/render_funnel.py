"""Render the CALM funnel (Figure 5) as markdown from the `--stats` files that recipes/calm.sh
(and the demo) have or-intervene and or-filter write: the same lines each tool says on stderr.

    python recipes/render_funnel.py OUT/02-funnel.json OUT/03-funnel.json > OUT/funnel.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def funnel(path: str | Path) -> list[str]:
    """The lines of one `--stats` file, as its tool said them on stderr."""
    from or_filter.cli import funnel_from_stats
    from or_intervene.calm import funnel_lines

    stats = json.loads(Path(path).read_text())
    if stats["tool"] == "or-intervene":
        return funnel_lines(stats)
    if stats["tool"] == "or-filter":
        return funnel_from_stats(stats).lines()
    raise SystemExit(f"{path}: not a funnel of or-intervene or or-filter")


def render(paths: list[str]) -> str:
    lines = ["# CALM funnel", "", "```"]
    for path in paths:
        lines += funnel(path)
    lines.append("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1:]))
