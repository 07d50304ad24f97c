"""Claims are code: unit tests of course_lib.claims, and the prose check over every chapter.

``test_every_comparative_sentence_is_backed`` reads each chapter notebook's markdown and fails on any
sentence with a comparative word ("better", "beats", "helps", "outperforms", "worse", ...) that is
neither backed by a claim/verdict of the same notebook (a ``{glue:text}`` role whose name a
``claim``/``verdict``/``paired_comparison`` call glues), nor attributed to the literature (``{cite}``),
nor a question.
"""
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_lib import book, claims
from course_lib.claims import (ClaimError, backed_names, claim, mcnemar, paired_comparison,
                               proportion_interval, sentences, sign_test, unbacked_sentences, verdict)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def glued(monkeypatch):
    store = {}
    monkeypatch.setattr(book, "glue", lambda name, value, display=False: store.__setitem__(name, value))
    return store


def test_claim_that_holds_returns_it_and_glues_the_statement(glued):
    c = claim("the fix beats the broken version", 0.97 > 0.60, values={"fixed": 0.97, "broken": 0.60},
              margin=0.37, name="fix_claim")
    assert c.statement == "the fix beats the broken version" and c.margin == pytest.approx(0.37)
    assert glued == {"fix_claim": "the fix beats the broken version"}
    assert c in claims.checked_claims()


def test_claim_that_fails_raises_with_statement_and_values(glued):
    with pytest.raises(ClaimError, match=r"the fix beats.*fixed=0\.5.*broken=0\.6"):
        claim("the fix beats the broken version", 0.5 > 0.6, values={"fixed": 0.5, "broken": 0.6})
    assert glued == {}  # nothing glued for a failed claim
    assert issubclass(ClaimError, AssertionError)


def test_claim_accepts_numpy_and_torch_scalars_rejects_arrays(glued):
    claim("numpy scalar", np.float64(1.0) > 0)
    claim("torch scalar", torch.tensor(2.0) > 1)
    with pytest.raises(ClaimError):
        claim("torch false", torch.tensor(0.0) > 1)
    with pytest.raises(TypeError, match="all\\(\\)"):
        claim("array", np.array([1, 2]) > 0)
    with pytest.raises(TypeError, match="all\\(\\)"):
        claim("tensor", torch.tensor([1.0, 2.0]) > 0)


def test_claim_margin_must_agree_and_glue_values(glued):
    with pytest.raises(ValueError, match="disagrees"):
        claim("x", True, margin=-0.1)
    with pytest.raises(ClaimError, match="NaN"):
        claim("x", True, margin=float("nan"))
    with pytest.raises(ValueError, match="non-empty"):
        claim("  ", True)
    claim("gain positive", True, values={"gain_a": 0.1, "gain_b": 0.2}, glue_values=True)
    assert glued == {"gain_a": 0.1, "gain_b": 0.2}


def test_claims_log(tmp_path, monkeypatch, glued):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("COURSE_CLAIMS_LOG", str(log))
    claim("a", True, margin=0.2, values={"x": 1.5})
    with pytest.raises(ClaimError):
        claim("b", False, margin=-0.1)
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and '"holds": true' in lines[0] and '"margin": -0.1' in lines[1]


def test_verdict_picks_first_true_case_and_glues(glued):
    cases = [(False, "helps"), (True, "makes no measurable difference"), (True, "hurts")]
    assert verdict("v", cases) == "makes no measurable difference"
    assert glued["v"] == "makes no measurable difference"
    assert verdict("w", {"helps": 0.02 > 0.01, "does not help": 0.02 <= 0.01}) == "helps"
    assert verdict("d", [(False, "x")], default="neither") == "neither"
    with pytest.raises(ClaimError, match="cover every outcome"):
        verdict("e", [(False, "helps"), (False, "hurts")])
    with pytest.raises(TypeError):
        verdict("f", [("helps", True)])


def test_sign_test_exact_values():
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(3, 3) == 1.0
    assert sign_test(0, 0) == 1.0
    assert sign_test(9, 1) == pytest.approx(2 * 11 / 1024)
    with pytest.raises(ValueError):
        sign_test(-1, 2)


def test_paired_comparison_matches_scipy_t_interval(glued):
    from scipy import stats

    a = np.array([0.91, 0.93, 0.90, 0.94, 0.92])
    b = np.array([0.88, 0.90, 0.89, 0.90, 0.91])
    cmp = paired_comparison(a, b, name="cmp", scale=100, unit=" points")
    d = a - b
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (cmp.mean, cmp.low, cmp.high) == pytest.approx((d.mean(), low, high))
    assert (cmp.wins, cmp.losses, cmp.ties, cmp.n) == (5, 0, 0, 5)
    assert cmp.a_higher() and not cmp.b_higher() and cmp.verdict("beats", "ties", "loses to") == "beats"
    assert glued["cmp"].startswith("+2.4 points (95% CI")
    flip = paired_comparison(b, a)
    assert flip.b_higher() and flip.verdict("beats", "ties", "loses to") == "loses to"
    noise = paired_comparison([0.5, 0.7, 0.4, 0.6], [0.6, 0.5, 0.5, 0.55])
    assert noise.verdict("beats", "ties", "loses to") == "ties"


def test_paired_comparison_bad_input():
    with pytest.raises(ValueError, match="one value of each method"):
        paired_comparison([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        paired_comparison([1.0], [0.5])
    with pytest.raises(ValueError, match="non-finite"):
        paired_comparison([1.0, float("nan")], [0.5, 0.4])


def test_proportion_interval_wilson():
    low, high = proportion_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)   # textbook Wilson 95% values
    low, high = proportion_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17
    with pytest.raises(ValueError):
        proportion_interval(3, 0)
    with pytest.raises(ValueError):
        proportion_interval(5, 3)


def test_mcnemar_counts_discordant_items():
    a = [1, 1, 1, 0, 1, 1, 0, 1]
    b = [1, 0, 0, 0, 1, 0, 0, 1]
    assert mcnemar(a, b) == (3, 0, pytest.approx(0.25))
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


# --- the prose convention -----------------------------------------------------------------------

CODE = '''
from course_lib.book import claim, verdict, glue, paired_comparison
c = claim("fix beats broken", a > b, name="fix_claim")
verdict("lp_verdict", [(g > 0, "helps"), (True, "does not help")])
cmp = paired_comparison(a, b, name="cmp_text")
glue("cmp_word", cmp.verdict("beats", "ties with", "loses to"))
claim("gain", g > 0, values={"gain_small": g}, glue_values=True)
glue("typed_number", 0.93)
%matplotlib inline
'''


def test_backed_names_reads_claims_and_verdicts():
    assert backed_names(CODE) == {"fix_claim", "lp_verdict", "cmp_text", "cmp_word", "gain_small"}


def test_sentences_split_keeps_roles_whole():
    text = "# A title that beats\n\nFirst {glue:text}`acc:.2%` here. Second one.\n- item better\n"
    assert sentences(text) == ["First {glue:text}`acc:.2%` here.", "Second one.", "- item better",
                               "A title that beats"]


@pytest.mark.parametrize("sentence, ok", [
    ("The fixed model beats the broken one.", False),
    ("Here {glue:text}`fix_claim` by {glue:text}`typed_number:.2f` points.", True),
    ("Pre-training {glue:text}`lp_verdict` on this task.", True),
    ("Pre-training helps by {glue:text}`typed_number:.1%`.", False),        # a number is not a claim
    ("Skip-gram is usually better on rare words {cite}`mikolov2013`.", True),
    ("Which loss reconstructs digits better?", True),
    ("Nothing comparative here.", True),
    ("## Why the CNN outperforms PCA", False),
])
def test_unbacked_sentences(sentence, ok):
    bad = unbacked_sentences([("code", CODE), ("markdown", sentence)])
    assert (bad == []) == ok, bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_comparative_sentence_is_backed(path):
    nb = nbformat.read(path, as_version=4)
    bad = unbacked_sentences((c.cell_type, c.source) for c in nb.cells)
    assert not bad, (f"{path.name}: conclusions typed in prose — back each with a claim/verdict glued "
                     "into the sentence, cite the literature, or reword:\n- " + "\n- ".join(bad))


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.stem)
def test_book_pages_cite_their_comparisons(path):
    """The book's own pages run no code: a comparative sentence there must cite its source."""
    bad = unbacked_sentences([("markdown", path.read_text())])
    assert not bad, f"{path.name}: comparisons without a citation:\n- " + "\n- ".join(bad)
