"""The CNN chapter's formulas and model, checked against PyTorch."""
import numpy as np
import pytest
import torch
from torch import nn

from course_lib import cnn


@pytest.mark.parametrize("n,k,s,p,d", [(28, 3, 1, 0, 1), (28, 5, 1, 2, 1), (28, 2, 2, 0, 1),
                                       (7, 3, 2, 1, 1), (32, 3, 2, 1, 2), (15, 4, 3, 0, 1),
                                       (5, 5, 1, 0, 1), (9, 2, 4, 3, 3)])
def test_conv_output_size_matches_conv2d_and_maxpool(n, k, s, p, d):
    x = torch.zeros(1, 1, n, n)
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    assert cnn.conv_output_size(n, k, s, p, d) == conv(x).shape[-1]
    if p <= k // 2:  # max-pool only allows padding up to half the kernel
        pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d)
        assert cnn.conv_output_size(n, k, s, p, d) == pool(x).shape[-1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0, kernel=3), "n=0"), (dict(n=28, kernel=0), "kernel=0"),
    (dict(n=28, kernel=3, stride=0), "stride=0"), (dict(n=28, kernel=3, padding=-1), "padding=-1"),
    (dict(n=3, kernel=5), "does not fit"), (dict(n=28.0, kernel=3), "n=28.0")])
def test_conv_output_size_errors_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cnn.conv_output_size(**kwargs)


def test_cross_entropy_from_logits_matches_torch_and_is_stable():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g) * 5
    y = torch.randint(0, 10, (64,), generator=g)
    assert torch.allclose(cnn.cross_entropy_from_logits(z, y), nn.functional.cross_entropy(z, y), atol=1e-6)
    big = torch.tensor([[1000.0, 0.0, -1000.0]])
    assert cnn.cross_entropy_from_logits(big, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)
    assert cnn.cross_entropy_from_logits(big, torch.tensor([1])).item() == pytest.approx(1000.0)
    # hand-computed: uniform logits over C classes give log C
    assert cnn.cross_entropy_from_logits(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item() == pytest.approx(np.log(4))


def test_cross_entropy_from_logits_errors():
    with pytest.raises(ValueError, match=r"shape \(B, C\)"):
        cnn.cross_entropy_from_logits(torch.zeros(10), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class indices"):
        cnn.cross_entropy_from_logits(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cnn.cross_entropy_from_logits(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_lenet_shapes_logits_and_embed():
    torch.manual_seed(0)
    model = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16)).eval()
    x = torch.randn(5, 1, 28, 28)  # shape check only: no data is learned from this
    out = model(x)
    assert out.shape == (5, 10)
    assert (out < 0).any(), "LeNet must return raw logits (negative values allowed), not ReLU'd scores"
    assert model.embed(x).shape == (5, 16)
    assert model.feature_dim == 8 * 7 * 7
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(5, 28, 28\)"):
        model(x[:, 0])


def test_images_to_tensor_scaling_and_errors():
    imgs = np.zeros((3, 28, 28), dtype=np.uint8)
    imgs[:, 0, 0] = 255
    t = cnn.images_to_tensor(imgs)
    assert t.shape == (3, 1, 28, 28) and t.dtype == torch.float32
    assert t[0, 0, 0, 0].item() == pytest.approx((1 - cnn.MNIST_MEAN) / cnn.MNIST_STD)
    assert t[0, 0, 1, 1].item() == pytest.approx(-cnn.MNIST_MEAN / cnn.MNIST_STD)
    ro = imgs.copy()
    ro.setflags(write=False)
    cnn.images_to_tensor(ro)  # read-only arrays (e.g. from np.frombuffer) are accepted
    with pytest.raises(ValueError, match="uint8"):
        cnn.images_to_tensor(imgs.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        cnn.images_to_tensor(imgs[0])


def test_random_shift_moves_content_within_bounds_and_is_seeded():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = cnn.random_shift(x, 2, g1), cnn.random_shift(x, 2, g2)
    assert torch.equal(a, b)
    assert a.shape == x.shape
    assert torch.allclose(a.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing falls off the edge
    rows = a[:, 0].sum(2).argmax(1)  # first row of the square in each shifted image
    assert set(rows.tolist()) <= set(range(8, 13)) and len(set(rows.tolist())) > 1
    assert torch.equal(cnn.random_shift(x, 0), x)


def test_random_flip_mirrors_about_p_of_the_images_and_is_seeded():
    x = torch.arange(28.0).expand(400, 1, 28, 28).clone()        # each row reads 0..27
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = cnn.random_flip(x, 0.5, g1), cnn.random_flip(x, 0.5, g2)
    assert torch.equal(a, b) and a.shape == x.shape
    mirrored = a[:, 0, 0, 0] == 27                                # first pixel now the last
    assert torch.equal(a[mirrored], x[mirrored].flip(-1))
    assert torch.equal(a[~mirrored], x[~mirrored])
    assert 0.4 < mirrored.float().mean() < 0.6
    assert torch.equal(cnn.random_flip(x, 0.0), x)
    assert torch.equal(cnn.random_flip(x, 1.0), x.flip(-1))
    with pytest.raises(ValueError, match=r"p=1.5"):
        cnn.random_flip(x, 1.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        cnn.random_flip(x[0])


def test_random_erase_blanks_one_rectangle_of_the_stated_size_and_is_seeded():
    x = torch.ones(2000, 1, 28, 28)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = cnn.random_erase(x, 0.5, generator=g1), cnn.random_erase(x, 0.5, generator=g2)
    assert torch.equal(a, b) and a.shape == x.shape
    erased = a == 0                                                # (B, 1, 28, 28)
    hit = erased.flatten(1).any(1)
    assert 0.45 < hit.float().mean() < 0.55
    for img in erased[hit][:200, 0]:                               # one solid rectangle each
        rows, cols = img.any(1).nonzero().squeeze(1), img.any(0).nonzero().squeeze(1)
        h, w = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert int(img.sum()) == h * w                             # filled: a rectangle, no holes
        assert 0.3 / 2 <= h / w <= 3.3 * 2                         # rounding at small sizes
        assert 0.02 * 784 / 2 <= h * w <= 0.4 * 784 * 1.3
    fraction = erased[hit].flatten(1).float().mean(1)
    assert 0.15 < float(fraction.mean()) < 0.25                    # uniform on [0.02, 0.4]: 0.21
    assert torch.equal(cnn.random_erase(x, 0.0), x)
    assert (cnn.random_erase(x, 1.0, value=-1.0) == -1).flatten(1).any(1).all()
    for bad, match in [(dict(p=2.0), r"p=2.0"), (dict(scale=(0.5, 0.1)), r"scale=\(0.5, 0.1\)"),
                       (dict(ratio=(0, 1)), r"ratio=\(0, 1\)")]:
        with pytest.raises(ValueError, match=match):
            cnn.random_erase(x, **bad)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        cnn.random_erase(x[0])


def test_batch_norm_lenet_normalises_each_channel_in_training():
    torch.manual_seed(0)
    plain = cnn.LeNet(cnn.LeNetConfig(channels=(8, 16)))
    model = cnn.LeNet(cnn.LeNetConfig(channels=(8, 16), batch_norm=True))
    norms = [m for m in model.features if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [n.num_features for n in norms] == [8, 16]
    assert all(c.bias is None for c in convs)                     # BN's shift replaces the bias
    x = torch.randn(32, 1, 28, 28) * 5 + 3
    model.train()
    z = model.features[1](model.features[0](x))                   # conv1 -> BN: (32, 8, 28, 28)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.var(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    assert model(x).shape == plain(x).shape == (32, 10)
    assert model.blocks()[0] is convs[0] and len(model.blocks()) == 3
