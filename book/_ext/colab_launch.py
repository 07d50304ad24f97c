"""Sphinx extension: the rocket button's Colab entries open the Colab editions.

sphinx-book-theme points its Colab button at the page's source notebook on the repository's
branch (the *master*, solutions unfolded and hidden tests included). This extension, run after the
theme's launch buttons, points it at the learner's edition on the ``colab`` branch
(``python -m course_lib.colab build``, published by the book workflow): the **student version**
for a chapter with exercises, then adds a second entry for the **full chapter**. Both addresses
derive from the one repository URL (``repository.url`` in ``_config.yml``, which Jupyter Book
passes to the theme as ``repository_url``).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def _colab_buttons(app, pagename, templatename, context, doctree):
    from course_lib.colab import colab_url, edition_paths
    from course_lib.grading import is_master

    notebook = ROOT / f"{pagename}.ipynb"
    url = app.config.html_theme_options.get("repository_url", "")
    if not (pagename.startswith("notebooks/") and notebook.is_file() and url):
        return
    paths = edition_paths(notebook.stem)
    for group in context.get("header_buttons", []):
        buttons = group.get("buttons", []) if isinstance(group, dict) else []
        for i, button in enumerate(list(buttons)):
            if "colab.research.google.com" not in button.get("url", ""):
                continue
            full = dict(button, url=colab_url(paths["chapter"], url), text="Colab: full chapter",
                        tooltip="Open the full chapter (solutions folded) in Colab")
            if is_master(notebook):
                button.update(url=colab_url(paths["student"], url), text="Colab: exercises",
                              tooltip="Open the student version (the exercises to do) in Colab")
                buttons.insert(i + 1, full)
            else:
                button.update(full)
            return


def setup(app):
    app.connect("html-page-context", _colab_buttons, priority=502)   # after the theme's (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
