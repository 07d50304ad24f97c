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
# # GPT: autoregressive pre-training, generation, and fine-tuning a decoder
#
# BERT reads a whole sentence at once and fills in blanks. GPT {cite}`radford2018improving` turns
# the Transformer {cite}`vaswani2017attention` the other way: a **decoder** that reads text left to
# right and predicts the **next token**, which is all it needs to be pre-trained on raw text and,
# once trained, to *write*. Scaled up (GPT-2 {cite}`radford2019language`, GPT-3
# {cite}`brown2020language`), the same objective gives models that can be used by **prompting**
# instead of fine-tuning. This chapter builds a GPT in readable PyTorch (`course_lib.gpt`, one
# file, with GPT-2's exact module names so real GPT-2 weights load into it), pre-trains a small one
# on Wikipedia, generates with it, and measures what its pre-training buys on sentiment.
#
# ```{admonition} What you will be able to do
# :class: tip
# - explain the causal mask, and why the targets are the inputs shifted by one;
# - train a byte-level BPE tokeniser and compare it with characters and words;
# - pre-train a small GPT and judge it against honest count baselines (unigram, Kneser-Ney bigram);
# - generate with greedy decoding, temperature, top-k, top-p and a repetition penalty, and make
#   generation fast with a KV cache;
# - fine-tune the decoder for classification, and prompt it zero- and few-shot.
# ```

# %% [markdown]
# ## Setup
#
# `COURSE_PROFILE` picks the run size: `ci` (about a minute of CPU, offline) or `full` (a larger
# model on a GPU). The sizes of both live in `gpt.PROFILES`. Everything is seeded.

# %% tags=["otter_ignore"]
import copy
import json
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import bert, data, gpt, train
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
P = gpt.PROFILES[PROFILE]          # this chapter's run sizes, shared with its benchmark
t_start = time.perf_counter()

# %% [markdown]
# ## The data: English Wikipedia
#
# GPT-2 was pre-trained on 40 GB of web text; we use what fits a laptop and needs no internet:
# the English Wikipedia articles shipped inside gensim's wheel (about half a million words), or,
# in the `full` profile when it can be downloaded, text8 (the first $10^8$ bytes of Wikipedia,
# checksummed by `course_lib.data`). Whole articles go either to training or to validation, never
# both, so the validation loss measures text the model never saw.

# %% tags=["otter_ignore"]
corpus = data.load_text_corpus(pick(ci="enwiki_sample", full=None))
print(corpus.protocol)
docs = [gpt.clean_wiki_text(d) for d in corpus.documents]
train_docs, val_docs = gpt.split_documents(docs, val_fraction=0.1, seed=0,
                                           max_chars=P["corpus_chars"])
n_train_chars, n_val_chars = sum(map(len, train_docs)), sum(map(len, val_docs))
print(f"{len(train_docs)} training documents ({n_train_chars:,} characters), "
      f"{len(val_docs)} validation documents ({n_val_chars:,} characters)")
print(train_docs[0][:300])
glue("corpus_name", corpus.name)
glue("n_train_chars", n_train_chars)
glue("n_val_chars", n_val_chars)

# %% [markdown]
# ## Tokenisation for generation: byte-level BPE
#
# A model that writes text needs a vocabulary from which *any* text can be built. Characters can,
# but make sequences long; words make them short but the vocabulary is huge and a new word is
# unknown. **Byte-pair encoding** {cite}`sennrich2016neural` starts from the 256 byte values (so
# nothing is ever unknown, emoji and Chinese included) and repeatedly merges the most frequent
# adjacent pair into a new symbol, until the vocabulary has the size we ask for. GPT-2 first cuts
# the text before spaces, so " the" (with its space) is one token. `gpt.train_bpe` trains one on
# our training articles with Hugging Face `tokenizers`:

# %% tags=["otter_ignore"]
t0 = time.perf_counter()
tok = gpt.train_bpe(train_docs, vocab_size=P["vocab_size"])
V = tok.get_vocab_size()
EOT = tok.token_to_id(gpt.EOT)
train_ids = gpt.encode_documents(tok, train_docs)
val_ids = gpt.encode_documents(tok, val_docs)
print(f"BPE with {V} tokens trained in {time.perf_counter() - t0:.1f} s")
example = "The anarchists rejected unnecessary hierarchies."
print([tok.id_to_token(i) for i in tok.encode(example).ids])

val_text = "\n".join(val_docs)
train_words = " ".join(train_docs).split()
word_vocab = set(train_words)
rows = [("characters", len(set("".join(train_docs))), len(val_text)),
        ("words (whitespace)", len(word_vocab), len(val_text.split())),
        (f"byte-level BPE", V, len(val_ids))]
oov = np.mean([w not in word_vocab for w in val_text.split()])
print(f"{'unit':22s}{'vocabulary':>12s}{'tokens in validation':>22s}")
for name, vocab, n in rows:
    print(f"{name:22s}{vocab:12,d}{n:22,d}")
print(f"validation words never seen in training: {oov:.1%} (a word-level model cannot "
      "write them)")
glue("bpe_vocab", V)
glue("chars_per_bpe", len(val_text) / len(val_ids))
glue("word_vocab", len(word_vocab))
glue("oov_rate", float(oov))
# BPE sits between words and characters
assert len(val_text.split()) < len(val_ids) < len(val_text)

# %% [markdown]
# With {glue:text}`bpe_vocab:,` tokens, a BPE token covers {glue:text}`chars_per_bpe:.1f`
# characters on average, a sequence several times shorter than in characters, while the word
# vocabulary already has {glue:text}`word_vocab:,` entries and still misses
# {glue:text}`oov_rate:.1%` of the validation words. GPT-2's own BPE has 50,257 tokens.
#
# ## Causal self-attention, and the shifted targets
#
# A language model factorises the probability of a text into next-token predictions,
#
# $$
# p(x_1, \dots, x_T) = \prod_{t=1}^{T} p(x_t \mid x_1, \dots, x_{t-1}),
# \qquad
# \mathcal{L} = -\frac{1}{T}\sum_{t=1}^{T} \log p_\theta(x_t \mid x_{<t}).
# $$
#
# A decoder computes all $T$ predictions in **one forward pass**: position $t$ reads the tokens
# up to $t$ and predicts token $t+1$. Two things make that honest. The **causal mask** sets the
# attention score of every later position to $-\infty$ before the softmax,
#
# $$
# \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}} + M\right)V,
# \qquad M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}
# $$
#
# so that no position can read the token it must predict. And the **targets are the inputs shifted
# by one**: `gpt.make_windows` cuts the token stream into windows of $T + 1$ tokens, the first $T$
# are the input, the last $T$ the targets. Here is the mask, and a check on a model that the output
# at position $t$ does not change when the tokens after $t$ do:

# %% tags=["otter_ignore"]
T = P["n_positions"]
x_train, y_train = gpt.make_windows(train_ids, T)
x_val, y_val = gpt.make_windows(val_ids, T)
print(f"{len(x_train):,} training windows and {len(x_val):,} validation windows of {T} "
      "tokens")
print("input :", x_train[0, :8].tolist())
print("target:", y_train[0, :8].tolist(), "(the same, one step ahead)")
assert torch.equal(x_train[:, 1:], y_train[:, :-1])

config = gpt.GPTConfig(vocab_size=V, n_positions=T, n_embd=P["n_embd"],
                       n_layer=P["n_layer"],
                       n_head=P["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                       attn_pdrop=0.0,
                       bos_token_id=EOT, eos_token_id=EOT)
seed_everything(0)
model = gpt.GPT2LMHeadModel(config).to(device)
probe = x_val[:2, :24].to(device)
changed = probe.clone()
changed[:, 12:] = torch.randint(0, V, (2, 12),
                                generator=torch.Generator().manual_seed(1)).to(device)
with torch.no_grad():
    same = (model(probe)[:, :12] - model(changed)[:, :12]).abs().max().item()
    after = (model(probe)[:, 12:] - model(changed)[:, 12:]).abs().max().item()
print(f"positions 0-11 change by {same:.1e}, positions 12-23 by {after:.2f}")
assert same < 1e-5 < after

fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.imshow(np.tril(np.ones((8, 8))), cmap="Blues", vmin=0, vmax=1.3)
ax.set_xlabel("key position j (what is read)")
ax.set_ylabel("query position i (who reads)")
ax.set_title("causal mask: blue = allowed", fontsize=9)
fig.tight_layout()

# %% [markdown]
# ## Honest baselines: counting
#
# Before training a network, what can **counting** do on the same split and the same tokens? A
# **unigram** model ignores context: $p(w) \propto c(w) + 1$. A **bigram** model predicts from the
# previous token, $p(w \mid v) = c(v, w) / c(v)$, which gives probability 0 to any pair not seen in
# training, so it must be smoothed. Add-$k$ smoothing adds a pseudo-count to every pair; interpolated
# **Kneser-Ney** {cite}`kneser1995improved,chen1999empirical` subtracts a discount $d$ from each seen
# pair and gives the mass to a continuation distribution: a token that follows many *different*
# tokens is a likely guess in a new context. All three are scored as the GPT will be: the mean
# negative log-likelihood (nats per token) of every validation token given what came before, and
# its exponential, the **perplexity** (the effective number of equally likely choices per token).

# %% tags=["otter_ignore"]
baselines = {
    "unigram (add-one)": gpt.UnigramLM().fit(train_ids, V).nll(val_ids),
    "bigram (add-k, k=0.01)": gpt.BigramLM("add_k", k=0.01).fit(train_ids,
                                                                V).nll(val_ids),
    "bigram (Kneser-Ney)": gpt.BigramLM("kneser_ney").fit(train_ids, V).nll(val_ids),
}
for name, nll in baselines.items():
    print(f"{name:24s} {nll:.3f} nats/token, perplexity {gpt.perplexity(nll):7.1f}")
bigram_nll = baselines["bigram (Kneser-Ney)"]
glue("unigram_ppl", gpt.perplexity(baselines["unigram (add-one)"]))
glue("bigram_ppl", gpt.perplexity(bigram_nll))
glue("log_v", math.log(V))

# %% [markdown]
# ## Pre-training a small GPT
#
# `gpt.GPT2LMHeadModel` is GPT-2's architecture: token and position embeddings, `n_layer`
# pre-LayerNorm blocks (causal self-attention, then a GELU feed-forward network, each in a
# residual branch), a final LayerNorm and a language-model head that **shares its weights** with the
# token embedding. We train it with AdamW, warm-up and a cosine schedule, through the course's
# `train.fit` (called by `gpt.pretrain` in a few rounds, so that the validation loss is measured and
# a sample printed between rounds).

# %% tags=["otter_ignore"]
prompt_ids = torch.tensor([tok.encode("The history of").ids], device=device)

def show_sample(round_, val_loss, m):
    out = m.generate(prompt_ids, min(pick(ci=24, full=60), T - prompt_ids.shape[1]),
                     temperature=0.8, top_k=40,
                     generator=torch.Generator().manual_seed(0))
    print(f"round {round_}: validation loss {val_loss:.3f} | "
          f"{tok.decode(out[0].tolist())!r}")

print(f"{model.num_parameters():,} parameters; {len(x_train) * T * P['epochs']:,} "
      "training tokens")
run = gpt.pretrain(model, (x_train, y_train), (x_val, y_val), epochs=P["epochs"],
                   batch_size=P["batch_size"], lr=P["lr"], rounds=P["rounds"],
                   device=device,
                   on_round=show_sample)
gpt_nll = run["val_loss"][-1]
print(f"{len(run['step_loss'])} steps in {run['seconds']:.0f} s; validation loss "
      f"{gpt_nll:.3f} (perplexity {gpt.perplexity(gpt_nll):.1f}) against Kneser-Ney "
      f"bigram {bigram_nll:.3f} (perplexity {gpt.perplexity(bigram_nll):.1f})")
glue("n_params", model.num_parameters())
glue("n_steps", len(run["step_loss"]))
glue("train_seconds", run["seconds"])
glue("gpt_nll", gpt_nll)
glue("gpt_ppl", gpt.perplexity(gpt_nll))
glue("ppl_ratio", gpt.perplexity(gpt_nll) / gpt.perplexity(bigram_nll))
assert gpt.perplexity(gpt_nll) < 0.9 * gpt.perplexity(bigram_nll), \
    "the GPT should beat the bigram clearly"

# %% tags=["otter_ignore"]
fig, ax = plt.subplots(figsize=(6.5, 3.4))
steps_per_round = len(run["step_loss"]) / len(run["val_loss"])
ax.plot(run["step_loss"], lw=0.8, alpha=0.6, label="GPT, training batch")
ax.plot(steps_per_round * np.arange(1, len(run["val_loss"]) + 1), run["val_loss"], "o-",
        label="GPT, validation")
for (name, nll), style in zip(baselines.items(), [":", "-.", "--"]):
    ax.axhline(nll, color="grey", ls=style, lw=1, label=name)
ax.set_ylim(min(run["val_loss"]) - 0.5, math.log(V) + 0.3)
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (nats/token)")
ax.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# In {glue:text}`n_steps:,` steps ({glue:text}`train_seconds:.0f` s here) the
# {glue:text}`n_params:,`-parameter model reaches a validation perplexity of
# **{glue:text}`gpt_ppl:.1f`**, against {glue:text}`bigram_ppl:.1f` for the Kneser-Ney bigram and
# {glue:text}`unigram_ppl:.1f` for the unigram (the first steps start near $\log V$ =
# {glue:text}`log_v:.2f` nats, a uniform guess): its perplexity is
# {glue:text}`ppl_ratio:.2f` times the bigram's (the run checks that it is below 0.9). The bigram saw every training pair; the GPT's
# advantage is the context beyond one token. The samples show the usual order of learning: frequent
# words and punctuation first, then local grammar; facts need far more data and parameters.
#
# ## Generation
#
# Generation repeats one step: run the model on the text so far, turn the last position's logits
# into a distribution, choose a token, append it. **Greedy** decoding takes the most likely token
# (and tends to loop); sampling draws from the distribution, reshaped by
#
# - **temperature** $\tau$: $\operatorname{softmax}(z/\tau)$, sharper below 1, flatter above;
#   $\tau \to 0$ is greedy (the library takes the argmax: never divide by 0);
# - **top-k**: keep the $k$ most likely tokens;
# - **top-p** (nucleus) {cite}`holtzman2020curious`: keep the smallest set of most likely tokens
#   whose probability reaches $p$, so the cut adapts to how sure the model is;
# - a **repetition penalty** {cite}`keskar2019ctrl`: logits of tokens already generated are
#   divided by $\theta > 1$ (multiplied when negative).
#
# `gpt.process_logits` applies them; here is the next-token distribution after a prompt, reshaped
# each way:

# %% tags=["otter_ignore"]
context = torch.tensor([tok.encode("The city is the capital of the").ids],
                       device=device)
with torch.no_grad():
    last = model(context)[:, -1].cpu()                                    # (1, V)
settings_ = {"τ = 1": {}, "τ = 0.5": dict(temperature=0.5),
             "τ = 1.5": dict(temperature=1.5),
             "top-k = 10": dict(top_k=10), "top-p = 0.6": dict(top_p=0.6)}
order = last[0].argsort(descending=True)[:20]
fig, axes = plt.subplots(1, len(settings_), figsize=(13, 2.8), sharey=True)
kept = {}
for ax, (name, kw) in zip(axes, settings_.items()):
    p = gpt.process_logits(last, **kw).softmax(-1)[0]
    kept[name] = int((p > 0).sum())
    ax.bar(range(20), p[order].numpy())
    ax.set_title(f"{name}\n({kept[name]:,} tokens possible)", fontsize=8)
    ax.set_xticks(range(20), [tok.decode([int(i)]) for i in order], rotation=90,
                  fontsize=6)
axes[0].set_ylabel("probability")
fig.tight_layout()
glue("top_p_kept", kept["top-p = 0.6"])
assert kept["top-k = 10"] == 10 and kept["top-p = 0.6"] < kept["τ = 1"]

for name, kw in [("greedy", dict(temperature=0)), ("τ = 1.0", dict(temperature=1.0)),
                 ("τ = 0.7, top-p 0.9", dict(temperature=0.7, top_p=0.9)),
                 ("greedy, repetition penalty 1.5",
                  dict(temperature=0, repetition_penalty=1.5))]:
    out = model.generate(prompt_ids, min(pick(ci=30, full=80), T - prompt_ids.shape[1]),
                         generator=torch.Generator().manual_seed(1), **kw)
    print(f"{name:32s}{tok.decode(out[0, prompt_ids.shape[1]:].tolist())!r}")

# %% [markdown]
# With top-p 0.6 only {glue:text}`top_p_kept:,` tokens remain possible after this prompt.
#
# ### The KV cache
#
# Each generation step above re-runs the model on the whole text, although the keys and values of
# the earlier positions do not change (causal attention: a position never reads later ones). A
# **KV cache** keeps every block's keys and values and feeds only the newest token: each step then
# costs one position instead of $t$. `generate(use_cache=True)` does that; it must give exactly the
# tokens of the uncached loop.

# %% tags=["otter_ignore"]
n_new = T - prompt_ids.shape[1]
timings = {}
outs = {}
for cache in (False, True):
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        outs[cache] = model.generate(prompt_ids, n_new, temperature=0.8, top_k=40,
                                     use_cache=cache,
                                     generator=torch.Generator().manual_seed(3))
        best = min(best, time.perf_counter() - t0)
    timings[cache] = best
speedup = timings[False] / timings[True]
print(f"{n_new} new tokens: without cache {timings[False]:.2f} s, with cache "
      f"{timings[True]:.2f} s -> {speedup:.1f}x; same tokens: "
      f"{torch.equal(outs[False], outs[True])}")
glue("kv_new_tokens", n_new)
glue("kv_speedup", speedup)
assert torch.equal(outs[False], outs[True]) and speedup > 1

# %% [markdown]
# For {glue:text}`kv_new_tokens` new tokens the cache is {glue:text}`kv_speedup:.1f` times faster
# here, with the same tokens. The gain grows with the length (the uncached loop costs $O(t^2)$
# positions in total, the cached one $O(t)$) and with the model; the price is memory: two tensors
# of shape (batch, heads, length, head size) per block.
#
# ## Real GPT-2 weights
#
# `course_lib.gpt` names its modules as Hugging Face's GPT-2 does (`transformer.h.3.attn.c_attn`,
# `mlp.c_fc`, `ln_f`…) and stores the linear layers as GPT-2's `Conv1D` (weight `(in, out)`, the
# transpose of `nn.Linear`), so a GPT-2 checkpoint loads with `load_state_dict` and no renaming
# table. The unit tests check the logits against `transformers.GPT2LMHeadModel` on random
# configurations, with and without padding (max difference ≤ 1e-5). Here on a fresh random
# configuration:

# %% tags=["otter_ignore"]
import transformers

hf_cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=P["n_embd"],
                                 n_layer=P["n_layer"],
                                 n_head=P["n_head"], bos_token_id=EOT, eos_token_id=EOT)
torch.manual_seed(0)
hf_model = transformers.GPT2LMHeadModel(hf_cfg).eval()
ours = gpt.GPT2LMHeadModel(gpt.GPTConfig.from_dict(hf_cfg.to_dict())).eval()
gpt.load_gpt2_state(ours, hf_model.state_dict())            # the same names: no mapping
with torch.no_grad():
    parity = (ours(x_val[:4]) - hf_model(x_val[:4]).logits).abs().max().item()
print(f"max |ours - transformers| over {4 * T} positions: {parity:.1e}")
glue("parity_diff", parity)
assert parity <= 1e-5

try:
    gpt2 = gpt.GPT2LMHeadModel.from_pretrained("gpt2", device=device)
    gpt2_tok = transformers.AutoTokenizer.from_pretrained("gpt2")
    ids = gpt2_tok("The history of", return_tensors="pt").input_ids.to(device)
    text = gpt2_tok.decode(gpt2.generate(ids, 30, temperature=0.7, top_p=0.9,
                                         generator=torch.Generator().manual_seed(0))[0])
    gpt2_status = "real GPT-2 (124M) weights were downloaded and generated:"
except (RuntimeError, OSError) as e:
    text = ""
    gpt2_status = ("GPT-2 weights were not reachable here, so this part did not run "
                   f"({type(e).__name__}).")
print(gpt2_status, text)
glue("gpt2_status", gpt2_status)

# %% [markdown]
# Here: {glue:text}`gpt2_status`. Online, `gpt.GPT2LMHeadModel.from_pretrained("gpt2")` downloads
# the 124M-parameter GPT-2 and the cell above writes with it; its tokens equal those of
# `transformers`' `generate` (a test marked `network` checks it).
#
# ## Fine-tuning the decoder for sentiment
#
# Like BERT, a pre-trained decoder can be fine-tuned with a small head. With causal attention only
# the **last** token has read the whole sentence, so `gpt.SequenceClassifier` reads the vector of
# the last real token (HF's `GPT2ForSequenceClassification` does the same); inputs are therefore
# padded on the right. We compare our pre-trained GPT with the same architecture from scratch, on
# the label count of the BERT chapter, evaluated on the whole SST-2 dev set with 95% Wilson
# intervals, over two seeds.

# %% tags=["otter_ignore"]
sst = data.load_sst2()
print(sst.protocol)
n_labels = min(P["n_labels"], len(sst.train_sentences))
rng = np.random.default_rng(0)
idx = rng.permutation(len(sst.train_sentences))[:n_labels]
x_sst = gpt.encode_batch(tok, [sst.train_sentences[i] for i in idx], max_length=T)
y_sst = torch.as_tensor(sst.train_labels[idx])
x_dev = gpt.encode_batch(tok, sst.dev_sentences, max_length=T)
y_dev = np.asarray(sst.dev_labels)

ft_config = train.TrainConfig(epochs=P["sst_epochs"], batch_size=16,
                              lr=pick(ci=1e-3, full=3e-4),
                              optimizer="adamw", weight_decay=0.01, progress=False)
results = {}
for name, make in [("pre-trained GPT", lambda: copy.deepcopy(model.transformer)),
                   ("same GPT from scratch", lambda: gpt.GPT2Model(config))]:
    accs = []
    for seed in (0, 1):
        seed_everything(seed)
        clf = gpt.SequenceClassifier(make(), 2)
        train.fit(clf, (x_sst, y_sst), config=ft_config, device=device)
        pred = train.predict(clf, x_dev, device=device,
                             batch_size=128).argmax(1).numpy()
        accs.append(int((pred == y_dev).sum()))
    correct = sum(accs)
    lo, hi = bert.accuracy_interval(correct, 2 * len(y_dev))
    results[name] = (correct / (2 * len(y_dev)), lo, hi)
    print(f"{name:24s} dev accuracy {correct / (2 * len(y_dev)):.1%} (95% CI {lo:.1%} "
          f"– {hi:.1%}), seeds: {[f'{a / len(y_dev):.1%}' for a in accs]}")
pre, scr = results["pre-trained GPT"], results["same GPT from scratch"]
gain = 100 * (pre[0] - scr[0])
ft_verdict = ("pre-training helps: the intervals do not overlap" if pre[1] > scr[2] else
              "no clear gain at this scale: the intervals overlap" if pre[2] >= scr[1]
              else
              "pre-training hurt here")
print(ft_verdict)
glue("n_labels", n_labels)
glue("acc_pre", pre[0])
glue("acc_scratch", scr[0])
glue("acc_gain_points", gain)
glue("ft_verdict", ft_verdict)

# %% [markdown]
# With {glue:text}`n_labels:,` labelled sentences the pre-trained GPT reaches
# {glue:text}`acc_pre:.1%` and the same network from scratch {glue:text}`acc_scratch:.1%`
# ({glue:text}`acc_gain_points:+.1f` points): {glue:text}`ft_verdict`. Our GPT saw well under a
# million Wikipedia tokens, few of them about films; the BERT chapter's checkpoint saw billions and
# gained far more. What pre-training transfers grows with its data and size.
#
# ## Prompting: the task as next-token prediction
#
# GPT-3 showed that a large enough language model can do a task with **no** gradient step: write
# the input in a template, and compare the probabilities of the possible continuations,
# here `"<review> It was"` followed by `" good"` or `" bad"` (`gpt.score_options` sums the
# continuation's token log-probabilities). **Few-shot**, the prompt first shows a few solved
# examples. We measure both on dev sentences with our small GPT:

# %% tags=["otter_ignore"]
n_prompt = pick(ci=300, full=len(sst.dev_sentences))
dev_s, dev_y = sst.dev_sentences[:n_prompt], y_dev[:n_prompt]
shots_idx = [i for i in np.argsort([len(s) for s in sst.train_sentences])
             if len(sst.train_sentences[i].split()) >= 4]
shot_pos = next(i for i in shots_idx if sst.train_labels[i] == 1)
shot_neg = next(i for i in shots_idx if sst.train_labels[i] == 0)
demo = (f"{sst.train_sentences[shot_pos]} It was "
        f"good.\n{sst.train_sentences[shot_neg]} It was bad.\n")
options = [" bad", " good"]                                           # label 0, label 1
prompting = {}
demo_tokens = len(tok.encode(demo).ids)
variants = [("zero-shot", "")]
if demo_tokens < T // 2:
    variants.append(("two-shot", demo))
    few_shot_note = (f"two-shot prompts start with {demo_tokens} tokens of "
                     "demonstrations")
else:
    few_shot_note = (f"the two demonstrations alone take {demo_tokens} tokens and the "
                     f"context of this run's model is {T}: few-shot cannot be measured "
                     "here (the full profile's context is "
                     f"{gpt.PROFILES['full']['n_positions']} tokens)")
print(few_shot_note)
for name, prefix in variants:
    scores = gpt.score_options(model.eval(), tok,
                               [f"{prefix}{s} It was" for s in dev_s], options)
    correct = int((scores.argmax(1) == dev_y).sum())
    lo, hi = bert.accuracy_interval(correct, n_prompt)
    always = max(dev_y.mean(), 1 - dev_y.mean())
    prompting[name] = (correct / n_prompt, lo, hi)
    share_good = (scores.argmax(1) == 1).mean()
    print(f"{name:10s} accuracy {correct / n_prompt:.1%} (95% CI {lo:.1%} – {hi:.1%}); "
          f"answers ' good' for {share_good:.0%} of the reviews")
print(f"majority class: {always:.1%}")
beats = {k: v[1] > always for k, v in prompting.items()}
prompt_verdict = ("prompting beats the majority class here" if all(beats.values()) else
                  "prompting does not beat the majority class at this scale"
                  if not any(beats.values()) else
                  "only one of the two prompts beats the majority class")
print(prompt_verdict)
glue("zero_shot_acc", prompting["zero-shot"][0])
glue("few_shot_result", f"two-shot {prompting['two-shot'][0]:.1%}"
     if "two-shot" in prompting
     else f"few-shot was not measured: {few_shot_note}")
glue("majority_acc", float(always))
glue("prompt_verdict", prompt_verdict)

# %% [markdown]
# Zero-shot accuracy is {glue:text}`zero_shot_acc:.1%` ({glue:text}`few_shot_result`), against {glue:text}`majority_acc:.1%` by always answering the
# majority class: {glue:text}`prompt_verdict`. This is expected: in the GPT-3 paper's curves
# {cite}`brown2020language` zero- and few-shot ability **appears with scale** — the 125M-parameter
# model is near chance on many tasks where the 175B model is strong, and the gap between zero-shot
# and few-shot widens with size. A model of a few hundred thousand parameters trained on half a
# million words has learned the local statistics of text, not the association between a review
# and " good".
#
# ## The objectives side by side
#
# Every chapter of this course pre-trains with a different question asked of unlabelled data. The
# table puts them together with a number from this course's own runs (read from the benchmark
# records in `benchmarks/results/`, when the repository is at hand; this chapter's from the run
# above).

# %% tags=["otter_ignore"]
records = {}
for folder in (Path.cwd().parent / "benchmarks" / "results", Path.cwd() / "benchmarks"
               / "results"):
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for r in json.loads(f.read_text()):
            if r.get("value") is not None:
                records.setdefault(r["name"], r["value"])

def rec(name, fmt):
    return fmt.format(records[name]) if name in records else "(no record here)"

objectives = [
    ("autoencoder (ch. 2)", "reconstruct the input through a bottleneck",
     "compression, denoising, features",
     "conv AE error / PCA error: " + rec("conv_ae_over_pca_mse", "{:.2f}")),
    ("contrastive (ch. 3)", "agree on two augmented views of one image",
     "image features for few labels",
     "linear-probe gain over random: " + rec("simclr_probe_gain_points",
                                             "{:+.1f} points")),
    ("Word2Vec (ch. 4)", "the words around a word", "word vectors, similarity",
     "WordSim gap to gensim: " + rec("sgns_vs_gensim_wordsim_gap_points",
                                     "{:.1f} points")),
    ("BERT MLM (ch. 5)", "masked tokens from both sides",
     "understanding: classification, tagging",
     "SST-2 gain over scratch (1k labels): "
     + rec("pretrained_over_scratch_gain_points_1k", "{:+.1f} points")),
    ("GPT (this chapter)", "the next token from the left context",
     "generation, prompting, then fine-tuning",
     f"validation perplexity {gpt.perplexity(gpt_nll):.1f} vs bigram "
     f"{gpt.perplexity(bigram_nll):.1f}"),
]
print(f"{'objective':22s}{'predicts':45s}{'good for':40s}this course's run")
for row in objectives:
    print(f"{row[0]:22s}{row[1]:45s}{row[2]:40s}{row[3]}")

fig, axes = plt.subplots(len(objectives), 1, figsize=(7, 4.2))
patterns = [("in", "in", "in", "in", "in", "in"),
            ("in", "in", "view", "view", "in", "in"),
            ("tgt", "tgt", "in", "tgt", "tgt", "-"),
            ("in", "tgt", "in", "in", "tgt", "in"),
            ("in", "in", "in", "in", "tgt", "-")]
colours = {"in": "tab:blue", "tgt": "tab:orange", "view": "tab:green", "-": "white"}
for ax, (name, *_), pat in zip(axes, objectives, patterns):
    for j, kind in enumerate(pat):
        ax.add_patch(plt.Rectangle((j, 0), 0.9, 0.9, color=colours[kind], alpha=0.8))
    ax.set_xlim(-4.5, 6)
    ax.set_ylim(0, 1)
    ax.text(-4.4, 0.35, name, fontsize=8)
    ax.axis("off")
axes[0].set_title("blue: what the model reads; orange: what it predicts; green: a "
                  "second view",
                  fontsize=8)
fig.tight_layout()

# %% [markdown]
# Reading the rows: the autoencoder predicts its whole input (and needs a bottleneck to learn
# anything), contrastive learning predicts *which* view belongs with which, Word2Vec predicts the
# neighbours of a word, BERT a few hidden tokens from both sides, GPT every next token from the left
# only. The last is the only one that is also a **generator**, and the only one whose pre-training
# task is itself a way to ask for any other task.
#
# ## Pitfalls
#
# ```{admonition} Pitfall 1: forgetting the causal mask
# :class: warning
# A home-made decoder built from an encoder layer (or `nn.MultiheadAttention` without `attn_mask`,
# or `F.scaled_dot_product_attention` without `is_causal=True`) lets position $t$ read token $t+1$,
# which is its target. The training loss collapses — the model copies the answer — and the model
# is useless as soon as the future is not there, that is, when it generates.
# ```

# %% tags=["otter_ignore"]
n_pit = pick(ci=400, full=1000) * P["batch_size"]
seed_everything(0)
leaky = gpt.GPT2LMHeadModel(
    gpt.GPTConfig(**{**config.__dict__, "causal": False})).to(device)
leaky_run = gpt.pretrain(leaky, (x_train[:n_pit], y_train[:n_pit]),
                         (x_val[:64], y_val[:64]),
                         batch_size=P["batch_size"], lr=P["lr"], rounds=1,
                         device=device)
leaky.config.causal = True                              # generation reads the past only
for block in leaky.transformer.h:
    block.attn.causal = True
with torch.no_grad():
    leaky_val = gpt.lm_loss(leaky(x_val[:256].to(device)),
                            y_val[:256].to(device)).item()
    good_val = gpt.lm_loss(model(x_val[:256].to(device)), y_val[:256].to(device)).item()
steps_pit = len(leaky_run["step_loss"])
leaky_train = float(np.mean(leaky_run["step_loss"][-10:]))
good_train = float(np.mean(run["step_loss"][steps_pit - 10:steps_pit]))
print(f"after {steps_pit} steps: training loss without the mask {leaky_train:.2f}, "
      f"with the mask {good_train:.2f}")
print(f"validation loss with causal reading: without the mask {leaky_val:.2f}, with it "
      f"{good_val:.2f}")
print("sample:",
      repr(tok.decode(leaky.generate(prompt_ids, 24, temperature=0)[0].tolist())))
glue("leaky_train", leaky_train)
glue("good_train", good_train)
glue("leaky_val", leaky_val)
glue("good_val", good_val)
leak_verdict = ("the training loss collapsed: the model reads its answer"
                if leaky_train < good_train - 1 else
                "within this short run the training loss has not collapsed yet "
                "(learning to read the next position takes more steps at this scale), "
                "but the model is already worse at real prediction")
print(leak_verdict)
glue("leak_verdict", leak_verdict)
from course_lib.claims import claim

claim("without the mask the validation loss, read causally, is worse than the correct "
      "model's",
      leaky_val > good_val, margin=leaky_val - good_val, name="leak_val_claim")

# %% [markdown]
# Without the mask the training loss is {glue:text}`leaky_train:.2f` (the correct model had
# {glue:text}`good_train:.2f` at the same step): {glue:text}`leak_verdict`. Reading the past only,
# as in generation, its validation loss is {glue:text}`leaky_val:.2f` against
# {glue:text}`good_val:.2f` for the correct model (checked: {glue:text}`leak_val_claim`), and its
# text is garbage.
#
# ```{admonition} Fix
# :class: tip
# Mask every score above the diagonal (`is_causal=True`, or `torch.tril` and `masked_fill(-inf)`),
# and test it: the output at $t$ must not change when tokens after $t$ change (the check at the
# top of this chapter, and `tests/test_gpt.py`).
# ```
#
# ```{admonition} Pitfall 2: the off-by-one target
# :class: warning
# Passing `labels=input_ids` to a home-made loss that does not shift (HF's models shift inside;
# yours may not) asks position $t$ to predict the token it is reading. With the causal mask, that
# is the identity: the loss goes to 0 and the model repeats its input.
# ```

# %% tags=["otter_ignore"]
seed_everything(0)
copier = gpt.GPT2LMHeadModel(config).to(device)
n_copy = pick(ci=60, full=200) * P["batch_size"]
copy_run = gpt.pretrain(copier, (x_train[:n_copy], x_train[:n_copy]),
                        (x_val[:64], x_val[:64]),
                        batch_size=P["batch_size"], lr=P["lr"], rounds=1, device=device)
copy_loss = float(np.mean(copy_run["step_loss"][-10:]))
out = copier.generate(prompt_ids, 12, temperature=0)[0, prompt_ids.shape[1]:]
print(f"training loss without the shift: {copy_loss:.3f} after "
      f"{len(copy_run['step_loss'])} steps")
print("generated:", [tok.id_to_token(int(i)) for i in out])
glue("copy_loss", copy_loss)
# far below any honest model
assert copy_loss < 1.0 < bigram_nll and (out == prompt_ids[0, -1]).all()

# %% [markdown]
# The loss reaches {glue:text}`copy_loss:.3f` and greedy generation repeats the prompt's last token
# forever. **Fix**: `x, y = window[:-1], window[1:]` (`gpt.make_windows`); check one example by
# eye: the target row is the input row moved one step to the left.
#
# ```{admonition} Pitfall 3: temperature 0 by division
# :class: warning
# "Greedy is temperature 0", so `softmax(logits / temperature)` with `temperature=0` should be
# greedy. It is not: the logits become ±inf, the softmax NaN, and sampling fails or returns junk.
# ```

# %% tags=["otter_ignore", "raises-exception"]
temperature = 0.0
probs = torch.softmax(last / temperature, dim=-1)
print("NaN in the probabilities:", torch.isnan(probs).any().item())
torch.multinomial(probs, 1)                                           # RuntimeError

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Treat $\tau = 0$ as its limit, the argmax: `gpt.sample_next_token(logits, temperature=0)` never
# divides.
# ```

# %% tags=["otter_ignore"]
nan_div = bool(torch.isnan(torch.softmax(last / 0.0, dim=-1)).any())
greedy = gpt.sample_next_token(last, temperature=0)
print("temperature=0 in the library:", tok.decode(greedy.tolist()), "== argmax:",
      bool(greedy == last.argmax(-1)))
assert nan_div and bool(greedy == last.argmax(-1))

# %% [markdown]
# ```{admonition} Pitfall 4: padding on the right for batched generation
# :class: warning
# To generate for several prompts at once they must have one length. Padded **on the right** (as
# for classification), the new tokens of a short prompt are appended *after* its padding, and its
# first new token is predicted from the last column — a padding position, not its last word. Batched generation needs **left** padding, an
# attention mask, and positions that count real tokens only (HF: `tokenizer.padding_side = "left"`).
# ```

# %% tags=["otter_ignore"]
prompts = ["The history of", "In the early twentieth century, the"]
alone = [model.generate(torch.tensor([tok.encode(p).ids], device=device), 10,
                        temperature=0)[0, -10:]
         for p in prompts]
agree = {}
for side in ("right", "left"):
    batch = gpt.encode_batch(tok, prompts, max_length=T, side=side).to(device)
    out = model.generate(batch[:, 0], 10, temperature=0,
                         attention_mask=batch[:, 1])[:, -10:]
    agree[side] = all(torch.equal(o, a) for o, a in zip(out, alone))
    print(f"{side} padding: {tok.decode(out[0].tolist())!r} | same as alone: "
          f"{agree[side]}")
print(f"alone        : {tok.decode(alone[0].tolist())!r}")
assert agree["left"] and not agree["right"]

# %% [markdown]
# With left padding every prompt continues exactly as it does alone; with right padding the short
# prompt does not.
#
# ## Exercises
#
# Four graded questions. In your own copy of the chapter (the *student version*: see the link
# below, or the notebook your instructor gave you), write your answer in place of each `...`, then
# run `grader.check("q1")` for instant feedback from the public tests. Your instructor grades with
# more (hidden) tests. In this book the solutions are folded: click *Show code cell source* only
# after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 08_gpt
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
chapter_links("08_gpt", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("08_gpt")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — causal attention (3 points)
#
# Implement `my_causal_attention(q, k, v)`: scaled dot-product attention with a causal mask for
# `q`, `k`, `v` of shape `(B, T, d)`: position `i` may attend to positions `j <= i` only. Return
# the output `(B, T, d)` as a tensor. Do not use `course_lib` nor PyTorch's
# `scaled_dot_product_attention` or `MultiheadAttention`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import math
import torch

def my_causal_attention(q, k, v):
    # BEGIN SOLUTION
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])                # (B, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)     # j > i
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(my_causal_attention):
    import torch
    from course_lib.grading import time_limit
    q = torch.zeros(1, 3, 2)
    k = torch.zeros(1, 3, 2)
    v = torch.tensor([[[3.0, 0.0], [0.0, 3.0], [6.0, 6.0]]])
    with time_limit(5):
        out = my_causal_attention(q, k, v)
    assert type(out) is torch.Tensor and tuple(out.shape) == (1, 3, 2), \
        "return a (B, T, d) tensor"
    # equal scores: position i averages the values 0..i
    assert torch.allclose(out, torch.tensor([[[3.0, 0.0], [1.5, 1.5], [3.0, 3.0]]])), \
        out

test_q1_public(my_causal_attention)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_hidden(my_causal_attention):
    # Graded in the sandbox without course_lib and with PyTorch's attention disabled.
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-4, "atol": 1e-5,
                  "forbid_calls": ["torch.nn.functional.scaled_dot_product_attention",
                                   "torch.nn.MultiheadAttention"]}

    def probe_q1(my_causal_attention):
        import torch
        g = torch.Generator().manual_seed(8)
        out = []
        for B, T, d in [(2, 5, 8), (3, 9, 16), (1, 1, 4)]:
            q, k, v = (torch.randn(B, T, d, generator=g) for _ in range(3))
            out.append(my_causal_attention(q, k, v))
        return out

    assert len(probe_q1(my_causal_attention)) == 3
    import torch as _torch
    import torch.nn.functional as _F
    from course_lib.grading import time_limit
    _saved = (_F.scaled_dot_product_attention, _torch.nn.MultiheadAttention)
    def _forbidden(*args, **kwargs):
        raise AssertionError("write the formula: do not call PyTorch's attention")
    _g = _torch.Generator().manual_seed(8)
    for _B, _T, _d in [(2, 5, 8), (3, 9, 16), (1, 1, 4)]:
        _q, _k, _v = (_torch.randn(_B, _T, _d, generator=_g) for _ in range(3))
        (_F.scaled_dot_product_attention,
         _torch.nn.MultiheadAttention) = _forbidden, _forbidden
        try:
            with time_limit(5):
                _out = my_causal_attention(_q, _k, _v)
        finally:
            _F.scaled_dot_product_attention, _torch.nn.MultiheadAttention = _saved
        _s = (_q @ _k.transpose(1, 2) / _d ** 0.5).masked_fill(
            _torch.ones(_T, _T).triu(1).bool(), -1e30)
        _ref = _torch.softmax(_s, -1) @ _v
        assert type(_out) is _torch.Tensor and _out.shape == _ref.shape, \
            (_out.shape, _ref.shape)
        assert _torch.allclose(_out, _ref, atol=1e-5), \
            "wrong values (scaling, mask direction?)"

test_q1_hidden(my_causal_attention)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — top-p (nucleus) filtering (3 points)
#
# Implement `top_p_filter(probs, p)` for a 1-D tensor of probabilities `probs` (summing to 1) and
# `0 < p <= 1`: keep the smallest set of most likely tokens whose total probability is at least
# `p` (the most likely token is always kept), set the others to 0, and renormalise. Return a 1-D
# float tensor of the same shape.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def top_p_filter(probs, p):
    # BEGIN SOLUTION
    sorted_p, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_p, 0) - sorted_p              # mass of likelier tokens
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)
    out = torch.where(keep, probs, torch.zeros_like(probs))
    return out / out.sum()
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(top_p_filter):
    import torch
    from course_lib.grading import time_limit
    probs = torch.tensor([0.1, 0.5, 0.3, 0.1])
    with time_limit(5):
        out = top_p_filter(probs, 0.7)
    assert type(out) is torch.Tensor and out.shape == probs.shape, \
        "return a tensor like probs"
    assert torch.allclose(out, torch.tensor([0.0, 0.625, 0.375, 0.0])), out

test_q2_public(top_p_filter)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_hidden(top_p_filter):
    grading_q2 = {"rtol": 1e-5, "atol": 1e-6}

    def probe_q2(top_p_filter):
        import torch
        probs = torch.tensor([0.05, 0.4, 0.15, 0.3, 0.1])
        out = [top_p_filter(probs.clone(), p) for p in (1.0, 0.35, 0.1, 0.69, 0.71)]
        x = torch.softmax(torch.randn(1000, generator=torch.Generator().manual_seed(3))
                          * 3, 0)
        return out + [top_p_filter(x, 0.9), top_p_filter(x.clone(), 0.5)]

    assert len(probe_q2(top_p_filter)) == 7
    import torch as _torch
    from course_lib.grading import time_limit
    _probs = _torch.tensor([0.05, 0.4, 0.15, 0.3, 0.1])
    for _p, _exp in [(1.0, [0.05, 0.4, 0.15, 0.3, 0.1]), (0.35, [0, 1, 0, 0, 0]),
                     (0.1, [0, 1, 0, 0, 0]),
                     (0.69, [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0]),
                     (0.71, [0, 0.4 / 0.85, 0.15 / 0.85, 0.3 / 0.85, 0])]:
        with time_limit(5):
            _out = top_p_filter(_probs.clone(), _p)
        assert type(_out) is _torch.Tensor and _out.shape == _probs.shape
        assert _torch.allclose(_out.float(), _torch.tensor(_exp, dtype=_torch.float32),
                               atol=1e-6), (_p, _out)
    _g = _torch.Generator().manual_seed(3)
    _x = _torch.softmax(_torch.randn(1000, generator=_g) * 3, 0)
    with time_limit(5):
        _out = top_p_filter(_x, 0.9)
    _s = _x.sort(descending=True).values
    _n = int((_s.cumsum(0) - _s < 0.9).sum())
    assert int((_out > 0).sum()) == _n and abs(_out.sum().item() - 1) < 1e-5

test_q2_hidden(top_p_filter)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — perplexity from logits (2 points)
#
# Implement `perplexity_from_logits(logits, targets)` for next-token logits `(B, T, V)` and integer
# targets `(B, T)`, where a target of `-100` marks padding to skip: the exponential of the mean
# negative log-likelihood over the non-padding targets. Return a Python `float`. Do not use
# `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def perplexity_from_logits(logits, targets):
    # BEGIN SOLUTION
    logp = torch.log_softmax(logits.float(), dim=-1)                         # (B, T, V)
    keep = targets != -100
    picked = logp[keep].gather(1, targets[keep][:, None])                       # (N, 1)
    return float(torch.exp(-picked.mean()))
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(perplexity_from_logits):
    import torch
    from course_lib.grading import time_limit
    logits = torch.zeros(1, 3, 8)                                # uniform over 8 tokens
    with time_limit(5):
        ppl = perplexity_from_logits(logits, torch.tensor([[1, 2, 3]]))
    assert type(ppl) is float, f"return a Python float, not {type(ppl).__name__}"
    assert abs(ppl - 8.0) < 1e-4, "a uniform guess over V tokens has perplexity V"

test_q3_public(perplexity_from_logits)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(perplexity_from_logits):
    grading_q3 = {"forbid": ["course_lib"], "rtol": 1e-4, "atol": 1e-6}

    def probe_q3(perplexity_from_logits):
        import torch
        logits = torch.log(
            torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
        out = [perplexity_from_logits(logits, torch.tensor([[0, 1, -100]]))]
        g = torch.Generator().manual_seed(4)
        for B, T, V in [(3, 7, 11), (2, 5, 50)]:
            l = torch.randn(B, T, V, generator=g) * 2
            t = torch.randint(0, V, (B, T), generator=g)
            t[1, 3:] = -100                                               # padding
            out.append(perplexity_from_logits(l, t))
        return out

    assert len(probe_q3(perplexity_from_logits)) == 3
    import math as _math
    import torch as _torch
    from course_lib.grading import time_limit
    _logits = _torch.log(
        _torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
    with time_limit(5):
        _ppl = perplexity_from_logits(_logits, _torch.tensor([[0, 1, -100]]))
    assert type(_ppl) is float and abs(
        _ppl - _math.exp(-(_math.log(0.5) + _math.log(0.8)) / 2)) < 1e-5, \
        "the mean over the non-padding targets, then exp"
    _g = _torch.Generator().manual_seed(4)
    _l = _torch.randn(3, 7, 11, generator=_g) * 2
    _t = _torch.randint(0, 11, (3, 7), generator=_g)
    _t[1, 4:] = -100
    _keep = _t != -100
    _ref = _math.exp(_torch.nn.functional.cross_entropy(_l[_keep], _t[_keep]).item())
    with time_limit(5):
        _got = perplexity_from_logits(_l, _t)
    assert type(_got) is float and abs(_got - _ref) < 1e-3 * _ref, (_got, _ref)

test_q3_hidden(perplexity_from_logits)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q4

# %% [markdown]
# ### Question 4 — an experiment: how much smoothing? (2 points)
#
# The cell below takes three real Wikipedia articles, trains a small BPE on the first two and
# encodes a training stream `q4_train` and a validation stream `q4_val` (from the third). For
# each pseudo-count `k` in `(0.0001, 0.001, 0.01, 0.1, 1.0)`, fit an add-k bigram model
# (`gpt.BigramLM("add_k", k=k).fit(q4_train, q4_vocab)`) and measure its validation loss
# (`.nll(q4_val)`, nats per token). Store the results in a dict `k_nll` `{k: loss}` (Python
# floats), and in `best_k` the `k` with the lowest loss. Then think: why does a large `k` hurt, and
# why does a tiny one hurt too?

# %%
from course_lib import data as _data, gpt as _gpt

_articles = [_gpt.clean_wiki_text(d)
             for d in _data.load_text_corpus("enwiki_sample").documents[:3]]
q4_tok = _gpt.train_bpe(_articles[:2], vocab_size=400)
q4_vocab = q4_tok.get_vocab_size()
q4_train = _gpt.encode_documents(q4_tok, _articles[:2])
q4_val = _gpt.encode_documents(q4_tok, _articles[2:])
print(f"{len(q4_train):,} training and {len(q4_val):,} validation tokens, vocabulary "
      f"{q4_vocab}")

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
k_nll = {}
best_k = None
# BEGIN SOLUTION
for k in (0.0001, 0.001, 0.01, 0.1, 1.0):
    k_nll[k] = float(_gpt.BigramLM("add_k", k=k).fit(q4_train, q4_vocab).nll(q4_val))
best_k = min(k_nll, key=k_nll.get)
# END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q4_public(k_nll, best_k):
    assert type(k_nll) is dict and set(k_nll) == {0.0001, 0.001, 0.01, 0.1, 1.0}, \
        "a dict with the five values of k as keys"
    assert all(type(v) is float and v > 0 for v in k_nll.values()), \
        "losses are positive floats"
    assert best_k in k_nll and k_nll[best_k] == min(k_nll.values()), \
        "best_k has the lowest loss"

test_q4_public(k_nll, best_k)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q4_hidden(k_nll, best_k, q4_train, q4_val, q4_vocab):
    def probe_q4(k_nll, best_k):
        ks = (0.0001, 0.001, 0.01, 0.1, 1.0)
        return [type(k_nll).__name__, sorted(k_nll) if type(k_nll) is dict else None,
                [k_nll[k] for k in ks], best_k]

    assert len(probe_q4(k_nll, best_k)) == 4
    from course_lib import gpt as _g
    for _k in (0.0001, 0.001, 0.01, 0.1, 1.0):
        _ref = _g.BigramLM("add_k", k=_k).fit(q4_train, q4_vocab).nll(q4_val)
        assert abs(k_nll[_k] - _ref) < 1e-6, (_k, k_nll[_k], _ref)
    assert best_k == min(k_nll, key=k_nll.get)
    assert k_nll[best_k] < k_nll[1.0] and k_nll[best_k] < k_nll[0.0001]

test_q4_hidden(k_nll, best_k, q4_train, q4_val, q4_vocab)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [markdown]
# A large `k` spreads a lot of probability over the `V²` pairs never seen, taking it from the pairs
# that do occur; a tiny `k` leaves almost nothing for the unseen pairs, and every one of them in the
# validation text costs a huge loss. The best `k` balances the two — Kneser-Ney does that balance
# more cleverly.
#
# ### Which temperature fits text best?
#
# The same question for the GPT: dividing its logits by $\tau$ changes how well they fit the
# validation text.

# %% [markdown]
#
# %% tags=["otter_ignore"]
with torch.no_grad():
    _l = model.eval()(x_val[:64].to(device)).float().cpu()
fit_by_tau = {
    tau: float(torch.exp(torch.nn.functional.cross_entropy(
        (_l / tau).reshape(-1, V), y_val[:64].reshape(-1))))
              for tau in (0.5, 0.8, 1.0, 1.25, 2.0)}
best_fit_tau = min(fit_by_tau, key=fit_by_tau.get)
print(fit_by_tau, "best:", best_fit_tau)
glue("best_fit_tau", best_fit_tau)
assert best_fit_tau in (0.8, 1.0, 1.25)
glue("total_seconds", time.perf_counter() - t_start)

# %% [markdown]
# Here the best-fitting temperature is {glue:text}`best_fit_tau:.2f`: training minimised this
# cross-entropy at $\tau = 1$, so the best temperature for *fitting* text is near 1; a lower $\tau$
# is over-confident, a higher one under-confident. Lower temperatures are still used for
# *writing*, because readers prefer the likelier continuations to a faithful sample of everything
# the model finds possible. The whole chapter ran in {glue:text}`total_seconds:.0f` s.
#
# ## Go further
#
# - Run with `COURSE_PROFILE=full` (the default on a GPU): text8 when it can be downloaded, a
#   6-layer, 384-wide GPT with a context of 512 tokens, and 1,000 SST-2 labels; `benchmarks/
#   bench_gpt.py` records its numbers. The same `train.fit` runs under `torchrun` with data
#   parallelism (see the fine-tuning chapter).
# - Online, load GPT-2 (`gpt.GPT2LMHeadModel.from_pretrained("gpt2")`) and run the prompting
#   section with its tokenizer: does zero-shot sentiment beat the majority class at 124M
#   parameters? With `gpt2-medium`?
# - Fine-tune with `pooling="mean"` instead of the last token: which is better for a decoder, and
#   why?
# - Read nanoGPT's `model.py` {cite}`karpathy2022nanogpt`: the same module names, flash attention,
#   and `torch.compile`.
