"""Contrastive learning with the InfoNCE / NT-Xent loss (SimCLR): the chapter "Contrastive learning".

One concept: learn a representation without labels by making two augmented *views* of the same
image agree, and views of different images disagree. What the chapter teaches, as code:

- :func:`info_nce` — the NT-Xent loss of SimCLR, batched over the ``2N`` views of ``N`` images:
  for view ``i`` with positive ``p(i)``,
  ``l_i = -log( exp(s_{i,p(i)}/tau) / sum_{k != i} exp(s_{i,k}/tau) )``, ``s`` the cosine similarity;
- :func:`alignment` and :func:`uniformity` — the two properties of an embedding that the loss
  optimises (Wang & Isola 2020);
- :func:`augment` / :class:`AugmentConfig` — digit augmentations in plain torch (random resized
  crop, rotation, translation, Gaussian noise) with ``affine_grid``/``grid_sample``, seeded by a
  ``torch.Generator``, computed on the images' device;
- :class:`SimCLR` — encoder (the CNN chapter's :class:`~course_lib.cnn.LeNet` up to its hidden layer)
  plus a projection head; :func:`fit_simclr` trains it with :func:`course_lib.train.fit`;
- :func:`knn_accuracy` — evaluation of frozen features by a k-nearest-neighbour vote; the linear
  probe is :func:`course_lib.probe.linear_probe` and the features :func:`course_lib.train.embed`.

References
----------
- Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
  Representations" (SimCLR), ICML 2020. arXiv:2002.05709
- van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding" (InfoNCE),
  2018. arXiv:1807.03748
- Wang, Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity
  on the Hypersphere", ICML 2020. arXiv:2005.10242
- Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"
  (kNN evaluation of frozen features), CVPR 2018. arXiv:1805.01978
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import train
from .cnn import LeNet, LeNetConfig
from .device import get_device

__all__ = ["info_nce", "similarity_logits", "alignment", "uniformity", "AugmentConfig", "augment", "affine_matrices", "crop_rotate_matrix",
           "two_views", "SimCLRConfig", "SimCLR", "fit_simclr",
           "knn_predict", "knn_accuracy"]


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def _check_pair(z1: torch.Tensor, z2: torch.Tensor, name: str = "z") -> None:
    if not (torch.is_tensor(z1) and torch.is_tensor(z2)):
        raise TypeError(f"{name}1 and {name}2 must be tensors; got {type(z1).__name__} and "
                        f"{type(z2).__name__}.")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"{name}1 and {name}2 must both have shape (N, D), the two views of the same "
                         f"N images; got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if len(z1) == 0:
        raise ValueError(f"empty batch: {name}1 has shape {tuple(z1.shape)}.")
    if not z1.is_floating_point():
        raise ValueError(f"embeddings must be floating point; got dtype {z1.dtype}.")


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
             reduction: str = "mean") -> torch.Tensor:
    """NT-Xent (normalised-temperature cross-entropy), SimCLR's InfoNCE loss over ``2N`` views.

    The ``2N`` embeddings ``u = [z1; z2]`` are L2-normalised; ``s_{ik} = u_i . u_k`` is their cosine
    similarity. View ``i``'s positive is the other view of the same image, ``p(i) = (i + N) mod 2N``;
    the other ``2N - 2`` views are its negatives. The loss is a softmax cross-entropy over the
    ``2N - 1`` candidates ``k != i`` with logits ``s_{ik} / tau``::

        l_i = -s_{i,p(i)}/tau + log sum_{k != i} exp(s_{ik}/tau)

    Self-similarity (``k = i``, always 1) is excluded by setting its logit to ``-inf``.

    Parameters
    ----------
    z1, z2 : Tensor of shape (N, D)
        Embeddings (projection-head outputs) of two views of the same ``N`` images; row ``n`` of
        ``z1`` and row ``n`` of ``z2`` are a positive pair. Need not be normalised.
    temperature : float, default=0.5
        ``tau > 0``. Small values sharpen the softmax: hard negatives dominate the gradient.
    reduction : {"mean", "none"}
        "none" returns the ``2N`` per-view losses, ordered as ``[z1; z2]``.

    Returns
    -------
    Tensor
        Scalar (``reduction="mean"``) or shape ``(2N,)``.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction={reduction!r}; expected 'mean' or 'none'.")
    logits, positive = similarity_logits(z1, z2, temperature)        # (2N, 2N), (2N,)
    return nn.functional.cross_entropy(logits, positive, reduction=reduction)


def similarity_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5):
    """The logits and targets of NT-Xent: ``s_{ik} / tau`` with ``-inf`` on the diagonal, and ``p(i)``.

    ``softmax(logits[i])`` is the weight that view ``i``'s loss gives each candidate ``k``; its
    gradient with respect to ``s_{ik}`` is ``(softmax_ik - [k = p(i)]) / tau``.

    Parameters
    ----------
    z1, z2 : Tensor of shape (N, D)
    temperature : float

    Returns
    -------
    logits : Tensor of shape (2N, 2N)
    positive : Tensor of shape (2N,), int64, ``p(i) = (i + N) mod 2N``
    """
    _check_pair(z1, z2)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r} must be a positive finite number "
                         "(SimCLR uses 0.1-1; 0.5 is a common default).")
    n = len(z1)
    u = nn.functional.normalize(torch.cat([z1, z2]), dim=1)          # (2N, D), unit rows
    logits = u @ u.T / temperature                                    # (2N, D) @ (D, 2N) -> (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(self_mask, float("-inf"))            # drop k = i from the softmax
    positive = torch.arange(2 * n, device=u.device).add(n).remainder(2 * n)  # (2N,) p(i) = i+N mod 2N
    return logits, positive


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment of positive pairs, ``E ||f(x) - f(y)||^alpha`` on the unit sphere (lower: better).

    Wang & Isola (2020), eq. (4), with ``f`` L2-normalised here. 0 when both views map to the same
    point; 4 (for alpha=2) when they are antipodal.

    Parameters
    ----------
    z1, z2 : Tensor of shape (N, D)
        Embeddings of two views of the same ``N`` images (normalised here).
    alpha : float, default=2

    Returns
    -------
    Tensor, scalar
    """
    _check_pair(z1, z2)
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be > 0 (Wang & Isola use alpha=2).")
    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)  # (N, D) each
    return (u1 - u2).norm(dim=1).pow(alpha).mean()                    # (N,) -> scalar


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity, ``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)`` on the unit sphere (lower: better).

    Wang & Isola (2020), eq. (5): the log of the average Gaussian potential between all pairs of
    distinct points. It is ``-2t`` for two antipodal points and 0 when all points coincide.

    Parameters
    ----------
    z : Tensor of shape (N, D), N >= 2
        Embeddings (normalised here).
    t : float, default=2

    Returns
    -------
    Tensor, scalar
    """
    if not torch.is_tensor(z) or z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z must be a tensor of shape (N, D) with N >= 2; got "
                         f"{tuple(z.shape) if torch.is_tensor(z) else type(z).__name__}.")
    if not t > 0:
        raise ValueError(f"t={t!r} must be > 0 (Wang & Isola use t=2).")
    u = nn.functional.normalize(z.float(), dim=1)                     # (N, D)
    sq = (2 - 2 * (u @ u.T)).clamp(min=0)                             # (N, N) ||u_i - u_j||^2
    i, j = torch.triu_indices(len(u), len(u), offset=1, device=u.device)  # pairs i < j
    return torch.logsumexp(-t * sq[i, j], dim=0) - math.log(len(i))   # log mean exp, stably


# --------------------------------------------------------------------------------------------
# Augmentations (plain torch, no torchvision)
# --------------------------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    crop_scale: tuple = (0.5, 1.0)    # area fraction of the random crop (SimCLR: 0.08-1 on ImageNet;
                                      # a digit cropped to 8% of its area is no longer a digit)
    crop_ratio: tuple = (3 / 4, 4 / 3)  # aspect ratio range of the crop (as torchvision)
    degrees: float = 15.0             # rotation drawn uniformly in [-degrees, degrees]
    translate: float = 0.1            # shift up to this fraction of the side, each axis
    noise_std: float = 0.1            # Gaussian pixel noise (in standardised units); 0 disables

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale={self.crop_scale!r} must satisfy 0 < min <= max <= 1.")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"crop_ratio={self.crop_ratio!r} must satisfy 0 < min <= max.")
        if not 0 <= self.degrees <= 180:
            raise ValueError(f"degrees={self.degrees!r} must be in [0, 180].")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate={self.translate!r} must be a fraction in [0, 1).")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std={self.noise_std!r} must be >= 0.")


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    """``n`` draws from U[low, high) made with ``generator`` (on its own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return (torch.rand(n, generator=generator, device=gen_device) * (high - low) + low).to(device)


def affine_matrices(batch: int, config: AugmentConfig, generator: torch.Generator | None = None,
                    device=None) -> torch.Tensor:
    """Random ``(B, 2, 3)`` matrices for ``affine_grid``: crop/zoom, then rotate, then translate.

    ``affine_grid`` maps each *output* pixel's normalised coordinate ``p`` in ``[-1, 1]^2`` to the
    *input* coordinate ``A p + b`` it samples. A crop of width ``w`` and height ``h`` (fractions of
    the side, ``w h`` = area fraction, ``w / h`` = aspect ratio) centred at ``c`` is ``A = diag(w, h)``,
    ``b = c``; composing with a rotation ``R`` gives ``A = R diag(w, h)``.

    Parameters
    ----------
    batch : int
    config : AugmentConfig
    generator : torch.Generator, optional
    device : torch.device, optional

    Returns
    -------
    Tensor of shape (B, 2, 3)
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    area = _uniform(batch, *config.crop_scale, generator, device)                     # (B,)
    log_r = _uniform(batch, *(math.log(r) for r in config.crop_ratio), generator, device)
    ratio = log_r.exp()                                                               # (B,) w / h
    w = (area * ratio).sqrt().clamp(max=1.0)                                          # (B,)
    h = (area / ratio).sqrt().clamp(max=1.0)                                          # (B,)
    cx = _uniform(batch, -1, 1, generator, device) * (1 - w)        # crop stays inside the image
    cy = _uniform(batch, -1, 1, generator, device) * (1 - h)
    cx = cx + _uniform(batch, -1, 1, generator, device) * 2 * config.translate   # [-1,1] spans 2
    cy = cy + _uniform(batch, -1, 1, generator, device) * 2 * config.translate
    angle = _uniform(batch, -1, 1, generator, device) * math.radians(config.degrees)  # (B,)
    return crop_rotate_matrix(w, h, cx, cy, angle)


def crop_rotate_matrix(w: torch.Tensor, h: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                       angle: torch.Tensor) -> torch.Tensor:
    """``affine_grid`` matrices ``[R(angle) diag(w, h) | c]`` for a rotated crop, all inputs ``(B,)``.

    ``w, h``: crop width and height as fractions of the side; ``c = (cx, cy)``: crop centre in
    normalised coordinates ``[-1, 1]``; ``angle`` in radians. Returns ``(B, 2, 3)``.
    """
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos * w, -sin * h, cx], dim=1),
                        torch.stack([sin * w, cos * h, cy], dim=1)], dim=1)           # (B, 2, 3)


def augment(x: torch.Tensor, config: AugmentConfig | None = None,
            generator: torch.Generator | None = None, fill: float | None = None) -> torch.Tensor:
    """One random view of each image: resized crop + rotation + translation (+ noise), on x's device.

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
        Images (e.g. from :func:`course_lib.cnn.images_to_tensor`).
    config : AugmentConfig, optional
    generator : torch.Generator, optional
        Seeds every random draw; it may live on the CPU while ``x`` is on a GPU.
    fill : float, optional
        Value of the pixels that come from outside the image (default: ``x.min()``, the background
        of standardised digits).

    Returns
    -------
    Tensor of shape (B, C, H, W)
    """
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"x must be a tensor of shape (B, C, H, W); got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point (use cnn.images_to_tensor); got dtype {x.dtype}.")
    config = config or AugmentConfig()
    fill = float(x.amin()) if fill is None else float(fill)
    theta = affine_matrices(len(x), config, generator, x.device).to(x.dtype)        # (B, 2, 3)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)     # (B, H, W, 2)
    out = nn.functional.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=False) + fill                     # (B, C, H, W)
    if config.noise_std > 0:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(x.shape, generator=generator, device=gen_device).to(x.device, x.dtype)
        out = out + config.noise_std * noise
    return out


def two_views(x: torch.Tensor, config: AugmentConfig | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Two independent augmentations of each image, stacked: ``(B, C, H, W) -> (B, 2, C, H, W)``."""
    return torch.stack([augment(x, config, generator), augment(x, config, generator)], dim=1)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
@dataclass
class SimCLRConfig:
    channels: tuple = (32, 64)   # LeNet's two conv stages (the CNN chapter's encoder)
    hidden: int = 128            # representation h: LeNet's dense layer, kept for downstream tasks
    proj_dim: int = 64           # z = g(h): the space where the loss is computed, then thrown away
    temperature: float = 0.5     # tau of the NT-Xent loss

    def __post_init__(self):
        for key in ("hidden", "proj_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer.")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature={self.temperature!r} must be a positive finite number.")


class SimCLR(nn.Module):
    """Encoder ``f`` (LeNet up to its hidden layer) and projection head ``g`` (MLP), as in SimCLR.

    ``forward`` takes views ``(B, V, 1, 28, 28)`` and returns projections ``(B, V, proj_dim)``;
    :meth:`embed` returns the representation ``h = f(x)`` ``(B, hidden)`` used after pre-training.

    Parameters
    ----------
    config : SimCLRConfig, optional
    """

    def __init__(self, config: SimCLRConfig | None = None):
        super().__init__()
        self.config = c = config or SimCLRConfig()
        lenet = LeNet(LeNetConfig(channels=tuple(c.channels), hidden=c.hidden, dropout=0.0))
        self.encoder = nn.Sequential(lenet.features, *lenet.classifier[:-2])  # (B,1,28,28) -> (B,hidden)
        self.head = nn.Sequential(nn.Linear(c.hidden, c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.proj_dim))           # (B,hidden) -> (B,proj_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation ``h`` of images ``(B, 1, 28, 28)``: ``(B, hidden)`` (after LeNet's dense ReLU)."""
        if x.ndim != 4:
            raise ValueError(f"embed expects images of shape (B, 1, 28, 28); got {tuple(x.shape)}.")
        return self.encoder(x)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        if views.ndim != 5:
            raise ValueError(f"forward expects views of shape (B, V, 1, 28, 28) (see two_views); got "
                             f"{tuple(views.shape)}. Use .embed(x) for single images.")
        b, v = views.shape[:2]
        z = self.head(self.encoder(views.flatten(0, 1)))            # (B*V, 1, 28, 28) -> (B*V, P)
        return z.view(b, v, -1)                                      # (B*V, P) -> (B, V, P)


def fit_simclr(model: SimCLR, x: torch.Tensor, *, config: train.TrainConfig | None = None,
               augment_config: AugmentConfig | None = None, temperature: float | None = None,
               augment_views: bool = True, device=None, seed: int = 0) -> train.History:
    """Pre-train ``model`` on unlabelled images ``x`` with the NT-Xent loss, via :func:`train.fit`.

    Each batch is augmented twice on the device (:func:`two_views`); no label is ever read (the
    targets handed to ``fit`` are placeholders, never used by the loss).

    Parameters
    ----------
    model : SimCLR
    x : Tensor of shape (N, 1, 28, 28)
    config : TrainConfig
    augment_config : AugmentConfig, optional
    temperature : float, optional
        Defaults to ``model.config.temperature``.
    augment_views : bool, default=True
        False feeds the *same, un-augmented* image as both views (the chapter's pitfall).
    device : optional
    seed : int
        Seeds the augmentations (the shuffling is seeded by ``config.seed``).

    Returns
    -------
    History
    """
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"x must be images of shape (N, 1, 28, 28); got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    tau = model.config.temperature if temperature is None else temperature
    aug = augment_config or AugmentConfig()
    gen = torch.Generator().manual_seed(seed)
    if augment_views:
        transform = lambda xb: two_views(xb, aug, gen)              # (B, 1, H, W) -> (B, 2, 1, H, W)
    else:
        transform = lambda xb: torch.stack([xb, xb], dim=1)          # identical "views"
    loss_fn = lambda z, _: info_nce(z[:, 0], z[:, 1], tau)         # z: (B, 2, P)
    no_labels = torch.zeros(len(x))                                  # placeholders: fit wants pairs
    return train.fit(model, (x, no_labels), loss_fn=loss_fn, config=config, device=device,
                     transform=transform)


# --------------------------------------------------------------------------------------------
# Evaluation of frozen features
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def knn_predict(train_features, y_train, query_features, k: int = 20, device=None,
                batch_size: int = 1024) -> torch.Tensor:
    """Majority vote of the ``k`` nearest training points by cosine similarity.

    Ties in the vote go to the smallest label (as scikit-learn's ``KNeighborsClassifier``).

    Parameters
    ----------
    train_features : Tensor of shape (N, D)
    y_train : Tensor of shape (N,), integer labels
    query_features : Tensor of shape (M, D)
    k : int

    Returns
    -------
    Tensor of shape (M,), int64, on the CPU
    """
    device = get_device(device)
    bank = nn.functional.normalize(torch.as_tensor(train_features).float(), dim=1).to(device)  # (N, D)
    labels = torch.as_tensor(y_train).long().to(device)                                       # (N,)
    query = nn.functional.normalize(torch.as_tensor(query_features).float(), dim=1)          # (M, D)
    if bank.ndim != 2 or query.ndim != 2 or bank.shape[1] != query.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D; got "
                         f"{tuple(bank.shape)} and {tuple(query.shape)}.")
    if len(labels) != len(bank):
        raise ValueError(f"y_train has {len(labels)} labels for {len(bank)} training features.")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(bank):
        raise ValueError(f"k={k!r} must be an integer in [1, {len(bank)}] (the training set size).")
    n_classes = int(labels.max()) + 1
    preds = []
    for i in range(0, len(query), batch_size):
        sim = query[i:i + batch_size].to(device) @ bank.T                 # (b, D) @ (D, N) -> (b, N)
        nearest = sim.topk(k, dim=1).indices                              # (b, k)
        votes = nn.functional.one_hot(labels[nearest], n_classes).sum(1)  # (b, k, K) -> (b, K)
        preds.append(votes.argmax(1).cpu())                               # first max: smallest label
    return torch.cat(preds)


def knn_accuracy(train_features, y_train, test_features, y_test, k: int = 20, device=None) -> float:
    """Test accuracy of :func:`knn_predict` (cosine, majority vote of ``k`` neighbours)."""
    pred = knn_predict(train_features, y_train, test_features, k, device)
    return float((pred == torch.as_tensor(y_test).long()).float().mean())
