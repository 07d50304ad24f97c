"""Convolutional networks for digit images: the chapter "CNN on MNIST".

What the chapter teaches, as code the notebook imports:

- :func:`conv_output_size` — the size formula ``floor((n + 2p - d(k-1) - 1)/s) + 1``;
- :func:`cross_entropy_from_logits` — ``-z_y + log sum_j exp(z_j)``, the loss on raw logits;
- :class:`LeNet` — a LeNet-style CNN (two conv/ReLU/max-pool stages, then two dense layers)
  that returns **logits** (no activation on the last layer);
- :func:`images_to_tensor` — uint8 images ``(N, H, W)`` to normalised float ``(N, 1, H, W)``;
- :func:`random_shift`, :func:`random_flip`, :func:`random_erase` — plain-torch augmentations (a
  few pixels' translation; a left-right mirror, for classes a mirror does not change, such as
  clothes; one random rectangle blanked out, so no single patch decides the class).

References
----------
- LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition",
  Proc. IEEE 86(11), 1998 (LeNet-5).
- Dumoulin, Visin, "A guide to convolution arithmetic for deep learning", 2016. arXiv:1603.07285
- Goodfellow, Bengio, Courville, *Deep Learning*, MIT Press 2016, ch. 9 (convolutional networks)
  and §6.2.2.3 (softmax units and the log-sum-exp form of the cross-entropy).
- Ioffe, Szegedy, "Batch normalization: accelerating deep network training by reducing internal
  covariate shift", ICML 2015 (``LeNetConfig(batch_norm=True)``).
- Zhong, Zheng, Kang, Li, Yang, "Random erasing data augmentation", AAAI 2020. arXiv:1708.04896
  (:func:`random_erase`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["conv_output_size", "cross_entropy_from_logits", "LeNetConfig", "LeNet",
           "images_to_tensor", "random_shift", "random_flip", "random_erase",
           "MNIST_MEAN", "MNIST_STD"]

# Mean and standard deviation of MNIST training pixels scaled to [0, 1] (the usual constants).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial output size of a convolution or pooling layer along one axis.

    ``out = floor((n + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``
    (the formula in the ``torch.nn.Conv2d`` documentation; Dumoulin & Visin 2016, relationship 6).

    Parameters
    ----------
    n : int
        Input size along the axis (e.g. 28 for MNIST).
    kernel, stride, padding, dilation : int

    Returns
    -------
    int
    """
    for name, value, low in (("n", n, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    span = dilation * (kernel - 1) + 1          # receptive field of one output position
    if n + 2 * padding < span:
        raise ValueError(f"kernel span {span} (kernel={kernel}, dilation={dilation}) does not fit in "
                         f"input n={n} with padding={padding}.")
    return (n + 2 * padding - span) // stride + 1


def cross_entropy_from_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer targets under ``softmax(logits)``, computed stably.

    ``loss_i = -z_{i,y_i} + log sum_j exp(z_{i,j})``; ``logsumexp`` subtracts the maximum first,
    so large logits do not overflow (unlike ``log(softmax(z))`` written by hand).

    Parameters
    ----------
    logits : Tensor of shape (B, C)
        Raw scores, any real values (no ReLU, no softmax applied).
    target : Tensor of shape (B,)
        Class indices in ``[0, C)``.

    Returns
    -------
    Tensor, scalar
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, C); got {tuple(logits.shape)}.")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must have shape ({logits.shape[0]},); got {tuple(target.shape)}.")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class indices; got dtype {target.dtype}.")
    picked = logits.gather(1, target[:, None]).squeeze(1)        # (B,) z_{i, y_i}
    return (torch.logsumexp(logits, dim=1) - picked).mean()       # (B,) -> scalar


@dataclass
class LeNetConfig:
    in_channels: int = 1          # grey-scale digits
    image_size: int = 28          # MNIST / Fashion-MNIST are 28x28
    channels: tuple = (32, 64)    # feature maps of the two conv stages
    kernel: int = 5               # LeNet's 5x5 kernels
    hidden: int = 128             # width of the dense layer before the classifier
    n_classes: int = 10
    dropout: float = 0.3          # on the dense layer only: conv layers share weights already
    batch_norm: bool = False      # BatchNorm2d after each convolution (Ioffe & Szegedy 2015)


class LeNet(nn.Module):
    """A LeNet-style CNN: [conv 5x5 -> ReLU -> max-pool 2x2] x 2 -> dense -> ReLU -> dense.

    ``forward`` returns logits of shape ``(B, n_classes)``: pass them to
    ``nn.functional.cross_entropy`` (which applies log-softmax itself), never through a ReLU.

    Parameters
    ----------
    config : LeNetConfig, optional
    """

    def __init__(self, config: LeNetConfig | None = None):
        super().__init__()
        self.config = c = config or LeNetConfig()
        if len(c.channels) != 2:
            raise ValueError(f"channels={c.channels!r} must name two conv stages, e.g. (32, 64).")
        pad = c.kernel // 2                                  # 'same' convolution, then pool halves
        size = c.image_size
        layers, cin = [], c.in_channels
        for cout in c.channels:
            conv = nn.Conv2d(cin, cout, c.kernel, padding=pad, bias=not c.batch_norm)
            norm = [nn.BatchNorm2d(cout)] if c.batch_norm else []   # its shift replaces the bias
            layers += [conv, *norm, nn.ReLU(), nn.MaxPool2d(2)]
            size = conv_output_size(conv_output_size(size, c.kernel, padding=pad), 2, stride=2)
            cin = cout
        self.features = nn.Sequential(*layers)               # (B, 1, 28, 28) -> (B, C2, 7, 7)
        self.feature_dim = cin * size * size
        self.classifier = nn.Sequential(
            nn.Flatten(),                                     # (B, C2, 7, 7) -> (B, C2*49)
            nn.Linear(self.feature_dim, c.hidden), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.hidden, c.n_classes),                 # (B, hidden) -> (B, n_classes) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels or x.shape[-1] != c.image_size:
            raise ValueError(f"expected input of shape (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}); got {tuple(x.shape)}. Use images_to_tensor().")
        return self.classifier(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, hidden)``: what transfer learning reuses."""
        return self.classifier[:-1](self.features(x))

    # -- the parts fine-tuning needs (read by course_lib.finetune; any model may offer the same four)
    lora_targets = ("classifier.1",)                          # LoRA's default: the hidden dense layer

    def blocks(self) -> list[nn.Module]:
        """The backbone's blocks from the input to the top: ``[conv1, conv2, fc1]``."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        dense = [m for m in self.classifier if isinstance(m, nn.Linear)]
        return convs + dense[:-1]

    def _head_index(self) -> int:
        return max(i for i, m in enumerate(self.classifier) if isinstance(m, nn.Linear))

    def get_head(self) -> nn.Module:
        """The last linear layer, ``(B, hidden) -> (B, n_classes)``."""
        return self.classifier[self._head_index()]

    def set_head(self, head: nn.Module) -> None:
        """Put ``head`` in the last linear layer's place (in a new ``classifier`` container, so a
        shallow copy of this model keeps its own head)."""
        layers = list(self.classifier)
        layers[self._head_index()] = head
        self.classifier = nn.Sequential(*layers)

    def reset_head(self, n_classes: int, seed: int = 0) -> nn.Module:
        """A new head with ``n_classes`` outputs, ``nn.Linear``'s default init drawn from ``seed``;
        returns the old head."""
        old = self.get_head()
        new = nn.Linear(old.in_features, n_classes, device=old.weight.device, dtype=old.weight.dtype)
        g, bound = torch.Generator().manual_seed(seed), 1 / math.sqrt(old.in_features)
        with torch.no_grad():
            for p in (new.weight, new.bias):
                p.copy_(torch.empty_like(p, device="cpu").uniform_(-bound, bound, generator=g))
        self.set_head(new)
        self.config = dataclasses.replace(self.config, n_classes=n_classes)
        return old


def images_to_tensor(images: np.ndarray | torch.Tensor, mean: float = MNIST_MEAN,
                     std: float = MNIST_STD) -> torch.Tensor:
    """uint8 images ``(N, H, W)`` in 0..255 -> float32 ``(N, 1, H, W)``, standardised.

    ``mean=0, std=1`` gives pixels in [0, 1] (what :func:`course_lib.autoencoder.images_to_unit`
    returns). The one place where the course checks raw images.

    Raises
    ------
    ValueError
        If the images are not 3-D or not uint8 (already-scaled floats would be scaled twice).
    """
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images))  # copy: may be read-only
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W); got {tuple(x.shape)}.")
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 in 0..255; got dtype {x.dtype}. Floats already in "
                         "[0, 1] need no scaling: add the channel axis with x[:, None] (and "
                         "standardise them yourself if the model expects it).")
    return ((x.float() / 255.0 - mean) / std).unsqueeze(1)    # (N, H, W) -> (N, 1, H, W)


def to_mnist_frame(images: np.ndarray | torch.Tensor, max_value: float = 16.0, box: int = 20) -> torch.Tensor:
    """Small grey images ``(N, h, w)`` (e.g. scikit-learn's 8x8 digits in 0..16) -> uint8
    ``(N, 28, 28)`` laid out like MNIST: resized (bilinear) into a ``box`` x ``box`` square
    centred in a 28x28 frame, ink scaled to 0..255. Feed the result to :func:`images_to_tensor`.
    """
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"images must have shape (N, h, w) with N >= 1; got {tuple(x.shape)}.")
    if not 1 <= box <= 28:
        raise ValueError(f"box={box!r} must be in [1, 28].")
    x = nn.functional.interpolate(x[:, None] / max_value, size=(box, box), mode="bilinear",
                                  align_corners=False)                 # (N, 1, h, w) -> (N, 1, box, box)
    lo = (28 - box) // 2
    frame = torch.zeros(len(x), 28, 28)
    frame[:, lo:lo + box, lo:lo + box] = x[:, 0]                       # (N, 28, 28)
    return (frame.clamp(0, 1) * 255).round().to(torch.uint8)


def random_shift(x: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero-padded), on ``x``'s device.

    A plain-torch augmentation (no torchvision): pad, then crop a random window.

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
    max_shift : int

    Returns
    -------
    Tensor of shape (B, C, H, W)
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W); got {tuple(x.shape)}.")
    if max_shift == 0:
        return x
    B, C, H, W = x.shape
    fill = x.amin()                                                # background value after scaling
    padded = nn.functional.pad(x, (max_shift,) * 4, value=float(fill))  # (B, C, H+2s, W+2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, B), generator=generator)
              .to(x.device))                                       # (2, B) offsets
    rows = dy[:, None] + torch.arange(H, device=x.device)          # (B, H)
    cols = dx[:, None] + torch.arange(W, device=x.device)          # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()                    # (B, C, H, W)


def _check_augment_input(x: torch.Tensor, p: float) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W); got {tuple(x.shape)}.")
    if not 0 <= p <= 1:
        raise ValueError(f"p={p!r} must be a probability in [0, 1].")


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``, on ``x``'s device.

    For images whose class does not change in a mirror (clothes, most objects); never for digits
    or letters, whose mirror image is another symbol or none.

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
    p : float in [0, 1]

    Returns
    -------
    Tensor of shape (B, C, H, W)
    """
    _check_augment_input(x, p)
    flip = (torch.rand(len(x), generator=generator) < p).to(x.device)     # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)         # (B, C, H, W)


def random_erase(x: torch.Tensor, p: float = 0.5, scale: tuple = (0.02, 0.4),
                 ratio: tuple = (0.3, 3.3), value: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Set one random rectangle of each image to ``value`` with probability ``p`` (random erasing).

    The rectangle covers a fraction of the image drawn uniformly from ``scale``, with an aspect
    ratio ``h / w`` drawn log-uniformly from ``ratio`` (Zhong et al. 2020), clipped to the image.
    A network that cannot count on any one patch being visible learns from the whole shape: a
    regulariser against occlusion, cheap on a CPU (no extra forward pass).

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
    p : float in [0, 1]
        Probability that an image is erased at all.
    scale : (float, float)
        Smallest and largest erased area, as fractions of ``H * W``, in (0, 1].
    ratio : (float, float)
        Smallest and largest aspect ratio ``h / w``, positive.
    value : float
        What the rectangle is set to: 0 is the training mean after :func:`images_to_tensor`.

    Returns
    -------
    Tensor of shape (B, C, H, W)
    """
    _check_augment_input(x, p)
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale={scale!r} must be (low, high) with 0 < low <= high <= 1, "
                         "e.g. (0.02, 0.4).")
    if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio={ratio!r} must be (low, high) with 0 < low <= high, e.g. (0.3, 3.3).")
    B, _, H, W = x.shape
    u = torch.rand(5, B, generator=generator)                             # (5, B) all draws at once
    area = H * W * (scale[0] + (scale[1] - scale[0]) * u[1])              # (B,) pixels
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[2])                 # (B,) h / w
    h = (area * aspect).sqrt().round().clamp(1, H).long()                 # (B,)
    w = (area / aspect).sqrt().round().clamp(1, W).long()                 # (B,)
    top = (u[3] * (H - h + 1)).long()                                     # (B,) in [0, H - h]
    left = (u[4] * (W - w + 1)).long()                                    # (B,) in [0, W - w]
    rows, cols = torch.arange(H), torch.arange(W)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])        # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])      # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & (u[0] < p)[:, None, None]  # (B, H, W)
    return x.masked_fill(mask[:, None].to(x.device), value)              # (B, C, H, W)
