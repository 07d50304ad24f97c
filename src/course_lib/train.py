"""One readable fit/evaluate loop that every chapter reuses.

Model-agnostic in the spirit of minGPT's ``trainer.py``: nothing here knows about CNNs,
autoencoders or BERT. A model maps a batch of inputs to an output; a loss function compares that
output with the targets. Classification accuracy is reported when the output is a matrix of class
logits and the targets are integer labels.

Data may be given as a pair of tensors ``(x, y)`` — then the whole set is moved to the device once
and shuffled there with a seeded generator (fast, reproducible) — or as any iterable of
``(inputs, targets)`` batches such as a :class:`torch.utils.data.DataLoader`.

The optimiser and its learning-rate schedule are built by :func:`build_optimizer` and
:func:`build_scheduler` (every chapter, ``finetune`` and the benchmarks use them). Weight decay
follows the usual rule: matrices and embeddings decay; biases and the weights of normalisation
layers (LayerNorm, BatchNorm, GroupNorm, RMSNorm, ...) do not (:func:`decay_names`).

The same loop runs unchanged in several processes started by ``torchrun`` (data parallelism, see
:mod:`course_lib.distributed`): in four explicit branches (``if ddp:``), :func:`fit` checks the
data, wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel`, gives each process
its share of every global batch and reduces the step's numbers across processes; the result
equals the one-process run.

References
----------
- Karpathy, minGPT ``trainer.py``: https://github.com/karpathy/minGPT
- Karpathy, nanoGPT ``configure_optimizers`` (decay 2-D weights only): https://github.com/karpathy/nanoGPT
- Loshchilov, Hutter, "Decoupled Weight Decay Regularization" (AdamW), ICLR 2019. arXiv:1711.05101
- Prechelt, "Early Stopping — But When?", in Neural Networks: Tricks of the Trade, 1998.
- Pascanu, Mikolov, Bengio, "On the difficulty of training recurrent neural networks" (gradient
  clipping), ICML 2013. arXiv:1211.5063
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .device import autocast, get_device

__all__ = ["TrainConfig", "History", "fit", "evaluate", "predict", "embed", "batches", "decay_names",
           "param_groups", "build_optimizer", "build_scheduler", "NO_DECAY_MODULES"]

#: Layers whose weights are scales, not features: never weight-decayed (nor are any biases).
NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.BatchNorm1d, nn.BatchNorm2d,
                    nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                    nn.InstanceNorm3d) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


@dataclass
class TrainConfig:
    epochs: int = 5              # full passes over the training data
    batch_size: int = 128        # examples per gradient step (tensor data only)
    lr: float = 1e-3             # peak learning rate
    optimizer: str = "adam"      # "adam", "adamw" or "sgd" (momentum 0.9)
    schedule: str = "constant"   # "constant", "onecycle" (warm up then anneal) or "cosine"
    warmup: float = 0.0          # fraction of steps with linear warm-up ("cosine" only)
    weight_decay: float = 0.0    # L2 penalty (decoupled for adamw); see decay_names for which tensors
    grad_clip: float | None = None  # clip the global gradient norm to this value
    amp: bool = False            # mixed precision on CUDA (no-op on CPU)
    patience: int | None = None  # early stopping: epochs without val-loss improvement
    seed: int = 0                # shuffling order
    progress: bool = True        # tqdm progress bar

    def __post_init__(self):
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r} must be a positive finite number.")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r}; expected 'adam', 'adamw' or 'sgd'.")
        if self.schedule not in ("constant", "onecycle", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}; expected 'constant', 'onecycle' or 'cosine'.")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup={self.warmup!r} must be a fraction in [0, 1).")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay={self.weight_decay!r} must be a non-negative number.")


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run; ``history.train_loss[-1]`` etc."""
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)   # every optimisation step, for fine curves
    best_epoch: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- optimiser, schedule
def decay_names(model: nn.Module) -> set[str]:
    """Qualified names of the parameters that weight decay applies to.

    Every weight decays except biases and the weights of :data:`NO_DECAY_MODULES` (normalisation
    layers, among them the LayerNorm of BERT's embeddings); embedding tables and the matrices of
    linear and convolutional layers decay. A tensor shared by several modules is named once.
    """
    exempt = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias" or isinstance(module, NO_DECAY_MODULES):
                exempt.add(id(p))
    return {n for n, p in model.named_parameters() if id(p) not in exempt}


def param_groups(model: nn.Module, weight_decay: float, groups: list[dict] | None = None) -> list[dict]:
    """Split parameter groups (default: one group of the trainable parameters) into a decayed and
    a non-decayed part (:func:`decay_names`); every other key of a group (``lr``, ``name``) is kept.
    Frozen parameters and empty parts are left out."""
    groups = [{"params": model.parameters()}] if groups is None else groups
    names = decay_names(model)
    decayed = {id(p) for n, p in model.named_parameters() if n in names}
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        rest = {k: v for k, v in g.items() if k != "params"}
        for decays in (True, False):
            part = [p for p in params if (id(p) in decayed) == decays]
            if part:
                out.append({**rest, "params": part, "weight_decay": weight_decay if decays else 0.0})
    if not out:
        raise ValueError("the model has no trainable parameters (all requires_grad=False).")
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig, groups: list[dict] | None = None):
    """The optimizer named by ``cfg.optimizer`` at ``cfg.lr``, with ``cfg.weight_decay`` on the
    tensors of :func:`decay_names` only.

    Parameters
    ----------
    groups : list of dict, optional
        Parameter groups, each with its own ``lr`` (e.g. ``finetune.layerwise_param_groups``);
        default: every trainable parameter at ``cfg.lr``.
    """
    params = param_groups(model, cfg.weight_decay, groups)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    return (torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam)(params, lr=cfg.lr)


def build_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step learning-rate schedule from ``cfg.schedule`` (None for "constant").

    "onecycle" peaks at each group's own ``lr``; "cosine" warms up linearly over ``cfg.warmup`` of
    the steps, then anneals every group's rate to zero.
    """
    if cfg.schedule == "constant":
        return None
    total = steps_per_epoch * cfg.epochs
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total)
    warm = int(cfg.warmup * total)

    def factor(step):                                 # linear warm-up, then cosine to zero
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------- data, evaluation
def _is_tensor_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)


def _steps_per_epoch(data, batch_size: int) -> int:
    return math.ceil(len(data[0]) / batch_size) if _is_tensor_pair(data) else len(data)


def batches(data, batch_size: int, device, shuffle: bool = False, generator=None) -> Iterable:
    """Yield ``(inputs, targets)`` batches on ``device`` from a tensor pair or an iterable."""
    if not _is_tensor_pair(data):
        for xb, yb in data:
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        return
    x, y = data
    if len(x) != len(y):
        raise ValueError(f"inputs and targets differ in length: {len(x)} != {len(y)}.")
    if len(x) == 0:
        raise ValueError("empty dataset: got 0 examples.")
    x, y = x.to(device), y.to(device)                # once per call, not per batch
    order = (torch.randperm(len(x), generator=generator).to(device) if shuffle
             else torch.arange(len(x), device=device))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def _correct(out, y):
    """Correct count for class logits ``(B, C)`` against integer targets ``(B,)``, else None."""
    if torch.is_tensor(out) and out.ndim == 2 and y.ndim == 1 and not y.is_floating_point():
        return (out.argmax(dim=1) == y).sum().item()
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn: Callable | None = None, device=None,
             batch_size: int = 1024, amp: bool = False, *, ddp: bool = False) -> dict:
    """Mean loss (and accuracy for classifiers) of ``model`` on ``data``, in eval mode.

    ``ddp=False``: no communication, each rank that calls it evaluates all of ``data`` (so rank 0
    may call it alone). ``ddp=True`` (what :func:`fit` uses under ``torchrun``): the ranks split
    ``data`` (:func:`course_lib.distributed.eval_share`) and every rank gets the same numbers.
    """
    device = get_device(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    data, reduce = distributed.eval_share(data) if ddp else (data, None)
    was_training = model.training
    model.eval()                                     # dropout off, batch-norm running stats
    total, loss_sum, correct, no_acc = 0, 0.0, 0, 0.0
    if not (_is_tensor_pair(data) and ddp and len(data[0]) == 0):    # a rank with no rows adds 0
        for xb, yb in batches(data, batch_size, device):
            with autocast(device, amp):
                out = model(xb)
                loss = loss_fn(out, yb)
            c = _correct(out, yb)
            total, loss_sum = total + len(yb), loss_sum + loss.item() * len(yb)
            correct, no_acc = correct + (c or 0), max(no_acc, float(c is None))
    model.train(was_training)
    if ddp:
        stats = reduce(torch.tensor([loss_sum, total, correct, no_acc], dtype=torch.float64))
        loss_sum, total, correct, no_acc = stats.tolist()
    return {"loss": loss_sum / total, "accuracy": correct / total if no_acc == 0 else None}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device=None, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs for ``x`` of shape ``(N, ...)``, concatenated on the CPU: ``(N, ...)``."""
    device = get_device(device)
    was_training = model.training
    model.eval()
    outs = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outs)


@torch.no_grad()
def embed(model, x: torch.Tensor, device=None, batch_size: int = 1024) -> torch.Tensor:
    """Frozen representations of ``x`` ``(N, ...)`` -> ``(N, D)`` on the CPU, in eval mode.

    Uses ``model.embed`` — every course model names its representation so: LeNet's penultimate
    features, SimCLR's ``h``, an autoencoder's code — and calls ``model`` itself when it has no
    ``embed`` (a bare encoder module, or any callable). :func:`predict` gives the outputs instead.
    """
    device = get_device(device)
    fn = getattr(model, "embed", model)
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.to(device).eval()
    feats = [fn(x[i:i + batch_size].to(device)).float().flatten(1).cpu()      # (b, ...) -> (b, D)
             for i in range(0, len(x), batch_size)]
    if module is not None:
        module.train(was_training)
    return torch.cat(feats)


# --------------------------------------------------------------------------- the loop
def fit(model: nn.Module, train_data, val_data=None, *, loss_fn: Callable | None = None,
        config: TrainConfig | None = None, device=None, optimizer=None, scheduler=None,
        transform: Callable | None = None, callbacks: Iterable[Callable] = ()) -> History:
    """Train ``model`` and return its :class:`History`.

    Parameters
    ----------
    model : nn.Module
        Maps inputs ``(B, ...)`` to outputs; moved to ``device``.
    train_data, val_data : (Tensor, Tensor) or iterable of (inputs, targets)
    loss_fn : callable, default=cross_entropy
        ``loss_fn(output, targets) -> scalar tensor``.
    config : TrainConfig
    optimizer : torch.optim.Optimizer, optional
        Overrides :func:`build_optimizer` (e.g. per-layer learning rates).
    scheduler : optional learning-rate scheduler, stepped after every optimisation step;
        by default :func:`build_scheduler`.
    transform : callable, optional
        Applied to each input batch on the device before the forward pass (augmentation).
    callbacks : callables ``f(epoch, history, model)``; one returning True stops training.

    Distributed data parallelism
    ----------------------------
    Under ``torchrun``, after :func:`course_lib.distributed.init_from_env`, every rank draws the
    same seeded permutation, keeps its share of each global batch of ``config.batch_size`` and
    weights its loss by its share, so the weights and the History (global values) are the same on
    every rank and equal, up to rounding, to a one-process run (for a loss that is a mean over
    examples; not for batch-norm statistics, dropout or ``transform`` randomness). ``model`` is
    trained in place and stays a plain module; progress shows on rank 0; callbacks run on every
    rank and training stops when any asks. A DataLoader needs a ``DistributedSampler``. Details
    and caveats: :mod:`course_lib.distributed`.
    """
    cfg = config or TrainConfig()
    device = get_device(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.to(device)
    ddp = distributed.is_distributed()
    if ddp:
        distributed.check_train_data(train_data, device)
    optimizer = optimizer or build_optimizer(model, cfg)
    scheduler = scheduler or build_scheduler(optimizer, cfg, _steps_per_epoch(train_data, cfg.batch_size))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    net = distributed.wrap(model, device) if ddp else model   # ``model`` stays the plain module
    gen = torch.Generator().manual_seed(cfg.seed)      # same seed, same permutation on every rank
    split = ddp and _is_tensor_pair(train_data)        # else a DistributedSampler splits the data
    hist, best, best_state, bad_epochs = History(), float("inf"), None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="epochs", leave=False,
               disable=not cfg.progress or not distributed.is_main())
    for epoch in bar:
        t0, seen, loss_sum, correct, has_acc = time.perf_counter(), 0, 0.0, 0, True
        net.train()
        if ddp and hasattr(getattr(train_data, "sampler", None), "set_epoch"):
            train_data.sampler.set_epoch(epoch)            # a new DistributedSampler shuffle per epoch
        for xb, yb in batches(train_data, cfg.batch_size, device, shuffle=True, generator=gen):
            xb, yb, n = distributed.shard_batch(xb, yb) if split else (xb, yb, len(yb))
            if transform is not None:
                xb = transform(xb)
            with autocast(device, cfg.amp):
                out = net(xb)
                loss = loss_fn(out, yb)
            c = _correct(out, yb)
            if ddp:                                    # global values, identical on every rank
                loss, batch_loss, n, c = distributed.reduce_step(loss, n, c)
            else:
                batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"loss became {batch_loss} at epoch {epoch}; lower the "
                                         f"learning rate (lr={cfg.lr}) or enable grad_clip.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            seen, loss_sum = seen + n, loss_sum + batch_loss * n
            hist.step_loss.append(batch_loss)
            has_acc, correct = has_acc and c is not None, correct + (c or 0)
        hist.epoch.append(epoch)
        hist.train_loss.append(loss_sum / seen)
        hist.train_acc.append(correct / seen if has_acc else None)
        if val_data is not None:
            ev = evaluate(model, val_data, loss_fn, device, amp=cfg.amp, ddp=ddp)
            hist.val_loss.append(ev["loss"])
            hist.val_acc.append(ev["accuracy"])
        hist.seconds.append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.4f}",
                        **({"val_loss": f"{hist.val_loss[-1]:.4f}"} if val_data is not None else {}))
        monitored = hist.val_loss[-1] if val_data is not None else hist.train_loss[-1]
        if monitored < best:
            best, bad_epochs, hist.best_epoch = monitored, 0, epoch
            if cfg.patience is not None:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        stop = any(cb(epoch, hist, model) for cb in callbacks)
        stop = stop or (cfg.patience is not None and bad_epochs > cfg.patience)
        if ddp:                                        # all ranks stop together, or none does
            stop = distributed.any_rank(stop)
        if stop:
            break
    if best_state is not None:                      # early stopping keeps the best weights
        model.load_state_dict(best_state)
    return hist
