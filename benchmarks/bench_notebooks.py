"""Every chapter notebook executed by the book build with the ``ci`` profile on the CPU, as CI runs them.

Runs ``python -m course_lib.book build --fresh`` (the execution cache emptied, so every published
notebook runs) with ``COURSE_PROFILE=ci``, ``COURSE_DEVICE=cpu`` (and the offline settings of the
calling environment), then sums the per-notebook execution times that the build writes into
``_build/notebook_times.json``. Every notebook must have passed in this run. ``--tiny`` does not
execute anything: it sums the times already in ``_build/notebook_times.json`` (left by
``make book``), for the format test.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 99  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("notebooks_total_seconds_cpu", "<= 720", "s",
         "every chapter notebook, ci profile, executed by the book build on the CPU: sum of the "
         "per-notebook times"),
)
TIMES = common.ROOT / "_build" / "notebook_times.json"
BUDGET_PER_NOTEBOOK = 90


def notebook_paths() -> list[str]:
    return sorted(str(p.relative_to(common.ROOT)) for p in (common.ROOT / "notebooks").glob("[0-9]*.ipynb"))


def total_seconds(times: dict, notebooks: list[str], since: str | None = None) -> tuple[float, list[str]]:
    """Sum of ``times[nb]["seconds"]`` over ``notebooks``; also the problems (missing, failed, stale).

    Parameters
    ----------
    times : dict
        Content of ``_build/notebook_times.json``: ``{path: {"seconds", "passed", "when"}}``.
    notebooks : list of str
        Paths relative to the repository root.
    since : str, optional
        ``"YYYY-MM-DD HH:MM:SS"``: entries older than this are stale (not from this run).
    """
    total, problems = 0.0, []
    for nb in notebooks:
        entry = times.get(nb)
        if entry is None:
            problems.append(f"{nb}: no time recorded")
            continue
        if since is not None and entry["when"] < since:
            problems.append(f"{nb}: time is from an earlier run ({entry['when']})")
        if not entry["passed"]:
            problems.append(f"{nb}: failed")
        total += float(entry["seconds"])
    return total, problems


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    notebooks = notebook_paths()
    since = None
    wall = None
    if not tiny:
        env = dict(os.environ, COURSE_PROFILE="ci", COURSE_DEVICE="cpu")
        since = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        load_before = os.getloadavg()[0]
        with common.Timer() as t:
            proc = subprocess.run([sys.executable, "-m", "course_lib.book", "build", "--fresh"],
                                  cwd=common.ROOT, env=env, capture_output=True, text=True)
        wall = t.seconds
        load_after = os.getloadavg()[0]
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    total, problems = total_seconds(times, notebooks, since)
    slow = [f"{Path(nb).stem} {times[nb]['seconds']:.0f} s" for nb in notebooks
            if nb in times and times[nb]["seconds"] > BUDGET_PER_NOTEBOOK]
    notes = []
    if problems:
        notes.append("; ".join(problems))
    if slow:
        notes.append(f"over the {BUDGET_PER_NOTEBOOK} s per-notebook budget: {', '.join(slow)}")
    if not tiny:
        cores = common.cpu_count()
        per_nb = ", ".join(f"{Path(nb).stem} {times[nb]['seconds']:.0f} s" for nb in notebooks if nb in times)
        notes.append(f"{per_nb}; book build wall {wall:.0f} s; load average {load_before:.1f} before, "
                     f"{load_after:.1f} after, on {cores} cores")
        if max(load_before, load_after) > 1.25 * cores:
            notes.append("other jobs shared the CPU: times are inflated")
    else:
        notes.append("tiny: times read from an earlier build's _build/notebook_times.json, nothing executed")
    value = None if (problems and not tiny) or not times else total
    if value is None and not problems:
        notes.insert(0, "no notebook times found")
    # one dataset name for every run (the count is in the note): a newer run replaces the older record
    notes.insert(0, f"{len(notebooks)} notebooks")
    from course_lib import settings

    dataset = "every chapter notebook, ci profile" + (
        ", offline" if settings.offline() else "") + (
        " with the local data mirror" if settings.mirrors() else "")
    if tiny:
        dataset = "tiny: " + dataset
    return [common.record(GOALS["notebooks_total_seconds_cpu"], value, dataset=dataset, seconds=wall,
                          device="cpu", note=common.join_notes(*notes), tiny=tiny)]


if __name__ == "__main__":
    sys.exit(common.main(records))
