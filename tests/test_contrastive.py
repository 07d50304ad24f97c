"""The contrastive chapter's formulas (NT-Xent, alignment, uniformity), augmentations and
evaluation, checked against direct loops, hand-computed values and scikit-learn."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import contrastive as C
from course_lib import probe, train
from course_lib.train import TrainConfig


def _nt_xent_loop(z1, z2, tau):
    """The NT-Xent formula of SimCLR (Chen et al. 2020, eq. 1), one view at a time, in float64."""
    u = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n2, n = len(u), len(z1)
    losses = []
    for i in range(n2):
        p = (i + n) % n2
        denom = sum(math.exp(float(u[i] @ u[k]) / tau) for k in range(n2) if k != i)
        losses.append(-math.log(math.exp(float(u[i] @ u[p]) / tau) / denom))
    return losses


@pytest.mark.parametrize("n,d,tau", [(1, 3, 0.5), (4, 8, 0.1), (16, 5, 1.0), (7, 32, 0.07)])
def test_info_nce_matches_the_direct_loop(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g) * 3, torch.randn(n, d, generator=g)
    per_view = C.info_nce(z1, z2, tau, reduction="none")
    expected = torch.tensor(_nt_xent_loop(z1, z2, tau), dtype=torch.float64)
    assert per_view.shape == (2 * n,)
    assert torch.allclose(per_view.double(), expected, rtol=1e-5, atol=1e-5)
    assert C.info_nce(z1, z2, tau).item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_info_nce_hand_computed_values():
    # all 2N embeddings equal: every candidate has logit 1/tau, loss = log(2N - 1)
    z = torch.ones(3, 4)
    assert C.info_nce(z, z, 0.3).item() == pytest.approx(math.log(5), rel=1e-6)
    # N=2, views identical and orthogonal across images: positive sim 1, the two negatives 0
    # l = -1/tau + log(e^{1/tau} + 2) = log(1 + 2 e^{-1/tau})
    e = torch.eye(2)
    for tau in (0.1, 0.5, 2.0):
        assert C.info_nce(e, e, tau).item() == pytest.approx(math.log(1 + 2 * math.exp(-1 / tau)), rel=1e-5, abs=1e-6)
    # positive antipodal (s = -1), negatives orthogonal (s = 0), N=2 in 2-D:
    z1, z2 = torch.eye(2), -torch.eye(2)
    tau = 0.5
    expected = 1 / tau + math.log(math.exp(-1 / tau) + 2)
    assert C.info_nce(z1, z2, tau).item() == pytest.approx(expected, rel=1e-6)
    # scale invariance: embeddings are normalised first
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert C.info_nce(a, b).item() == pytest.approx(C.info_nce(10 * a, 0.1 * b).item(), rel=1e-5)


def test_info_nce_is_symmetric_in_the_views_and_permutation_equivariant():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert C.info_nce(z1, z2).item() == pytest.approx(C.info_nce(z2, z1).item(), rel=1e-6)
    perm = torch.randperm(6, generator=g)
    assert C.info_nce(z1, z2).item() == pytest.approx(C.info_nce(z1[perm], z2[perm]).item(), rel=1e-6)


def test_info_nce_gradients_flow_and_pull_positives_together():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(8, 4, generator=g, requires_grad=True)
    z2 = torch.randn(8, 4, generator=g, requires_grad=True)
    loss = C.info_nce(z1, z2, 0.2)
    loss.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    assert torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0
    # one gradient step lowers the loss and raises the positive cosine similarity
    cos0 = nn.functional.cosine_similarity(z1, z2).mean().item()
    with torch.no_grad():
        z1 -= 0.5 * z1.grad
        z2 -= 0.5 * z2.grad
    assert C.info_nce(z1, z2, 0.2).item() < loss.item()
    assert nn.functional.cosine_similarity(z1, z2).mean().item() > cos0
    # through a network too: every parameter of a linear map receives a gradient
    net = nn.Linear(4, 3)
    x = torch.randn(5, 4, generator=g)
    C.info_nce(net(x), net(x + 0.1), 0.5).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_similarity_logits_and_the_gradient_formula():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    tau = 0.3
    logits, pos = C.similarity_logits(z1, z2, tau)
    assert pos.tolist() == [3, 4, 5, 0, 1, 2]
    assert torch.isinf(logits.diagonal()).all()
    u = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    s = (u @ u.T).requires_grad_(True)                       # cosine similarities as a leaf
    masked = (s / tau).masked_fill(torch.eye(6, dtype=torch.bool), float("-inf"))
    assert torch.allclose(masked.detach(), logits)
    nn.functional.cross_entropy(masked, pos, reduction="sum").backward()
    # d l_i / d s_ik = (softmax_ik - [k = p(i)]) / tau
    expected = (torch.softmax(logits, 1) - nn.functional.one_hot(pos, 6)) / tau
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_info_nce_errors_quote_the_value():
    z = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"temperature=0"):
        C.info_nce(z, z, 0)
    with pytest.raises(ValueError, match=r"temperature=-1"):
        C.info_nce(z, z, -1.0)
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(3, 3\)"):
        C.info_nce(z, z[:3])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        C.info_nce(z[0], z[0])
    with pytest.raises(ValueError, match="empty batch"):
        C.info_nce(z[:0], z[:0])
    with pytest.raises(ValueError, match="floating point"):
        C.info_nce(z.long(), z.long())
    with pytest.raises(ValueError, match="reduction='sum'"):
        C.info_nce(z, z, reduction="sum")


def _wang_isola_reference():
    # The functions printed in Wang & Isola (2020), Fig. 5 (on normalised inputs).
    def align_loss(x, y, alpha=2):
        return (x - y).norm(p=2, dim=1).pow(alpha).mean()

    def uniform_loss(x, t=2):
        return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()
    return align_loss, uniform_loss


def test_alignment_and_uniformity_match_the_papers_code_and_hand_values():
    align_loss, uniform_loss = _wang_isola_reference()
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(50, 8, generator=g), torch.randn(50, 8, generator=g)
    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)
    for alpha in (1.0, 2.0):
        assert C.alignment(z1, z2, alpha).item() == pytest.approx(align_loss(u1, u2, alpha).item(), rel=1e-5)
    for t in (1.0, 2.0, 5.0):
        assert C.uniformity(z1, t).item() == pytest.approx(uniform_loss(u1, t).item(), rel=1e-4, abs=1e-5)
    # hand values: identical views align perfectly; antipodal views have ||u - v||^2 = 4
    assert C.alignment(z1, 3 * z1).item() == pytest.approx(0.0, abs=1e-6)
    assert C.alignment(z1, -z1).item() == pytest.approx(4.0, rel=1e-6)
    # two antipodal points: log exp(-t * 4) = -4t; collapsed points: log 1 = 0
    assert C.uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(-8.0, rel=1e-6)
    assert C.uniformity(torch.ones(10, 3)).item() == pytest.approx(0.0, abs=1e-6)
    # the 4 vertices of a square on the circle: 4 pairs at distance^2 2, 2 pairs at 4
    sq = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    assert C.uniformity(sq).item() == pytest.approx(math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6), rel=1e-6)


def test_alignment_uniformity_errors():
    with pytest.raises(ValueError, match="N >= 2"):
        C.uniformity(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="t=0"):
        C.uniformity(torch.randn(4, 3), t=0)
    with pytest.raises(ValueError, match="alpha=0"):
        C.alignment(torch.randn(4, 3), torch.randn(4, 3), alpha=0)


def _digit_like():
    """A fixed asymmetric test image (an 'L' stroke) in standardised units; shapes only."""
    x = torch.full((2, 1, 28, 28), -0.5)
    x[:, :, 6:22, 8:11] = 2.0
    x[:, :, 19:22, 8:20] = 2.0
    return x


def _warp(x, theta):
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return nn.functional.grid_sample(x, grid, align_corners=False)


def test_crop_rotate_matrix_identity_quarter_turn_and_central_crop():
    x = _digit_like()
    one, zero = torch.ones(2), torch.zeros(2)
    # identity: the image itself
    assert torch.allclose(_warp(x, C.crop_rotate_matrix(one, one, zero, zero, zero)), x, atol=1e-5)
    # a quarter turn is torch.rot90, pixel for pixel (pixel centres map to pixel centres)
    quarter = C.crop_rotate_matrix(one, one, zero, zero, torch.full((2,), math.pi / 2))
    turned = _warp(x, quarter)
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-4)
    assert not torch.allclose(turned, x, atol=1e-2)
    # a centred crop of a quarter of the area = the central 14x14 pixels upsampled 2x (bilinear)
    half = torch.full((2,), 0.5)
    zoom = _warp(x, C.crop_rotate_matrix(half, half, zero, zero, zero))
    ref = nn.functional.interpolate(x[:, :, 7:21, 7:21], size=(28, 28), mode="bilinear",
                                    align_corners=False)
    assert torch.allclose(zoom[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    # augment with no crop, rotation, shift or noise is the identity
    none = C.AugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), degrees=0, translate=0, noise_std=0)
    assert torch.allclose(C.augment(x, none, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_affine_matrices_encode_the_crop_area_and_ratio():
    cfg = C.AugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(1, 1), degrees=0, translate=0)
    theta = C.affine_matrices(100, cfg, torch.Generator().manual_seed(0))
    assert theta.shape == (100, 2, 3)
    det = torch.linalg.det(theta[:, :, :2])                   # area fraction of the crop
    assert torch.allclose(det, torch.full((100,), 0.25), atol=1e-6)
    assert torch.allclose(theta[:, 0, 0], torch.full((100,), 0.5), atol=1e-6)  # side sqrt(0.25)
    assert (theta[:, :, 2].abs() <= 0.5 + 1e-6).all()        # the crop stays inside the image
    rot = C.AugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), degrees=30, translate=0)
    theta = C.affine_matrices(500, rot, torch.Generator().manual_seed(0))
    angle = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    assert angle.abs().max() <= 30 + 1e-4 and angle.abs().max() > 25 and angle.min() < -25
    assert torch.allclose(torch.linalg.det(theta[:, :, :2]), torch.ones(500), atol=1e-5)  # pure rotation


def test_augment_is_seeded_changes_images_and_keeps_background():
    x = _digit_like()
    cfg = C.AugmentConfig()
    a = C.augment(x, cfg, torch.Generator().manual_seed(0))
    b = C.augment(x, cfg, torch.Generator().manual_seed(0))
    c = C.augment(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1]), "each image gets its own random transform"
    clean = C.augment(x, C.AugmentConfig(noise_std=0), torch.Generator().manual_seed(0))
    # out-of-image pixels take the background value, not 0
    assert clean.min().item() == pytest.approx(-0.5, abs=1e-5) and clean.max() <= 2.0 + 1e-5
    noisy = C.augment(x, C.AugmentConfig(noise_std=0.3), torch.Generator().manual_seed(0))
    assert (noisy - clean).std().item() == pytest.approx(0.3, rel=0.1)
    views = C.two_views(x, cfg, torch.Generator().manual_seed(0))
    assert views.shape == (2, 2, 1, 28, 28) and not torch.allclose(views[:, 0], views[:, 1])


def test_augment_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(28, 28\)"):
        C.augment(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="floating point"):
        C.augment(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"crop_scale=\(0, 1\)"):
        C.AugmentConfig(crop_scale=(0, 1))
    with pytest.raises(ValueError, match="degrees=200"):
        C.AugmentConfig(degrees=200)
    with pytest.raises(ValueError, match="noise_std=-1"):
        C.AugmentConfig(noise_std=-1)


def test_simclr_shapes_reuses_lenet_and_trains_without_labels():
    torch.manual_seed(0)
    model = C.SimCLR(C.SimCLRConfig(channels=(4, 8), hidden=16, proj_dim=8))
    x = _digit_like().repeat(8, 1, 1, 1) + 0.1 * torch.randn(16, 1, 28, 28)
    assert model.embed(x).shape == (16, 16)
    assert model(C.two_views(x, generator=torch.Generator().manual_seed(0))).shape == (16, 2, 8)
    assert isinstance(model.encoder[0][0], nn.Conv2d) and model.encoder[0][0].out_channels == 4
    with pytest.raises(ValueError, match=r"\(B, V, 1, 28, 28\)"):
        model(x)
    before = [p.detach().clone() for p in model.parameters()]
    hist = C.fit_simclr(model, x, config=TrainConfig(epochs=2, batch_size=8, lr=1e-3, progress=False),
                        device="cpu")
    assert len(hist.train_loss) == 2 and all(math.isfinite(v) for v in hist.train_loss)
    assert hist.train_acc == [None, None]                     # no labels: no accuracy
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="temperature"):
        C.SimCLRConfig(temperature=0)


def test_fit_simclr_is_deterministic():
    def run():
        torch.manual_seed(0)
        model = C.SimCLR(C.SimCLRConfig(channels=(2, 4), hidden=8, proj_dim=4))
        x = _digit_like().repeat(4, 1, 1, 1)
        C.fit_simclr(model, x, config=TrainConfig(epochs=1, batch_size=4, progress=False), seed=3,
                     device="cpu")
        return torch.cat([p.flatten() for p in model.parameters()])
    assert torch.equal(run(), run())


def test_linear_probe_matches_scikit_learn():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x = x + np.random.default_rng(0).normal(0, 0.01, x.shape)   # no constant columns
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    ours = probe.fit_logistic_regression(xtr, ytr, C=0.1, max_iter=500, device="cpu")
    scaler = StandardScaler().fit(xtr)
    ref = LogisticRegression(C=0.1, tol=1e-8, max_iter=5000).fit(scaler.transform(xtr), ytr)
    w = ours[1].weight.numpy()
    # softmax logits are defined up to a per-feature constant across classes: centre both
    w, wr = w - w.mean(0), ref.coef_ - ref.coef_.mean(0)
    assert np.abs(w - wr).max() < 1e-3 * np.abs(wr).max() + 1e-4
    pred = ours(torch.as_tensor(xte).float()).argmax(1).numpy()
    assert (pred == ref.predict(scaler.transform(xte))).mean() >= 0.99
    acc = probe.linear_probe(xtr, ytr, xte, yte, C=0.1, device="cpu")
    assert acc == pytest.approx((pred == yte).mean())
    with pytest.raises(ValueError, match="integers"):
        probe.fit_logistic_regression(xtr, ytr.astype(float))
    with pytest.raises(ValueError, match="C=0"):
        probe.fit_logistic_regression(xtr, ytr, C=0)


def test_knn_matches_scikit_learn_and_hand_case():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(4)
    centres = torch.randn(5, 6, generator=g)
    y = torch.arange(300) % 5
    x = centres[y] + 0.8 * torch.randn(300, 6, generator=g)
    xtr, ytr, xte = x[:200], y[:200], x[200:]
    for k in (1, 5, 15):
        ours = C.knn_predict(xtr, ytr, xte, k=k, device="cpu")
        ref = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(xtr.numpy(), ytr.numpy())
        assert (ours.numpy() == ref.predict(xte.numpy())).mean() >= 0.99
    # hand case: query along e1 has neighbours e1 (label 0) and e1+0.1 e2 (label 1), then e2 (label 1)
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    assert C.knn_predict(bank, labels, torch.tensor([[1.0, 0.0]]), k=1).item() == 0
    assert C.knn_predict(bank, labels, torch.tensor([[1.0, 0.0]]), k=2).item() == 0  # tie -> smallest
    assert C.knn_predict(bank, labels, torch.tensor([[1.0, 0.0]]), k=3).item() == 1
    assert C.knn_accuracy(bank, labels, bank, labels, k=1) == 1.0
    with pytest.raises(ValueError, match="k=4"):
        C.knn_predict(bank, labels, bank, k=4)


def test_train_embed_uses_embed_and_restores_mode():
    torch.manual_seed(0)
    model = C.SimCLR(C.SimCLRConfig(channels=(2, 4), hidden=8, proj_dim=4)).train()
    x = _digit_like()
    feats = train.embed(model, x, device="cpu", batch_size=1)
    assert feats.shape == (2, 8) and model.training
    assert torch.allclose(feats, model.eval().embed(x))


@pytest.mark.gpu
def test_augment_and_loss_on_cuda_match_cpu():
    x = _digit_like()
    cfg = C.AugmentConfig()
    cpu = C.augment(x, cfg, torch.Generator().manual_seed(0))
    gpu = C.augment(x.cuda(), cfg, torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    assert C.info_nce(z1.cuda(), z2.cuda()).item() == pytest.approx(C.info_nce(z1, z2).item(), rel=1e-4)
