# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
# course_lib install cell: on Colab (or any fresh Jupyter) install the course library
# and what this chapter needs; packages already there (e.g. Colab's own torch and
# tensorflow) are kept.
# COURSE_INSTALL_URL (a git URL or a local folder) replaces the repository.
import importlib, importlib.util, os, subprocess, sys
COURSE_REPO = "https://github.com/pretraining-course/pretraining-finetuning"
# the commit this notebook was built from ("": the default branch)
COURSE_COMMIT = ""
# extra: the modules it brings
COURSE_EXTRAS = {'nlp': ['transformers', 'gensim', 'peft']}
_missing = lambda modules: [m for m in modules if importlib.util.find_spec(m) is None]
_extras = [e for e, modules in COURSE_EXTRAS.items() if _missing(modules)]
if _missing(["course_lib"]) or _extras:
    _source = os.environ.get("COURSE_INSTALL_URL") or f"git+{COURSE_REPO}"
    if os.path.isdir(_source):
        _source = "file://" + os.path.abspath(_source)
    elif COURSE_COMMIT and "@" not in _source.split("/")[-1]:
        _source += f"@{COURSE_COMMIT}"
    _spec = "course_lib" + (f"[{','.join(_extras)}]" if _extras else "")
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                       f"{_spec} @ {_source}"]).returncode:
        raise RuntimeError(f"could not install {_spec} from {_source}. Fix: check the "
                           "internet connection, or set COURSE_INSTALL_URL to a copy "
                           "of the course repository, then run this cell again.")
importlib.invalidate_caches()
if _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]):
    print("still missing:", _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]),
          "- restart the runtime (Colab: Runtime > Restart session) and run this "
          "cell again.")

# %% [markdown]
# # Word2Vec: skip-gram with negative sampling, from scratch and with gensim
#
# The previous chapters pre-trained on images. Here the pre-training signal is plain text, and the
# idea is one sentence long: *a word is characterised by the company it keeps*. Word2Vec
# {cite}`mikolov2013efficient,mikolov2013distributed` turns that sentence into a prediction task —
# predict the words around a word — whose by-product is a vector per word. Words used in similar
# contexts end up with similar vectors, and no label was needed: the text labels itself. This is
# the ancestor of every pre-trained language model in this course, BERT included.
#
# We build the whole pipeline from scratch in PyTorch (`course_lib.word2vec`), train gensim's
# reference implementation {cite}`rehurek2010software` on the same corpus with the same
# hyper-parameters, and compare them on the standard benchmarks.
#
# ```{admonition} What you will be able to do
# :class: tip
# - build a vocabulary, subsample frequent words and draw negatives from the unigram$^{0.75}$ table;
# - write the SGNS loss and derive its gradient by hand;
# - train word vectors on real text and evaluate them on word similarity and analogies;
# - save vectors in the word2vec format that gensim (and most tools) read;
# - tell a meaningful "most similar" list from noise.
# ```

# %% [markdown]
# ## Setup
#
# The run size comes from `COURSE_PROFILE`: `ci` (a short run on a laptop CPU, offline) or `full`
# (the real configuration, the default on a GPU). gensim is the reference implementation; the
# cell below installs it where it is missing (Colab).

# %%
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if importlib.util.find_spec("gensim") is None:  # Colab does not ship gensim
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gensim==4.4.*"],
                   check=True)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from gensim.models import KeyedVectors, Word2Vec
from scipy.stats import spearmanr

from course_lib import data
from course_lib import word2vec as w2v
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions

# %% [markdown]
# ## The corpus, and where it came from
#
# The classic small benchmark corpus is **text8**: the first $10^8$ bytes of English Wikipedia,
# cleaned to lower-case letters, 17 million words {cite}`mahoney2011text8`.
# `course_lib.data.load_text_corpus` gets it from a local mirror, the cache or its canonical URL.
# Without internet it falls back to real text that ships inside gensim's wheel: an extract of
# **English Wikipedia articles** (the start of a dump: "Anarchism", "Autism", "Albedo", …).
# It says which one ran:

# %% tags=["otter_ignore"]
corpus = data.load_text_corpus()
print(corpus.protocol)
print("source:", corpus.source)
# ci: a prefix of the corpus, to fit 90 s on 2 CPU cores
max_words = pick(ci=250_000, full=None)
glue("corpus_name", corpus.name)
glue("corpus_words", corpus.n_words)
print(corpus.documents[0][:400])

# %% [markdown]
# ### Tokenisation
#
# Word2Vec needs a list of tokens per document. We follow text8's convention: lower-case, keep runs
# of the letters a–z, drop everything else (`w2v.tokenize`). It is crude — "U.S." becomes `u`, `s` —
# but it is what the classic benchmarks were built with.

# %% tags=["otter_ignore"]
tokens = [w2v.tokenize(doc) for doc in corpus.documents]
print(tokens[0][:25])
tokens = w2v.first_tokens(tokens, max_words)  # ci: keep the first max_words tokens
n_tokens = sum(len(t) for t in tokens)
glue("n_tokens", n_tokens)
glue("n_docs", len(tokens))
print(f"{len(tokens)} documents, {n_tokens:,} tokens used in this run")

# %% [markdown]
# This run trains on {glue:text}`n_tokens:,` tokens in {glue:text}`n_docs` documents of the
# *{glue:text}`corpus_name`* corpus.
#
# ## A vocabulary with `min_count`
#
# Word frequencies follow Zipf's law: a few words are everywhere, most words are rare. A word seen
# twice cannot get a useful vector (it has two contexts) and it costs a row of parameters, so
# word2vec keeps only words seen at least `min_count` times (5 by default) and drops the others
# from the text *before* forming contexts.

# %% tags=["otter_ignore"]
min_count = 5
vocab = w2v.Vocab.build(tokens, min_count=min_count)
docs = [vocab.encode(t) for t in tokens]       # list of (n_i,) int64 arrays
n_train_words = sum(len(d) for d in docs)
glue("vocab_size", len(vocab))
glue("n_train_words", n_train_words)
glue("coverage", n_train_words / n_tokens)
glue("distinct_words", len({w for t in tokens for w in t}))

fig, ax = plt.subplots(figsize=(5.5, 3.4))
ranks = np.arange(1, len(vocab) + 1)
ax.loglog(ranks, vocab.counts, lw=1.5, label="word counts (kept words)")
ax.loglog(ranks, vocab.counts[0] / ranks, "--", lw=1, label="Zipf: count ∝ 1/rank")
ax.axhline(min_count, color="grey", lw=0.8)
ax.set_xlabel("rank")
ax.set_ylabel("count")
ax.legend(fontsize=8)
print(list(zip(vocab.words[:10], vocab.counts[:10].tolist())))

# %% [markdown]
# Of {glue:text}`distinct_words:,` distinct words, {glue:text}`vocab_size:,` occur at least 5 times;
# they cover {glue:text}`coverage:.1%` of the tokens.
#
# ## Frequent-word subsampling
#
# "the" co-occurs with almost everything, so its pairs teach little, and it appears in a large share
# of all training pairs. Word2vec therefore discards each occurrence of a word $w$ of relative
# frequency $f(w)$ at random. The paper {cite}`mikolov2013distributed` keeps it with probability
# $\sqrt{t/f(w)}$; the released C code — and gensim — use a smoother variant, with threshold $s$
# (`sample`, $10^{-3}$ by default):
#
# $$
# p_\text{keep}(w) = \min\left(1,\ \left(\sqrt{\frac{f(w)}{s}} + 1\right)\frac{s}{f(w)}\right).
# $$
#
# Words rarer than about $s$ are always kept. `w2v.keep_probability` implements this formula; the
# unit tests check it by hand and against the `sample_int` table of gensim's own vocabulary.

# %% tags=["otter_ignore"]
sample = 1e-3
keep = w2v.keep_probability(vocab.counts, sample)
show = [w for w in ["the", "of", "and", "is", "war", "philosophy", "einstein"]
        if w in vocab.index]
print(pd.DataFrame({"count": [vocab.counts[vocab.index[w]] for w in show],
                    "frequency": [vocab.counts[vocab.index[w]] / vocab.counts.sum()
                                  for w in show],
                    "p_keep": [keep[vocab.index[w]] for w in show]},
                    index=show).round(4))
kept_share = float((keep * vocab.counts).sum() / vocab.counts.sum())
glue("kept_share", kept_share)
glue("p_keep_the", keep[vocab.index["the"]])

# %% [markdown]
# "the" is kept with probability {glue:text}`p_keep_the:.2f`; overall an epoch trains on about
# {glue:text}`kept_share:.0%` of the tokens, and those are the informative ones.
#
# ## Skip-gram, CBOW and the training pairs
#
# **Skip-gram** predicts each context word from the center word; **CBOW** (continuous bag of words)
# predicts the center word from the average of its context vectors {cite}`mikolov2013efficient`.
# CBOW makes one prediction per position and is faster; skip-gram makes one per (center, context)
# pair, which gives rare words more updates; Mikolov et al. report skip-gram as the better of the
# two on semantic analogies {cite}`mikolov2013efficient`. We implement skip-gram and train gensim's CBOW for comparison below.
#
# For each center word, word2vec draws a window size $b$ uniformly in $1..\text{window}$, so near
# words are used more often than far ones (a word at distance $d$ is used with probability
# $(\text{window}-d+1)/\text{window}$). `w2v.skipgram_pairs` makes all pairs of a batch of documents
# at once, never across a document boundary:

# %% tags=["otter_ignore"]
sentence = "the quick brown fox jumps over the lazy dog".split()
toy_ids = np.arange(len(sentence))
c, o = w2v.skipgram_pairs([toy_ids], window=2, shrink=False)
print("window 2, no shrinking:", [(sentence[i], sentence[j]) for i, j in zip(c, o)
                                  if sentence[i] == "fox"])
c, o = w2v.skipgram_pairs([np.arange(100_000)], window=5, rng=np.random.default_rng(0))
glue("pairs_per_word", len(c) / 100_000)
print(f"with shrinking, window 5: {len(c) / 100_000:.2f} contexts per word on average")

# %% [markdown]
# With `window=5` and shrinking, each word is the center of {glue:text}`pairs_per_word:.2f` pairs on
# average (the expectation is $2\cdot\mathbb{E}[b] = 6$).
#
# ## The objective: skip-gram with negative sampling (SGNS)
#
# Each word $w$ has two vectors: an input vector $v_w$ (the one we keep) and an output vector $u_w$.
# The full skip-gram model is a softmax over the whole vocabulary, $p(o\mid c) = e^{u_o^\top v_c} /
# \sum_{w} e^{u_w^\top v_c}$, which costs $V$ dot products per pair. **Negative sampling** replaces it
# by $K+1$ binary decisions: is $o$ a real context of $c$ (label 1), and are $K$ random "noise"
# words $w_1..w_K$ not (label 0)? With $\sigma(x) = 1/(1+e^{-x})$ the loss of one pair is
#
# $$
# \ell(c, o) = -\log\sigma(u_o^\top v_c) - \sum_{k=1}^{K} \log\sigma(-u_{w_k}^\top v_c),
# \qquad w_k \sim P_n(w) = \frac{\text{count}(w)^{3/4}}{\sum_{w'} \text{count}(w')^{3/4}}.
# $$
#
# ### The noise distribution
#
# Raising counts to the power $3/4$ flattens the unigram distribution: frequent words are drawn a
# little less often, rare words more often. word2vec precomputes a large "unigram table" to sample
# from; gensim stores its cumulative sum (`cum_table`) and bisects it. `w2v.sample_negatives` does
# the same with `torch.searchsorted`, on the training device. The tests check our table against
# gensim's `cum_table` entry by entry.

# %% tags=["otter_ignore"]
p_uni = w2v.negative_distribution(vocab.counts, power=1.0)
p_34 = w2v.negative_distribution(vocab.counts, power=0.75)
cum = torch.as_tensor(np.cumsum(p_34), dtype=torch.float64)
draws = w2v.sample_negatives(cum, (1_000_000,),
                             torch.Generator().manual_seed(0)).numpy()
empirical = np.bincount(draws, minlength=len(vocab)) / len(draws)
glue("p_the_uni", p_uni[0])
glue("p_the_34", p_34[0])

fig, ax = plt.subplots(figsize=(5.5, 3.4))
top = np.arange(1, 2001)
ax.loglog(top, p_uni[:2000], label="unigram (power 1)")
ax.loglog(top, p_34[:2000], label="power 3/4")
ax.loglog(top, empirical[:2000], ".", ms=2, alpha=0.4, label="1M draws, power 3/4")
ax.axhline(1 / len(vocab), color="grey", lw=0.8, label="uniform")
ax.set_xlabel("word rank")
ax.set_ylabel("probability of being drawn")
ax.legend(fontsize=8)

# %% [markdown]
# "the" makes up {glue:text}`p_the_uni:.1%` of the training tokens but only {glue:text}`p_the_34:.1%`
# of the negatives.
#
# ### The gradient, by hand
#
# Write $s_o = u_o^\top v_c$ and $s_k = u_{w_k}^\top v_c$. Since $\frac{d}{dx}\log\sigma(x) = 1 -
# \sigma(x)$ and $\frac{d}{dx}\log\sigma(-x) = -\sigma(x)$,
#
# $$
# \frac{\partial \ell}{\partial s_o} = \sigma(s_o) - 1, \qquad
# \frac{\partial \ell}{\partial s_k} = \sigma(s_k),
# $$
#
# and by the chain rule ($\partial s_o/\partial v_c = u_o$, $\partial s_o/\partial u_o = v_c$):
#
# $$
# \frac{\partial \ell}{\partial v_c} = (\sigma(s_o) - 1)\,u_o + \sum_{k}\sigma(s_k)\,u_{w_k},\qquad
# \frac{\partial \ell}{\partial u_o} = (\sigma(s_o) - 1)\,v_c,\qquad
# \frac{\partial \ell}{\partial u_{w_k}} = \sigma(s_k)\,v_c.
# $$
#
# Each gradient is "prediction minus label" times the other vector {cite}`goldberg2014word2vec`.
# A pair only touches $K+2$ rows of the two tables, so the update is sparse: `w2v.SGNS.sgd_step`
# gathers those rows for a batch of pairs, computes these formulas (`w2v.sgns_gradients`) and adds
# $-\eta\,\nabla$ back with `index_add_`. A row that appears several times in a batch (a frequent
# negative) receives the sum of its gradients, as word2vec's lock-free threads would apply them one
# after the other. Here is the check against PyTorch's autograd on the toy case $v_c = (1, 0)$,
# $u_o = (2, 0)$ and two negatives:

# %% tags=["otter_ignore"]
v = torch.tensor([[1.0, 0.0]], requires_grad=True)
u_pos = torch.tensor([[2.0, 0.0]], requires_grad=True)
u_neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]], requires_grad=True)  # (B=1, K=2, D=2)
loss = w2v.sgns_loss(v, u_pos, u_neg)
loss.sum().backward()
grad_v, grad_pos, grad_neg, _ = w2v.sgns_gradients(v.detach(), u_pos.detach(),
                                                   u_neg.detach())
by_hand = (-np.log(1 / (1 + np.exp(-2))) - np.log(1 / (1 + np.exp(0)))
           - np.log(1 / (1 + np.exp(-1))))
print(f"loss: library {loss.item():.6f}, by hand {by_hand:.6f}")
print("dl/dv_c:", grad_v.numpy().round(4), " autograd:", v.grad.numpy().round(4))
gap = max((grad_v - v.grad).abs().max(), (grad_pos - u_pos.grad).abs().max(),
          (grad_neg - u_neg.grad).abs().max())
glue("grad_gap", float(gap))

# %% [markdown]
# The hand-derived gradient and autograd differ by at most {glue:text}`grad_gap:.1e`.
#
# ## Training: from scratch and with gensim, same corpus, same hyper-parameters
#
# Both models get the same documents, vocabulary threshold, window, number of negatives, noise
# exponent, subsampling threshold, vector size, epochs and learning-rate schedule (linear decay from
# `lr` to $10^{-4}$ over all the words of all epochs). Word2vec's default starting rate for
# skip-gram is 0.025; the `ci` run has only a few epochs and starts at 0.05 for both.

# %% tags=["otter_ignore"]
cfg = w2v.SGNSConfig(
    dim=pick(ci=50, full=100), window=5, negative=5, ns_exponent=0.75, sample=sample,
    epochs=pick(ci=3, full=5 if corpus.name == "text8" else 20),
    lr=pick(ci=0.05, full=0.025), min_lr=1e-4,
    batch_size=pick(ci=1024, full=4096 if device.type == "cuda" else 1024), seed=0)
print(cfg)
glue("dim", cfg.dim)
glue("epochs", cfg.epochs)
glue("lr", cfg.lr)

t0 = time.perf_counter()
model, history = w2v.train_sgns(docs, vocab, cfg, device=device)
scratch_seconds = time.perf_counter() - t0
scratch_kv = w2v.to_keyed_vectors(vocab.words, model.vectors())
print(f"scratch SGNS: {scratch_seconds:.1f} s, {history.pairs[-1]:,} pairs in the last "
      f"epoch, loss per epoch {np.round(history.loss, 3).tolist()}")

# %% [markdown]
# gensim splits documents longer than 10,000 tokens (its internal limit), so we give it the same
# tokens in pieces of at most 10,000. It runs with `workers=2` threads, so its results vary a little
# from run to run (the threads race); the scratch model is seeded and reproducible. It runs in
# PyTorch on the device shown at the top (one thread on a CPU: its steps are small gathers and
# scatters that do not gain from more).

# %% tags=["otter_ignore"]
def gensim_sentences(token_docs, limit=10_000):
    return [d[i:i + limit] for d in token_docs for i in range(0, len(d), limit)]


def gensim_w2v(sentences, sg=1, **overrides):
    params = dict(vector_size=cfg.dim, window=cfg.window, negative=cfg.negative,
                  ns_exponent=cfg.ns_exponent, sample=cfg.sample, min_count=min_count,
                  alpha=cfg.lr, min_alpha=cfg.min_lr, epochs=cfg.epochs, sg=sg, hs=0,
                  workers=2, seed=cfg.seed)
    params.update(overrides)
    return Word2Vec(sentences, **params)


sentences = gensim_sentences(tokens)
t0 = time.perf_counter()
gensim_sg = gensim_w2v(sentences, sg=1)
gensim_seconds = time.perf_counter() - t0
assert set(gensim_sg.wv.index_to_key) == set(vocab.words)       # the same vocabulary
t0 = time.perf_counter()
gensim_cbow = gensim_w2v(sentences, sg=0)
cbow_seconds = time.perf_counter() - t0

words_trained = n_train_words * cfg.epochs                  # same count for every model
speed = {"scratch SGNS (PyTorch)": words_trained / scratch_seconds,
         "gensim skip-gram": words_trained / gensim_seconds,
         "gensim CBOW": words_trained / cbow_seconds}
glue("scratch_wps", speed["scratch SGNS (PyTorch)"])
glue("gensim_wps", speed["gensim skip-gram"])
glue("cbow_wps", speed["gensim CBOW"])
glue("scratch_seconds", scratch_seconds)
glue("gensim_seconds", gensim_seconds)
for name, s in speed.items():
    print(f"{name:>24s}: {s:>10,.0f} words/s")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history.epoch, history.loss, "-o", ms=3)
ax.set_xlabel("epoch")
ax.set_ylabel("mean SGNS loss per pair")
ax.grid(alpha=0.3)

# %% [markdown]
# Throughput in the same run, counting the {glue:text}`n_train_words:,` in-vocabulary words per
# epoch: scratch SGNS {glue:text}`scratch_wps:,.0f` words/s ({glue:text}`scratch_seconds:.1f` s),
# gensim skip-gram {glue:text}`gensim_wps:,.0f` words/s ({glue:text}`gensim_seconds:.1f` s), gensim
# CBOW {glue:text}`cbow_wps:,.0f` words/s. gensim's inner loop is optimised C that updates the
# vectors pair by pair in the CPU cache; ours gathers and scatters the rows of a whole batch through
# memory, a pattern made for a GPU's many parallel memory accesses rather than for a CPU's cache.
#
# ## Evaluation: word similarity and analogies
#
# Three standard benchmarks ship with gensim's test data (`data.word_eval_files()`):
#
# - **WordSim-353** {cite}`finkelstein2002placing` and **SimLex-999** {cite}`hill2015simlex`: word
#   pairs with human similarity scores; we report the Spearman rank correlation between the humans
#   and the cosine similarity of the vectors. WordSim-353 mixes similarity and relatedness
#   (*cup–coffee*), SimLex-999 rewards similarity only (*cup–mug*), and is harder.
# - **Google analogies** (`questions-words.txt`, {cite}`mikolov2013efficient`): 19,544 questions
#   *a : b :: c : ?* ("Athens : Greece :: Berlin : ?"), answered by the word closest to
#   $v_b - v_a + v_c$ (3CosAdd). A question counts only if its four words are in the vocabulary.
#
# Both models are evaluated by the **same functions** — gensim's `evaluate_word_pairs` and
# `evaluate_word_analogies` on `KeyedVectors` (the scratch vectors are wrapped with
# `w2v.to_keyed_vectors`) — so the protocol is identical. Random vectors give the chance level.

# %% tags=["otter_ignore"]
random_kv = w2v.to_keyed_vectors(vocab.words,
                                 w2v.SGNS(len(vocab), cfg.dim, seed=1).vectors())
results = pd.DataFrame({name: w2v.evaluate_embeddings(kv) for name, kv in
                        [("scratch SGNS", scratch_kv),
                         ("gensim skip-gram", gensim_sg.wv),
                         ("gensim CBOW", gensim_cbow.wv),
                         ("random vectors", random_kv)]}).T
results["words/s"] = pd.Series({"scratch SGNS": speed["scratch SGNS (PyTorch)"],
                                "gensim skip-gram": speed["gensim skip-gram"],
                                "gensim CBOW": speed["gensim CBOW"]})
print(results[["wordsim353", "simlex999", "analogy", "analogy_n", "words/s"]].round(3))
r = results.loc
for key, row in [("scratch", "scratch SGNS"), ("gensim", "gensim skip-gram"),
                 ("cbow", "gensim CBOW"),
                 ("random", "random vectors")]:
    glue(f"{key}_ws", r[row, "wordsim353"])
    glue(f"{key}_sl", r[row, "simlex999"])
    glue(f"{key}_an", r[row, "analogy"])
analogy_gap = 100 * (r["scratch SGNS", "analogy"] - r["gensim skip-gram", "analogy"])
glue("analogy_gap", abs(analogy_gap))
glue("analogy_n", int(r["scratch SGNS", "analogy_n"]))
glue("ws_oov", r["scratch SGNS", "wordsim353_oov"] / 100)
print(f"analogy accuracy, scratch minus gensim: {analogy_gap:+.2f} points (target: "
      "within 3)")

# %% [markdown]
# | | WordSim-353 ρ | SimLex-999 ρ | analogies |
# |---|---|---|---|
# | scratch SGNS | {glue:text}`scratch_ws:.3f` | {glue:text}`scratch_sl:.3f` | {glue:text}`scratch_an:.2%` |
# | gensim skip-gram | {glue:text}`gensim_ws:.3f` | {glue:text}`gensim_sl:.3f` | {glue:text}`gensim_an:.2%` |
# | gensim CBOW | {glue:text}`cbow_ws:.3f` | {glue:text}`cbow_sl:.3f` | {glue:text}`cbow_an:.2%` |
# | random vectors | {glue:text}`random_ws:.3f` | {glue:text}`random_sl:.3f` | {glue:text}`random_an:.2%` |
#
# Compare the first two rows, the same algorithm in two implementations: their analogy accuracies
# differ by {glue:text}`analogy_gap:.2f` points (the course's target is at most 3), over the
# {glue:text}`analogy_n:,` questions whose words are all in this vocabulary;
# {glue:text}`ws_oov:.0%` of the WordSim-353 pairs are out of vocabulary and skipped.
#
# ```{admonition} Small corpora give weak analogies
# :class: warning
# These analogy accuracies are low, and that is expected: analogies need each word to be seen in
# many contexts. Mikolov et al. {cite}`mikolov2013efficient` trained skip-gram on 783 million
# words; this run's corpus of {glue:text}`n_tokens:,` words leaves most analogy words with a handful
# of contexts, and most questions out of vocabulary. The next cell measures the trend on this
# corpus: gensim trained on a quarter, half and all of it, with everything else unchanged, each
# accuracy with its 95% interval.
# ```

# %% tags=["otter_ignore"]
curve = []
for frac in (0.25, 0.5, 1.0):
    n_keep = int(frac * n_tokens)
    part, n = [], 0
    for d in tokens:
        if n >= n_keep:
            break
        part.append(d[:n_keep - n])
        n += len(part[-1])
    m = gensim_sg if frac == 1.0 else gensim_w2v(gensim_sentences(part), sg=1)
    curve.append({"tokens": n, **w2v.evaluate_embeddings(m.wv)})
curve = pd.DataFrame(curve)
from course_lib.claims import proportion_interval, verdict

# 95% intervals: Wilson for an accuracy over n questions; Fisher's z for a Spearman rho
# over the WordSim-353 pairs in the vocabulary (standard error 1.03 / sqrt(n - 3),
# Bonett & Wright)
ivals = [proportion_interval(round(a * n), n) if n else (0.0, 1.0)
         for a, n in zip(curve.analogy, curve.analogy_n)]
curve["analogy low"], curve["analogy high"] = zip(*ivals)
n_pairs = np.round(353 * (1 - curve.wordsim353_oov / 100)).astype(int)
z, half = np.arctanh(curve.wordsim353), 1.96 * 1.03 / np.sqrt(n_pairs - 3)
curve["ws low"], curve["ws high"] = np.tanh(z - half), np.tanh(z + half)
print(
    curve[["tokens", "wordsim353", "ws low", "ws high", "analogy", "analogy low",
           "analogy high",
             "analogy_n"]].round(4))
first, last = curve.iloc[0], curve.iloc[-1]
verdict("analogy_trend", [
    (last["analogy low"] > first["analogy high"], "rises beyond the intervals: the "
                                                  "trend is real"),
    (last["analogy high"] < first["analogy low"], "falls beyond the intervals"),
    (True, "stays within overlapping intervals: on this corpus the change is noise — "
           "too few questions are answerable, and too few of them right, to measure a "
           "trend"),
])
verdict("ws_trend", [
    (last["ws low"] > first["ws high"], "rises beyond the intervals"),
    (last["ws high"] < first["ws low"], "falls beyond the intervals"),
    (True, "moves within overlapping intervals (noise at this size)"),
])
glue("curve_an_small_lo", first["analogy low"])
glue("curve_an_small_hi", first["analogy high"])
glue("curve_an_full_lo", last["analogy low"])
glue("curve_an_full_hi", last["analogy high"])
glue("curve_ws_small", first.wordsim353); glue("curve_ws_full", last.wordsim353)
glue("curve_an_small", curve.analogy.iloc[0])
glue("curve_an_full", curve.analogy.iloc[-1])
glue("curve_n_small", int(curve.analogy_n.iloc[0]))
glue("curve_n_full", int(curve.analogy_n.iloc[-1]))
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(curve.tokens, curve.wordsim353, "-o")
axes[0].set_ylabel("WordSim-353 Spearman ρ")
axes[1].plot(curve.tokens, 100 * curve.analogy, "-o")
axes[1].set_ylabel("analogy accuracy (%)")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("training tokens (gensim skip-gram)")
    ax.grid(alpha=0.3)
plt.tight_layout()

# %% [markdown]
# From a quarter of the corpus to all of it, analogy accuracy goes from
# {glue:text}`curve_an_small:.2%` (95% interval {glue:text}`curve_an_small_lo:.2%`–{glue:text}`curve_an_small_hi:.2%`)
# to {glue:text}`curve_an_full:.2%` ({glue:text}`curve_an_full_lo:.2%`–{glue:text}`curve_an_full_hi:.2%`):
# it {glue:text}`analogy_trend`. The number of questions whose four words are in the vocabulary
# grows from {glue:text}`curve_n_small:,` to {glue:text}`curve_n_full:,` — more data first makes
# more questions *answerable*, so the two accuracies are not even measured on the same questions.
# WordSim-353's ρ goes from {glue:text}`curve_ws_small:.3f` to {glue:text}`curve_ws_full:.3f` and
# {glue:text}`ws_trend`. The `full` profile trains longer, on text8 (17 million words) when it can
# be downloaded, where the trend has room to show.
#
# ## Nearest neighbours and analogy arithmetic
#
# `w2v.most_similar` ranks words by cosine similarity to $\sum v_\text{positive} -
# \sum v_\text{negative}$ (each vector normalised first, the query words excluded), exactly as
# gensim's `most_similar` (a test checks they agree). Neighbours from the two independently trained
# models:

# %% tags=["otter_ignore"]
probe = [w for w in ["war", "music", "philosophy", "france", "einstein", "three"]
         if w in vocab.index]
neighbours = pd.DataFrame({
    w: {"scratch SGNS": ", ".join(x for x, _ in w2v.most_similar(model.vectors(),
                                                                 vocab.words, [w],
                                                                 topn=5)),
        "gensim": ", ".join(x for x, _ in gensim_sg.wv.most_similar(w, topn=5))}
        for w in probe}).T
with pd.option_context("display.max_colwidth", 60, "display.width", 140):
    print(neighbours)

# %% tags=["otter_ignore"]
def analogy(kv_vectors, a, b, c, topn=5):
    """a is to b as c is to ?: most_similar(positive=[b, c], negative=[a])."""
    return [w for w, _ in w2v.most_similar(kv_vectors, vocab.words, [b, c], [a],
                                           topn=topn)]


questions = [("man", "king", "woman", "queen"),
             ("france", "paris", "germany", "berlin"),
             ("one", "two", "three", "four"), ("good", "better", "bad", "worse")]
rows = []
for a, b, c, expected in questions:
    if all(x in vocab.index for x in (a, b, c, expected)):
        answer = analogy(model.vectors(), a, b, c, topn=len(vocab) - 3)
        rows.append({"question": f"{a} : {b} :: {c} : ?", "expected": expected,
                     "top 3 (scratch)": ", ".join(answer[:3]),
                     "rank of expected": answer.index(expected) + 1})
print(pd.DataFrame(rows).to_string(index=False))

# %% [markdown]
# ## A picture of a few word groups
#
# Word vectors live in {glue:text}`dim` dimensions; a 2-D PCA of a few hand-picked groups shows
# whether words of a kind cluster together.

# %% tags=["otter_ignore"]
groups = {"countries": ["france", "germany", "italy", "spain", "china", "india",
                        "japan", "russia"],
          "numbers": ["two", "three", "four", "five", "six", "seven", "eight", "nine"],
          "months": ["january", "february", "april", "june", "july", "september",
                     "october", "december"],
          "family": ["father", "mother", "son", "daughter", "brother", "sister", "wife",
                     "husband"]}
# one panel above the other: wide enough for every word's label to be read
fig, axes = plt.subplots(2, 1, figsize=(7.5, 11))
w2v.plot_word_groups(scratch_kv, groups, ax=axes[0], title="scratch SGNS")
w2v.plot_word_groups(gensim_sg.wv, groups, ax=axes[1], title="gensim skip-gram")
plt.tight_layout()

# %% [markdown]
# ## Saving vectors in the word2vec format
#
# The word2vec C tool defined the de-facto exchange format: a header line `V D`, then one line per
# word, `word x1 x2 … xD` (or, in the binary variant, the word, a space and $D$ little-endian
# float32 numbers). `w2v.save_word2vec_format` writes it; gensim's `KeyedVectors` — and most other
# tools — read it. Here the scratch model goes through a file into gensim:

# %% tags=["otter_ignore"]
with tempfile.TemporaryDirectory() as tmp:
    path = w2v.save_word2vec_format(Path(tmp) / "scratch_vectors.txt", vocab.words,
                                    model.vectors())
    print(path.read_text().splitlines()[0], "|", path.read_text().splitlines()[1][:70],
          "...")
    loaded = KeyedVectors.load_word2vec_format(str(path), binary=False)
    bpath = w2v.save_word2vec_format(Path(tmp) / "scratch_vectors.bin", vocab.words,
                                     model.vectors(),
                                     binary=True)
    loaded_bin = KeyedVectors.load_word2vec_format(str(bpath), binary=True)
assert loaded.index_to_key == vocab.words
glue("roundtrip_err", float(max(np.abs(loaded.vectors - model.vectors()).max(),
                                np.abs(loaded_bin.vectors - model.vectors()).max())))
print("gensim reads our file:", len(loaded), "vectors; most similar to 'war':",
      [w for w, _ in loaded.most_similar("war", topn=3)])

# %% [markdown]
# gensim reads both files back with a largest difference of {glue:text}`roundtrip_err:.1e` (the
# text format stores each number with full float32 precision; binary stores the bits).
#
# ## Pitfall: the three-sentence example with `vector_size=3`
#
# ```{admonition} The widely copied version
# :class: warning
# Countless tutorials introduce Word2Vec like this, and read meaning into the result:
#
#     sentences = [["i", "love", "machine", "learning"],
#                  ["i", "love", "deep", "learning"],
#                  ["i", "enjoy", "natural", "language", "processing"]]
#     model = Word2Vec(sentences, vector_size=3, window=2, min_count=1)
#     model.wv.most_similar("love")
#
# It runs, prints plausible-looking similarities, and teaches nothing.
# ```
#
# Let us run it and ask three questions. Did training move the vectors away from their random
# initialisation? Does the answer survive a change of seed? And are similarities of 0.9 remarkable
# in 3 dimensions?

# %% tags=["otter_ignore"]
toy = [["i", "love", "machine", "learning"], ["i", "love", "deep", "learning"],
       ["i", "enjoy", "natural", "language", "processing"]]
copied = Word2Vec(toy, vector_size=3, window=2, min_count=1, workers=1,
                  seed=0).wv.most_similar("love", topn=3)
print(copied)
glue("toy_top_word", copied[0][0])
glue("toy_top_sim", copied[0][1])
glue("toy_tokens", sum(len(s) for s in toy))
glue("toy_epochs", Word2Vec(vector_size=3).epochs)

moved, agree, top1 = [], [], []
n_seeds = 10
for seed in range(n_seeds):
    toy_model = Word2Vec(vector_size=3, window=2, min_count=1, workers=1, seed=seed)
    toy_model.build_vocab(toy)
    before = toy_model.wv.vectors.copy()                     # the random initialisation
    toy_model.train(toy, total_examples=len(toy), epochs=toy_model.epochs)
    after = toy_model.wv.vectors
    moved.append(np.linalg.norm(after - before) / np.linalg.norm(before))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    iu = np.triu_indices(len(before), 1)
    agree.append(spearmanr((unit(before) @ unit(before).T)[iu],
                           (unit(after) @ unit(after).T)[iu])[0])
    top1.append(toy_model.wv.most_similar("love", topn=1)[0][0])
glue("toy_moved", float(np.mean(moved)))
glue("toy_agree", float(np.mean(agree)))
glue("toy_n_seeds", n_seeds)
glue("toy_distinct_top1", len(set(top1)))
glue("toy_vocab", len(toy_model.wv))
rng = np.random.default_rng(0)
# 10,000 sets of random 3-D vectors
rand = rng.normal(size=(10_000, len(toy_model.wv), 3))
rand /= np.linalg.norm(rand, axis=2, keepdims=True)
# best cosine to word 0
best_random = np.sort(rand[:, 1:] @ rand[:, 0, :, None], axis=1)[:, -1, 0]
glue("random_best_cos", float(np.median(best_random)))
print(f"training moved the vectors by {np.mean(moved):.4%} of their norm; similarity "
      f"ranking before vs after training: Spearman {np.mean(agree):.3f}")
print(f"top-1 neighbour of 'love' over {n_seeds} seeds: {top1}")
print(f"median best cosine among {len(toy_model.wv) - 1} RANDOM 3-D vectors: "
      f"{np.median(best_random):.2f}")

# %% [markdown]
# The copied example answers *{glue:text}`toy_top_word`* with a cosine of
# {glue:text}`toy_top_sim:.2f`. Training moved the vectors by {glue:text}`toy_moved:.4%` of their
# length on average: with {glue:text}`toy_tokens` tokens and {glue:text}`toy_epochs` epochs they
# barely leave their random initialisation, and
# the similarity ranking after training agrees with the ranking *before* training with a Spearman
# correlation of {glue:text}`toy_agree:.3f`. The "most similar" word to *love* was
# {glue:text}`toy_distinct_top1` different words over {glue:text}`toy_n_seeds` seeds. And a cosine
# of 0.9 means nothing in 3 dimensions: among {glue:text}`toy_vocab` random 3-D directions, the
# closest one to a given word has a median cosine of {glue:text}`random_best_cos:.2f`. The printed
# list is the random initialisation.
#
# ```{admonition} The fix
# :class: tip
# Train on a real corpus (hundreds of thousands of words at the very least), with a vector size of
# 50–300, `min_count` ≥ 5 so that every word has enough contexts, and **measure** the vectors against
# human judgements (WordSim-353, SimLex-999, analogies) and against random vectors, as above. A
# neighbour list is only evidence when two independently trained models agree on it:
# ```

# %% tags=["otter_ignore"]
def top_overlap(kv_a, kv_b, words, topn=10):
    return np.mean([len({w for w, _ in kv_a.most_similar(x, topn=topn)} &
                        {w for w, _ in kv_b.most_similar(x, topn=topn)}) / topn
                        for x in words])


frequent = vocab.words[100:300]                           # 200 frequent, non-stop words
glue("overlap_models", top_overlap(scratch_kv, gensim_sg.wv, frequent))
glue("overlap_random", top_overlap(scratch_kv, random_kv, frequent))
print("top-10 neighbour overlap, scratch vs gensim: "
      f"{top_overlap(scratch_kv, gensim_sg.wv, frequent):.1%}; scratch vs random "
      f"vectors: {top_overlap(scratch_kv, random_kv, frequent):.1%}")

# %% [markdown]
# On 200 frequent words, the top-10 neighbours of the scratch model and of gensim — trained
# separately, with different code and random streams — share {glue:text}`overlap_models:.1%` of
# their words, against {glue:text}`overlap_random:.1%` with random vectors: these neighbours are a
# property of the corpus, not of the seed.
#
# ## Go further
#
# - Run with `COURSE_PROFILE=full` on a GPU with internet: text8 (17 million words), 100 dimensions,
#   5 epochs, and compare the analogy accuracies of the scratch model and gensim with this run's.
# - Implement CBOW in `course_lib.word2vec`: average the context vectors, predict the center with
#   negative sampling; the gradient is the same with $v_c$ replaced by the average.
# - Replace SGD by `torch.optim.SparseAdam` on `nn.Embedding(sparse=True)` and compare the number of
#   epochs needed.
# - Levy and Goldberg {cite}`levy2014neural` showed that SGNS implicitly factorises a shifted PMI
#   matrix: compute the PMI matrix of this corpus and compare its SVD with the learned vectors.
# - The BERT chapter replaces one vector per word by one vector per word *in context*.

# %% [markdown]
# ## Exercises
#
# Three graded questions. In your own copy of the chapter (the *student version*: see the link
# below), write your answer in place of each `...`, then run `grader.check("q1")` for instant
# feedback from the public tests; your instructor grades with more (hidden) tests. In this book the solutions are folded:
# click *Show code cell source* only after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 04_word2vec
# init_cell: false
# check_all_cell: false
# export_cell: false
# solutions_pdf: false
# tests:
#   files: true
#   ok_format: false

# %% tags=["otter_ignore", "remove-input"]
from course_lib.colab import chapter_links
# the student version and the full chapter in Colab
chapter_links("04_word2vec", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("04_word2vec")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — subsampling by hand (2 points)
#
# Implement `p_keep(count, total, sample)`: the probability that word2vec keeps one occurrence of a
# word seen `count` times in a corpus of `total` tokens, with threshold `sample` (the formula of
# this chapter). Return a Python `float`. Do not use `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def p_keep(count, total, sample):
    # BEGIN SOLUTION
    f = count / total
    return float(min(1.0, ((f / sample) ** 0.5 + 1) * sample / f))
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(p_keep):
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        assert type(p_keep(10, 1000, 1e-3)) is float, "return a Python float"
        assert p_keep(1, 10**6, 1e-3) == 1.0, "a rare word is always kept"
        assert abs(p_keep(100, 1000, 1e-3) - 0.11) < 1e-12, \
            "f = 0.1, s = 0.001: (10 + 1) * 0.01"

test_q1_public(p_keep)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_hidden(p_keep):
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-9, "atol": 1e-12}

    def probe_q1(p_keep):
        counts = [50_000, 3_000, 400, 20, 7, 1]
        total = sum(counts)
        return [p_keep(c, total, s) for s in (1e-3, 1e-4, 1e-5)
                for c in counts] + [p_keep(100, 1000, 1e-3)]

    assert len(probe_q1(p_keep)) == 19
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        import numpy as _np
        from course_lib import word2vec as _w2v
        _counts = _np.array([50_000, 3_000, 400, 20, 7])
        for _sample in (1e-3, 1e-4, 1e-5):
            _expected = _w2v.keep_probability(_counts, _sample)
            for _c, _e in zip(_counts, _expected):
                _got = p_keep(int(_c), int(_counts.sum()), _sample)
                assert type(_got) is float and abs(_got - _e) < 1e-9, \
                    (_c, _sample, _got, _e)

test_q1_hidden(p_keep)

# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — the SGNS loss of one pair (3 points)
#
# Implement `pair_loss(v_c, u_o, u_negs)` with NumPy: the negative-sampling loss of one (center,
# context) pair, for `v_c` and `u_o` of shape `(D,)` and `u_negs` of shape `(K, D)`. Return a
# Python `float`. It must stay finite when the dot products are as large as ±1000 (hint:
# $-\log\sigma(x) = \log(1 + e^{-x})$, and `np.logaddexp(0, -x)` computes it stably).

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def pair_loss(v_c, u_o, u_negs):
    # BEGIN SOLUTION
    pos = float(np.dot(u_o, v_c))
    neg = np.asarray(u_negs) @ np.asarray(v_c)             # (K, D) @ (D,) -> (K,)
    return float(np.logaddexp(0, -pos) + np.logaddexp(0, neg).sum())
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(pair_loss):
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        import math as _math
        import numpy as _np
        _out = pair_loss(_np.array([1.0, 0.0]), _np.array([2.0, 0.0]),
                         _np.array([[0.0, 1.0], [-1.0, 0.0]]))
        assert type(_out) is float, "return a Python float"
        _expected = (_math.log1p(_math.exp(-2)) + _math.log(2)
                     + _math.log1p(_math.exp(-1)))
        assert abs(_out - _expected) < 1e-9, (_out, _expected)

test_q2_public(pair_loss)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_hidden(pair_loss):
    grading_q2 = {"rtol": 1e-6, "atol": 1e-9}

    def probe_q2(pair_loss):
        import numpy as np
        rng = np.random.default_rng(5)
        out = []
        for scale in (0.3, 3.0, 300.0):
            v, u, n = (rng.normal(size=8) * scale, rng.normal(size=8),
                       rng.normal(size=(4, 8)))
            out.append(pair_loss(v, u, n))
        out.append(pair_loss(np.array([1.0, 0.0]), np.array([2.0, 0.0]),
                             np.array([[0.0, 1.0], [-1.0, 0.0]])))
        # dot products of +-1000: a naive log(sigmoid) overflows
        out.append(pair_loss(np.array([1000.0, 0.0]), np.array([-1.0, 0.0]),
                             np.array([[1.0, 0.0], [-1.0, 0.0]])))
        return out

    assert len(probe_q2(pair_loss)) == 5
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        import math as _math
        import numpy as _np
        import torch as _torch
        from course_lib import word2vec as _w2v
        _rng = _np.random.default_rng(5)
        for _scale in (0.3, 3.0, 300.0):
            _v, _u, _n = (_rng.normal(size=8) * _scale, _rng.normal(size=8),
                          _rng.normal(size=(4, 8)))
            _ref = _w2v.sgns_loss(
                *(_torch.tensor(x)[None] for x in (_v, _u, _n))).item()
            _got = pair_loss(_v, _u, _n)
            assert _math.isfinite(_got) and abs(_got - _ref) <= 1e-6 * max(
                1, abs(_ref)), (_scale, _got, _ref)

test_q2_hidden(pair_loss)

# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — how many training pairs? (2 points)
#
# A document has `n` tokens (after subsampling) and the window is `window`, **without** random
# shrinking. Implement `n_pairs(n, window)`: the exact number of (center, context) pairs skip-gram
# makes from it. Return a Python `int`. (Check your formula with
# `w2v.skipgram_pairs([np.arange(n)], window, shrink=False)`.)

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def n_pairs(n, window):
    # BEGIN SOLUTION
    return int(sum(2 * max(n - d, 0) for d in range(1, window + 1)))
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(n_pairs):
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        assert type(n_pairs(10, 2)) is int, "return a Python int"
        assert n_pairs(4, 1) == 6, \
            "4 tokens, window 1: 3 neighbouring pairs, each in both directions"

test_q3_public(n_pairs)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(n_pairs):
    def probe_q3(n_pairs):
        return [n_pairs(n, w) for n, w in [(1, 5), (0, 3), (2, 5), (9, 2), (37, 5),
                                           (100, 10), (6, 6), (4, 1)]]

    assert len(probe_q3(n_pairs)) == 8
    from course_lib.grading import time_limit
    with time_limit(20):   # bounds every call into submitted code
        import numpy as _np
        from course_lib import word2vec as _w2v
        assert n_pairs(1, 5) == 0 and n_pairs(0, 3) == 0
        for _n, _w in [(2, 5), (9, 2), (37, 5), (100, 10), (6, 6)]:
            _c, _ = _w2v.skipgram_pairs([_np.arange(_n)], _w, shrink=False)
            assert n_pairs(_n, _w) == len(_c), (_n, _w, n_pairs(_n, _w), len(_c))

test_q3_hidden(n_pairs)

# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION
