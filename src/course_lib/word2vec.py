"""Skip-gram with negative sampling (SGNS), the model behind Word2Vec: the chapter "Word2Vec".

What the chapter teaches, as code the notebook imports:

- :func:`tokenize`, :class:`Vocab` — lower-cased ``[a-z]+`` words, a vocabulary with ``min_count``;
- :func:`keep_probability` — frequent-word subsampling, the formula of word2vec's C code and gensim
  ``p_keep(w) = (sqrt(f(w) / (s T)) + 1) * s T / f(w)`` (capped at 1), with :func:`subsample`;
- :func:`negative_distribution` — the noise distribution ``P_n(w) ∝ count(w)^0.75`` and
  :func:`sample_negatives` (inverse-CDF sampling, on any device);
- :func:`skipgram_pairs` — (center, context) pairs inside a randomly shrunk window;
- :func:`sgns_loss` and :func:`sgns_gradients` — the objective
  ``-log σ(u_o·v_c) - Σ_k log σ(-u_k·v_c)`` and its gradient, derived by hand;
- :class:`SGNS` and :func:`train_sgns` — batched SGNS in PyTorch: a chunk's negatives drawn in one
  go, steps of many (center, context) pairs that gather the touched rows, apply the analytic
  gradients and scatter them back (``index_add_``, no dense gradient), a linearly
  decayed learning rate as in word2vec, ``workers`` Hogwild threads on a CPU as gensim's, and
  GPU-ready through ``device``;
- :func:`most_similar`, :func:`to_keyed_vectors`, :func:`evaluate_embeddings`,
  :func:`save_word2vec_format` / :func:`load_word2vec_format` — neighbours, analogies (3CosAdd),
  gensim's evaluation protocol, and the standard word2vec file format.

References
----------
- Mikolov, Chen, Corrado, Dean, "Efficient Estimation of Word Representations in Vector Space",
  2013. arXiv:1301.3781 (CBOW, skip-gram, the analogy test set).
- Mikolov, Sutskever, Chen, Corrado, Dean, "Distributed Representations of Words and Phrases and
  their Compositionality", NeurIPS 2013. arXiv:1310.4546 (negative sampling, subsampling).
- Goldberg, Levy, "word2vec Explained: deriving Mikolov et al.'s negative-sampling word-embedding
  method", 2014. arXiv:1402.3722
- Rehurek, Sojka, "Software Framework for Topic Modelling with Large Corpora", LREC 2010 workshop
  (gensim; its ``Word2Vec`` is the reference implementation the tests compare with).
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .device import get_device

__all__ = ["tokenize", "first_tokens", "Vocab", "keep_probability", "subsample", "negative_distribution",
           "sample_negatives", "skipgram_pairs", "sgns_loss", "sgns_gradients", "SGNSConfig",
           "SGNS", "SGNSHistory", "train_sgns", "most_similar", "to_keyed_vectors",
           "evaluate_embeddings", "save_word2vec_format", "load_word2vec_format",
           "plot_word_groups"]

_WORD = re.compile(r"[a-z]+")


# --------------------------------------------------------------------------- text -> ids
def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and keep runs of the letters a-z (the text8 convention).

    Digits, punctuation and accents are dropped: ``"Paris's 2 cafés"`` -> ``['paris', 's', 'caf', 's']``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str; got {type(text).__name__}. Tokenise each document.")
    return _WORD.findall(text.lower())


@dataclass
class Vocab:
    """Words kept for training, most frequent first.

    Attributes
    ----------
    words : list of str, length V
    counts : ndarray of shape (V,), int64
        Corpus frequency of each word (descending).
    index : dict of str to int
    min_count : int
    total : int
        Number of tokens in the corpus before ``min_count`` (kept or not).
    """

    words: list
    counts: np.ndarray
    index: dict
    min_count: int
    total: int

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_count: int = 5,
              max_size: int | None = None) -> "Vocab":
        """Count the words of tokenised ``documents`` and keep those seen ``>= min_count`` times.

        Ties in frequency are broken by first appearance, so the order is deterministic.
        """
        if not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise ValueError(f"min_count={min_count!r} must be an integer >= 1.")
        counter: Counter = Counter()
        for doc in documents:
            if isinstance(doc, str):
                raise ValueError("documents must be lists of tokens, got a str; apply tokenize() first.")
            counter.update(doc)
        total = sum(counter.values())
        kept = [(w, c) for w, c in counter.items() if c >= min_count]   # insertion order = first seen
        kept.sort(key=lambda wc: -wc[1])                                  # stable: ties keep that order
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(f"no word occurs min_count={min_count} times in {total} tokens; "
                             "lower min_count or use a bigger corpus.")
        words = [w for w, _ in kept]
        counts = np.array([c for _, c in kept], dtype=np.int64)
        return cls(words, counts, {w: i for i, w in enumerate(words)}, int(min_count), total)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids ``(n,)`` int64, words outside the vocabulary dropped (as word2vec does)."""
        get = self.index.get
        return np.fromiter((i for i in map(get, tokens) if i is not None), dtype=np.int64)


# --------------------------------------------------------------------------- subsampling
def first_tokens(documents: Sequence[Sequence[str]], n: int | None) -> list:
    """The first ``n`` tokens of a tokenised corpus, as documents (the last one cut): a prefix of
    the corpus for short runs. ``n=None`` keeps everything.

    Examples
    --------
    >>> first_tokens([["a", "b"], ["c", "d"], ["e"]], 3)
    [['a', 'b'], ['c']]
    """
    if n is None:
        return list(documents)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer (or None for every token).")
    kept, total = [], 0
    for doc in documents:
        if total >= n:
            break
        kept.append(doc[:n - total])
        total += len(kept[-1])
    return kept


def keep_probability(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """Probability of keeping each occurrence of a word (frequent-word subsampling).

    With ``f = count / total`` and threshold ``s = sample``, word2vec's C code and gensim keep a word
    with probability ``p = (sqrt(f / s) + 1) * s / f``, capped at 1 (Mikolov et al. 2013b wrote
    ``1 - sqrt(s / f)`` for the discard probability; the code uses this smoother variant).

    Parameters
    ----------
    counts : array of shape (V,)
        Frequencies of the vocabulary words (the total is their sum).
    sample : float, default=1e-3
        Threshold ``s``; 0 disables subsampling (every probability is 1).

    Returns
    -------
    ndarray of shape (V,), float64 in (0, 1]
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts <= 0).any():
        raise ValueError(f"counts must be a non-empty 1-D array of positive counts; got shape "
                         f"{counts.shape} with min {counts.min() if counts.size else None}.")
    if not (0 <= sample < 1):
        raise ValueError(f"sample={sample!r} must be in [0, 1) (typical: 1e-3 to 1e-5).")
    if sample == 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()                    # s * T, in counts rather than frequencies
    p = (np.sqrt(counts / threshold) + 1) * threshold / counts
    return np.minimum(p, 1.0)


def subsample(ids: np.ndarray, keep_prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask ``(n,)``: keep token ``i`` with probability ``keep_prob[ids[i]]``."""
    return rng.random(len(ids)) < keep_prob[ids]


# --------------------------------------------------------------------------- negative sampling
def negative_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Noise distribution of negative sampling, ``P_n(w) = count(w)^power / Σ_v count(v)^power``.

    ``power=1`` is the unigram distribution, ``power=0`` the uniform one; 0.75 (Mikolov et al.
    2013b) raises rare words and lowers frequent ones. Returns ``(V,)`` float64 summing to 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts <= 0).any():
        raise ValueError(f"counts must be a non-empty 1-D array of positive counts; got shape {counts.shape}.")
    if not math.isfinite(power):
        raise ValueError(f"power={power!r} must be a finite number (0.75 in word2vec).")
    weights = counts ** power
    return weights / weights.sum()


def sample_negatives(cum: torch.Tensor, shape: tuple, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw word ids from a distribution given by its cumulative sum (inverse-CDF sampling).

    Parameters
    ----------
    cum : Tensor of shape (V,)
        ``cumsum`` of the probabilities, last value 1 (the role of word2vec's unigram table).
    shape : tuple
        Shape of the result, e.g. ``(B, K)``.
    generator : torch.Generator, optional
        On the same device as ``cum``.

    Returns
    -------
    Tensor of ``shape``, int64, on ``cum``'s device
    """
    u = torch.rand(shape, generator=generator, device=cum.device, dtype=cum.dtype) * cum[-1]
    return torch.searchsorted(cum, u, right=True).clamp_(max=len(cum) - 1)


# --------------------------------------------------------------------------- skip-gram pairs
def skipgram_pairs(documents: Sequence[np.ndarray], window: int = 5, rng: np.random.Generator | None = None,
                   shrink: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All (center, context) pairs of skip-gram within each document.

    As in word2vec, each center word draws its own window ``b`` uniformly in ``1..window`` when
    ``shrink`` is True (so near words are seen more often than far ones), and pairs never cross a
    document boundary.

    Parameters
    ----------
    documents : sequence of int arrays
        Token ids of each document (after subsampling).
    window : int
        Largest distance between center and context.
    rng : numpy Generator, optional
        Draws the shrunk windows (required when ``shrink`` is True).

    Returns
    -------
    centers, contexts : ndarrays of shape (P,), int64
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window={window!r} must be an integer >= 1.")
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    if not docs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ids = np.concatenate(docs)                                            # (n,)
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])         # (n,) document of each token
    if shrink:
        if rng is None:
            raise ValueError("shrink=True needs rng (a numpy Generator) to draw the windows.")
        reach = window - rng.integers(0, window, size=len(ids))           # (n,) in 1..window
    else:
        reach = np.full(len(ids), window)
    centers, contexts = [], []
    for d in range(1, window + 1):
        same = doc[:-d] == doc[d:]                                        # (n-d,) i and i+d together
        right = same & (reach[:-d] >= d)                                  # center i, context i+d
        left = same & (reach[d:] >= d)                                    # center i+d, context i
        centers += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return np.concatenate(centers), np.concatenate(contexts)


# --------------------------------------------------------------------------- objective
def _check_triplet(v, u_pos, u_neg):
    if v.ndim != 2 or u_pos.shape != v.shape or u_neg.ndim != 3 or u_neg.shape[0] != v.shape[0] \
            or u_neg.shape[2] != v.shape[1]:
        raise ValueError(f"expected v (B, D), u_pos (B, D), u_neg (B, K, D); got {tuple(v.shape)}, "
                         f"{tuple(u_pos.shape)}, {tuple(u_neg.shape)}.")


def sgns_loss(v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor,
              neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair SGNS loss ``-log σ(u_o·v_c) - Σ_k log σ(-u_k·v_c)``.

    Parameters
    ----------
    v : Tensor of shape (B, D)
        Input ("center") vectors ``v_c``.
    u_pos : Tensor of shape (B, D)
        Output ("context") vectors ``u_o`` of the observed contexts.
    u_neg : Tensor of shape (B, K, D)
        Output vectors ``u_k`` of K negative samples per pair.
    neg_mask : Tensor of shape (B, K), optional
        1 for negatives that count, 0 for those to ignore (a negative equal to the context).

    Returns
    -------
    Tensor of shape (B,)
    """
    _check_triplet(v, u_pos, u_neg)
    pos = (u_pos * v).sum(-1)                                   # (B,) u_o·v_c
    neg = torch.bmm(u_neg, v.unsqueeze(2)).squeeze(2)           # (B, K, D) @ (B, D, 1) -> (B, K)
    neg_terms = nn.functional.logsigmoid(-neg)                  # (B, K) log σ(-u_k·v_c)
    if neg_mask is not None:
        neg_terms = neg_terms * neg_mask
    return -nn.functional.logsigmoid(pos) - neg_terms.sum(1)


def sgns_gradients(v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor,
                   neg_mask: torch.Tensor | None = None):
    """Gradients of the summed SGNS loss, from the derivation ``d/dx log σ(x) = 1 - σ(x)``.

    ``∂ℓ/∂v_c = (σ(u_o·v_c) - 1) u_o + Σ_k σ(u_k·v_c) u_k``, ``∂ℓ/∂u_o = (σ(u_o·v_c) - 1) v_c``,
    ``∂ℓ/∂u_k = σ(u_k·v_c) v_c``.

    Parameters
    ----------
    v, u_pos, u_neg, neg_mask : as in :func:`sgns_loss`

    Returns
    -------
    grad_v : Tensor (B, D)
    grad_pos : Tensor (B, D)
    grad_neg : Tensor (B, K, D)
    loss : Tensor (B,)
        The per-pair loss, computed from the same scores.
    """
    _check_triplet(v, u_pos, u_neg)
    u = torch.cat([u_pos[:, None], u_neg], dim=1)               # (B, 1+K, D)
    mask = None if neg_mask is None else torch.cat([torch.ones_like(neg_mask[:, :1]), neg_mask], 1)
    grad_v, grad_u, loss = _sgns_grads(v, u, mask)
    return grad_v, grad_u[:, 0], grad_u[:, 1:], loss


def _sgns_grads(v: torch.Tensor, u: torch.Tensor, mask: torch.Tensor | None):
    """:func:`sgns_gradients` with the context first in ``u`` (B, 1+K, D): fewer copies per step."""
    scores = (u * v[:, None, :]).sum(-1)                        # (B, 1+K, D) -> (B, 1+K); on CPU faster than bmm
    g = torch.sigmoid(scores)                                   # (B, 1+K) ∂ℓ/∂score is σ(s) - label...
    g[:, 0] -= 1                                                # ...label 1 for the context, 0 for negatives
    terms = nn.functional.softplus(scores)                      # -log σ(-s) = softplus(s) for negatives
    terms[:, 0] = nn.functional.softplus(-scores[:, 0])         # -log σ(s) for the context
    if mask is not None:
        g = g * mask
        terms = terms * mask
    grad_v = torch.bmm(g.unsqueeze(1), u).squeeze(1)            # (B, 1, 1+K) @ (B, 1+K, D) -> (B, D)
    grad_u = g[:, :, None] * v[:, None, :]                      # (B, 1+K, 1) * (B, 1, D) -> (B, 1+K, D)
    return grad_v, grad_u, terms.sum(1)


def _sgns_step(W_in: torch.Tensor, W_out: torch.Tensor, center: torch.Tensor, targets: torch.Tensor,
               mask: torch.Tensor, lr: float) -> torch.Tensor:
    """One SGD step in place on the touched rows only: the hot loop of :func:`train_sgns`.

    The same gradients as :func:`sgns_gradients` (a test checks it), computed and applied without
    autograd and without a dense ``(V, D)`` gradient: the rows of the batch are gathered
    (``index_select``), and their steps scattered back with ``index_add_`` (a row present several
    times gets the sum of its gradients).

    Parameters
    ----------
    W_in, W_out : Tensor of shape (V, D)
        Input and output tables, updated in place.
    center : Tensor of shape (B,), int64
    targets : Tensor of shape (B, 1+K), int64
        The context first, then the K negatives.
    mask : Tensor of shape (B, 1+K)
        1 for the terms that count, 0 for negatives to skip (equal to the context).
    lr : float

    Returns
    -------
    Tensor of shape (B,): the per-pair loss before the step.
    """
    B, K1 = targets.shape
    flat = targets.reshape(-1)                                    # (B*(1+K),)
    v = W_in.index_select(0, center)                              # (B, D)
    u = W_out.index_select(0, flat).view(B, K1, -1)               # (B, 1+K, D)
    scores = (u * v[:, None, :]).sum(-1)                          # (B, 1+K, D) -> (B, 1+K)
    g = torch.sigmoid(scores)                                     # ∂ℓ/∂score = σ(s) - label:
    g[:, 0] -= 1                                                  # label 1 for the context, 0 else
    g *= mask
    sign = torch.ones(K1, dtype=scores.dtype, device=scores.device)
    sign[0] = -1                                                  # -log σ(s) = softplus(-s); -log σ(-s) = softplus(s)
    loss = (nn.functional.softplus(scores * sign) * mask).sum(1)  # (B,)
    grad_v = torch.bmm(g[:, None, :], u).squeeze(1)               # (B, 1, 1+K) @ (B, 1+K, D) -> (B, D)
    g *= -lr                                                      # the step: -lr times the gradient
    step_u = g[:, :, None] * v[:, None, :]                        # (B, 1+K, 1) * (B, 1, D) -> (B, 1+K, D)
    # index_add_: a repeated row gets the sum. On a CPU (torch 2.13, one thread) it is 2.5-4
    # times faster than index_put_(..., accumulate=True), with the same result
    W_in.index_add_(0, center, grad_v.mul_(-lr))
    W_out.index_add_(0, flat, step_u.view(B * K1, -1))
    return loss


# --------------------------------------------------------------------------- model
@dataclass
class SGNSConfig:
    dim: int = 100            # vector size (gensim: vector_size)
    window: int = 5           # largest center-context distance, shrunk at random per center
    negative: int = 5         # negatives per (center, context) pair
    ns_exponent: float = 0.75  # noise distribution count^0.75
    sample: float = 1e-3      # subsampling threshold (0: off)
    epochs: int = 5           # passes over the corpus
    lr: float = 0.025         # word2vec's starting alpha for skip-gram...
    min_lr: float = 1e-4      # ...decayed linearly to this over all epochs
    batch_size: int = 1024    # pairs per SGD step; gradients are summed, not averaged, so a frequent
    #                           word's rows get many at once: 16384 diverges at lr=0.025, 4096 does not
    chunk_words: int = 200_000  # pairs are made and shuffled per chunk of this many corpus words
    cpu_threads: int | None = 1  # torch threads on CPU while training (None: leave as is). The
    #                              steps are small gathers/scatters that gain little from more
    #                              threads, and spinning threads collapse when the CPU is shared
    workers: int = 1          # CPU threads taking SGD steps at once on the shared tables, without
    #                           locks (Hogwild, as gensim's workers and word2vec's threads); each
    #                           uses one torch thread. 1 is deterministic by seed; more are not
    #                           (the order of the updates depends on the scheduler)
    seed: int = 0

    def __post_init__(self):
        for key in ("dim", "window", "negative", "epochs", "batch_size", "chunk_words", "workers"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer.")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0; got lr={self.lr!r}, min_lr={self.min_lr!r}.")
        if not 0 <= self.sample < 1:
            raise ValueError(f"sample={self.sample!r} must be in [0, 1).")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise ValueError(f"cpu_threads={self.cpu_threads!r} must be None or a positive integer.")


class SGNS(nn.Module):
    """Two embedding tables: input vectors ``v`` (the word vectors one keeps) and output vectors ``u``.

    Initialised as in word2vec: ``v ~ U(-0.5/D, 0.5/D)``, ``u = 0``.

    Parameters
    ----------
    vocab_size : int
    dim : int
    seed : int
    """

    def __init__(self, vocab_size: int, dim: int = 100, seed: int = 0):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size={vocab_size!r} and dim={dim!r} must be positive.")
        gen = torch.Generator().manual_seed(seed)
        self.in_vectors = nn.Embedding(vocab_size, dim)      # v_w: (V, D)
        self.out_vectors = nn.Embedding(vocab_size, dim)     # u_w: (V, D)
        with torch.no_grad():
            self.in_vectors.weight.copy_((torch.rand(vocab_size, dim, generator=gen) - 0.5) / dim)
            self.out_vectors.weight.zero_()

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                neg_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pair loss ``(B,)`` for ids ``center (B,)``, ``context (B,)``, ``negatives (B, K)``."""
        return sgns_loss(self.in_vectors(center), self.out_vectors(context), self.out_vectors(negatives),
                         neg_mask)

    @torch.no_grad()
    def sgd_step(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                 lr: float, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One SGD step on the **summed** loss of a batch with the analytic gradients.

        Rows that appear several times in the batch receive the sum of their gradients
        (``index_add_``), as word2vec's asynchronous updates would apply them one after the other.
        Returns the per-pair loss ``(B,)`` before the step.
        """
        targets = torch.cat([context[:, None], negatives], dim=1)           # (B, 1+K) ids of u_o, u_k
        mask = torch.ones(targets.shape, dtype=self.in_vectors.weight.dtype, device=targets.device)
        if neg_mask is not None:
            mask[:, 1:] = neg_mask
        return _sgns_step(self.in_vectors.weight, self.out_vectors.weight, center, targets, mask, lr)

    def vectors(self) -> np.ndarray:
        """The word vectors ``(V, D)`` float32 on the CPU (the input table, as word2vec saves)."""
        return self.in_vectors.weight.detach().float().cpu().numpy()


@dataclass
class SGNSHistory:
    """Per-epoch record of :func:`train_sgns`."""

    epoch: list = field(default_factory=list)
    loss: list = field(default_factory=list)         # mean per-pair loss over the epoch
    lr: list = field(default_factory=list)           # learning rate at the end of the epoch
    pairs: list = field(default_factory=list)        # (center, context) pairs trained on
    words: list = field(default_factory=list)        # corpus words processed (before subsampling)
    seconds: list = field(default_factory=list)

    @property
    def words_per_second(self) -> float:
        return sum(self.words) / max(sum(self.seconds), 1e-9)

    def as_dict(self) -> dict:
        return asdict(self)


def _chunks(docs: list, size: int):
    """Consecutive groups of documents of about ``size`` words (a long document is split)."""
    group, n = [], 0
    for d in docs:
        for start in range(0, max(len(d), 1), size):
            piece = d[start:start + size]
            group.append(piece)
            n += len(piece)
            if n >= size:
                yield group
                group, n = [], 0
    if group:
        yield group


def train_sgns(documents: Sequence[np.ndarray], vocab: Vocab, config: SGNSConfig | None = None,
               device=None, model: SGNS | None = None, progress: bool = True) -> tuple[SGNS, SGNSHistory]:
    """Train skip-gram with negative sampling, batched, on ``device``.

    Each epoch: for each chunk of ``config.chunk_words`` corpus words, subsample frequent words,
    make the skip-gram pairs, shuffle them, and take SGD steps of ``batch_size`` pairs with fresh
    negatives drawn on the device from ``count^ns_exponent``. The learning rate decays linearly from
    ``lr`` to ``min_lr`` with the number of corpus words processed, as in word2vec and gensim.

    Parameters
    ----------
    documents : sequence of int arrays
        Token ids of each document (``vocab.encode`` output).
    vocab : Vocab
    config : SGNSConfig
    device : str or torch.device, optional
    model : SGNS, optional
        Continue training this model instead of a new one.
    progress : bool
        Show a tqdm bar (in corpus words).

    Returns
    -------
    model : SGNS
    history : SGNSHistory
    """
    cfg = config or SGNSConfig()
    device = get_device(device)
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    n_words = sum(len(d) for d in docs)
    if n_words == 0:
        raise ValueError("documents hold no token: encode them with vocab.encode(tokenize(text)).")
    top = max(int(d.max()) for d in docs if len(d))
    if top >= len(vocab) or min(int(d.min()) for d in docs if len(d)) < 0:
        raise ValueError(f"token ids must lie in [0, {len(vocab)}); found {top}. Encode with this vocab.")
    model = model or SGNS(len(vocab), cfg.dim, seed=cfg.seed)
    model.to(device)
    keep = keep_probability(vocab.counts, cfg.sample)
    cum = torch.as_tensor(np.cumsum(negative_distribution(vocab.counts, cfg.ns_exponent)),
                          dtype=torch.float64, device=device)              # (V,) unigram table
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    hist = SGNSHistory()
    bar = tqdm(total=n_words * cfg.epochs, unit="word", unit_scale=True, desc="SGNS", disable=not progress, leave=False)
    threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        _epochs(model, docs, keep, cum, rng, gen, cfg, device, n_words, hist, bar)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    return model, hist


def _run_steps(W_in, W_out, centers, targets, mask, lrs, batch_size, steps):
    """SGD steps ``steps`` (batch numbers) of a chunk; returns the summed loss (0-d tensor)."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=W_in.device)
    for i in steps:
        sl = slice(i * batch_size, (i + 1) * batch_size)
        loss_sum += _sgns_step(W_in, W_out, centers[sl], targets[sl], mask[sl], float(lrs[i])).sum()
    return loss_sum


def _targets(contexts, cum, negative, gen, dtype):
    """Targets ``(B, 1+K)``, the context first and then ``negative`` draws, and their mask (0 for a
    negative equal to the context, which would push the pair apart)."""
    neg = sample_negatives(cum, (len(contexts), negative), gen)              # (B, K)
    targets = torch.cat([contexts[:, None], neg], dim=1)                    # (B, 1+K) context first
    mask = (targets != contexts[:, None]).to(dtype)                         # (B, 1+K)
    mask[:, 0] = 1
    return targets, mask


def _hogwild(W_in, W_out, centers, contexts, cum, negative, gens, lrs, batch_size):
    """Batch ``i`` to worker ``i % workers``; the workers step at once on the shared tables.

    Each worker draws the negatives of its own batches with its own generator (``gens[w]``), so
    that the draws run in parallel too; drawn once for the whole chunk, they were a serial
    fifth of the work (inverse-CDF sampling is a binary search per draw)."""
    from concurrent.futures import ThreadPoolExecutor

    def work(w):
        torch.set_num_threads(1)                                  # each worker: one torch thread
        loss = torch.zeros((), dtype=torch.float64, device=W_in.device)
        for i in range(w, len(lrs), len(gens)):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            targets, mask = _targets(contexts[sl], cum, negative, gens[w], W_in.dtype)
            loss += _sgns_step(W_in, W_out, centers[sl], targets, mask, float(lrs[i])).sum()
        return loss
    with ThreadPoolExecutor(len(gens)) as pool:                   # ops release the GIL
        return sum(pool.map(work, range(len(gens))))


def _epochs(model, docs, keep, cum, rng, gen, cfg, device, n_words, hist, bar):
    total, done, lr = n_words * cfg.epochs, 0, cfg.lr
    W_in, W_out = model.in_vectors.weight.data, model.out_vectors.weight.data
    workers = cfg.workers if device.type == "cpu" else 1
    worker_gens = [torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 1 + w)
                   for w in range(workers)] if workers > 1 else []
    for epoch in range(1, cfg.epochs + 1):
        t0, loss_sum, n_pairs = time.perf_counter(), torch.zeros((), dtype=torch.float64, device=device), 0
        for group in _chunks(docs, cfg.chunk_words):
            words_here = sum(len(d) for d in group)
            kept = [d[subsample(d, keep, rng)] for d in group]
            centers, contexts = skipgram_pairs(kept, cfg.window, rng)       # (P,), (P,)
            order = rng.permutation(len(centers))
            centers = torch.from_numpy(centers[order]).to(device)
            contexts = torch.from_numpy(contexts[order]).to(device)
            P = len(centers)
            starts = np.arange(0, P, cfg.batch_size)                       # learning rate of each step:
            frac = (done + words_here * starts / max(P, 1)) / total       # linear decay in words
            lrs = np.maximum(cfg.min_lr, cfg.lr - (cfg.lr - cfg.min_lr) * frac)
            if workers == 1:    # the whole chunk's negatives in one draw, then all its steps
                targets, mask = _targets(contexts, cum, cfg.negative, gen, W_in.dtype)
                loss_sum += _run_steps(W_in, W_out, centers, targets, mask, lrs, cfg.batch_size,
                                       range(len(lrs)))
            else:
                loss_sum += _hogwild(W_in, W_out, centers, contexts, cum, cfg.negative,
                                     worker_gens, lrs, cfg.batch_size)
            if len(lrs):
                lr = float(lrs[-1])
            n_pairs += P
            done += words_here
            bar.update(words_here)
        mean_loss = (loss_sum / max(n_pairs, 1)).item()
        start_loss = (1 + cfg.negative) * math.log(2)                      # u = 0: every σ(s) = 1/2
        if not math.isfinite(mean_loss) or mean_loss > 10 * start_loss:
            raise FloatingPointError(
                f"training diverged: mean loss {mean_loss:.3g} at epoch {epoch} (it starts near "
                f"{start_loss:.2f}). Summed gradients of frequent words grow with the batch: lower "
                f"batch_size={cfg.batch_size} (e.g. 1024-4096) or lr={cfg.lr}.")
        hist.epoch.append(epoch)
        hist.loss.append(mean_loss)
        hist.lr.append(lr)
        hist.pairs.append(n_pairs)
        hist.words.append(n_words)
        hist.seconds.append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{mean_loss:.3f}")


# --------------------------------------------------------------------------- using the vectors
def most_similar(vectors: np.ndarray, vocab_words: Sequence[str], positive: Sequence[str],
                 negative: Sequence[str] = (), topn: int = 10) -> list[tuple[str, float]]:
    """Nearest words by cosine to ``Σ positive - Σ negative`` (3CosAdd), inputs excluded.

    ``most_similar(V, words, ["king", "woman"], ["man"])`` answers *man is to king as woman is to ?*.
    Each vector is unit-normalised first, as in gensim's ``KeyedVectors.most_similar``.

    Parameters
    ----------
    vectors : ndarray of shape (V, D)
    vocab_words : sequence of str, length V
    positive, negative : sequences of words
    topn : int

    Returns
    -------
    list of (word, cosine similarity)
    """
    index = {w: i for i, w in enumerate(vocab_words)}
    if isinstance(positive, str) or isinstance(negative, str):
        raise ValueError("positive and negative must be lists of words, e.g. ['king', 'woman'].")
    missing = [w for w in [*positive, *negative] if w not in index]
    if missing:
        raise KeyError(f"words not in the vocabulary: {missing}")
    if not positive:
        raise ValueError("positive must name at least one word.")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (V, D)
    query = unit[[index[w] for w in positive]].sum(0) - (unit[[index[w] for w in negative]].sum(0)
                                                          if negative else 0)          # (D,)
    query = query / max(np.linalg.norm(query), 1e-12)
    sims = unit @ query                                                                 # (V, D) @ (D,) -> (V,)
    for w in [*positive, *negative]:
        sims[index[w]] = -np.inf
    best = np.argsort(-sims, kind="stable")[:topn]
    return [(vocab_words[i], float(sims[i])) for i in best]


def to_keyed_vectors(words: Sequence[str], vectors: np.ndarray):
    """Wrap ``(V, D)`` vectors in a ``gensim.models.KeyedVectors`` (to use gensim's evaluations)."""
    from gensim.models import KeyedVectors

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors must have shape ({len(words)}, D); got {vectors.shape}.")
    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(list(words), vectors)
    return kv


def evaluate_embeddings(kv, files: dict | None = None, restrict_vocab: int = 300_000) -> dict:
    """Word similarity (Spearman ρ) and analogy accuracy with gensim's evaluation functions.

    Parameters
    ----------
    kv : gensim KeyedVectors
        E.g. ``model.wv`` or :func:`to_keyed_vectors` of the scratch vectors: both go through the
        same code, so the protocol is the same.
    files : dict, optional
        ``course_lib.data.word_eval_files()`` (default).

    Returns
    -------
    dict
        ``wordsim353``, ``simlex999`` (Spearman ρ), their ``*_oov`` (% of pairs skipped),
        ``analogy`` (accuracy over the questions whose four words are in the vocabulary) and
        ``analogy_n`` (how many such questions).
    """
    import logging

    from .data import word_eval_files

    files = files or word_eval_files()
    out = {}
    gensim_log = logging.getLogger("gensim.models.keyedvectors")
    level = gensim_log.level
    gensim_log.setLevel(logging.ERROR)                  # gensim logs every evaluation at INFO
    try:
        for name in ("wordsim353", "simlex999"):
            _pearson, spearman, oov = kv.evaluate_word_pairs(str(files[name]), restrict_vocab=restrict_vocab,
                                                             case_insensitive=True)
            out[name] = float(spearman[0]) if np.isfinite(spearman[0]) else float("nan")
            out[f"{name}_oov"] = float(oov)
        score, sections = kv.evaluate_word_analogies(str(files["questions-words"]),
                                                     restrict_vocab=restrict_vocab, case_insensitive=True)
    finally:
        gensim_log.setLevel(level)
    total = sections[-1]
    out["analogy"] = float(score)
    out["analogy_n"] = len(total["correct"]) + len(total["incorrect"])
    return out


# --------------------------------------------------------------------------- word2vec file format
def save_word2vec_format(path, words: Sequence[str], vectors: np.ndarray, binary: bool = False) -> Path:
    """Write vectors in the word2vec format (a ``"V D"`` header, then one word and its D numbers).

    Text: ``word v1 v2 ... vD`` per line. Binary (word2vec's ``-binary 1``): ``word `` then D
    little-endian float32 values, then a newline. gensim's ``KeyedVectors.load_word2vec_format``
    reads both.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors must have shape ({len(words)}, D); got {vectors.shape}.")
    bad = [w for w in words if not w or any(ch.isspace() for ch in w)]
    if bad:
        raise ValueError(f"words must be non-empty and free of whitespace; got {bad[:3]!r}.")
    path = Path(path)
    with open(path, "wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for w, vec in zip(words, vectors):
            if binary:
                f.write(w.encode("utf-8") + b" " + vec.astype("<f4").tobytes() + b"\n")
            else:
                f.write((w + " " + " ".join(repr(float(x)) for x in vec) + "\n").encode("utf-8"))
    return path


def load_word2vec_format(path, binary: bool = False) -> tuple[list[str], np.ndarray]:
    """Read a word2vec-format file (text or binary): ``(words, vectors (V, D) float32)``."""
    with open(path, "rb") as f:
        header = f.readline().split()
        if len(header) != 2:
            raise ValueError(f"{path}: first line must be 'V D', got {b' '.join(header)!r}.")
        V, D = int(header[0]), int(header[1])
        words, vectors = [], np.empty((V, D), dtype=np.float32)
        for i in range(V):
            if binary:
                word = bytearray()
                while (ch := f.read(1)) != b" ":
                    if not ch:
                        raise ValueError(f"{path}: file ends inside word {i} of {V}.")
                    if ch != b"\n":                       # the newline after the previous vector
                        word += ch
                vectors[i] = np.frombuffer(f.read(4 * D), dtype="<f4")
                words.append(word.decode("utf-8"))
            else:
                parts = f.readline().decode("utf-8").rstrip("\n").split(" ")
                if len(parts) != D + 1:
                    raise ValueError(f"{path}: line {i + 2} has {len(parts) - 1} numbers, expected {D}.")
                words.append(parts[0])
                vectors[i] = np.array(parts[1:], dtype=np.float32)
    return words, vectors


# --------------------------------------------------------------------------- picture
def plot_word_groups(kv, groups: dict, ax=None, title: str | None = None, fontsize: float = 9):
    """2-D PCA of the vectors of a few word groups, one colour per group.

    Each word is labelled where its label overlaps no other label and no point
    (:func:`course_lib.viz.label_points`); the legend sits under the plot.

    Parameters
    ----------
    kv : gensim KeyedVectors
    groups : dict of str to list of str
        ``{"countries": ["france", ...], ...}``; words missing from ``kv`` are skipped.
    fontsize : float, default=9
        Of the word labels and the legend.
    """
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    words, labels = [], []
    for name, members in groups.items():
        for w in members:
            if w in kv.key_to_index:
                words.append(w)
                labels.append(name)
    if len(words) < 3:
        raise ValueError(f"only {len(words)} of the words are in the vocabulary; need at least 3.")
    X = np.stack([kv.get_vector(w, norm=True) for w in words])          # (n, D) unit vectors
    xy = PCA(n_components=2, random_state=0).fit_transform(X)           # (n, D) -> (n, 2)
    from .viz import label_points

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    for i, name in enumerate(groups):
        sel = [j for j, lab in enumerate(labels) if lab == name]
        ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=f"C{i}", label=name)
    ax.margins(0.08)                                   # room for the labels inside the frame
    label_points(ax, xy, words, fontsize=fontsize)     # placed where no two labels overlap
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=len(groups), frameon=False)         # below the plot: not over the words
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    return ax
