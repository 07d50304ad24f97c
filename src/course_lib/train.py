"""One readable fit/evaluate loop that every chapter reuses.

Model-agnostic in the spirit of minGPT's ``trainer.py``: nothing here knows about CNNs,
autoencoders or BERT. A model maps a batch of inputs to an output; a loss function compares that
output with the targets. Classification accuracy is reported when the output is a matrix of class
logits and the targets are integer labels.

Data may be given as a pair of tensors ``(x, y)`` — then the whole set is moved to the device once
and shuffled there with a seeded generator (fast, reproducible) — or as any iterable of
``(inputs, targets)`` batches such as a :class:`torch.utils.data.DataLoader`.

The same loop runs unchanged in several processes started by ``torchrun`` (data parallelism, see
:mod:`course_lib.distributed`): when a process group of more than one process exists, :func:`fit`
gives each process its share of every global batch and averages the gradients with
:class:`~torch.nn.parallel.DistributedDataParallel`, and the result equals the one-process run.

References
----------
- Karpathy, minGPT ``trainer.py``: https://github.com/karpathy/minGPT
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

__all__ = ["TrainConfig", "History", "fit", "evaluate", "predict", "batches"]


@dataclass
class TrainConfig:
    epochs: int = 5              # full passes over the training data
    batch_size: int = 128        # examples per gradient step (tensor data only)
    lr: float = 1e-3             # peak learning rate
    optimizer: str = "adam"      # "adam", "adamw" or "sgd" (momentum 0.9)
    schedule: str = "constant"   # "constant", "onecycle" (warm up then anneal) or "cosine"
    warmup: float = 0.0          # fraction of steps with linear warm-up ("cosine" only)
    weight_decay: float = 0.0    # L2 penalty (decoupled for adamw)
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


def batches(data, batch_size: int, device, shuffle: bool = False, generator=None) -> Iterable:
    """Yield ``(inputs, targets)`` batches on ``device`` from a tensor pair or an iterable."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} != {len(y)}.")
        if len(x) == 0:
            raise ValueError("empty dataset: got 0 examples.")
        x, y = x.to(device), y.to(device)            # once per call, not per batch
        order = (torch.randperm(len(x), generator=generator).to(device) if shuffle
                 else torch.arange(len(x), device=device))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
    else:
        for xb, yb in data:
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def _is_tensor_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)


def _accuracy_terms(out, y):
    """Correct count for class logits ``(B, C)`` against integer targets ``(B,)``, else None."""
    if torch.is_tensor(out) and out.ndim == 2 and y.ndim == 1 and not y.is_floating_point():
        return (out.argmax(dim=1) == y).sum().item()
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn: Callable | None = None, device=None,
             batch_size: int = 1024, amp: bool = False) -> dict:
    """Mean loss (and accuracy for classifiers) of ``model`` on ``data``, in eval mode.

    No communication between processes: under ``torchrun`` each rank that calls it evaluates all
    of ``data`` (so rank 0 may call it alone); :func:`fit` splits its validation across the ranks.
    """
    device = get_device(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    was_training = model.training
    model.eval()                                     # dropout off, batch-norm running stats
    loss_sum, total, correct, has_acc = _evaluate_sums(model, data, loss_fn, device, batch_size, amp)
    model.train(was_training)
    return {"loss": loss_sum / total, "accuracy": correct / total if has_acc else None}


def _evaluate_sums(model, data, loss_fn, device, batch_size, amp):
    """``(loss summed over examples, examples, correct, has_acc)`` of an eval-mode ``model``."""
    total, loss_sum, correct, has_acc = 0, 0.0, 0, True
    for xb, yb in batches(data, batch_size, device):
        with autocast(device, amp):
            out = model(xb)
            loss = loss_fn(out, yb)
        n = len(yb)
        total, loss_sum = total + n, loss_sum + loss.item() * n
        c = _accuracy_terms(out, yb)
        has_acc = has_acc and c is not None
        correct += c or 0
    return loss_sum, total, correct, has_acc


@torch.no_grad()
def _evaluate_ddp(model, data, loss_fn, device, batch_size: int = 1024, amp: bool = False) -> dict:
    """:func:`evaluate` inside :func:`fit` under DDP: the same numbers on every rank.

    A tensor pair is split across the ranks and the sums are all-reduced, as is a loader with a
    ``DistributedSampler`` (which pads the last rank's share with repeated examples); any other
    iterable is evaluated whole on every rank and rank 0's numbers are kept.
    """
    was_training = model.training
    model.eval()
    if _is_tensor_pair(data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} != {len(y)}.")
        if len(x) == 0:
            raise ValueError("empty dataset: got 0 examples.")
        part = (distributed.shard(x), distributed.shard(y))           # this rank's rows
        sums = (_evaluate_sums(model, part, loss_fn, device, batch_size, amp) if len(part[0])
                else (0.0, 0, 0, True))
        reduce = distributed.all_reduce_sum
    else:
        sums = _evaluate_sums(model, data, loss_fn, device, batch_size, amp)
        reduce = distributed.all_reduce_sum if distributed.uses_distributed_sampler(data) else distributed.broadcast
    model.train(was_training)
    stats = torch.tensor([*sums[:3], float(not sums[3])], dtype=torch.float64)  # loss sum, n, correct, no acc
    loss_sum, total, correct, no_acc = reduce(stats).tolist()
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


def _make_optimizer(model, cfg: TrainConfig, params=None):
    """The optimizer named by ``cfg.optimizer`` over ``params`` (default: the trainable parameters;
    or parameter groups, each with its own ``lr``, as ``course_lib.finetune`` builds them)."""
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    if not params:
        raise ValueError("the model has no trainable parameters (all requires_grad=False).")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_scheduler(optimizer, cfg: TrainConfig, train_data):
    """Per-step learning-rate schedule from ``cfg.schedule`` (None for "constant")."""
    if cfg.schedule == "constant":
        return None
    if isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        per_epoch = math.ceil(len(train_data[0]) / cfg.batch_size)
    else:
        per_epoch = len(train_data)                  # a DataLoader knows its length
    total = per_epoch * cfg.epochs
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    warm = int(cfg.warmup * total)

    def factor(step):                                 # linear warm-up, then cosine to zero
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epoch_batches(data, batch_size: int, device, generator, ddp: bool):
    """``(inputs, targets, n)`` for every step of an epoch; ``n`` counts this rank's examples.

    Under DDP every rank draws the same permutation from the same seeded ``generator``, builds the
    same global batch and keeps its :func:`~course_lib.distributed.shard`. A rank whose share is
    empty (a last batch smaller than the world size) gets one example of the batch with ``n = 0``:
    its forward and backward pass still run, weighted by zero, so that DDP's gradient all-reduce,
    which every rank must join, does not wait for it forever.
    """
    tensors = _is_tensor_pair(data)
    for xb, yb in batches(data, batch_size, device, shuffle=True, generator=generator):
        if not (ddp and tensors):                    # one process, or a DistributedSampler's batch
            yield xb, yb, len(yb)
            continue
        xs, ys = distributed.shard(xb), distributed.shard(yb)          # (B, ...) -> (B_rank, ...)
        yield (xs, ys, len(ys)) if len(ys) else (xb[:1], yb[:1], 0)


def _ddp_step_terms(loss, n_local: int, c, world: int):
    """All-reduce one step's loss, example and correct counts; weight the loss for DDP's average.

    Returns the weighted loss to back-propagate, and the global mean loss, example count and
    correct count (None unless every rank has class logits), which are the same on every rank.
    """
    local_sum = loss.item() * n_local if n_local else 0.0   # a zero-weighted stand-in adds nothing
    stats = torch.tensor([local_sum, n_local, (c or 0) if n_local else 0, float(c is None)],
                         dtype=torch.float64)
    loss_sum, n, correct, no_acc = distributed.all_reduce_sum(stats).tolist()
    n = int(n)
    return (loss * distributed.loss_weight(n_local, n, world), loss_sum / n, n,
            None if no_acc else int(correct))


def _check_ddp(train_data, device):
    if not _is_tensor_pair(train_data) and not distributed.uses_distributed_sampler(train_data):
        raise ValueError(
            f"train_data is a {type(train_data).__name__} without a DistributedSampler, but this is a "
            f"distributed run (world size {distributed.world_size()}): every rank would train on the "
            "same batches, and the ranks could take different numbers of steps. Pass tensors "
            "(x, y) — fit then splits each global batch across the ranks — or build the loader with "
            "sampler=torch.utils.data.distributed.DistributedSampler(dataset) (its batch_size is "
            "then per rank; fit calls sampler.set_epoch every epoch).")
    if torch.distributed.get_backend() == "nccl" and device.type != "cuda":
        raise ValueError(f"device={str(device)!r} but the process group uses nccl, which needs CUDA "
                         "tensors; use the GPU of this rank or init_from_env(backend='gloo').")


def _wrap_ddp(model: nn.Module, device) -> nn.Module:
    """``DistributedDataParallel(model)``; it copies rank 0's weights and buffers to every rank."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index])
    return DistributedDataParallel(model)


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
        Overrides the one built from ``config`` (e.g. per-layer learning rates).
    scheduler : optional learning-rate scheduler, stepped after every optimisation step;
        by default built from ``config.schedule``.
    transform : callable, optional
        Applied to each input batch on the device before the forward pass (augmentation).
    callbacks : callables ``f(epoch, history, model)``; one returning True stops training.

    Distributed data parallelism
    ----------------------------
    Under ``torchrun``, after :func:`course_lib.distributed.init_from_env`, ``fit`` wraps ``model``
    in :class:`~torch.nn.parallel.DistributedDataParallel` (which first copies rank 0's weights
    to every rank). Every rank draws the same seeded permutation; each global batch of
    ``config.batch_size`` examples is split across the ranks, and each rank's mean loss is weighted
    by ``local_n * world / global_n`` so that DDP's averaged gradient is the mean over the global
    batch, the last uneven batch included. The weights, the History (``train_loss``, ``train_acc``,
    ``step_loss``, ``val_*``: global values) and early-stopping decisions are therefore the same on
    every rank and equal, up to floating-point rounding, to a one-process run with the same global
    batch — for a loss that is a mean over examples. The model you passed is trained in place and
    stays a plain module. Progress bars show on rank 0 only; callbacks run on every rank (save
    files only when ``distributed.is_main()``), and training stops when any rank's callback asks.
    ``train_data`` given as a DataLoader needs a ``DistributedSampler``. Not reproduced exactly:
    ``nn.BatchNorm*`` statistics (per rank; use ``nn.SyncBatchNorm.convert_sync_batchnorm``),
    dropout and ``transform`` randomness (each rank's own generator), and losses that couple the
    examples of a batch. Every parameter that requires a gradient must receive one in each step.
    """
    cfg = config or TrainConfig()
    device = get_device(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.to(device)
    ddp = distributed.is_distributed()
    if ddp:
        _check_ddp(train_data, device)
    optimizer = optimizer or _make_optimizer(model, cfg)
    scheduler = scheduler or _make_scheduler(optimizer, cfg, train_data)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    net = _wrap_ddp(model, device) if ddp else model   # ``model`` stays the plain module
    gen = torch.Generator().manual_seed(cfg.seed)      # same seed, same permutation on every rank
    hist, best, best_state, bad_epochs = History(), float("inf"), None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="epochs", disable=not cfg.progress or not distributed.is_main(),
               leave=False)
    for epoch in bar:
        t0, seen, loss_sum, correct, has_acc = time.perf_counter(), 0, 0.0, 0, True
        net.train()
        if ddp and hasattr(getattr(train_data, "sampler", None), "set_epoch"):
            train_data.sampler.set_epoch(epoch)            # a new DistributedSampler shuffle per epoch
        for xb, yb, n in _epoch_batches(train_data, cfg.batch_size, device, gen, ddp):
            if transform is not None:
                xb = transform(xb)
            with autocast(device, cfg.amp):
                out = net(xb)
                loss = loss_fn(out, yb)
            c = _accuracy_terms(out, yb)
            if ddp:                                    # global values, identical on every rank
                loss, batch_loss, n, c = _ddp_step_terms(loss, n, c, distributed.world_size())
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
            has_acc = has_acc and c is not None
            correct += c or 0
        hist.epoch.append(epoch)
        hist.train_loss.append(loss_sum / seen)
        hist.train_acc.append(correct / seen if has_acc else None)
        if val_data is not None:
            ev = (_evaluate_ddp(model, val_data, loss_fn, device, amp=cfg.amp) if ddp
                  else evaluate(model, val_data, loss_fn, device, amp=cfg.amp))
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
            stop = distributed.all_reduce_sum(torch.tensor([float(stop)])).item() > 0
        if stop:
            break
    if best_state is not None:                      # early stopping keeps the best weights
        model.load_state_dict(best_state)
    return hist
