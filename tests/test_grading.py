"""Graded exercises: student versions leak nothing, and grading cannot be fooled, read, forged or hung.

These tests run the real pipeline on the CNN chapter: ``otter assign`` and the answer key through
``course_lib.grading.assign``, then the sandboxed harness (``course_lib.grading.harness``, through
its command line) on the solutions and on adversarial submissions written the way a student who
wants the points would: patching the interpreter, spoofing types, reading the key and the masters,
forging results, leaving a process behind, endless exception-swallowing loops, a dying process, a
fork bomb. Each gains nothing and finishes in bounded time. Every chapter's solutions and its
catalogue of wrong answers are graded in test_exercises.py.
"""
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_lib import grading
from course_lib.grading import harness, sandbox
from course_lib.grading.__main__ import main as cli
from submissions import fill, solutions  # noqa: E402  (tests/submissions.py)


ROOT = Path(__file__).resolve().parents[1]
MASTER = ROOT / "notebooks" / "01_cnn_mnist.ipynb"
# one list: a second ``pytestmark =`` would replace the first (and drop "slow" and "needs")
pytestmark = [pytest.mark.needs("otter"), pytest.mark.slow,        # otter-grader: the grading extra
              pytest.mark.skipif(not sandbox.available(), reason="needs bubblewrap (make system-packages)")]


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    return grading.assign(MASTER, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def key(assigned):
    return harness.load_key(assigned.key)


CORRECT = {
    "q1": "def output_size(n, kernel, stride=1, padding=0):\n    return (n + 2*padding - kernel) // stride + 1",
    "q4": "q4_answer = 'b'",
}


def _sandbox_users() -> list[str]:
    """Processes still running as a uid that this test process gave to a sandbox (grading as root)."""
    out = subprocess.run(["ps", "-eo", "uid=,pid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split() and int(line.split()[0]) in sandbox.USED_UIDS]


def _student_text(out: Path) -> str:
    return (out / "report.json").read_text() + (out / "report.txt").read_text()


def test_solutions_score_full_marks_through_the_command(assigned, key, tmp_path, capsys):
    sub = fill(assigned.student, solutions(MASTER), tmp_path / "solution.ipynb")
    rc = cli(["grade", str(sub), "--key", str(assigned.key), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rc == 0 and report["total"] == report["max_total"] == 8, report
    assert "Score: 8 / 8" in printed and str(tmp_path / "out" / "report.json") in printed
    detail = json.loads((tmp_path / "out" / "instructor.json").read_text())
    assert all(q["seconds"] < q["limit_seconds"] for q in detail["questions"].values())
    assert key["questions"]["q1"]["forbid"] == ["course_lib"]       # "without course_lib" is enforced


PATCHING = {   # in-process patching the static scan cannot see, and type spoofing
    "q1": "import importlib, base64\n"
          "_j = importlib.import_module('js' + 'on')\n"
          "setattr(_j, 'du' + 'mps', lambda *a, **k: '{\"status\": \"ok\", \"value\": [28, 14]}')\n"
          "_b = importlib.import_module('built' + 'ins')\n"
          "exec(base64.b64decode(b'X2Iuc29ydGVkID0gbGFtYmRhICphLCAqKms6IFtd'))  # _b.sorted = ...\n"
          "vars(_b)['isinstance'] = lambda *a: True\n"
          "def output_size(n, kernel, stride=1, padding=0):\n    return 0",
    "q2": "class T(torch.Tensor):\n"
          "    def __eq__(self, other):\n        return True\n"
          "    def __sub__(self, other):\n        return torch.zeros(())\n"
          "    def item(self):\n        return 0.0\n"
          "def my_cross_entropy(logits, target):\n"
          "    out = (logits.sum() * 0).as_subclass(T)\n"
          "    out.double = lambda: torch.tensor(1.0, dtype=torch.float64)   # shadows a method\n"
          "    return out",
    "q3": "class F(float):\n    def __eq__(self, other):\n        return True\n"
          "    def __gt__(self, other):\n        return True\n"
          "lr_choice = F(1e-9)",
    "q4": "class S(str):\n    def __eq__(self, other):\n        return True\n"
          "    def strip(self):\n        return 'b'\n"
          "q4_answer = S('a')",
}


def test_patching_and_spoofed_types_gain_nothing(assigned, tmp_path):
    sub = fill(assigned.student, PATCHING, tmp_path / "patching.ipynb")
    report = grading.grade(sub, assigned.key, tmp_path / "out")
    assert report["total"] == 0, report["questions"]
    assert report["questions"]["q2"]["status"] in ("type", "raised")  # a Tensor subclass is not a Tensor
    hints = report["_instructor"]["scan_hints"]
    assert any("__eq__" in h for h in hints)                         # the scan stays, as a hint only


def _reader(paths: list[str]) -> str:
    """q1's cell: try to read every path, print what happened (to the instructor's detail only)."""
    return ("import os, glob\n"
            f"for _p in {paths!r} + glob.glob('/proc/[0-9]*/cmdline'):\n"
            "    try:\n"
            "        _t = open(_p, 'rb').read() if os.path.isfile(_p) else os.listdir(_p)\n"
            "        print('READ', _p, str(_t)[:200], flush=True)\n"
            "    except OSError as _e:\n"
            "        print('DENIED', _p, type(_e).__name__, flush=True)\n"
            "print('ROOT', sorted(os.listdir('/')), 'UID', os.getuid(), flush=True)\n"
            "import socket\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', 22), timeout=2)\n"
            "    print('NET open', flush=True)\n"
            "except OSError as _e:\n"
            "    print('NET', type(_e).__name__, flush=True)\n"
            "def output_size(n, kernel, stride=1, padding=0):\n    return 0")


FORGER = ("import os, sys, time\n"
          "if os.fork() == 0:                       # a detached survivor that tries to rewrite reports\n"
          "    os.setsid()\n"
          "    if os.fork() == 0:\n"
          "        time.sleep(3)\n"
          "        for _p in {targets!r}:\n"
          "            try:\n"
          "                open(_p, 'w').write('{{\"total\": 8}}')\n"
          "            except OSError:\n"
          "                pass\n"
          "        os._exit(0)\n"
          "    os._exit(0)\n"
          "_fake = {{'status': 'ok', 'value': [{{'__tensor__': {{'dtype': 'torch.float32', 'shape': [], 'data': [0.0]}}}}],\n"
          "         'score': 3, 'max_score': 3, 'passed': True}}\n"
          "import json\n"
          "for _fd in range(1, 20):                 # whichever descriptor is the result channel\n"
          "    try:\n"
          "        os.write(_fd, ('\\n@@COURSE-GRADER-RESULT@@ ' + json.dumps(_fake) + '\\n').encode())\n"
          "    except OSError:\n"
          "        pass\n"
          "os.write(2, b'forged a result line\\n')\n"
          "os._exit(0)                                # kill the worker before its own line\n"
          "def my_cross_entropy(logits, target):\n    return logits.sum()")

FORK_BOMB = ("import os, sys\n"
             "try:\n"
             "    _big = bytearray(64 * 2**30)           # 64 GB: over the memory limit\n"
             "except MemoryError:\n"
             "    print('MEMORY LIMIT', file=sys.stderr)\n"
             "_n = 0\n"
             "try:\n"
             "    for _ in range(5000):\n"
             "        if os.fork() == 0:\n"
             "            import time; time.sleep(120); os._exit(0)\n"
             "        _n += 1\n"
             "except OSError:\n"
             "    print('FORK LIMIT', _n, file=sys.stderr)\n"
             "q4_answer = 'b'")


def test_submission_cannot_read_forge_or_outlive_grading(assigned, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")                         # a previous report in place
    secrets = [str(assigned.key), str(MASTER), str(MASTER.with_suffix(".py")), str(ROOT), str(ROOT / "src"),
               str(assigned.key.parent), str(assigned.student.parent), str(out), str(out / "report.json"),
               "/etc/passwd", "/etc/shadow", "/home"]
    sub = fill(assigned.student, {"q1": _reader(secrets),
                                  "q2": FORGER.format(targets=[str(out / "report.json"), str(out / "report.txt")]),
                                  "q4": FORK_BOMB}, tmp_path / "attack.ipynb")
    t0 = time.monotonic()
    report = grading.grade(sub, assigned.key, out, questions=["q1", "q2", "q4"])
    assert time.monotonic() - t0 < 3 * 60
    detail = json.loads((out / "instructor.json").read_text())["questions"]
    log = detail["q1"]["output_tail"]
    for p in secrets:
        assert f"DENIED {p} " in log, (p, log)                     # nothing outside the sandbox is visible
    reads = [line for line in log.splitlines() if line.startswith("READ")]
    assert reads and all(line.startswith("READ /proc/") for line in reads), log   # its own processes only
    assert not any("pytest" in line or "bwrap" in line for line in reads), reads   # not even our command line
    assert "UID 0" not in log and "NET open" not in log and "NET" in log
    assert report["questions"]["q1"]["score"] == 0
    # the forged line is data, not a verdict: the score comes from the key
    assert report["questions"]["q2"]["score"] == 0 and report["questions"]["q2"]["status"] in ("type", "wrong")
    # limits hold, and a nasty but right answer is still right
    assert report["questions"]["q4"]["status"] == "passed", detail["q4"]
    m = re.search(r"FORK LIMIT (\d+)", detail["q4"]["output_tail"])
    assert m and int(m[1]) < 200 and "MEMORY LIMIT" in detail["q4"]["output_tail"]
    before = (out / "report.json").read_text()
    time.sleep(5)                                                    # the survivor would have written by now
    assert (out / "report.json").read_text() == before and json.loads(before)["total"] == 1
    if os.geteuid() == 0:
        assert _sandbox_users() == []
    student = _student_text(out)
    for leak in ["probe_", "20261123", "DENIED", "forged", "FORK LIMIT", json.dumps(assigned.key.name)]:
        assert leak not in student, leak                            # no hidden test, no student output


SPIN = ("def _spin():\n"
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            continue\n"
        "_spin()\n"
        "lr_choice = 3.0")


def test_endless_loops_and_dying_processes_cost_their_question_only(assigned, tmp_path, capsys):
    sub = fill(assigned.student, {**CORRECT, "q3": SPIN,
                                  "q2": "import os\ndef my_cross_entropy(logits, target):\n    os._exit(0)"},
               tmp_path / "deny.ipynb")
    t0 = time.monotonic()
    rc = cli(["grade", str(sub), "--key", str(assigned.key), "--out", str(tmp_path / "out"),
              "--max-timeout", "40"])
    elapsed = time.monotonic() - t0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {q: (v["score"], v["status"]) for q, v in report["questions"].items()}
    assert status == {"q1": (2, "passed"), "q2": (0, "crashed"), "q3": (0, "timeout"), "q4": (1, "passed")}
    assert rc == 3 and report["errors"] == ["q2", "q3"]             # reported as errors, non-zero exit
    assert "ERROR" in capsys.readouterr().out
    detail = json.loads((tmp_path / "out" / "instructor.json").read_text())["questions"]
    assert 40 <= detail["q3"]["seconds"] < 45                       # the bound: the limit plus the kill
    assert elapsed < 120
    if os.geteuid() == 0:
        assert _sandbox_users() == []


def test_class_folder_gives_a_gradebook_with_clear_rows(assigned, tmp_path, capsys):
    folder = tmp_path / "class"
    fill(assigned.student, CORRECT, folder / "ada.ipynb")
    shutil.copy(assigned.student, folder / "bob.ipynb")
    (folder / "carl.txt").write_text("my answers are in the email")
    (folder / "dora.ipynb").write_text("")
    (folder / "eve.ipynb").write_text('{"cells": [')
    rc = cli(["grade", str(folder), "--key", str(assigned.key), "--out", str(tmp_path / "book"),
              "--questions", "q1,q4"])
    rows = {r["submission"]: r for r in json.loads((tmp_path / "book" / "gradebook.json").read_text())}
    assert rc == 3 and len(rows) == 5
    assert (rows["ada.ipynb"]["total"], rows["ada.ipynb"]["status"]) == (3, "ok")
    assert (rows["bob.ipynb"]["total"], rows["bob.ipynb"]["status"]) == (0, "ok")
    assert "not a notebook" in rows["carl.txt"]["errors"] and rows["carl.txt"]["status"] == "invalid"
    assert "empty" in rows["dora.ipynb"]["errors"] and "malformed JSON" in rows["eve.ipynb"]["errors"]
    csv_text = (tmp_path / "book" / "gradebook.csv").read_text()
    assert csv_text.splitlines()[0] == "submission,assignment,status,total,max_total,q1,q2,q3,q4,errors"
    assert "gradebook" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown question names"):
        grading.grade(folder / "ada.ipynb", assigned.key, tmp_path / "x", questions=["q9"])


def test_compare_checks_exact_types():
    f = lambda x: {"__tensor__": {"dtype": "torch.float32", "shape": [1], "data": [x], "class": "Tensor"}}
    assert harness.compare([1, 2.0, "b"], [1, 2.0, "b"], 1e-6, 0) is None
    assert "type float instead of int" in harness.compare(1.0, 1, 1e-6, 0)
    assert "type int instead of bool" in harness.compare(1, True, 1e-6, 0)
    assert "object" in harness.compare({"__object__": "numpy.float64"}, 1.0, 1e-6, 0)
    assert harness.compare(f(1.0 + 1e-9), f(1.0), 1e-6, 0) is None
    assert "element 0" in harness.compare(f(1.1), f(1.0), 1e-6, 0)
    assert "tuple" in harness.compare([1], {"__tuple__": [1]}, 1e-6, 0)
    assert harness.compare(float("nan"), 1.0, 1e-6, 0) is not None


def test_grader_check_gives_instant_feedback_locally(assigned, tmp_path):
    from nbclient import NotebookClient

    cells = ["import otter\ngrader = otter.Notebook(tests_dir='tests')",
             CORRECT["q1"], "grader.check('q1')",
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
