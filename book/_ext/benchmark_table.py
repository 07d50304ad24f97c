"""Sphinx extension: the ``{benchmark-results}`` directive renders ``benchmarks/results/*.json``.

The page is generated from the JSON files **at build time** (nothing typed): one section per
chapter (the ``ORDER`` of its ``benchmarks/bench_*.py`` scripts), each with a narrow table (record,
value, goal, met?) that fits a phone's column, then the details of each row as wrapped text
(dataset, unit, device, seconds, commit, note, literature). Rows are one per record of every
results file, then one per declared goal that no machine has measured yet; each row has a unique
id (``name``, then ``name@device`` or ``name@device#k`` where one name was measured on several
set-ups). Then the machines in words. The literature figures' ``{cite:p}`` keys resolve against
``book/references.bib``. The JSON files are registered as dependencies of the page.

:func:`table_rows` and :func:`render_markdown` are plain functions, tested in
``tests/test_benchmarks.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COLUMNS = ["record", "ours", "goal", "met?", "unit", "dataset", "device", "seconds", "commit", "note",
           "literature"]
# each chapter's table holds the numbers; the details of each row follow it as wrapped text
SUMMARY = ["id", "ours", "goal", "met?"]
DETAILS = ["unit", "dataset", "device", "seconds", "commit", "note", "literature"]
_MET = {True: "✓ met", False: "✗ missed", None: "—"}


def _goals():
    from benchmarks import run
    return run.all_goals()


def _goal_orders() -> dict:
    """``{record name: ORDER}`` of the script declaring it (the chapter number; 99 = whole course)."""
    from benchmarks import run
    out = {}
    for name in run.discover():
        module = run.load(name)
        for goal in getattr(module, "GOALS", {}):
            out[goal] = getattr(module, "ORDER", 100)
    return out


def chapter_titles() -> dict:
    """``{chapter number: title}`` from the first heading of each ``notebooks/NN_*.ipynb``."""
    import json
    import re
    titles = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            text = "".join(cell["source"]) if cell["cell_type"] == "markdown" else ""
            m = re.search(r"^# (.+)$", text, re.M)
            if m:
                titles[int(path.name[:2])] = m.group(1).strip()
                break
    return titles


def _records(results_dir=None):
    from benchmarks import common
    return common.load_all(results_dir)


def _fmt_value(value) -> str:
    if value is None:
        return "not measured"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.6g}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{value:.2e}"


def _fmt_goal(goal: str) -> str:
    return goal.replace(">=", "≥").replace("<=", "≤")


def table_rows(records: list | None = None, goals: dict | None = None, results_dir=None) -> list[dict]:
    """The rows of the page's table: one per record, then one per goal measured on no machine.

    Returns
    -------
    list of dict
        Keys: :data:`COLUMNS` (plain text, except ``literature`` which is MyST markdown) and
        ``measured`` (False for a goal no machine has measured).
    """
    records = _records(results_dir) if records is None else records
    goals = _goals() if goals is None else goals
    order = {name: i for i, name in enumerate(goals)}
    rows = []
    for r in sorted(records, key=lambda r: (order.get(r["name"], len(order)), r["name"], r["device"], r["dataset"])):
        g = goals.get(r["name"])
        met = _MET[r["met"]] if r["value"] is not None else "—"
        rows.append({"record": r["name"], "ours": _fmt_value(r["value"]), "goal": _fmt_goal(r["goal"]),
                     "met?": met if r["goal"] != "report" or r["value"] is None else "report",
                     "unit": r["unit"], "dataset": r["dataset"], "device": r["device"],
                     "seconds": "—" if r["seconds"] is None else f"{r['seconds']:,.1f}",
                     "commit": r["commit"], "note": r.get("note", ""),
                     "literature": g.reference if g else "", "measured": True})
    measured = {r["name"] for r in records}
    for row in rows:                                   # unique ids: name, name@device, name@device#k
        twins = [r for r in rows if r["record"] == row["record"]]
        if len(twins) == 1:
            row["id"] = row["record"]
        else:
            same = [r for r in twins if r["device"] == row["device"]]
            row["id"] = f"{row['record']}@{row['device']}" + (
                f"#{same.index(row) + 1}" if len(same) > 1 else "")
    for name, g in goals.items():
        if name not in measured:
            where = ("the GPU set, python benchmarks/run.py on a CUDA machine" if not g.cpu else
                     "python benchmarks/run.py --cpu-only")
            rows.append({"record": name, "ours": "not measured", "goal": _fmt_goal(g.goal), "met?": "—",
                         "unit": g.unit, "dataset": "—", "device": "—", "seconds": "—", "commit": "—",
                         "note": f"not measured on any machine yet: {where}",
                         "literature": g.reference, "measured": False, "id": name})
    return rows


def _cell(text: str) -> str:
    """Plain text made safe for a cell of a markdown pipe table."""
    out = " ".join(str(text).split())
    for ch in "\\`*_[]<>|$":
        out = out.replace(ch, "\\" + ch)
    return out or " "


def render_markdown(records: list | None = None, goals: dict | None = None, results_dir=None,
                    orders: dict | None = None, titles: dict | None = None) -> str:
    """The page's content in MyST markdown: per chapter a table of the numbers and the details of
    each row, then the machines in words. Every row of :func:`table_rows` appears once.
    """
    records = _records(results_dir) if records is None else records
    rows = table_rows(records, goals)
    orders = _goal_orders() if orders is None else orders
    titles = chapter_titles() if titles is None else titles
    groups: dict = {}
    for row in rows:
        order = orders.get(row["record"], 100)
        groups.setdefault(int(order) if order < 99 else 99, []).append(row)
    lines = []
    for chapter in sorted(groups):
        title = (f"Chapter {chapter}: {titles[chapter]}" if chapter in titles else
                 "The whole course" if chapter >= 99 else f"Chapter {chapter}")
        lines += ["", f"### {title}", "", "| " + " | ".join(SUMMARY) + " |", "|" + "---|" * len(SUMMARY)]
        for row in groups[chapter]:
            lines.append("| " + " | ".join([f"`{row['id']}`"] + [_cell(row[c]) for c in SUMMARY[1:]]) + " |")
        lines.append("")
        for row in groups[chapter]:
            details = "; ".join(f"{c}: {(' '.join(row[c].split()) if c == 'literature' else _cell(row[c]))}"
                                for c in DETAILS if str(row[c]).strip() not in ("", "—"))
            lines.append(f"- `{row['id']}`: {details}")
    machines = {}
    for r in records:
        machines.setdefault(r["device"], set()).add(r["machine"])
    lines += ["", "### Machines", ""]
    if not machines:
        lines.append("- none yet: no results file in `benchmarks/results/`.")
    for device, descr in sorted(machines.items()):
        lines.append(f"- **{_cell(device)}**: {_cell('; or '.join(sorted(descr)))}")
    return "\n".join(lines) + "\n"


def setup(app):
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class BenchmarkResults(SphinxDirective):
        has_content = False

        def run(self):
            from benchmarks import common

            for path in sorted(common.RESULTS_DIR.glob("*.json")):
                self.env.note_dependency(str(path))
            container = nodes.container(classes=["benchmark-results"])
            self.state.nested_parse(StringList(render_markdown().splitlines()), self.content_offset, container)
            return [container]

    app.add_directive("benchmark-results", BenchmarkResults)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
