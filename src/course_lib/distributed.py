"""Data-parallel training across processes: one model copy per process, gradients averaged.

One concept: *distributed data parallelism* (DDP). Every process ("rank") holds a full copy of the
model. Each optimisation step, the global batch of ``config.batch_size`` examples is split across
the ranks, each rank runs forward and backward on its share, and the gradients are summed across
ranks (all-reduce) and divided by the number of ranks before every rank takes the *same* optimiser
step. The weights therefore stay identical on every rank, and — when the loss is a mean over
examples and each rank's loss is weighted by its share of the global batch — the step is exactly
the step that one process would take on the whole global batch. Scaling the number of processes
then changes the speed, not the result (Goyal et al. scale the *global* batch and the learning
rate together; here the global batch is kept fixed).

:func:`course_lib.train.fit` needs no change of code to run this way: start the same script with
``torchrun`` instead of ``python``, call :func:`init_from_env` once at the top, and ``fit`` sees
the process group, wraps the model in :class:`torch.nn.parallel.DistributedDataParallel`, draws the
same seeded permutation on every rank and gives each rank its share of every global batch.

This module holds the primitives only (the process group, :func:`shard`, :func:`loss_weight`,
reductions) and the four functions ``fit`` calls in its DDP branches (:func:`check_train_data`,
:func:`wrap`, :func:`shard_batch`, :func:`reduce_step`); it imports nothing else of ``course_lib``.
The ``torchrun`` commands, a demo to run under them and a launcher for notebooks live in
:mod:`course_lib.launch`.

Caveats
-------
- **Batch normalisation** computes its batch statistics per rank (on the local share of the
  batch), so a model with ``nn.BatchNorm*`` layers does not reproduce the single-process run;
  ``nn.SyncBatchNorm.convert_sync_batchnorm(model)`` (CUDA only) computes them across ranks.
  DDP also copies rank 0's buffers (running means) to every rank before each forward pass.
- **Dropout** and random augmentation (``fit(..., transform=...)``) draw from each rank's own
  random generator, so their masks differ from a single-process run: training is equally valid
  but not bitwise comparable. Seed every rank (``torch.manual_seed``) for reproducible runs.
- Losses that couple the examples of a batch (contrastive InfoNCE, batch-norm) see only the local
  share: a data-parallel run is then a different (smaller per-rank batch) objective.
- Every rank must call the same collective operations in the same order: :func:`course_lib.train.fit`
  takes care of that (same number of steps on every rank, a zero-weighted forward pass on a rank
  whose share of the last batch is empty, early stopping decided together).

References
----------
- Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
  VLDB 2020. arXiv:2006.15704
- Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017.
  arXiv:1706.02677
- PyTorch, ``torchrun`` (elastic launch): https://pytorch.org/docs/stable/elastic/run.html
- Karpathy, nanoGPT ``train.py`` (DDP in a few explicit branches): https://github.com/karpathy/nanoGPT
"""
from __future__ import annotations

import datetime
import hashlib
import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "local_rank", "is_main",
           "shard", "loss_weight", "all_reduce_sum", "broadcast", "barrier", "cleanup",
           "uses_distributed_sampler", "weights_checksum", "check_train_data", "wrap", "shard_batch",
           "reduce_step", "any_rank", "eval_share"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------------------------
# The process group
# --------------------------------------------------------------------------------------------
def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set; start the script with "
                             "torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer.") from None


def init_from_env(backend: str | None = None, timeout_s: float = 600.0) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun`` for every process it starts). Without ``RANK`` and ``WORLD_SIZE`` in the
    environment (a plain ``python`` run, a notebook) it does nothing and returns False, so the same
    script runs with and without ``torchrun``. Calling it again once joined is a no-op.

    Parameters
    ----------
    backend : {"nccl", "gloo"}, optional
        Default: ``"nccl"`` when CUDA is available (one GPU per process), else ``"gloo"`` (CPU).
    timeout_s : float, default=600
        How long a collective operation waits for the other ranks before failing.

    Returns
    -------
    bool
        True when this process is now part of a process group.

    Raises
    ------
    ValueError
        If a variable is malformed (``RANK`` outside ``[0, WORLD_SIZE)``, ...), the backend is
        unknown, or ``nccl`` is asked for without CUDA.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_available():
        raise RuntimeError("this build of PyTorch has no torch.distributed support.")
    world, rank_ = _env_int("WORLD_SIZE"), _env_int("RANK")
    local = _env_int("LOCAL_RANK", default=rank_)
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world} must be a positive integer.")
    if not 0 <= rank_ < world:
        raise ValueError(f"RANK={rank_} must lie in [0, WORLD_SIZE={world}).")
    if local < 0:
        raise ValueError(f"LOCAL_RANK={local} must be a non-negative integer.")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(f"environment variable {name} is not set; torchrun sets it, or set "
                             "MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 yourself.")
    _env_int("MASTER_PORT")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend={backend!r}; expected 'nccl' (GPUs) or 'gloo' (CPU).")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA, which is not available here; use backend='gloo'.")
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} "
                             "GPU(s); start at most that many processes per node (--nproc_per_node).")
        torch.cuda.set_device(local)         # "cuda" now means this rank's GPU, e.g. in get_device()
    dist.init_process_group(backend, rank=rank_, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return True


def is_distributed() -> bool:
    """True inside a process group of more than one process (what :func:`~course_lib.train.fit` checks)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's index in ``[0, world_size())``; 0 outside a process group."""
    return _group_rank()


def _group_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group; 1 outside a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's index on its own machine (``LOCAL_RANK``, which picks its GPU); 0 by default."""
    return _env_int("LOCAL_RANK", default=0)


def is_main() -> bool:
    """True on rank 0, the process that prints, saves files and shows progress bars."""
    return rank() == 0


def cleanup() -> None:
    """Leave the process group (call once at the end of a ``torchrun`` script); safe to call always."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# --------------------------------------------------------------------------------------------
# Splitting a global batch, weighting the loss, reducing numbers
# --------------------------------------------------------------------------------------------
def shard(x, rank: int | None = None, world: int | None = None):
    """This rank's contiguous share of ``x`` along its first axis.

    The ``N`` rows are cut into ``world`` contiguous blocks of ``N // world`` or ``N // world + 1``
    rows, the larger ones first (``torch.tensor_split``), so the blocks put back in rank order are
    ``x`` again. A rank's block is empty when ``N < world``.

    Parameters
    ----------
    x : Tensor or ndarray of shape (N, ...)
    rank, world : int, optional
        Default: this process's :func:`rank` and :func:`world_size`.

    Returns
    -------
    Tensor or ndarray of shape (n_rank, ...)
        A view of ``x``.

    Examples
    --------
    >>> shard(torch.arange(5), rank=0, world=2), shard(torch.arange(5), rank=1, world=2)
    (tensor([0, 1, 2]), tensor([3, 4]))
    """
    rank = _group_rank() if rank is None else rank
    world = world_size() if world is None else world
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise ValueError(f"world={world!r} must be a positive integer.")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world:
        raise ValueError(f"rank={rank!r} must be an integer in [0, world={world}).")
    if not hasattr(x, "shape") or len(x.shape) == 0:
        raise ValueError(f"x must be a tensor or array with a first (batch) axis; got {type(x).__name__}"
                         + (f" of shape {tuple(x.shape)}" if hasattr(x, "shape") else "") + ".")
    n = x.shape[0]
    start = rank * (n // world) + min(rank, n % world)              # same blocks as tensor_split
    return x[start:start + n // world + (rank < n % world)]


def loss_weight(local_n: int, global_n: int, world: int) -> float:
    """Factor for a rank's mean loss so that DDP's *averaged* gradient is the global-batch mean.

    DDP averages gradients over the ``world`` ranks. With ``loss_r`` the mean over a rank's
    ``local_n`` examples, ``(1/world) * sum_r (local_n_r * world / global_n) * grad(loss_r)`` is
    ``(1/global_n) * sum_i grad(loss_i)``: the gradient of the mean over the whole global batch.
    The factor is 1 when the batch splits evenly and 0 for a rank with no examples.
    """
    if global_n < 1:
        raise ValueError(f"global_n={global_n} must be positive: a global batch has examples.")
    return local_n * world / global_n


def _reduce_device(t: torch.Tensor) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks, returned on ``t``'s device (``t`` itself is not modified).

    Outside a process group it returns ``t`` unchanged. With the ``nccl`` backend a CPU tensor is
    moved to this rank's GPU for the reduction and back.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    out = t.detach().to(_reduce_device(t), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s value of ``t`` on every rank (a copy; ``t`` unchanged); ``t`` outside a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    out = t.detach().to(_reduce_device(t), copy=True)
    dist.broadcast(out, src=src)
    return out.to(t.device)


def uses_distributed_sampler(loader) -> bool:
    """True when ``loader`` (a DataLoader) draws its indices from a ``DistributedSampler``."""
    from torch.utils.data.distributed import DistributedSampler

    samplers = (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None))
    return any(isinstance(s, DistributedSampler) for s in samplers)


def weights_checksum(model) -> str:
    """SHA-256 of a model's state dict (names, shapes, bytes): equal only for bitwise-equal weights.

    Parameters
    ----------
    model : nn.Module or dict of str to Tensor
        A model or its ``state_dict()``.
    """
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The four places where course_lib.train.fit branches on DDP
# --------------------------------------------------------------------------------------------
def _is_tensor_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)


def check_train_data(train_data, device: torch.device) -> None:
    """Refuse, with the fix in the message, training data and devices that DDP cannot split.

    Tensors ``(x, y)`` are split by :func:`shard_batch`; a DataLoader needs a ``DistributedSampler``.
    """
    if not _is_tensor_pair(train_data) and not uses_distributed_sampler(train_data):
        raise ValueError(
            f"train_data is a {type(train_data).__name__} without a DistributedSampler, but this is a "
            f"distributed run (world size {world_size()}): every rank would train on the "
            "same batches, and the ranks could take different numbers of steps. Pass tensors "
            "(x, y) — fit then splits each global batch across the ranks — or build the loader with "
            "sampler=torch.utils.data.distributed.DistributedSampler(dataset) (its batch_size is "
            "then per rank; fit calls sampler.set_epoch every epoch).")
    if dist.get_backend() == "nccl" and torch.device(device).type != "cuda":
        raise ValueError(f"device={str(device)!r} but the process group uses nccl, which needs CUDA "
                         "tensors; use the GPU of this rank or init_from_env(backend='gloo').")


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)``; it copies rank 0's weights and buffers to every rank."""
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index])
    return DistributedDataParallel(model)


def shard_batch(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """This rank's share of a global batch ``(B, ...)``, and its example count ``n``.

    Every rank draws the same global batch and keeps its :func:`shard`. A rank whose share is empty
    (a last batch smaller than the world size) gets one example of the batch with ``n = 0``: its
    forward and backward pass still run, weighted by zero (:func:`reduce_step`), so that DDP's
    gradient all-reduce, which every rank must join, does not wait for it forever.
    """
    xs, ys = shard(xb), shard(yb)                                # (B, ...) -> (B_rank, ...)
    return (xs, ys, len(ys)) if len(ys) else (xb[:1], yb[:1], 0)


def reduce_step(loss: torch.Tensor, n_local: int, correct: int | None):
    """All-reduce one step's loss, example and correct counts; weight the loss for DDP's average.

    Returns
    -------
    loss : Tensor
        This rank's loss times :func:`loss_weight`, to back-propagate.
    mean_loss : float
        The global mean loss of the step (the same on every rank).
    n : int
        Examples in the global batch.
    correct : int or None
        Correct predictions in the global batch; None unless every rank has class logits.
    """
    local_sum = loss.item() * n_local if n_local else 0.0       # a zero-weighted stand-in adds nothing
    stats = torch.tensor([local_sum, n_local, (correct or 0) if n_local else 0, float(correct is None)],
                         dtype=torch.float64)
    loss_sum, n, total_correct, no_acc = all_reduce_sum(stats).tolist()
    n = int(n)
    return (loss * loss_weight(n_local, n, world_size()), loss_sum / n, n,
            None if no_acc else int(total_correct))


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (all stop together, or none does)."""
    return all_reduce_sum(torch.tensor([float(flag)])).item() > 0


def eval_share(data):
    """This rank's part of an evaluation set, and how to combine the ranks' sums.

    A tensor pair is split across the ranks (:func:`shard`) and the sums are added
    (:func:`all_reduce_sum`), as are the batches of a loader with a ``DistributedSampler`` (which
    pads the last rank's share with repeated examples); any other iterable is evaluated whole on
    every rank and rank 0's numbers are kept (:func:`broadcast`).
    """
    if _is_tensor_pair(data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} != {len(y)}.")
        if len(x) == 0:
            raise ValueError("empty dataset: got 0 examples.")
        return (shard(x), shard(y)), all_reduce_sum
    return data, (all_reduce_sum if uses_distributed_sampler(data) else broadcast)
