"""Claims are code: a chapter's conclusions as conditions its own run checks.

Every number in a chapter's prose is glued from the run (:func:`course_lib.book.glue`). This module
does the same for *conclusions* — "the fix beats the broken version", "pre-training helps when labels
are few", "these features cluster the classes":

- :func:`claim` states a lesson as a condition on the run's values. When the condition does not
  hold it raises :class:`ClaimError` with the statement and the values, so the cell fails — and with
  it nbval, CI and the book build — in every profile. With ``name=`` the statement is glued, so the
  prose can quote the checked sentence itself.
- :func:`verdict` picks the wording from the values ("helps" / "makes no measurable difference" /
  "hurts") where the honest result may go either way, and glues it.
- :func:`paired_comparison` compares two methods run on the same seeds (or draws, or test items):
  mean paired difference, a Student-t confidence interval, wins/losses and an exact two-sided sign
  test. Its :meth:`PairedComparison.verdict` says "better" only when the interval excludes zero.
- :func:`proportion_interval` (Wilson) and :func:`mcnemar` give intervals and a paired test for
  accuracies measured on a finite set of questions or test items.

Convention for the book's prose (checked by ``tests/test_claims.py``): a markdown sentence with a
comparative word ("better", "beats", "helps", "outperforms", "worse", ...) either holds a
``{glue:text}`` role whose name a ``claim``/``verdict``/``paired_comparison(..., name=)`` call of
the same notebook glues, or cites the literature it reports (``{cite}``), or is a question.

References
----------
- E. B. Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA.
- Q. McNemar (1947), "Note on the sampling error of the difference between correlated proportions".
- T. G. Dietterich (1998), "Approximate statistical tests for comparing supervised classification
  learning algorithms", Neural Computation 10(7) — why paired tests over seeds/items.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["ClaimError", "Claim", "claim", "verdict", "checked_claims", "PairedComparison",
           "paired_comparison", "sign_test", "proportion_interval", "mcnemar", "unbacked_sentences"]


class ClaimError(AssertionError):
    """A lesson that the run's own values contradict: the cell (and the build) must fail."""


@dataclass(frozen=True)
class Claim:
    """A checked statement: its text, the values it was checked on, and its margin (if given)."""

    statement: str
    values: dict = field(default_factory=dict)
    margin: float | None = None
    name: str | None = None

    def __str__(self) -> str:
        margin = "" if self.margin is None else f" (margin {self.margin:.4g})"
        return f"✓ {self.statement}{margin}"


_CHECKED: list[Claim] = []


def checked_claims() -> list[Claim]:
    """The claims that held so far in this process (in order): a chapter can print them as a summary."""
    return list(_CHECKED)


def _format_values(values: Mapping) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        if isinstance(v, np.ndarray):
            return np.array2string(v, precision=4, threshold=12)
        return repr(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items())


def _glue(name: str, value) -> None:
    from .book import glue

    glue(name, value)


def _log(record: dict) -> None:
    from . import settings

    path = settings.claims_log()            # optional: collect margins over seeds/runs
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")


def claim(statement: str, condition, *, values: Mapping | None = None, margin: float | None = None,
          name: str | None = None, glue_values: bool = False) -> Claim:
    """Check that ``condition`` holds for this run; raise :class:`ClaimError` otherwise.

    Parameters
    ----------
    statement : str
        The lesson in words, as the prose states it ("the fixed model beats the broken one on mean
        accuracy and loses no class").
    condition : bool
        The lesson as a condition on the run's values. A numpy/torch boolean scalar is accepted;
        an array is rejected (use ``.all()`` or ``.any()`` to say which one you mean).
    values : mapping, optional
        The numbers the condition reads, shown in the error message (and glued with ``glue_values``).
    margin : float, optional
        By how much the condition holds (e.g. ``fixed_mean - broken_mean``), reported beside the claim.
        When given, it must be positive exactly when ``condition`` is true.
    name : str, optional
        Glue the statement under this name, so the prose can quote the checked sentence.
    glue_values : bool, default=False
        Also glue every entry of ``values`` under its key.

    Returns
    -------
    Claim
        The claim that held (also recorded in :func:`checked_claims`).

    Raises
    ------
    ClaimError
        When the condition is false: the message quotes the statement and the values.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"claim statement must be a non-empty sentence, got {statement!r}.")
    if isinstance(condition, np.ndarray) and condition.size != 1 or (
            hasattr(condition, "numel") and condition.numel() != 1):
        raise TypeError(f"claim {statement!r}: condition is an array of shape {tuple(condition.shape)};"
                        " reduce it with .all() or .any() to say which one the lesson means.")
    holds = bool(condition)
    values = dict(values or {})
    if margin is not None:
        margin = float(margin)
        if math.isnan(margin):
            raise ClaimError(f"claim {statement!r}: margin is NaN ({_format_values(values)}).")
        if (margin > 0) != holds:
            raise ValueError(f"claim {statement!r}: margin {margin:.4g} disagrees with the condition "
                             f"({holds}); pass the margin by which the condition holds.")
    _log({"statement": statement, "holds": holds, "margin": margin, "name": name,
          "values": {k: v for k, v in values.items() if isinstance(v, (int, float, np.number, bool, str))}})
    if not holds:
        detail = f" — values: {_format_values(values)}" if values else ""
        extra = "" if margin is None else f" (margin {margin:.4g})"
        raise ClaimError(f"The run contradicts the lesson: {statement!r}{extra}{detail}. "
                         "Change the experiment or the claim; never tune the claim until it passes.")
    result = Claim(statement, values, margin, name)
    _CHECKED.append(result)
    if name is not None:
        _glue(name, statement)
    if glue_values:
        for key, value in values.items():
            _glue(key, value)
    return result


def verdict(name: str, cases, default: str | None = None, *, values: Mapping | None = None) -> str:
    """Choose the prose wording from the run's values and glue it under ``name``.

    Parameters
    ----------
    name : str
        Glue name, used in the prose as ``{glue:text}`name```.
    cases : sequence of (bool, str) or mapping str -> bool
        Conditions and their wording, tried in order; the first true one is chosen.
    default : str, optional
        Wording when no condition holds. Without it, no holding condition raises :class:`ClaimError`
        (the cases are meant to cover every outcome).
    values : mapping, optional
        Shown in the error message.

    Returns
    -------
    str
        The chosen wording.
    """
    items = list(cases.items()) if isinstance(cases, Mapping) else list(cases)
    if isinstance(cases, Mapping):
        items = [(cond, text) for text, cond in items]
    if not items and default is None:
        raise ValueError(f"verdict {name!r}: give at least one (condition, wording) case or a default.")
    for cond, text in items:
        if not isinstance(text, str):
            raise TypeError(f"verdict {name!r}: wording must be a str, got {text!r}; "
                            "pass (condition, wording) pairs or a {wording: condition} mapping.")
        if bool(cond):
            chosen = text
            break
    else:
        if default is None:
            raise ClaimError(f"verdict {name!r}: none of the cases {[t for _, t in items]} holds "
                             f"({_format_values(values or {})}); the cases must cover every outcome.")
        chosen = default
    _log({"verdict": name, "chosen": chosen})
    _glue(name, chosen)
    return chosen


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: p-value of ``wins`` against ``losses`` under a fair coin (ties dropped)."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be counts >= 0, got {wins}, {losses}.")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _t_quantile(q: float, dof: int) -> float:
    from scipy import stats  # scikit-learn's dependency

    return float(stats.t.ppf(q, dof))


@dataclass(frozen=True)
class PairedComparison:
    """``a`` against ``b`` on the same seeds/draws: ``diff = a - b`` (positive: ``a`` is higher).

    Attributes
    ----------
    diffs : ndarray, shape (n,)
        Paired differences ``a_i - b_i``.
    mean, low, high : float
        Mean difference and its two-sided Student-t confidence interval.
    wins, losses, ties : int
        How often ``a`` was higher, lower, equal (within ``tie``).
    p_sign : float
        Exact two-sided sign-test p-value.
    confidence : float
        Level of the interval.
    """

    diffs: np.ndarray
    mean: float
    low: float
    high: float
    wins: int
    losses: int
    ties: int
    p_sign: float
    confidence: float

    @property
    def n(self) -> int:
        return int(self.diffs.size)

    def a_higher(self) -> bool:
        """The interval lies above zero: ``a`` is higher on average, beyond seed-to-seed noise."""
        return self.low > 0

    def b_higher(self) -> bool:
        """The interval lies below zero."""
        return self.high < 0

    def verdict(self, higher: str, tie: str, lower: str) -> str:
        """``higher`` if the interval is above 0, ``lower`` if below, else ``tie``."""
        return higher if self.a_higher() else lower if self.b_higher() else tie

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """``+1.2 (95% CI +0.4 to +2.0) over 5 seeds, 5 wins / 0 losses, sign test p = 0.062``."""
        s = scale
        return (f"{self.mean * s:+.3g}{unit} ({self.confidence:.0%} CI {self.low * s:+.3g} to "
                f"{self.high * s:+.3g}{unit}) over {self.n} paired runs, {self.wins} "
                f"win{'' if self.wins == 1 else 's'} / {self.losses} "
                f"loss{'' if self.losses == 1 else 'es'}, sign test p = {self.p_sign:.3g}")


def paired_comparison(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                      tie: float = 0.0, name: str | None = None, scale: float = 1.0,
                      unit: str = "") -> PairedComparison:
    """Compare two methods measured on the same seeds (or draws, or items).

    Parameters
    ----------
    a, b : sequence of float, shape (n,)
        The metric of each method on run ``i`` (the same seed/draw for both), n >= 2.
    confidence : float, default=0.95
        Level of the t-interval on the mean difference.
    tie : float, default=0.0
        Differences with ``|a_i - b_i| <= tie`` count as ties in the sign test.
    name : str, optional
        Glue :meth:`PairedComparison.describe` under this name (``scale``/``unit`` format it, e.g.
        ``scale=100, unit=" points"``).

    Returns
    -------
    PairedComparison
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs one value of each method per run; got {a.size} and "
                         f"{b.size} values.")
    if a.size < 2:
        raise ValueError(f"paired comparison needs at least 2 paired runs, got {a.size}; repeat the "
                         "experiment over more seeds or draws.")
    if not np.isfinite(a).all() or not np.isfinite(b).all():
        raise ValueError(f"paired comparison got non-finite values: a={a}, b={b}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    d = a - b
    n = d.size
    mean = float(d.mean())
    sem = float(d.std(ddof=1) / math.sqrt(n))
    half = _t_quantile(0.5 + confidence / 2, n - 1) * sem
    wins = int((d > tie).sum())
    losses = int((d < -tie).sum())
    result = PairedComparison(d, mean, mean - half, mean + half, wins, losses, n - wins - losses,
                              sign_test(wins, losses), confidence)
    if name is not None:
        _glue(name, result.describe(scale, unit))
    return result


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (e.g. an accuracy over ``n`` questions).

    Returns
    -------
    (low, high) : tuple of float
    """
    if n <= 0:
        raise ValueError(f"a proportion needs n >= 1 trials, got n={n}.")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}.")
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(correct_a: Iterable[bool], correct_b: Iterable[bool]) -> tuple[int, int, float]:
    """Exact McNemar test for two classifiers scored on the same items.

    Returns
    -------
    (only_a, only_b, p) : tuple
        Items only ``a`` got right, items only ``b`` got right, and the exact two-sided p-value
        (a sign test on the discordant items).
    """
    a = np.asarray(list(correct_a), dtype=bool)
    b = np.asarray(list(correct_b), dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs both classifiers on the same items; got {a.size} and {b.size}.")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    return only_a, only_b, sign_test(only_a, only_b)


# --- the prose convention, checked statically on the notebooks (tests/test_claims.py) -------------

#: Words that state a comparison as a conclusion. A sentence holding one must be backed.
COMPARATIVE = re.compile(r"\b(better|beats?|beaten|beating|helps|helped|outperform(?:s|ed|ing)?|worse|"
                         r"superior|inferior|surpass(?:es|ed)?)\b", re.IGNORECASE)
_ROLE = re.compile(r"\{(glue:text|glue|glue:any|cite|cite:p|cite:t|cite:ps|cite:ts)\}`([^`]*)`")
_BACKING_CALLS = {"claim", "verdict", "paired_comparison"}


def backed_names(code: str) -> set[str]:
    """Glue names that ``claim``/``verdict``/``paired_comparison`` calls in ``code`` produce.

    A literal ``name=`` (or ``verdict``'s first argument), the keys of a literal ``values`` dict of a
    ``claim(..., glue_values=True)``, and ``glue("x", <something>.verdict(...))`` count.
    """
    lines = [("# " + ln) if ln.lstrip().startswith(("%", "!")) else ln for ln in code.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    names: set[str] = set()

    def fname(call):
        f = call.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None

    def literal(node):
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = fname(node)
        if isinstance(node.func, ast.Attribute) and not (isinstance(node.func.value, ast.Name)
                                                         and node.func.value.id in {"book", "claims"}):
            fn = "method:" + fn if fn in _BACKING_CALLS else fn   # cmp.verdict(...) is a wording, not a name
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if fn in _BACKING_CALLS:
            name = literal(kw["name"]) if "name" in kw else None
            if fn == "verdict" and node.args:
                name = literal(node.args[0])
            if name:
                names.add(name)
            if fn == "claim" and isinstance(kw.get("glue_values"), ast.Constant) and kw["glue_values"].value \
                    and isinstance(kw.get("values"), ast.Dict):
                names.update(k for k in map(literal, kw["values"].keys) if k)
        elif fn == "glue" and len(node.args) >= 2 and isinstance(node.args[1], ast.Call) \
                and fname(node.args[1]) in {"verdict", "describe"}:  # glue("x", cmp.verdict(...))
            name = literal(node.args[0])
            if name:
                names.add(name)
    return names


def sentences(markdown: str) -> list[str]:
    """Split a markdown cell into sentences (headings, list items and paragraphs end one)."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.DOTALL)           # code blocks
    text = re.sub(r"\$\$.*?\$\$", " MATH ", text, flags=re.DOTALL)       # display math
    text = re.sub(r"^\s*%.*$", "", text, flags=re.MULTILINE)              # MyST comments
    text = _ROLE.sub(lambda m: "{" + m[1] + "}`" + m[2].replace(".", "\x00") + "`", text)
    blocks = re.split(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.|#+)\s)|^#+ .*$", text, flags=re.MULTILINE)
    out = []
    for block in blocks:
        if block is None:
            continue
        for s in re.split(r"(?<=[.!?*_)])\s+(?=[A-Z{(*\[$])", " ".join(block.split())):
            if s.strip():
                out.append(s.replace("\x00", ".").strip())
    heads = re.findall(r"^#+ (.*)$", text, flags=re.MULTILINE)
    return out + [h.replace("\x00", ".") for h in heads]


def unbacked_sentences(cells: Iterable[tuple[str, str]]) -> list[str]:
    """Sentences of markdown cells with a comparative word that no claim, verdict or citation backs.

    Parameters
    ----------
    cells : iterable of (cell_type, source)
        The notebook's cells in order ("markdown" or "code").

    Returns
    -------
    list of str
        Each offending sentence. A sentence is backed when it holds a ``{glue:text}`` role whose name
        one of the notebook's ``claim``/``verdict``/``paired_comparison`` calls glues, or a ``{cite}``
        role (a result of the literature, attributed), or when it is a question.
    """
    cells = list(cells)
    names = set().union(*(backed_names(src) for kind, src in cells if kind == "code"))
    bad = []
    for kind, src in cells:
        if kind != "markdown":
            continue
        for sentence in sentences(src):
            if not COMPARATIVE.search(_ROLE.sub(" ", sentence)):
                continue
            if sentence.rstrip(" *_)").endswith("?"):
                continue
            roles = _ROLE.findall(sentence)
            if any(r.startswith("cite") for r, _ in roles):
                continue
            if any(r.startswith("glue") and arg.split(":")[0].strip() in names for r, arg in roles):
                continue
            bad.append(sentence)
    return bad
