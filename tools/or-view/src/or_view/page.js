// or-view's page: a sortable, filterable table of records and, for the one clicked, its flow
// segment by segment (one column per run when several runs hold the same problem and sample).
// Everything comes from the JSON embedded in the page; data is only ever inserted as text.
"use strict";
const DATA = JSON.parse(document.getElementById("or-view-data").textContent);
const RUNS = DATA.runs;
const el = (tag, attrs, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined)
    node.append(typeof kid === "string" ? document.createTextNode(kid) : kid);
  return node;
};

// one row per (id, sample), with the view of each run that has it
const byKey = new Map();
for (const rec of DATA.records) {
  const key = rec.row.id + "\u0000" + rec.row.sample;
  if (!byKey.has(key)) byKey.set(key, { key, id: rec.row.id, sample: rec.row.sample,
    benchmark: rec.row.benchmark, views: new Array(RUNS.length).fill(null), text: "" });
  const item = byKey.get(key);
  item.views[rec.run] = rec;
  if (!item.benchmark) item.benchmark = rec.row.benchmark;
  item.text += " " + rec.question + " " + rec.segments.map(
    (s) => s.parts.map((p) => p.text).join("")).join("");
}
const items = [...byKey.values()];
items.forEach((it) => { it.search = (it.id + " " + it.benchmark + it.text).toLowerCase(); });

const fmtExec = (e) => Object.entries(e).map(([k, n]) => k + " " + n).join(", ");
// with several runs, each run's columns carry a short tag (A, B, ...): the header names them
const TAGS = RUNS.map((_, r) => String.fromCharCode(65 + (r % 26)) + (r >= 26 ? String(r) : ""));
const PER_RUN = [
  ["score", (r) => r.correct === null || r.correct === undefined ? "" : r.correct ? "✓" : "✗",
    (r) => r.correct === true ? 1 : r.correct === false ? 0 : -1],
  ["reason", (r) => r.reason || ""], ["finish", (r) => r.finish || ""],
  ["executions", (r) => fmtExec(r.executions)], ["flaws", (r) => r.flaws.join(" ")],
  ["CALM", (r) => r.verdict ? r.verdict + " (" + r.rounds + ")" : "", (r) => r.rounds],
  ["tokens", (r) => r.tokens === null || r.tokens === undefined ? "" : String(r.tokens),
    (r) => r.tokens ?? -1],
  ["lint", (r) => r.lint.join(" "), (r) => r.lint.length],
];
const columns = [
  { name: "id", text: (it) => it.id, sort: (it) => it.id },
  { name: "benchmark", text: (it) => it.benchmark, sort: (it) => it.benchmark },
  { name: "sample", text: (it) => String(it.sample ?? ""), sort: (it) => it.sample ?? -1 },
];
RUNS.forEach((run, r) => PER_RUN.forEach(([name, text, sort], j) => columns.push({
  name: RUNS.length > 1 ? name + " " + TAGS[r] : name, run: r, first: j === 0,
  text: (it) => it.views[r] ? text(it.views[r].row) : "—",
  sort: (it) => it.views[r] ? (sort || text)(it.views[r].row) : -2,
  field: name,
})));

let sortCol = null, sortDir = 1, selected = null;
const tbody = document.getElementById("rows");
const head = document.getElementById("head");
columns.forEach((c, i) => {
  const th = el("th", { class: c.first ? "run-start" : "" }, c.name);
  th.addEventListener("click", () => {
    sortDir = sortCol === i ? -sortDir : 1; sortCol = i;
    head.querySelectorAll("th").forEach((h) => h.removeAttribute("data-dir"));
    th.setAttribute("data-dir", sortDir > 0 ? "asc" : "desc");
    draw();
  });
  head.append(th);
});

const benchSel = document.getElementById("benchmark");
[...new Set(items.map((it) => it.benchmark))].sort().forEach((b) =>
  benchSel.append(el("option", { value: b }, b || "(none)")));

function keep(it) {
  const q = document.getElementById("search").value.trim().toLowerCase();
  const bench = benchSel.value, show = document.getElementById("show").value;
  if (bench !== "*" && it.benchmark !== bench) return false;
  if (q && !it.search.includes(q)) return false;
  const rows = it.views.filter(Boolean).map((v) => v.row);
  if (show === "wrong") return rows.some((r) => r.correct === false);
  if (show === "correct") return rows.some((r) => r.correct === true);
  if (show === "lint") return rows.some((r) => r.lint.length > 0);
  if (show === "error") return rows.some((r) => r.error);
  if (show === "differ") return rows.length > 1 && new Set(rows.map((r) => r.correct)).size > 1;
  return true;
}

function draw() {
  let shown = items.filter(keep);
  if (sortCol !== null) {
    const f = columns[sortCol].sort;
    shown = shown.slice().sort((a, b) => {
      const x = f(a), y = f(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
  }
  tbody.replaceChildren(...shown.map((it) => {
    const tr = el("tr", { "data-key": it.key, class: it.key === selected ? "selected" : "" });
    for (const c of columns) {
      const td = el("td", { class: c.first ? "run-start" : "" });
      const value = c.text(it);
      if (c.field === "score") td.className += value === "✓" ? " yes" : value === "✗" ? " no" : "";
      if (c.field === "lint" && value && value !== "—")
        value.split(" ").forEach((code) => td.append(el("span", { class: "lint-tag" }, code)));
      else td.textContent = value;
      tr.append(td);
    }
    tr.addEventListener("click", () => select(it.key));
    return tr;
  }));
  document.getElementById("count").textContent =
    shown.length + " of " + items.length + " records shown";
}

const PY = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|\b(import|from|as|def|return|for|in|if|elif|else|while|print|lambda|and|or|not|None|True|False|with|class|try|except|range|len)\b|\b(\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b/g;
function highlight(pre, code) {
  let last = 0;
  for (const m of code.matchAll(PY)) {
    pre.append(code.slice(last, m.index));
    const cls = m[1] ? "com" : m[2] ? "str" : m[3] ? "kw" : "num";
    pre.append(el("span", { class: cls }, m[0]));
    last = m.index + m[0].length;
  }
  pre.append(code.slice(last));
}

function segmentNode(seg, rounds) {
  const bits = [seg.index + " " + seg.role];
  if (seg.status !== undefined) bits.push(seg.status);
  if (typeof seg.seconds === "number") bits.push(seg.seconds.toFixed(2) + " s");
  if (seg.role === "intervener") bits.push("trigger " + (seg.trigger ?? "?") + " " + (seg.trigger_name || ""));
  bits.push(seg.tokens !== null && seg.tokens !== undefined ? seg.tokens + " tokens" : seg.chars + " chars");
  const title = el("div", { class: "seg-title" }, bits.join(" · "));
  if (seg.status !== undefined && seg.status !== "ok") title.classList.add("status-bad");
  const node = el("div", { class: "seg role-" + seg.role, "data-role": seg.role }, title);
  if (seg.round !== undefined && rounds[seg.round]) node.append(roundNode(rounds[seg.round]));
  for (const part of seg.parts) {
    if (part.kind === "prose") { node.append(el("div", { class: "prose" }, part.text)); continue; }
    const pre = el("pre", { class: "block " + (part.lang === "output" ? "output" : "code") },
      el("span", { class: "lang" }, "```" + part.lang + (part.continued ? "  (continued)" : "") +
        (part.closed === "no" ? "  (never closed)" : part.closed === "continues" ? "  (continues below)" : "")));
    if (part.lang.startsWith("python")) highlight(pre, part.text); else pre.append(part.text);
    node.append(pre);
  }
  return node;
}

function roundNode(rd) {
  return el("div", { class: "round" },
    el("div", {}, "CALM round " + (rd.round + 1) + ": trigger " + rd.trigger + " " + rd.trigger_name +
      " · cut at character " + rd.at),
    el("div", {}, "removed:"),
    el("div", { class: "removed" }, rd.removed ?? "(not kept by this or-intervene version)"),
    el("div", {}, "inserted:"), el("div", { class: "hint" }, rd.hint ?? ""));
}

function runNode(v, r) {
  const col = el("div", { class: "run-col", "data-run": String(r) },
    el("h2", {}, (RUNS.length > 1 ? TAGS[r] + " · " : "") + RUNS[r].label));
  if (!v) { col.append(el("div", { class: "meta" }, "not in this run")); return col; }
  const row = v.row;
  const verdict = row.correct === null || row.correct === undefined ? "not scored"
    : row.correct ? "correct" : "wrong";
  col.append(el("div", { class: "meta" },
    verdict + (v.score.prediction !== undefined ? " (predicted " + v.score.prediction + ", reference " + row.answer + ")" : "") +
    (row.reason ? " · reason " + row.reason : "") + " · finish " + (row.finish || "?") +
    " · executions " + (fmtExec(row.executions) || "none") +
    (row.tokens !== null && row.tokens !== undefined ? " · " + row.tokens + " tokens" : "") +
    (row.verdict ? " · CALM " + row.verdict + ", " + row.rounds + " round(s)" : "") +
    (v.model ? " · " + v.model : "")));
  if (row.error) col.append(el("div", { class: "lint-list" }, "error: " + row.error));
  if (v.lint.length) col.append(el("ul", { class: "lint-list" },
    ...v.lint.map((f) => el("li", {}, "lint " + f.code + ": " + f.message))));
  const rounds = Object.fromEntries(v.rounds.map((rd) => [rd.round, rd]));
  const shown = new Set(v.segments.filter((s) => s.round !== undefined).map((s) => s.round));
  for (const seg of v.segments) col.append(segmentNode(seg, rounds));
  const gone = v.rounds.filter((rd) => !shown.has(rd.round));
  if (gone.length) col.append(el("div", { class: "meta" }, "earlier CALM rounds (their hints were cut later):"),
    ...gone.map(roundNode));
  return col;
}

function select(key) {
  selected = key;
  tbody.querySelectorAll("tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.key === key));
  const it = byKey.get(key);
  const detail = document.getElementById("detail");
  const question = it.views.find(Boolean).question;
  const side = el("div", { class: "runs-side" }, ...it.views.map(runNode));
  side.style.gridTemplateColumns = "repeat(" + RUNS.length + ", minmax(0, 1fr))";
  detail.replaceChildren(el("h2", {}, it.id + " · sample " + it.sample + (it.benchmark ? " · " + it.benchmark : "")),
    el("details", { class: "question" }, el("summary", {}, "problem"), el("pre", {}, question)), side);
  history.replaceState(null, "", "#" + encodeURIComponent(key));
}

for (const id of ["search", "benchmark", "show"])
  document.getElementById(id).addEventListener("input", draw);
draw();
const fromHash = decodeURIComponent(location.hash.slice(1));
if (byKey.has(fromHash)) select(fromHash);
