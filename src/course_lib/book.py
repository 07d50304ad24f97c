"""The published book: glue for numbers in prose, the repository settings, and the build command.

- :func:`glue` stores a value computed in a notebook under a name, so the chapter's prose shows the
  number from the run (``{glue:text}`name:.2%```) instead of a typed figure. It is myst-nb's ``glue``
  when myst-nb is installed (the book build); everywhere it also records the value in
  :data:`GLUED`, from which the Colab edition's prose cells show this run's numbers
  (:func:`course_lib.colab.show_prose`).
- :func:`repo_url` reads the one repository URL (``repository.url`` of ``_config.yml``); the Colab
  editions and their install cells are :mod:`course_lib.colab`.
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

__all__ = ["glue", "GLUED", "repo_root", "repo_url", "notebooks", "main"]

GLUED: dict = {}   # name -> value of every glue() call in this kernel (read by the Colab prose cells)


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
    GLUED[name] = value
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


def notebooks(root: Path | None = None) -> list[Path]:
    """Chapter notebooks, in file-name order."""
    return sorted((Path(root or repo_root()) / "notebooks").glob("*.ipynb"))


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
    args = parser.parse_args(argv)
    if args.cmd == "build":
        return build()
    return 2


if __name__ == "__main__":
    sys.exit(main())
