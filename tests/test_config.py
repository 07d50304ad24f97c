"""The repository's configuration agrees with itself: packages, notebooks, Colab cells, workflow."""
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from course_lib import book, colab

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        reqs += [r for r in extra if not r.startswith("course_lib")]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _environment_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in env["dependencies"]
    return {Requirement(r).name.lower(): Requirement(r) for r in pip if not r.startswith("-e")}


def test_environment_yml_and_pyproject_agree():
    py, env = _pyproject_requirements(), _environment_requirements()
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    for name, req in py.items():
        other = env[name]
        assert req.extras == other.extras, name
        if str(req.specifier) != str(other.specifier):
            # allowed: environment.yml pins an exact version that pyproject's range admits (torch)
            pins = [s for s in other.specifier if s.operator == "=="]
            assert pins and req.specifier.contains(pins[0].version), f"{name}: {req} vs {other}"


def test_every_notebook_is_paired_in_sync_and_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    nbs = book.notebooks(ROOT)
    assert nbs, "no chapter notebooks found"
    for path in nbs:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent", path.name
        pair = jupytext.read(path.with_suffix(".py"))
        code = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]
        assert code(nb) == code(pair), f"{path.name} and its .py differ: run `jupytext --sync {path}`"
        assert f"notebooks/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{path.name} is committed with outputs: clear them (the book executes it)"


def test_colab_install_cell_uses_the_one_repository_url():
    url = book.repo_url(ROOT)
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    for path in book.notebooks(ROOT):
        first = nbformat.read(path, as_version=4).cells[0]
        extras, checkpoint = colab.chapter_needs(path, ROOT)
        assert first.cell_type == "code" and first.source == colab.colab_install_source(url, extras, checkpoint), \
            f"{path.name}: first cell differs from _config.yml's URL or the chapter's needs; " \
            "run `python -m course_lib.colab sync`"
    assert colab.colab_url("notebooks/x.ipynb", url).startswith("https://colab.research.google.com/github/")
    with pytest.raises(ValueError, match="not of the form"):
        colab.colab_url("x.ipynb", "https://gitlab.com/a/b")


def test_config_executes_and_fails_on_errors():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] in ("cache", "force")
    assert cfg["execute"]["allow_errors"] is False and cfg["execute"]["timeout"] > 0
    assert cfg["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "dollarmath" in cfg["parse"]["myst_enable_extensions"]


def test_pages_workflow_runs_the_readme_build_command():
    wf = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    steps = wf["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme
    assert any(r.strip().startswith("make book") for r in runs)
    uses = [s.get("uses", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert wf[True]["push"]["branches"] == ["main"]  # YAML reads the key `on` as True


def test_ci_script_runs_the_readme_test_command_offline():
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci and "make test" in (ROOT / "README.md").read_text()
    assert "COURSE_OFFLINE=1" in ci and "../shared/data" in ci


def test_bibliography_parses_and_every_citation_resolves():
    from pybtex.database import parse_file

    keys = set(parse_file(str(ROOT / "book" / "references.bib")).entries.keys())
    texts = [p.read_text() for p in (ROOT / "book").glob("*.md")]
    texts += [p.read_text() for p in (ROOT / "notebooks").glob("*.py")]
    cited = {k.strip() for t in texts for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", t)
             for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= keys, f"cited but missing from references.bib: {sorted(cited - keys)}"
