"""The linear probe: how much of a frozen representation a linear classifier can read.

One concept: *evaluating frozen features*, the protocol every chapter that probes uses (the
autoencoder, contrastive and fine-tuning chapters, and their benchmarks). The encoder is not
updated; a multinomial logistic regression is fitted on its standardised features
(:func:`course_lib.train.embed`) and tested on held-out ones — the standard linear evaluation of
self-supervised learning. The objective is scikit-learn's ``LogisticRegression(C=C)``, minimised
in torch by full-batch L-BFGS on any device (a unit test checks it against scikit-learn).

References
----------
- Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
  Representations" (linear evaluation protocol, appendix B.5), ICML 2020. arXiv:2002.05709
- Alain, Bengio, "Understanding intermediate layers using linear classifier probes", 2016.
  arXiv:1610.01644
- scikit-learn, ``LogisticRegression``: https://scikit-learn.org/stable/modules/linear_model.html
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .device import get_device

__all__ = ["linear_probe", "fit_logistic_regression"]


def _as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def linear_probe(train_features, y_train, test_features, y_test, C: float = 1.0,
                 max_iter: int = 200, device=None) -> float:
    """Test accuracy of a logistic regression trained on frozen, standardised features.

    The standard linear evaluation protocol (SimCLR §B.5): the encoder is not updated; only a
    linear classifier is fitted on its features. The classifier is scikit-learn's multinomial
    ``LogisticRegression(C=C)`` objective, ``C * sum_i CE_i + ||W||^2 / 2`` (bias not penalised),
    minimised in torch by full-batch L-BFGS on ``device`` (a unit test checks it against
    scikit-learn); features are standardised with the training mean and standard deviation.

    Parameters
    ----------
    train_features : array or Tensor of shape (N, D)
    y_train : array or Tensor of shape (N,), integer labels in [0, K)
    test_features : array or Tensor of shape (M, D)
    y_test : array or Tensor of shape (M,)
    C : float, default=1.0
        Inverse L2 regularisation strength, as in scikit-learn.
    max_iter : int, default=200
        L-BFGS iterations.

    Returns
    -------
    float
    """
    model = fit_logistic_regression(train_features, y_train, C=C, max_iter=max_iter, device=device)
    pred = model(torch.as_tensor(_as_numpy(test_features)).float().to(model[1].weight.device)).argmax(1)
    y = torch.as_tensor(_as_numpy(y_test)).long()
    if len(y) != len(pred):
        raise ValueError(f"test features and labels differ in length: {len(pred)} vs {len(y)}.")
    return float((pred.cpu() == y).float().mean())


def fit_logistic_regression(features, y, C: float = 1.0, max_iter: int = 200, device=None):
    """Multinomial logistic regression with scikit-learn's objective, fitted by L-BFGS in torch.

    Minimises ``C * sum_i CE(W s(x_i) + b, y_i) + ||W||^2 / 2`` where ``s`` standardises each
    feature with the mean and standard deviation of ``features``.

    Parameters
    ----------
    features : array or Tensor of shape (N, D)
    y : array or Tensor of shape (N,), integer labels in [0, K)
    C : float
    max_iter : int

    Returns
    -------
    nn.Sequential
        ``standardise -> Linear(D, K)``; maps raw features ``(B, D)`` to logits ``(B, K)``.
    """
    device = get_device(device)
    x = torch.as_tensor(_as_numpy(features)).float().to(device)                # (N, D)
    y = torch.as_tensor(_as_numpy(y)).to(device)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features must have shape (N, D) with N >= 1; got {tuple(x.shape)}.")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must have shape ({len(x)},); got {tuple(y.shape)}.")
    if y.is_floating_point():
        raise ValueError(f"labels must be integers; got dtype {y.dtype}.")
    if not (C > 0 and math.isfinite(C)):
        raise ValueError(f"C={C!r} must be a positive finite number (inverse regularisation).")
    y = y.long()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)             # (D,), (D,)
    xs = (x - mean) / std                                                       # (N, D)
    n_classes = int(y.max()) + 1
    linear = nn.Linear(x.shape[1], n_classes).to(device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        ce = nn.functional.cross_entropy(linear(xs), y, reduction="sum")        # (N, K) logits
        loss = (C * ce + 0.5 * linear.weight.pow(2).sum()) / len(xs)           # scaled: same minimum
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)

    return nn.Sequential(_Standardise(mean, std), linear).requires_grad_(False)


class _Standardise(nn.Module):
    """``(x - mean) / std`` with the training statistics kept as buffers."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std                                       # (B, D)
