"""Render the CALM funnel (Figure 5) as markdown from the `--stats` files that recipes/calm.sh
has or-intervene and or-filter write: the same lines each tool says on stderr.

    python recipes/render_funnel.py OUT/02-funnel.json OUT/03-funnel.json > OUT/funnel.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(paths: list[str]) -> str:
    from or_filter.cli import funnel_from_stats
    from or_intervene.calm import funnel_lines

    lines = ["# CALM funnel", "", "```"]
    for path in paths:
        stats = json.loads(Path(path).read_text())
        if stats["tool"] == "or-intervene":
            lines += funnel_lines(stats)
        elif stats["tool"] == "or-filter":
            lines += funnel_from_stats(stats).lines()
        else:
            raise SystemExit(f"{path}: not a funnel of or-intervene or or-filter")
    lines.append("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1:]))
