"""What every benchmark script shares: goals, the record format, its validator, and the results files.

A **record** is one measured number, stored as a JSON object in ``benchmarks/results/<device>.json``
(a list of records)::

    {"name": "mnist5k_cnn_test_acc", "value": 0.9871, "goal": ">= 0.985", "met": true,
     "unit": "accuracy", "dataset": "...", "device": "cpu-2core", "machine": "...",
     "seconds": 84.2, "commit": "9336a00c1d2e", "when": "2026-11-23T21:04:05",
     "note": "..."}                       # note: required where the goal is missed or value is null

- ``goal`` is ``">= X"``, ``"<= X"`` or ``"report"`` (a number shown without a target);
- ``met`` is computed from ``value`` and ``goal`` (null for ``report`` and for a null ``value``);
- ``value`` is null only when the measurement could not be made (e.g. full MNIST unreachable
  offline), and then ``note`` says why;
- ``seconds`` is the wall time of the measured work (training, fitting), null when not meaningful;
- ``device`` names the results file: ``cpu-<N>core`` or ``cuda-<GPU name>``; ``machine`` describes
  it in words (CPU model, cores, torch version);
- ``tiny`` (true) marks a record made by ``--tiny`` (a few seconds on small real subsets, for the
  unit tests): such records are refused by :func:`write` for the committed results folder.

:func:`write` replaces an older record of the same ``name`` and ``dataset`` and writes the file
atomically (temporary file, then ``os.replace``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path and (ROOT / "src").is_dir():   # this checkout's course_lib
    sys.path.insert(0, str(ROOT / "src"))
RESULTS_DIR = ROOT / "benchmarks" / "results"
REQUIRED = {"name": str, "value": (int, float, type(None)), "goal": str, "met": (bool, type(None)),
            "unit": str, "dataset": str, "device": str, "machine": str,
            "seconds": (int, float, type(None)), "commit": str, "when": str}
OPTIONAL = {"note": str, "tiny": bool}
_GOAL_RE = re.compile(r"^(>=|<=) (-?\d+(?:\.\d+)?(?:e-?\d+)?)$")
_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_DEVICE_RE = re.compile(r"^(cpu-\d+core|cuda-[A-Za-z0-9_.-]+|mps)$")


@dataclass(frozen=True)
class Goal:
    """A record a script produces: its name, target, unit, and the literature figure beside it.

    Attributes
    ----------
    name : str
        Record name (lower case, digits, ``_``).
    goal : str
        ``">= X"``, ``"<= X"`` or ``"report"``.
    unit : str
    about : str
        One line: what is measured (shown on the book's benchmark page).
    cpu : bool
        True when the ``--cpu-only`` set measures it; False for GPU-only records.
    reference : str
        The figure from the literature to compare with, in MyST markdown with ``{cite:p}`` keys
        of ``book/references.bib`` (empty: none applies).
    """

    name: str
    goal: str
    unit: str
    about: str
    cpu: bool = True
    reference: str = ""

    def __post_init__(self):
        if not _NAME_RE.match(self.name):
            raise ValueError(f"goal name {self.name!r}: use lower case letters, digits and _.")
        parse_goal(self.goal)


def goals(*items: Goal) -> dict[str, Goal]:
    """``{name: Goal}`` of a script, rejecting duplicate names."""
    out = {}
    for g in items:
        if g.name in out:
            raise ValueError(f"goal {g.name!r} is declared twice")
        out[g.name] = g
    return out


def parse_goal(goal: str) -> tuple[str, float | None]:
    """``">= 0.985"`` -> ``(">=", 0.985)``; ``"report"`` -> ``("report", None)``."""
    if goal == "report":
        return "report", None
    m = _GOAL_RE.match(goal) if isinstance(goal, str) else None
    if not m:
        raise ValueError(f"goal {goal!r} must be '>= X', '<= X' or 'report'")
    return m.group(1), float(m.group(2))


def goal_met(value, goal: str) -> bool | None:
    """Whether ``value`` meets ``goal``: True/False, or None for ``report`` or a missing value."""
    op, target = parse_goal(goal)
    if op == "report" or value is None:
        return None
    return bool(value >= target) if op == ">=" else bool(value <= target)


# --------------------------------------------------------------------------- machine and commit
def device_name(device=None) -> str:
    """``cpu-<N>core`` (N = usable cores), ``cuda-<GPU name>`` or ``mps`` for a torch device."""
    import torch

    from course_lib.device import get_device

    dev = get_device(device)
    if dev.type == "cuda":
        return "cuda-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", torch.cuda.get_device_name(dev)).strip("-")
    if dev.type == "mps":
        return "mps"
    return f"cpu-{cpu_count()}core"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device=None) -> str:
    """The machine in words: CPU model and cores (and the GPU), Python and torch versions."""
    import torch

    from course_lib.device import get_device

    dev = get_device(device)
    text = f"{_cpu_model()}, {cpu_count()} cores"
    if dev.type == "cuda":
        text = f"{torch.cuda.get_device_name(dev)} GPU; {text}"
    return f"{text}; Python {platform.python_version()}, torch {torch.__version__}"


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when the measured code (src, benchmarks, notebooks)
    differs from it; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "benchmarks", "notebooks",
                                ":(exclude)benchmarks/results"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


_peak_load = [0.0]                  # the highest 1-minute load average seen by the monitor


def watch_load(every: float = 20.0) -> None:
    """Sample the 1-minute load average every ``every`` seconds for the rest of the process (a
    daemon thread), so that :func:`load_note` sees other jobs that shared the machine during a
    long run, not only at its end. ``run.py`` starts it; a script run alone reads the end only."""
    import threading

    def sample():
        while True:
            try:
                _peak_load[0] = max(_peak_load[0], os.getloadavg()[0])
            except OSError:
                return
            time.sleep(every)

    threading.Thread(target=sample, name="load-monitor", daemon=True).start()


def load_note() -> str:
    """A note on the machine's load against the cores, for timed records: the highest 1-minute
    load average seen while the benchmarks ran (:func:`watch_load`), or the current one."""
    try:
        load = max(os.getloadavg()[0], _peak_load[0])
    except OSError:
        return ""
    cores = cpu_count()
    if load > 1.25 * cores:
        return f"machine busy: load average up to {load:.1f} on {cores} cores (other jobs ran), times are inflated"
    return ""


# --------------------------------------------------------------------------- records
def record(goal: Goal, value, *, dataset: str, seconds: float | None = None, note: str | None = None,
           device=None, tiny: bool = False) -> dict:
    """Build and validate one record for ``goal``.

    A missed goal gets the note ``goal missed: <value> vs <goal>`` (followed by ``note``); a null
    value needs a ``note`` saying why.
    """
    if value is not None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{goal.name}: value {value!r} is not finite")
        value = round(value, 6) if abs(value) >= 1e-3 else float(f"{value:.4g}")
    met = goal_met(value, goal.goal)
    notes = []
    if met is False:
        notes.append(f"goal missed: {value:g} vs {goal.goal}")
    if note:
        notes.append(note)
    rec = {"name": goal.name, "value": value, "goal": goal.goal, "met": met, "unit": goal.unit,
           "dataset": dataset, "device": device_name(device), "machine": machine_description(device),
           "seconds": None if seconds is None else round(float(seconds), 2), "commit": git_commit(),
           "when": _dt.datetime.now().isoformat(timespec="seconds")}
    if notes:
        rec["note"] = "; ".join(notes)
    if tiny:
        rec["tiny"] = True
    validate(rec)
    return rec


def validate(rec: dict) -> dict:
    """Check one record against the format above; raise ``ValueError`` listing every problem."""
    problems = []
    if not isinstance(rec, dict):
        raise ValueError(f"a record must be a JSON object, got {type(rec).__name__}")
    for key, types in REQUIRED.items():
        if key not in rec:
            problems.append(f"missing field {key!r}")
        elif not isinstance(rec[key], types) or (isinstance(rec[key], bool) and bool not in
                                                  (types if isinstance(types, tuple) else (types,))):
            problems.append(f"{key}={rec[key]!r} has the wrong type")
    for key, types in OPTIONAL.items():
        if key in rec and not isinstance(rec[key], types):
            problems.append(f"{key}={rec[key]!r} has the wrong type")
    extra = set(rec) - set(REQUIRED) - set(OPTIONAL)
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    if problems:
        raise ValueError(f"record {rec.get('name')!r}: " + "; ".join(problems))
    if not _NAME_RE.match(rec["name"]):
        problems.append("name must be lower case letters, digits and _")
    try:
        expected = goal_met(rec["value"], rec["goal"])
    except ValueError as e:
        problems.append(str(e))
    else:
        if rec["met"] is not expected:
            problems.append(f"met={rec['met']} but value {rec['value']} and goal {rec['goal']!r} give {expected}")
    if isinstance(rec["value"], float) and not math.isfinite(rec["value"]):
        problems.append("value must be finite")
    if (rec["met"] is False or rec["value"] is None) and not rec.get("note", "").strip():
        problems.append("a missed goal or a null value needs a note saying so")
    if not _DEVICE_RE.match(rec["device"]):
        problems.append(f"device {rec['device']!r} is not cpu-<N>core, cuda-<name> or mps")
    if rec["seconds"] is not None and rec["seconds"] < 0:
        problems.append("seconds must be >= 0")
    if not rec["commit"] or not re.match(r"^([0-9a-f]{7,40}(\+dirty)?|unknown)$", rec["commit"]):
        problems.append(f"commit {rec['commit']!r} is not a git hash")
    if not rec["dataset"].strip() or not rec["unit"].strip():
        problems.append("dataset and unit must not be empty")
    try:
        _dt.datetime.fromisoformat(rec["when"])
    except ValueError:
        problems.append(f"when={rec['when']!r} is not an ISO date")
    if problems:
        raise ValueError(f"record {rec['name']!r}: " + "; ".join(problems))
    return rec


def validate_run(records: list) -> list:
    """Validate every record of one run, and that no (name, dataset) pair appears twice."""
    seen = set()
    for rec in records:
        validate(rec)
        key = (rec["name"], rec["dataset"])
        if key in seen:
            raise ValueError(f"record {rec['name']!r} on {rec['dataset']!r} appears twice in one run")
        seen.add(key)
    return records


# --------------------------------------------------------------------------- results files
def results_file(device: str, results_dir: Path | str | None = None) -> Path:
    return Path(results_dir or RESULTS_DIR) / f"{device}.json"


def read_results(path: Path | str) -> list:
    """Records of one results file, validated."""
    records = json.loads(Path(path).read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    for rec in records:
        validate(rec)
    return records


def load_all(results_dir: Path | str | None = None) -> list:
    """Every record of every ``*.json`` file in the results folder, sorted by device then name."""
    folder = Path(results_dir or RESULTS_DIR)
    out = [r for p in sorted(folder.glob("*.json")) for r in read_results(p)]
    return out


def write(records: list, results_dir: Path | str | None = None) -> list[Path]:
    """Add ``records`` to ``<results_dir>/<device>.json``, replacing any older record of the same
    name and dataset; atomic per file. Tiny records never go to the committed folder."""
    validate_run(records)
    folder = Path(results_dir or RESULTS_DIR).resolve()
    if folder == RESULTS_DIR.resolve() and any(r.get("tiny") for r in records):
        raise ValueError("--tiny records are for tests: give --results DIR, never the committed "
                         f"folder {RESULTS_DIR}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for device in sorted({r["device"] for r in records}):
        path = results_file(device, folder)
        old = read_results(path) if path.exists() else []
        new = [r for r in records if r["device"] == device]
        keys = {(r["name"], r["dataset"]) for r in new}
        merged = [r for r in old if (r["name"], r["dataset"]) not in keys] + new
        merged.sort(key=lambda r: (r["name"], r["dataset"]))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{device}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(merged, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------- running
def setup(cpu_only: bool) -> None:
    """Environment of a benchmark run: the ``full`` profile, the CPU when ``cpu_only``, and the
    offline switches of Hugging Face when ``COURSE_OFFLINE`` is on (:mod:`course_lib.settings`)."""
    os.environ["COURSE_PROFILE"] = "full"
    if cpu_only:
        os.environ["COURSE_DEVICE"] = "cpu"
    from course_lib import settings

    if settings.offline():                        # the one parsing rule (1/true/yes/on)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def on_gpu() -> bool:
    from course_lib.device import get_device

    return get_device().type == "cuda"


def join_notes(*notes) -> str | None:
    """Non-empty notes joined by ``; `` (None when there are none)."""
    text = "; ".join(n for n in notes if n)
    return text or None


def short_error(e: BaseException, n: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[:n] + "…"


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def main(records_fn, argv=None) -> int:
    """Command line of a single script: ``python benchmarks/bench_x.py [--tiny] [--cpu-only]
    [--results DIR]`` (``benchmarks/run.py`` runs them all)."""
    p = argparse.ArgumentParser(description=(records_fn.__module__ or "").strip())
    p.add_argument("--tiny", action="store_true", help="seconds, on small real subsets (tests)")
    p.add_argument("--cpu-only", action="store_true", help="only what fits on a CPU, on the CPU")
    p.add_argument("--results", type=Path, default=None, help=f"results folder (default {RESULTS_DIR})")
    args = p.parse_args(argv)
    if args.tiny and args.results is None:
        p.error("--tiny needs --results DIR (tiny records never go to the committed results)")
    setup(args.cpu_only)
    recs = records_fn(tiny=args.tiny, cpu_only=args.cpu_only)
    for path in write(recs, args.results):
        print(f"wrote {path}")
    for r in recs:
        print(format_record(r))
    return 0


def format_record(r: dict) -> str:
    met = {True: "met", False: "MISSED", None: ""}[r["met"]]
    value = "null" if r["value"] is None else f"{r['value']:.6g}"
    return f"  {r['name']:<40s} {value:>12s}  {r['goal']:<10s} {met:<7s} {r.get('note', '')}"
