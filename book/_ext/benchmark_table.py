"""Sphinx extension: the ``{benchmark-results}`` directive renders ``benchmarks/results/*.json``.

The table is generated from the JSON files **at build time** (nothing typed): one row per record of
every results file, then one row per declared goal (``GOALS`` of the ``benchmarks/bench_*.py``
scripts) that no machine has measured yet, then the machines in words. Each row carries the
literature figure declared with the goal, whose ``{cite:p}`` keys resolve against
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
# the page shows two tables with one row per record each: the numbers, then what they were measured on
SUMMARY = ["record", "ours", "goal", "met?", "unit", "device", "seconds", "literature"]
DETAILS = ["record", "dataset", "commit", "note"]
_MET = {True: "✓ met", False: "✗ missed", None: "—"}


def _goals():
    from benchmarks import run
    return run.all_goals()


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
    for name, g in goals.items():
        if name not in measured:
            where = ("the GPU set, python benchmarks/run.py on a CUDA machine" if not g.cpu else
                     "python benchmarks/run.py --cpu-only")
            rows.append({"record": name, "ours": "not measured", "goal": _fmt_goal(g.goal), "met?": "—",
                         "unit": g.unit, "dataset": "—", "device": "—", "seconds": "—", "commit": "—",
                         "note": f"not measured on any machine yet: {where}",
                         "literature": g.reference, "measured": False})
    return rows


def _cell(text: str) -> str:
    """Plain text made safe for a cell of a markdown pipe table."""
    out = " ".join(str(text).split())
    for ch in "\\`*_[]<>|$":
        out = out.replace(ch, "\\" + ch)
    return out or " "


def render_markdown(records: list | None = None, goals: dict | None = None, results_dir=None) -> str:
    """The page's content in MyST markdown: the numbers, the details, then the machines in words.

    Both tables have one row per row of :func:`table_rows`, in the same order.
    """
    records = _records(results_dir) if records is None else records
    rows = table_rows(records, goals)
    lines = []
    for title, columns in (("", SUMMARY), ("What each record was measured on:", DETAILS)):
        if title:
            lines += ["", title, ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in rows:
            cells = [f"`{row['record']}`"] + [
                (" ".join(row[c].split()) or " ") if c == "literature" else _cell(row[c]) for c in columns[1:]]
            lines.append("| " + " | ".join(cells) + " |")
    machines = {}
    for r in records:
        machines.setdefault(r["device"], set()).add(r["machine"])
    lines += ["", "Machines:", ""]
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
