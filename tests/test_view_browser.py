"""or-view's HTML page in a real headless Chromium (Debian's `chromium`, driven by playwright):
no console error, every record in the table, filtering, a click shows the flow, two runs side by
side. Screenshots are saved as artifacts under runs/test-artifacts/ (OR_VIEW_ARTIFACTS to move).

Without chromium or playwright the test skips, except in CI (CI=true), where it fails: CI
installs both (.ci/run, the dev group)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, ROOT
from or_view.cli import main

VIEW = FIXTURES / "view"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = "playwright" if sync_playwright is None else None if CHROMIUM else "chromium"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing in CI: the browser test must run there")
        pytest.skip(f"{missing} is not installed (apt-get install chromium; uv sync)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def artifacts() -> Path:
    path = Path(os.environ.get("OR_VIEW_ARTIFACTS", ROOT / "runs" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(browser, html: Path):
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith("file:") else errors.append(r.url))
    page.goto(html.as_uri())
    return page, errors


def test_page_in_chromium_table_filter_click_and_side_by_side(browser, tmp_path):
    html = tmp_path / "view.html"
    args = [
        str(VIEW / "base.jsonl"),
        str(VIEW / "calm.jsonl"),
        "--label",
        "base",
        "--label",
        "CALM",
    ]
    result = CliRunner().invoke(main, [*args, "-o", str(html)])
    assert result.exit_code == 0, result.stderr
    page, errors = open_page(browser, html)

    rows = page.locator("#rows tr")
    assert rows.count() == 5  # one row per (id, sample), both runs' columns in it
    ids = sorted(rows.nth(i).locator("td").first.inner_text() for i in range(5))
    assert ids == ["mamo_easy-212", "nl4opt-15", "nl4opt-72", "nl4opt-8", "optmath-31"]
    assert page.locator("#count").inner_text() == "5 of 5 records shown"

    page.select_option("#benchmark", "NL4Opt")
    assert rows.count() == 3
    page.select_option("#benchmark", "*")
    page.select_option("#show", "lint")
    lint_ids = sorted(rows.nth(i).locator("td").first.inner_text() for i in range(rows.count()))
    assert lint_ids == ["mamo_easy-212", "optmath-31"]
    page.select_option("#show", "all")
    page.fill("#search", "scooters")
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [
        "nl4opt-15"
    ]
    page.fill("#search", "")

    rows.filter(has_text="nl4opt-72").click()
    columns = page.locator("#detail .run-col")
    assert columns.count() == 2
    assert columns.nth(0).locator("h2").inner_text() == "A · base"
    assert columns.nth(1).locator("h2").inner_text() == "B · CALM"
    base_roles = columns.nth(0).locator(".seg").evaluate_all("ns => ns.map(n => n.dataset.role)")
    calm_roles = columns.nth(1).locator(".seg").evaluate_all("ns => ns.map(n => n.dataset.role)")
    assert base_roles == ["reasoner", "executor", "reasoner"]
    assert calm_roles == ["reasoner", "intervener", "reasoner", "executor", "reasoner"]
    round_box = columns.nth(1).locator(".round")
    assert "trigger 5 flawed reasoning or modeling" in round_box.inner_text()
    assert "lowBound=0)" in round_box.locator(".removed").inner_text()  # the cut-away model
    page.screenshot(path=str(artifacts() / "or-view-side-by-side.png"))

    rows.filter(has_text="mamo_easy-212").click()
    lint = page.locator("#detail .run-col").nth(1).locator(".lint-list li")
    assert lint.all_inner_texts() == [
        "lint think-twice: `</think>` appears 2 times",
        "lint hint-after-answer: segment 3 (hint) follows the closed thinking",
    ]

    page.locator("#head th", has_text="tokens B").click()  # sort ascending by tokens
    first = rows.first.locator("td").first.inner_text()
    page.locator("#head th", has_text="tokens B").click()  # and descending
    assert rows.first.locator("td").first.inner_text() != first
    page.screenshot(path=str(artifacts() / "or-view-table.png"), full_page=True)
    assert errors == []
