"""Tests for course_lib.kmeans: formulas, hand-computed toy cases, parity with scikit-learn's KMeans,
errors, determinism, and (on CUDA) device agreement."""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics import silhouette_samples as sk_silhouette_samples

from course_lib import kmeans as km
from course_lib.kmeans import KMeans

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:900]      # (900, 64) float64, real 8x8 digits (half: keeps tests fast)


# ------------------------------------------------------------------ formulas
def test_squared_distances_match_direct_formula():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    direct = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    assert torch.allclose(km.squared_distances(x, c), direct, atol=1e-12)
    assert (km.squared_distances(x, x) >= 0).all()          # clamped round-off


@pytest.mark.parametrize("batch_size", [1, 64, 1000])
def test_assign_is_chunk_independent(digits, batch_size):
    x = torch.tensor(digits[:300])
    c = x[:10]
    labels, dmin = km.assign(x, c, batch_size=batch_size)
    d = ((x[:, None] - c[None]) ** 2).sum(-1)
    assert torch.equal(labels, d.argmin(1))
    assert torch.allclose(dmin, d.min(1).values, rtol=1e-10, atol=1e-8)


def test_auto_batch_size_respects_budget():
    b = km.auto_batch_size(100, 4, budget=2 ** 20)
    assert 3 * b * 100 * 4 <= 2 ** 20 and 3 * (b + 1) * 100 * 4 > 2 ** 20


def test_objective_hand_computed():
    # sklearn's test_kmeans_results points, unweighted: squared distances (1/8)^2, (3/8)^2, (3/8)^2, (1/8)^2
    x = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    centers = np.array([[0.125, 0], [0.875, 1]])
    assert km.objective(x, centers, [0, 0, 1, 1]) == pytest.approx(0.3125)
    # unsquared: 0.125 + 0.375 + 0.375 + 0.125
    assert km.objective(x, centers, [0, 0, 1, 1], squared=False) == pytest.approx(1.0)
    # default labels: the nearest centre
    assert km.objective(x, centers) == pytest.approx(0.3125)


def test_mean_minimises_squared_median_minimises_unsquared():
    x = np.array([[0.0], [1.0], [2.0], [10.0]])               # 1-D: mean 3.25, median in [1, 2]
    mean, med = x.mean(0, keepdims=True), km.geometric_median(x)[None]
    assert km.objective(x, mean, [0] * 4) < km.objective(x, med, [0] * 4)
    assert km.objective(x, med, [0] * 4, squared=False) < km.objective(x, mean, [0] * 4, squared=False)
    assert 1.0 <= med[0, 0] <= 2.0
    assert km.objective(x, mean, [0] * 4) == pytest.approx(3.25**2 + 2.25**2 + 1.25**2 + 6.75**2)


def test_geometric_median_against_scipy(digits):
    from scipy.optimize import minimize
    x = digits[:200]
    f = lambda m: np.linalg.norm(x - m, axis=1).sum()
    ref = minimize(f, x.mean(0), method="L-BFGS-B", options={"maxiter": 2000}).fun
    assert f(km.geometric_median(x)) <= ref + 1e-6 * ref
    # a data point at the median (odd count on a line) is handled
    assert km.geometric_median(np.array([[0.0, 0], [1, 0], [5, 0]]))[0] == pytest.approx(1.0, abs=1e-6)


def test_silhouette_matches_sklearn(digits):
    y = load_digits().target[:len(digits)]
    labels = y.copy()
    labels[0] = 42                                              # a singleton cluster: s = 0
    ours = km.silhouette_samples(digits, labels, device="cpu", batch_size=100)
    assert np.allclose(ours, sk_silhouette_samples(digits, labels), atol=1e-10)
    assert ours[0] == 0
    assert km.silhouette_score(digits, labels, device="cpu") == pytest.approx(ours.mean())


def test_silhouette_hand_computed():
    # two clusters on a line: {0, 1} and {4}; s(0) = (4 - 1)/4, s(1) = (3 - 1)/3, s(4) = 0 (singleton)
    s = km.silhouette_samples(np.array([[0.0], [1.0], [4.0]]), [0, 0, 1], device="cpu")
    assert np.allclose(s, [0.75, 2 / 3, 0.0])


def test_match_labels():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([2, 2, 0, 0, 1, 0])                        # clusters are permuted classes
    mapped, mapping = km.match_labels(y, pred)
    assert mapping == {2: 0, 0: 1, 1: 2}
    assert (mapped == np.array([0, 0, 1, 1, 2, 1])).all()
    # more clusters than classes: the extra cluster maps to its majority class
    mapped, mapping = km.match_labels([0, 0, 0, 1], [0, 1, 1, 2])
    assert mapping == {1: 0, 2: 1, 0: 0} and (mapped == np.array([0, 0, 0, 1])).all()
    with pytest.raises(ValueError, match="same length"):
        km.match_labels([0, 1], [0])


# ------------------------------------------------------------------ k-means++
def test_kmeans_plusplus_picks_distinct_data_points(digits):
    centers, idx = km.kmeans_plusplus(digits, 10, random_state=0, device="cpu")
    assert centers.shape == (10, 64) and len(set(idx.tolist())) == 10
    assert torch.equal(centers, torch.tensor(digits[idx.numpy()]))


def test_kmeans_plusplus_samples_proportional_to_d2():
    # points 0, 1, 3 on a line; with first centre 0 the next is 3 with probability 9/10 (D^2 = 0, 1, 9)
    x = np.array([[0.0], [1.0], [3.0]])
    hits = total = 0
    for seed in range(1500):
        _, idx = km.kmeans_plusplus(x, 2, random_state=seed, n_local_trials=1, device="cpu")
        if idx[0] == 0:
            total += 1
            hits += int(idx[1] == 2)
    p = hits / total
    assert total > 400 and abs(p - 0.9) < 4 * np.sqrt(0.09 / total), (p, total)


def test_kmeans_plusplus_beats_random_seeding(digits):
    pp = np.mean([km.objective(digits, km.kmeans_plusplus(digits, 10, random_state=s, device="cpu")[0].numpy())
                  for s in range(5)])
    rng = np.random.default_rng(0)
    rand = np.mean([km.objective(digits, digits[rng.choice(len(digits), 10, replace=False)]) for _ in range(5)])
    assert pp < rand


# ------------------------------------------------------------------ parity with scikit-learn
def test_same_init_gives_sklearns_result_exactly(digits):
    init = digits[np.random.default_rng(0).choice(len(digits), 10, replace=False)]
    for max_iter in (3, 300):
        ours = KMeans(10, init=init, max_iter=max_iter, device="cpu").fit(digits)
        ref = SKKMeans(10, init=init, n_init=1, max_iter=max_iter).fit(digits)
        assert ours.n_iter_ == ref.n_iter_
        assert (ours.labels_ == ref.labels_).all()
        assert np.allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-10)
        assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)


def test_inertia_within_half_percent_of_sklearn(digits):
    for seed in (0, 1):
        ours = KMeans(10, n_init=3, random_state=seed, device="cpu").fit(digits)
        ref = SKKMeans(10, n_init=3, random_state=seed).fit(digits)
        assert ours.inertia_ / ref.inertia_ <= 1.005, (seed, ours.inertia_, ref.inertia_)
        assert ours.inertia_ == pytest.approx(km.objective(digits, ours.cluster_centers_, ours.labels_))


def test_same_labels_up_to_permutation_on_separated_data():
    x, _ = make_blobs(n_samples=600, centers=5, cluster_std=0.5, random_state=3)
    ours = KMeans(5, n_init=3, random_state=0, device="cpu").fit(x)
    ref = SKKMeans(5, n_init=3, random_state=0).fit(x)
    assert adjusted_rand_score(ref.labels_, ours.labels_) == 1.0
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)


def test_float32_close_to_float64(digits):
    a = KMeans(10, random_state=0, device="cpu").fit(digits)
    b = KMeans(10, random_state=0, device="cpu").fit(digits.astype(np.float32))
    assert b.cluster_centers_.dtype == np.float32 and a.cluster_centers_.dtype == np.float64
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-3)


# ------------------------------------------------------------------ behaviour
def test_lloyd_never_increases_the_objective(digits):
    init = digits[:10]
    values = [KMeans(10, init=init, max_iter=m, tol=0, device="cpu").fit(digits).inertia_ for m in (1, 2, 3, 5, 8)]
    assert all(b <= a + 1e-6 for a, b in zip(values, values[1:]))


def test_labels_are_nearest_centres_and_predict_agrees(digits):
    model = KMeans(10, random_state=0, device="cpu").fit(digits)
    assert (model.predict(digits) == model.labels_).all()
    d = model.transform(digits)
    assert d.shape == (len(digits), 10) and (d.argmin(1) == model.labels_).all()
    assert model.score(digits) == pytest.approx(-model.inertia_, rel=1e-9)
    assert (model.fit_predict(digits) == model.labels_).all()


def test_deterministic_and_batch_size_independent(digits):
    a = KMeans(10, n_init=2, random_state=5, device="cpu").fit(digits)
    b = KMeans(10, n_init=2, random_state=5, device="cpu", batch_size=97).fit(digits)
    assert (a.labels_ == b.labels_).all() and np.allclose(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-10)


def test_empty_cluster_is_relocated_to_the_farthest_point():
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    init = np.array([[1.0], [100.0]])                          # no point is nearest to 100
    model = KMeans(2, init=init, max_iter=1, device="cpu").fit(x)
    assert sorted(model.cluster_centers_.ravel().tolist()) == [1.0, 10.0]
    assert np.bincount(model.labels_).min() >= 1


def test_n_init_keeps_the_best_run(digits):
    single = [KMeans(10, init="random", n_init=1, random_state=s, device="cpu").fit(digits).inertia_
              for s in range(3)]
    best = KMeans(10, init="random", n_init=5, random_state=0, device="cpu").fit(digits).inertia_
    assert best <= max(single)


def test_k_equals_n_gives_zero_inertia():
    x = np.array([[0.0, 1], [2, 3], [4, 5]])
    assert KMeans(3, random_state=0, device="cpu").fit(x).inertia_ == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs, match", [
    ({"n_clusters": 0}, r"'n_clusters' parameter of KMeans must be an int in the range \[1, inf\). Got 0"),
    ({"n_clusters": 2.5}, "Got 2.5 instead"),
    ({"max_iter": 0}, "'max_iter'.*Got 0"),
    ({"n_init": 0}, "'n_init'.*Got 0"),
    ({"tol": -1.0}, "'tol'.*Got -1.0"),
    ({"init": "kmeans++"}, "'init'.*Got 'kmeans\\+\\+'"),
    ({"batch_size": 0}, "'batch_size'.*Got 0"),
    ({"backend": "c"}, "'backend'.*Got 'c'"),
    ({"init": np.zeros((3, 2))}, r"shape of the initial centers \(3, 2\).*expected \(2, 2\)"),
])
def test_bad_parameters(kwargs, match):
    params = {"n_clusters": 2, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=match):
        KMeans(**params).fit(np.arange(10.0).reshape(5, 2))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"n_samples=5 should be >= n_clusters=8\."):
        KMeans(8, device="cpu").fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="Expected 2D array.*1D"):
        KMeans(2, device="cpu").fit(np.zeros(5))
    with pytest.raises(ValueError, match="0 sample"):
        KMeans(2, device="cpu").fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        KMeans(2, device="cpu").fit(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="infinity"):
        KMeans(2, device="cpu").fit(np.array([[0.0], [np.inf], [1.0]]))
    model = KMeans(2, random_state=0, device="cpu").fit(np.arange(10.0).reshape(5, 2))
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 2 features"):
        model.predict(np.zeros((2, 3)))
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="not fitted"):
        KMeans(2).predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="random_state=-1"):
        km.kmeans_plusplus(np.zeros((4, 2)), 2, random_state=-1)
    with pytest.raises(ValueError, match="Number of labels is 1"):
        km.silhouette_score(np.zeros((4, 2)), [0, 0, 0, 0], device="cpu")


def test_accepts_tensors(digits):
    x = torch.tensor(digits, dtype=torch.float32)
    model = KMeans(10, random_state=0, device="cpu").fit(x)
    assert model.labels_.shape == (len(digits),) and model.cluster_centers_.dtype == np.float32


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
@CUDA
def test_cuda_matches_cpu(digits):
    init = digits[:10]
    cpu = KMeans(10, init=init, device="cpu").fit(digits)
    gpu = KMeans(10, init=init, device="cuda").fit(digits)
    assert (cpu.labels_ == gpu.labels_).all()
    assert gpu.inertia_ == pytest.approx(cpu.inertia_, rel=1e-9)
    pp_cpu = km.kmeans_plusplus(digits, 10, random_state=0, device="cpu")[1]
    pp_gpu = km.kmeans_plusplus(digits, 10, random_state=0, device="cuda")[1]
    assert torch.equal(pp_cpu, pp_gpu)


# ------------------------------------------------------------------ scikit-learn's estimator contract
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([KMeans(device="cpu")])
def test_sklearn_estimator_checks(estimator, check):
    # every check of scikit-learn's check_estimator; the only one that does not apply
    # (check_array_api_input: array-API namespaces, needs SCIPY_ARRAY_API) skips itself
    check(estimator)


def test_clone_pipeline_and_fit_transform(digits):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = KMeans(10, random_state=0, device="cpu")
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "labels_")
    d = model.fit_transform(digits)                                # (N, k) distances
    assert d.shape == (len(digits), 10) and (d.argmin(1) == model.labels_).all()
    assert np.allclose(d, model.transform(digits))
    pipe = make_pipeline(StandardScaler(), KMeans(10, random_state=0, device="cpu")).fit(digits)
    assert (pipe.predict(digits) == pipe[-1].labels_).all()
    assert list(model.get_feature_names_out()) == [f"kmeans{i}" for i in range(10)]


def test_device_side_stopping_test_matches_the_host_loop(digits):
    # the GPU loop reads the stopping flag every few iterations and freezes the centres once it
    # holds; run that path on the CPU: the same iterations, centres and labels
    x = torch.tensor(digits) - torch.tensor(digits).mean(0)
    c0 = x[:10].clone()
    x_sq = (x * x).sum(1)
    a = km._lloyd(x, c0, 300, 0.0, 128, x_sq, sync_every=1)
    b = km._lloyd(x, c0, 300, 0.0, 128, x_sq, sync_every=7)
    assert a[3] == b[3] and torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) and a[2] == b[2]


def test_relocation_of_several_empty_clusters():
    # three far-away centres get no point: the farthest points, in order, start them
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [20.0]], dtype=torch.float64)
    labels = torch.zeros(5, dtype=torch.long)
    sums = torch.zeros(4, 1, dtype=torch.float64)
    sums[0] = x.sum()
    counts = torch.tensor([5.0, 0, 0, 0], dtype=torch.float64)
    sq = (x[:, 0] - 6.6) ** 2                                       # distance to the one centre
    km._relocate_empty(x, labels, sq, sums, counts)
    assert counts.tolist() == [2.0, 1.0, 1.0, 1.0]
    assert sums[:, 0].tolist() == [12.0, 20.0, 0.0, 1.0]            # farthest: 20, then 0, then 1


@pytest.mark.parametrize("backend", ["torch", "compiled"])
def test_threads_over_chunks_give_the_single_thread_result(digits, backend):
    # with several torch threads, fit splits the chunks between worker threads (own partial sums,
    # added in a fixed order): same labels and iterations as one thread, centres to round-off
    if backend == "compiled" and km.compiled_kernel() is None:
        pytest.skip(f"no compiled kernel: {km.compiled_kernel_error()}")
    kw = dict(n_init=2, random_state=3, batch_size=64, device="cpu", backend=backend)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = KMeans(10, **kw).fit(digits)
        torch.set_num_threads(2)
        two = KMeans(10, **kw).fit(digits)
        again = KMeans(10, **kw).fit(digits)
    finally:
        torch.set_num_threads(threads)
    assert (one.labels_ == two.labels_).all() and one.n_iter_ == two.n_iter_
    assert np.allclose(one.cluster_centers_, two.cluster_centers_, atol=1e-10)
    assert two.inertia_ == pytest.approx(one.inertia_, rel=1e-12)
    assert np.array_equal(two.cluster_centers_, again.cluster_centers_)   # deterministic per thread count
    assert torch.get_num_threads() == threads


# ------------------------------------------------------------------ the compiled E-step
needs_kernel = pytest.mark.skipif(km.compiled_kernel() is None,
                                  reason=f"no compiled kernel: {km.compiled_kernel_error()}")


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 10, 16, 37])                   # 37: three blocks, 11 padded
def test_compiled_e_step_matches_the_torch_one(dtype, k):
    x = torch.as_tensor(load_digits().data[:1001], dtype=dtype)  # 1001 rows: a partial last block
    x = x - x.mean(0)
    centers = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(k))[:k]].clone()
    out = {}
    for name, native in (("torch", None), ("compiled", km.compiled_kernel())):
        labels = torch.empty(len(x), dtype=torch.long)
        partial = torch.empty(len(x), dtype=dtype)
        sums = torch.zeros(k, x.shape[1], dtype=dtype)
        km._e_step(x, centers, 128, labels, partial, sums=sums, native=native)
        out[name] = labels, partial, sums
    (l0, p0, s0), (l1, p1, s1) = out["torch"], out["compiled"]
    tol = 1e-3 if dtype == torch.float32 else 1e-9                # distances are ~1e3 here
    assert torch.allclose(p1, p0, rtol=0, atol=tol)
    # labels may differ only where two centres are equally near (to round-off)
    d = km.squared_distances(x.double(), centers.double())        # (N, K)
    gap = (d.gather(1, l1[:, None]) - d.gather(1, l0[:, None])).abs().squeeze(1)
    assert (gap[l1 != l0] <= 10 * tol).all() and (l1 == l0).float().mean() > 0.99
    assert torch.equal(l1, torch.argmin(d, 1)) or dtype == torch.float32
    expected = torch.zeros_like(s1).index_add_(0, l1, x)           # the sums of its own labels
    assert torch.allclose(s1, expected, rtol=1e-5, atol=1e-3)
    # the last pass: the exact inertia of its own labels, in float64
    inertia = km._e_step(x, centers, 128, l1, p1, inertia=True, native=km.compiled_kernel())
    direct = ((x.double() - centers.double()[l1]) ** 2).sum()
    assert inertia.dtype == torch.float64
    assert float(inertia) == pytest.approx(float(direct), rel=1e-6 if dtype == torch.float32 else 1e-12)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_backend_gives_the_torch_clustering(digits, dtype):
    kw = dict(n_init=3, random_state=0, device="cpu")
    a = KMeans(10, backend="compiled", **kw).fit(digits.astype(dtype))
    b = KMeans(10, backend="torch", **kw).fit(digits.astype(dtype))
    s = SKKMeans(10, n_init=3, random_state=0).fit(digits.astype(dtype))
    assert (a.backend_, b.backend_) == ("compiled", "torch")
    assert adjusted_rand_score(a.labels_, b.labels_) == 1.0
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-6)
    assert a.inertia_ <= 1.005 * s.inertia_


@pytest.fixture
def fresh_kernel():
    """compiled_kernel() looks again (its cache emptied) inside the test, and again after it."""
    km.compiled_kernel.cache_clear()
    yield km.compiled_kernel
    km.compiled_kernel.cache_clear()


def test_without_a_compiler_auto_falls_back_and_compiled_says_why(digits, monkeypatch, tmp_path,
                                                                  fresh_kernel):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))          # no kernel built before
    assert fresh_kernel() is None
    assert "no-such-cc" in km.compiled_kernel_error()
    auto = KMeans(10, random_state=0, device="cpu").fit(digits)
    assert auto.backend_ == "torch"
    ref = KMeans(10, random_state=0, device="cpu", backend="torch").fit(digits)
    assert (auto.labels_ == ref.labels_).all()
    with pytest.raises(RuntimeError, match="install a C compiler"):
        KMeans(10, device="cpu", backend="compiled").fit(digits)


def test_backend_torch_by_environment(monkeypatch, fresh_kernel):
    monkeypatch.setenv("COURSE_KMEANS_BACKEND", "torch")
    assert fresh_kernel() is None
    assert "COURSE_KMEANS_BACKEND" in km.compiled_kernel_error()
    if km._compiler() is not None:
        monkeypatch.setenv("COURSE_KMEANS_BACKEND", "auto")     # a later look that finds one
        fresh_kernel.cache_clear()
        assert fresh_kernel() is not None and km.compiled_kernel_error() is None


@needs_kernel
def test_kernel_is_built_once_and_reused(monkeypatch, tmp_path, fresh_kernel):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert fresh_kernel() is not None
    built = list((tmp_path / "kernels").glob("lloyd-*.so"))
    assert len(built) == 1 and not list((tmp_path / "kernels").glob("*.tmp.so"))
    stamp = built[0].stat().st_mtime_ns
    fresh_kernel.cache_clear()
    assert fresh_kernel() is not None
    assert built[0].stat().st_mtime_ns == stamp                     # the cached build, not a new one


def test_bad_backend_setting_is_refused_with_the_value(monkeypatch, fresh_kernel):
    monkeypatch.setenv("COURSE_KMEANS_BACKEND", "fast")
    with pytest.raises(ValueError, match="COURSE_KMEANS_BACKEND='fast'.*'auto' or 'torch'"):
        fresh_kernel()
