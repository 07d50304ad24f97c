"""The autoencoder chapter's formulas and models, checked against PyTorch, scikit-learn PCA and Keras."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import autoencoder as ae
from course_lib import data, train
from course_lib.device import seed_everything


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits (real images), scaled to [0, 1]: (N, 1, 8, 8) float32."""
    split = data.load_digits()
    x = torch.tensor(split.x_train / 16.0, dtype=torch.float32)[:, None]
    xt = torch.tensor(split.x_test / 16.0, dtype=torch.float32)[:, None]
    return x, xt


@pytest.fixture(scope="module")
def mnist():
    """The 5,000 packaged MNIST digits (offline), first 2,000 for training, the next 1,000 to test."""
    split = data.load_mnist(full=False)
    x = ae.images_to_unit(split.x_train)
    return x[:2000], x[2000:3000]


# --------------------------------------------------------------------------- data and models
def test_images_to_unit_scaling_and_errors():
    imgs = np.zeros((2, 28, 28), dtype=np.uint8)
    imgs[0, 3, 4] = 255
    imgs[1, 0, 0] = 51
    x = ae.images_to_unit(imgs)
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 3, 4] == 1.0 and x[1, 0, 0, 0].item() == pytest.approx(0.2)
    assert x.min() == 0.0
    with pytest.raises(ValueError, match="uint8"):
        ae.images_to_unit(imgs / 255.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\).*\(28, 28\)"):
        ae.images_to_unit(imgs[0])


def test_dense_and_conv_shapes_and_output_range():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)  # shape check only
    dense = ae.DenseAutoencoder(784, 8, hidden=(32, 16))
    assert dense(x).shape == x.shape and dense(x.reshape(5, -1)).shape == (5, 784)
    assert dense.encode(x).shape == (5, 8) and dense.decode(dense.encode(x)).shape == (5, 784)
    assert [m.out_features for m in dense.modules() if isinstance(m, nn.Linear)] == [32, 16, 8, 16, 32, 784]
    out = dense(x)
    assert out.min() >= 0 and out.max() <= 1
    conv = ae.ConvAutoencoder(12, channels=(4, 8))
    assert conv.encode(x).shape == (5, 12) and conv(x).shape == x.shape
    assert 0 <= conv(x).min() and conv(x).max() <= 1
    lin = ae.linear_autoencoder(784, 3)
    assert len(lin.encoder) == 1 and len(lin.decoder) == 1 and (lin(x) < 0).any()  # no activation


def test_init_output_bias_starts_at_the_mean_image(digits):
    x = digits[0]                                                          # (N, 1, 8, 8) in [0, 1]
    dense = ae.DenseAutoencoder(64, 4, hidden=(8,))
    ae.init_output_bias(dense, x)
    with torch.no_grad():
        dense.decoder[-2].weight.zero_()                                   # isolate the bias
        out = dense(x[:1]).reshape(-1)
    assert torch.allclose(out, x.reshape(len(x), -1).mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-5)
    lin = ae.init_output_bias(ae.linear_autoencoder(64, 4), x)             # linear output: the mean
    assert torch.allclose(lin.decoder[0].bias, x.reshape(len(x), -1).mean(0))
    conv = ae.ConvAutoencoder(4, (2, 2))
    imgs = torch.full((3, 1, 28, 28), 0.25)
    ae.init_output_bias(conv, imgs)
    assert conv.decoder[-2].bias.item() == pytest.approx(math.log(0.25 / 0.75), rel=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        ae.init_output_bias(dense, imgs)


@pytest.mark.parametrize("make,match", [
    (lambda: ae.DenseAutoencoder(784, 0), "code_size=0"),
    (lambda: ae.DenseAutoencoder(784, 8, hidden=(16, -1)), "hidden=-1"),
    (lambda: ae.DenseAutoencoder(784, 8, activation="gelu"), "activation='gelu'"),
    (lambda: ae.DenseAutoencoder(784, 8, output="softmax"), "output='softmax'"),
    (lambda: ae.ConvAutoencoder(8, channels=(4,)), r"channels=\(4,\)"),
    (lambda: ae.ConvAutoencoder(2.5), "code_size=2.5"),
])
def test_model_errors_quote_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_forward_shape_errors():
    with pytest.raises(ValueError, match="784 features.*100 features"):
        ae.DenseAutoencoder(784, 8)(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(2, 28, 28\)"):
        ae.ConvAutoencoder(8, (4, 8))(torch.zeros(2, 28, 28))


# --------------------------------------------------------------------------- objectives
def test_ae_objective_hand_computed_toy_case():
    # D=2, k=1, identity activation: x=(1,2), W=(1,0), b=0 -> h=1; W'=(1,1)^T, b'=0 -> x_hat=(1,1)
    x = torch.tensor([[1.0, 2.0]])
    W, b = torch.tensor([[1.0, 0.0]]), torch.zeros(1)
    W_dec, b_dec = torch.tensor([[1.0], [1.0]]), torch.zeros(2)
    ident = lambda t: t  # noqa: E731
    # 1/2 * ||(0, 1)||^2 = 0.5; decay: lam/2 * (1 + 2) with lam=0.2 -> 0.3
    assert ae.ae_objective(x, W, b, W_dec, b_dec, lam=0.0, activation=ident).item() == pytest.approx(0.5)
    assert ae.ae_objective(x, W, b, W_dec, b_dec, lam=0.2, activation=ident).item() == pytest.approx(0.8)
    # sigmoid: h = s(1); x_hat = (s(1), s(1))
    s1 = 1 / (1 + math.exp(-1))
    expected = 0.5 * ((1 - s1) ** 2 + (2 - s1) ** 2)
    assert ae.ae_objective(x, W, b, W_dec, b_dec).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="lam=-1"):
        ae.ae_objective(x, W, b, W_dec, b_dec, lam=-1)
    with pytest.raises(ValueError, match="shapes do not fit"):
        ae.ae_objective(x, W, b, W_dec.T, b_dec)


def test_ae_objective_matches_the_model_and_sgd_weight_decay(digits):
    x = digits[0][:100].reshape(100, -1)                                   # (100, 64) real images
    torch.manual_seed(0)
    model = ae.DenseAutoencoder(64, 6, hidden=(), code_activation="sigmoid", output=None)
    enc, dec = model.encoder[0], model.decoder[0]
    lam = 0.05
    obj = ae.ae_objective(x, enc.weight, enc.bias, dec.weight, dec.bias, lam=lam)
    by_model = 0.5 * ((model(x) - x) ** 2).sum() + lam / 2 * (enc.weight.pow(2).sum() + dec.weight.pow(2).sum())
    assert torch.allclose(obj, by_model, rtol=1e-6)
    # one SGD step on the objective == one SGD step on the plain error with weight_decay=lam on W, W'
    twin = ae.DenseAutoencoder(64, 6, hidden=(), code_activation="sigmoid", output=None)
    twin.load_state_dict(model.state_dict())
    opt_a = torch.optim.SGD(model.parameters(), lr=1e-3)
    ae.ae_objective(x, enc.weight, enc.bias, dec.weight, dec.bias, lam=lam).backward()
    opt_a.step()
    weights = [twin.encoder[0].weight, twin.decoder[0].weight]
    biases = [twin.encoder[0].bias, twin.decoder[0].bias]
    opt_b = torch.optim.SGD([{"params": weights, "weight_decay": lam}, {"params": biases}], lr=1e-3)
    (0.5 * ((twin(x) - x) ** 2).sum()).backward()
    opt_b.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_bce_matches_torch_floor_and_gradients():
    g = torch.Generator().manual_seed(0)
    p, x = torch.rand(32, 50, generator=g), torch.rand(32, 50, generator=g)
    assert torch.allclose(ae.bce(p, x), nn.functional.binary_cross_entropy(p, x), atol=1e-6)
    edge_p, edge_x = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0])
    assert ae.bce(edge_p, edge_x).item() == pytest.approx(-2 * math.log(1e-7) / 3, rel=1e-4)  # clipped, like Keras
    # a saturated sigmoid gives a finite loss and a finite (zero) gradient, never NaN
    sat = torch.tensor([1.0, 0.0], requires_grad=True)
    for fn in (ae.bce, ae.bce_missing_parentheses):
        g, = torch.autograd.grad(fn(sat, torch.tensor([0.2, 0.7])), sat)
        assert torch.isfinite(g).all()
    # the floor: BCE(x, x) = entropy(x); log 2 for grey pixels, 0 for binary ones
    assert ae.bernoulli_entropy(torch.full((4,), 0.5)).item() == pytest.approx(math.log(2))
    assert ae.bernoulli_entropy(torch.tensor([0.0, 1.0])).item() == 0.0
    assert ae.bce(x, x).item() == pytest.approx(ae.bernoulli_entropy(x).item(), rel=1e-5)
    assert (ae.bce(p, x) >= ae.bernoulli_entropy(x)).item()
    # gradients w.r.t. the logit: BCE -> sigmoid(z) - x; 1/2 squared error -> (x_hat - x) x_hat (1 - x_hat)
    z = torch.linspace(-8, 8, 9, requires_grad=True)
    t = torch.linspace(0, 1, 9)
    s = torch.sigmoid(z)
    g_bce, = torch.autograd.grad(ae.bce(s, t) * len(t), z)
    assert torch.allclose(g_bce, (s - t).detach(), atol=1e-6)
    g_mse, = torch.autograd.grad(0.5 * ((torch.sigmoid(z) - t) ** 2).sum(), z)
    sd = s.detach()
    assert torch.allclose(g_mse, (sd - t) * sd * (1 - sd), atol=1e-7)


def test_bce_errors():
    with pytest.raises(ValueError, match=r"targets in \[0, 1\].*\[-0.5, 1\]"):
        ae.bce(torch.full((2,), 0.5), torch.tensor([-0.5, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        ae.bce(torch.full((2,), 0.5), torch.zeros(3))


def test_broken_bce_is_unbounded_below_and_prefers_white():
    x = torch.tensor([0.0, 0.0, 0.5, 1.0])  # mostly dark, as digits are
    white = torch.full((4,), 1 - 1e-7)
    exact = x.clone()
    # hand-computed at x_hat = x: -(0.5 log 0.5)/4 + (0.5 log 0.5)/4 = 0 (0 * log 0 -> 0 * log 1e-7 = 0)
    assert ae.bce_missing_parentheses(exact, x).item() == pytest.approx(0.0, abs=1e-7)
    # at x_hat = 0.5 everywhere: -(1.5 log 0.5)/4 + (2.5 log 0.5)/4 = log(0.5)/4
    assert ae.bce_missing_parentheses(torch.full((4,), 0.5), x).item() == pytest.approx(math.log(0.5) / 4)
    assert ae.bce_missing_parentheses(white, x).item() < -3      # negative: impossible for a real BCE
    assert ae.bce_missing_parentheses(white, x) < ae.bce_missing_parentheses(exact, x)
    assert ae.bce(white, x) > ae.bce(exact, x)


def test_sigmoid_mse_floor():
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0])
    assert ae.sigmoid_mse_floor(x).item() == pytest.approx((1 + 4) / 5)
    assert ae.sigmoid_mse_floor(torch.rand(100)).item() == 0.0


# --------------------------------------------------------------------------- linear autoencoder = PCA
def test_pca_reconstruction_matches_a_hand_computed_case_and_sklearn():
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])   # variances 1 and 0.25
    mse, pca = ae.pca_reconstruction(pts, pts, 1)
    assert mse == pytest.approx(0.25 / 2)                              # dropped variance / D
    assert np.allclose(np.abs(pca.components_), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="k=0"):
        ae.pca_reconstruction(pts, pts, 0)


@pytest.mark.parametrize("method,n_iter", [("als", 200), pytest.param("lbfgs", 40, marks=pytest.mark.slow)])
def test_linear_autoencoder_reaches_pca_on_real_digits(digits, method, n_iter):
    """Baldi & Hornik: trained to convergence, a linear AE spans PCA's principal subspace."""
    x, xt = digits
    k = 8
    pca_test, pca = ae.pca_reconstruction(x, xt, k)
    pca_train, _ = ae.pca_reconstruction(x, x, k)
    seed_everything(0)
    lin = ae.linear_autoencoder(64, k)
    before = ae.reconstruction_mse(lin, x)
    losses = ae.fit_linear_autoencoder(lin, x, n_iter=n_iter, method=method)
    train_mse, test_mse = ae.reconstruction_mse(lin, x), ae.reconstruction_mse(lin, xt)
    assert before > 2 * pca_train                                     # it had something to learn
    assert losses[-1] == pytest.approx(train_mse, rel=1e-4)           # the reported curve is the error
    assert train_mse >= pca_train * (1 - 1e-6)                        # PCA is optimal on its own data
    assert train_mse / pca_train <= 1.02 and test_mse / pca_test <= 1.02
    angles = ae.principal_angles(lin.decoder[0].weight, pca.components_.T)
    assert angles.shape == (k,) and angles.max() < 5.0                # degrees
    if method == "als":                                               # exact block minimisation
        assert all(b <= a * (1 + 1e-9) for a, b in zip(losses, losses[1:]))
        assert train_mse / pca_train <= 1 + 1e-4 and angles.max() < 1.0


@pytest.mark.slow
def test_linear_autoencoder_reaches_pca_on_mnist(mnist):
    x, xt = mnist
    pca_test, pca = ae.pca_reconstruction(x, xt, 16)
    seed_everything(0)
    lin = ae.linear_autoencoder(784, 16)
    ae.fit_linear_autoencoder(lin, x, n_iter=100)
    assert ae.reconstruction_mse(lin, xt) / pca_test <= 1.02
    assert np.median(ae.principal_angles(lin.decoder[0].weight, pca.components_.T)) < 1.0


def test_fit_linear_autoencoder_and_principal_angles_errors(digits):
    x = digits[0]
    with pytest.raises(ValueError, match="linear autoencoder"):
        ae.fit_linear_autoencoder(ae.DenseAutoencoder(64, 4), x)
    with pytest.raises(ValueError, match="n_iter=0"):
        ae.fit_linear_autoencoder(ae.linear_autoencoder(64, 4), x, n_iter=0)
    with pytest.raises(ValueError, match="method='sgd'"):
        ae.fit_linear_autoencoder(ae.linear_autoencoder(64, 4), x, method="sgd")
    with pytest.raises(ValueError, match="float tensor"):
        ae.fit_linear_autoencoder(ae.linear_autoencoder(64, 4), (x * 16).to(torch.uint8))
    assert np.allclose(ae.principal_angles(np.eye(3)[:, :2], np.eye(3)[:, [1, 0]]), 0)
    assert ae.principal_angles(np.eye(3)[:, :1], np.eye(3)[:, 1:2])[0] == pytest.approx(90)
    with pytest.raises(ValueError, match="same D"):
        ae.principal_angles(np.eye(3), np.eye(4))


# --------------------------------------------------------------------------- training, noise, codes
def test_conv_autoencoder_training_is_deterministic(mnist):
    x, _ = mnist
    cfg = train.TrainConfig(epochs=1, batch_size=32, lr=3e-3, schedule="onecycle", progress=False)
    runs = []
    for seed in (0, 0, 1):
        seed_everything(seed)
        model = ae.init_output_bias(ae.ConvAutoencoder(32, (4, 8)), x[:256])
        runs.append(ae.train_autoencoder(model, x[:256], config=cfg).step_loss)
    assert runs[0] == runs[1]                                          # same seed, same losses
    assert runs[0] != runs[2]                                          # another seed, other losses
    with pytest.raises(ValueError, match="loss='l1'"):
        ae.train_autoencoder(model, x[:256], loss="l1", config=cfg)


@pytest.mark.slow
def test_conv_autoencoder_beats_pca(mnist):
    x, xt = mnist
    cfg = train.TrainConfig(epochs=4, batch_size=32, lr=3e-3, schedule="onecycle", progress=False)
    seed_everything(0)
    model = ae.init_output_bias(ae.ConvAutoencoder(32, (16, 32)), x)
    hist = ae.train_autoencoder(model, x, config=cfg)
    assert hist.train_loss[-1] < hist.train_loss[0]
    conv_mse = ae.reconstruction_mse(model, xt)
    pca_mse, _ = ae.pca_reconstruction(x, xt, 32)
    assert conv_mse < pca_mse                                          # even after 4 short epochs


def test_add_noise_kinds_and_seed():
    x = torch.full((4, 1, 28, 28), 0.5)
    a = ae.add_noise(x, "gaussian", 0.3, torch.Generator().manual_seed(1))
    b = ae.add_noise(x, "gaussian", 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert (a - x).std().item() == pytest.approx(0.3, rel=0.1)
    m = ae.add_noise(x, "masking", 0.25, torch.Generator().manual_seed(0))
    assert set(m.unique().tolist()) == {0.0, 0.5}
    assert (m == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="kind='salt'"):
        ae.add_noise(x, "salt")
    with pytest.raises(ValueError, match="level=1.0"):
        ae.add_noise(x, "masking", 1.0)


def test_denoising_training_corrupts_inputs_but_not_targets(digits):
    x = digits[0][:64]
    seen = {}

    def loss(x_hat, target):
        seen["target"] = target
        return nn.functional.mse_loss(x_hat, target)

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, inp):
            seen["input"] = inp
            return inp + self.p

    cfg = train.TrainConfig(epochs=1, batch_size=64, progress=False)
    ae.train_autoencoder(Spy(), x, loss=loss, noise=dict(kind="masking", level=0.5), config=cfg)
    assert not torch.equal(seen["input"], seen["target"])
    assert torch.equal(seen["target"].sort(0).values, x.sort(0).values)     # clean targets (shuffled)


def test_interpolate_end_points_and_embed():
    torch.manual_seed(0)
    model = ae.DenseAutoencoder(64, 4, hidden=(16,)).eval()
    xa, xb = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)  # shape/identity check only
    path = ae.interpolate(model, xa, xb, steps=5)
    assert path.shape == (5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(path[0], model(xa)[0], atol=1e-6) and torch.allclose(path[-1], model(xb)[0], atol=1e-6)
    with pytest.raises(ValueError, match="steps=1"):
        ae.interpolate(model, xa, xb, steps=1)
    codes = train.embed(model, torch.cat([xa, xb]))                 # model.embed: the code
    assert codes.shape == (2, 4)
    assert torch.allclose(codes, train.embed(model.encoder, torch.cat([xa, xb]).reshape(2, -1)))


def test_encoder_classifier_freeze_and_pretrain_encoder(digits):
    x = digits[0][:200]
    model = ae.pretrain_encoder(x, code_size=6, kind="dense", epochs=2, hidden=(32,))
    assert not model.training and len(model.history.epoch) == 2
    clf = ae.EncoderClassifier(model.encoder, 6, 10, freeze=True)
    trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    xs = x.reshape(200, -1)
    assert clf(xs).shape == (200, 10)
    before = [p.clone() for p in clf.encoder.parameters()]
    y = torch.as_tensor(data.load_digits().y_train[:200])
    train.fit(clf, (xs, y), config=train.TrainConfig(epochs=2, batch_size=50, progress=False))
    assert all(torch.equal(a, b) for a, b in zip(before, clf.encoder.parameters()))
    with pytest.raises(ValueError, match="kind='vae'"):
        ae.pretrain_encoder(x, kind="vae")


# --------------------------------------------------------------------------- Keras parity
@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("tensorflow")
    ae.keras_dense_autoencoder(16, 2, hidden=(4,))     # sets KERAS_BACKEND before the import
    import keras as k
    return k


@pytest.mark.slow
def test_keras_twin_computes_the_same_function(keras, digits):
    x = digits[1].reshape(len(digits[1]), -1)                     # (N, 64) real test digits
    torch.manual_seed(0)
    model = ae.DenseAutoencoder(64, 8, hidden=(32,))
    twin = ae.keras_dense_autoencoder(64, 8, hidden=(32,))
    assert twin.count_params() == sum(p.numel() for p in model.parameters())
    ae.copy_weights_to_keras(model, twin)
    out = twin.predict(x.numpy(), verbose=0)
    assert np.abs(out - train.predict(model, x).numpy()).max() < 1e-5
    g = torch.Generator().manual_seed(1)
    p = 0.01 + 0.98 * torch.rand(8, 64, generator=g)      # away from the edges, where Keras also
    t = torch.rand(8, 64, generator=g)                     # adds its epsilon inside the log
    assert np.isclose(float(keras.ops.mean(keras.losses.binary_crossentropy(t.numpy(), p.numpy()))),
                      ae.bce(p, t).item(), rtol=1e-5)
    with pytest.raises(ValueError, match="torch Linear layers"):
        ae.copy_weights_to_keras(ae.DenseAutoencoder(64, 8, hidden=(32, 16)), twin)


@pytest.mark.slow                        # trains the same model in Keras and in PyTorch
def test_keras_and_pytorch_reach_comparable_error(keras, mnist):
    x, xt = mnist
    flat, flat_t = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    epochs, batch = 10, 32
    seed_everything(0)
    model = ae.DenseAutoencoder(784, 32, hidden=(128,))
    ae.train_autoencoder(model, flat, config=train.TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3,
                                                                progress=False))
    torch_mse = ae.reconstruction_mse(model, flat_t)
    seed_everything(0)
    twin = ae.keras_dense_autoencoder(784, 32, hidden=(128,), seed=0)
    ae.copy_weights_to_keras(ae.DenseAutoencoder(784, 32, hidden=(128,)), twin)   # same start
    twin.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mse")
    twin.fit(flat.numpy(), flat.numpy(), epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
    keras_mse = float(twin.evaluate(flat_t.numpy(), flat_t.numpy(), verbose=0))
    mean_only = ((flat_t - flat.mean(0)) ** 2).mean().item()      # predicting the mean image
    assert torch_mse < 0.7 * mean_only and keras_mse < 0.7 * mean_only   # both learned something
    print(f"mean image {mean_only:.4f} | PyTorch {torch_mse:.4f} | Keras {keras_mse:.4f}")
    assert 0.8 <= keras_mse / torch_mse <= 1.25, (keras_mse, torch_mse)


def test_fit_pca_is_the_one_pca_and_matches_an_svd(digits):
    x = digits[0]                                                           # (N, 1, 8, 8) tensor
    flat = x.numpy().astype(np.float64).reshape(len(x), -1)
    pca = ae.fit_pca(x, 5)
    v = np.linalg.svd(flat - flat.mean(0), full_matrices=False)[2][:5]       # (5, D)
    assert np.allclose(np.abs(pca.components_ @ v.T), np.eye(5), atol=1e-6)  # same axes, up to sign
    mse, fitted = ae.pca_reconstruction(x, x, 5)
    assert np.allclose(fitted.components_, pca.components_)
    for bad in (0, 10**6, 2.5):
        with pytest.raises(ValueError, match=f"k={bad!r}"):
            ae.fit_pca(x, bad)
