"""KMeans in PyTorch: the chapter "KMeans — clustering raw and learned representations".

One concept: partition ``N`` points into ``k`` clusters by minimising the **within-cluster sum of
squared distances** (the *inertia*)

    J(C, mu) = sum_k sum_{x in C_k} ||x - mu_k||^2,

by Lloyd's alternation (assign each point to its nearest centre; move each centre to the mean of
its points), started from k-means++ seeds and restarted ``n_init`` times. The squared distance
matters: with the unsquared distance the best centre of a cluster is its *geometric median*, not
its mean (that is the k-medians problem), see :func:`objective` and :func:`geometric_median`.

What the notebook imports from here:

- :class:`KMeans` — scikit-learn-like estimator (``fit``/``predict``/``fit_predict``/``transform``,
  fitted attributes ``cluster_centers_``, ``labels_``, ``inertia_``, ``n_iter_``), computed on any
  ``device`` in chunks of ``batch_size`` rows so that the ``(chunk, k)`` distance block fits a
  memory budget; float32 and float64;
- :func:`kmeans_plusplus` — greedy k-means++ seeding (as scikit-learn: ``2 + floor(ln k)`` candidate
  draws per centre, keep the one that lowers the potential most);
- :func:`squared_distances`, :func:`assign` — the chunked ``||x||^2 - 2 x.c + ||c||^2`` computation;
- :func:`objective` — the k-means objective (``squared=True``) or the k-medians one;
- :func:`geometric_median` — Weiszfeld's algorithm, the minimiser of the unsquared objective;
- :func:`silhouette_samples`, :func:`silhouette_score` — ``s(i) = (b_i - a_i) / max(a_i, b_i)``;
- :func:`match_labels` — map cluster ids to class labels (Hungarian matching) before reading them
  as classes.

References
----------
- Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982.
- Arthur, Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
- Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation of cluster
  analysis", J. Comput. Appl. Math. 20, 1987.
- Weiszfeld, "Sur le point pour lequel la somme des distances de n points donnés est minimum",
  Tohoku Math. J. 43, 1937; Vardi, Zhang, "The multivariate L1-median and associated data depth",
  PNAS 97(4), 2000.
- Hubert, Arabie, "Comparing partitions", J. Classification 2, 1985 (adjusted Rand index).
- scikit-learn ``sklearn/cluster/_kmeans.py`` (the reference implementation the tests compare with).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from tqdm.auto import tqdm

from .device import get_device

__all__ = ["KMeans", "kmeans_plusplus", "squared_distances", "assign", "objective",
           "geometric_median", "silhouette_samples", "silhouette_score", "match_labels",
           "auto_batch_size", "MEMORY_BUDGET"]

# Bytes allowed for one (chunk, k) block of distances (plus its temporaries): 256 MiB.
MEMORY_BUDGET = 2 ** 28


# --------------------------------------------------------------------------- validation
def _as_tensor(x, name: str = "X", device=None, dtype=None) -> torch.Tensor:
    """Array-like ``(N, D)`` -> floating tensor on ``device`` (float32 unless float64 given)."""
    if not torch.is_tensor(x):
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError(f"{name} must be numeric; got an array of dtype object.")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim != 2:
        raise ValueError(f"Expected 2D array for {name}, got {x.ndim}D array of shape "
                         f"{tuple(x.shape)} instead. Reshape your data with X.reshape(len(X), -1).")
    if x.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(x.shape)}) while a minimum "
                         "of 1 is required.")
    if x.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(x.shape)}) while a minimum "
                         "of 1 is required.")
    if dtype is None:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "infinity"
        raise ValueError(f"Input {name} contains {bad}; KMeans needs finite values.")
    return x


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"The '{name}' parameter of KMeans must be an int in the range "
                         f"[{low}, inf). Got {value!r} instead.")
    return int(value)


def auto_batch_size(n_clusters: int, element_size: int = 4, budget: int = MEMORY_BUDGET) -> int:
    """Rows per chunk so that a ``(chunk, n_clusters)`` distance block and its temporaries
    (about three such blocks) stay within ``budget`` bytes."""
    return max(1, budget // (3 * max(1, n_clusters) * element_size))


# --------------------------------------------------------------------------- distances
def squared_distances(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances ``||x_i - c_j||^2``.

    Uses ``||x||^2 - 2 x.c + ||c||^2`` (one matrix product), clamped at 0 against round-off.

    Parameters
    ----------
    x : Tensor of shape (N, D)
    centers : Tensor of shape (K, D)

    Returns
    -------
    Tensor of shape (N, K)
    """
    if x.ndim != 2 or centers.ndim != 2 or x.shape[1] != centers.shape[1]:
        raise ValueError(f"x (N, D) and centers (K, D) must share D; got {tuple(x.shape)} and "
                         f"{tuple(centers.shape)}.")
    x_sq = (x * x).sum(1, keepdim=True)                           # (N, 1)
    c_sq = (centers * centers).sum(1)                             # (K,)
    d = torch.addmm(c_sq[None, :], x, centers.T, alpha=-2.0)      # (N, D) @ (D, K) -> (N, K)
    return (d + x_sq).clamp_(min=0)


def assign(x: torch.Tensor, centers: torch.Tensor, batch_size: int | None = None):
    """Nearest centre of every point, computed ``batch_size`` rows at a time.

    Parameters
    ----------
    x : Tensor of shape (N, D)
    centers : Tensor of shape (K, D), same device and dtype as ``x``
    batch_size : int, optional
        Rows per chunk; default from :func:`auto_batch_size`.

    Returns
    -------
    labels : Tensor of shape (N,), int64
    min_sq_dist : Tensor of shape (N,)
        ``||x_i - c_{labels_i}||^2``.
    """
    batch_size = batch_size or auto_batch_size(len(centers), x.element_size())
    c_sq = (centers * centers).sum(1)                             # (K,)
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    dmin = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]                                  # (b, D), a view
        d = torch.addmm(c_sq[None, :], xb, centers.T, alpha=-2.0)  # (b, D) @ (D, K) -> (b, K)
        val, idx = d.min(1)                                       # (b,), (b,)
        labels[s:s + batch_size] = idx
        dmin[s:s + batch_size] = (val + (xb * xb).sum(1)).clamp_(min=0)
    return labels, dmin


def _lloyd_step(x, centers, batch_size):
    """One E-step and the sums of the M-step, chunked. Returns labels, min sq. dist, sums, counts."""
    k, dim = centers.shape
    c_sq = (centers * centers).sum(1)                             # (K,)
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    dmin = torch.empty(len(x), dtype=x.dtype, device=x.device)
    sums = torch.zeros(k, dim, dtype=x.dtype, device=x.device)   # (K, D) sum of members
    counts = torch.zeros(k, dtype=x.dtype, device=x.device)      # (K,)
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]                                  # (b, D)
        d = torch.addmm(c_sq[None, :], xb, centers.T, alpha=-2.0)  # (b, D) @ (D, K) -> (b, K)
        val, idx = d.min(1)
        labels[s:s + batch_size] = idx
        dmin[s:s + batch_size] = (val + (xb * xb).sum(1)).clamp_(min=0)
        onehot = torch.nn.functional.one_hot(idx, k).to(x.dtype)   # (b, K)
        sums += onehot.T @ xb                                     # (K, b) @ (b, D) -> (K, D)
        counts += onehot.sum(0)                                   # (K,)
    return labels, dmin, sums, counts


def _relocate_empty(x, labels, dmin, sums, counts):
    """Give every empty cluster the point farthest from its centre (scikit-learn's rule).

    That point leaves its old cluster's sum and count (its label is updated by the next E-step).
    """
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) == 0:
        return 0
    far = torch.topk(dmin, len(empty)).indices                    # (n_empty,) farthest points
    for new_id, i in zip(empty.tolist(), far.tolist()):
        old_id = int(labels[i])
        sums[old_id] -= x[i]
        counts[old_id] -= 1
        sums[new_id] = x[i]
        counts[new_id] = 1
    return len(empty)


def _inertia(x, centers, labels, batch_size):
    """``sum_i ||x_i - c_{labels_i}||^2`` by explicit differences (exact, chunked)."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for s in range(0, len(x), batch_size):
        diff = x[s:s + batch_size] - centers[labels[s:s + batch_size]]   # (b, D)
        total += (diff * diff).sum(dtype=torch.float64)
    return float(total)


def objective(x, centers, labels=None, squared: bool = True, batch_size: int | None = None) -> float:
    """The clustering objective ``sum_i ||x_i - c_{l_i}||^p``: k-means (p=2) or k-medians (p=1).

    Parameters
    ----------
    x : array-like of shape (N, D)
    centers : array-like of shape (K, D)
    labels : array-like of shape (N,), optional
        Cluster of each point; default: the nearest centre.
    squared : bool, default=True
        True: the k-means objective (the inertia). False: the sum of plain Euclidean distances,
        whose best single centre is the geometric median (k-medians), not the mean.

    Returns
    -------
    float
    """
    x = _as_tensor(x, "X")
    centers = _as_tensor(centers, "centers", dtype=x.dtype)
    if centers.shape[1] != x.shape[1]:
        raise ValueError(f"centers have {centers.shape[1]} features but X has {x.shape[1]}.")
    if labels is None:
        labels, _ = assign(x, centers, batch_size)
    else:
        labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
        if labels.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},); got {tuple(labels.shape)}.")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(centers)):
            raise ValueError(f"labels must lie in [0, {len(centers)}); got values in "
                             f"[{int(labels.min())}, {int(labels.max())}].")
    sq = ((x - centers[labels]) ** 2).sum(1)                      # (N,)
    return float(sq.sum() if squared else sq.sqrt().sum())


def geometric_median(x, tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    """The point minimising ``sum_i ||x_i - m||`` (unsquared), by Weiszfeld's iteration.

    ``m <- sum_i w_i x_i / sum_i w_i`` with ``w_i = 1 / ||x_i - m||``, started at the mean; a
    point that coincides with ``m`` is handled as in Vardi & Zhang (2000).

    Parameters
    ----------
    x : array-like of shape (N, D)

    Returns
    -------
    ndarray of shape (D,), float64
    """
    x = _as_tensor(x, "X", dtype=torch.float64)
    m = x.mean(0)                                                 # (D,)
    for _ in range(_check_int("max_iter", max_iter, 1)):
        d = (x - m).norm(dim=1)                                   # (N,)
        at = d < 1e-12
        w = 1.0 / d[~at]                                          # (N',)
        t = (w[:, None] * x[~at]).sum(0) / w.sum()                # (D,) Weiszfeld step
        if at.any():                                              # m is a data point
            r = ((x[~at] - m) * w[:, None]).sum(0).norm()
            eta = float(at.sum())
            t = m if r <= eta else (1 - eta / r) * t + (eta / r) * m
        done = float((t - m).norm()) <= tol * max(1.0, float(m.norm()))
        m = t
        if done:
            break
    return m.numpy()


# --------------------------------------------------------------------------- seeding
def kmeans_plusplus(x, n_clusters: int, random_state: int | None = None,
                    n_local_trials: int | None = None, device=None, batch_size: int | None = None):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn).

    The first centre is a uniformly random point; each next one is drawn with probability
    proportional to ``D(x)^2``, the squared distance to the nearest centre chosen so far. Of
    ``n_local_trials`` such draws (default ``2 + floor(ln k)``), the one that lowers the potential
    ``sum_x D(x)^2`` most is kept.

    Parameters
    ----------
    x : array-like of shape (N, D)
    n_clusters : int
    random_state : int, optional
    n_local_trials : int, optional
    device : optional
    batch_size : int, optional

    Returns
    -------
    centers : Tensor of shape (n_clusters, D), on ``device``
    indices : Tensor of shape (n_clusters,), int64, on the CPU
        Row of ``x`` chosen as each centre.
    """
    x = _as_tensor(x, "X", device=get_device(device))
    n_clusters = _check_int("n_clusters", n_clusters, 1)
    if len(x) < n_clusters:
        raise ValueError(f"n_samples={len(x)} should be >= n_clusters={n_clusters}.")
    gen = torch.Generator().manual_seed(_seed(random_state))
    return _kmeans_plusplus(x, n_clusters, gen, n_local_trials, batch_size)


def _seed(random_state) -> int:
    if random_state is None:
        return int(torch.randint(0, 2**31 - 1, (1,)))
    if not isinstance(random_state, numbers.Integral) or isinstance(random_state, bool) or random_state < 0:
        raise ValueError(f"random_state={random_state!r} must be None or a non-negative integer.")
    return int(random_state)


def _kmeans_plusplus(x, n_clusters, gen, n_local_trials=None, batch_size=None):
    """k-means++ on a validated tensor ``x`` (prior validation assumed)."""
    n = len(x)
    trials = n_local_trials or 2 + int(math.log(n_clusters))
    batch_size = batch_size or auto_batch_size(trials, x.element_size())
    indices = torch.empty(n_clusters, dtype=torch.long)
    indices[0] = torch.randint(n, (1,), generator=gen)
    closest = squared_distances(x, x[indices[:1].to(x.device)])[:, 0].double()   # (N,) D(x)^2
    pot = closest.sum()
    for c in range(1, n_clusters):
        u = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device)  # CPU draws: same on any device
        cum = torch.cumsum(closest, 0)                                           # (N,) float64
        cand = torch.searchsorted(cum, u * pot).clamp_(max=n - 1)                # (T,) rows ~ D^2
        cand_pts = x[cand]                                                       # (T, D)
        best_d = torch.empty(trials, n, dtype=torch.float64, device=x.device)    # (T, N)
        for s in range(0, n, batch_size):
            d = squared_distances(x[s:s + batch_size], cand_pts).T.double()     # (b, T) -> (T, b)
            best_d[:, s:s + batch_size] = torch.minimum(closest[s:s + batch_size][None], d)
        pots = best_d.sum(1)                                                     # (T,)
        b = int(pots.argmin())
        pot, closest = pots[b], best_d[b]
        indices[c] = int(cand[b])
    return x[indices.to(x.device)].clone(), indices


# --------------------------------------------------------------------------- the estimator
class KMeans:
    """K-Means clustering (Lloyd's algorithm) in PyTorch, with a scikit-learn-like API.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"} or array-like of shape (n_clusters, D), default="k-means++"
    n_init : int or "auto", default="auto"
        Number of restarts; the run with the lowest inertia is kept. "auto": 1 for k-means++ and
        for given centres, 10 for "random" (as scikit-learn >= 1.4).
    max_iter : int, default=300
        Lloyd iterations per restart.
    tol : float, default=1e-4
        Stop when the squared shift of the centres, summed, is at most ``tol`` times the mean
        per-feature variance of ``X`` (scikit-learn's relative tolerance). Also stops when no label
        changes ("strict convergence").
    random_state : int, optional
        Seeds all restarts (a ``torch.Generator`` on the CPU: same seeds, same result on any device).
    device : str or torch.device, optional
        Where to compute; default :func:`course_lib.device.get_device`.
    batch_size : int, optional
        Rows per chunk of the distance computation; default keeps a ``(chunk, k)`` block within
        :data:`MEMORY_BUDGET` bytes (:func:`auto_batch_size`).
    progress : bool, default=False
        A progress bar over the restarts.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, D)
        float64 for float64 input, else float32.
    labels_ : ndarray of shape (N,), int64
    inertia_ : float
        ``sum_i ||x_i - cluster_centers_[labels_i]||^2``.
    n_iter_ : int
        Lloyd iterations of the kept run.
    n_features_in_ : int

    Examples
    --------
    >>> from course_lib.kmeans import KMeans
    >>> X = [[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]]
    >>> km = KMeans(n_clusters=2, random_state=0, device="cpu").fit(X)
    >>> sorted(km.cluster_centers_[:, 0].tolist())
    [1.0, 10.0]
    """

    def __init__(self, n_clusters: int = 8, *, init="k-means++", n_init="auto", max_iter: int = 300,
                 tol: float = 1e-4, random_state: int | None = None, device=None,
                 batch_size: int | None = None, progress: bool = False):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.batch_size = batch_size
        self.progress = progress

    def __repr__(self):
        return (f"KMeans(n_clusters={self.n_clusters}, init={self.init if isinstance(self.init, str) else 'array'!r}, "
                f"n_init={self.n_init!r}, max_iter={self.max_iter}, tol={self.tol}, "
                f"random_state={self.random_state}, device={self.device!r})")

    # ---------------------------------------------------------------- checks
    def _check_params(self, x):
        k = _check_int("n_clusters", self.n_clusters, 1)
        _check_int("max_iter", self.max_iter, 1)
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0 or not math.isfinite(self.tol):
            raise ValueError(f"The 'tol' parameter of KMeans must be a float in the range [0, inf). "
                             f"Got {self.tol!r} instead.")
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if len(x) < k:
            raise ValueError(f"n_samples={len(x)} should be >= n_clusters={k}.")
        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "random"):
                raise ValueError(f"The 'init' parameter of KMeans must be 'k-means++', 'random' or an "
                                 f"array of shape (n_clusters, n_features). Got {init!r} instead.")
        else:
            init = _as_tensor(init, "init", device=x.device, dtype=x.dtype)
            if init.shape != (k, x.shape[1]):
                raise ValueError(f"The shape of the initial centers {tuple(init.shape)} does not match "
                                 f"the number of clusters {k} and features {x.shape[1]}; expected "
                                 f"({k}, {x.shape[1]}).")
        if self.n_init == "auto":
            n_init = 10 if isinstance(init, str) and init == "random" else 1
        else:
            n_init = _check_int("n_init", self.n_init, 1)
            if not isinstance(init, str) and n_init != 1:
                n_init = 1                   # given centres: every restart would be identical
        return k, init, n_init

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("This KMeans instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _check_predict_input(self, X):
        self._check_fitted()
        x = _as_tensor(X, "X", device=get_device(self.device), dtype=self._dtype)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, but KMeans is expecting "
                             f"{self.n_features_in_} features as input.")
        return x

    # ---------------------------------------------------------------- fitting
    def _single_run(self, x, centers, tol_abs, batch_size):
        """Lloyd's iterations from ``centers``; mirrors scikit-learn's ``_kmeans_single_lloyd``."""
        labels_old = None
        strict = False
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            labels, dmin, sums, counts = _lloyd_step(x, centers, batch_size)   # E-step + sums
            _relocate_empty(x, labels, dmin, sums, counts)
            new = sums / counts.clamp(min=1)[:, None]                          # (K, D) M-step
            shift = float(((new - centers) ** 2).sum())
            centers = new
            if labels_old is not None and torch.equal(labels, labels_old):
                strict = True
                break
            if shift <= tol_abs:
                break
            labels_old = labels
        if not strict:                       # labels must match the final centres
            labels, _ = assign(x, centers, batch_size)
        return centers, labels, _inertia(x, centers, labels, batch_size), n_iter

    def fit(self, X, y=None):
        """Compute the clustering of ``X`` (array-like or tensor of shape (N, D)); ``y`` is ignored."""
        device = get_device(self.device)
        x = _as_tensor(X, "X", device=device)
        k, init, n_init = self._check_params(x)
        # Centre the data (as scikit-learn does): ||x||^2 - 2 x.c + ||c||^2 then cancels less.
        x_mean = x.mean(0)                                        # (D,)
        x = x - x_mean
        if not isinstance(init, str):
            init = init - x_mean
        batch_size = self.batch_size or auto_batch_size(k, x.element_size())
        tol_abs = float(x.var(0, unbiased=False).mean()) * self.tol if self.tol > 0 else 0.0
        gen = torch.Generator().manual_seed(_seed(self.random_state))
        best = None
        for _ in tqdm(range(n_init), desc="k-means restarts", disable=not self.progress, leave=False):
            if not isinstance(init, str):
                c0 = init.clone()
            elif init == "k-means++":
                c0, _ = _kmeans_plusplus(x, k, gen, batch_size=batch_size)
            else:
                c0 = x[torch.randperm(len(x), generator=gen)[:k].to(device)].clone()
            run = self._single_run(x, c0, tol_abs, batch_size)
            if best is None or run[2] < best[2]:
                best = run
        centers, labels, inertia, n_iter = best
        self._dtype = x.dtype
        self.n_features_in_ = x.shape[1]
        self._mean = x_mean
        self.cluster_centers_ = (centers + x_mean).cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """``fit(X).labels_``: the cluster of every row of ``X``, shape (N,)."""
        return self.fit(X).labels_

    def predict(self, X) -> np.ndarray:
        """Nearest fitted centre of every row of ``X`` (N, D): int64 ndarray of shape (N,)."""
        x = self._check_predict_input(X)
        mean = self._mean.to(x.device)
        centers = torch.as_tensor(self.cluster_centers_, device=x.device) - mean   # centred, as in fit
        labels, _ = assign(x - mean, centers, self.batch_size)
        return labels.cpu().numpy()

    def transform(self, X) -> np.ndarray:
        """Euclidean distances to every centre: ndarray of shape (N, n_clusters)."""
        x = self._check_predict_input(X)
        centers = torch.as_tensor(self.cluster_centers_, device=x.device)
        bs = self.batch_size or auto_batch_size(len(centers), x.element_size())
        return torch.cat([squared_distances(x[s:s + bs], centers).sqrt().cpu()
                          for s in range(0, len(x), bs)]).numpy()

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X`` under the fitted centres (higher is better)."""
        x = self._check_predict_input(X)
        return -objective(x, self.cluster_centers_.astype(np.float64 if x.dtype == torch.float64
                                                          else np.float32))


# --------------------------------------------------------------------------- evaluation
def silhouette_samples(x, labels, device=None, batch_size: int = 4096) -> np.ndarray:
    """Silhouette of every point: ``s_i = (b_i - a_i) / max(a_i, b_i)`` (Rousseeuw 1987).

    ``a_i`` is the mean distance from ``x_i`` to the other members of its cluster, ``b_i`` the
    smallest mean distance to the members of another cluster. ``s_i = 0`` for a point alone in its
    cluster (scikit-learn's convention). Computed on ``device``, ``batch_size`` rows at a time:
    memory ``O(batch_size * N)``.

    Parameters
    ----------
    x : array-like of shape (N, D)
    labels : array-like of shape (N,)
        At least 2 and at most N - 1 distinct values.

    Returns
    -------
    ndarray of shape (N,), float64
    """
    device = get_device(device)
    x = _as_tensor(x, "X", device=device, dtype=torch.float64)
    _, lab = np.unique(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels), return_inverse=True)
    if lab.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},); got {lab.shape}.")
    n_labels = int(lab.max()) + 1
    if not 2 <= n_labels <= len(x) - 1:
        raise ValueError(f"Number of labels is {n_labels}. Valid values are 2 to n_samples - 1 "
                         f"(inclusive)")
    lab = torch.as_tensor(lab, device=device)
    sizes = torch.bincount(lab, minlength=n_labels).double()      # (L,)
    out = torch.empty(len(x), dtype=torch.float64, device=device)
    for s in range(0, len(x), batch_size):
        d = squared_distances(x[s:s + batch_size], x).sqrt()      # (b, N)
        sums = torch.zeros(len(d), n_labels, dtype=torch.float64, device=device)
        sums.index_add_(1, lab, d)                                # (b, L) distance sums per cluster
        own = lab[s:s + batch_size]                               # (b,)
        own_size = sizes[own]
        a = sums.gather(1, own[:, None])[:, 0] / (own_size - 1).clamp(min=1)   # self-distance is 0
        means = sums / sizes[None, :]                             # (b, L)
        means.scatter_(1, own[:, None], float("inf"))
        b = means.min(1).values
        sil = (b - a) / torch.maximum(a, b)
        out[s:s + batch_size] = torch.where(own_size > 1, torch.nan_to_num(sil), torch.zeros_like(sil))
    return out.cpu().numpy()


def silhouette_score(x, labels, device=None, batch_size: int = 4096) -> float:
    """Mean silhouette over all points (see :func:`silhouette_samples`); in [-1, 1], higher is better."""
    return float(silhouette_samples(x, labels, device, batch_size).mean())


def match_labels(y_true, y_pred) -> tuple[np.ndarray, dict]:
    """Relabel clusters with the classes they best match (Hungarian matching on the contingency table).

    Cluster ids are arbitrary: cluster 0 need not hold class 0. This finds the one-to-one map
    from clusters to classes that maximises the number of agreements; clusters left without a
    class (more clusters than classes) map to their majority class.

    Parameters
    ----------
    y_true : array-like of shape (N,), int
    y_pred : array-like of shape (N,), int
        Cluster ids.

    Returns
    -------
    mapped : ndarray of shape (N,)
        ``y_pred`` translated to class labels.
    mapping : dict
        ``{cluster id: class label}``.
    """
    from scipy.optimize import linear_sum_assignment

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length; got shapes "
                         f"{y_true.shape} and {y_pred.shape}.")
    classes, t = np.unique(y_true, return_inverse=True)
    clusters, p = np.unique(y_pred, return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)   # (clusters, classes)
    np.add.at(table, (p, t), 1)
    rows, cols = linear_sum_assignment(-table)
    mapping = {clusters[r].item(): classes[c].item() for r, c in zip(rows, cols)}
    for r in range(len(clusters)):
        mapping.setdefault(clusters[r].item(), classes[table[r].argmax()].item())
    return np.array([mapping[v] for v in y_pred.tolist()], dtype=y_true.dtype), mapping
