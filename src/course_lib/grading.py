"""Graded exercises: student versions, instant feedback and instructor grading, with otter-grader.

Each chapter notebook is the *master*: its exercise section holds questions, solutions, public
tests (shown to learners) and hidden tests (instructor only), marked with otter-grader's raw cells
(``# BEGIN QUESTION`` ... ``# END QUESTION``). This module wraps otter in two commands:

``python -m course_lib.grading assign [NOTEBOOK ...]``
    runs ``otter assign`` on each master notebook into ``dist/<chapter>/`` (``student/``: the
    notebook without solutions plus public tests; ``autograder/``: solutions, all tests, the
    grading zip). Otter itself re-runs every test against the solutions and fails if one fails;
    this command then checks that no solution line and no hidden test reached a student file.

``python -m course_lib.grading grade SUBMISSION.ipynb``
    grades a submitted notebook without Docker and writes ``report.json`` (total and
    per-question scores) and ``report.txt`` (a readable summary). Unlike ``otter run``, it cannot
    hang: each cell is interrupted after ``--cell-timeout`` seconds, and the whole run is killed
    after ``--timeout``. The submission's code is also scanned for tampering with the grader
    (rebinding ``grader``/``otter``, patching library modules or builtins, reading test files);
    a flagged submission gets 0 points and the report says why, for the instructor to review.

In a notebook, :func:`notebook_grader` creates the ``grader`` object behind
``grader.check("q1")``; in Colab it first fetches the public tests of the chapter from the
repository's ``student`` branch, where the book's workflow publishes the student versions.

References
----------
- otter-grader documentation: https://otter-grader.readthedocs.io (``otter assign``,
  ``otter run``; notebook format v1)
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["notebook_grader", "assign", "grade", "scan_submission", "is_master", "time_limit", "main"]

OTTER_VERSION = "7.0.0"
STUDENT_BRANCH = "student"   # where the book workflow publishes dist/*/student


# --------------------------------------------------------------------------- learners' side
def notebook_grader(chapter: str, repo: str | None = None):
    """Return ``otter.Notebook`` for ``chapter``, installing otter / fetching public tests if needed.

    Parameters
    ----------
    chapter : str
        The assignment name (the notebook's stem, e.g. ``"01_cnn_mnist"``).
    repo : str, optional
        The course repository URL; by default ``COURSE_REPO`` as set by the notebook's first cell.
    """
    import importlib.util

    if importlib.util.find_spec("otter") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"otter-grader=={OTTER_VERSION}"],
                       check=True)
    import otter

    if "google.colab" in sys.modules and not os.path.isdir("tests"):
        import __main__

        repo = repo or getattr(__main__, "COURSE_REPO", None)
        if repo is None:
            raise RuntimeError("no repository URL: run the notebook's first cell (it sets COURSE_REPO).")
        fetch_public_tests(repo, chapter, "tests")
    return otter.Notebook(tests_dir="tests")


def fetch_public_tests(repo: str, chapter: str, dest: str = "tests", base: str | None = None) -> list[str]:
    """Download the public tests of ``chapter`` from the repository's student branch into ``dest``.

    ``base`` overrides the folder URL (default: the raw files of the ``student`` branch on GitHub).
    """
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repo)
    if not m:
        raise ValueError(f"repo={repo!r} is not of the form https://github.com/OWNER/REPO.")
    base = base or f"https://raw.githubusercontent.com/{m[1]}/{m[2]}/{STUDENT_BRANCH}/{chapter}/tests/"
    os.makedirs(dest, exist_ok=True)
    with urllib.request.urlopen(base + "index.txt", timeout=30) as r:
        names = [n.strip() for n in r.read().decode().split() if n.strip().endswith(".py")]
    for name in names:
        with urllib.request.urlopen(base + name, timeout=30) as r:
            Path(dest, name).write_bytes(r.read())
    return names


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``TimeoutError`` in the block after ``seconds`` (Unix, main thread): for hidden tests.

    A test that calls a submitted function inside ``with time_limit(5):`` fails on an endless
    loop instead of hanging the grading run; the grading command's cell timeout and overall
    timeout remain as the last resort (e.g. for a loop that swallows every exception).
    """
    import signal

    if seconds <= 0:
        raise ValueError(f"seconds={seconds!r} must be positive.")

    def _raise(signum, frame):
        raise TimeoutError(f"the submitted code ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- instructors' side
def is_master(notebook: Path) -> bool:
    """True if the notebook has an otter ``# ASSIGNMENT CONFIG`` raw cell."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return any(c.cell_type == "raw" and c.source.lstrip().startswith("# ASSIGNMENT CONFIG") for c in nb.cells)


def _otter(*args: str, cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otter", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def _solution_lines(nb) -> set[str]:
    """Lines of solution code in a master: inside BEGIN/END SOLUTION markers or ending in # SOLUTION."""
    lines, in_block_cell = set(), False
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "raw":
            if src.startswith("# BEGIN SOLUTION"):
                in_block_cell = True
            elif src.startswith("# END SOLUTION"):
                in_block_cell = False
            continue
        if cell.cell_type != "code" or not in_block_cell:
            continue
        inside = False
        for line in cell.source.splitlines():
            s = line.strip()
            if s.startswith("# BEGIN SOLUTION"):
                inside = True
            elif s.startswith("# END SOLUTION"):
                inside = False
            elif (inside or s.endswith("# SOLUTION")) and len(s) > 3:
                lines.add(s.replace("# SOLUTION", "").strip())
    return lines


def _hidden_test_lines(nb) -> set[str]:
    """Distinctive lines of the hidden test cells of a master."""
    out, in_tests = set(), False
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "raw":
            in_tests = src.startswith("# BEGIN TESTS") or (in_tests and not src.startswith("# END TESTS"))
            continue
        if in_tests and cell.cell_type == "code" and ("# HIDDEN" in src or re.search(r"hidden:\s*true", src)):
            body = re.sub(r'""" # BEGIN TEST CONFIG.*?""" # END TEST CONFIG', "", cell.source, flags=re.S)
            out |= {ln.strip() for ln in body.splitlines()
                    if len(ln.strip()) > 12 and not ln.strip().startswith(("import ", "from ", "#"))}
    return out


def _visible_text(nb) -> str:
    """Master text that learners may see: everything but solution blocks and hidden tests."""
    keep, in_solution, in_tests = [], False, False
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "raw":
            in_solution = src.startswith("# BEGIN SOLUTION") or (in_solution and not src.startswith("# END SOLUTION"))
            in_tests = src.startswith("# BEGIN TESTS") or (in_tests and not src.startswith("# END TESTS"))
            continue
        hidden = in_tests and re.search(r"hidden:\s*true|# HIDDEN", src)
        if not in_solution and not hidden:
            keep.append(cell.source)
    return "\n".join(keep)


@dataclass
class Assignment:
    chapter: str
    student: Path        # the student notebook
    tests: Path          # its public tests folder
    autograder_zip: Path
    questions: list = field(default_factory=list)


def assign(notebook: Path | str, dist: Path | str = "dist") -> Assignment:
    """Generate the student version and autograder of one master notebook into ``dist/<chapter>``.

    Raises
    ------
    RuntimeError
        If otter assign fails (e.g. a test fails against the solutions) or if any solution line
        or hidden test leaked into a student file.
    """
    import nbformat

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}.")
    if not is_master(notebook):
        raise ValueError(f"{notebook.name} has no '# ASSIGNMENT CONFIG' raw cell: not a master notebook.")
    chapter = notebook.stem
    out = Path(dist).resolve() / chapter
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _otter("assign", "-v", str(notebook), str(out), cwd=notebook.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"otter assign failed for {notebook.name} (exit {proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    student = out / "student" / notebook.name
    tests = out / "student" / "tests"
    zips = sorted((out / "autograder").glob("*.zip"))
    if not (student.is_file() and tests.is_dir() and zips):
        raise RuntimeError(f"otter assign produced an unexpected layout in {out}.")
    # Leak check: no solution line, no hidden-test line in any student file.
    master = nbformat.read(notebook, as_version=4)
    secrets = _solution_lines(master) | _hidden_test_lines(master)
    visible = _visible_text(master)
    secrets = {s for s in secrets if s not in visible}   # e.g. a check shared with a public test
    leaks = []
    for path in (out / "student").rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py", ".txt", ".json"):
            text = path.read_text(errors="replace")
            leaks += [f"{path.relative_to(out)}: {s!r}" for s in secrets if s in text]
    if leaks:
        raise RuntimeError("solution or hidden-test text leaked into student files:\n" + "\n".join(leaks))
    questions = sorted(p.stem for p in tests.glob("*.py"))
    (tests / "index.txt").write_text("\n".join(f"{q}.py" for q in questions) + "\n")
    stable = out / "autograder" / f"{chapter}-autograder.zip"
    shutil.copy(zips[-1], stable)                 # a stable name beside otter's timestamped one
    return Assignment(chapter, student, tests, stable, questions)


# Patterns a submission has no business using: they can only serve to fool the grader.
_FORBIDDEN_NAMES = {"grader", "otter", "Notebook", "Checker", "GradingResults"}
_FORBIDDEN_CALLS = {"exec", "eval", "compile", "__import__", "globals", "setattr", "delattr"}
_OVERRIDES = {"__eq__", "__ne__", "__float__", "__int__", "__index__", "__bool__", "__instancecheck__",
              "__subclasscheck__", "__class__", "__getattribute__", "__abs__", "__lt__", "__le__",
              "__gt__", "__ge__"}   # ways to make a wrong value compare equal to the right one
_FORBIDDEN_ATTRS = {"_getframe", "currentframe", "modules", "__builtins__", "__globals__",
                    "__code__", "f_globals", "f_back", "get_referrers", "run_cell"}


def scan_submission(notebook: Path | str) -> list[str]:
    """Static check of a submission's code cells for attempts to tamper with grading.

    Flags rebinding of the grader (``grader``, ``otter``), assignment to attributes of imported
    modules (``torch.allclose = ...``), builtins and frame access, dynamic code (``exec``), and
    strings naming test or grading files. Returns human-readable findings (empty if clean).
    """
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    nb = nbformat.read(notebook, as_version=4)
    findings = []
    transform = TransformerManager().transform_cell
    for idx, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "otter_ignore" in cell.metadata.get("tags", []):
            continue                                   # otter does not run otter_ignore cells
        try:
            tree = ast.parse(transform(cell.source))
        except SyntaxError:
            continue                                   # it will fail when run; nothing to scan
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.module and node.module.split(".")[0] in ("builtins", "otter", "gc", "ctypes", "inspect"):
                    findings.append(f"cell {idx}: imports from {node.module}")
                modules |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            where = f"cell {idx}, line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("builtins", "otter", "gc", "ctypes")
                                                   for a in node.names):
                findings.append(f"{where}: imports {', '.join(a.name for a in node.names)}")
            elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES | {"__builtins__"} \
                    and isinstance(node.ctx, (ast.Store, ast.Del)):
                findings.append(f"{where}: rebinds {node.id!r}")
            elif isinstance(node, ast.Name) and node.id == "__builtins__":
                findings.append(f"{where}: uses __builtins__")
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
                root = node
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and (root.id in modules or root.id in _FORBIDDEN_NAMES):
                    findings.append(f"{where}: assigns to {ast.unparse(node)} (a library attribute)")
            elif isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_ATTRS:
                findings.append(f"{where}: uses .{node.attr}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in _OVERRIDES:
                findings.append(f"{where}: defines {node.name} (a comparison/conversion override)")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
                findings.append(f"{where}: calls {node.func.id}()")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.search(r"(^|/)tests?/|\.otter|autograder|results\.(json|pkl)", node.value):
                findings.append(f"{where}: names grading files ({node.value!r})")
    return findings


_RUNNER = r'''
import sys
from nbconvert.preprocessors import ExecutePreprocessor
import nbconvert.preprocessors as pre
from traitlets import Bool

def _timeout(cell):   # the final cell runs every test (each bounded by time_limit): more time
    return {tests_timeout} if "otter.execute import Checker" in cell.source else {cell_timeout}

class _TimedExecutePreprocessor(ExecutePreprocessor):
    interrupt_on_timeout = Bool(True).tag(config=True)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.timeout_func = _timeout

pre.ExecutePreprocessor = _TimedExecutePreprocessor   # otter imports it from here at grading time
from otter.run import main
main({submission!r}, autograder={autograder!r}, output_dir={out!r}, no_logo=True)
'''


def grade(submission: Path | str, autograder_zip: Path | str, out_dir: Path | str,
          cell_timeout: int = 120, timeout: int = 1800, allow_flagged: bool = False,
          tests_timeout: int = 600) -> dict:
    """Grade one submission; write ``report.json`` and ``report.txt`` in ``out_dir``; return the report.

    Parameters
    ----------
    submission : path to the submitted ``.ipynb``
    autograder_zip : path to the chapter's autograder zip (from :func:`assign`)
    out_dir : folder for ``results.json`` (otter's), ``report.json`` and ``report.txt``
    cell_timeout : int, default=120
        Seconds after which a running cell is interrupted (an endless loop loses that cell).
    tests_timeout : int, default=600
        The same for the final cell, where otter runs every test (hidden tests bound each call
        to submitted code with :func:`time_limit`).
    timeout : int, default=1800
        Seconds after which the whole grading is killed (then every question scores 0).
    allow_flagged : bool, default=False
        Keep the scores of a submission that the tamper scan flagged.
    """
    submission, autograder_zip = Path(submission).resolve(), Path(autograder_zip).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for path, what in ((submission, "submission"), (autograder_zip, "autograder zip")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    with zipfile.ZipFile(autograder_zip) as z:
        names = [n for n in z.namelist() if n.startswith("tests/") and n.endswith(".py")]
        maxima = {}
        for n in names:                               # points as declared in otter's test files
            text = z.read(n).decode()
            per_test = [float(p) for p in re.findall(r"@test_case\(points=([0-9.]+)", text)]
            whole = re.search(r"^points = ([0-9.]+)", text, re.M)
            maxima[Path(n).stem] = sum(per_test) or (float(whole[1]) if whole else 0.0)
    findings = scan_submission(submission)
    results_file = out / "results.json"
    results_file.unlink(missing_ok=True)
    script = _RUNNER.format(cell_timeout=int(cell_timeout), tests_timeout=int(tests_timeout),
                            submission=str(submission),
                            autograder=str(autograder_zip), out=str(out))
    log_file = out / "grading.log"
    with open(log_file, "w") as log_handle:              # a file, not a pipe: a killed run cannot block us
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=log_handle, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=out)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
    log = log_file.read_text(errors="replace")
    questions = {}
    if results_file.exists():
        for t in json.loads(results_file.read_text()).get("tests", []):
            if "max_score" not in t:
                continue                               # otter's "Public Tests" summary entry
            name = t["name"].strip()
            q = questions.setdefault(name, {"score": 0.0, "max_score": 0.0, "output": ""})
            q["score"] += float(t.get("score") or 0)
            q["max_score"] += float(t.get("max_score") or 0)
            q["output"] += (t.get("output") or "")
    for name, mx in maxima.items():
        questions.setdefault(name, {"score": 0.0, "max_score": mx,
                                    "output": "not graded (the grading run did not finish)"})
    flagged = bool(findings) and not allow_flagged
    for q in questions.values():
        if flagged:
            q["score"] = 0.0
        q["passed"] = q["score"] >= q["max_score"] > 0
    report = {
        "submission": str(submission), "autograder": autograder_zip.name,
        "total": round(sum(q["score"] for q in questions.values()), 4),
        "max_total": round(sum(q["max_score"] for q in questions.values()), 4),
        "questions": dict(sorted(questions.items())),
        "tamper_findings": findings, "flagged": flagged, "timed_out": timed_out,
        "cell_timeout": cell_timeout, "tests_timeout": tests_timeout, "log_tail": log[-2000:],
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.txt").write_text(_summary(report))
    return report


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the grading process and everything it started (the notebook's kernel included)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _summary(report: dict) -> str:
    lines = [f"Submission: {report['submission']}",
             f"Score: {report['total']:g} / {report['max_total']:g}", ""]
    for name, q in report["questions"].items():
        mark = "ok " if q["passed"] else "-- "
        lines.append(f"  {mark}{name}: {q['score']:g} / {q['max_score']:g}")
    if report["timed_out"]:
        lines += ["", "The grading run was killed at its time limit: unfinished questions score 0."]
    if report["tamper_findings"]:
        lines += ["", "Tampering suspected (scores set to 0; review by hand, or re-grade with --allow-flagged):"]
        lines += [f"  - {f}" for f in report["tamper_findings"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading",
                                     description="Student versions and grading of the course's exercises.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assign", help="generate student notebooks and autograders into DIST/<chapter>")
    a.add_argument("notebooks", nargs="*", type=Path, help="master notebooks (default: every chapter with exercises)")
    a.add_argument("--dist", type=Path, default=Path("dist"))
    g = sub.add_parser("grade", help="grade a submitted notebook: report.json + report.txt")
    g.add_argument("submission", type=Path)
    g.add_argument("--dist", type=Path, default=Path("dist"))
    g.add_argument("--autograder", type=Path, help="autograder zip (default: from DIST by the notebook's assignment name)")
    g.add_argument("--out", type=Path, help="output folder (default: <submission>-grade/)")
    g.add_argument("--cell-timeout", type=int, default=120)
    g.add_argument("--tests-timeout", type=int, default=600)
    g.add_argument("--timeout", type=int, default=1800)
    g.add_argument("--allow-flagged", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "assign":
        from .book import notebooks, repo_root

        targets = args.notebooks or [p for p in notebooks(repo_root()) if is_master(p)]
        if not targets:
            print("no master notebooks (with an ASSIGNMENT CONFIG cell) found", file=sys.stderr)
            return 1
        for nb in targets:
            res = assign(nb, args.dist)
            print(f"{res.chapter}: student {res.student} ({len(res.questions)} questions), "
                  f"autograder {res.autograder_zip}")
        return 0
    import nbformat

    zip_path = args.autograder
    if zip_path is None:
        meta = nbformat.read(args.submission, as_version=4).metadata.get("otter", {})
        name = meta.get("assignment_name")
        if not name:
            print(f"{args.submission} has no otter assignment name in its metadata: pass --autograder",
                  file=sys.stderr)
            return 2
        zip_path = args.dist / name / "autograder" / f"{name}-autograder.zip"
        if not zip_path.is_file():
            print(f"no autograder at {zip_path}: run `python -m course_lib.grading assign` first",
                  file=sys.stderr)
            return 2
    out = args.out or args.submission.with_name(args.submission.stem + "-grade")
    report = grade(args.submission, zip_path, out, args.cell_timeout, args.timeout, args.allow_flagged,
                   args.tests_timeout)
    print(_summary(report), end="")
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
