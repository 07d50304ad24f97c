"""The book as ``make book`` builds it: its executed notebooks, and its HTML in headless Chromium.

``make test`` runs ``make book`` first: myst-nb executes every chapter notebook into the book's
jupyter-cache (``_build/.jupyter_cache``) and the build fails on any cell error, stderr output or
Sphinx warning. These tests check that same execution (one execution serves the book and the
tests): every published notebook ran with its current code, no cell wrote to stderr, no cell raised
unless it is a pitfall tagged ``raises-exception``. Run alone, the fixture builds the book when
``_build/html`` is missing or older than the sources.
"""
import ast
import functools
import http.server
import os
import re
import unicodedata
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
    if not book.is_built(ROOT):       # `make test` built it just before; a lone pytest run builds here
        assert book.build(ROOT) == 0, "jupyter-book build failed: see the output above"
    return HTML


@pytest.fixture(scope="module")
def executed(built):
    """path -> the executed notebook the book build stored in its cache."""
    out = {}
    for path in book.chapter_notebooks(ROOT):
        found = book.executed_notebook(path, ROOT)
        assert found is not None, f"{path.name}: no execution of its current code in the book's cache"
        out[path.stem] = found[0]
    return out


def stderr_outputs(nb) -> list[str]:
    """``"cell N: first line"`` for every stderr stream in an executed notebook."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                first = out.get("text", "").strip().splitlines() or [""]
                found.append(f"cell {i}: {first[0][:160]}")
    return found


def unexpected_errors(nb) -> list[str]:
    """Cells that raised, except pitfalls tagged ``raises-exception``."""
    return [f"cell {i}: {out.get('ename')}: {out.get('evalue', '')[:160]}"
            for i, cell in enumerate(nb.cells) for out in cell.get("outputs", [])
            if out.get("output_type") == "error"
            and "raises-exception" not in cell.get("metadata", {}).get("tags", [])]


def test_stderr_check_finds_stderr():
    """The check below can fail: a notebook with one stderr stream is caught, stdout is not."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="fine\n")]
    assert stderr_outputs(nb) == []
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stderr", text="W0000 noise\n"))
    assert stderr_outputs(nb) == ["cell 0: W0000 noise"]
    nb.cells[0].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                                                      traceback=[]))
    assert unexpected_errors(nb) == ["cell 0: ValueError: bad"]
    nb.cells[0].metadata["tags"] = ["raises-exception"]
    assert unexpected_errors(nb) == []


@pytest.mark.parametrize("nb", [p.stem for p in book.chapter_notebooks(ROOT)])
def test_executed_notebook_has_no_stderr_and_no_error(executed, nb):
    """Every cell of the book's execution ran, wrote nothing to stderr, and raised only on purpose."""
    executed_nb = executed[nb]
    code = [c for c in executed_nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code and all(c.get("execution_count") for c in code), f"{nb}: a code cell did not run"
    assert stderr_outputs(executed_nb) == [], f"{nb}: stderr in cell outputs (fix it at its source)"
    assert unexpected_errors(executed_nb) == []


def test_notebook_times_come_from_the_book_execution(executed):
    import json

    times = json.loads((ROOT / "_build" / "notebook_times.json").read_text())
    for path in book.chapter_notebooks(ROOT):
        entry = times[str(path.relative_to(ROOT))]
        assert entry["passed"] and entry["seconds"] > 0, (path.name, entry)


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
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})     # console errors are checked
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
    nb = book.executed_notebook(notebook, ROOT)[0]
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
    least = 2 if nb == "09_deploy" else 3          # the service chapter draws latency and drift only
    assert len(imgs) >= least and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0
                                      for i in imgs)
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
    assert "[Chen et al., 2020]" in body and "[LeCun et al., 1998]" in body   # labels read as the text cites
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
    shown = [r.find_elements(By.TAG_NAME, "td")[0].text.strip()
             for t in tables for r in t.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert len(tables) >= 7 and sorted(shown) == sorted(r["id"] for r in expected)  # one table a chapter
    column = browser.find_element(By.CSS_SELECTOR, "article.bd-article").size["width"]
    assert all(t.size["width"] <= column + 1 for t in tables), "a benchmark table is wider than the column"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Machines" in body and "cpu-" in body
    # the literature column cites entries of the bibliography (resolved links, no "??")
    cites = browser.find_elements(By.CSS_SELECTOR, ".benchmark-results li a[href*='references']")
    assert cites and "??" not in body


# --------------------------------------------------------------------------- every screen
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|root|home|work|usr|opt|var|Users|content)/[\w.-]+")


def test_absolute_path_pattern_can_fail():
    assert ABSOLUTE_PATH.search("mirror /work/shared/data/mnist/t10k.gz")
    assert ABSOLUTE_PATH.search("saved to /tmp/abc/model.pt")
    assert not ABSOLUTE_PATH.search("mirror mnist/t10k.gz from https://host.org/usr/x and a/b/c")


@pytest.mark.parametrize("nb", [p.stem for p in book.chapter_notebooks(ROOT)])
def test_outputs_show_no_machine_paths(executed, nb):
    """Outputs name sources relative to the mirror, cache or package, never this machine's paths."""
    found = []
    for i, cell in enumerate(executed[nb].cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            found += [f"cell {i}: {m.group(0)}" for m in ABSOLUTE_PATH.finditer(text)]
    assert found == []


def _phone(browser, on: bool):
    if on:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
    else:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("nb", [p.stem for p in book.chapter_notebooks(ROOT)])
def test_chapter_on_a_phone(browser, site, nb):
    """390 px: no sideways scroll, the menu and contents buttons open their drawers."""
    from selenium.webdriver.common.by import By

    _phone(browser, True)
    try:
        _open(browser, f"{site}/notebooks/{nb}.html")
        assert browser.execute_script("return window.innerWidth") == 390
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        for kind in ("primary", "secondary"):
            _open(browser, f"{site}/notebooks/{nb}.html")
            visible = [b for b in browser.find_elements(By.CSS_SELECTOR, f".{kind}-toggle") if b.is_displayed()]
            assert visible, f"no visible {kind} sidebar button"
            visible[0].click()
            opened = browser.execute_script(
                f"const d = document.getElementById('pst-{kind}-sidebar-modal'); return !!(d && d.open);")
            assert opened, f"the {kind} sidebar button did not open its drawer"
            links = [a for a in browser.find_elements(By.CSS_SELECTOR, f"#pst-{kind}-sidebar-modal a")
                     if a.is_displayed()]
            assert links, f"the {kind} drawer shows no link"
    finally:
        _phone(browser, False)


def test_primary_button_collapses_the_sidebar_on_desktop(browser, site):
    from selenium.webdriver.common.by import By

    _open(browser, f"{site}/notebooks/01_cnn_mnist.html")
    sidebar = browser.find_element(By.CSS_SELECTOR, ".bd-sidebar-primary")
    assert sidebar.is_displayed()
    [b for b in browser.find_elements(By.CSS_SELECTOR, ".primary-toggle") if b.is_displayed()][0].click()
    assert not sidebar.is_displayed()


@pytest.mark.parametrize("nb", [p.stem for p in book.chapter_notebooks(ROOT)])
def test_figures_have_alt_text_and_the_page_a_run_card(browser, site, nb):
    from selenium.webdriver.common.by import By

    _open(browser, f"{site}/notebooks/{nb}.html")
    imgs = browser.find_elements(By.CSS_SELECTOR, ".cell_output img")
    assert imgs
    for img in imgs:
        alt = (img.get_attribute("alt") or "").strip()
        assert len(alt) > 10 and not re.search(r"\.(png|jpe?g|svg)$|_images/|^<Figure", alt), \
            f"image without a real description: {alt!r} ({img.get_attribute('src')})"
    card = browser.find_element(By.CSS_SELECTOR, ".course-run-card")
    text = card.text
    for field in ("profile", "device", "this run", "full profile", "executed", "commit"):
        assert field in text
    assert "not recorded" not in text.split("full profile")[0], text   # profile, device, time: from the run
    code = "\n".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".cell_input pre"))
    assert "glue(" not in code and "# BEGIN SOLUTION" not in code and "# SOLUTION" not in code


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb(...)``/``rgba(...)`` colours."""
    def luminance(css):
        r, g, b = (int(float(v)) / 255 for v in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


CAPTIONS_JS = """
const W = arguments[0];
function background(e) {
  for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c;
  }
  return 'rgb(255, 255, 255)';
}
return [...document.querySelectorAll('.cell_output img')].map(img => {
  const fig = img.closest('figure'), cap = fig && fig.querySelector('figcaption');
  if (!cap) return {src: img.getAttribute('src'), text: ''};
  const r = cap.getBoundingClientRect(), s = getComputedStyle(cap);
  return {src: img.getAttribute('src'), text: cap.innerText.trim(), height: r.height,
          right: r.right, visible: s.display !== 'none' && s.visibility !== 'hidden'
          && parseFloat(s.opacity) > 0.5, color: s.color, background: background(cap),
          fontSize: parseFloat(s.fontSize)};
});
"""


@pytest.mark.parametrize("nb", [p.stem for p in book.chapter_notebooks(ROOT)])
def test_every_figure_has_a_visible_caption(browser, site, built, nb):
    """Each figure of a chapter shows a caption under it ("Figure 4.2. ..."), numbered in page
    order, legible (contrast >= 4.5) in light and dark mode, within the column on a phone."""
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import course_pages

    chapter = course_pages.chapter_number(nb)
    page = (built / "notebooks" / f"{nb}.html").read_text()
    assert course_pages.uncaptioned_figures(page, chapter) == []
    for mode, phone in (("light", False), ("dark", False), ("light", True)):
        _phone(browser, phone)
        try:
            _open(browser, f"{site}/notebooks/{nb}.html")
            browser.execute_script(f"document.documentElement.dataset.theme = '{mode}';")
            width = browser.execute_script("return window.innerWidth")
            shown = browser.execute_script(CAPTIONS_JS, width)
        finally:
            _phone(browser, False)
        assert shown, "no figure on this chapter page"
        for k, cap in enumerate(shown, 1):
            where = f"{mode}{' phone' if phone else ''}: {cap['src']}"
            assert cap["text"].startswith(f"Figure {chapter}.{k}.") and cap["visible"] \
                and cap["height"] > 10, f"no visible caption: {cap} ({where})"
            assert _contrast(cap["color"], cap["background"]) >= 4.5 and cap["fontSize"] >= 12, \
                f"caption hard to read: {cap} ({where})"
            assert cap["right"] <= width + 1, f"caption wider than the screen: {cap} ({where})"


def test_no_console_errors_and_a_favicon(browser, site):
    for page in ("book/intro.html", "notebooks/01_cnn_mnist.html", "book/benchmarks.html"):
        browser.get_log("browser")                       # drop what earlier pages logged
        _open(browser, f"{site}/{page}")
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], page
    assert (HTML / "_static" / "favicon.svg").is_file()
    from selenium.webdriver.common.by import By
    assert browser.find_elements(By.CSS_SELECTOR, "link[rel='icon']")
    assert "By the course contributors" in browser.find_element(By.TAG_NAME, "body").text


def test_downloads_executed_notebook_and_pdf(built, executed):
    """The page's .ipynb download has the outputs; the book's PDF has every chapter, code wrapped."""
    import nbformat
    from pypdf import PdfReader

    for path in book.chapter_notebooks(ROOT):
        download = nbformat.read(HTML / "_sources" / "notebooks" / path.name, as_version=4)
        outputs = [o for c in download.cells for o in c.get("outputs", [])]
        assert outputs and any("image/png" in o.get("data", {}) for o in outputs), path.name
    pdf = PdfReader(HTML / "course.pdf")
    text = "\n".join(page.extract_text() or "" for page in pdf.pages)
    assert len(pdf.pages) >= 2 * len(book.chapter_notebooks(ROOT))
    for path in book.chapter_notebooks(ROOT):
        title = next(c.source for c in nbformat.read(path, as_version=4).cells
                     if c.cell_type == "markdown" and c.source.startswith("# "))
        # PDF text breaks and hyphenates lines and sets "fi" as a ligature (NFKC spells it out)
        letters = lambda t: re.sub(r"[^a-z]", "", unicodedata.normalize("NFKC", t).lower())
        first_words = " ".join(title[2:].split()[:3])
        assert letters(first_words) in letters(text), f"{path.name} missing from the PDF"
