"""Sphinx extension: chapter pages that read right on every screen, and say how they ran.

At build time, on every chapter page (a notebook of ``notebooks/``):

- **Bookkeeping hidden**: ``glue(...)`` statements (they store numbers for the prose) and otter's
  solution markers are removed from the code shown to readers (:func:`reader_source`). The
  notebooks themselves are unchanged.
- **Short deliberate tracebacks**: a pitfall cell tagged ``raises-exception`` shows the exception
  and the few frames nearest to it, not the library internals (:func:`short_traceback`).
- **Real alt text**: each figure's alt text is the description the run attached to it (the
  ``text/plain`` of the same output, written by :func:`course_lib.viz.describe_figure`), found by
  the image's content hash; an image without one fails the build with a warning.
- **Visible captions**: each described figure is shown in a ``<figure>`` with a caption, "Figure
  4.2. <the description's first sentence>", numbered per chapter (:func:`add_figure_captions`).
- **A run card** under the title (:func:`run_card_html`): profile, device, this notebook's measured
  execution time, the time its full profile needs on a GPU (from ``benchmarks/results``), the date
  and commit it was executed at, and the data sources that served it — all from the execution the
  book stored in its cache.
- The page's ``.ipynb`` download holds the executed notebook (outputs included).
- ``_static/course.css`` (phone layout, wrapped code, legible figures in dark mode, print) and
  ``_static/course.js`` (the sidebar buttons on a phone) are added to every page.

The pure functions are tested in ``tests/test_book_pages.py``.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import sys
from pathlib import Path

from docutils import nodes

ROOT = Path(__file__).resolve().parents[2]
STATIC = Path(__file__).resolve().parents[1] / "_static"

_MARKERS = re.compile(r"^\s*#\s*(BEGIN|END)\s+(SOLUTION|QUESTION|TESTS|PROMPT)\b.*$")
_SOLUTION_SUFFIX = re.compile(r"\s*#\s*SOLUTION\s*$")
_GLUE_IMPORT = re.compile(r"^\s*from\s+course_lib\.book\s+import\s+glue\s*$")
_GLUE_START = re.compile(r"^\s*(?:book\.)?glue\(")


def _balanced_end(lines: list[str], start: int) -> int:
    """Index of the line that closes the parenthesis opened on ``lines[start]``."""
    depth, quote = 0, None
    for i in range(start, len(lines)):
        line = lines[i]
        j = 0
        while j < len(line):
            ch = line[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif line.startswith(quote, j):
                    j += len(quote) - 1
                    quote = None
            elif ch in "\"'":
                quote = line[j:j + 3] if line[j:j + 3] in ('"""', "'''") else ch
                j += len(quote) - 1
            elif ch == "#":
                break
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth == 0:
                    return i
            j += 1
    return start


def reader_source(source: str) -> str:
    """A code cell's source as readers see it: no ``glue(...)`` statement, no otter marker.

    Parameters
    ----------
    source : str
        The cell's code.

    Returns
    -------
    str
        The code without the bookkeeping lines; blank runs they leave are collapsed.
    """
    lines = source.splitlines()
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _GLUE_START.match(line):
            i = _balanced_end(lines, i) + 1
            continue
        if _MARKERS.match(line) or _GLUE_IMPORT.match(line):
            i += 1
            continue
        kept.append(_SOLUTION_SUFFIX.sub("", line))
        i += 1
    text = "\n".join(kept)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def short_traceback(text: str, frames: int = 2) -> str:
    """The end of a traceback: the last ``frames`` frames and the exception line(s).

    A frame starts at a line that begins with ``File "...``, ``Cell In[...]`` or an IPython
    ``path:line, in func`` header. The dropped frames are counted in one line.
    """
    lines = _ANSI.sub("", text).rstrip("\n").splitlines()
    starts = [i for i, line in enumerate(lines)
              if re.match(r"^\s*(File \"|Cell In\[|\S+\.py:\d+, in )", line)]
    if len(starts) <= frames:
        return "\n".join(lines)
    head = [lines[0]] if lines and lines[0].lstrip().startswith(("Traceback", "---")) else []
    cut = starts[-frames]
    dropped = len(starts) - frames
    return "\n".join(head + [f"    ... {dropped} frame{'s' * (dropped > 1)} inside the libraries ..."]
                     + lines[cut:])


def image_descriptions(nb) -> dict[str, str]:
    """sha256 of each PNG/JPEG/SVG output -> the ``text/plain`` description of the same output.

    myst-nb names an output image by the SHA-256 of its bytes, so the hash finds the description.
    Matplotlib's default text (``<Figure size 640x480 with 1 Axes>``) is not a description.
    """
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            d = out.get("data", {})
            text = d.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if not text or re.fullmatch(r"<(Figure|Figure size [^>]*)>", text.strip()) or \
                    text.strip().startswith("<Figure size"):
                continue
            for mime in ("image/png", "image/jpeg"):
                if mime in d:
                    content = d[mime]
                    content = "".join(content) if isinstance(content, list) else content
                    found[hashlib.sha256(base64.b64decode(content)).hexdigest()] = text.strip()
            if "image/svg+xml" in d:
                svg = d["image/svg+xml"]
                svg = "".join(svg) if isinstance(svg, list) else svg
                import os
                found[hashlib.sha256(os.linesep.join(svg.splitlines()).encode()).hexdigest()] = \
                    text.strip()
    return found


def chapter_number(docname: str) -> str:
    """The chapter's number from its file name: ``"notebooks/04_word2vec"`` -> ``"4"`` ("" if none)."""
    found = re.match(r"(\d+)_", docname.rsplit("/", 1)[-1])
    return str(int(found.group(1))) if found else ""


def caption_text(description: str, limit: int = 240) -> str:
    """A figure's visible caption from its description: the first sentence, capitalised.

    The alt text keeps the whole description; the caption is its first sentence (up to a period
    followed by a space and a capital), cut at a word boundary near ``limit`` characters.
    """
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z“\"(])", text, maxsplit=1)[0]
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0].rstrip(",;:—– ") + " …"
    return first[:1].upper() + first[1:]


class course_figure(nodes.figure):
    """A docutils ``figure`` that Sphinx does not number itself: Sphinx numbers captioned figures
    by their exact class (``numfig``: "Fig. 5"); this one, written like a figure, keeps only its
    caption's per-chapter number ("Figure 4.5.")."""


def add_figure_captions(doctree, docname: str) -> int:
    """Wrap every described output image of a chapter in a figure with a visible caption.

    Each image in a cell's output that has alt text (its description) becomes a docutils
    ``figure`` (HTML ``<figure>``) holding the image and a ``caption`` (``<figcaption>``):
    "Figure 4.2. <first sentence of the description>", numbered in the order of the page, with an
    id (``figure-4-2``) and a permalink. An image already inside a figure with a caption (a glued
    figure with its own caption) keeps that caption and is not numbered again.

    Returns the number of captions added.
    """
    chapter = chapter_number(docname)
    count = 0
    for image in list(doctree.findall(nodes.image)):
        parent = image.parent
        if not image.get("alt") or parent is None:
            continue
        owner = parent
        while owner is not None and not (isinstance(owner, nodes.container)
                                         and "cell_output" in owner.get("classes", [])):
            if isinstance(owner, nodes.figure):
                break
            owner = owner.parent
        if owner is None or isinstance(owner, nodes.figure):   # not an output, or captioned
            continue
        count += 1
        label = f"Figure {chapter}.{count}" if chapter else f"Figure {count}"
        figure_id = nodes.make_id(label)
        figure = course_figure("", classes=["course-figure"], ids=[figure_id])
        caption = nodes.caption("", "", nodes.inline("", f"{label}.", classes=["course-figure-number"]),
                                nodes.Text(" "),
                                nodes.inline("", caption_text(image["alt"]),
                                             classes=["course-figure-text"]))
        parent.replace(image, figure)
        figure += image
        figure += caption
        doctree.ids[figure_id] = figure
    return count


def uncaptioned_figures(page: str, chapter: str) -> list[str]:
    """The ``src`` of each image in a cell output of an HTML page that has no visible caption.

    An image passes when it sits in a ``<figure>`` whose ``<figcaption>`` has text: for the
    figures :func:`add_figure_captions` made (class ``course-figure``), a text that starts with
    "Figure <chapter>.<k>." (k = 1, 2, ... in page order) and says more than the number.
    """
    from html.parser import HTMLParser

    void = {"img", "br", "hr", "meta", "link", "input", "source", "wbr", "area", "col", "embed"}

    class Page(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.stack: list[tuple[str, list[str]]] = []
            self.images: list[tuple[str, dict | None]] = []      # (src, its figure or None)
            self.figures: list[dict] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            classes = (a.get("class") or "").split()
            if tag == "img" and any("cell_output" in c for _, c in self.stack):
                figure = next((f for f in reversed(self.figures) if f["open"]), None)
                self.images.append((a.get("src", ""), figure))
            if tag in void:
                return
            if tag == "figure":
                self.figures.append({"open": True, "course": "course-figure" in classes,
                                     "caption": "", "in_caption": False})
            if tag == "figcaption" and self.figures and self.figures[-1]["open"]:
                self.figures[-1]["in_caption"] = True
            self.stack.append((tag, classes))

        def handle_endtag(self, tag):
            if tag in void or tag not in [t for t, _ in self.stack]:
                return
            while self.stack:
                top, _ = self.stack.pop()
                open_figures = [f for f in self.figures if f["open"]]
                if top == "figcaption" and open_figures:
                    open_figures[-1]["in_caption"] = False
                if top == "figure" and open_figures:
                    open_figures[-1]["open"] = False
                if top == tag:
                    break

        def handle_data(self, data):
            for f in self.figures:
                if f["open"] and f["in_caption"]:
                    f["caption"] += data

    parser = Page()
    parser.feed(page)
    missing, k = [], 0
    for src, figure in parser.images:
        text = " ".join(figure["caption"].split()) if figure else ""
        if figure is not None and figure["course"]:
            k += 1
            number = f"Figure {chapter}.{k}." if chapter else f"Figure {k}."
            if not text.startswith(number) or not text[len(number):].strip():
                missing.append(src)
        elif not text:
            missing.append(src)
    return missing


def glued(nb) -> dict[str, str]:
    """name -> ``text/plain`` of every value the executed notebook glued."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                values[meta["name"]] = out["data"].get(f"{meta.get('mime_prefix', '')}text/plain", "")
    return values


def _gpu_time(chapter: str) -> str:
    """The full profile's time on a GPU, from ``benchmarks/results/cuda-*.json``, or a plain 'not yet'."""
    for path in sorted((ROOT / "benchmarks" / "results").glob("cuda-*.json")):
        try:
            records = json.loads(path.read_text())
        except ValueError:
            continue
        for rec in records if isinstance(records, list) else records.get("records", []):
            if rec.get("name") == f"{chapter}_full_seconds_gpu" and rec.get("value"):
                return f"{rec['value'] / 60:.0f} min on {rec.get('device', path.stem)}"
    return "not measured on a GPU yet"


def run_card_html(chapter: str, info: dict, seconds, executed_at, commit: str, gpu: str) -> str:
    """The card under a chapter's title: how this page ran.

    Parameters
    ----------
    chapter : str
        The notebook's stem, e.g. ``"01_cnn_mnist"``.
    info : dict
        What the run recorded (:func:`course_lib.book.record_run`): ``profile``, ``device``,
        ``sources`` (list of str), ``commit``; missing keys read "not recorded".
    seconds : float or None
        Measured execution time of this notebook.
    executed_at : datetime or None
        When it was executed.
    commit, gpu : str
        The commit of the build (used when the run did not record one), the full-profile GPU time.
    """
    def esc(x):
        return html.escape(str(x))

    when = executed_at.strftime("%Y-%m-%d %H:%M UTC") if executed_at else "not recorded"
    took = f"{seconds:.0f} s" if seconds else "not recorded"
    rows = [("profile", info.get("profile", "not recorded")),
            ("device", info.get("device", "not recorded")),
            ("this run", took),
            ("full profile", gpu),
            ("executed", when),
            ("commit", info.get("commit") or commit or "not recorded")]
    sources = info.get("sources") or []
    cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in rows)
    src = ("".join(f"<li>{esc(s)}</li>" for s in sources) if sources
           else "<li>no dataset loaded through course_lib.data</li>")
    return (f'<aside class="course-run-card" aria-label="How this page ran">'
            f'<p class="course-run-card-title">How this page ran</p><dl>{cells}</dl>'
            f'<details><summary>data sources ({len(sources)})</summary><ul>{src}</ul></details>'
            f'</aside>')


def _build_commit() -> str:
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------- Sphinx wiring
def _executed(docname: str):
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from course_lib import book

    path = ROOT / f"{docname}.ipynb"
    if not docname.startswith("notebooks/") or not path.is_file():
        return None
    return book.executed_notebook(path, ROOT)


def _on_doctree_read(app, doctree):
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    docname = app.env.docname
    found = _executed(docname)
    if found is None:
        return
    nb, seconds, executed_at = found
    descriptions = image_descriptions(nb)
    for container in list(doctree.findall(nodes.container)):
        classes = container.get("classes", [])
        if "cell_input" in classes:
            for block in list(container.findall(nodes.literal_block)):
                shown = reader_source(block.astext())
                block.children = [nodes.Text(shown)]
                block.rawsource = shown
            if not container.astext().strip():           # the cell held only bookkeeping
                container.parent.remove(container)
        elif "cell_output" in classes:
            tagged = "tag_raises-exception" in container.parent.get("classes", [])
            for block in list(container.findall(nodes.literal_block)):
                if tagged and "traceback" in block.get("classes", []):
                    shown = short_traceback(block.astext())
                    block.children = [nodes.Text(shown)]
                    block.rawsource = shown
            for image in list(container.findall(nodes.image)):
                key = Path(image["uri"]).stem
                alt = descriptions.get(key)
                if alt:
                    image["alt"] = alt
                elif not image.get("alt"):
                    logger.warning(f"{docname}: a figure has no description (alt text); describe it "
                                   f"with course_lib.viz.describe_figure(fig, ...)", location=docname)
    add_figure_captions(doctree, docname)
    import ast

    def parsed(text, kind):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return kind()
        return value if isinstance(value, kind) else kind()

    values = glued(nb)
    info = parsed(values.get("course_run", "{}"), dict)
    sources = [s for key in sorted((k for k in values if k.startswith("course_run_sources_")),
                                   key=lambda k: int(k.rsplit("_", 1)[1]))
               for s in parsed(values[key], list)]
    info["sources"] = list(dict.fromkeys(sources))
    chapter = docname.split("/")[-1]
    card = nodes.raw("", run_card_html(chapter, info, seconds, executed_at, app.config.course_commit,
                                       _gpu_time(chapter)), format="html")
    title = next(iter(doctree.findall(nodes.title)), None)
    if title is not None:
        section = title.parent
        section.insert(section.index(title) + 1, card)


def _page_context(app, pagename, templatename, context, doctree):
    """Two console errors of every page, fixed: sphinx-thebe adds its ``const THEBE_JS_URL``
    script twice (the second copy is a SyntaxError), and the theme's colour mode is empty ("Got
    invalid theme mode"), so it is set to follow the reader's system setting."""
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or "",            # None and "" both mean inline
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    if "script_files" in context:
        context["script_files"][:] = kept


def _register_bibliography_style() -> None:
    """The references page labels entries as the text cites them: "Chen et al., 2020".

    A pybtex label style (author-year) and a formatting style ``course`` that uses it, sorted by
    author and year; selected by ``bibtex_default_style: course`` in ``_config.yml``.
    """
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style as Unsrt
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = list(self._labels(sorted_entries))
            for label in labels:                  # "Mikolov et al., 2013a" and "…, 2013b"
                twins = [i for i, other in enumerate(labels) if other == label]
                if len(twins) > 1:
                    for k, i in enumerate(twins):
                        labels[i] = f"{label}{chr(ord('a') + k)}"
            yield from labels

        def _labels(self, sorted_entries):
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [" ".join(p.last_names) or " ".join(p.first_names) for p in people]
                if not names:
                    who = entry.fields.get("organization") or entry.fields.get("title", "?").split(":")[0]
                elif len(names) == 1:
                    who = names[0]
                elif len(names) == 2:
                    who = f"{names[0]} and {names[1]}"
                else:
                    who = f"{names[0]} et al."
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class CourseStyle(Unsrt):
        default_label_style = "course_author_year"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "course_author_year", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "course", CourseStyle, force=True)


def _executed_downloads(app, exception):
    """The page's ``.ipynb`` download (``_sources/notebooks/NN.ipynb``) is the executed notebook,
    with the outputs this page shows, not the source without outputs."""
    if exception is not None or app.builder.format != "html":
        return
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = Path(app.outdir) / "_sources" / "notebooks" / path.name
        found = _executed(f"notebooks/{path.stem}")
        if target.is_file() and found is not None:
            nbformat.write(found[0], target)


def _on_builder_inited(app):
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))
    app.config.course_commit = _build_commit()


def setup(app):
    _register_bibliography_style()
    visit = (lambda self, node: self.visit_figure(node), lambda self, node: self.depart_figure(node))
    app.add_node(course_figure, html=visit, latex=visit, text=visit)
    app.add_config_value("course_commit", "", "env")
    app.connect("builder-inited", _on_builder_inited)
    app.connect("doctree-read", _on_doctree_read)
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _executed_downloads)   # after the others add theirs
    app.add_css_file("course.css")
    app.add_js_file("course.js", loading_method="defer")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
