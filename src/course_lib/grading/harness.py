"""Instructor grading that a submission cannot fool: answer keys, sandboxed probes, honest reports.

How a question is graded
------------------------
Each graded question of a master notebook has, in its hidden-test cell, a **probe**
``probe_qN(name, ...)``: instructor code that calls the submission's objects (a function, a value)
on inputs it chooses and returns their outputs as plain data. Optionally a dict ``grading_qN``
sets the comparison and the sandbox (``rtol``, ``atol``, ``timeout``, ``memory_mb``, ``forbid``:
packages the question forbids, e.g. ``["course_lib"]``, ``forbid_calls``: functions replaced by
one that raises), and ``check_qN(got, ref)`` a trusted test of the returned value (for answers
that are choices, e.g. a learning rate that must reach an accuracy: the trusted side re-runs the
experiment itself).

1. :func:`build_key` (run by ``assign``) executes each question's *solution* through the same
   sandboxed probe and stores the outputs, the probes and the settings in an **answer key**
   (``dist/<chapter>/autograder/<chapter>-key.json``: keep it with the autograder).
2. :func:`grade_submission` runs, for every question, a fresh sandbox (:mod:`.sandbox`) that
   executes the submission's setup cells and that question's cells, calls the probe and prints
   the outputs as JSON. Nothing else comes back. The trusted process decodes that JSON, checks the
   exact types and compares the values with the key (:func:`compare`). The submission never sees
   the key, the reference outputs, the masters or the report folder, and cannot change how the
   comparison runs: it runs in another process, as another user, after the sandbox is gone.
3. A question whose sandbox runs past its time limit is killed with everything it started
   (``timeout``); one that dies without an answer is ``crashed``. Both score 0, are reported as
   errors, and make the command exit with status 3.
4. Reports are written by the trusted side only: ``report.json``/``report.txt`` for the student
   (scores, capped at each maximum; a status per question; no hidden-test source, input or
   expected value) and ``instructor.json`` (timings, the submission's output and errors, where
   its output first differs from the key, the static scan's hints).

References
----------
- Gradescope/otter results format, for comparison: https://otter-grader.readthedocs.io
"""
from __future__ import annotations

import ast
import csv
import datetime as _dt
import json
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import sandbox as _sb

__all__ = ["build_key", "load_key", "grade_submission", "grade_many", "compare", "split_submission",
           "KEY_FORMAT", "GradingError"]

KEY_FORMAT = 1
_CHECK_CELL = re.compile(r"""^\s*grader\.check\(\s*["']([A-Za-z_][\w-]*)["']\s*\)\s*;?\s*$""")
DEFAULTS = {"rtol": 1e-6, "atol": 1e-9, "timeout": 60.0, "memory_mb": 4096, "forbid": [], "forbid_calls": []}
STATUS_TEXT = {
    "passed": "correct",
    "wrong": "the answer differs from the expected one",
    "type": "the answer has the wrong type or shape",
    "raised": "the submitted code raised an exception",
    "missing": "the answer is not defined",
    "timeout": "ERROR: stopped at the time limit",
    "crashed": "ERROR: the submission's process died before answering",
    "malformed": "ERROR: the submission's process returned an unreadable answer",
    "error": "ERROR: the question could not be graded",
    "skipped": "not graded in this run",
}
ERROR_STATUSES = {"timeout", "crashed", "malformed", "error"}


class GradingError(RuntimeError):
    """A master or key that cannot be used (the instructor's side, not the submission's)."""


# --------------------------------------------------------------------------- masters and keys
def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _config(raw: str) -> dict:
    import yaml

    body = "\n".join(raw.strip().splitlines()[1:])
    return yaml.safe_load(body) or {}


def parse_master(nb) -> tuple[list[str], dict]:
    """Shared cells and questions of a master notebook (otter's raw-cell format).

    Returns ``(shared, questions)``: the code cells outside questions that otter runs (not tagged
    ``otter_ignore``), and for each question its ``heading`` (first line of the prompt), its
    ``cells`` (solution and setup code) and its hidden-test cells' ``hidden`` sources and points.
    """
    shared, questions, current, in_tests = [], {}, None, False
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == "raw":
            head = src.strip().splitlines()[0] if src.strip() else ""
            if head.startswith("# BEGIN QUESTION"):
                cfg = _config(src)
                current = str(cfg["name"])
                questions[current] = {"heading": None, "cells": [], "hidden": [], "points": cfg.get("points")}
            elif head.startswith("# END QUESTION"):
                current = None
            elif head.startswith("# BEGIN TESTS"):
                in_tests = True
            elif head.startswith("# END TESTS"):
                in_tests = False
            continue
        if current is None:
            if cell.cell_type == "code" and "otter_ignore" not in _tags(cell):
                shared.append(src)
            continue
        q = questions[current]
        if cell.cell_type == "markdown" and q["heading"] is None and src.strip():
            q["heading"] = src.strip().splitlines()[0].strip()
        elif cell.cell_type == "code" and not in_tests and "otter_ignore" not in _tags(cell):
            q["cells"].append(src)
        elif cell.cell_type == "code" and in_tests:
            m = re.match(r'\s*""" # BEGIN TEST CONFIG\n(.*?)""" # END TEST CONFIG', src, re.S)
            import yaml

            cfg = yaml.safe_load(m[1]) if m else {}
            if cfg and cfg.get("hidden"):
                q["hidden"].append({"source": src, "points": cfg.get("points")})
    return shared, questions


def _probe_parts(name: str, sources: list[str]) -> dict:
    """From the hidden-test sources of question ``name``: the probe, the check and the settings."""
    keep, settings, probe_args, has_check = [], dict(DEFAULTS), None, False
    for src in sources:
        tree = ast.parse(src)
        nodes = []
        for node in tree.body:                        # otter allows one test function per cell:
            nodes.append(node)                        # the probe may be defined inside it
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                nodes += node.body
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node in tree.body:
                keep.append(node)
            elif isinstance(node, ast.FunctionDef) and node.name in (f"probe_{name}", f"check_{name}"):
                keep.append(node)
                if node.name == f"probe_{name}":
                    probe_args = [a.arg for a in node.args.args]
                else:
                    has_check = True
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == f"grading_{name}"
                                                      for t in node.targets):
                settings.update(ast.literal_eval(node.value))
    if probe_args is None:
        raise GradingError(f"question {name}: no probe_{name}(...) function in its hidden tests.")
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise GradingError(f"question {name}: unknown grading_{name} settings {sorted(unknown)}.")
    source = ast.unparse(ast.Module(keep, []))
    return {"source": source, "probe": f"probe_{name}", "args": probe_args,
            "check": f"check_{name}" if has_check else None, **settings}


def _config_of(spec: dict, max_timeout: float | None = None) -> _sb.SandboxConfig:
    forbid = list(spec.get("forbid", []))
    timeout = float(spec["timeout"]) if max_timeout is None else min(float(spec["timeout"]), max_timeout)
    return _sb.SandboxConfig(timeout=timeout, memory_mb=int(spec["memory_mb"]),
                             course_lib="course_lib" not in forbid,
                             hide=[f for f in forbid if f != "course_lib"])


def _job(spec: dict, shared: list[str], cells: list[str], earlier: list[str] = ()) -> dict:
    """The worker's input: setup cells, earlier questions' cells (only their imports run), this question's."""
    return {"shared": shared, "import_cells": list(earlier), "cells": cells,
            "probe_source": spec["source"], "probe": spec["probe"],
            "args": spec["args"], "forbid_calls": list(spec.get("forbid_calls", []))}


def build_key(master: Path | str, out: Path | str | None = None, jobs: int | None = None) -> dict:
    """Answer key of a master notebook: each question's probe run on the solution, in the sandbox.

    Raises :class:`GradingError` if a question has no probe, or if the solution does not run,
    does not return plain data, or fails its own trusted check.
    """
    import nbformat

    master = Path(master)
    nb = nbformat.read(master, as_version=4)
    shared, questions = parse_master(nb)
    chapter = nb.metadata.get("otter", {}).get("assignment_name") or master.stem
    specs = {}
    for name, q in questions.items():
        points = q["points"] if q["points"] is not None else sum(float(h["points"] or 0) for h in q["hidden"])
        if not points:
            raise GradingError(f"question {name}: no points (question or hidden tests).")
        specs[name] = {"points": float(points), "heading": q["heading"],
                       **_probe_parts(name, [h["source"] for h in q["hidden"]])}

    def reference(name):
        spec = specs[name]
        order = list(questions)
        earlier = [c for q in order[:order.index(name)] for c in questions[q]["cells"]]
        res = _sb.run_job(_job(spec, shared, questions[name]["cells"], earlier), _config_of(spec))
        if res.status != "ok":
            raise GradingError(f"{master.name} {name}: the solution does not grade ({res.status}): "
                               f"{json.dumps(res.result)[:2000]}\n{res.stderr_tail}")
        return name, res.result["value"], res.elapsed

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for name, value, elapsed in pool.map(reference, list(specs)):
            specs[name]["reference"] = value
            specs[name]["reference_seconds"] = round(elapsed, 2)
    key = {"format": KEY_FORMAT, "chapter": chapter, "master": master.name, "environment": environment(),
           "max_total": sum(s["points"] for s in specs.values()), "questions": specs}
    for name, spec in specs.items():                   # the solution must pass its own trusted check
        ok, why = _judge(spec, {"status": "ok", "value": spec["reference"]}, key)
        if ok != "passed":
            raise GradingError(f"{master.name} {name}: the solution fails its own check ({ok}: {why}).")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(key, indent=1))
    return key


def environment() -> dict:
    """Versions the reference outputs depend on: grade where the key was built (or rebuild it)."""
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": sys.version.split()[0]}
    for pkg in ("numpy", "torch", "scikit-learn"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    return env


def load_key(path: Path | str) -> dict:
    key = json.loads(Path(path).read_text())
    if key.get("format") != KEY_FORMAT or not isinstance(key.get("questions"), dict):
        raise GradingError(f"{path} is not an answer key of format {KEY_FORMAT}: re-run `make student`.")
    return key


# --------------------------------------------------------------------------- comparison (trusted)
_FLOAT_DTYPES = {"float16", "float32", "float64", "bfloat16", "torch.float16", "torch.float32",
                 "torch.float64", "torch.bfloat16"}


def _kind(dtype: str) -> str:
    d = dtype.replace("torch.", "")
    if d in ("bool",):
        return "b"
    if d.startswith(("float", "bfloat")):
        return "f"
    if d.startswith(("int", "uint", "long")):
        return "i"
    return "?" + d


def compare(got, ref, rtol: float, atol: float, path: str = "value") -> str | None:
    """``None`` if ``got`` equals the reference ``ref`` (both encoded), else where and why not.

    Types must match exactly (an ``int`` is not a ``float``, a tuple not a list, a tensor not an
    array); tensors and arrays must have the same kind of dtype (float, integer, bool) and shape;
    floats are compared with ``rtol``/``atol``; everything else exactly. Decoded JSON only: this
    function never calls anything that came from the submission.
    """
    if type(got) is not type(ref):
        return f"{path}: type {_tname(got)} instead of {_tname(ref)}"
    if ref is None or type(ref) in (bool, str, int):
        return None if got == ref else f"{path}: different value"
    if type(ref) is float:
        if math.isnan(ref) or math.isnan(got):
            return None if math.isnan(ref) and math.isnan(got) else f"{path}: different value (nan)"
        return None if math.isclose(got, ref, rel_tol=rtol, abs_tol=atol) else f"{path}: different value"
    if type(ref) is list:
        if len(got) != len(ref):
            return f"{path}: length {len(got)} instead of {len(ref)}"
        for i, (g, r) in enumerate(zip(got, ref)):
            why = compare(g, r, rtol, atol, f"{path}[{i}]")
            if why:
                return why
        return None
    if type(ref) is dict:
        (tag,) = ref.keys()
        if list(got.keys()) != [tag]:
            return f"{path}: type {_tname(got)} instead of {_tname(ref)}"
        g, r = got[tag], ref[tag]
        if tag in ("__tuple__",):
            return compare(g, r, rtol, atol, path)
        if tag == "__dict__":
            if type(g) is not dict or sorted(g) != sorted(r):
                return f"{path}: different keys"
            for k in r:
                why = compare(g[k], r[k], rtol, atol, f"{path}[{k!r}]")
                if why:
                    return why
            return None
        if tag in ("__ndarray__", "__tensor__"):
            if type(g) is not dict or not isinstance(g.get("dtype"), str) or type(g.get("shape")) is not list:
                return f"{path}: malformed array"
            if tag == "__tensor__" and g.get("class") != "Tensor" and r.get("class") == "Tensor":
                return f"{path}: a {g.get('class')!s:.40} instead of a plain Tensor"
            if _kind(g["dtype"]) != _kind(r["dtype"]):
                return f"{path}: dtype {g['dtype']:.40} instead of {r['dtype']}"
            if g["shape"] != r["shape"]:
                return f"{path}: shape {g['shape']} instead of {r['shape']}"
            gd, rd = g.get("data"), r.get("data")
            if type(gd) is not list or type(rd) is not list or len(gd) != len(rd):
                return f"{path}: malformed data"
            exact = _kind(r["dtype"]) != "f"
            for i, (a, b) in enumerate(zip(gd, rd)):
                if type(a) not in (int, float, bool) or type(b) not in (int, float, bool):
                    return f"{path}: malformed data"
                if exact:
                    if a != b:
                        return f"{path}: element {i} differs"
                elif not ((math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=atol)):
                    return f"{path}: element {i} differs"
            return None
        return f"{path}: {tag} values are never accepted"
    return f"{path}: unexpected reference type"


def _tname(x) -> str:
    if type(x) is dict and len(x) == 1:
        (tag,) = x.keys()
        inner = x[tag]
        if tag == "__object__":
            return f"object {str(inner)[:60]}"
        if tag == "__tensor__" and isinstance(inner, dict):
            return f"tensor {str(inner.get('dtype'))[:30]}"
        if tag == "__ndarray__" and isinstance(inner, dict):
            return f"ndarray {str(inner.get('dtype'))[:30]}"
        return tag.strip("_")
    return {type(None): "None"}.get(type(x), type(x).__name__)


def decode(x):
    """Encoded value -> plain Python / NumPy objects (for trusted ``check_qN`` functions)."""
    import numpy as np

    if type(x) is list:
        return [decode(v) for v in x]
    if type(x) is dict and len(x) == 1:
        (tag,) = x.keys()
        v = x[tag]
        if tag == "__tuple__":
            return tuple(decode(e) for e in v)
        if tag == "__dict__":
            return {k: decode(e) for k, e in v.items()}
        if tag in ("__ndarray__", "__tensor__"):
            kind = _kind(v["dtype"])
            dtype = {"f": np.float64, "i": np.int64, "b": np.bool_}.get(kind)
            if dtype is None or type(v.get("data")) is not list:
                raise ValueError("unsupported array")
            return np.asarray(v["data"], dtype=dtype).reshape(v["shape"])
        raise ValueError(f"{tag} cannot be decoded")
    return x


def _judge(spec: dict, result: dict, key: dict) -> tuple[str, str]:
    """Status and an instructor-only explanation for one question's worker result."""
    status = result.get("status")
    if status == "missing":
        return "missing", f"not defined: {result.get('names')}"
    if status == "raised":
        return "raised", str(result.get("error"))[:500]
    if status != "ok":
        return "malformed", f"unknown worker status {str(status)[:40]!r}"
    got, ref = result.get("value"), spec["reference"]
    if spec.get("check"):
        ns: dict = {}
        exec(compile(spec["source"], f"<key {spec['probe']}>", "exec"), ns)   # the instructor's code
        try:
            ok = ns[spec["check"]](decode(got), decode(ref))
        except Exception as e:                          # noqa: BLE001 - a wrong type, a bad value
            return "wrong", f"check raised {type(e).__name__}: {str(e)[:300]}"
        return ("passed", "") if ok is True else ("wrong", "the trusted check returned False")
    why = compare(got, ref, float(spec["rtol"]), float(spec["atol"]))
    if why is None:
        return "passed", ""
    return ("type" if ("type " in why or "dtype" in why or "shape" in why or "malformed" in why) else "wrong"), why


# --------------------------------------------------------------------------- submissions
@dataclass
class Split:
    shared: list
    cells: dict           # question -> its code cells
    assignment: str | None


def split_submission(nb, key: dict) -> Split:
    """The submission's setup cells and each question's cells (by the prompt heading and its check cell).

    A question's block starts at the markdown cell whose first line is the question's heading and
    ends at its ``grader.check("qN")`` cell. Code cells outside every block (and not tagged
    ``otter_ignore``) are shared: they run, statement by statement, before each question's cells.
    """
    headings = {spec["heading"]: name for name, spec in key["questions"].items() if spec.get("heading")}
    shared, cells, current = [], {name: [] for name in key["questions"]}, None
    for cell in nb.cells:
        ctype, src = cell.get("cell_type"), cell.get("source", "")
        if not isinstance(src, str):
            src = "".join(src) if isinstance(src, list) else ""
        if ctype == "markdown":
            first = src.strip().splitlines()[0].strip() if src.strip() else ""
            if first in headings:
                current = headings[first]
            continue
        if ctype != "code" or "otter_ignore" in _tags(cell):
            continue
        m = _CHECK_CELL.match(src)
        if m:
            if m[1] == current:
                current = None
            continue
        (cells[current] if current is not None else shared).append(src)
    meta = nb.get("metadata", {}).get("otter", {}) if isinstance(nb.get("metadata"), dict) else {}
    return Split(shared, cells, meta.get("assignment_name") if isinstance(meta, dict) else None)


def _read_notebook(path: Path):
    """The submission as a notebook, or a clear reason why it is not one."""
    import nbformat

    if not path.is_file():
        raise ValueError("not a file")
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    if path.suffix != ".ipynb":
        raise ValueError(f"not a notebook (.ipynb): {path.suffix or 'no extension'}")
    if path.stat().st_size > 50 * 2**20:
        raise ValueError("larger than 50 MB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed JSON ({str(e)[:80]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ValueError("not a notebook (no cell list)")
    try:
        return nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as e:                               # noqa: BLE001 - any nbformat failure
        raise ValueError(f"not a valid notebook ({type(e).__name__})") from None


def _grade_question(key: dict, name: str, split: Split, max_timeout: float | None = None) -> dict:
    spec = key["questions"][name]
    cfg = _config_of(spec, max_timeout)
    order = list(key["questions"])
    earlier = [c for q in order[:order.index(name)] for c in split.cells[q]]
    res = _sb.run_job(_job(spec, split.shared, split.cells[name], earlier), cfg)
    detail = {"seconds": round(res.elapsed, 2), "returncode": res.returncode,
              "output_tail": res.stderr_tail[-4000:], "limit_seconds": cfg.timeout}
    if res.status in ("timeout", "crashed", "malformed"):
        status, why = res.status, {"timeout": f"killed after {cfg.timeout:g} s",
                                   "crashed": f"exit status {res.returncode}",
                                   "malformed": "unreadable result line"}[res.status]
    else:
        try:
            status, why = _judge(spec, res.result, key)
        except Exception as e:                           # noqa: BLE001 - never crash the batch
            status, why = "error", f"{type(e).__name__}: {str(e)[:300]}"
        detail["cell_errors"] = [str(c)[:2000] for c in (res.result or {}).get("cell_errors", [])][:20]
    detail["status"], detail["why"] = status, why
    return detail


def _report(key: dict, submission: Path, details: dict, invalid: str | None = None) -> tuple[dict, dict]:
    """The student-facing report and the instructor's detail, built from trusted data only."""
    questions = {}
    for name, spec in key["questions"].items():
        d = details.get(name, {"status": "error", "why": invalid or "not graded"})
        score = spec["points"] if d["status"] == "passed" else 0.0
        questions[name] = {"score": min(score, spec["points"]), "max_score": spec["points"],
                           "status": d["status"], "message": STATUS_TEXT[d["status"]]}
    unknown = set(details) - set(key["questions"])
    if unknown:                                          # cannot happen through grade_submission
        raise GradingError(f"unknown question names {sorted(unknown)}")
    errors = sorted(n for n, q in questions.items() if q["status"] in ERROR_STATUSES)
    report = {"assignment": key["chapter"], "submission": submission.name,
              "total": round(sum(q["score"] for q in questions.values()), 4),
              "max_total": round(sum(q["max_score"] for q in questions.values()), 4),
              "questions": questions, "errors": errors, "invalid": invalid,
              "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    instructor = {"submission": str(submission), "key_chapter": key["chapter"], "invalid": invalid,
                  "questions": details, "sandbox": {n: _sb.describe(_config_of(s)) for n, s in key["questions"].items()}}
    return report, instructor


def summary(report: dict) -> str:
    lines = [f"Submission: {report['submission']} ({report['assignment']})",
             f"Score: {report['total']:g} / {report['max_total']:g}"]
    if report.get("invalid"):
        lines.append(f"Not graded: {report['invalid']}")
    lines.append("")
    for name, q in report["questions"].items():
        mark = "ok " if q["status"] == "passed" else "-- "
        lines.append(f"  {mark}{name}: {q['score']:g} / {q['max_score']:g}  {q['message']}")
    if report["errors"]:
        lines += ["", f"Grading errors in {', '.join(report['errors'])}: these questions score 0."]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _scan_hints(path: Path) -> list[str]:
    try:
        from . import scan_submission

        return scan_submission(path)
    except Exception:                                    # noqa: BLE001 - a hint only
        return []


def grade_submission(submission: Path | str, key: dict, out_dir: Path | str | None = None,
                     questions: list[str] | None = None, jobs: int | None = None,
                     max_timeout: float | None = None) -> dict:
    """Grade one submission against ``key``; write the reports in ``out_dir``; return the report.

    ``questions`` restricts grading to some questions (others are reported as not graded);
    an unknown name raises ``ValueError``. The questions run in parallel, ``jobs`` at a time.
    """
    reports = grade_many([submission], key, out_dir=None, questions=questions, jobs=jobs, progress=False,
                         max_timeout=max_timeout, per_submission_dirs={Path(submission): Path(out_dir)} if out_dir else None)
    return reports[0]


def grade_many(submissions: list, key: dict | dict[str, dict], out_dir: Path | str | None = None,
               questions: list[str] | None = None, jobs: int | None = None, progress: bool = True,
               per_submission_dirs: dict | None = None, max_timeout: float | None = None) -> list[dict]:
    """Grade several submissions in parallel (``jobs`` sandboxes at a time, default: the cores).

    ``key`` is one answer key, or a dict ``assignment name -> key`` (each notebook is graded
    against the key named by its otter metadata). With ``out_dir``, writes
    ``out_dir/<stem>/report.{json,txt}``, ``instructor.json`` and the gradebook
    ``out_dir/gradebook.csv`` + ``gradebook.json`` (one row per submission). A file that is not a
    notebook, is empty or is malformed JSON gets a row that says so. ``max_timeout`` lowers every
    question's time limit (seconds) for this run.
    """
    keys = key if "questions" not in key else {key["chapter"]: key}
    only = None
    if questions is not None:
        all_names = set().union(*(k["questions"] for k in keys.values()))
        bad = sorted(set(questions) - all_names)
        if bad:
            raise ValueError(f"unknown question names {bad}; the key has {sorted(all_names)}")
        only = set(questions)
    prepared, tasks = [], []
    for path in map(Path, submissions):
        invalid, split, k = None, None, None
        try:
            nb = _read_notebook(path)
            split0 = split_submission(nb, next(iter(keys.values())))
            name = split0.assignment
            if len(keys) == 1:
                k = next(iter(keys.values()))
                if name not in (None, k["chapter"]):
                    raise ValueError(f"a notebook of {str(name)[:60]!r}, not of {k['chapter']!r}")
            elif name in keys:
                k = keys[name]
            else:
                raise ValueError(f"unknown assignment {str(name)[:60]!r} in the notebook's metadata")
            split = split_submission(nb, k)
        except ValueError as e:
            invalid = str(e)
            k = k or next(iter(keys.values()))
        prepared.append((path, k, split, invalid))
        if split is not None:
            tasks += [(len(prepared) - 1, q) for q in k["questions"] if only is None or q in only]
    details: list[dict] = [{} for _ in prepared]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="grading", unit="question", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        futures = {pool.submit(_grade_question, prepared[i][1], q, prepared[i][2], max_timeout): (i, q)
                   for i, q in tasks}
        for fut in as_completed(futures):
            i, q = futures[fut]
            try:
                details[i][q] = fut.result()
            except Exception as e:                       # noqa: BLE001 - a row, never a crashed batch
                details[i][q] = {"status": "error", "why": f"{type(e).__name__}: {str(e)[:300]}"}
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    reports = []
    for (path, k, split, invalid), det in zip(prepared, details):
        if only is not None and not invalid:
            for q in k["questions"]:
                det.setdefault(q, {"status": "skipped", "why": "not selected"})
        report, instructor = _report(k, path, det, invalid)
        if only is not None:
            report["graded_questions"] = sorted(only & set(k["questions"]))
        instructor["scan_hints"] = _scan_hints(path) if not invalid else []
        if k.get("environment") and k["environment"] != environment():
            instructor["warning"] = (f"the key was built with {k['environment']}, grading runs with "
                                     f"{environment()}: rebuild the key (make student) if scores look wrong")
        target = (per_submission_dirs or {}).get(path)
        if target is None and out_dir is not None:
            target = Path(out_dir) / path.stem
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            _write(target / "report.json", json.dumps(report, indent=1))
            _write(target / "report.txt", summary(report))
            _write(target / "instructor.json", json.dumps(instructor, indent=1))
            report["_dir"] = str(target)
        report["_instructor"] = instructor
        reports.append(report)
    if out_dir is not None:
        write_gradebook(reports, Path(out_dir))
    return reports


def write_gradebook(reports: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """``gradebook.csv`` and ``gradebook.json``: one row per submission, one column per question."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({q for r in reports for q in r["questions"]}, key=lambda s: (len(s), s))
    rows = []
    for r in reports:
        row = {"submission": r["submission"], "assignment": r["assignment"],
               "status": "invalid" if r["invalid"] else ("errors" if r["errors"] else "ok"),
               "total": r["total"], "max_total": r["max_total"]}
        for q in names:
            row[q] = r["questions"][q]["score"] if q in r["questions"] else ""
        row["errors"] = r["invalid"] or "; ".join(f"{q}: {r['questions'][q]['status']}" for q in r["errors"])
        rows.append(row)
    csv_path, json_path = out_dir / "gradebook.csv", out_dir / "gradebook.json"
    with open(csv_path.with_suffix(".csv.tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["submission", "assignment", "status", "total", "max_total", *names, "errors"])
        w.writeheader()
        w.writerows(rows)
    os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
    _write(json_path, json.dumps(rows, indent=1))
    return csv_path, json_path
