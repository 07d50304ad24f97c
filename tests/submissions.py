"""Build submissions for grading tests: the student notebook with chosen answer cells.

A question's block in the student notebook runs from its prompt heading to its
``grader.check("qN")`` cell; :func:`fill` replaces the answer cells (tagged ``otter_answer_cell``)
of the named questions. :func:`solutions` reads the solution cells of a master notebook.
"""
import importlib.util
import re
from pathlib import Path

import nbformat


WRONG_DIR = Path(__file__).with_name("wrong_answers")


def blocks(nb) -> dict:
    """question -> indices of its answer cells, in the student notebook ``nb``."""
    out, current = {}, None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            m = re.match(r"###\s+Question\s+(\d+)", cell.source.strip())
            if m:
                current = f"q{m[1]}"
        elif cell.cell_type == "code" and re.match(r"""\s*grader\.check\(["'](\w+)["']\)""", cell.source):
            current = None
        elif cell.cell_type == "code" and current and "otter_answer_cell" in cell.metadata.get("tags", []):
            out.setdefault(current, []).append(i)
    return out


def fill(student: Path, answers: dict, dest: Path) -> Path:
    """The student notebook with the answer cells of ``answers`` (question -> source) replaced."""
    nb = nbformat.read(student, as_version=4)
    where = blocks(nb)
    for q, source in answers.items():
        first, *rest = where[q]
        nb.cells[first].source = source
        for i in rest:
            nb.cells[i].source = ""
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


def solutions(master: Path) -> dict:
    """question -> the source of its solution cells (the master's, joined)."""
    nb = nbformat.read(master, as_version=4)
    out, current, in_solution = {}, None, False
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "raw":
            if src.startswith("# BEGIN QUESTION"):
                current = re.search(r"name:\s*(\w+)", src)[1]
            elif src.startswith("# BEGIN SOLUTION"):
                in_solution = True
            elif src.startswith("# END SOLUTION"):
                in_solution = False
            continue
        if in_solution and cell.cell_type == "code":
            out[current] = (out.get(current, "") + "\n" + cell.source).strip()
    return out


def wrong_answers(chapter: str) -> dict:
    """question -> {mistake: source}, from tests/wrong_answers/<chapter>.py ({} if none)."""
    path = WRONG_DIR / f"{chapter}.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"wrong_{chapter}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.WRONG


def wrong_submissions(chapter: str, student: Path, dest: Path) -> list[tuple[Path, dict]]:
    """Submissions holding the k-th wrong answer of every question: [(path, {question: mistake})]."""
    wrong = wrong_answers(chapter)
    out = []
    for k in range(max((len(v) for v in wrong.values()), default=0)):
        picks = {q: list(v.items())[k] for q, v in wrong.items() if k < len(v)}
        path = fill(student, {q: src for q, (_, src) in picks.items()}, dest / f"wrong{k}.ipynb")
        out.append((path, {q: what for q, (what, _) in picks.items()}))
    return out
