"""The published book: glue for numbers in prose, the Colab install cell, and the build command.

- :func:`glue` stores a value computed in a notebook under a name, so the chapter's prose shows the
  number from the run (``{glue:text}`name:.2%```) instead of a typed figure. It is myst-nb's ``glue``
  when myst-nb is installed (the book build) and a silent no-op elsewhere (Colab).
- :func:`colab_install_source` is the first cell of every chapter: it installs ``course_lib`` from
  the repository URL set once in ``_config.yml`` (``repository.url``). ``sync-colab`` rewrites that
  cell in every notebook after the URL changes; a test checks they agree.
- ``python -m course_lib.book build`` builds the HTML book (executing the notebooks, failing on a
  cell error) — the command behind ``make book``.

References
----------
- myst-nb glue: https://myst-nb.readthedocs.io/en/latest/render/glue.html
- Jupyter Book 1: https://jupyterbook.org/en/stable/
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["glue", "repo_root", "repo_url", "colab_install_source", "colab_url", "main"]

INSTALL_MARKER = "# course_lib install cell"


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's prose.

    Parameters
    ----------
    name : str
        Key used in the markdown, e.g. ``{glue:text}`test_acc:.2%```.
    value : object
        A number, string or Matplotlib figure.
    display : bool, default=False
        Also show the value where the cell runs.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"glue name {name!r} must be an identifier (letters, digits, _).")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy/torch scalars -> int/float: "{glue:text}`x:.2f`" needs a plain repr
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or a plain Jupyter: nothing to store
        if display:
            print(f"{name} = {value}")
        return
    _glue(name, value, display=display)


def repo_root(start: Path | None = None) -> Path:
    """The folder holding ``_config.yml`` (searching upwards from ``start`` or this file)."""
    here = Path(start or __file__).resolve()
    for folder in [here, *here.parents]:
        if (folder / "_config.yml").is_file() and (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _config.yml/_toc.yml above {here}: run from the course repository.")


def repo_url(root: Path | None = None) -> str:
    """``repository.url`` from ``_config.yml``: the one place the repository URL is set."""
    import yaml

    config = yaml.safe_load((Path(root or repo_root()) / "_config.yml").read_text())
    try:
        return config["repository"]["url"].rstrip("/")
    except (KeyError, TypeError, AttributeError):
        raise KeyError("_config.yml has no repository.url; set it to the course's GitHub URL.") from None


def colab_install_source(url: str) -> str:
    """Source of the first cell of every chapter (installs course_lib where it is missing)."""
    return f'''{INSTALL_MARKER}: on Colab (or any fresh environment) install the course library.
import importlib.util, subprocess, sys
COURSE_REPO = "{url}"
if importlib.util.find_spec("course_lib") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{COURSE_REPO}}"], check=True)'''


def colab_url(notebook: str, url: str, branch: str = "main") -> str:
    """The Colab address of ``notebook`` (a path relative to the repository root)."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not m:
        raise ValueError(f"repository url {url!r} is not of the form https://github.com/OWNER/REPO.")
    return f"https://colab.research.google.com/github/{m[1]}/{m[2]}/blob/{branch}/{notebook}"


def notebooks(root: Path | None = None) -> list[Path]:
    """Chapter notebooks, in file-name order."""
    return sorted((Path(root or repo_root()) / "notebooks").glob("*.ipynb"))


def sync_colab(root: Path | None = None) -> list[Path]:
    """Rewrite the install cell of every notebook (and its jupytext pair) from ``_config.yml``."""
    import jupytext
    import nbformat

    root = Path(root or repo_root())
    source = colab_install_source(repo_url(root))
    changed = []
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if first is None or first.cell_type != "code" or INSTALL_MARKER not in first.source:
            cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["remove-cell"]})
            nb.cells.insert(0, cell)
        elif first.source == source:
            continue
        else:
            first.source = source
        nbformat.write(nb, path)
        pair = path.with_suffix(".py")
        if pair.exists():
            jupytext.write(nb, pair, fmt="py:percent")
        changed.append(path)
    return changed


def build(root: Path | None = None, extra: list[str] | None = None) -> int:
    """Build the HTML book into ``_build/html`` (notebooks executed, cached by their code)."""
    root = Path(root or repo_root())
    exe = Path(sys.executable).parent / "jupyter-book"          # the venv's console script
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--builder", "html",
           "--warningiserror", "--keep-going", "--all", *(extra or [])]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the HTML book into _build/html")
    sub.add_parser("sync-colab", help="rewrite every notebook's install cell from _config.yml")
    sub.add_parser("url", help="print the repository URL and each chapter's Colab link")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        return build()
    if args.cmd == "sync-colab":
        for path in sync_colab():
            print("updated", path)
        return 0
    url = repo_url()
    print(url)
    for path in notebooks():
        print(colab_url(str(path.relative_to(repo_root())), url))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Claims are code (course_lib.claims): a chapter's conclusions, checked on its own run.
from course_lib.claims import (ClaimError, claim, checked_claims, mcnemar, paired_comparison,  # noqa: E402
                               proportion_interval, sign_test, verdict)
