"""Fine-tuning a pre-trained network: which weights to train, at which learning rate, and LoRA.

The fine-tuning chapter compares four ways to reuse a pre-trained backbone on a new task:

* **feature extraction** — freeze the backbone, train a new head (a linear probe);
* **partial unfreezing** — also train the top ``k`` blocks of the backbone;
* **full fine-tuning** — train everything, usually with a smaller learning rate for the backbone
  than for the new head, and often a learning rate that shrinks layer by layer towards the input
  ("discriminative fine-tuning", layer-wise learning-rate decay);
* **LoRA** — freeze every pre-trained weight ``W`` and learn a low-rank update
  ``W + (alpha / r) B A`` with ``A`` of shape ``(r, in)`` and ``B`` of shape ``(out, r)``; after
  training ``B A`` can be merged into ``W`` (no extra inference cost) or kept apart (one small file
  per task, the original model untouched).

:class:`LoRALinear` subclasses :class:`torch.nn.Linear`, so a checkpoint's ``query.weight`` /
``query.bias`` keep their names (HF ``modeling_bert`` names load unchanged) and the adapters add
``query.lora_A`` / ``query.lora_B``. Initialisation follows the paper and the ``peft`` package:
``A`` Kaiming-uniform, ``B`` zero, so training starts exactly at the pre-trained model.

The functions read a model's parts from the model itself, so a new model family plugs in without
editing this module. A fine-tunable model offers

* ``blocks()``: the backbone's blocks, from the input to the top;
* ``get_head()`` / ``set_head(module)``: its head;
* ``reset_head(n_classes, seed)``: a new, freshly initialised head (returns the old one);
* ``lora_targets`` (optional): the names of the linear layers LoRA adapts by default.

:class:`course_lib.cnn.LeNet` and :class:`course_lib.bert.SequenceClassifier` do; for any other
model, pass ``blocks=`` / ``head=``.

References
----------
- Yosinski, Clune, Bengio, Lipson, "How transferable are features in deep neural networks?",
  NeurIPS 2014. arXiv:1411.1792
- Howard, Ruder, "Universal Language Model Fine-tuning for Text Classification" (discriminative
  fine-tuning, gradual unfreezing), ACL 2018. arXiv:1801.06146
- Sun, Qiu, Xu, Huang, "How to Fine-Tune BERT for Text Classification?" (layer-wise decay), 2019.
  arXiv:1905.05583
- Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022. arXiv:2106.09685
- Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
  Out-of-Distribution" (linear probe, then fine-tune), ICLR 2022. arXiv:2202.10054
- Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
  arXiv:1612.00796
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import train
from .device import get_device

__all__ = ["STRATEGIES", "LoRALinear", "add_lora", "lora_disabled", "merge_lora", "lora_state_dict", "parts",
           "replace_head", "swap_head", "set_strategy", "layerwise_param_groups", "count_parameters",
           "memory_footprint", "optimizer_state_bytes", "finetune", "relative_change"]

STRATEGIES = ("feature_extraction", "partial", "full", "lora")


# --------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Linear):
    """A linear layer with a frozen weight and a trainable low-rank update.

    ``y = x W^T + b + (alpha / r) * dropout(x) A^T B^T``

    Parameters
    ----------
    in_features, out_features : int
    r : int
        Rank of the update, ``1 <= r <= min(in_features, out_features)``.
    alpha : float
        Scale numerator: the update is multiplied by ``alpha / r`` so that changing ``r`` does not
        change the effective learning rate much (the paper's choice).
    dropout : float
        Dropout on the adapter's input only.
    bias : bool

    Attributes
    ----------
    lora_A : Parameter (r, in_features), Kaiming-uniform
    lora_B : Parameter (out_features, r), zeros: the layer starts equal to the base layer
    merged : bool
        True after :meth:`merge` (the update lives inside ``weight``).
    """

    def __init__(self, in_features: int, out_features: int, r: int = 8, alpha: float = 16.0,
                 dropout: float = 0.0, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= min(in_features, out_features):
            raise ValueError(f"r={r!r} must be an integer in [1, min(in, out)] = "
                             f"[1, {min(in_features, out_features)}].")
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha={alpha!r} must be a positive number.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        self.lora_A = nn.Parameter(torch.empty(r, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))   # as nn.Linear and peft
        self.lora_dropout = nn.Dropout(dropout)
        self.merged = False
        self.enabled = True                                         # False: behave as the base layer
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, r: int = 8, alpha: float = 16.0,
                    dropout: float = 0.0) -> "LoRALinear":
        """A LoRA layer sharing ``linear``'s weight and bias (no copy)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LoRA wraps nn.Linear layers; got {type(linear).__name__}.")
        w = linear.weight
        new = cls(linear.in_features, linear.out_features, r, alpha, dropout,
                  bias=linear.bias is not None, device=w.device, dtype=w.dtype)
        new.weight, new.bias = linear.weight, linear.bias
        new.weight.requires_grad_(False)
        if new.bias is not None:
            new.bias.requires_grad_(False)
        return new

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) B A`` of shape ``(out_features, in_features)``."""
        return self.scaling * (self.lora_B @ self.lora_A)          # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)                     # (..., in) -> (..., out)
        if self.merged or not self.enabled:
            return y
        a = F.linear(self.lora_dropout(x), self.lora_A)             # (..., in) -> (..., r)
        return y + self.scaling * F.linear(a, self.lora_B)          # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``B A`` into ``weight`` (idempotent)."""
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``B A`` from ``weight`` again: the pre-trained weight comes back."""
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def add_lora(model: nn.Module, targets: Sequence[str] = ("query", "value"), r: int = 8,
             alpha: float = 16.0, dropout: float = 0.0) -> list[str]:
    """Replace every ``nn.Linear`` whose qualified name ends with one of ``targets`` by a
    :class:`LoRALinear` sharing its weights (in place).

    Only the adapters of the new layers are trainable; the rest of the model is left as it was
    (call :func:`set_strategy` with ``"lora"`` to freeze the backbone and train the head).

    Parameters
    ----------
    model : nn.Module
    targets : sequence of str
        Name suffixes, e.g. ``("query", "value")`` for BERT (the paper's choice) or
        ``("classifier.1",)`` for LeNet's first dense layer.
    r, alpha, dropout : see :class:`LoRALinear`.

    Returns
    -------
    list of str
        The qualified names of the replaced layers.
    """
    if isinstance(targets, str):
        targets = (targets,)
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or not _matches(name, targets) or isinstance(module, LoRALinear):
            continue
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target {name!r} is a {type(module).__name__}; LoRA here wraps nn.Linear only.")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear.from_linear(module, r, alpha, dropout))
        replaced.append(name)
    if not replaced:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"no nn.Linear matched targets={tuple(targets)!r}; linear layers are {names[:12]}"
                         + (" ..." if len(names) > 12 else "") + ".")
    return replaced


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """Within the block, every (unmerged) LoRA layer acts as its pre-trained base layer: the
    original network, exactly, from the same object."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if any(m.merged for m in layers):
        raise RuntimeError("merged LoRA layers cannot be switched off; call unmerge() first.")
    saved = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m, flag in zip(layers, saved):
            m.enabled = flag


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight and turn the layer back into a plain ``nn.Linear``
    (in place). The merged model computes the same function with no adapter cost."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.merge()
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                              device=module.weight.device, dtype=module.weight.dtype)
            plain.weight, plain.bias = module.weight, module.bias
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
    return model


def lora_state_dict(model: nn.Module) -> dict:
    """Only what a LoRA fine-tune changed: the adapters and every other trainable tensor (the
    new head). Saving this per task instead of the whole model is LoRA's storage win."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if "lora_" in k or k in trainable}


# --------------------------------------------------------------------------- parts of a model
PARTS = ("blocks", "get_head", "set_head", "reset_head")


def _require_parts(model: nn.Module, what: str) -> None:
    missing = [m for m in PARTS if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(f"{what} needs a model that names its parts; {type(model).__name__} lacks "
                        f"{', '.join(m + '()' for m in missing)}. Add them to the model (see "
                        "course_lib.finetune's docstring), or pass blocks=[...] and head=... explicitly.")


def parts(model: nn.Module) -> tuple[list[nn.Module], nn.Module]:
    """The backbone's blocks, from the input to the top, and the head: ``model.blocks()`` and
    ``model.get_head()``.

    LeNet: ``[conv1, conv2, fc1]`` and the last linear layer; SequenceClassifier:
    ``[embeddings, layer.0, ..., layer.L-1, pooler]`` and ``classifier``.
    """
    _require_parts(model, "parts()")
    return list(model.blocks()), model.get_head()


def _parts(model, blocks, head):
    if blocks is None or head is None:
        b, h = parts(model)
        return (b if blocks is None else list(blocks)), (h if head is None else head)
    return list(blocks), head


def replace_head(model: nn.Module, n_classes: int, seed: int = 0) -> nn.Module:
    """Give ``model`` a new, randomly initialised head with ``n_classes`` outputs
    (``model.reset_head``: each model initialises its head its own way).

    Returns the old head (keep it to measure forgetting on the original task).
    """
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes={n_classes!r} must be an integer >= 2.")
    _require_parts(model, "replace_head()")
    return model.reset_head(n_classes, seed)


def swap_head(model: nn.Module, head: nn.Module) -> nn.Module:
    """A view of ``model``'s current backbone with another head (weights shared, not copied):
    evaluate a fine-tuned backbone on the original task with the original head to measure
    forgetting. ``model`` itself is not changed."""
    _require_parts(model, "swap_head()")
    view = copy.copy(model)                                 # new object, same submodules
    view._modules = dict(model._modules)                    # its own table of children
    view.set_head(head)
    return view


# --------------------------------------------------------------------------- strategies
def set_strategy(model: nn.Module, strategy: str, *, n_unfrozen: int = 1, lora_r: int = 8,
                 lora_alpha: float = 16.0, lora_targets: Sequence[str] | None = None,
                 blocks: Sequence[nn.Module] | None = None, head: nn.Module | None = None) -> dict:
    """Choose which parameters train (in place) and return :func:`count_parameters`.

    Parameters
    ----------
    strategy : {"feature_extraction", "partial", "full", "lora"}
    n_unfrozen : int
        ``"partial"``: how many top blocks of the backbone train with the head.
    lora_r, lora_alpha, lora_targets :
        ``"lora"``: adapters on the linear layers named by ``lora_targets`` (default: the model's
        ``lora_targets`` — BERT's query and value projections, LeNet's first dense layer — else
        ``("query", "value")``).
    blocks, head : optional
        For models :func:`parts` does not know.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; expected one of {STRATEGIES}.")
    blocks, head = _parts(model, blocks, head)
    if strategy == "partial" and not (isinstance(n_unfrozen, int) and 1 <= n_unfrozen <= len(blocks)):
        raise ValueError(f"n_unfrozen={n_unfrozen!r} must be an integer in [1, {len(blocks)}] "
                         "(the number of backbone blocks).")
    for p in model.parameters():
        p.requires_grad_(strategy == "full")
    if strategy == "partial":
        for block in blocks[-n_unfrozen:]:
            for p in block.parameters():
                p.requires_grad_(True)
    if strategy == "lora":
        if lora_targets is None:
            lora_targets = getattr(model, "lora_targets", ("query", "value"))
        if not any(isinstance(m, LoRALinear) for m in model.modules()):
            add_lora(model, lora_targets, r=lora_r, alpha=lora_alpha)
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_A.requires_grad_(True)
                m.lora_B.requires_grad_(True)
    for p in head.parameters():
        p.requires_grad_(True)
    return count_parameters(model)


def layerwise_param_groups(model: nn.Module, lr: float, head_lr: float | None = None,
                           decay: float = 1.0, blocks: Sequence[nn.Module] | None = None,
                           head: nn.Module | None = None) -> list[dict]:
    """Optimizer parameter groups with a learning rate per block.

    The top block of the backbone gets ``lr``, the one below ``lr * decay``, and so on down to
    the input: block ``i`` of ``L`` (0 = nearest the input) gets ``lr * decay ** (L - 1 - i)``.
    The head gets ``head_lr`` (default ``lr``). Frozen parameters are left out; parameters in no
    block (e.g. LoRA adapters are inside blocks; anything else) get ``lr``.

    Returns
    -------
    list of dict
        ``{"params": [...], "lr": float, "name": str}``, ready for ``torch.optim.AdamW``.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr={lr!r} must be a positive number.")
    if not 0 < decay <= 1:
        raise ValueError(f"decay={decay!r} must be in (0, 1]: lower blocks learn no faster than top ones.")
    blocks, head = _parts(model, blocks, head)
    head_lr = lr if head_lr is None else head_lr
    seen, groups = set(), []

    def group(name, module_params, group_lr):
        params = [p for p in module_params if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": group_lr, "name": name})

    group("head", head.parameters(), head_lr)
    L = len(blocks)
    for i in reversed(range(L)):
        group(f"block{i}", blocks[i].parameters(), lr * decay ** (L - 1 - i))
    group("other", model.parameters(), lr)
    if not groups:
        raise ValueError("the model has no trainable parameters; call set_strategy() first.")
    return groups


# --------------------------------------------------------------------------- counting
def count_parameters(model: nn.Module) -> dict:
    """``{"trainable", "total", "fraction"}`` — shared tensors counted once."""
    uniq = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in uniq)
    trainable = sum(p.numel() for p in uniq if p.requires_grad)
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0}


def memory_footprint(model: nn.Module, optimizer: str = "adamw", bytes_per_value: int | None = None) -> dict:
    """Bytes held by weights, gradients and optimizer state during training (activations aside).

    Weights: every parameter. Gradients: trainable parameters only. Optimizer state per trainable
    value: 2 for Adam/AdamW (first and second moments), 1 for SGD with momentum.
    """
    states = {"adam": 2, "adamw": 2, "sgd": 1}
    if optimizer not in states:
        raise ValueError(f"optimizer={optimizer!r}; expected one of {tuple(states)}.")
    c = count_parameters(model)
    size = bytes_per_value or next(model.parameters()).element_size()
    out = {"weights": c["total"] * size, "gradients": c["trainable"] * size,
           "optimizer": states[optimizer] * c["trainable"] * size}
    out["total"] = sum(out.values())
    return out


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes actually held in ``optimizer.state`` tensors (0 before the first step; the scalar
    ``step`` counters are left out)."""
    return sum(v.numel() * v.element_size() for s in optimizer.state.values()
               for k, v in s.items() if torch.is_tensor(v) and k != "step")


def relative_change(before: dict, model: nn.Module, blocks: Sequence[nn.Module] | None = None) -> list[float]:
    """``||W - W0|| / ||W0||`` per backbone block, from a ``state_dict`` copy taken before training.

    For a LoRA layer ``W`` is the effective weight ``W0 + (alpha / r) B A``.
    """
    blocks = parts(model)[0] if blocks is None else list(blocks)
    prefix = {id(m): n for n, m in model.named_modules()}
    out = []
    for block in blocks:
        num = den = 0.0
        for module in block.modules():
            for pname, p in module.named_parameters(recurse=False):
                if pname.startswith("lora_"):
                    continue
                w = p.detach()
                if pname == "weight" and isinstance(module, LoRALinear) and not module.merged:
                    w = w + module.delta_weight().detach()
                key = f"{prefix[id(module)]}.{pname}".lstrip(".")
                w0 = before[key].to(w.device, w.dtype)
                num += float((w - w0).pow(2).sum())
                den += float(w0.pow(2).sum())
        out.append(math.sqrt(num / den) if den else 0.0)
    return out


# --------------------------------------------------------------------------- one call
def finetune(model: nn.Module, train_data, val_data=None, *, strategy: str = "full",
             lr: float = 1e-4, head_lr: float | None = None, layer_decay: float = 1.0,
             config: train.TrainConfig | None = None, device=None, n_unfrozen: int = 1,
             lora_r: int = 8, lora_alpha: float = 16.0, lora_targets: Sequence[str] | None = None,
             blocks: Sequence[nn.Module] | None = None, head: nn.Module | None = None,
             transform=None, callbacks: Iterable = ()) -> train.History:
    """Apply ``strategy``, build optimizer groups (head at ``head_lr``, backbone blocks at ``lr``
    with ``layer_decay``; the optimizer named by ``config``, AdamW by default) and train with
    :func:`course_lib.train.fit`.

    The schedule comes from ``config`` and scales every group's own rate
    (:func:`course_lib.train.build_scheduler`: "cosine" with ``warmup>0`` warms up, "onecycle"
    peaks at each group's rate).

    Returns
    -------
    History
        With ``history.params`` = :func:`count_parameters` after the strategy was applied.
    """
    cfg = config or train.TrainConfig(schedule="cosine", warmup=0.1, optimizer="adamw")
    counts = set_strategy(model, strategy, n_unfrozen=n_unfrozen, lora_r=lora_r,
                          lora_alpha=lora_alpha, lora_targets=lora_targets, blocks=blocks, head=head)
    device = get_device(device)
    model.to(device)                                        # adapters too, before the optimizer
    groups = layerwise_param_groups(model, lr, head_lr, layer_decay, blocks=blocks, head=head)
    opt = train.build_optimizer(model, cfg, groups)         # each group keeps its own lr; no decay
                                                            # on biases and normalisation weights
    hist = train.fit(model, train_data, val_data, config=cfg, device=device, optimizer=opt,
                     transform=transform, callbacks=callbacks)
    hist.params = counts
    return hist
