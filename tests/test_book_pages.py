"""The book's page extension (book/_ext/course_pages.py) and the figure descriptions it shows."""
import base64
import datetime as dt
import hashlib
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course_lib import book, data, viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import course_pages  # noqa: E402


def test_reader_source_hides_glue_and_otter_markers_only():
    source = '''from course_lib.book import glue
acc = evaluate(model)          # the test accuracy
glue("test_acc", acc)
glue("table", df.round(3),
     display=False)
print(f"glue(x) in a string stays: {acc:.2f}")
x = compute()  # SOLUTION
# BEGIN SOLUTION
y = x + 1
# END SOLUTION
book.glue("n", len(x))'''
    shown = course_pages.reader_source(source)
    assert shown.splitlines() == ["acc = evaluate(model)          # the test accuracy",
                                  'print(f"glue(x) in a string stays: {acc:.2f}")',
                                  "x = compute()", "y = x + 1"]


def test_reader_source_keeps_a_glue_call_with_a_closing_paren_inside_a_string():
    shown = course_pages.reader_source('glue("label", "a ) b")\nz = 1')
    assert shown == "z = 1"


def test_short_traceback_keeps_the_last_frames_and_the_error():
    tb = "\n".join(["Traceback (most recent call last):"]
                   + [f'  File "/lib/m{i}.py", line {i}, in f{i}\n    x{i}()' for i in range(6)]
                   + ["TypeError: forward() got an unexpected keyword argument 'labels'"])
    short = course_pages.short_traceback(tb, frames=2)
    assert short.startswith("Traceback (most recent call last):\n    ... 4 frames inside the libraries ...")
    assert 'File "/lib/m4.py"' in short and 'File "/lib/m5.py"' in short and "/lib/m3.py" not in short
    assert short.endswith("TypeError: forward() got an unexpected keyword argument 'labels'")
    assert course_pages.short_traceback("ValueError: x") == "ValueError: x"   # nothing to cut


def test_image_descriptions_are_found_by_the_image_hash():
    png = b"\x89PNG\r\n\x1a\nfake"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fig")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode(),
                                                     "text/plain": "loss against epoch"}),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(b"other").decode(),
                                                     "text/plain": "<Figure size 640x480 with 1 Axes>"})]
    found = course_pages.image_descriptions(nb)
    assert found == {hashlib.sha256(png).hexdigest(): "loss against epoch"}


def test_run_card_escapes_and_lists_every_field():
    html = course_pages.run_card_html("01_x", {"profile": "ci", "device": "cpu <2 cores>",
                                              "sources": ["mnist test: mirror mnist/t10k.gz"]},
                                      61.2, dt.datetime(2026, 12, 1, 7, 0), "abc123", "not measured")
    for text in ("profile", "ci", "cpu &lt;2 cores&gt;", "61 s", "2026-12-01 07:00", "abc123",
                 "data sources (1)", "mirror mnist/t10k.gz"):
        assert text in html
    assert "not recorded" in course_pages.run_card_html("01_x", {}, None, None, "", "x")


def test_figure_descriptions():
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([1, 2], label="train")
    axes[0].plot([2, 1], label="validation")
    axes[0].legend()
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[1].set_title("accuracy")
    assert viz.figure_description(fig) == \
        "2 panels: loss against epoch — lines: train, validation; “accuracy”"
    assert viz.figure_description(viz.describe_figure(fig, " Loss falls. ")) == "Loss falls."
    with pytest.raises(ValueError, match="non-empty string"):
        viz.describe_figure(fig, "  ")
    grid = viz.image_grid(np.zeros((3, 28, 28), np.uint8), labels=[7, 2, 1], preds=[7, 2, 4])
    assert viz.figure_description(grid) == \
        "a grid of 3 images (28×28 pixels); labels 7 predicted 7, 2 predicted 2, 1 predicted 4"
    plt.close("all")


def test_record_run_outside_ipython_returns_the_record(monkeypatch):
    monkeypatch.setattr(data, "_SERVED", {"wine": "package scikit-learn"})
    info = book.record_run("ci", "cpu")
    assert info["profile"] == "ci" and info["device"].startswith("cpu (")
    assert info["sources"] == ["wine: package scikit-learn"]


def _page_with_figures():
    """A doctree like myst-nb's: two described output images, one glued figure with a caption,
    and an image outside any cell output."""
    from docutils import nodes
    from docutils.utils import new_document
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser

    doc = new_document("page", get_default_settings(Parser))
    for alt in ("count against rank — lines: word counts. More text.", "loss against epoch"):
        out = nodes.container(classes=["cell_output"])
        out += nodes.container("", nodes.image(uri=f"{alt[:4]}.png", alt=alt), mime_type="image/png")
        doc += nodes.container("", out, classes=["cell"])
    glued = nodes.figure("", nodes.image(uri="g.png", alt="glued"), nodes.caption("", "its own"))
    doc += nodes.container("", nodes.container("", glued, classes=["cell_output"]), classes=["cell"])
    doc += nodes.paragraph("", "", nodes.image(uri="logo.png", alt="logo"))
    return doc


def test_figure_captions_are_numbered_per_chapter_and_not_doubled():
    from docutils import nodes

    doc = _page_with_figures()
    assert course_pages.add_figure_captions(doc, "notebooks/04_word2vec") == 2
    figures = [f for f in doc.findall(nodes.figure) if "course-figure" in f["classes"]]
    assert [f["ids"] for f in figures] == [["figure-4-1"], ["figure-4-2"]]
    assert [f.next_node(nodes.caption).astext() for f in figures] == [
        "Figure 4.1. Count against rank — lines: word counts.", "Figure 4.2. Loss against epoch"]
    assert [f.next_node(nodes.image)["alt"] for f in figures][0].endswith("More text.")  # alt: all
    captions = [c.astext() for c in doc.findall(nodes.caption)]
    assert captions.count("its own") == 1 and len(captions) == 3     # the glued figure: as it was
    assert not isinstance(list(doc.findall(nodes.image))[-1].parent, nodes.figure)  # not an output
    assert course_pages.chapter_number("book/intro") == ""
    assert course_pages.caption_text("x " * 400).endswith(" …")
    assert len(course_pages.caption_text("x " * 400)) <= 242


def test_figure_caption_check_fails_on_a_page_without_captions():
    """The built-book check (tests/test_book.py) counts images in cell outputs without a caption."""
    with_captions = ('<div class="cell_output"><figure class="course-figure" id="figure-4-1">'
                     '<img alt="a" src="x.png"/><figcaption><p><span class="caption-text">'
                     '<span class="course-figure-number">Figure 4.1.</span> A</span></p>'
                     '</figcaption></figure></div>')
    without = '<div class="cell_output"><img alt="a" src="x.png"/></div>'
    assert course_pages.uncaptioned_figures(with_captions, "4") == []
    assert course_pages.uncaptioned_figures(without, "4") == ["x.png"]
    assert course_pages.uncaptioned_figures(with_captions.replace("4.1", "4.2"), "4") == ["x.png"]
