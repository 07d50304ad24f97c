"""Autoencoders: learning a representation by reconstructing the input (chapter "Autoencoders").

An autoencoder is an encoder ``h = f(x)`` and a decoder ``x_hat = g(h)`` trained so that
``x_hat`` is close to ``x`` through a narrow code ``h``. With one linear layer each way and the
squared error it finds the principal subspace of PCA; with convolutions and non-linearities it
finds a better code at the same size; trained on corrupted inputs it learns to denoise; and its
encoder, trained without labels, is a starting point for a classifier fine-tuned on few labels.

What the notebook imports from here:

- :func:`images_to_unit` — uint8 images ``(N, H, W)`` to float ``(N, 1, H, W)`` in [0, 1];
- :class:`DenseAutoencoder`, :class:`ConvAutoencoder`, :func:`linear_autoencoder` — the models;
  ``encoder``/``decoder`` attributes, ``encode``/``decode`` methods; :func:`init_output_bias`;
- :func:`ae_objective` — ``1/2 ||X - W' s(WX + b) - b'||^2 + lam/2 (||W||^2 + ||W'||^2)``;
- :func:`bce`, :func:`bce_missing_parentheses` (the widely copied broken version),
  :func:`bernoulli_entropy` (the floor of BCE), :func:`sigmoid_mse_floor`;
- :func:`reconstruction_mse`, :func:`fit_pca` (the course's one PCA), :func:`pca_reconstruction`,
  :func:`fit_linear_autoencoder`,
  :func:`principal_angles` — the linear-autoencoder = PCA comparison;
- :func:`train_autoencoder`, :func:`add_noise` (denoising), :func:`interpolate`;
- :func:`pretrain_encoder`, :class:`EncoderClassifier` — pre-training and fine-tuning, reused by
  later chapters (k-means, contrastive learning); the codes come from
  :func:`course_lib.train.embed` (every model's ``embed`` is its representation: here the code)
  and small labelled sets from :func:`course_lib.data.per_class_subset`;
- :func:`keras_dense_autoencoder`, :func:`copy_weights_to_keras` — the same dense model in Keras.

References
----------
- Baldi, Hornik, "Neural networks and principal component analysis: learning from examples
  without local minima", Neural Networks 2(1), 1989 (linear autoencoder = PCA subspace).
- Bourlard, Kamp, "Auto-association by multilayer perceptrons and singular value decomposition",
  Biological Cybernetics 59, 1988.
- Hinton, Salakhutdinov, "Reducing the dimensionality of data with neural networks", Science 313,
  2006 (deep autoencoders beat PCA; pre-training).
- Vincent, Larochelle, Bengio, Manzagol, "Extracting and composing robust features with denoising
  autoencoders", ICML 2008.
- Erhan et al., "Why does unsupervised pre-training help deep learning?", JMLR 11, 2010.
- Goodfellow, Bengio, Courville, *Deep Learning*, MIT Press 2016, ch. 14 (autoencoders).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import train
from .cnn import images_to_tensor
from .device import get_device, seed_everything
from .quiet import import_keras

__all__ = ["images_to_unit", "DenseAutoencoder", "ConvAutoencoder", "linear_autoencoder", "init_output_bias",
           "ae_objective", "bce", "bce_missing_parentheses", "bernoulli_entropy",
           "sigmoid_mse_floor", "reconstruction_mse", "fit_pca", "pca_reconstruction", "fit_linear_autoencoder",
           "principal_angles", "train_autoencoder", "add_noise", "interpolate",
           "pretrain_encoder", "EncoderClassifier", "keras_dense_autoencoder",
           "copy_weights_to_keras"]

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, None: None}
_EPS = 1e-7   # probabilities are clipped to [eps, 1 - eps] before the log, as Keras does


# --------------------------------------------------------------------------- data
def images_to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, H, W)`` in 0..255 -> float32 ``(N, 1, H, W)`` in [0, 1].

    Autoencoders with a sigmoid output (and the BCE loss) need targets in [0, 1]: use this
    scaling, not the standardisation of :func:`course_lib.cnn.images_to_tensor`.

    Raises
    ------
    ValueError
        If the images are not 3-D or not uint8 (checked by :func:`course_lib.cnn.images_to_tensor`).
    """
    return images_to_tensor(images, mean=0.0, std=1.0)         # (N, H, W) -> (N, 1, H, W) in [0, 1]


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor; got {type(x).__name__}"
                         f"{' of dtype ' + str(x.dtype) if torch.is_tensor(x) else ''}. "
                         "Use images_to_unit() on uint8 images.")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1; got {tuple(x.shape)}.")


# --------------------------------------------------------------------------- models
def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation={name!r}; expected one of {list(_ACTIVATIONS)}.")
    return [_ACTIVATIONS[name]()] if _ACTIVATIONS[name] else []


class DenseAutoencoder(nn.Module):
    """Fully connected autoencoder ``D -> hidden... -> code -> ...hidden -> D``.

    Accepts inputs of any shape ``(B, ...)`` with ``prod(...) == in_dim`` (e.g. ``(B, 1, 28, 28)``
    or ``(B, 784)``), flattens them, and returns the reconstruction in the input's shape.

    Parameters
    ----------
    in_dim : int
        Number of input features (784 for 28x28 images).
    code_size : int
        Width of the code (the bottleneck).
    hidden : tuple of int
        Widths of the hidden layers of the encoder; the decoder mirrors them.
    activation : {"relu", "sigmoid", "tanh", None}
        Non-linearity after each hidden layer.
    code_activation : {"relu", "sigmoid", "tanh", None}
        Non-linearity on the code (``sigmoid`` gives the textbook ``h = s(Wx + b)``).
    output : {"sigmoid", None}
        ``"sigmoid"`` for pixels in [0, 1]; None for a linear output (PCA, standardised data).
    """

    def __init__(self, in_dim: int = 784, code_size: int = 32, hidden: tuple = (256,),
                 activation: str | None = "relu", code_activation: str | None = None,
                 output: str | None = "sigmoid"):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("code_size", code_size), *(("hidden", h) for h in hidden)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if output not in ("sigmoid", None):
            raise ValueError(f"output={output!r}; expected 'sigmoid' (pixels in [0, 1]) or None (linear).")
        self.in_dim, self.code_size, self.output = int(in_dim), int(code_size), output
        widths = [self.in_dim, *hidden]
        enc = []
        for a, b in zip(widths[:-1], widths[1:]):
            enc += [nn.Linear(a, b), *_activation(activation)]
        enc += [nn.Linear(widths[-1], self.code_size), *_activation(code_activation)]  # (B, D) -> (B, k)
        dec, back = [], [self.code_size, *reversed(hidden)]
        for a, b in zip(back[:-1], back[1:]):
            dec += [nn.Linear(a, b), *_activation(activation)]
        dec += [nn.Linear(back[-1], self.in_dim), *_activation(output)]           # (B, k) -> (B, D)
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.in_dim:
            raise ValueError(f"expected inputs with {self.in_dim} features per example; got shape "
                             f"{tuple(x.shape)} ({x[0].numel()} features).")
        return x.reshape(len(x), -1)                                               # (B, ...) -> (B, D)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, code_size)`` of inputs ``(B, ...)``."""
        return self.encoder(self._flat(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation later chapters reuse (:func:`course_lib.train.embed`): the code."""
        return self.encode(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Flat reconstructions ``(B, in_dim)`` of codes ``(B, code_size)``."""
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).reshape(x.shape)                        # (B, D) -> (B, ...)


def linear_autoencoder(in_dim: int, code_size: int) -> DenseAutoencoder:
    """``x_hat = W'(Wx + b) + b'``: no non-linearity anywhere; trained with the squared error it
    spans the same subspace as the first ``code_size`` principal components (Baldi & Hornik 1989)."""
    return DenseAutoencoder(in_dim, code_size, hidden=(), activation=None, code_activation=None,
                            output=None)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for 28x28 images.

    Encoder: conv 3x3 stride 2 (28 -> 14) -> ReLU -> conv 3x3 stride 2 (14 -> 7) -> ReLU ->
    flatten -> dense to the code. Decoder: the mirror image with transposed convolutions (7 -> 14
    -> 28) and a sigmoid output for pixels in [0, 1].

    Parameters
    ----------
    code_size : int
    channels : tuple of two ints
        Feature maps of the two stride-2 stages.
    in_channels : int
    output : {"sigmoid", None}
    """

    def __init__(self, code_size: int = 32, channels: tuple = (32, 64), in_channels: int = 1,
                 output: str | None = "sigmoid"):
        super().__init__()
        if not isinstance(code_size, (int, np.integer)) or code_size < 1:
            raise ValueError(f"code_size={code_size!r} must be a positive integer.")
        if len(channels) != 2 or any(not isinstance(c, (int, np.integer)) or c < 1 for c in channels):
            raise ValueError(f"channels={channels!r} must be two positive integers, e.g. (32, 64).")
        if output not in ("sigmoid", None):
            raise ValueError(f"output={output!r}; expected 'sigmoid' or None.")
        c1, c2 = channels
        self.code_size, self.in_channels, self.output = int(code_size), in_channels, output
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, stride=2, padding=1), nn.ReLU(),   # (B, 1, 28, 28) -> (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),            # -> (B, c2, 7, 7)
            nn.Flatten(),                                                    # -> (B, c2*49)
            nn.Linear(c2 * 7 * 7, self.code_size),                           # -> (B, k)
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.code_size, c2 * 7 * 7), nn.ReLU(),                # (B, k) -> (B, c2*49)
            nn.Unflatten(1, (c2, 7, 7)),                                     # -> (B, c2, 7, 7)
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # -> (B, c1, 14, 14)
            nn.ConvTranspose2d(c1, in_channels, 3, stride=2, padding=1, output_padding=1),    # -> (B, 1, 28, 28)
            *_activation(output),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, code_size)`` of images ``(B, 1, 28, 28)``."""
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, 28, 28):
            raise ValueError(f"expected images of shape (B, {self.in_channels}, 28, 28); got "
                             f"{tuple(x.shape)}. Use images_to_unit().")
        return self.encoder(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation later chapters reuse (:func:`course_lib.train.embed`): the code."""
        return self.encode(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 28, 28)`` decoded from codes ``(B, code_size)``."""
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@torch.no_grad()
def init_output_bias(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Start the decoder at the mean image: set the last layer's bias from the data, in place.

    With a sigmoid output the bias becomes ``logit(mean)``, else ``mean``: per pixel for
    :class:`DenseAutoencoder`, per channel for :class:`ConvAutoencoder`. An untrained decoder then
    outputs (roughly) the mean image instead of grey 0.5 everywhere, which skips the slow first
    phase where the network only learns the background ("initialise well", Karpathy's recipe).

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    _check_images(x)
    last = [m for m in model.decoder if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
    if isinstance(last, nn.Linear):
        mean = x.reshape(len(x), -1).float().mean(0)                          # (D,) per pixel
    else:
        mean = x.float().transpose(0, 1).reshape(x.shape[1], -1).mean(1)      # (C,) per channel
    if mean.shape != last.bias.shape:
        raise ValueError(f"data with {mean.numel()} means does not fit the output bias {tuple(last.bias.shape)}.")
    if getattr(model, "output", None) == "sigmoid":
        mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
    last.bias.copy_(mean.to(last.bias.device))
    return model


# --------------------------------------------------------------------------- objectives
def ae_objective(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, W_dec: torch.Tensor,
                 b_dec: torch.Tensor, lam: float = 0.0, activation=torch.sigmoid) -> torch.Tensor:
    """The one-hidden-layer objective with weight decay, summed over examples.

    ``L = 1/2 sum_i ||x_i - W' s(W x_i + b) - b'||^2 + lam/2 (||W||_F^2 + ||W'||_F^2)``

    Parameters
    ----------
    x : Tensor of shape (N, D)
        One example per row (the formula's ``X`` holds them as columns).
    W : (k, D), b : (k,), W_dec : (D, k), b_dec : (D,)
        Encoder and decoder weights, in ``nn.Linear`` layout (``out x in``).
    lam : float
        Weight-decay coefficient (biases are not decayed).
    activation : callable
        ``s``; ``torch.sigmoid`` by default, the identity for a linear autoencoder.

    Returns
    -------
    Tensor, scalar
    """
    if lam < 0:
        raise ValueError(f"lam={lam!r} must be >= 0.")
    if x.ndim != 2 or W.shape[1] != x.shape[1] or W_dec.shape != W.shape[::-1]:
        raise ValueError(f"shapes do not fit: x {tuple(x.shape)} must be (N, D), W {tuple(W.shape)} "
                         f"(k, D) and W_dec {tuple(W_dec.shape)} (D, k).")
    h = activation(x @ W.T + b)                       # (N, D) @ (D, k) -> (N, k)
    x_hat = h @ W_dec.T + b_dec                       # (N, k) @ (k, D) -> (N, D)
    return 0.5 * ((x - x_hat) ** 2).sum() + 0.5 * lam * ((W ** 2).sum() + (W_dec ** 2).sum())


def _check_pair(x_hat, x):
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape; got {tuple(x_hat.shape)} and {tuple(x.shape)}.")


def _log(p):
    # Clip *before* the log: log(0) = -inf would give a NaN gradient even behind a clamp
    # (d clamp * d log = 0 * inf). The clipped region has zero gradient, as in Keras.
    return torch.log(p.clamp(min=_EPS))


def bce(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy ``-mean[x log x_hat + (1 - x) log(1 - x_hat)]``.

    ``x_hat`` are probabilities (after a sigmoid), ``x`` targets in [0, 1]. Probabilities are
    clipped to ``[1e-7, 1 - 1e-7]`` as in Keras' ``binary_crossentropy``; inside that range the
    value equals PyTorch's ``binary_cross_entropy`` (which clamps the log at -100 instead).

    Raises
    ------
    ValueError
        If the shapes differ or the targets leave [0, 1] (BCE is then unbounded below).
    """
    _check_pair(x_hat, x)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"BCE needs targets in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. Scale "
                         "uint8 pixels with images_to_unit(), or use the squared error.")
    return -(x * _log(x_hat) + (1 - x) * _log(1 - x_hat)).mean()   # (B, ...) -> scalar


def bce_missing_parentheses(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The BROKEN binary cross-entropy copied from tutorial to tutorial (for the pitfall only).

    ``-mean(x log x_hat) + mean((1 - x) log(1 - x_hat))``: the minus sign covers only the first
    term because the parentheses around the sum are missing. The second term then *rewards*
    ``log(1 - x_hat) -> -inf``: the loss is unbounded below and is minimised by a white image.
    """
    _check_pair(x_hat, x)
    return -(x * _log(x_hat)).mean() + ((1 - x) * _log(1 - x_hat)).mean()


def bernoulli_entropy(x: torch.Tensor) -> torch.Tensor:
    """Mean entropy ``-mean[x log x + (1-x) log(1-x)]``: the smallest value BCE can take.

    BCE(x_hat, x) = entropy(x) + KL(x || x_hat), so BCE is 0 only for binary targets; on grey
    pixels its minimum, reached at ``x_hat = x``, is this floor (``0 log 0 = 0``).
    """
    x = x.double()
    terms = torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x)
    return -terms.mean().to(torch.float32)


def sigmoid_mse_floor(x: torch.Tensor) -> torch.Tensor:
    """The smallest mean squared error any output in [0, 1] (e.g. a sigmoid) can reach on ``x``:
    ``mean((x - clip(x, 0, 1))^2)``. Non-zero when the targets leave [0, 1] (unnormalised or
    standardised inputs)."""
    return ((x - x.clamp(0, 1)) ** 2).mean()


# --------------------------------------------------------------------------- evaluation and PCA
@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, device=None, batch_size: int = 1024) -> float:
    """Mean squared error per pixel ``mean((model(x) - x)^2)`` over a whole set ``(N, ...)``."""
    _check_images(x)
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        total += ((model(xb) - xb) ** 2).sum().item()
    model.train(was_training)
    return total / x.numel()


def _flat64(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else x
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)              # (N, ...) -> (N, D)


def fit_pca(x: torch.Tensor | np.ndarray, k: int, seed: int = 0):
    """PCA with ``k`` components fitted on ``x`` ``(N, ...)`` (flattened to ``(N, D)``, float64).

    The course's one PCA: the reconstruction baseline of this chapter, the 2-D views of codes and
    features, the PCA features clustered in the k-means chapter. Exact solver: the eigenvectors
    of the covariance when ``N >= D`` (much faster than an SVD of the data), else a full SVD.

    Returns
    -------
    sklearn.decomposition.PCA
        Fitted: ``components_`` of shape (k, D); ``transform`` maps ``(M, D)`` to ``(M, k)``.
    """
    from sklearn.decomposition import PCA

    xtr = _flat64(x)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= min(xtr.shape):
        raise ValueError(f"k={k!r} must be an integer in [1, {min(xtr.shape)}] (min of n_samples, n_features).")
    solver = "covariance_eigh" if xtr.shape[0] >= xtr.shape[1] else "full"
    return PCA(n_components=int(k), svd_solver=solver, random_state=seed).fit(xtr)


def pca_reconstruction(x_train: torch.Tensor | np.ndarray, x_test: torch.Tensor | np.ndarray,
                       k: int, seed: int = 0):
    """Fit PCA with ``k`` components on ``x_train`` and reconstruct ``x_test``.

    Parameters
    ----------
    x_train, x_test : arrays of shape (N, ...), flattened to (N, D)
    k : int

    Returns
    -------
    mse : float
        Mean squared error per pixel on ``x_test``.
    pca : sklearn.decomposition.PCA
        The fitted PCA (``components_`` of shape (k, D)).
    """
    pca, xte = fit_pca(x_train, k, seed), _flat64(x_test)
    rec = pca.inverse_transform(pca.transform(xte))                          # (N, D) -> (N, k) -> (N, D)
    return float(((rec - xte) ** 2).mean()), pca


def fit_linear_autoencoder(model: DenseAutoencoder, x: torch.Tensor, n_iter: int = 50,
                           method: str = "als", device=None) -> list[float]:
    """Train a :func:`linear_autoencoder` to convergence on all of ``x`` (full batch), in place.

    ``method="als"`` — alternating least squares on the autoencoder objective. Each half-step
    minimises the mean squared error exactly over one block of weights, so the error never
    increases:

    - decoder, given the encoder: regress ``x`` on the codes ``h = Wx + b``:
      ``W' = C W^T (W C W^T)^{-1}``, ``b' = mu - W'(W mu + b)``;
    - encoder, given the decoder: the best code of ``x`` is its least-squares coefficient on the
      columns of ``W'``: ``W = (W'^T W')^{-1} W'^T``, ``b = -W mu``;

    where ``mu`` is the mean and ``C`` the covariance of ``x``. Each step costs ``O(D^2 k)``,
    whatever the number of examples. ``method="lbfgs"`` — L-BFGS on the mean squared error of all
    of ``x`` (``O(N D k)`` per evaluation; fine for small sets).

    Parameters
    ----------
    model : DenseAutoencoder
        Built by :func:`linear_autoencoder`; its current weights are the starting point.
    x : Tensor of shape (N, ...)
    n_iter : int
        ALS iterations, or L-BFGS steps (of 20 inner iterations each).

    Returns
    -------
    list of float
        The training mean squared error (per pixel) after each iteration.
    """
    _check_images(x)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not isinstance(model, DenseAutoencoder) or len(linears) != 2 or len(model.encoder) != 1 \
            or len(model.decoder) != 1:
        raise ValueError("model must be a linear autoencoder (one Linear layer each way, no "
                         "activation); build it with linear_autoencoder(in_dim, code_size).")
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter={n_iter!r} must be a positive integer.")
    if method not in ("als", "lbfgs"):
        raise ValueError(f"method={method!r}; expected 'als' or 'lbfgs'.")
    device = get_device(device)
    model.to(device)
    if method == "lbfgs":
        return _fit_lbfgs(model, x.to(device), n_iter)
    enc, dec = model.encoder[0], model.decoder[0]
    X = x.reshape(len(x), -1).to(device, torch.float64)              # (N, ...) -> (N, D)
    mu = X.mean(0)                                                   # (D,)
    Xc = X - mu
    C = Xc.T @ Xc / len(X)                                           # (D, N) @ (N, D) -> (D, D)
    total = torch.trace(C)
    W = enc.weight.detach().to(torch.float64)                        # (k, D)
    losses = []
    for _ in range(n_iter):
        CWt = C @ W.T                                                # (D, D) @ (D, k) -> (D, k)
        V = torch.linalg.solve(W @ CWt, CWt.T).T                     # (D, k) = C W^T (W C W^T)^-1
        W = torch.linalg.solve(V.T @ V, V.T)                         # (k, D) = (V^T V)^-1 V^T
        # V W is now the orthogonal projector on span(V): error = (tr C - tr(V W C)) / D
        explained = (W @ C * V.T).sum()                              # tr(W C V)
        losses.append(float((total - explained) / X.shape[1]))
    with torch.no_grad():
        enc.weight.copy_(W)
        enc.bias.copy_(-(W @ mu))                                    # centred codes
        dec.weight.copy_(V)
        dec.bias.copy_(mu)
    return losses


def _fit_lbfgs(model, x, n_iter):
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20, history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), x)
        loss.backward()
        return loss

    return [float(opt.step(closure).detach()) for _ in range(n_iter)]


def principal_angles(basis_a, basis_b) -> np.ndarray:
    """Principal angles in degrees between the column spaces of ``(D, k)`` and ``(D, m)`` matrices,
    largest first (``scipy.linalg.subspace_angles``). 0 everywhere means the same subspace."""
    from scipy.linalg import subspace_angles

    a = np.asarray(basis_a.detach().cpu() if torch.is_tensor(basis_a) else basis_a, dtype=np.float64)
    b = np.asarray(basis_b.detach().cpu() if torch.is_tensor(basis_b) else basis_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"bases must be (D, k) and (D, m) with the same D; got {a.shape} and {b.shape}.")
    return np.degrees(subspace_angles(a, b))


# --------------------------------------------------------------------------- training
def add_noise(x: torch.Tensor, kind: str = "gaussian", level: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt a batch for a denoising autoencoder, on ``x``'s device.

    Parameters
    ----------
    x : Tensor of shape (B, ...), values in [0, 1]
    kind : {"gaussian", "masking"}
        ``gaussian``: add ``level * N(0, 1)`` and clip to [0, 1]; ``masking``: set a random
        fraction ``level`` of the pixels to 0 (Vincent et al. 2008).
    level : float
        Noise standard deviation, or the masked fraction (in [0, 1)).
    generator : torch.Generator, optional
        A CPU generator, for reproducible noise.
    """
    if kind not in ("gaussian", "masking"):
        raise ValueError(f"kind={kind!r}; expected 'gaussian' or 'masking'.")
    if not level >= 0 or (kind == "masking" and level >= 1):
        raise ValueError(f"level={level!r} must be >= 0 (and < 1 for masking).")
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        return (x + level * noise).clamp(0, 1)
    keep = (torch.rand(x.shape, generator=generator) >= level).to(x.device)
    return x * keep


def train_autoencoder(model: nn.Module, x: torch.Tensor, x_val: torch.Tensor | None = None, *,
                      loss: str | callable = "mse", config: train.TrainConfig | None = None,
                      noise: dict | None = None, device=None) -> train.History:
    """Train ``model`` to reconstruct ``x`` with :func:`course_lib.train.fit` (targets = inputs).

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, ...)`` to a reconstruction of the same shape.
    x, x_val : Tensor of shape (N, ...)
    loss : {"mse", "bce"} or callable ``loss(x_hat, x)``
    config : TrainConfig
    noise : dict, optional
        Keyword arguments of :func:`add_noise` (plus ``seed``): the *inputs* are corrupted, the
        targets stay clean — a denoising autoencoder.

    Returns
    -------
    History
    """
    _check_images(x)
    losses = {"mse": nn.functional.mse_loss, "bce": bce}
    if callable(loss):
        loss_fn = loss
    elif loss in losses:
        loss_fn = losses[loss]
    else:
        raise ValueError(f"loss={loss!r}; expected 'mse', 'bce' or a callable loss(x_hat, x).")
    transform = None
    if noise is not None:
        noise = dict(noise)
        gen = torch.Generator().manual_seed(noise.pop("seed", 0))
        transform = lambda xb: add_noise(xb, generator=gen, **noise)  # noqa: E731
    val = (x_val, x_val) if x_val is not None else None
    return train.fit(model, (x, x), val, loss_fn=loss_fn, config=config, device=device,
                     transform=transform)


@torch.no_grad()
def interpolate(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8,
                device=None) -> torch.Tensor:
    """Decode ``(1 - t) h_a + t h_b`` for ``t`` in ``linspace(0, 1, steps)``.

    Parameters
    ----------
    x_a, x_b : Tensor of shape (1, ...)
        Two inputs (e.g. two digits).

    Returns
    -------
    Tensor of shape (steps, ...)
        The decoded path from ``x_a`` to ``x_b``, on the CPU.
    """
    if steps < 2:
        raise ValueError(f"steps={steps!r} must be >= 2 (the two end points).")
    device = get_device(device)
    model.eval().to(device)
    h = model.encode(torch.cat([x_a, x_b]).to(device))                  # (2, k)
    t = torch.linspace(0, 1, steps, device=device)[:, None]             # (steps, 1)
    path = (1 - t) * h[0] + t * h[1]                                    # (steps, k)
    return model.decode(path).reshape(steps, *x_a.shape[1:]).cpu()     # (steps, D) -> (steps, ...)


# --------------------------------------------------------------------------- pre-training
def pretrain_encoder(images, code_size: int = 32, kind: str = "conv", epochs: int = 10,
                     device=None, seed: int = 0, **model_kwargs):
    """Train an autoencoder on unlabelled images and return it (``.encoder`` is the encoder).

    A one-call entry point for later chapters: ``ae = pretrain_encoder(x_uint8)`` then
    ``codes = train.embed(ae, images_to_unit(x_uint8))``.

    Parameters
    ----------
    images : uint8 array (N, 28, 28) or float tensor (N, 1, 28, 28) in [0, 1]
    code_size : int
    kind : {"conv", "dense"}
    epochs : int
    model_kwargs : passed to :class:`ConvAutoencoder` or :class:`DenseAutoencoder`.

    Returns
    -------
    ConvAutoencoder or DenseAutoencoder
        Trained, in eval mode; ``.history`` holds the training :class:`~course_lib.train.History`.
    """
    x = images if torch.is_tensor(images) and images.is_floating_point() else images_to_unit(images)
    if kind not in ("conv", "dense"):
        raise ValueError(f"kind={kind!r}; expected 'conv' or 'dense'.")
    seed_everything(seed)
    model = (ConvAutoencoder(code_size, **model_kwargs) if kind == "conv"
             else DenseAutoencoder(x[0].numel(), code_size, **model_kwargs))
    init_output_bias(model, x)
    cfg = train.TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, schedule="onecycle", seed=seed)
    model.history = train_autoencoder(model, x, config=cfg, device=device)
    return model.eval()


class EncoderClassifier(nn.Module):
    """An encoder followed by a linear head: ``logits = V encoder(x) + c``.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``(B, ...)`` to codes ``(B, code_size)`` — e.g. ``ConvAutoencoder(...).encoder``,
        pre-trained or freshly initialised (training from scratch).
    code_size : int
    n_classes : int
    freeze : bool
        Keep the encoder fixed (a linear probe) instead of fine-tuning it.
    """

    def __init__(self, encoder: nn.Module, code_size: int, n_classes: int = 10, freeze: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(code_size, n_classes)               # (B, k) -> (B, n_classes)
        for p in self.encoder.parameters():
            p.requires_grad_(not freeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


# --------------------------------------------------------------------------- Keras
def keras_dense_autoencoder(in_dim: int = 784, code_size: int = 32, hidden: tuple = (256,),
                            seed: int = 0):
    """The Keras twin of ``DenseAutoencoder(in_dim, code_size, hidden)`` (ReLU, sigmoid output).

    TensorFlow is imported here, lazily (it is slow to import and optional), through
    :func:`course_lib.quiet.import_keras` (TensorFlow backend unless ``KERAS_BACKEND`` says
    otherwise).

    Returns
    -------
    keras.Model
        Maps ``(B, in_dim)`` to ``(B, in_dim)``; not compiled.
    """
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(in_dim,))
    h = inputs
    for width in hidden:
        h = keras.layers.Dense(width, activation="relu")(h)
    code = keras.layers.Dense(code_size, name="code")(h)
    h = code
    for width in reversed(hidden):
        h = keras.layers.Dense(width, activation="relu")(h)
    outputs = keras.layers.Dense(in_dim, activation="sigmoid")(h)
    return keras.Model(inputs, outputs, name="dense_autoencoder")


def copy_weights_to_keras(torch_model: DenseAutoencoder, keras_model) -> None:
    """Copy a :class:`DenseAutoencoder`'s weights into its Keras twin.

    ``nn.Linear`` stores ``weight`` as ``(out, in)``; a Keras ``Dense`` kernel is ``(in, out)``:
    every weight is transposed.
    """
    linears = [m for m in torch_model.modules() if isinstance(m, nn.Linear)]
    dense = [layer for layer in keras_model.layers if layer.weights]
    if len(linears) != len(dense):
        raise ValueError(f"the models differ: {len(linears)} torch Linear layers vs {len(dense)} Keras Dense layers.")
    for lin, layer in zip(linears, dense):
        w = lin.weight.detach().cpu().numpy().T                          # (out, in) -> (in, out)
        if layer.kernel.shape != w.shape:
            raise ValueError(f"layer {layer.name}: Keras kernel {tuple(layer.kernel.shape)} vs torch {w.shape}.")
        layer.set_weights([w, lin.bias.detach().cpu().numpy()])
