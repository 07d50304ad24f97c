"""Graded exercises: student versions, instant feedback, and grading that a submission cannot fool.

Each chapter notebook is the *master* of its exercises: questions, solutions, public tests (shown to
learners) and hidden tests (instructor only), marked with otter-grader's raw cells (``# BEGIN
QUESTION`` ... ``# END QUESTION``). Otter-grader serves where it is good; grading is our own:

``python -m course_lib.grading assign [NOTEBOOK ...]`` (otter + an answer key)
    runs ``otter assign`` on each master into ``dist/<chapter>/`` (``student/``: the notebook
    without solutions plus the public tests behind ``grader.check``; ``autograder/``: solutions and
    all tests), checks that no solution line and no hidden test reached a student file, then
    builds the **answer key** ``autograder/<chapter>-key.json``: each question's hidden probe run
    on the solution in the sandbox (:mod:`.harness`).

``python -m course_lib.grading grade SUBMISSION.ipynb | FOLDER`` (no otter, no kernel)
    runs each question of each submission in its own bubblewrap sandbox (:mod:`.sandbox`):
    unprivileged, offline, read-only, time- and memory-limited, killed with everything it started.
    The sandbox only returns the outputs of the submission's functions as plain JSON; the trusted
    process compares them with the key and writes the reports (:mod:`.harness`). A folder is graded
    in parallel into a gradebook (CSV + JSON).

In a notebook, :func:`notebook_grader` creates otter's ``grader`` object behind
``grader.check("q1")`` (public tests, instant feedback); in Colab it first fetches the public tests
of the chapter from the repository's ``student`` branch.

References
----------
- otter-grader documentation: https://otter-grader.readthedocs.io (``otter assign``; notebook format v1)
- bubblewrap: https://github.com/containers/bubblewrap
"""
from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["notebook_grader", "fetch_public_tests", "assign", "grade", "scan_submission", "is_master",
           "time_limit", "Assignment"]

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
    key: Path | None = None  # the answer key (graded by course_lib.grading.harness)


def assign(notebook: Path | str, dist: Path | str = "dist", key: bool | None = None,
           run_tests: bool = True) -> Assignment:
    """Generate the student version, autograder and answer key of one master into ``dist/<chapter>``.

    The answer key runs every solution in the grading sandbox: ``key=None`` builds it when a
    sandbox can start here (otherwise it warns and ``Assignment.key`` is None: e.g. on a CI runner
    that only publishes student versions), ``key=True`` requires it, ``key=False`` skips it.
    ``run_tests=False`` skips otter's run of every test against the solutions (it executes the
    whole notebook): for a caller that only needs the student version, where another check runs
    the tests (``tests/test_exercises.py``).

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
    proc = _otter("assign", "-v", *([] if run_tests else ["--no-run-tests"]), str(notebook), str(out),
                  cwd=notebook.parent)
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
    key_path = None
    if key is None:
        from .sandbox import usable

        ok, why = usable()
        if not ok:
            import warnings

            warnings.warn(f"{chapter}: answer key not built ({why}); `make grade` needs it", stacklevel=2)
        key = ok
    if key:
        from .harness import build_key

        key_path = out / "autograder" / f"{chapter}-key.json"
        build_key(notebook, key_path)
    return Assignment(chapter, student, tests, stable, questions, key_path)


def grade(submission: Path | str, key: Path | str | dict, out_dir: Path | str | None = None, **kw) -> dict:
    """Grade one submitted notebook against an answer key (path or dict); see :mod:`.harness`."""
    from .harness import grade_submission, load_key

    return grade_submission(submission, key if isinstance(key, dict) else load_key(key), out_dir, **kw)


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


