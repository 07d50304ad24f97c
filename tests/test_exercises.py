"""Every chapter's exercises: the student version leaks nothing, solutions score full marks, the
untouched student notebook scores 0. (The CNN chapter's grading is tested in depth in
test_grading.py: exceptions, endless loops, tampering.)"""
import pytest

from course_lib import book, grading

pytestmark = [pytest.mark.needs("otter"), pytest.mark.slow]   # otter-grader: the grading extra

MASTERS = [p for p in book.notebooks() if grading.is_master(p) and p.stem != "01_cnn_mnist"]


@pytest.mark.parametrize("master", MASTERS, ids=[p.stem for p in MASTERS])
def test_chapter_exercises_grade_right(master, tmp_path):
    assigned = grading.assign(master, tmp_path / "dist")       # fails on a leak or a failing test
    assert len(assigned.questions) >= 3, "every chapter has at least 3 graded questions"
    full = grading.grade(assigned.autograder_zip.parent / master.name, assigned.autograder_zip, tmp_path / "m")
    assert full["max_total"] > 0 and full["total"] == full["max_total"], full["questions"]
    empty = grading.grade(assigned.student, assigned.autograder_zip, tmp_path / "s")
    assert empty["total"] == 0 and not empty["timed_out"], empty["questions"]
    assert set(empty["questions"]) == set(assigned.questions)
