"""KMeans in PyTorch: the chapter "KMeans — clustering raw and learned representations".

One concept: partition ``N`` points into ``k`` clusters by minimising the **within-cluster sum of
squared distances** (the *inertia*)

    J(C, mu) = sum_k sum_{x in C_k} ||x - mu_k||^2,

by Lloyd's alternation (assign each point to its nearest centre; move each centre to the mean of
its points), started from k-means++ seeds and restarted ``n_init`` times. The squared distance
matters: with the unsquared distance the best centre of a cluster is its *geometric median*, not
its mean (that is the Euclidean k-median problem), see :func:`objective` and :func:`geometric_median`.

What the notebook imports from here:

- :class:`KMeans` — a scikit-learn estimator (``BaseEstimator``, ``ClusterMixin``,
  ``TransformerMixin``; ``fit``/``predict``/``fit_predict``/``transform``/``fit_transform``, fitted
  attributes ``cluster_centers_``, ``labels_``, ``inertia_``, ``n_iter_``; it passes scikit-learn's
  ``check_estimator``), computed on any ``device``; float32 and float64. Its Lloyd loop makes one
  pass over the data per iteration (:func:`_e_step`): per chunk of rows, one matrix product for the
  distances, the argmin, and the centre sums by ``index_add_`` while the chunk is in cache; on a
  CPU the chunk fits the L2 cache (:func:`lloyd_batch_size`) and threads split the chunks; on a
  GPU the stopping test stays on the device (no host round trip per iteration);
- :func:`compiled_kernel` — the CPU E-step in C (``kernels/lloyd.c``: each row read once, as
  scikit-learn's Cython), built with the machine's C compiler at first use; ``KMeans(backend=...)``
  chooses it or the torch E-step;
- :func:`kmeans_plusplus` — greedy k-means++ seeding (as scikit-learn: ``2 + floor(ln k)`` candidate
  draws per centre, keep the one that lowers the potential most);
- :func:`squared_distances`, :func:`assign` — the chunked ``||x||^2 - 2 x.c + ||c||^2`` computation
  (``assign`` runs the same E-step as the estimator);
- :func:`objective` — the k-means objective (``squared=True``) or the Euclidean k-median one;
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

import ctypes
import hashlib
import math
import numbers
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin,
                          TransformerMixin, _fit_context)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from .device import get_device
from .settings import data_dir, kmeans_backend

__all__ = ["KMeans", "kmeans_plusplus", "squared_distances", "assign", "objective",
           "compiled_kernel", "compiled_kernel_error", "KERNEL_SOURCE", "KERNEL_FLAGS",
           "geometric_median", "silhouette_samples", "silhouette_score", "match_labels",
           "auto_batch_size", "lloyd_batch_size", "MEMORY_BUDGET"]

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
    # one sum first (finite sum: all finite, as scikit-learn's fast path); the element-wise test
    # only when it is not
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
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
    (about three such blocks) stay within ``budget`` bytes (the GPU's chunk: memory, not cache)."""
    return max(1, budget // (3 * max(1, n_clusters) * element_size))


def _cache_bytes(level: int = 2, default: int = 2 ** 20) -> int:
    """Size of one CPU cache of ``level`` (per core for L2), read from Linux's sysfs; ``default``
    elsewhere."""
    units = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((d / "level").read_text()) == level and (d / "type").read_text().strip() != "Instruction":
                size = (d / "size").read_text().strip()
                return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            continue
    return default


def lloyd_batch_size(n_features: int, n_clusters: int, element_size: int = 4, device=None) -> int:
    """Rows per chunk of the Lloyd loop.

    On a CPU, a chunk of ``X`` and its ``(chunk, k)`` distance block should stay in the core's L2
    cache between the matrix product, the argmin and the centre sums that read them (one pass over
    memory per iteration); each thread works on its own chunks, so half of one core's L2 holds one.
    At least 1,024 rows, so that each operation's fixed cost stays small. On a GPU
    the chunk is bounded by memory only (:func:`auto_batch_size`).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cpu":
        return auto_batch_size(n_clusters, element_size)
    per_row = element_size * (n_features + n_clusters)
    return max(1024, _cache_bytes(2) // (2 * per_row))


# --------------------------------------------------------------------------- the compiled E-step
# A chain of torch operations reads each chunk of X several times (the matrix product, the
# minimum over the centres, index_add_); scikit-learn's Cython E-step reads each row once, while
# it is in the L1 cache. kernels/lloyd.c does the same in C. It is compiled with the machine's C
# compiler (cc -O3 -march=native) into <COURSE_DATA_DIR>/kernels/ the first time it is needed
# (about a second), keyed by the source, the compiler, the flags and the CPU, and called through
# ctypes (which releases the GIL, so the fit's worker threads run at once). Without a C compiler
# (e.g. Windows without build tools) or where the build fails, compiled_kernel() returns None and
# KMeans runs its torch E-step; COURSE_KMEANS_BACKEND=torch turns the kernel off.
# References: scikit-learn sklearn/cluster/_k_means_lloyd.pyx; Goto, van de Geijn, "Anatomy of
# high-performance matrix multiplication", ACM TOMS 34(3), 2008 (register blocking).
KERNEL_SOURCE = Path(__file__).with_name("kernels") / "lloyd.c"
KERNEL_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
_JB = 16                                  # centres per register block (_JB in lloyd.c)
_MIN_ROWS_PER_WORKER = 256                # fewer rows than this per thread: not worth a thread
_KERNEL_FUNCS = {torch.float32: "lloyd_estep_f32", torch.float64: "lloyd_estep_f64"}
_kernel_status: dict[str, str | None] = {"error": None}   # why compiled_kernel() found none


def _cpu_signature() -> str:
    """The CPU model and its instruction-set flags (``-march=native`` compiles for them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return platform.machine() + "\n".join(sorted(set(keep)))


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _kernel_dir() -> Path:
    """Where built kernels are kept: ``<COURSE_DATA_DIR>/kernels``, or the temporary folder when
    that one cannot be written (a read-only shared cache in a lab)."""
    import tempfile
    for folder in (data_dir() / "kernels", Path(tempfile.gettempdir()) / "course_lib-kernels"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="course_lib-kernels-"))


def compiled_kernel_error() -> str | None:
    """Why the last :func:`compiled_kernel` found no kernel (None when it found one or was not called)."""
    return _kernel_status["error"]


def _no_kernel(reason: str) -> None:
    _kernel_status["error"] = reason
    return None


@lru_cache(maxsize=None)
def compiled_kernel():
    """The compiled kernel (a :class:`ctypes.CDLL`), built on first use; None when unavailable."""
    _kernel_status["error"] = None
    if kmeans_backend() == "torch":
        return _no_kernel("COURSE_KMEANS_BACKEND=torch")
    cc = _compiler()
    if cc is None:
        return _no_kernel("no C compiler found (cc, gcc or clang on PATH, or $CC)")
    parts = [KERNEL_SOURCE.read_bytes(), cc.encode(), " ".join(KERNEL_FLAGS).encode(),
             _cpu_signature().encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    out = _kernel_dir() / f"lloyd-{key}.so"
    if not out.exists():
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.so")
        try:
            subprocess.run([cc, *KERNEL_FLAGS, str(KERNEL_SOURCE), "-o", str(tmp)], check=True,
                           capture_output=True, text=True, timeout=120)
            os.replace(tmp, out)                          # atomic: a parallel build never sees half
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", None) or str(err)
            tmp.unlink(missing_ok=True)
            return _no_kernel(f"{cc} failed on {KERNEL_SOURCE.name}: {detail.strip()[:500]}")
    try:
        lib = ctypes.CDLL(str(out))
    except OSError as err:
        return _no_kernel(f"could not load {out.name}: {err}")
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in _KERNEL_FUNCS.values():
        fn = getattr(lib, name)
        fn.argtypes = [p, i64, i64, p, p, i64, p, p, p, p, p]
        fn.restype = None
    return lib


def _compiled_e_step(lib, x: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor,
                     partial: torch.Tensor, sums: torch.Tensor | None = None,
                     inertia: bool = False, pool=None) -> torch.Tensor | None:
    """The E-step of :func:`_e_step`, by the C kernel.

    Parameters
    ----------
    lib : ctypes.CDLL
        From :func:`compiled_kernel`.
    x : Tensor of shape (N, D), float32 or float64, C-contiguous, on the CPU
    centers : Tensor of shape (K, D), same dtype
    labels : Tensor of shape (N,), int64, written
    partial : Tensor of shape (N,), written: ``min_j ||c_j||^2 - 2 x.c_j``
    sums : Tensor of shape (K, D), optional, accumulated into
    inertia : bool
        Also compute ``sum_i ||x_i - c_{labels_i}||^2`` (explicit differences, each row's summed
        in float64, as scikit-learn's).
    pool : _ChunkPool, optional
        Its ``workers`` threads take one contiguous range of rows each, with their own sums,
        added in a fixed order (deterministic for a given number of threads).

    Returns
    -------
    Tensor or None
        The inertia, a 0-d float64 tensor, when ``inertia`` is set.
    """
    if sums is not None and not sums.is_contiguous():
        raise ValueError("sums must be C-contiguous (K, D).")
    if x.device.type != "cpu" or x.dtype not in _KERNEL_FUNCS or not x.is_contiguous():
        raise ValueError(f"the compiled E-step needs a C-contiguous float32/float64 CPU tensor; got "
                         f"{x.dtype} on {x.device} (contiguous: {x.is_contiguous()}).")
    n, d = x.shape
    k = len(centers)
    kp = -(-k // _JB) * _JB                                         # k rounded up to a block
    ct = torch.zeros(d, kp, dtype=x.dtype)                        # (D, kp) centres transposed
    ct[:, :k] = centers.T
    c_sq = torch.full((kp,), float("inf"), dtype=x.dtype)         # (kp,) padding never wins
    c_sq[:k] = (centers * centers).sum(1)
    centers = centers.contiguous()                                # (K, D) for the inertia
    fn = getattr(lib, _KERNEL_FUNCS[x.dtype])
    workers = 1 if pool is None else min(pool.workers, max(1, n // _MIN_ROWS_PER_WORKER))
    bounds = [n * w // workers for w in range(workers + 1)]
    parts = [None if sums is None else (sums if workers == 1 else torch.zeros_like(sums))
             for _ in range(workers)]
    totals = torch.zeros(workers, dtype=torch.float64)            # (workers,) inertia parts

    def run(w: int) -> None:
        s, e = bounds[w], bounds[w + 1]
        if e > s:
            fn(x[s].data_ptr() if s < n else 0, e - s, d, ct.data_ptr(), c_sq.data_ptr(), kp,
               labels[s:e].data_ptr(), partial[s:e].data_ptr(),
               None if parts[w] is None else parts[w].data_ptr(), centers.data_ptr(),
               totals[w:].data_ptr() if inertia else None)

    if workers == 1:
        run(0)
    else:
        pool.map(run, range(workers))
        if sums is not None:
            for part in parts:                                    # fixed order: deterministic
                sums += part
    return totals.sum() if inertia else None


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


def _e_step(x, centers, batch_size, labels, partial, sums=None, inertia=False, pool=None,
            native=None):
    """The chunked E-step, the one loop over the data that every pass of k-means makes.

    For each chunk of ``batch_size`` rows: one matrix product gives ``||c_j||^2 - 2 x.c_j`` (the
    squared distance minus ``||x||^2``, which does not change the argmin), its minimum over the
    centres gives the labels, and, while the chunk is still in cache, optionally the centre sums of the M-step
    (``index_add_``: a sum per cluster, no Python-level work) and the exact inertia
    ``sum ||x - c_label||^2`` (explicit differences, as scikit-learn's, accumulated in float64).

    With a thread ``pool`` (CPU), chunk ``i`` goes to worker ``i % workers``, each with its own
    distance block and partial sums, added in a fixed order at the end (scikit-learn's scheme:
    threads over chunks, one synchronisation per pass, deterministic for a given thread count).

    Parameters
    ----------
    x : Tensor of shape (N, D)
    centers : Tensor of shape (K, D)
    batch_size : int
    labels : Tensor of shape (N,), int64, written
    partial : Tensor of shape (N,), written: ``min_j ||c_j||^2 - 2 x.c_j``
    sums : Tensor of shape (K, D), optional, accumulated into: the sum of each cluster's members
    inertia : bool
        Also return the inertia, a 0-d float64 tensor on ``x``'s device (no host transfer).
    pool : _ChunkPool, optional
    native : ctypes.CDLL, optional
        The compiled kernel (:func:`compiled_kernel`): the same E-step in one pass per row (CPU
        only).
    """
    if native is not None:
        return _compiled_e_step(native, x, centers, labels, partial, sums, inertia, pool)
    # The distance block is laid out (K, b), one row per centre: the minimum over the K rows
    # then runs along contiguous memory (vectorised over the chunk's points), which on a CPU is
    # about 1.5 times faster than a minimum over a short (b, K) row per point.
    c_sq = (centers * centers).sum(1)[:, None]                    # (K, 1)
    starts = range(0, len(x), batch_size)

    def run(chunk_starts, own_sums):
        d = torch.empty(len(centers), min(batch_size, len(x)), dtype=x.dtype, device=x.device)  # (K, b)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for s in chunk_starts:
            xb = x[s:s + batch_size]                              # (b, D), a view
            e = s + len(xb)
            db = d if len(xb) == d.shape[1] else d[:, :len(xb)].contiguous()   # (K, b)
            torch.addmm(c_sq, centers, xb.T, alpha=-2.0, out=db)  # (K, D) @ (D, b) -> (K, b)
            torch.min(db, 0, out=(partial[s:e], labels[s:e]))     # (b,), (b,)
            if own_sums is not None:
                own_sums.index_add_(0, labels[s:e], xb)           # (K, D) += members of the chunk
            if inertia:
                diff = xb - centers[labels[s:e]]                  # (b, D)
                total += (diff * diff).sum(dtype=torch.float64)
        return total

    if pool is None or len(starts) < 2:
        return run(starts, sums)
    w = pool.workers
    parts = [None if sums is None else torch.zeros_like(sums) for _ in range(w)]
    totals = pool.map(lambda i: run(starts[i::w], parts[i]), range(w))
    if sums is not None:
        for part in parts:                                        # fixed order: deterministic
            sums += part
    return sum(totals)


class _ChunkPool:
    """``workers`` CPU threads for :func:`_e_step`, each running torch on one thread (the ops
    release the GIL, so the threads compute at once)."""

    def __init__(self, workers: int):
        from concurrent.futures import ThreadPoolExecutor
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))

    def map(self, fn, items):
        return list(self._pool.map(fn, items))

    def close(self):
        self._pool.shutdown()


def assign(x: torch.Tensor, centers: torch.Tensor, batch_size: int | None = None):
    """Nearest centre of every point, computed ``batch_size`` rows at a time.

    Parameters
    ----------
    x : Tensor of shape (N, D)
    centers : Tensor of shape (K, D), same device and dtype as ``x``
    batch_size : int, optional
        Rows per chunk; default from :func:`lloyd_batch_size`.

    Returns
    -------
    labels : Tensor of shape (N,), int64
    min_sq_dist : Tensor of shape (N,)
        ``||x_i - c_{labels_i}||^2``.
    """
    batch_size = batch_size or lloyd_batch_size(x.shape[1], len(centers), x.element_size(), x.device)
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    partial = torch.empty(len(x), dtype=x.dtype, device=x.device)
    _e_step(x, centers, batch_size, labels, partial)
    return labels, (partial + (x * x).sum(1)).clamp_(min=0)


def _relocate_empty(x, labels, sq_dist, sums, counts):
    """Give every empty cluster one of the points farthest from their centres (scikit-learn's rule).

    The ``j``-th empty cluster (in index order) takes the ``j``-th farthest point, which leaves its
    old cluster's sum and count (its label is updated by the next E-step). Written without a host
    transfer (masks instead of a loop over the empty clusters), so that a GPU never waits.
    ``sums`` (K, D) and ``counts`` (K,) are updated in place.
    """
    k = len(counts)
    empty = counts == 0                                           # (K,)
    far = torch.topk(sq_dist, min(k, len(sq_dist))).indices       # (K,) farthest points first
    rank = (torch.cumsum(empty, 0) - 1).clamp_(0, len(far) - 1)   # (K,) rank among the empty
    pts = far[rank]                                               # (K,) the point of each empty one
    w = empty.to(x.dtype)                                         # (K,) 1 where empty
    old = labels[pts]                                             # (K,) their clusters until now
    sums.index_add_(0, old, -(x[pts] * w[:, None]))               # leave the old cluster
    counts.index_add_(0, old, -w)
    sums.copy_(torch.where(empty[:, None], x[pts], sums))         # start the empty one
    counts.copy_(torch.where(empty, torch.ones_like(counts), counts))


def _lloyd(x, centers, max_iter, tol_abs, batch_size, x_sq, sync_every=1, pool=None, native=None):
    """Lloyd's iterations from ``centers``; mirrors scikit-learn's ``_kmeans_single_lloyd``.

    Stops when no label changes (strict convergence) or when the squared centre shift, summed, is
    at most ``tol_abs``. The stopping test stays on the device: once it holds, later iterations
    leave the centres and the count unchanged (``torch.where``), and the host reads the flag only
    every ``sync_every`` iterations (1 on a CPU, where reading is free; more on a GPU, which then
    never waits for the host inside the loop). A last pass assigns the final labels and computes the
    exact inertia.

    Returns
    -------
    centers : Tensor (K, D), labels : Tensor (N,), inertia : float, n_iter : int
    """
    n, k = len(x), len(centers)
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    labels_old = torch.full((n,), -1, dtype=torch.long, device=x.device)
    partial = torch.empty(n, dtype=x.dtype, device=x.device)
    sums = torch.empty_like(centers)                              # (K, D)
    frozen = torch.zeros((), dtype=torch.bool, device=x.device)  # converged at an earlier iteration
    n_iter = torch.zeros((), dtype=torch.long, device=x.device)
    on_cpu = x.device.type == "cpu"
    for it in range(1, max_iter + 1):
        sums.zero_()
        _e_step(x, centers, batch_size, labels, partial, sums=sums, pool=pool,   # E-step + sums
                native=native)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)            # (K,)
        if not on_cpu or not bool(counts.all()):
            if x_sq is None:                                                # first empty cluster
                x_sq = (x * x).sum(1)                                       # (N,)
            _relocate_empty(x, labels, (partial + x_sq).clamp_(min=0), sums, counts)
        new = sums / counts.clamp(min=1)[:, None]                           # (K, D) M-step
        shift = ((new - centers) ** 2).sum()
        same = (torch.tensor(torch.equal(labels, labels_old)) if on_cpu
                else (labels == labels_old).all())
        centers = torch.where(frozen, centers, new)
        n_iter += (~frozen).long()
        frozen |= same | (shift <= tol_abs)
        if it % sync_every == 0 and bool(frozen):
            break
        labels, labels_old = labels_old, labels                             # swap the buffers
    inertia = _e_step(x, centers, batch_size, labels, partial, inertia=True, pool=pool,  # final
                      native=native)                                                # labels
    return centers, labels, float(inertia), int(n_iter)


def objective(x, centers, labels=None, squared: bool = True, batch_size: int | None = None) -> float:
    """The clustering objective ``sum_i ||x_i - c_{l_i}||^p``: k-means (p=2) or the Euclidean k-median (p=1).

    Parameters
    ----------
    x : array-like of shape (N, D)
    centers : array-like of shape (K, D)
    labels : array-like of shape (N,), optional
        Cluster of each point; default: the nearest centre.
    squared : bool, default=True
        True: the k-means objective (the inertia). False: the sum of plain Euclidean distances,
        whose best single centre is the geometric median (the Euclidean k-median problem;
        "k-medians" usually names the per-coordinate L1 variant), not the mean.

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
    if isinstance(random_state, np.random.RandomState):      # as scikit-learn accepts
        return int(random_state.randint(0, 2**31 - 1))
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
class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-Means clustering (Lloyd's algorithm) in PyTorch, a scikit-learn estimator.

    It follows scikit-learn's estimator contract (``get_params``/``set_params``/``clone``,
    parameters checked against ``_parameter_constraints`` when ``fit`` starts, fitted attributes
    ending in ``_``), so it drops into a ``Pipeline`` or ``GridSearchCV``; ``tests/test_kmeans.py``
    runs scikit-learn's own ``check_estimator`` checks on it.

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
    random_state : int, numpy RandomState or None, default=None
        Seeds all restarts (a ``torch.Generator`` on the CPU: same seed, same result on any device).
    device : str or torch.device, optional
        Where to compute; default :func:`course_lib.device.get_device`.
    batch_size : int, optional
        Rows per chunk of the E-step; default :func:`lloyd_batch_size` (a chunk that stays in the
        CPU's cache; on a GPU, a ``(chunk, k)`` block within :data:`MEMORY_BUDGET` bytes).
    progress : bool, default=False
        A progress bar over the restarts.
    backend : {"auto", "compiled", "torch"}, default="auto"
        The E-step on a CPU. "compiled": a C kernel (``course_lib/kernels/lloyd.c``, built with the
        machine's C compiler at first use) that reads each row once, as scikit-learn's Cython
        E-step; "torch": a chain of torch operations per chunk (matrix product, minimum,
        ``index_add_``); "auto": the compiled one when it can be built, else torch. Both give the
        same clustering up to floating-point rounding; on a GPU the E-step is always torch's.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, D)
        float64 for float64 input, else float32 (integers become float64, as in scikit-learn;
        tensors other than float64 become float32).
    labels_ : ndarray of shape (N,), int64
    inertia_ : float
        ``sum_i ||x_i - cluster_centers_[labels_i]||^2``.
    n_iter_ : int
        Lloyd iterations of the kept run.
    backend_ : str
        The E-step that ran: "compiled" or "torch".
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names (a pandas DataFrame).

    Examples
    --------
    >>> from course_lib.kmeans import KMeans
    >>> X = [[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]]
    >>> km = KMeans(n_clusters=2, random_state=0, device="cpu").fit(X)
    >>> sorted(km.cluster_centers_[:, 0].tolist())
    [1.0, 10.0]
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [None, str, torch.device],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "progress": ["boolean"],
        "backend": [StrOptions({"auto", "compiled", "torch"})],
    }

    def __init__(self, n_clusters: int = 8, *, init="k-means++", n_init="auto", max_iter: int = 300,
                 tol: float = 1e-4, random_state=None, device=None,
                 batch_size: int | None = None, progress: bool = False, backend: str = "auto"):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self.backend = backend

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self):
        """Number of output features of ``transform`` (one distance per centre)."""
        return self.cluster_centers_.shape[0]

    # ---------------------------------------------------------------- checks
    def _validate_X(self, X, reset: bool) -> torch.Tensor:
        """``X`` as a floating tensor on the device; checks as scikit-learn's ``validate_data``
        (tensors are checked here, without a copy to the host)."""
        device = get_device(self.device)
        if torch.is_tensor(X):
            x = _as_tensor(X, "X", device=device, dtype=None if reset else self._dtype)
            if reset:
                self.n_features_in_ = x.shape[1]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif x.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {x.shape[1]} features, but KMeans is expecting "
                                 f"{self.n_features_in_} features as input.")
            return x
        arr = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], order="C",
                            accept_sparse=False)
        if not reset:
            arr = arr.astype(self._dtype_np, copy=False)
        # a read-only array (a memory map) is copied: torch tensors must be writable
        x = torch.from_numpy(arr) if arr.flags.writeable else torch.tensor(arr)
        return x.to(device)

    def _check_params(self, x):
        """What ``_parameter_constraints`` cannot say: relations between parameters and data."""
        k = self.n_clusters
        if len(x) < k:
            raise ValueError(f"n_samples={len(x)} should be >= n_clusters={k}.")
        init = self.init
        if not isinstance(init, str):
            init = _as_tensor(init, "init", device=x.device, dtype=x.dtype)
            if init.shape != (k, x.shape[1]):
                raise ValueError(f"The shape of the initial centers {tuple(init.shape)} does not match "
                                 f"the number of clusters {k} and features {x.shape[1]}; expected "
                                 f"({k}, {x.shape[1]}).")
        if self.n_init == "auto":
            n_init = 10 if isinstance(init, str) and init == "random" else 1
        else:
            n_init = self.n_init if isinstance(init, str) else 1   # given centres: one run
        return k, init, n_init

    # ---------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Compute the clustering of ``X`` (array-like or tensor of shape (N, D)); ``y`` is ignored.

        Returns
        -------
        self
        """
        x = self._validate_X(X, reset=True)
        k, init, n_init = self._check_params(x)
        # Centre the data (as scikit-learn does): ||x||^2 - 2 x.c + ||c||^2 then cancels less.
        x_mean = x.mean(0)                                        # (D,)
        x = x - x_mean                                            # a copy: X is never changed
        if not isinstance(init, str):
            init = init - x_mean
        batch_size = self.batch_size or lloyd_batch_size(x.shape[1], k, x.element_size(), x.device)
        tol_abs = float(x.var(0, unbiased=False).mean()) * self.tol if self.tol > 0 else 0.0
        # (N,) for the empty-cluster rule: on a GPU at once (it never waits for the host); on a
        # CPU only if a cluster empties (a whole pass over X otherwise spent for nothing)
        x_sq = (x * x).sum(1) if x.device.type != "cpu" else None
        sync_every = 1 if x.device.type == "cpu" else 10
        gen = torch.Generator().manual_seed(_seed(self.random_state))
        # on a CPU, torch's threads split the chunks between them (one pool for the whole fit)
        threads = torch.get_num_threads()
        pool = (_ChunkPool(threads) if x.device.type == "cpu" and threads > 1
                and len(x) >= 2 * batch_size else None)
        native = self._native(x)
        best = None
        try:
            for _ in tqdm(range(n_init), desc="k-means restarts", disable=not self.progress, leave=False):
                if not isinstance(init, str):
                    c0 = init.clone()
                elif init == "k-means++":
                    c0, _ = _kmeans_plusplus(x, k, gen, batch_size=auto_batch_size(k, x.element_size()))
                else:
                    c0 = x[torch.randperm(len(x), generator=gen)[:k].to(x.device)].clone()
                run = _lloyd(x, c0, self.max_iter, tol_abs, batch_size, x_sq, sync_every, pool,
                             native)
                if best is None or run[2] < best[2]:
                    best = run
        finally:
            if pool is not None:
                pool.close()
        centers, labels, inertia, n_iter = best
        self._dtype = x.dtype
        self._dtype_np = np.float64 if x.dtype == torch.float64 else np.float32
        self._mean = x_mean.cpu()
        self.cluster_centers_ = (centers + x_mean).cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        self.backend_ = "torch" if native is None else "compiled"
        return self

    def _native(self, x):
        """The compiled E-step for this fit, or None (torch's)."""
        if self.backend == "torch" or x.device.type != "cpu":
            if self.backend == "compiled":
                raise ValueError(f"backend='compiled' runs on a CPU only, and X is on {x.device}; "
                                 "use backend='auto' (torch's E-step on this device).")
            return None
        native = compiled_kernel()
        if native is None and self.backend == "compiled":
            raise RuntimeError(f"backend='compiled' needs the C kernel, which could not be built "
                               f"({compiled_kernel_error()}); install a C compiler (e.g. "
                               "`apt-get install gcc`), or use backend='auto' or 'torch'.")
        return native

    def predict(self, X) -> np.ndarray:
        """Nearest fitted centre of every row of ``X`` (N, D): int64 ndarray of shape (N,)."""
        check_is_fitted(self)
        x = self._validate_X(X, reset=False)
        mean = self._mean.to(x.device)
        centers = torch.as_tensor(self.cluster_centers_, device=x.device) - mean   # centred, as in fit
        labels, _ = assign(x - mean, centers, self.batch_size)
        return labels.cpu().numpy()

    def transform(self, X) -> np.ndarray:
        """Euclidean distances to every centre: ndarray of shape (N, n_clusters), ``X``'s dtype
        after fitting (float32 or float64)."""
        check_is_fitted(self)
        x = self._validate_X(X, reset=False)
        centers = torch.as_tensor(self.cluster_centers_, device=x.device)
        bs = self.batch_size or auto_batch_size(len(centers), x.element_size())
        return torch.cat([squared_distances(x[s:s + bs], centers).sqrt().cpu()
                          for s in range(0, len(x), bs)]).numpy()

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X`` under the fitted centres (higher is better)."""
        check_is_fitted(self)
        x = self._validate_X(X, reset=False)
        return -objective(x, self.cluster_centers_)



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
