"""Build the book and check the HTML as a reader sees it, in headless Chromium.

The build executes the notebooks (or reuses the execution that nbval stored in the jupyter-cache
when ``make test`` ran the notebooks first) and fails on any cell error or Sphinx warning.
"""
import ast
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from course_lib import book, colab

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
pytestmark = pytest.mark.book
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def built():
    assert book.build(ROOT) == 0, "jupyter-book build failed: see the output above"
    return HTML


@pytest.fixture(scope="module")
def site(built):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: `make test` installs them (apt-get)")
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-component-update", "--no-first-run",
                 "--window-size=1300,2000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _glued_values(notebook: Path) -> dict:
    """name -> text/plain of every value the executed notebook glued (from the jupyter-cache)."""
    from jupyter_cache import get_cache

    cache = get_cache(str(ROOT / "_build" / ".jupyter_cache"))
    record = cache.match_cache_notebook(notebook_node(notebook))
    nb = cache.get_cache_bundle(record.pk).nb
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                values[meta["name"]] = out["data"][f"{meta['mime_prefix']}text/plain"]
    return values


def notebook_node(path):
    import nbformat
    return nbformat.read(path, as_version=4)


def _open(browser, url):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


@pytest.mark.parametrize("nb", [p.stem for p in book.notebooks(ROOT)])
def test_chapter_page_renders_math_glue_figures_and_colab_link(browser, site, nb):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, f"{site}/notebooks/{nb}.html")
    # math: MathJax (served with the book) turned every $$...$$ into rendered containers
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container"))
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "$$" not in text and "\\frac" not in text and "\\sum" not in text, "raw LaTeX on the page"
    # no error output from any cell, except cells tagged raises-exception: a chapter's pitfall runs
    # the broken code on purpose and shows its error (nbval and myst-nb accept that tag)
    allowed = ".tag_raises-exception"
    assert not browser.find_elements(By.CSS_SELECTOR, f".cell:not({allowed}) .output.traceback, "
                                     ".output.error, .cell_output .stderr")
    for cell in browser.find_elements(By.CSS_SELECTOR, allowed):
        assert cell.find_elements(By.CSS_SELECTOR, ".output.traceback"), "raises-exception cell shows no error"
    outside = browser.execute_script(f"const b = document.body.cloneNode(true); b.querySelectorAll("
                                     f"'{allowed}').forEach(e => e.remove()); return b.innerText;")
    assert "Traceback (most recent call last)" not in outside
    # glued numbers: every glue role filled, and the values are those the executed notebook stored
    pasted = browser.find_elements(By.CSS_SELECTOR, "span.pasted-text")
    assert len(pasted) >= 5 and all(p.text.strip() for p in pasted)
    glued = _glued_values(ROOT / "notebooks" / f"{nb}.ipynb")
    shown = {p.text.strip() for p in pasted}
    for name, fmt in _number_roles(ROOT / "notebooks" / f"{nb}.ipynb"):
        value = ast.literal_eval(glued[name])     # int stays int, so "{:,}" gives "5,000"
        assert format(value, fmt) in shown, f"glued {name}={value} not shown as {format(value, fmt)!r}"
    # figures were rendered from the run
    imgs = browser.find_elements(By.CSS_SELECTOR, ".cell_output img")
    assert len(imgs) >= 3 and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)
    # the Colab launch entries open this chapter's Colab editions (the student version first, then
    # the full chapter) on the colab branch of the repository set in _config.yml
    colab_links = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='colab.research.google.com']")}
    paths = colab.edition_paths(nb)
    assert colab.colab_url(paths["chapter"], book.repo_url(ROOT)) in colab_links
    if _is_master(ROOT / "notebooks" / f"{nb}.ipynb"):
        assert colab.colab_url(paths["student"], book.repo_url(ROOT)) in colab_links
    # exercises: prompts shown, solutions folded behind a toggle, no test code on the page
    source = browser.page_source
    assert "test_q1_hidden" not in source and "test_q1_public" not in source and "BEGIN QUESTION" not in source
    if _is_master(ROOT / "notebooks" / f"{nb}.ipynb"):
        assert "Question 1" in text
        folded = browser.find_elements(By.CSS_SELECTOR, ".tag_hide-input details, .tag_hide-input .toggle-details")
        assert folded, "solutions should be folded (hide-input)"
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(exist_ok=True)
    browser.save_screenshot(str(shots / f"{nb}.png"))


def _is_master(notebook: Path) -> bool:
    from course_lib.grading import is_master
    return is_master(notebook)


def _number_roles(notebook: Path):
    """(name, format) of every ``{glue:text}`name:fmt``` role with a numeric format in the notebook."""
    nb = notebook_node(notebook)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return sorted(set(re.findall(r"\{glue:text\}`(\w+):([^`]*[%fde,])`", md)))


def test_intro_setup_and_references_pages(browser, site):
    from selenium.webdriver.common.by import By

    _open(browser, f"{site}/book/intro.html")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "pre-trained" in body.lower() and "fine-tuned" in body.lower()
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "article a")]
    assert any(h and h.endswith("notebooks/01_cnn_mnist.html") for h in links)
    _open(browser, f"{site}/book/references.html")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Gradient-based learning applied to document recognition" in body
    _open(browser, f"{site}/book/setup.html")
    assert "COURSE_DATA_MIRROR" in browser.find_element(By.TAG_NAME, "body").text


def test_benchmarks_page_shows_one_row_per_result(browser, site):
    """The appendix table is generated from benchmarks/results/*.json at build time."""
    import sys

    from selenium.webdriver.common.by import By

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import benchmark_table

    _open(browser, f"{site}/book/benchmarks.html")
    tables = browser.find_elements(By.CSS_SELECTOR, ".benchmark-results table")
    expected = benchmark_table.table_rows()
    assert len(tables) == 2 and expected          # the numbers, then what they were measured on
    for table in tables:
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        shown = [r.find_elements(By.TAG_NAME, "td")[0].text.strip() for r in rows]
        assert shown == [r["record"] for r in expected]
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Machines:" in body and "cpu-" in body
    # the literature column cites entries of the bibliography (resolved links, no "??")
    cites = browser.find_elements(By.CSS_SELECTOR, ".benchmark-results table a[href*='references']")
    assert cites and "??" not in body
