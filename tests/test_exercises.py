"""Every chapter's exercises, graded through the sandboxed harness like a class.

For each master: ``assign`` (the student version leaks nothing; otter re-runs the tests on the
solutions; the answer key is built in the sandbox), then one batch: the solutions score full
marks, the untouched student notebook scores 0 without a grading error, and every plausible wrong
answer of tests/wrong_answers/<chapter>.py scores 0 on its question. (Attacks on the grader are
tested on the CNN chapter in test_grading.py.)
"""
import pytest

from course_lib import book, grading
from course_lib.grading import harness, sandbox
from submissions import fill, solutions, wrong_answers, wrong_submissions  # noqa: E402 (tests/submissions.py)

pytestmark = [pytest.mark.needs("otter"), pytest.mark.slow]   # otter-grader: the grading extra

MASTERS = [p for p in book.notebooks() if grading.is_master(p)]


@pytest.mark.skipif(not sandbox.available(), reason="needs bubblewrap (make system-packages)")
@pytest.mark.parametrize("master", MASTERS, ids=[p.stem for p in MASTERS])
def test_solutions_full_marks_and_every_wrong_answer_zero(master, tmp_path):
    assigned = grading.assign(master, tmp_path / "dist")       # fails on a leak or a failing test
    assert len(assigned.questions) >= 3, "every chapter has at least 3 graded questions"
    key = harness.load_key(assigned.key)
    assert sorted(key["questions"]) == sorted(assigned.questions)
    catalogue = wrong_answers(master.stem)
    assert sorted(catalogue) == sorted(key["questions"]), "a wrong-answer catalogue for every question"
    assert all(len(v) >= 3 for v in catalogue.values()), "at least three plausible wrong answers each"
    solution = fill(assigned.student, solutions(master), tmp_path / "subs" / "solution.ipynb")
    wrong = wrong_submissions(master.stem, assigned.student, tmp_path / "subs")
    reports = harness.grade_many([solution, assigned.student, *(p for p, _ in wrong)], key,
                                 out_dir=tmp_path / "out", progress=False)
    full, empty, *graded_wrong = reports
    assert full["total"] == full["max_total"] > 0, full["questions"]
    assert empty["total"] == 0 and not empty["errors"], empty["questions"]
    for report, (_, mistakes) in zip(graded_wrong, wrong):
        for q, what in mistakes.items():
            got = report["questions"][q]
            assert got["score"] == 0, f"{master.stem} {q}: the wrong answer '{what}' scored {got['score']}"
            assert got["status"] not in harness.ERROR_STATUSES, (q, what, got, report["_instructor"]["questions"][q])
