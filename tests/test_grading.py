"""Graded exercises: student versions leak nothing, grading is right, and cannot be fooled or hung.

These tests run the real pipeline on the CNN chapter: ``otter assign`` through
``course_lib.grading.assign``, then ``course_lib.grading.grade`` on the solutions, the untouched
student notebook, a buggy submission (an exception, endless loops) and a tampering one.
"""
import functools
import http.server
import os
import re
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_lib import grading

pytestmark = [pytest.mark.needs("otter"), pytest.mark.slow]   # otter-grader: the grading extra

ROOT = Path(__file__).resolve().parents[1]
MASTER = ROOT / "notebooks" / "01_cnn_mnist.ipynb"


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    return grading.assign(MASTER, tmp_path_factory.mktemp("dist"))


def _submission(assigned, tmp_path, answers: dict) -> Path:
    """The student notebook with its answer cells replaced (keys: a name the cell defines)."""
    nb = nbformat.read(assigned.student, as_version=4)
    for cell in nb.cells:
        if "otter_answer_cell" in cell.metadata.get("tags", []):
            for key, source in answers.items():
                if re.search(rf"\b{key}\b", cell.source):
                    cell.source = source
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return path


CORRECT = {
    "output_size": "def output_size(n, kernel, stride=1, padding=0):\n    return (n + 2*padding - kernel) // stride + 1",
    "q4_answer": "q4_answer = 'b'",
}


def test_student_files_hold_no_solution_and_no_hidden_test(assigned):
    student_dir = assigned.student.parent
    text = "\n".join(p.read_text(errors="replace") for p in student_dir.rglob("*") if p.is_file())
    for secret in ["(n + 2 * padding - kernel) // stride + 1",      # q1 solution
                   "torch.exp(logits - m[:, None])",                # q2 solution
                   "lr_choice = 3.0",                               # q3 solution
                   'q4_answer = "b"',                               # q4 solution
                   'q4_answer.strip().lower() == "b"',              # q4 hidden test
                   "_rng = _random.Random(20261123)",               # q1 hidden test
                   "def test_q3_hidden", "hidden=True"]:
        assert secret not in text, f"{secret!r} leaked into the student version"
    nb = nbformat.read(assigned.student, as_version=4)
    answers = [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    assert len(answers) == 4 and all("..." in c.source for c in answers)
    assert nb.metadata["otter"]["assignment_name"] == "01_cnn_mnist"
    assert sorted(assigned.questions) == ["q1", "q2", "q3", "q4"]
    assert (assigned.tests / "index.txt").read_text().split() == ["q1.py", "q2.py", "q3.py", "q4.py"]
    # the public tests are there for grader.check, the hidden ones only in the autograder zip
    assert "def test_q1_public" in (assigned.tests / "q1.py").read_text()


def test_solutions_score_full_marks(assigned, tmp_path):
    report = grading.grade(assigned.autograder_zip.parent / MASTER.name, assigned.autograder_zip, tmp_path)
    assert report["max_total"] == 8 and report["total"] == 8, report
    assert all(q["passed"] for q in report["questions"].values())
    assert (tmp_path / "report.json").is_file() and "Score: 8 / 8" in (tmp_path / "report.txt").read_text()


def test_untouched_student_notebook_scores_zero_and_still_runs(assigned, tmp_path):
    report = grading.grade(assigned.student, assigned.autograder_zip, tmp_path)
    assert not report["timed_out"] and not report["flagged"]
    assert report["max_total"] == 8 and report["total"] == 0
    assert set(report["questions"]) == {"q1", "q2", "q3", "q4"}


def test_exceptions_and_endless_loops_cost_only_their_own_questions(assigned, tmp_path):
    sub = _submission(assigned, tmp_path, {
        **CORRECT,
        "my_cross_entropy": "def my_cross_entropy(logits, target):\n    while True:\n        pass",
        "lr_choice": "raise RuntimeError('a bug in the submission')\nlr_choice = 3.0",
        "q4_answer": "q4_answer = 'b'\nwhile True:   # a forgotten loop at top level\n    pass",
    })
    t0 = time.monotonic()
    report = grading.grade(sub, assigned.autograder_zip, tmp_path / "out", cell_timeout=20, timeout=600)
    assert time.monotonic() - t0 < 400 and not report["timed_out"]
    scores = {name: q["score"] for name, q in report["questions"].items()}
    assert scores == {"q1": 2, "q2": 0, "q3": 0, "q4": 1}, report


def test_tampering_gains_nothing_and_is_reported(assigned, tmp_path):
    sub = _submission(assigned, tmp_path, {
        "output_size": "class Any(int):\n    def __eq__(self, other):\n        return True\n"
                       "def output_size(n, kernel, stride=1, padding=0):\n    return Any(0)",
        "my_cross_entropy": "import torch\ntorch.allclose = lambda *a, **k: True\n"
                            "def my_cross_entropy(logits, target):\n    return torch.tensor(0.0)",
        "lr_choice": "grader.check = lambda *a, **k: print('All tests passed!')\nlr_choice = 1e-4",
        "q4_answer": "class S(str):\n    def __eq__(self, other):\n        return True\nq4_answer = S('a')",
    })
    report = grading.grade(sub, assigned.autograder_zip, tmp_path / "out", allow_flagged=True)
    assert report["total"] == 0, "a trick earned points: the tests trust something they should not"
    joined = "\n".join(report["tamper_findings"])
    for what in ("defines __eq__", "torch.allclose", "grader.check"):
        assert what in joined
    assert "Tampering suspected" in (tmp_path / "out" / "report.txt").read_text()


def test_grader_check_gives_instant_feedback_locally(assigned, tmp_path):
    from nbclient import NotebookClient

    cells = ["import otter\ngrader = otter.Notebook(tests_dir='tests')",
             CORRECT["output_size"], "grader.check('q1')",
             "def output_size(n, kernel, stride=1, padding=0):\n    return n", "grader.check('q1')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(assigned.student.parent)}}).execute()
    text = lambda cell: " ".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in cell.outputs)
    assert "passed" in text(nb.cells[2]).lower()
    assert "failed" in text(nb.cells[4]).lower() or "error" in text(nb.cells[4]).lower()


def test_public_tests_can_be_fetched_like_colab_does(assigned, tmp_path):
    served = tmp_path / "site"
    (served / "student" / "01_cnn_mnist").mkdir(parents=True)
    os.symlink(assigned.tests, served / "student" / "01_cnn_mnist" / "tests")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/student/01_cnn_mnist/tests/"
        names = grading.fetch_public_tests("https://github.com/o/r", "01_cnn_mnist", str(tmp_path / "t"), base=base)
    finally:
        server.shutdown()
    assert names == ["q1.py", "q2.py", "q3.py", "q4.py"]
    assert (tmp_path / "t" / "q1.py").read_text() == (assigned.tests / "q1.py").read_text()
    with pytest.raises(ValueError, match="not of the form"):
        grading.fetch_public_tests("https://example.com/x", "01_cnn_mnist", str(tmp_path / "u"))


def test_scan_flags_each_trick_and_passes_the_student_notebook(assigned, tmp_path):
    assert grading.scan_submission(assigned.student) == []
    tricks = {"import builtins\nbuiltins.len = lambda x: 0": "imports builtins",
              "import numpy as np\nnp.allclose = lambda *a: True": "np.allclose",
              "otter = None": "rebinds 'otter'",
              "exec('x = 1')": "calls exec()",
              "open('tests/q1.py').read()": "names grading files",
              "import sys\nsys.modules['torch'] = None": "uses .modules",
              "def __eq__(self, o):\n    return True": "defines __eq__"}
    for code, expected in tricks.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        path = tmp_path / "t.ipynb"
        nbformat.write(nb, path)
        findings = grading.scan_submission(path)
        assert any(expected in f for f in findings), (code, findings)
    ignored = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("otter = None", metadata={"tags": ["otter_ignore"]})])
    nbformat.write(ignored, path)
    assert grading.scan_submission(path) == []   # otter never runs otter_ignore cells


def test_time_limit_interrupts_and_restores():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(TimeoutError, match="longer than 0.2 s"):
        with grading.time_limit(0.2):
            while True:
                pass
    assert signal.getsignal(signal.SIGALRM) == before
    with grading.time_limit(5):
        assert sum(range(10)) == 45
    with pytest.raises(ValueError, match="seconds=0"):
        with grading.time_limit(0):
            pass


def test_assign_refuses_a_notebook_without_exercises(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "plain.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="not a master notebook"):
        grading.assign(path, tmp_path / "dist")
    with pytest.raises(FileNotFoundError, match="no notebook"):
        grading.assign(tmp_path / "missing.ipynb", tmp_path / "dist")
