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
# # KMeans: clustering raw and learned representations
#
# The previous chapters learned representations of digits, some of them without labels. This
# chapter asks a blunt question of each one: **if we group the digits by similarity alone, do the
# groups match the classes?** The tool is k-means, the most used clustering algorithm. We write it
# in PyTorch (so it runs on a GPU), check it against scikit-learn, see where it fails, and use it
# to compare pixels with learned features.
#
# ```{admonition} What you will be able to do
# :class: tip
# - state the k-means objective and say why the distance is *squared*;
# - run Lloyd's algorithm with k-means++ seeding, restarts and a tolerance, on CPU or GPU;
# - choose $k$ with the elbow and the silhouette, and recognise data k-means cannot cluster;
# - score a clustering against labels (ARI, NMI) without reading cluster ids as class labels.
# ```

# %% [markdown]
# ## Setup

# %% tags=["otter_ignore"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from course_lib import autoencoder, cnn, data, kmeans, train, viz
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.kmeans import KMeans
from course_lib.settings import pick

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions

# %% [markdown]
# ## Intuition: centres and the points nearest to them
#
# k-means describes a data set by $k$ points, the **centres** $\mu_1,\dots,\mu_k$, and gives every
# example to its nearest centre. A good set of centres leaves every example close to its own
# centre. We start on scikit-learn's 8×8 digits {cite}`pedregosa2011scikit` (1,797 real
# handwritten digits, 64 pixels each), flattened to vectors in $\mathbb{R}^{64}$:

# %% tags=["otter_ignore"]
digits = data.load_digits()
print(digits.protocol, "|", digits.source["train"])
# (1797, 8, 8) -> (1797, 64)
X_dig = np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 64)
y_dig = np.concatenate([digits.y_train, digits.y_test])
glue("n_digits", len(X_dig))
fig = viz.image_grid(X_dig[:20].reshape(-1, 8, 8), labels=y_dig[:20], ncols=20)

# %% [markdown]
# ## The objective: squared distances
#
# For clusters $C_1,\dots,C_k$ with centres $\mu_1,\dots,\mu_k$, k-means minimises the
# **within-cluster sum of squares** (the *inertia*)
#
# $$
# J = \sum_{j=1}^{k} \sum_{x\in C_j} \lVert x-\mu_j\rVert^2 .
# $$
#
# The square is not a detail. For a fixed cluster, $\sum_{x\in C}\lVert x-\mu\rVert^2$ is smallest
# at the **mean** of the cluster (set its gradient $-2\sum_x (x-\mu)$ to zero). Many widely copied
# texts write the objective *without* the square, $\sum_j\sum_{x\in C_j}\lVert x-\mu_j\rVert$; that
# is a different problem, the Euclidean **k-median** problem, whose best centre is the **geometric
# median** (not *k-medians*, which uses the L1 distance and the coordinate-wise median) — it has no
# closed form (Weiszfeld's iteration finds it {cite}`weiszfeld1937point`) and it is not what
# Lloyd's algorithm computes. `kmeans.objective(x, centres, labels, squared=...)` computes both,
# and `kmeans.geometric_median` the minimiser of the unsquared one. On the 8×8 images of the digit
# 1 — a cluster with a few unusual writers — the two centres differ:

# %% tags=["otter_ignore"]
ones = X_dig[y_dig == 1]                               # (n1, 64)
mean1 = ones.mean(0)                                   # minimises the squared objective
med1 = kmeans.geometric_median(ones)                   # minimises the unsquared one
lab0 = np.zeros(len(ones), dtype=int)
table = pd.DataFrame({
    "centre": ["mean", "geometric median"],
    "sum of squared distances (k-means)": [kmeans.objective(ones, c[None], lab0)
                                           for c in (mean1, med1)],
    "sum of distances (k-median)": [
        kmeans.objective(ones, c[None], lab0, squared=False) for c in (mean1, med1)],
}).set_index("centre")
print(table.round(1))
glue("ones_gap", float(np.linalg.norm(mean1 - med1)))
glue("sq_mean", table.iloc[0, 0])
glue("sq_med", table.iloc[1, 0])
glue("abs_mean", table.iloc[0, 1])
glue("abs_med", table.iloc[1, 1])
fig, axes = plt.subplots(1, 3, figsize=(6, 2.2))
for ax, img, title in zip(axes, [mean1, med1, mean1 - med1],
                          ["mean", "geometric median", "difference"]):
    ax.imshow(img.reshape(8, 8), cmap="gray_r" if title != "difference" else "RdBu_r")
    ax.set_title(title, fontsize=9)
    ax.axis("off")

# %% [markdown]
# The mean has the lower sum of *squared* distances ({glue:text}`sq_mean:,.1f` against
# {glue:text}`sq_med:,.1f`) and the geometric median the lower sum of *distances*
# ({glue:text}`abs_med:,.1f` against {glue:text}`abs_mean:,.1f`): each is optimal for its own
# objective only, and the two centres are {glue:text}`ones_gap:.2f` apart (in pixel units 0–16).
# The median is pulled less by the unusual ones. Lloyd's mean update is correct *because* the
# objective is squared.
#
# ## Lloyd's algorithm
#
# Minimising $J$ over both the partition and the centres is NP-hard, but each half is easy
# {cite}`lloyd1982least`:
#
# 1. **assign** every $x_i$ to its nearest centre, $\ell_i=\arg\min_j \lVert x_i-\mu_j\rVert^2$
#    (this can only lower $J$);
# 2. **update** every centre to the mean of its points, $\mu_j=\frac{1}{|C_j|}\sum_{x\in C_j}x$
#    (this can only lower $J$ too).
#
# Repeat until no label changes, or until the centres move less than a tolerance. $J$ never
# increases, so the algorithm stops — at a *local* minimum that depends on the start. Three
# practical details are in `course_lib.kmeans.KMeans`:
#
# - **Distances in chunks.** $\lVert x-\mu\rVert^2=\lVert x\rVert^2-2\,x\cdot\mu+\lVert\mu\rVert^2$
#   turns all $N\times k$ distances into one matrix product, computed `batch_size` rows at a time
#   so that the $(\text{batch}, k)$ block stays within a memory budget — on the GPU too. The data
#   are centred first (as scikit-learn does): the expansion loses fewer digits when
#   $\lVert x\rVert$ is small.
# - **Empty clusters.** A centre that wins no point is moved to the point farthest from its own
#   centre.
# - **Seeding.** k-means++ {cite}`arthur2007kmeanspp` picks the first centre at random and each
#   next one with probability proportional to $D(x)^2$, the squared distance to the nearest centre
#   chosen so far: far-away regions get a centre early. The result is $O(\log k)$-competitive with
#   the optimum in expectation. Restarts (`n_init`) keep the run with the lowest $J$.
#
# Here are the first Lloyd steps on three digit classes, drawn in the plane of their first two
# principal components, from deliberately bad starting centres:

# %% tags=["otter_ignore"]
sel = np.isin(y_dig, [0, 1, 6])
X3 = X_dig[sel]
Xc = X3 - X3.mean(0)
P = np.linalg.svd(Xc, full_matrices=False)[2][:2].T       # (64, 2) principal directions
Z3 = Xc @ P                               # (n, 64) @ (64, 2) -> (n, 2)
centres = Z3[np.argsort(Z3[:, 0])[:3]]    # three points from the same side: a bad start
fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharex=True, sharey=True)
for step, ax in enumerate(axes):
    labels_step, _ = kmeans.assign(torch.tensor(Z3), torch.tensor(centres))
    labels_step = labels_step.numpy()
    ax.scatter(*Z3.T, c=labels_step, s=6, cmap="tab10", vmin=0, vmax=9)
    ax.scatter(*centres.T, c="k", marker="X", s=90)
    ax.set_title(f"step {step}: J = {kmeans.objective(Z3, centres, labels_step):,.0f}",
                 fontsize=9)
    centres = np.stack([Z3[labels_step == j].mean(0) for j in range(3)])   # the update

# %% [markdown]
# ## Our KMeans against scikit-learn
#
# `course_lib.kmeans.KMeans` has scikit-learn's interface (`fit`, `predict`, `fit_predict`,
# fitted `cluster_centers_`, `labels_`, `inertia_`, `n_iter_`) and its stopping rule: stop when
# no label changes, or when the squared shift of the centres is below `tol` times the mean
# feature variance. Started from the **same** centres, in float64, the two implementations must
# walk the same path, up to **ties**: pixel values are integers, so a point can be exactly as far
# from two centres, and which one wins then depends on round-off (the order of the sums in each
# matrix product). From their own k-means++ seeds (different random generators) they must reach
# the same quality:

# %% tags=["otter_ignore"]
init = X_dig[np.random.default_rng(0).choice(len(X_dig), 10, replace=False)]
ours = KMeans(10, init=init, device=device).fit(X_dig)
ref = SKKMeans(10, init=init, n_init=1).fit(X_dig)
first = [m(10, init=init, max_iter=1, **kw).fit(X_dig) for m, kw in
         [(KMeans, {"device": device}), (SKKMeans, {"n_init": 1})]]
print("same start, 1 iteration: labels agree on "
      f"{(first[0].labels_ == first[1].labels_).mean():.2%} of points")
print(f"same start, to convergence: inertia {ours.inertia_:,.1f} vs "
      f"{ref.inertia_:,.1f} | iterations {ours.n_iter_} vs {ref.n_iter_} | labels "
      f"agree on {(ours.labels_ == ref.labels_).mean():.2%}")
glue("same_init_agree1", float((first[0].labels_ == first[1].labels_).mean()))
glue("same_init_ratio", ours.inertia_ / ref.inertia_)

n_init = pick(ci=3, full=10)
rows = []
for seed in range(pick(ci=2, full=5)):
    a = KMeans(10, n_init=n_init, random_state=seed, device=device).fit(X_dig)
    b = SKKMeans(10, n_init=n_init, random_state=seed).fit(X_dig)
    rows.append({"seed": seed, "course_lib": a.inertia_, "sklearn": b.inertia_,
                 "ratio": a.inertia_ / b.inertia_,
                 "ARI between them": adjusted_rand_score(a.labels_, b.labels_)})
parity = pd.DataFrame(rows).set_index("seed")
print(parity.round(4))
glue("worst_ratio", parity["ratio"].max())
glue("parity_n_init", n_init)

# %% [markdown]
# From the same start, after one iteration the labels agree on {glue:text}`same_init_agree1:.2%`
# of the points; the few tied points can send the two runs to different local minima (final
# inertia ratio {glue:text}`same_init_ratio:.4f`). The unit tests check the exact agreement (same
# labels, centres, inertia and iteration count) on data orders without such ties. From their own seeds with {glue:text}`parity_n_init`
# restarts, our inertia is at most {glue:text}`worst_ratio:.4f` times scikit-learn's (the target
# is 1.005). The tests in `tests/test_kmeans.py` assert both.
#
# ## Choosing k: elbow and silhouette
#
# $J$ always decreases with $k$ (with $k=N$ it is 0), so it cannot choose $k$ by itself. Two common
# aids:
#
# - the **elbow**: plot $J$ against $k$ and look for the bend after which new centres buy little;
# - the **silhouette** {cite}`rousseeuw1987silhouettes`: for each point, with $a_i$ its mean
#   distance to the other members of its cluster and $b_i$ its mean distance to the members of the
#   nearest other cluster,
#
# $$
# s_i=\frac{b_i-a_i}{\max(a_i,b_i)}\in[-1,1],
# $$
#
# near 1 when the point sits well inside its cluster, negative when it is closer to another one.
# `kmeans.silhouette_score` averages $s_i$ (computed in chunks on the device; a test checks it
# against scikit-learn).

# %% tags=["otter_ignore"]
ks = list(range(2, pick(ci=12, full=21)))
inertias, silhouettes = [], []
for k in ks:
    m = KMeans(k, n_init=pick(ci=1, full=10), random_state=0, device=device).fit(X_dig)
    inertias.append(m.inertia_)
    silhouettes.append(kmeans.silhouette_score(X_dig, m.labels_, device=device))
best_k = ks[int(np.argmax(silhouettes))]
glue("best_k", best_k)
glue("best_sil", max(silhouettes))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(ks, inertias, "o-")
axes[0].set(xlabel="k", ylabel="inertia J", title="elbow")
axes[1].plot(ks, silhouettes, "o-", color="tab:green")
axes[1].axvline(best_k, color="grey", ls="--")
axes[1].set(xlabel="k", ylabel="mean silhouette", title="silhouette")

# %% [markdown]
# The elbow is soft, as it usually is on real data. The silhouette peaks at
# $k=${glue:text}`best_k` (mean {glue:text}`best_sil:.3f`); the digits have 10 classes, but
# nothing forces the geometry of raw pixels to have 10 compact groups. Both are aids, not proofs.
#
# ## What k-means cannot see
#
# k-means splits space into **Voronoi cells**: the boundary between two clusters is the
# hyperplane halfway between their centres. That is right for round clusters of similar size and
# spread, and wrong otherwise. To isolate these two assumptions we use small synthetic point
# clouds in the plane (scikit-learn's `make_blobs`, the standard illustration — not data): one
# stretched by a linear map (anisotropic clusters), one with a cluster 20 times bigger than the
# others.

# %% tags=["otter_ignore"]
from sklearn.datasets import make_blobs

pts, truth = make_blobs(n_samples=1500, centers=3, random_state=170)
cases = {"round, equal (k-means' assumption)": (pts, truth),
         # (N, 2) @ (2, 2)
         "anisotropic": (pts @ np.array([[0.6, -0.64], [-0.41, 0.85]]), truth)}
keep = np.concatenate(
    [np.flatnonzero(truth == 0)[:500], np.flatnonzero(truth == 1)[:25],
                       np.flatnonzero(truth == 2)[:25]])
unequal, _ = make_blobs(n_samples=1500, centers=3, cluster_std=[1.0, 2.5, 0.5],
                        random_state=170)
cases["unequal sizes"] = (unequal[keep], truth[keep])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
limits = {}
for ax, (name, (p, t)) in zip(axes, cases.items()):
    pred = KMeans(3, n_init=3, random_state=0, device=device).fit_predict(p)
    limits[name] = adjusted_rand_score(t, pred)
    ax.scatter(*p.T, c=pred, s=5, cmap="tab10", vmin=0, vmax=9)
    ax.set_title(f"{name}\nARI with the true groups = {limits[name]:.2f}", fontsize=9)
glue("ari_round", limits["round, equal (k-means' assumption)"])
glue("ari_aniso", limits["anisotropic"])
glue("ari_unequal", limits["unequal sizes"])
from course_lib.claims import claim

# one k-means start can be lucky: the lesson is about the typical run, over 5 k-means
# seeds
median_ari = {name: float(np.median([adjusted_rand_score(
                  t, KMeans(3, n_init=3, random_state=s, device=device).fit_predict(p))
                                     for s in range(5)]))
              for name, (p, t) in cases.items()}
print("median ARI over 5 k-means seeds:",
      {k: round(v, 3) for k, v in median_ari.items()})
round_ari, worst_other = (median_ari["round, equal (k-means' assumption)"],
                          max(median_ari["anisotropic"], median_ari["unequal sizes"]))
claim("over k-means seeds, k-means typically recovers round, equal clusters (median "
      "ARI above 0.9) and cuts stretched or unequal ones across (median ARI at least "
      "0.1 lower)",
      round_ari > 0.9 and worst_other < round_ari - 0.1,
      margin=min(round_ari - 0.9, round_ari - 0.1 - worst_other), name="limits_claim")

# %% [markdown]
# The **adjusted Rand index** (ARI) {cite}`hubert1985comparing` measures agreement between two
# partitions — 1 for identical ones (whatever the cluster ids), about 0 for a random one. On round
# clusters k-means finds the groups (ARI {glue:text}`ari_round:.2f`); stretched clusters are cut
# across (ARI {glue:text}`ari_aniso:.2f`); and when one cluster is much bigger, moving a centre
# into it lowers $J$ more than respecting the small groups (ARI {glue:text}`ari_unequal:.2f`).
# Checked on this run: {glue:text}`limits_claim` — a lucky start can still find the unequal groups
# now and then, which is why k-means is restarted (`n_init`) and why one run proves little.
# Gaussian mixtures, spectral clustering or density-based methods (DBSCAN) relax these
# assumptions. Another way out is to change the *representation* so that the groups become round;
# the next section measures whether learned representations do that for digits.
#
# ## Clustering MNIST: pixels against learned representations
#
# We now cluster MNIST test digits with $k=10$ and compare the clusters with the true classes
# using ARI and **NMI** (normalised mutual information, 0 to 1, also blind to cluster ids). The
# only thing that changes is the representation $x\mapsto f(x)$ given to k-means:
#
# - **raw pixels** (784 numbers in [0, 1]);
# - **PCA** to 50 dimensions (linear, unsupervised);
# - **autoencoder codes** and **contrastive embeddings** from the earlier chapters (unsupervised:
#   trained on the training digits without their labels);
# - the penultimate layer of the **supervised CNN** of the first chapter, trained *with* labels —
#   a reference point, not a fair competitor: it was taught the answer.

# %% tags=["otter_ignore"]
mnist = data.load_mnist(full=pick(ci=False, full=None))
print(mnist.protocol)
for part, source in mnist.source.items():
    print(f"  {part}: {source}")
x_train = cnn.images_to_tensor(mnist.x_train)          # (N, 1, 28, 28), standardised
n_cluster = pick(ci=2000, full=len(mnist.y_test))      # ci: the first 2,000 test digits
x_test = cnn.images_to_tensor(mnist.x_test[:n_cluster])
y_test = mnist.y_test[:n_cluster]
glue("n_cluster", len(y_test))
glue("mnist_protocol", mnist.protocol)
# (M, 28, 28) -> (M, 784)
features = {"raw pixels": mnist.x_test[:n_cluster].reshape(len(y_test), -1) / 255.0}
flat_train = mnist.x_train.reshape(len(mnist.x_train), -1) / 255.0
# (M, 784) -> (M, 50)
features["PCA-50"] = autoencoder.fit_pca(flat_train,
                                         50).transform(features["raw pixels"])


# %% [markdown]
# This run clusters {glue:text}`n_cluster:,` test digits (every test digit in the full profile).

# %% [markdown]
# The learned representations come from the library modules of the earlier chapters.

# %% tags=["otter_ignore"]
from course_lib import autoencoder

ae_model = autoencoder.pretrain_encoder(mnist.x_train, code_size=32, kind="conv",
                                        epochs=pick(ci=3, full=20), device=device,
                                        seed=0)
features["autoencoder codes"] = train.embed(
    # (M, 32)
    ae_model, autoencoder.images_to_unit(mnist.x_test[:n_cluster]),
    device=device).numpy()

# %% tags=["otter_ignore"]
from course_lib import contrastive

seed_everything(0)
simclr = contrastive.SimCLR(
    contrastive.SimCLRConfig(channels=pick(ci=(8, 16), full=(32, 64))))
contrastive.fit_simclr(simclr, x_train, device=device, seed=0,
                       config=train.TrainConfig(epochs=pick(ci=3, full=40),
                                                batch_size=256,
                                                lr=3e-3, schedule="onecycle", seed=0))
# (M, 128)
features["contrastive (SimCLR)"] = train.embed(simclr, x_test, device=device).numpy()
# NT-Xent compares *directions* (cosine similarity): k-means on the unit sphere uses the
# same geometry
features["contrastive, L2-normalised"] = (torch.nn.functional.normalize(
    torch.as_tensor(features["contrastive (SimCLR)"]), dim=1).numpy())        # (M, 128)

# %% tags=["otter_ignore"]
seed_everything(0)
lenet = cnn.LeNet(cnn.LeNetConfig(channels=pick(ci=(8, 16), full=(32, 64))))
hist = train.fit(lenet, (x_train, torch.as_tensor(mnist.y_train)),
                 config=train.TrainConfig(epochs=pick(ci=1, full=10), batch_size=128,
                                          lr=4e-3,
                                          schedule="onecycle", seed=0), device=device)
# penultimate layer: (M, 1, 28, 28) -> (M, 128)
features["supervised CNN (uses labels)"] = train.embed(lenet, x_test,
                                                       device=device).numpy()

# %% tags=["otter_ignore"]
results, fitted, ari_seeds = [], {}, {}
km_seeds = range(pick(ci=3, full=5))    # k-means itself depends on its start: repeat it
for name, f in features.items():
    t0 = time.perf_counter()
    preds = [KMeans(10, n_init=pick(ci=2, full=10), random_state=s,
                    device=device).fit_predict(
        f.astype(np.float32)) for s in km_seeds]
    fitted[name] = preds[0]
    ari_seeds[name] = np.array([adjusted_rand_score(y_test, p) for p in preds])
    results.append({"representation": name, "dims": f.shape[1],
                    "ARI": ari_seeds[name].mean(),
                    "ARI spread": np.ptp(ari_seeds[name]),
                    "NMI": np.mean(
                        [normalized_mutual_info_score(y_test, p) for p in preds]),
                    "k-means seconds": (time.perf_counter() - t0) / len(preds)})
scores = pd.DataFrame(results).set_index("representation")
print(f"mean over {len(km_seeds)} k-means seeds")
print(scores.round(3))
keys = {"raw pixels": "raw", "PCA-50": "pca", "autoencoder codes": "ae",
        "contrastive (SimCLR)": "simclr",
        "contrastive, L2-normalised": "simclr_l2",
        "supervised CNN (uses labels)": "cnn"}
for name, key in keys.items():
    glue(f"ari_{key}", scores.loc[name, "ARI"])
    glue(f"nmi_{key}", scores.loc[name, "NMI"])
glue("n_km_seeds", len(km_seeds))

# The lessons, checked on this run. Differences smaller than 0.03 ARI, or than the
# spread over k-means seeds, are read as "no difference".
from course_lib.claims import claim, verdict

cnn_gap = scores.loc["supervised CNN (uses labels)", "ARI"] - scores.loc["raw pixels",
                                                                         "ARI"]
claim("the supervised CNN's features cluster the digits by class far more closely than "
      "raw pixels (ARI higher by more than 0.1 for every k-means seed)",
      (ari_seeds["supervised CNN (uses labels)"].min()
       - ari_seeds["raw pixels"].max()) > 0.1,
      margin=ari_seeds["supervised CNN (uses labels)"].min()
      - ari_seeds["raw pixels"].max() - 0.1,
      values={"cnn": scores.loc["supervised CNN (uses labels)", "ARI"],
              "raw": scores.loc["raw pixels", "ARI"]},
      name="cnn_cluster_claim")
claim("no unsupervised representation of this run reaches the supervised CNN's ARI",
      scores.drop(index="supervised CNN (uses labels)")["ARI"].max() < scores.loc[
          "supervised CNN (uses labels)", "ARI"],
      margin=scores.loc["supervised CNN (uses labels)", "ARI"]
      - scores.drop(index="supervised CNN (uses labels)")["ARI"].max(),
      name="labels_claim")
for name, key in [("PCA-50", "pca"), ("autoencoder codes", "ae"),
                  ("contrastive (SimCLR)", "simclr"),
                  ("contrastive, L2-normalised", "simclr_l2")]:
    lo, hi = (ari_seeds[name].min() - ari_seeds["raw pixels"].max(),
              ari_seeds[name].max() - ari_seeds["raw pixels"].min())
    verdict(f"{key}_vs_raw",
            [(lo > 0.03, "higher than raw pixels' for every k-means seed"),
                              (hi < -0.03, "lower than raw pixels' for every k-means "
                                           "seed"),
                              (True, "not distinguishable from raw pixels' (the "
                                     "k-means seeds overlap)")],
            values={"low": lo, "high": hi})
l2_gain = ari_seeds["contrastive, L2-normalised"] - ari_seeds["contrastive (SimCLR)"]
verdict("l2_verdict", [(l2_gain.min() > 0.03, "raises the ARI for every k-means seed"),
                       (l2_gain.max() < -0.03, "lowers the ARI for every k-means seed"),
                       (True,
                        "changes the ARI by less than the k-means seeds' spread")])
ax = scores[["ARI", "NMI"]].plot.barh(figsize=(7, 0.5 + 0.45 * len(scores)))
ax.set_xlim(0, 1)
ax.invert_yaxis()

# %% [markdown]
# On the {glue:text}`n_cluster:,` test digits (*{glue:text}`mnist_protocol`*; each ARI is a mean over
# {glue:text}`n_km_seeds` k-means seeds), k-means on raw pixels reaches ARI {glue:text}`ari_raw:.3f`
# (NMI {glue:text}`nmi_raw:.3f`). Row by row:
#
# - **PCA-50**: ARI {glue:text}`ari_pca:.3f`, {glue:text}`pca_vs_raw`. It keeps the directions of
#   largest *pixel* variance, so distances barely change: Euclidean distance between pixel vectors
#   stays a poor measure of "same digit" — a 7 shifted by two pixels is far from itself.
# - **Autoencoder codes**: ARI {glue:text}`ari_ae:.3f`, {glue:text}`ae_vs_raw`. The code was trained
#   to redraw every pixel, so it keeps thickness, slant and position as faithfully as identity.
# - **Contrastive embeddings**: ARI {glue:text}`ari_simclr:.3f`, {glue:text}`simclr_vs_raw`; on the
#   unit sphere (L2-normalised, the cosine geometry NT-Xent trains) ARI {glue:text}`ari_simclr_l2:.3f`,
#   {glue:text}`simclr_l2_vs_raw` — normalising {glue:text}`l2_verdict`. NT-Xent makes the two views
#   of *one image* close and every other image far, *including digits of the same class*: nothing in
#   the objective asks for ten round groups, and a short pre-training (a few epochs in `ci`) leaves
#   the embedding far from it.
# - **Supervised CNN**: ARI {glue:text}`ari_cnn:.3f` (NMI {glue:text}`nmi_cnn:.3f`). Checked on
#   this run: {glue:text}`cnn_cluster_claim`. It was trained to separate exactly these classes, so
#   its penultimate layer puts each class in its own region — the reference point, not a fair
#   competitor. Also checked: {glue:text}`labels_claim`.
#
# The honest lesson: **a representation clusters the classes only if its training objective
# groups them**. Class labels do that directly; reconstruction and instance discrimination do it
# only partly, and whether their clusters come closer to the classes than raw pixels' depends on
# the run — the rows above are this run's answer, not a general law. Methods that cluster with
# learned features well train *for* clustering (DeepCluster, SwAV, SCAN) or run k-means after a
# long pre-training on a non-linear embedding; the `full` profile pre-trains both encoders for
# longer.
#
# ## How fast? course_lib against scikit-learn
#
# Lloyd's iteration is two matrix products per chunk, which a GPU does very fast. We time both
# implementations from the **same** starting centres, so they do the same iterations, on growing
# numbers of 64-dimensional points: MNIST training digits, shifted at random by up to 2 pixels to
# make more (real) images, projected on their first 64 principal components.
#
# On a CPU, the E-step can run two ways (`KMeans(backend=...)`). With `"torch"` it is a chain of
# operations per chunk of rows: a matrix product for the distances, a minimum over the centres,
# an `index_add_` for the centre sums. Each of them reads the chunk from memory again. With
# `"compiled"` (the default where a C compiler is found), a short C kernel,
# `course_lib/kernels/lloyd.c`, reads each point **once**: its distances to all centres, its
# nearest one and its share of the sums are computed while the point sits in the fastest cache,
# as scikit-learn's Cython E-step does. Both give the same clustering (the tests compare them);
# only the memory traffic differs.

# %% tags=["otter_ignore"]
sizes = pick(ci=[2_000, 8_000, 20_000], full=[10_000, 100_000, 1_000_000])
k_bench, iters = 16, pick(ci=10, full=20)
gen = torch.Generator().manual_seed(0)
# (n, 1, 28, 28)
pool = torch.as_tensor(mnist.x_train[:, None].astype(np.float32) / 255.0)
pca64 = autoencoder.fit_pca(flat_train, 64)                       # the course's one PCA
# (784,), (784, 64)
mu, V64 = pca64.mean_, torch.as_tensor(pca64.components_.T, dtype=torch.float32)
bench, labels_of = [], {}
for n in sizes:
    reps = -(-n // len(pool))
    # (n, 1, 28, 28)
    shifted = torch.cat([cnn.random_shift(pool, 2, gen) for _ in range(reps)])[:n]
    # (n, 784) @ (784, 64)
    Xb = ((shifted.flatten(1) - torch.as_tensor(mu, dtype=torch.float32)) @ V64).numpy()
    start = Xb[:k_bench].copy()
    row = {"N": n}
    t0 = time.perf_counter()
    SKKMeans(k_bench, init=start, n_init=1, max_iter=iters, tol=0).fit(Xb)
    row["sklearn (CPU) s"] = time.perf_counter() - t0
    for backend, column in (("auto", "course_lib CPU s"), ("torch", "torch E-step s")):
        t0 = time.perf_counter()
        timed = KMeans(k_bench, init=start, max_iter=iters, tol=0, device="cpu",
                       backend=backend).fit(Xb)
        row[column] = time.perf_counter() - t0
        if backend == "auto":
            cpu_backend = timed.backend_      # "compiled", or "torch" without cc
        labels_of[backend] = timed.labels_                # (n,) the last size's survive
    if torch.cuda.is_available():
        KMeans(k_bench, init=start, max_iter=2, tol=0, device="cuda").fit(Xb)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        KMeans(k_bench, init=start, max_iter=iters, tol=0, device="cuda").fit(Xb)
        torch.cuda.synchronize()
        row["course_lib GPU s"] = time.perf_counter() - t0
        row["GPU speed-up vs sklearn"] = (row["sklearn (CPU) s"]
                                          / row["course_lib GPU s"])
    bench.append(row)
timing = pd.DataFrame(bench).set_index("N")
print(timing.round(3))
glue("bench_n", sizes[-1])
glue("bench_cpu_ratio", timing["course_lib CPU s"].iloc[-1]
     / timing["sklearn (CPU) s"].iloc[-1])
glue("bench_torch_ratio", timing["torch E-step s"].iloc[-1]
     / timing["sklearn (CPU) s"].iloc[-1])
fused_gain = timing["torch E-step s"].iloc[-1] / timing["course_lib CPU s"].iloc[-1]
glue("fused_gain", fused_gain)
same_labels = float((labels_of["auto"] == labels_of["torch"]).mean())
glue("same_labels", same_labels)
claim("the compiled and the torch E-step give the same clustering (the same label for "
      "at least 99.9% of the points, from the same start)", same_labels >= 0.999,
      margin=same_labels - 0.999, values={"same_labels": same_labels},
      name="same_claim")
verdict("fused_verdict",
        [(cpu_backend == "torch",
          "ran the torch E-step in both columns (no C compiler was found), so the two "
          "columns measure the same code"),
         (fused_gain > 1.2,
          "is faster than the chain of torch operations: same arithmetic, fewer "
          "trips to memory"),
         (True,
          "is not clearly faster than the chain of torch operations at this size, "
          "where the fixed cost of each call weighs more than the memory traffic")],
        values={"fused_gain": fused_gain, "backend": cpu_backend})
glue("gpu_note", "a GPU column is included" if torch.cuda.is_available()
     else "no GPU was present in this run, so there is no GPU column")

# %% [markdown]
# At $N=${glue:text}`bench_n:,` our CPU version takes {glue:text}`bench_cpu_ratio:.2f` times
# scikit-learn's time, and {glue:text}`bench_torch_ratio:.2f` times with the torch E-step
# ({glue:text}`gpu_note`). The one-pass kernel {glue:text}`fused_verdict` (a factor of
# {glue:text}`fused_gain:.2f` here), and it computes the same thing: {glue:text}`same_claim`
# ({glue:text}`same_labels:.2%` of the labels agree). scikit-learn's Lloyd loop is compiled Cython with OpenMP
# threads, a strong reference on a CPU. On a GPU the same `KMeans` runs the torch E-step
# unchanged with `device="cuda"`: there the matrix products are what the hardware does best. Run
# with `COURSE_PROFILE=full` to get the million-point row (the benchmarks appendix records it on
# a quiet machine).
#
# ## Pitfalls: unscaled features, and cluster ids read as classes
#
# ```{admonition} The widely copied version
# :class: warning
# Two mistakes appear in many k-means tutorials:
#
#     labels = KMeans(3).fit_predict(df.values)        # features in their raw units
#     accuracy = (labels == y).mean()                  # cluster 0 read as class 0
# ```
#
# k-means measures closeness with the Euclidean distance, which adds up the features in **their
# own units**. The UCI wine data {cite}`aeberhard1992wine` describe 178 wines from three
# cultivars with 13 chemical measurements; one of them, proline, is in the hundreds to thousands,
# while hue is around 1. Unscaled, the distance is almost only proline:

# %% tags=["otter_ignore"]
wine = data.load_wine()
print(wine.protocol, "|", wine.source["train"])
Xw = np.concatenate([wine.x_train, wine.x_test])  # (178, 13): clustering uses all wines
yw = np.concatenate([wine.y_train, wine.y_test])
names = wine.source["features"]
spread = pd.Series(Xw.std(0), index=names).sort_values(ascending=False)
print(spread.round(2).head(4))
glue("top_feature", spread.index[0])
glue("top_share", float(spread.iloc[0] ** 2 / (spread ** 2).sum()))

raw_pred = KMeans(3, n_init=10, random_state=0, device=device).fit_predict(Xw)
Xw_std = (Xw - Xw.mean(0)) / Xw.std(0)                      # the fix: z-scores
std_pred = KMeans(3, n_init=10, random_state=0, device=device).fit_predict(Xw_std)
pit = pd.DataFrame({
    "ARI": [adjusted_rand_score(yw, raw_pred), adjusted_rand_score(yw, std_pred)],
    "naive accuracy (cluster id == class)": [(raw_pred == yw).mean(),
                                             (std_pred == yw).mean()],
    "accuracy after matching": [(kmeans.match_labels(yw, raw_pred)[0] == yw).mean(),
                                (kmeans.match_labels(yw, std_pred)[0] == yw).mean()],
}, index=["unscaled (copied)", "standardised (fixed)"])
print(pit.round(3))
glue("wine_ari_raw", pit.iloc[0, 0])
glue("wine_ari_std", pit.iloc[1, 0])
glue("wine_naive", pit.iloc[1, 1])
glue("wine_matched", pit.iloc[1, 2])

# %% [markdown]
# {glue:text}`top_feature` alone carries {glue:text}`top_share:.1%` of the total variance, so the
# unscaled clustering reaches ARI {glue:text}`wine_ari_raw:.3f`; after standardising every
# feature, ARI {glue:text}`wine_ari_std:.3f`. Then, reading the **cluster ids as class labels**:
# the standardised clustering is good, yet "cluster id == class" counts only
# {glue:text}`wine_naive:.1%` correct, because k-means numbers its clusters arbitrarily (a
# different seed gives another numbering). Matching clusters to classes first (the Hungarian
# algorithm on the contingency table, `kmeans.match_labels`) gives {glue:text}`wine_matched:.1%`.
# The same holds for the MNIST digits:

# %% tags=["otter_ignore"]
pred_cnn = fitted["supervised CNN (uses labels)"]
mapped, mapping = kmeans.match_labels(y_test, pred_cnn)
glue("mnist_naive", float((pred_cnn == y_test).mean()))
glue("mnist_matched", float((mapped == y_test).mean()))
print("cluster -> class:", mapping)
ax = viz.plot_confusion_matrix(y_test, mapped)

# %% [markdown]
# On the CNN features, "cluster id == digit" scores {glue:text}`mnist_naive:.1%`, and
# {glue:text}`mnist_matched:.1%` after matching.
#
# ```{admonition} The fix
# :class: tip
# Put features on comparable scales before k-means (standardise, or use a representation whose
# distances mean something, such as a learned embedding). Score clusterings with measures that
# ignore the numbering — ARI, NMI — or match clusters to classes first; never compare cluster ids
# with class labels directly.
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
# name: 06_kmeans
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
chapter_links("06_kmeans", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("06_kmeans")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — the objective (2 points)
#
# Implement `inertia(x, centers, labels)`: the k-means objective of this chapter for points `x`
# `(N, D)`, centres `(K, D)` and integer labels `(N,)` (all `torch.Tensor`), returned as a Python
# `float`. Do not use `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import torch


def inertia(x, centers, labels):
    # BEGIN SOLUTION
    return float(((x - centers[labels]) ** 2).sum())
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(inertia):
    import torch
    from course_lib.grading import time_limit
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    c = torch.tensor([[1.0, 0.0], [10.0, 10.0]])
    with time_limit(5):
        out = inertia(x, c, torch.tensor([0, 0, 1]))
    assert type(out) is float, f"return a Python float, not {type(out).__name__}"
    assert abs(out - 2.0) < 1e-6, "two points at distance 1 from their centre, one at 0"

test_q1_public(inertia)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_hidden(inertia):
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-6, "atol": 1e-9}

    def probe_q1(inertia):
        import torch
        g = torch.Generator().manual_seed(606)
        out = []
        for n, d, k in [(50, 3, 4), (7, 1, 2), (200, 16, 10)]:
            x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3
            c = torch.randn(k, d, generator=g, dtype=torch.float64)
            out.append(inertia(x, c, torch.randint(0, k, (n,), generator=g)))
        return out

    assert len(probe_q1(inertia)) == 3
    import torch as _torch
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(606)
    for _n, _d, _k in [(50, 3, 4), (7, 1, 2), (200, 16, 10)]:
        _x = _torch.randn(_n, _d, generator=_g, dtype=_torch.float64) * 3
        _c = _torch.randn(_k, _d, generator=_g, dtype=_torch.float64)
        _l = _torch.randint(0, _k, (_n,), generator=_g)
        with time_limit(5):
            _out = inertia(_x.clone(), _c.clone(), _l.clone())
        _ref = sum(float(((_x[_i] - _c[_l[_i]]) ** 2).sum()) for _i in range(_n))
        assert type(_out) is float
        assert abs(_out - _ref) <= 1e-6 * max(1.0, _ref), \
            ("the objective sums SQUARED distances", _out, _ref)

test_q1_hidden(inertia)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — one Lloyd iteration (3 points)
#
# Implement `lloyd_step(x, centers)`: assign every point of `x` `(N, D)` to its nearest centre
# among `centers` `(K, D)`, then return the **new centres** `(K, D)` as a `torch.Tensor`: the mean
# of each cluster's points. A centre that receives no point stays where it was. Do not use
# `course_lib` or scikit-learn.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def lloyd_step(x, centers):
    # BEGIN SOLUTION
    d = torch.cdist(x, centers)                         # (N, K)
    labels = d.argmin(1)                                # (N,)
    new = centers.clone()
    for j in range(len(centers)):
        members = x[labels == j]
        if len(members):
            new[j] = members.mean(0)
    return new
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(lloyd_step):
    import torch
    from course_lib.grading import time_limit
    x = torch.tensor([[0.0], [1.0], [9.0], [11.0]])
    with time_limit(5):
        out = lloyd_step(x, torch.tensor([[0.0], [10.0]]))
    assert type(out) is torch.Tensor and out.shape == (2, 1), "return a (K, D) tensor"
    assert torch.allclose(out, torch.tensor([[0.5], [10.0]]))

test_q2_public(lloyd_step)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_hidden(lloyd_step):
    grading_q2 = {"forbid": ["course_lib", "sklearn"], "rtol": 1e-6, "atol": 1e-6}

    def probe_q2(lloyd_step):
        import torch
        g = torch.Generator().manual_seed(2024)
        out = []
        for n, d, k in [(300, 2, 5), (40, 7, 3), (25, 64, 10)]:
            x = torch.randn(n, d, generator=g, dtype=torch.float64)
            out.append(lloyd_step(x, x[torch.randperm(n, generator=g)[:k]].clone()))
        # an empty cluster keeps its centre
        out.append(lloyd_step(torch.tensor([[0.0, 0.0], [1.0, 0.0]]),
                              torch.tensor([[0.0, 0.0], [50.0, 50.0]])))
        return out

    assert len(probe_q2(lloyd_step)) == 4
    import torch as _torch
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(2024)
    for _n, _d, _k in [(300, 2, 5), (40, 7, 3), (25, 64, 10)]:
        _x = _torch.randn(_n, _d, generator=_g, dtype=_torch.float64)
        _c = _x[_torch.randperm(_n, generator=_g)[:_k]].clone()
        with time_limit(5):
            _out = lloyd_step(_x.clone(), _c.clone())
        _lab = ((_x[:, None] - _c[None]) ** 2).sum(-1).argmin(1)
        _ref = _torch.stack([_x[_lab == _j].mean(0) for _j in range(_k)])
        assert type(_out) is _torch.Tensor and _out.shape == (_k, _d)
        assert _torch.allclose(_out.double(), _ref, atol=1e-6)
    # an empty cluster keeps its centre
    _x = _torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    _c = _torch.tensor([[0.0, 0.0], [50.0, 50.0]])
    with time_limit(5):
        _out = lloyd_step(_x.clone(), _c.clone())
    assert _torch.allclose(_out, _torch.tensor([[0.5, 0.0], [50.0, 50.0]])), \
        "an empty cluster stays put"

test_q2_hidden(lloyd_step)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — k-means++ probabilities (2 points)
#
# Implement `seeding_probabilities(x, chosen)`: given points `x` `(N, D)` and the centres chosen
# so far `chosen` `(m, D)` (both `torch.Tensor`), return the probability `(N,)` with which
# k-means++ draws each point as the **next** centre. The probabilities must sum to 1.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def seeding_probabilities(x, chosen):
    # BEGIN SOLUTION
    # (N,) D(x)^2
    d2 = ((x[:, None, :] - chosen[None, :, :]) ** 2).sum(-1).min(1).values
    return d2 / d2.sum()
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(seeding_probabilities):
    import torch
    from course_lib.grading import time_limit
    x = torch.tensor([[0.0], [1.0], [3.0]])
    with time_limit(5):
        p = seeding_probabilities(x, torch.tensor([[0.0]]))
    assert type(p) is torch.Tensor and p.shape == (3,)
    assert torch.allclose(p.double(),
                          torch.tensor([0.0, 0.1, 0.9], dtype=torch.float64), atol=1e-6)

test_q3_public(seeding_probabilities)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_hidden(seeding_probabilities):
    grading_q3 = {"rtol": 1e-6, "atol": 1e-8}

    def probe_q3(seeding_probabilities):
        import torch
        g = torch.Generator().manual_seed(31)
        out = []
        for n, d, m in [(100, 5, 3), (20, 2, 1), (60, 8, 6)]:
            x = torch.randn(n, d, generator=g, dtype=torch.float64)
            out.append(seeding_probabilities(x, x[:m].clone()))
        return out

    assert len(probe_q3(seeding_probabilities)) == 3
    import torch as _torch
    from course_lib.grading import time_limit
    _g = _torch.Generator().manual_seed(31)
    for _n, _d, _m in [(100, 5, 3), (20, 2, 1), (60, 8, 6)]:
        _x = _torch.randn(_n, _d, generator=_g, dtype=_torch.float64)
        _chosen = _x[:_m].clone()
        with time_limit(5):
            _p = seeding_probabilities(_x.clone(), _chosen)
        _d2 = _torch.stack([((_x - _c) ** 2).sum(1) for _c in _chosen]).min(0).values
        assert type(_p) is _torch.Tensor and _p.shape == (_n,)
        assert _torch.allclose(_p.double(), _d2 / _d2.sum(), atol=1e-8), \
            "proportional to the SQUARED distance"
        assert _torch.all(_p[:_m] == 0), "a chosen centre cannot be drawn again"

test_q3_hidden(seeding_probabilities)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [markdown]
# ## Go further
#
# - Run with `COURSE_PROFILE=full` on a GPU: all 10,000 MNIST test digits with more restarts,
#   longer pre-training of the learned representations, and the million-point timing row.
# - Cluster with $k=20$ and match clusters to classes by majority: how much does ARI move? Why can
#   NMI rise with $k$ while ARI falls?
# - Replace k-means by a Gaussian mixture (`sklearn.mixture.GaussianMixture`) on the anisotropic
#   clouds; what does the covariance buy?
# - Mini-batch k-means (Sculley 2010) updates the centres from small random batches: implement it
#   with `kmeans.assign` and compare its inertia and time with `KMeans` on the million points.
# - Deep clustering (DEC, SwAV) trains the representation *and* the clusters together.
