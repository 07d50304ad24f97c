"""Run the benchmarks: every ``benchmarks/bench_*.py``, or those named, and write their records.

    python benchmarks/run.py                 # everything this machine has (GPU records need CUDA)
    python benchmarks/run.py --cpu-only      # only what fits on a CPU, on the CPU
    python benchmarks/run.py --only cnn bert # some scripts (bench_cnn.py, bench_bert.py)
    python benchmarks/run.py --tiny --results /tmp/r   # seconds, small real subsets (tests)

Records go to ``benchmarks/results/<device>.json`` (``--results DIR`` for another folder), each
script's as soon as it finishes. A script that raises is reported and the others still run; the
exit status is then 1. A script is any ``bench_<name>.py`` in this folder with a function
``records(tiny: bool, cpu_only: bool) -> list[dict]`` (see README.md).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks import common  # noqa: E402


def discover() -> dict:
    """``{name: module name}`` of every ``bench_<name>.py`` here, in file-name order."""
    return {p.stem[len("bench_"):]: f"benchmarks.{p.stem}" for p in sorted(HERE.glob("bench_*.py"))}


def load(name: str):
    module = importlib.import_module(discover()[name])
    if not callable(getattr(module, "records", None)):
        raise TypeError(f"{module.__file__} has no records(tiny, cpu_only) function")
    return module


def all_goals() -> dict:
    """``{record name: Goal}`` declared by every script (``GOALS``), for the book's table, in the
    order of the scripts' ``ORDER`` (the chapter number; scripts without one come last)."""
    out = {}
    modules = sorted((load(name) for name in discover()), key=lambda m: getattr(m, "ORDER", 100))
    for module in modules:
        for name, goal in getattr(module, "GOALS", {}).items():
            if name in out:
                raise ValueError(f"goal {name!r} is declared by two scripts")
            out[name] = goal
    return out


def main(argv=None) -> int:
    scripts = discover()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-only", action="store_true",
                   help="only what fits on a CPU, on the CPU (skips GPU-only records)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(scripts),
                   help=f"run only these scripts: {', '.join(scripts)}")
    p.add_argument("--tiny", action="store_true", help="seconds, on small real subsets (needs --results)")
    p.add_argument("--results", type=Path, default=None,
                   help=f"results folder (default {common.RESULTS_DIR.relative_to(common.ROOT)})")
    args = p.parse_args(argv)
    if args.tiny and args.results is None:
        p.error("--tiny needs --results DIR: tiny records never go to the committed results")
    common.setup(args.cpu_only)
    common.watch_load()                             # so that a busy spell mid-run is noted too
    names = args.only or list(scripts)
    modules = {name: load(name) for name in names}  # import all first: later edits cannot leak in
    print(f"commit {common.git_commit()}, device {common.device_name()}", flush=True)
    failed, t_all = [], time.perf_counter()
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            recs = modules[name].records(tiny=args.tiny, cpu_only=args.cpu_only)
            paths = common.write(recs, args.results)
        except Exception:                       # one broken script must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            continue
        for r in recs:
            print(common.format_record(r), flush=True)
        print(f"   {time.perf_counter() - t0:.0f} s -> {', '.join(str(p) for p in paths)}", flush=True)
    print(f"total {time.perf_counter() - t_all:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
