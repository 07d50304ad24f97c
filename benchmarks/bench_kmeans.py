"""Chapter 6, k-means: ``course_lib.kmeans.KMeans`` against scikit-learn, quality and speed.

The chapter's ``full`` configuration (notebooks/06_kmeans.py):

- quality: scikit-learn's 8x8 digits (1,797 x 64), k = 10, ``n_init=10``, seeds 0-4, each
  implementation from its own k-means++ seeds; the record is the worst ratio of inertias;
- speed: MNIST training digits shifted at random by up to 2 pixels (``cnn.random_shift``) to make
  N = 10,000 / 100,000 / 1,000,000 real images, projected on their first 64 principal components;
  k = 16, both started from the same centres, 20 Lloyd iterations (``tol=0``), timed in the same
  run at the same number of threads (torch's count, scikit-learn's pools limited to it with
  threadpoolctl; best of 3 interleaved runs, each after a pause; at the largest N also at 1 thread,
  and with the torch E-step (``backend="torch"``), in the note). Ours runs as the notebook does
  (``backend="auto"``: the compiled E-step of ``course_lib/kernels/lloyd.c`` where a C compiler
  is found). The CPU record is at the largest N; the GPU record is scikit-learn (CPU) over ours
  (GPU).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 6  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("kmeans_inertia_over_sklearn", "<= 1.005", "ratio",
         "inertia of our k-means over scikit-learn's, same data, k and n_init (worst of 5 seeds)",
         reference="scikit-learn's KMeans {cite:p}`pedregosa2011scikit`; k-means++ seeding is "
                   "O(log k)-competitive in expectation {cite:p}`arthur2007kmeanspp`"),
    Goal("kmeans_seconds_over_sklearn", "<= 1.2", "ratio",
         "CPU time of our k-means over scikit-learn's (compiled Cython), same start, same "
         "iterations, same run, largest N",
         reference="Lloyd's algorithm {cite:p}`lloyd1982least`"),
    Goal("kmeans_gpu_speedup_1m_x_64", ">= 30", "x",
         "scikit-learn on the CPU over our k-means on the GPU, 1,000,000 x 64, k = 16, 20 iterations",
         cpu=False),
)
FULL = dict(n_init=10, seeds=5, sizes=[10_000, 100_000, 1_000_000], k_bench=16, iters=20, reps=3)
TINY = dict(n_init=2, seeds=1, sizes=[2_000], k_bench=16, iters=5, reps=1)


def _timed_pair(X, start, k, iters, threads, reps, backends=("auto",)):
    """Seconds of scikit-learn's and our Lloyd loop at the same number of threads (scikit-learn's
    OpenMP/BLAS pools through threadpoolctl, torch's through set_num_threads), best of ``reps``
    interleaved runs (the best is the least disturbed by other jobs on a shared machine).

    Returns scikit-learn's seconds, ours for each of ``backends`` (the E-step: "auto" is the
    compiled kernel when it could be built) and the backend "auto" ran."""
    import torch
    from sklearn.cluster import KMeans as SKKMeans
    from threadpoolctl import threadpool_limits

    from course_lib.kmeans import KMeans

    before = torch.get_num_threads()
    sk, ours, ran = [], {b: [] for b in backends}, None
    try:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for _ in range(reps):
                # a pause before each timed run: an OpenMP pool keeps its threads spinning for a
                # while after its last parallel region (torch's and scikit-learn's are separate
                # pools), which would steal the cores from the other side's first iterations
                time.sleep(0.5)
                with common.Timer() as tb:
                    SKKMeans(k, init=start, n_init=1, max_iter=iters, tol=0).fit(X)
                sk.append(tb.seconds)
                for backend in backends:
                    time.sleep(0.5)
                    with common.Timer() as ta:
                        model = KMeans(k, init=start, max_iter=iters, tol=0, device="cpu",
                                       backend=backend).fit(X)
                    ours[backend].append(ta.seconds)
                    ran = model.backend_ if backend == "auto" else ran
    finally:
        torch.set_num_threads(before)
    return min(sk), {b: min(t) for b, t in ours.items()}, ran


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import numpy as np
    import torch
    from sklearn.cluster import KMeans as SKKMeans

    from course_lib import cnn, data
    from course_lib.device import get_device
    from course_lib.kmeans import KMeans

    cfg = TINY if tiny else FULL
    device = get_device()
    tag = "tiny: " if tiny else ""
    out = []

    # ---- quality: same data, k, n_init
    digits = data.load_digits()
    X_dig = np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 64)
    ratios, t_ours, t_sk = [], 0.0, 0.0
    for seed in range(cfg["seeds"]):
        with common.Timer() as ta:
            a = KMeans(10, n_init=cfg["n_init"], random_state=seed, device=device).fit(X_dig)
        with common.Timer() as tb:
            b = SKKMeans(10, n_init=cfg["n_init"], random_state=seed).fit(X_dig)
        ratios.append(a.inertia_ / b.inertia_)
        t_ours, t_sk = t_ours + ta.seconds, t_sk + tb.seconds
    out.append(common.record(
        GOALS["kmeans_inertia_over_sklearn"], max(ratios), tiny=tiny, seconds=t_ours,
        dataset=f"{tag}scikit-learn digits (1,797 x 64), k = 10, n_init = {cfg['n_init']}, "
                f"seeds 0-{cfg['seeds'] - 1}",
        note=f"ratios per seed {', '.join(f'{r:.4f}' for r in ratios)}"))

    # ---- speed: same start, same iterations
    mnist = data.load_mnist(full=None)
    gen = torch.Generator().manual_seed(0)
    pool = torch.as_tensor(mnist.x_train[:, None].astype(np.float32) / 255.0)     # (n, 1, 28, 28)
    flat_train = mnist.x_train.reshape(len(mnist.x_train), -1) / 255.0
    mu = flat_train.mean(0)
    V64 = torch.as_tensor(np.linalg.svd(flat_train - mu, full_matrices=False)[2][:64].T, dtype=torch.float32)
    mu_t = torch.as_tensor(mu, dtype=torch.float32)
    k, iters = cfg["k_bench"], cfg["iters"]
    threads = torch.get_num_threads()                       # the same count on both sides
    rows, Xbig = [], None
    for n in cfg["sizes"]:
        reps = -(-n // len(pool))
        # as the notebook, one shifted copy of the pool after another, projected copy by copy
        Xb = torch.cat([(cnn.random_shift(pool, 2, gen).flatten(1) - mu_t) @ V64 for _ in range(reps)])[:n].numpy()
        start = Xb[:k].copy()
        row = {"n": n}
        largest = n == cfg["sizes"][-1]
        for nt in ([threads, 1] if largest and threads > 1 else [threads]):
            both = largest and nt == threads                  # the torch E-step too, for the note
            sk, ours, ran = _timed_pair(Xb, start, k, iters, nt, reps=cfg["reps"],
                                        backends=("auto", "torch") if both else ("auto",))
            if nt == threads:
                row.update({"sklearn": sk, "ours_cpu": ours["auto"], "backend": ran})
                row.update({"ours_torch": ours["torch"]} if both else {})
            else:
                row.update({"sklearn_1": sk, "ours_cpu_1": ours["auto"]})
        if device.type == "cuda":
            KMeans(k, init=start, max_iter=2, tol=0, device=device).fit(Xb)    # warm-up
            torch.cuda.synchronize()
            with common.Timer() as tg:
                KMeans(k, init=start, max_iter=iters, tol=0, device=device).fit(Xb)
                torch.cuda.synchronize()
            row["ours_gpu"] = tg.seconds
        rows.append(row)
    last = rows[-1]
    table = "; ".join(f"N={r['n']:,}: ours {r['ours_cpu']:.2f} s, sklearn {r['sklearn']:.2f} s"
                      + (f", ours GPU {r['ours_gpu']:.3f} s" if "ours_gpu" in r else "") for r in rows)
    table = f"{threads} threads for both (torch; scikit-learn via threadpoolctl), best of {cfg['reps']}: " + table
    table += (f"; our E-step: {last['backend']}"
              + (" (course_lib/kernels/lloyd.c, cc -O3 -march=native)"
                 if last["backend"] == "compiled" else " (no C compiler: torch operations)"))
    if "ours_torch" in last:
        table += (f"; the torch E-step (backend='torch') at N={last['n']:,}: {last['ours_torch']:.2f} s "
                  f"(ratio {last['ours_torch'] / last['sklearn']:.2f})")
    if "ours_cpu_1" in last:
        table += (f"; 1 thread for both at N={last['n']:,}: ours {last['ours_cpu_1']:.2f} s, sklearn "
                  f"{last['sklearn_1']:.2f} s (ratio {last['ours_cpu_1'] / last['sklearn_1']:.2f})")
    speed_data = (f"{tag}{last['n']:,} MNIST digits randomly shifted, PCA-64 ({mnist.protocol.split(';')[0]}), "
                  f"k = {k}, {iters} iterations")
    out.append(common.record(GOALS["kmeans_seconds_over_sklearn"], last["ours_cpu"] / last["sklearn"],
                             dataset=speed_data, seconds=last["ours_cpu"], tiny=tiny,
                             device="cpu", note=common.join_notes(table, common.load_note())))
    if "ours_gpu" in last:
        note = None if last["n"] == 1_000_000 else f"N = {last['n']:,}, not 1,000,000"
        out.append(common.record(GOALS["kmeans_gpu_speedup_1m_x_64"], last["sklearn"] / last["ours_gpu"],
                                 dataset=speed_data, seconds=last["ours_gpu"], tiny=tiny,
                                 note=common.join_notes(note, table)))
    return out


if __name__ == "__main__":
    sys.exit(common.main(records))
