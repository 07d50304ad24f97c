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


def pytest_sessionfinish(session, exitstatus):
    if not _runs:
        return
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    times_file = ROOT / "_build" / "notebook_times.json"
    times_file.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    cache = get_cache(str(CACHE))
    for path, run in _runs.items():
        nb = run["file"].nb
        n_code = sum(c.cell_type == "code" for c in nb.cells)
        seconds = run["stop"] - run["start"]
        rel = str(Path(path).resolve().relative_to(ROOT))
        times[rel] = {"seconds": round(seconds, 1), "passed": not run["failed"],
                      "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        if run["failed"] or run["cells"] != n_code:
            continue                         # never cache a partial or failed execution
        nbformat.validate(nb)
        cache.cache_notebook_bundle(CacheBundleIn(nb, Path(path).resolve(),
                                                  data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
    times_file.write_text(json.dumps(times, indent=1, sort_keys=True))
