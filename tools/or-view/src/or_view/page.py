"""The static HTML page: one self-contained file (styles, script and data inline; no server, no
CDN, no network), built from one or more runs read as streams.

The cap: a run of hundreds of MB does not fit in a page a browser can open. Each run keeps its
first `max_records` records plus every failing one after them (wrong, failed with an error, or
caught by the lint); the page says how many it shows of how many it read."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import orjson
from or_common.flaws import TRIGGER_NAMES
from or_common.records import TOOL_VERSION

from .lint import RULES
from .model import Counter_, failing, view

DEFAULT_MAX_RECORDS = 2000


@dataclass
class RunViews:
    """The records of one run that the page shows, and how many it read."""

    label: str
    path: str
    max_records: int = DEFAULT_MAX_RECORDS
    read: int = 0
    beyond_cap: int = 0  # failing records kept after the first max_records
    views: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: dict[str, Any], count: Counter_ | None = None) -> None:
        self.read += 1
        v = view(record, count)
        if len(self.views) - self.beyond_cap < self.max_records:
            self.views.append(v)
        elif failing(v["row"]):
            self.beyond_cap += 1
            self.views.append(v)

    def caption(self) -> str:
        text = f"{self.label}: {len(self.views)} of {self.read} records"
        if self.read > len(self.views):
            text += (
                f" (the first {self.max_records}, then only failing ones:"
                f" {self.beyond_cap} more; --max-records to change)"
            )
        return text


def _asset(name: str) -> str:
    return files("or_view").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    # "<" only ever occurs inside JSON strings, where \u003c means the same: no "</script>" can
    # end the element early, whatever the records hold
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode().replace("<", "\\u003c")


def build_page(runs: Iterable[RunViews], title: str) -> str:
    """The whole HTML document."""
    runs = list(runs)
    data = {
        "runs": [{"label": r.label, "path": r.path, "read": r.read} for r in runs],
        "records": [{"run": i, **v} for i, r in enumerate(runs) for v in r.views],
        "rules": RULES,
        "triggers": TRIGGER_NAMES,
    }
    tags = [chr(65 + i % 26) + (str(i) if i >= 26 else "") + " = " for i in range(len(runs))]
    captions = " · ".join(
        html.escape((tag if len(runs) > 1 else "") + r.caption())
        for tag, r in zip(tags, runs, strict=True)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_asset("page.css")}</style></head>
<body>
<header><h1>{html.escape(title)}</h1>
<div class="runs">{captions} · or-view {TOOL_VERSION}</div></header>
<div class="controls">
<input type="search" id="search" placeholder="search id, problem, flow text" aria-label="search">
<label>benchmark <select id="benchmark"><option value="*">all</option></select></label>
<label>show <select id="show"><option value="all">all</option><option value="wrong">wrong</option>
<option value="correct">correct</option><option value="lint">lint findings</option>
<option value="error">errors</option><option value="differ">runs disagree</option></select></label>
<span id="count"></span></div>
<main><div id="table-wrap"><table><thead><tr id="head"></tr></thead><tbody id="rows"></tbody>
</table></div>
<section id="detail"><div class="empty">Click a record to see its flow.</div></section></main>
<script type="application/json" id="or-view-data">{_json_for_script(data)}</script>
<script>{_asset("page.js")}</script>
</body></html>
"""
