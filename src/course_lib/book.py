"""The published book: glue for numbers in prose, the repository settings, and the build command.

- :func:`glue` stores a value computed in a notebook under a name, so the chapter's prose shows the
  number from the run (``{glue:text}`name:.2%```) instead of a typed figure. It is myst-nb's ``glue``
  when myst-nb is installed (the book build); everywhere it also records the value in
  :data:`GLUED`, from which the Colab edition's prose cells show this run's numbers
  (:func:`course_lib.colab.show_prose`).
- :func:`repo_url` reads the one repository URL (``repository.url`` of ``_config.yml``); the Colab
  editions and their install cells are :mod:`course_lib.colab`.
- ``python -m course_lib.book build`` builds the HTML book (executing the notebooks, failing on a
  cell error or on stderr in any cell output) — the command behind ``make book``. Its execution,
  stored in the jupyter-cache, is the one the tests check (:func:`executed_notebook`).

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

__all__ = ["glue", "GLUED", "record_run", "repo_root", "repo_url", "notebooks", "build", "is_built",
           "build_pdf", "chapter_notebooks", "executed_notebook", "record_times", "source_fingerprint", "main"]

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


def record_run(profile: str, device) -> dict:
    """Record how this chapter runs, for the run card under the chapter's title in the book.

    Glues ``course_run`` (profile, device, commit, date) and, in IPython, after every cell that
    loaded data, that cell's new sources (``course_run_sources_N``), so that the card lists every
    source the run used. Also turns on the book's figures (:func:`course_lib.viz.use_book_figures`).
    Outside IPython it only returns the record.

    Parameters
    ----------
    profile : str
        The run's profile (``"ci"`` or ``"full"``).
    device : torch.device or str
        The device the chapter computes on.
    """
    import datetime as dt

    from . import data, viz
    from .device import describe

    try:
        commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    info = {"profile": str(profile), "device": describe(device), "commit": commit or "not recorded",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}

    def current() -> dict:
        return {**info, "sources": [f"{k}: {v}" for k, v in data.sources_served().items()]}

    try:
        from IPython import get_ipython
    except ImportError:
        return current()
    ip = get_ipython()
    if ip is None:
        return current()
    viz.use_book_figures()
    glue("course_run", info)
    served: list[str] = []

    def after_cell(result=None):
        # myst-nb refuses a key glued twice: each cell that loaded data glues its new sources
        # under a key of its own (course_run_sources_1, _2, ...); the run card joins them.
        new = [s for s in current()["sources"] if s not in served]
        if new:
            served.extend(new)
            glue(f"course_run_sources_{len(served)}", new)

    for old in [f for f in ip.events.callbacks["post_run_cell"] if getattr(f, "_course_run", False)]:
        ip.events.unregister("post_run_cell", old)
    after_cell._course_run = True
    ip.events.register("post_run_cell", after_cell)
    after_cell()
    return current()


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


#: What the book is built from: a change to any of these makes an earlier build stale.
SOURCES = ("_config.yml", "_toc.yml", "book/**/*", "notebooks/*.ipynb", "src/course_lib/**/*.py",
           "benchmarks/results/*.json")
CACHE = Path("_build") / ".jupyter_cache"
STAMP = Path("_build") / "html" / ".course-build.json"
TIMES = Path("_build") / "notebook_times.json"


def source_fingerprint(root: Path | None = None) -> str:
    """SHA-256 over the paths and contents of every file the book is built from (:data:`SOURCES`)."""
    import hashlib

    root = Path(root or repo_root())
    digest = hashlib.sha256()
    files = sorted({p for pattern in SOURCES for p in root.glob(pattern) if p.is_file()
                    and "__pycache__" not in p.parts})
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def is_built(root: Path | None = None) -> bool:
    """True when ``_build/html`` was built, successfully, from the sources as they are now."""
    import json

    root = Path(root or repo_root())
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("sources") == source_fingerprint(root)


def chapter_notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks that ``_toc.yml`` publishes, in book order."""
    import yaml

    root = Path(root or repo_root())

    def files(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                yield node["file"]
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for value in node:
                yield from files(value)

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [root / f"{f}.ipynb" for f in files(toc) if (root / f"{f}.ipynb").is_file()]


def executed_notebook(path: Path, root: Path | None = None):
    """The executed copy of ``path`` that the book build stored in its jupyter-cache, or None.

    The cache is keyed by the notebook's code: a notebook edited since the build has no match.
    Returns ``(notebook, seconds, when)``: the executed ``nbformat`` node (outputs merged in), its
    execution time in seconds and the time it was executed.
    """
    import nbformat
    from jupyter_cache import get_cache

    root = Path(root or repo_root())
    cache = get_cache(str(root / CACHE))
    nb = nbformat.read(path, as_version=4)
    try:
        record = cache.match_cache_notebook(nb)
    except KeyError:
        return None
    _, merged = cache.merge_match_into_notebook(nb)
    return merged, record.data.get("execution_seconds"), record.created


def record_times(root: Path | None = None) -> dict:
    """Write ``_build/notebook_times.json`` from the executions in the book's cache.

    Format (read by ``benchmarks/bench_notebooks.py``): ``{path: {"seconds", "passed", "when"}}``,
    paths relative to the repository root. A published notebook with no execution in the cache is
    recorded with ``passed: false``.
    """
    import json

    root = Path(root or repo_root())
    times = {}
    for path in chapter_notebooks(root):
        found = executed_notebook(path, root)
        key = str(path.relative_to(root))
        if found is None:
            times[key] = {"seconds": 0.0, "passed": False, "when": ""}
        else:
            _, seconds, when = found
            times[key] = {"seconds": round(float(seconds or 0.0), 1), "passed": True,
                          "when": when.astimezone().strftime("%Y-%m-%d %H:%M:%S")}
    (root / TIMES).parent.mkdir(parents=True, exist_ok=True)
    (root / TIMES).write_text(json.dumps(times, indent=1, sort_keys=True))
    return times


PDF = Path("_build") / "html" / "course.pdf"


def build_pdf(root: Path | None = None) -> Path:
    """Print the built book to one PDF, ``_build/html/course.pdf``, in the order of ``_toc.yml``.

    Each page is printed by headless Chromium (the page's print style sheet: no sidebars, code
    wrapped to the page) and the pages are joined with pypdf. Needs ``chromium`` and
    ``chromedriver`` (Debian packages; ``make book`` installs them).
    """
    import base64
    import functools
    import http.server
    import shutil
    import threading

    import yaml
    from pypdf import PdfWriter
    from selenium import webdriver

    root = Path(root or repo_root())
    html = root / "_build" / "html"
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        raise FileNotFoundError("the PDF needs chromium and chromedriver: apt-get install chromium "
                                "chromium-driver (make book does)")

    def files(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    yield node[key]
            for value in node.values():
                if isinstance(value, (dict, list)):
                    yield from files(value)
        elif isinstance(node, list):
            for value in node:
                yield from files(value)

    pages = [f for f in dict.fromkeys(files(yaml.safe_load((root / "_toc.yml").read_text())))
             if (html / f"{f}.html").is_file()]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_path))
    writer = PdfWriter()
    try:
        import io

        for page in pages:
            browser.get(f"http://127.0.0.1:{server.server_address[1]}/{page}.html")
            browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true);")
            pdf = browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": False,
                                                              "preferCSSPageSize": True})
            writer.append(io.BytesIO(base64.b64decode(pdf["data"])))
    finally:
        browser.quit()
        server.shutdown()
    out = root / PDF
    with open(out, "wb") as f:
        writer.write(f)
    return out


def build(root: Path | None = None, extra: list[str] | None = None, fresh: bool = False) -> int:
    """Build the HTML book into ``_build/html``: the command behind ``make book``.

    myst-nb executes every chapter notebook (``execute_notebooks: cache``: a notebook whose code
    did not change since its last successful execution is not run again) and the build fails on a
    cell error, on stderr in a cell's output and on any Sphinx warning. This execution is the one
    the tests check (``tests/test_book.py``). Afterwards the per-notebook times are written to
    ``_build/notebook_times.json``, the book is printed to ``_build/html/course.pdf``
    (:func:`build_pdf`) and a stamp of the sources is written to ``_build/html``.

    Parameters
    ----------
    root : path-like, optional
        The repository (default: found from this file).
    extra : list of str, optional
        More ``jupyter-book build`` arguments.
    fresh : bool, default=False
        Empty the execution cache first, so that every notebook runs (for timing).
    """
    import json
    import shutil

    root = Path(root or repo_root())
    if fresh:
        shutil.rmtree(root / CACHE, ignore_errors=True)
    (root / STAMP).unlink(missing_ok=True)
    exe = Path(sys.executable).parent / "jupyter-book"          # the venv's console script
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--builder", "html",
           "--warningiserror", "--keep-going", "--all", *(extra or [])]
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=root)
    if (root / CACHE).is_dir():
        record_times(root)
    if code == 0:
        print("+ printing the book to", PDF, flush=True)
        build_pdf(root)
        (root / STAMP).write_text(json.dumps({"sources": source_fingerprint(root)}))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the HTML book into _build/html (executing the notebooks)")
    b.add_argument("--fresh", action="store_true", help="empty the execution cache first: run every notebook")
    b.add_argument("--if-stale", action="store_true",
                   help="do nothing when _build/html was built from the sources as they are now")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        if args.if_stale and not args.fresh and is_built():
            print("the book in _build/html is current: not built again", flush=True)
            return 0
        return build(fresh=args.fresh)
    return 2


if __name__ == "__main__":
    sys.exit(main())
