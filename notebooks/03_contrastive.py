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
COURSE_EXTRAS = {}
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
# # Contrastive learning: InfoNCE and SimCLR
#
# The autoencoder learns a representation by *reconstructing* every pixel. Contrastive learning
# asks for much less: take two randomly distorted **views** of the same image, and make their
# embeddings agree, while the embeddings of different images disagree. Nothing has to be
# reconstructed; the network only has to tell *which two views come from the same image*. What
# survives the distortions — a slanted stroke is still a 7 — ends up in the representation.
#
# This chapter derives the loss behind SimCLR {cite}`chen2020simple`, InfoNCE / NT-Xent
# {cite}`oord2018representation`, writes digit augmentations in plain PyTorch, pre-trains an
# encoder on unlabelled digits, and evaluates it the standard way: a linear classifier and a
# nearest-neighbour vote on frozen features.
#
# ```{admonition} What you will be able to do
# :class: tip
# - derive InfoNCE as a softmax over one positive and many negatives, and compute it batched;
# - explain what the temperature τ does, and measure it with *alignment* and *uniformity*;
# - pre-train a SimCLR encoder and evaluate it with a linear probe and k-nearest neighbours;
# - recognise the contrastive "snippet" that cannot work, and write the real thing.
# ```

# %% [markdown]
# ## Setup

# %%
import numpy as np
import pandas as pd
import torch
import matplotlib.pyplot as plt
from torch import nn

from course_lib import cnn, contrastive, data, probe, train, viz
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick, preset

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
P = preset("contrastive")          # this chapter's run sizes, shared with its benchmark

# %% [markdown]
# ## The data: digits *without* their labels
#
# Pre-training sees only the training images; the labels are used afterwards, to *evaluate* the
# representation. The loader says which data ran:

# %% tags=["otter_ignore"]
mnist = data.load_mnist(full=pick(ci=False, full=None))
print(mnist.protocol)
for part, source in mnist.source.items():
    print(f"  {part}: {source}")
x_train = cnn.images_to_tensor(mnist.x_train)        # (N, 1, 28, 28), standardised
x_test = cnn.images_to_tensor(mnist.x_test)          # (M, 1, 28, 28)
y_train, y_test = torch.as_tensor(mnist.y_train), torch.as_tensor(mnist.y_test)
glue("n_train", len(y_train))
glue("n_test", len(y_test))
glue("protocol", mnist.protocol)

# %% [markdown]
# This run pre-trains on {glue:text}`n_train:,` images and evaluates on {glue:text}`n_test:,`:
# *{glue:text}`protocol`*.
#
# ## Views: augmentations on the device
#
# A view is the image after a random *resized crop* (zoom into a random part covering 50–100% of
# the area), a small rotation, a small translation, and a little pixel noise. SimCLR found that
# the choice of augmentations matters more than anything else {cite}`chen2020simple`; the crop
# range is narrower than SimCLR's 8–100% on ImageNet because a digit cropped to 8% of its area is
# no longer a digit.
#
# `contrastive.augment` implements all of it with one affine map per image. `affine_grid` maps each
# output pixel's coordinate $p\in[-1,1]^2$ to the input coordinate $A p + c$ it samples, so a crop
# of width $w$ and height $h$ (fractions of the side) centred at $c$, rotated by $\theta$, is
#
# $$
# A = \begin{pmatrix}\cos\theta & -\sin\theta\\ \sin\theta & \cos\theta\end{pmatrix}
#     \begin{pmatrix} w & 0\\ 0 & h\end{pmatrix}, \qquad \text{area fraction} = \det A = wh .
# $$
#
# `grid_sample` then interpolates bilinearly. The random draws come from a `torch.Generator` (one
# seed reproduces every view), and the work happens on the images' device — no torchvision, no
# CPU round trip per image. Unit tests check the matrix against exact cases: a quarter turn equals
# `torch.rot90`, a centred quarter-area crop equals a 2× bilinear upsampling of the central pixels.

# %% tags=["otter_ignore"]
aug = contrastive.AugmentConfig(crop_scale=(0.5, 1.0), degrees=15, translate=0.1,
                                noise_std=0.1)
gen = torch.Generator().manual_seed(0)
views = contrastive.two_views(x_train[:8].to(device), aug, gen)   # (8, 2, 1, 28, 28)
row = torch.cat([x_train[:8], views[:, 0].cpu(), views[:, 1].cpu()])  # (24, 1, 28, 28)
fig = viz.image_grid(row, ncols=8)
fig.suptitle("originals (top), first view, second view", fontsize=9)

# %% [markdown]
# ## From a softmax to InfoNCE
#
# Take an **anchor** embedding $u$, its **positive** $u^+$ (the other view of the same image) and
# $K$ **negatives** $u^-_1,\dots,u^-_K$ (views of other images), all of unit length, with cosine
# similarity $s(a,b) = a^\top b$. Ask a classifier to pick the positive among the $K+1$
# candidates, with logits $s/\tau$. Its cross-entropy is the InfoNCE loss
# {cite}`oord2018representation`:
#
# $$
# \ell = -\log \frac{\exp(s(u,u^+)/\tau)}{\exp(s(u,u^+)/\tau) + \sum_{k=1}^{K}\exp(s(u,u^-_k)/\tau)} .
# $$
#
# It is the CNN chapter's cross-entropy, with the *other examples of the batch* as the classes.
# Minimising it pulls the positive closer and pushes every negative away. With $K$ negatives it
# can never fall below 0, and at random (all similarities equal) it is $\log(K+1)$.
#
# ### NT-Xent: the batched version
#
# SimCLR makes two views of each of $N$ images: $2N$ embeddings $u_0,\dots,u_{2N-1}$ (indexed from
# 0, as in the code), views $0..N-1$ first, then their partners. For view $i$ the positive is
# $p(i) = (i+N) \bmod 2N$ (with indices from 1 it would be $p(i) = ((i-1+N) \bmod 2N) + 1$), and the
# other $2N-2$ views are the negatives — no memory bank needed. The **N**ormalised-**T**emperature
# cross-entropy (NT-Xent) is the mean over all $2N$ anchors of
#
# $$
# \ell_i = -\frac{s_{i,p(i)}}{\tau} + \log \sum_{k\neq i} \exp\!\left(\frac{s_{ik}}{\tau}\right),
# \qquad s_{ik} = u_i^\top u_k .
# $$
#
# In code this is one matrix product: $S = U U^\top$ of shape $(2N, 2N)$, divided by $\tau$; the
# diagonal (a view with itself, always similarity 1) is set to $-\infty$ so it drops out of the
# softmax; and the row-wise cross-entropy against the targets $p(i)$ does the rest. First by hand,
# one anchor at a time, then the library's batched version:

# %% tags=["otter_ignore"]
g = torch.Generator().manual_seed(0)
# toy: N=4 images, D=3
z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
tau = 0.5
u = nn.functional.normalize(torch.cat([z1, z2]), dim=1)   # (2N, D) = (8, 3), unit rows
n2, n = len(u), len(z1)
by_hand = []
for i in range(n2):
    p = (i + n) % n2
    others = [k for k in range(n2) if k != i]
    denominator = sum(torch.exp(u[i] @ u[k] / tau) for k in others)
    by_hand.append(-torch.log(torch.exp(u[i] @ u[p] / tau) / denominator))
by_hand = torch.stack(by_hand).mean()
library = contrastive.info_nce(z1, z2, temperature=tau)
print(f"loop over the formula: {by_hand:.6f}   contrastive.info_nce: {library:.6f}")
print(f"identical embeddings -> log(2N-1) = {np.log(2 * n - 1):.6f}:",
      f"{contrastive.info_nce(torch.ones(n, 3), torch.ones(n, 3), tau):.6f}")
glue("toy_loss", library.item())

# %% [markdown]
# The two agree ({glue:text}`toy_loss:.4f`); the unit tests compare the batched loss with the loop
# for several batch sizes, temperatures and hand-computed cases, and check that gradients reach
# every parameter.
#
# ### What the temperature does
#
# The gradient of $\ell_i$ with respect to a similarity is the softmax weight of that candidate,
# scaled by $1/\tau$:
#
# $$
# \frac{\partial \ell_i}{\partial s_{ik}} = \frac{1}{\tau}\Big(P_{ik} - [k = p(i)]\Big),\qquad
# P_{ik} = \frac{\exp(s_{ik}/\tau)}{\sum_{j\neq i}\exp(s_{ij}/\tau)} .
# $$
#
# So each negative is pushed away in proportion to $P_{ik}$. A **small τ** sharpens the softmax:
# nearly all the push goes to the few *hardest* negatives (the most similar ones). A **large τ**
# spreads it evenly over all negatives {cite}`wang2021understanding`. We will measure the
# consequence on a trained model below.
#
# ### Alignment and uniformity
#
# Wang and Isola {cite}`wang2020understanding` showed that, as the number of negatives grows, the
# loss optimises two properties of the embedding on the unit sphere, and gave two metrics for them
# (for both, lower means more of the property):
#
# $$
# \mathcal{L}_\text{align} = \mathbb{E}_{(x,x^+)}\,\big\lVert f(x) - f(x^+)\big\rVert_2^{2},
# \qquad
# \mathcal{L}_\text{uniform} = \log\, \mathbb{E}_{x,y}\, e^{-2\lVert f(x) - f(y)\rVert_2^2} .
# $$
#
# *Alignment*: the two views of an image land close together. *Uniformity*: the embeddings of all
# images spread over the sphere rather than collapse to a point. `contrastive.alignment` and
# `contrastive.uniformity` implement them; a unit test checks them against the paper's own code.
#
# ## The model: encoder and projection head
#
# The encoder $f$ is the CNN chapter's LeNet up to its hidden layer — the same `features` and
# first dense layer — and produces the representation $h = f(x)$ that we keep. A small MLP, the
# **projection head** $g$, maps $h$ to $z = g(h)$, where the loss is computed; SimCLR found that
# the representation *before* the head transfers better, because the head learns to discard what
# the augmentations change {cite}`chen2020simple`.
#
# No label is used: `contrastive.fit_simclr` calls `course_lib.train.fit` with a transform that
# makes two views of each batch on the device, and a loss that takes the two projections.

# %% tags=["otter_ignore"]
sim_config = contrastive.SimCLRConfig(channels=P["channels"], hidden=128,
                                      proj_dim=64, temperature=0.5)
fit_config = train.TrainConfig(epochs=P["epochs"], batch_size=P["batch_size"],
                               lr=P["lr"], schedule="onecycle", seed=0)
seed_everything(0)
model = contrastive.SimCLR(sim_config)
print(model)
# same architecture, never trained: the baseline
random_init = contrastive.SimCLR(sim_config)
random_init.load_state_dict(model.state_dict())
history = contrastive.fit_simclr(model, x_train, config=fit_config, augment_config=aug,
                                 device=device, seed=0)
glue("epochs", len(history.epoch))
glue("train_seconds", sum(history.seconds))
glue("final_loss", history.train_loss[-1])
glue("chance_loss", float(np.log(2 * fit_config.batch_size - 1)))
# instance discrimination on unseen digits: is each view's most similar other view
# its partner?
# (512, 2, 1, 28, 28)
check_views = contrastive.two_views(x_test[:512], aug, torch.Generator().manual_seed(1))
z_check = train.predict(model, check_views, device=device)                 # (512, 2, P)
# (1024, 1024)
logits, positive = contrastive.similarity_logits(z_check[:, 0], z_check[:, 1])
glue("view_acc", (logits.argmax(1) == positive).float().mean().item())
print(f"{len(history.epoch)} epochs in {sum(history.seconds):.0f} s; NT-Xent "
      f"{history.train_loss[0]:.3f} -> {history.train_loss[-1]:.3f} "
      f"(chance: log(2N-1) = {np.log(2 * fit_config.batch_size - 1):.3f})")

# %% tags=["otter_ignore"]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(np.arange(1, len(history.step_loss) + 1), history.step_loss)
ax.axhline(np.log(2 * fit_config.batch_size - 1), color="grey", ls="--",
           label="chance log(2N−1)")
ax.set_xlabel("optimisation step")
ax.set_ylabel("NT-Xent loss")
ax.legend()

# %% [markdown]
# In {glue:text}`epochs` epochs ({glue:text}`train_seconds:.0f` s) the loss fell from chance,
# {glue:text}`chance_loss:.2f`, to {glue:text}`final_loss:.2f`. On 512 *test* digits, two views
# each, the most similar of the 1,023 other views is the view's own partner in
# {glue:text}`view_acc:.0%` of cases: the network recognises an image under a new distortion.
#
# ## Is the representation any good? Linear probe and kNN
#
# The encoder is frozen; we compute $h$ for every image and ask two simple classifiers to predict
# the label from it:
#
# - a **linear probe**: a logistic regression on $h$ (`probe.linear_probe`, scikit-learn's
#   objective minimised by L-BFGS in torch; a unit test checks it against scikit-learn);
# - a **k-nearest-neighbour** majority vote by cosine similarity, $k=20$ (`contrastive.knn_accuracy`),
#   which needs no training at all. It is a simpler version of the monitor of
#   {cite}`wu2018unsupervised`, who weight each of $k=200$ neighbours by $\exp(s/\tau)$.
#
# The baseline is the *same encoder with its random initial weights* — random convolutional
# features are surprisingly good on MNIST, so this is a fair bar. We also vary how many labels the
# probe may use, since pre-training is expected to matter most when labels are few.

# %% tags=["otter_ignore"]
feats = {"SimCLR": (train.embed(model, x_train, device),
                    train.embed(model, x_test, device)),
         "random init": (train.embed(random_init, x_train, device),
                         train.embed(random_init, x_test, device))}
# labels per class; None: all
label_budgets = pick(ci=[10, 100, None], full=[10, 100, 1000, None])


def evaluate_features(name, f_train, f_test):
    rows = []
    for per_class in label_budgets:
        idx = (np.arange(len(y_train)) if per_class is None
               else data.per_class_subset(y_train, per_class, seed=0))
        rows.append({"encoder": name, "labels": len(idx),
                     "linear probe": probe.linear_probe(f_train[idx], y_train[idx],
                                                        f_test, y_test,
                                                              device=device),
                     "kNN (k=20)": contrastive.knn_accuracy(f_train[idx], y_train[idx],
                                                            f_test, y_test,
                                                            k=min(20, len(idx)),
                                                            device=device)})
    return rows


results = pd.DataFrame(
    [r for name, (ftr, fte) in feats.items() for r in evaluate_features(name, ftr,
                                                                        fte)])
print(results.pivot(index="labels", columns="encoder",
                    values=["linear probe", "kNN (k=20)"]).round(4))

full = results[results["labels"] == len(y_train)].set_index("encoder")
few = results[results["labels"] == 10 * 10].set_index("encoder")
glue("probe_simclr", full.loc["SimCLR", "linear probe"])
glue("probe_random", full.loc["random init", "linear probe"])
glue("knn_simclr", full.loc["SimCLR", "kNN (k=20)"])
glue("knn_random", full.loc["random init", "kNN (k=20)"])
glue("few_simclr", few.loc["SimCLR", "linear probe"])
glue("few_random", few.loc["random init", "linear probe"])
glue("few_gain_points",
     100 * (few.loc["SimCLR", "linear probe"] - few.loc["random init", "linear probe"]))
glue("gain_points",
     100 * (full.loc["SimCLR", "linear probe"]
            - full.loc["random init", "linear probe"]))

# Is the gap more than luck? With few labels, repeat the probe over several random draws
# of the labelled images (paired: both encoders see the same draw); with all labels, a
# McNemar test on the test digits that only one of the two kNN votes gets right.
from course_lib.claims import claim, mcnemar, paired_comparison, verdict

n_label_draws = pick(ci=5, full=10)
draws = {name: [probe.linear_probe(ftr[idx], y_train[idx], fte, y_test, device=device)
                for idx in (data.per_class_subset(y_train, 10, seed=s)
                            for s in range(n_label_draws))]
         for name, (ftr, fte) in feats.items()}
few_cmp = paired_comparison(draws["SimCLR"], draws["random init"], name="few_cmp",
                            scale=100, unit=" points")
print("probe, 10 labels per class, SimCLR - random init:",
      few_cmp.describe(100, " points"))
glue("n_label_draws", n_label_draws)
claim("with 10 labels per class, the linear probe on SimCLR features beats the random "
      "encoder's on average over the label draws (95% interval above zero)",
      few_cmp.a_higher(),
      values={"mean_gain": few_cmp.mean, "low": few_cmp.low}, margin=few_cmp.low,
      name="few_claim")

knn_right = {
    name: (contrastive.knn_predict(ftr, y_train, fte, k=20,
                                   device=device) == y_test).numpy()
             for name, (ftr, fte) in feats.items()}
only_simclr, only_random, knn_p = mcnemar(knn_right["SimCLR"], knn_right["random init"])
glue("knn_only_simclr", only_simclr)
glue("knn_only_random", only_random)
glue("knn_p", knn_p)
knn_gap = knn_right["SimCLR"].mean() - knn_right["random init"].mean()
verdict("knn_verdict", [
    (knn_p < 0.01 and knn_gap > 0.03, "the nearest neighbours of a test digit share "
                                      "its class clearly "
                                       "more often with SimCLR features than with "
                                       "random ones"),
    (knn_p < 0.01 and knn_gap > 0, "the nearest neighbours of a test digit share its "
                                   "class a little more often with SimCLR features "
                                   "than with random ones — a real but small "
                                   "difference: random convolutional features already "
                                   "put most digits near digits of their own class"),
    (knn_p >= 0.01, "the kNN vote cannot tell the two encoders apart: random "
                    "convolutional features already put most digits near digits of "
                    "their own class"),
    (knn_gap < 0, "the random encoder's neighbourhoods are the purer ones: SimCLR's "
                  "features separate the classes linearly, not by plain cosine "
                  "distance"),
], values={"gap": knn_gap, "p": knn_p})

# %% tags=["otter_ignore"]
fig, ax = plt.subplots(figsize=(5.5, 3.4))
for (name, metric), part in results.melt(
        id_vars=["encoder", "labels"]).groupby(["encoder", "variable"]):
    ax.plot(part["labels"], part["value"], marker="o", ls="-" if metric
            == "linear probe" else ":",
            label=f"{name}, {metric}", color="tab:blue" if name == "SimCLR"
            else "tab:grey")
ax.set_xscale("log")
ax.set_xlabel("labelled training images used by the classifier")
ax.set_ylabel("test accuracy")
ax.legend(fontsize=8)

# %% [markdown]
# With all {glue:text}`n_train:,` labels, the linear probe on SimCLR features reaches
# **{glue:text}`probe_simclr:.2%`** against {glue:text}`probe_random:.2%` for the random-init
# encoder ({glue:text}`gain_points:.1f` points), and the kNN vote {glue:text}`knn_simclr:.2%`
# against {glue:text}`knn_random:.2%`. With only 10 labels per class the probe reaches
# {glue:text}`few_simclr:.2%` against {glue:text}`few_random:.2%` ({glue:text}`few_gain_points:.1f`
# points) on the first draw of labels; over {glue:text}`n_label_draws` draws the difference is
# {glue:text}`few_cmp`. The run checks that {glue:text}`few_claim`.
#
# The kNN vote asks a different question — are the *nearest* digits of the same class? Of the test
# digits, {glue:text}`knn_only_simclr:,` are classified right only with SimCLR features and
# {glue:text}`knn_only_random:,` only with random ones (McNemar p = {glue:text}`knn_p:.2g`): in this
# run {glue:text}`knn_verdict`. The two measures need not agree: the probe asks what a *linear*
# readout trained on labels can get from the features, the kNN vote what plain cosine distance
# gives without any training.
#
# ### Compared with the autoencoder's encoder
#
# The previous chapter pre-trains an encoder by reconstruction. The cell below evaluates it with
# the same probes (its 32-number codes against the contrastive encoder's features).

# %% tags=["otter_ignore"]
from course_lib import autoencoder

# the previous chapter's conv autoencoder, pre-trained on the same unlabelled digits
# (pixels in [0, 1])
ae_model = autoencoder.pretrain_encoder(mnist.x_train, code_size=32, kind="conv",
                                        epochs=pick(ci=3, full=20), device=device,
                                        seed=0)
ae_feats = (train.embed(ae_model, autoencoder.images_to_unit(mnist.x_train),
                        device=device),
            # (N, 32)
            train.embed(ae_model, autoencoder.images_to_unit(mnist.x_test),
                        device=device))
ae_results = pd.DataFrame(evaluate_features("autoencoder", *ae_feats))
both = pd.concat([results, ae_results])
print(both.pivot(index="labels", columns="encoder",
                 values=["linear probe", "kNN (k=20)"]).round(4))

# read the table: which pre-training gives the better features, with how many labels?
ae_full = ae_results.set_index("labels")
for per_class, key in [(10, "few"), (None, "all")]:
    n_lab = 10 * per_class if per_class else len(y_train)
    sim = results[(results.encoder == "SimCLR") & (results["labels"] == n_lab)].iloc[0]
    aer = ae_full.loc[n_lab]
    glue(f"ae_probe_{key}", aer["linear probe"])
    glue(f"ae_knn_{key}", aer["kNN (k=20)"])
    gap = sim["linear probe"] - aer["linear probe"]
    verdict(f"ae_vs_simclr_{key}", [(gap > 0.01, "higher for the SimCLR features"),
                                    (gap < -0.01, "higher for the autoencoder's codes"),
                                    (True, "within one point for the two")],
                                    values={"gap": gap})
    knn_gap_ae = sim["kNN (k=20)"] - aer["kNN (k=20)"]
    verdict(f"ae_vs_simclr_knn_{key}",
            [(knn_gap_ae > 0.01, "higher for the SimCLR features"),
                                        (knn_gap_ae < -0.01,
                                         "higher for the autoencoder's codes"),
                                        (True, "within one point for the two")],
                                        values={"gap": knn_gap_ae})

# %% [markdown]
# With 10 labels per class the probe accuracy is {glue:text}`ae_vs_simclr_few`
# (autoencoder {glue:text}`ae_probe_few:.2%`, SimCLR {glue:text}`few_simclr:.2%`); with all labels
# it is {glue:text}`ae_vs_simclr_all` (autoencoder {glue:text}`ae_probe_all:.2%`, SimCLR
# {glue:text}`probe_simclr:.2%`). The kNN vote's accuracy is {glue:text}`ae_vs_simclr_knn_few` with
# 10 labels per class (autoencoder {glue:text}`ae_knn_few:.2%`) and {glue:text}`ae_vs_simclr_knn_all`
# with all of them (autoencoder {glue:text}`ae_knn_all:.2%`, SimCLR {glue:text}`knn_simclr:.2%`).
# Why the two objectives can differ: the autoencoder's code keeps what is needed to *redraw* a
# digit (thickness, slant, position), which a cosine distance weighs as much as the digit's
# identity, while the contrastive objective was told to ignore exactly those variations (they are
# its augmentations). These are
# single runs on one draw of labels each (short pre-training in the `ci` profile); the KMeans
# chapter compares the same encoders without any label at all.
#
# ## A picture of the embedding
#
# Principal component analysis projects the test digits' 128-dimensional representations onto the
# two directions of largest variance; the colour is the label, which neither encoder ever saw.

# %% tags=["otter_ignore"]
n_show = pick(ci=2000, full=5000)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
for ax, name in zip(axes, ["random init", "SimCLR"]):
    shown = feats[name][1][:n_show].numpy()
    xy = autoencoder.fit_pca(shown, 2).transform(shown)             # (n, 128) -> (n, 2)
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=mnist.y_test[:n_show], cmap="tab10", s=3)
    ax.set_title(f"{name} encoder (PCA of {n_show:,} test digits)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(sc, ax=axes, ticks=range(10), label="digit")

# %% [markdown]
# A linear projection to two dimensions cannot separate ten classes; it shows the two directions
# along which each representation varies most. Compare how the colours are arranged: the SimCLR
# directions were learned without a single label.

# %% [markdown]
# ## FAQ: how do I choose the temperature?
#
# Short answer: sweep it, and look at more than the loss. We pre-train the same encoder with
# several values of τ — a short run each here — and measure three things on the test set: the
# linear-probe accuracy, and the alignment and uniformity of the normalised projections $z$
# (alignment on two augmented views of each test digit).

# %% tags=["otter_ignore"]
taus = pick(ci=[0.05, 0.2, 0.5, 1.0], full=[0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
sweep_config = train.TrainConfig(epochs=pick(ci=1, full=15),
                                 batch_size=fit_config.batch_size,
                                 lr=fit_config.lr, schedule="onecycle", seed=0,
                                 progress=False)
eval_gen = torch.Generator().manual_seed(123)
n_eval = pick(ci=2000, full=len(y_test))                          # test digits measured
# (n_eval, 2, 1, 28, 28) fixed
test_views = contrastive.two_views(x_test[:n_eval], aug, eval_gen)


def measure(net, tau):
    """Probe accuracy, and alignment/uniformity of normalised projections z on test
    views."""
    z = train.predict(net, test_views, device=device)                   # (n_eval, 2, P)
    f_train, f_test = train.embed(net, x_train, device), train.embed(net,
                                                                     x_test[:n_eval],
                                                                     device)
    return {"tau": tau, "linear probe": probe.linear_probe(f_train, y_train, f_test,
                                                           y_test[:n_eval],
                                                                 device=device),
            "alignment": contrastive.alignment(z[:, 0], z[:, 1]).item(),
            "uniformity": contrastive.uniformity(z[:, 0]).item()}


sweep = []
for tau in taus:
    seed_everything(0)
    net = contrastive.SimCLR(sim_config)
    hist = contrastive.fit_simclr(net, x_train, config=sweep_config, augment_config=aug,
                                  temperature=tau, device=device, seed=0)
    sweep.append({**measure(net, tau), "final train loss": hist.train_loss[-1]})
sweep = pd.DataFrame(sweep)
print(f"{sweep_config.epochs} epoch(s) per temperature; probe and metrics on "
      f"{n_eval:,} test digits")
print(sweep.round(4).to_string(index=False))
best = sweep.loc[sweep["linear probe"].idxmax()]
glue("best_tau", float(best["tau"]))
glue("best_tau_probe", float(best["linear probe"]))
glue("sweep_epochs", sweep_config.epochs)
glue("n_taus", len(taus))
glue("min_tau", min(taus))
glue("max_tau", max(taus))
glue("n_eval", n_eval)

# %% tags=["otter_ignore"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].plot(sweep["tau"], sweep["linear probe"], marker="o")
axes[0].set_xscale("log")
axes[0].set_xlabel("temperature τ")
axes[0].set_ylabel("linear-probe test accuracy")
sc = axes[1].scatter(sweep["uniformity"], sweep["alignment"], c=np.log10(sweep["tau"]),
                     cmap="viridis", s=60)
axes[1].margins(0.12)
viz.label_points(axes[1], sweep[["uniformity", "alignment"]].to_numpy(),
                 [f"τ={t:g}" for t in sweep["tau"]], marker_size=9)
axes[1].set_xlabel("uniformity  (lower: more spread out)")
axes[1].set_ylabel("alignment  (lower: views agree)")
axes[1].set_title("Wang & Isola's two metrics, one point per τ", fontsize=9)

# %% [markdown]
# Over {glue:text}`n_taus` temperatures from {glue:text}`min_tau` to {glue:text}`max_tau`
# ({glue:text}`sweep_epochs` epoch(s) each, measured on {glue:text}`n_eval:,` test digits), the
# best probe accuracy was {glue:text}`best_tau_probe:.2%`, at τ = {glue:text}`best_tau`. The right
# panel places each run by Wang and Isola's two metrics; the table above gives the values.
#
# What to expect, and why. With a small τ the gradient concentrates on the hardest negatives, so
# the loss pushes apart even near-duplicates: embeddings become more *uniform*, but two digits of
# the same class that happen to be close are pushed apart too. With a large τ every negative gets
# the same small push and the loss mostly rewards *alignment*; the embedding spreads less. This
# is the uniformity–tolerance trade-off of {cite}`wang2021understanding`. Read a short sweep with
# care: the gradient also scales with $1/\tau$, so in a short run a small τ simply takes larger
# steps, and the ranking can change with a longer budget (the `full` profile trains 15 epochs per
# τ). We can see the concentration directly: for the trained model, what fraction of the negatives'
# softmax weight $P_{ik}$ goes to the hardest 1% of negatives?

# %% tags=["otter_ignore"]
with torch.no_grad():
    z = model.to(device)(test_views[:fit_config.batch_size].to(device))     # (B, 2, P)
rows = []
for t in taus:
    # (2B, 2B)
    logits, positive = contrastive.similarity_logits(z[:, 0], z[:, 1], temperature=t)
    weights = torch.softmax(logits, dim=1)
    weights[torch.arange(len(weights)), positive] = 0          # negatives only
    weights = weights / weights.sum(1, keepdim=True)           # (2B, 2B), rows sum to 1
    top = max(1, int(0.01 * (len(weights) - 2)))
    rows.append({"tau": t, "weight on the hardest 1% of negatives":
                 weights.topk(top, dim=1).values.sum(1).mean().item()})
hard = pd.DataFrame(rows)
print(hard.round(3).to_string(index=False))
glue("hard_share_min_tau", hard.iloc[0, 1])
glue("hard_share_max_tau", hard.iloc[-1, 1])

# %% [markdown]
# At τ = {glue:text}`min_tau` the hardest 1% of negatives receive {glue:text}`hard_share_min_tau:.0%`
# of the push; at τ = {glue:text}`max_tau`, {glue:text}`hard_share_max_tau:.0%`.
#
# ```{admonition} How to choose τ, in practice
# :class: tip
# - Start in 0.1–0.5 (SimCLR used 0.1 to 0.5 with large batches {cite}`chen2020simple`); sweep on a
#   log scale with short runs, as above, and pick by **probe accuracy on held-out data**, not by
#   the loss: the loss values at different τ are not comparable.
# - Smaller τ needs more negatives (larger batches) to be stable; larger τ tolerates small batches
#   but gives less uniform embeddings.
# - Plot alignment against uniformity: a good τ lowers both; a τ that wins only one of them is
#   usually on the wrong side.
# ```
#
# ## Pitfall: `nn.functional.contrastive_loss` and the single un-augmented sample
#
# ```{admonition} The widely copied version
# :class: warning
# A snippet that circulates in blog posts and generated answers:
#
#     z = model(x)                     # one embedding per image, no augmentation
#     loss = nn.functional.contrastive_loss(z, z, temperature=0.5)
#
# It has two problems. PyTorch has no `contrastive_loss` function; and even written out, it
# contrasts each sample *with itself*: the "positive" is the same un-augmented image.
# ```
#
# Running it:

# %% tags=["raises-exception", "otter_ignore"]
encoder = contrastive.SimCLR(sim_config).to(device)
xb = x_train[:256].to(device)
z_single = encoder.head(encoder.embed(xb))        # (256, 64): one view, no augmentation
loss = nn.functional.contrastive_loss(z_single, z_single, temperature=0.5)

# %% [markdown]
# PyTorch raises `AttributeError`: there is no such function (the nearest built-ins,
# `nn.CosineEmbeddingLoss` and `nn.TripletMarginLoss`, take explicit pairs or triplets and no
# temperature). The second problem survives the fix of the name. If the positive is the same
# un-augmented image, its similarity is exactly 1 whatever the encoder does, so the loss has
# nothing to align: it can only push images apart. We train that version — the real NT-Xent, with
# the same image as both "views" — with exactly the budget, seed and τ of the SimCLR run above, and
# evaluate it the same way.

# %% tags=["otter_ignore"]
seed_everything(0)
no_aug = contrastive.SimCLR(sim_config)
pit_hist = contrastive.fit_simclr(no_aug, x_train, config=fit_config,
                                  augment_views=False,
                                  device=device, seed=0)
with torch.no_grad():
    # (512, 2, P)
    z_same = no_aug.to(device)(torch.stack([x_test[:512]] * 2, dim=1).to(device))
print(
    "positive cosine similarity with identical views:",
    f"{nn.functional.cosine_similarity(z_same[:, 0], z_same[:, 1]).mean().item():.6f}")
pit_feats = train.embed(no_aug, x_train, device), train.embed(no_aug, x_test, device)
pitfall = pd.DataFrame(evaluate_features("same image, no augmentation", *pit_feats)
                       + [r for r in results.to_dict("records")
                          if r["encoder"] == "SimCLR"])
for name, net in [("same image, no augmentation", no_aug), ("SimCLR", model)]:
    z = train.predict(net, test_views, device=device)                   # (n_eval, 2, P)
    pitfall.loc[pitfall.encoder == name, "alignment"] = contrastive.alignment(
        z[:, 0], z[:, 1]).item()
pitfall.loc[pitfall.encoder == "SimCLR", "final train loss"] = history.train_loss[-1]
pitfall.loc[pitfall.encoder != "SimCLR", "final train loss"] = pit_hist.train_loss[-1]
print(pitfall.sort_values(["labels", "encoder"]).round(4).to_string(index=False))
rows = pitfall.set_index(["encoder", "labels"])
glue("pit_loss", pit_hist.train_loss[-1])
glue("pit_probe",
     rows.loc[("same image, no augmentation", len(y_train)), "linear probe"])
glue("pit_few", rows.loc[("same image, no augmentation", 100), "linear probe"])
glue("pit_align", rows.loc[("same image, no augmentation", len(y_train)), "alignment"])
glue("fix_align", rows.loc[("SimCLR", len(y_train)), "alignment"])
# > 0: identical views lower
loss_gap = history.train_loss[-1] - pit_hist.train_loss[-1]
align_gap = (rows.loc[("same image, no augmentation", len(y_train)), "alignment"]
             # > 0: views further apart
             - rows.loc[("SimCLR", len(y_train)), "alignment"])
print("alignment, identical views minus SimCLR:", round(align_gap, 4))
claim("the identical-views version ends with a lower training loss, yet two augmented "
      "views of a test digit land further apart (a higher alignment) than with SimCLR",
      loss_gap > 0 and align_gap > 0,
      margin=min(loss_gap, align_gap), values={"pit_loss": pit_hist.train_loss[-1],
                                               "simclr_loss": history.train_loss[-1],
                                               "align_gap": align_gap},
      name="pit_claim")
probe_gaps = [rows.loc[("SimCLR", n), "linear probe"]
              - rows.loc[("same image, no augmentation", n), "linear probe"]
              for n in (len(y_train), 100)]
verdict("pit_probe_verdict", [
    (min(probe_gaps) > 0.01, "both below SimCLR's"),
    (max(probe_gaps) < -0.01, "both above SimCLR's: with this short training, the "
                              "probe does not show the damage"),
    (True, "within a point of SimCLR's for at least one label budget: a short run does "
           "not show the damage on the probe"),
])

# %% [markdown]
# With identical "views" the training loss ends lower, at {glue:text}`pit_loss:.3f` against
# {glue:text}`final_loss:.3f` — the positives sit at similarity 1 for free — while the linear probe
# reaches {glue:text}`pit_probe:.2%` against {glue:text}`probe_simclr:.2%` with all labels, and
# {glue:text}`pit_few:.2%` against {glue:text}`few_simclr:.2%` with 10 labels per class:
# {glue:text}`pit_probe_verdict`. The alignment column shows what went wrong: two augmented views of
# a test digit land far apart ({glue:text}`pit_align:.3f` against {glue:text}`fix_align:.3f`). The network never learned that
# a shifted, rotated 7 is still the same 7 (checked: {glue:text}`pit_claim`). A low contrastive loss
# is not a sign of a good representation; it is often a sign that the task is too easy.
#
# ```{admonition} The fix
# :class: tip
# Make **two random views** of every image, embed both, and use the batched NT-Xent, in which each
# view's positive is its partner and the other $2N-2$ views are negatives:
#
#     views = contrastive.two_views(x, aug, generator)          # (B, 2, 1, 28, 28)
#     z = model(views)                                          # (B, 2, P)
#     loss = contrastive.info_nce(z[:, 0], z[:, 1], temperature=0.5)
#
# `contrastive.fit_simclr` does exactly this inside `course_lib.train.fit`.
# ```
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
# name: 03_contrastive
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
chapter_links("03_contrastive", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("03_contrastive")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — NT-Xent, batched (3 points)
#
# Implement `my_nt_xent(z1, z2, tau)`: the mean NT-Xent loss of this chapter for two views `z1`,
# `z2` of shape `(N, D)` (row `n` of `z1` and row `n` of `z2` are a positive pair; the rows are
# **not** normalised yet), returned as a scalar tensor through which gradients flow. Do not use
# `course_lib.contrastive`: write the formula (normalise, similarity matrix, mask the diagonal,
# cross-entropy against $p(i)$).

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def my_nt_xent(z1, z2, tau):
    # BEGIN SOLUTION
    n = len(z1)
    u = nn.functional.normalize(torch.cat([z1, z2]), dim=1)                 # (2N, D)
    logits = (u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool),
                                         float("-inf"))
    positive = (torch.arange(2 * n) + n) % (2 * n)                          # (2N,)
    return nn.functional.cross_entropy(logits, positive)
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(my_nt_xent):
    import math
    import torch
    from course_lib.grading import time_limit
    with time_limit(10):
        out = my_nt_xent(torch.eye(2), torch.eye(2), 0.5)
    assert type(out) is torch.Tensor and out.ndim == 0, "return a scalar tensor"
    # two images, identical orthogonal views: positive similarity 1, two negatives at 0
    assert abs(out.item() - math.log(1 + 2 * math.exp(-2))) < 1e-4

test_q1_public(my_nt_xent)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_hidden(my_nt_xent):
    # Graded in the sandbox without course_lib: probe_q1's outputs are compared with the
    # solution's.
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-4, "atol": 1e-5}

    def probe_q1(my_nt_xent):
        import torch
        g = torch.Generator().manual_seed(11)
        out = []
        for n, d, tau in [(1, 3, 0.5), (5, 4, 0.1), (9, 16, 1.0), (3, 2, 2.0),
                          (2, 2, 0.5)]:
            z1 = (torch.randn(n, d, generator=g) * 3).requires_grad_(True)
            z2 = torch.randn(n, d, generator=g)
            loss = my_nt_xent(z1, z2, tau)
            # N = 1: no negative
            grad = torch.autograd.grad(loss, z1)[0] if n > 1 else None
            out.append([loss, grad])
        return out

    assert len(probe_q1(my_nt_xent)) == 5
    import math
    import torch as _torch
    from course_lib import contrastive as _c
    from course_lib.grading import time_limit
    _saved = _c.info_nce, _c.similarity_logits
    def _forbidden(*args, **kwargs):
        raise AssertionError("my_nt_xent must not call course_lib.contrastive")
    _g = _torch.Generator().manual_seed(11)
    for _n, _d, _tau in [(1, 3, 0.5), (5, 4, 0.1), (9, 16, 1.0), (3, 2, 2.0)]:
        _z1 = (_torch.randn(_n, _d, generator=_g) * 3).requires_grad_(True)
        _z2 = _torch.randn(_n, _d, generator=_g)
        _u = [_v / _v.norm() for _v in _torch.cat([_z1, _z2]).detach().double()]
        _ref = 0.0
        for _i in range(2 * _n):                    # the formula, one anchor at a time
            _p = (_i + _n) % (2 * _n)
            _den = sum(math.exp(float(_u[_i] @ _u[_k]) / _tau) for _k in range(2 * _n)
                       if _k != _i)
            _ref += (-float(_u[_i] @ _u[_p]) / _tau + math.log(_den)) / (2 * _n)
        _c.info_nce = _c.similarity_logits = _forbidden
        try:
            with time_limit(10):
                _out = my_nt_xent(_z1, _z2, _tau)
        finally:
            _c.info_nce, _c.similarity_logits = _saved
        assert _torch.is_tensor(_out) and _out.ndim == 0
        assert abs(_out.item() - _ref) <= 1e-4 * max(1.0, abs(_ref)), \
            (_n, _tau, _out.item(), _ref)
        if _n > 1:                           # with N = 1 there is no negative: loss = 0
            _grad, = _torch.autograd.grad(_out, _z1)
            assert bool(_torch.isfinite(_grad).all()) and _grad.abs().sum() > 0, \
                "gradients must flow"

test_q1_hidden(my_nt_xent)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — alignment and uniformity (2 points)
#
# Implement `align_uniform(z1, z2)` returning the pair of Python floats
# `(alignment, uniformity)` of Wang and Isola, with α = 2 and t = 2: normalise the rows first;
# alignment averages over the `N` positive pairs, uniformity over the pairs $i<j$ of `z1` only.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def align_uniform(z1, z2):
    # BEGIN SOLUTION
    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)
    align = (u1 - u2).pow(2).sum(1).mean()
    uniform = torch.pdist(u1).pow(2).mul(-2).exp().mean().log()
    return float(align), float(uniform)
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(align_uniform):
    import torch
    from course_lib.grading import time_limit
    with time_limit(10):
        a, u = align_uniform(torch.tensor([[2.0, 0.0], [-1.0, 0.0]]),
                             torch.tensor([[-1.0, 0.0], [3.0, 0.0]]))
    assert type(a) is float and type(u) is float, "return two Python floats"
    assert abs(a - 4.0) < 1e-5, "antipodal positives: alignment is 4"
    assert abs(u + 8.0) < 1e-4, "two antipodal points: uniformity is -2 * 4 = -8"

test_q2_public(align_uniform)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q2_hidden(align_uniform):
    grading_q2 = {"rtol": 1e-5, "atol": 1e-6}

    def probe_q2(align_uniform):
        import torch
        g = torch.Generator().manual_seed(12)
        out = []
        for n, d in [(2, 3), (30, 8), (100, 2)]:
            z1, z2 = torch.randn(n, d, generator=g) * 5, torch.randn(n, d, generator=g)
            a, u = align_uniform(z1, z2)
            out.append([a, u])
        return out

    assert len(probe_q2(align_uniform)) == 3
    import math
    import torch as _torch
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(12)
    for _n, _d in [(2, 3), (30, 8), (100, 2)]:
        _z1, _z2 = _torch.randn(_n, _d, generator=_g) * 5, _torch.randn(_n, _d,
                                                                        generator=_g)
        _u1 = (_z1 / _z1.norm(dim=1, keepdim=True)).double()
        _u2 = (_z2 / _z2.norm(dim=1, keepdim=True)).double()
        _align = float(((_u1 - _u2) ** 2).sum(1).mean())
        _pairs = [float(((_u1[_i] - _u1[_j]) ** 2).sum()) for _i in range(_n)
                  for _j in range(_i + 1, _n)]
        _unif = math.log(sum(math.exp(-2 * _p) for _p in _pairs) / len(_pairs))
        with time_limit(10):
            _a, _u = align_uniform(_z1, _z2)
        assert abs(_a - _align) < 1e-4 and abs(_u - _unif) < 1e-4, \
            (_n, _a, _align, _u, _unif)

test_q2_hidden(align_uniform)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — choose the temperature (2 points)
#
# One anchor has cosine similarity 0.9, 0.5, 0.3, 0.1 and −0.2 to its five negatives
# (`negative_sims` below). Set `tau_choice` to the **largest** temperature among `candidates` for
# which the hardest negative (similarity 0.9) receives at least **half** of the negatives' softmax
# weight $P_{ik}$, i.e. of the push the loss gives them.

# %%
negative_sims = torch.tensor([0.9, 0.5, 0.3, 0.1, -0.2])
candidates = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
tau_choice = max(t for t in candidates if torch.softmax(negative_sims / t, 0)[0] >= 0.5)  # SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(tau_choice):
    assert type(tau_choice) in (float, int), "tau_choice must be a number"
    assert tau_choice in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0), \
        "choose one of the candidates"

test_q3_public(tau_choice)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(tau_choice):
    def probe_q3(tau_choice):
        return tau_choice

    import math
    _sims = [0.9, 0.5, 0.3, 0.1, -0.2]
    _ok = [_t for _t in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
           if math.exp(_sims[0] / _t) / sum(math.exp(_s / _t) for _s in _sims) >= 0.5]
    assert type(tau_choice) in (float, int) and tau_choice == max(_ok)

test_q3_hidden(tau_choice)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q4

# %% [markdown]
# ### Question 4 — the pitfall (1 point)
#
# A SimCLR training loop feeds the *same, un-augmented* image as both views of each pair, with the
# correct NT-Xent loss. Which is true? Set `q4_answer` to `"a"`, `"b"`, `"c"` or `"d"`.
#
# - a. The loss stays at $\log(2N-1)$ because every similarity is 1.
# - b. Every positive has similarity exactly 1 whatever the weights are, so the loss can only fall
#   by pushing different images apart; nothing teaches the encoder to map two distorted versions
#   of a digit to nearby points.
# - c. PyTorch raises an error because the two views are the same tensor.
# - d. It is equivalent to SimCLR with a temperature of 1.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
q4_answer = "b"  # SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q4_public(q4_answer):
    assert type(q4_answer) is str and q4_answer in ("a", "b", "c", "d"), \
        "answer with one letter: 'a', 'b', 'c' or 'd'"

test_q4_public(q4_answer)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q4_hidden(q4_answer):
    def probe_q4(q4_answer):
        return q4_answer

    def check_q4(answer, reference):
        return type(answer) is str and answer.strip().lower() == reference

    assert type(q4_answer) is str and q4_answer.strip().lower() == "b"

test_q4_hidden(q4_answer)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [markdown]
# ## Go further
#
# - Run with `COURSE_PROFILE=full` (the default on a GPU): a wider encoder, 40 epochs, the full
#   60,000 training images when they can be downloaded, and a finer τ sweep.
# - Remove one augmentation at a time (`AugmentConfig(degrees=0)`, `crop_scale=(1, 1)`,
#   `noise_std=0`) and measure the probe: which one matters most for digits?
# - Draw the embedding with t-SNE {cite}`vandermaaten2008visualizing` (`sklearn.manifold.TSNE`)
#   instead of PCA: which digits stay mixed?
# - Evaluate on the projection $z$ instead of $h$: the probe is usually worse
#   {cite}`chen2020simple`. Why?
# - MoCo keeps a queue of negatives from past batches, and BYOL and SimSiam drop negatives
#   altogether; the alignment/uniformity view explains why they need other tricks not to collapse.
# - The chapter on fine-tuning starts from a pre-trained encoder like this one and updates it
#   with labels.
