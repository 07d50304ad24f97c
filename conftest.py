"""Repository-wide pytest hooks.

One execution serves both the notebook check and the book: nbval executes every chapter notebook
(``pytest --nbval-lax notebooks``); these hooks collect the outputs nbval received for each cell
and, when every cell of a notebook passed, store the executed notebook in the book's
jupyter-cache (``_build/.jupyter_cache``). ``jupyter-book build`` (``execute_notebooks: cache``)
then finds it by the hash of its code and does not run it again. Wall times per notebook go to
``_build/notebook_times.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / "_build" / ".jupyter_cache"
_runs: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call" or not hasattr(item, "test_outputs") or not hasattr(item, "cell"):
        return
    report = outcome.get_result()
    nb_file = item.parent
    run = _runs.setdefault(str(nb_file.fspath), {"file": nb_file, "failed": False, "cells": 0,
                                                 "start": call.start, "stop": call.stop})
    run["stop"] = call.stop
    run["cells"] += 1
    run["failed"] |= report.failed or report.skipped
    outputs = item.test_outputs or []
    for out in outputs:                      # nbval keeps execution_count only on results
        if out.get("output_type") == "execute_result":
            out["execution_count"] = run["cells"]
    item.cell.outputs = outputs
    item.cell.execution_count = run["cells"]
    if run["cells"] == sum(c.cell_type == "code" for c in nb_file.nb.cells):
        _finish(str(nb_file.fspath), run)    # last cell: store now, before the book test runs


def _finish(path: str, run: dict) -> None:
    """Record the notebook's time; cache its outputs when every cell passed."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    seconds = run["stop"] - run["start"]
    times_file = ROOT / "_build" / "notebook_times.json"
    times_file.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    times[str(Path(path).resolve().relative_to(ROOT))] = {
        "seconds": round(seconds, 1), "passed": not run["failed"],
        "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    times_file.write_text(json.dumps(times, indent=1, sort_keys=True))
    if run["failed"]:
        return                               # never cache a failed execution
    nb = run["file"].nb
    nbformat.validate(nb)
    get_cache(str(CACHE)).cache_notebook_bundle(
        CacheBundleIn(nb, Path(path).resolve(), data={"execution_seconds": seconds}),
        check_validity=False, overwrite=True)
