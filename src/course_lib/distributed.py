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

Commands (see :func:`commands`)::

    # one machine, 2 CPU processes (gloo) or 2 GPUs (nccl): the fine-tuning chapter runs this
    torchrun --standalone --nproc_per_node=2 -m course_lib.distributed --epochs 1 --out result.json
    # one machine with 8 GPUs
    torchrun --standalone --nproc_per_node=8 -m course_lib.distributed --epochs 3 --out result.json
    # two machines with 8 GPUs each: run on both, --node_rank=0 on HOST and --node_rank=1 on the other
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --rdzv_id=course --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m course_lib.distributed --epochs 3 --out result.json

From Python (a notebook cannot be ``torchrun`` itself): :func:`launch` runs the command above as a
subprocess and returns rank 0's JSON; :func:`compare_single_vs_ddp` trains the same model in this
process and under ``torchrun`` and reports the largest weight difference.

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

import argparse
import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "local_rank", "is_main",
           "shard", "loss_weight", "all_reduce_sum", "broadcast", "barrier", "cleanup",
           "uses_distributed_sampler", "commands", "free_port", "weights_checksum", "train_digits",
           "launch", "compare_single_vs_ddp", "main"]

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
# Commands, demo, launcher
# --------------------------------------------------------------------------------------------
def commands(script: str = "-m course_lib.distributed --epochs 3 --out result.json",
             gpus_per_node: int = 8, nodes: int = 2, host: str = "HOST", port: int = 29500) -> str:
    """The ``torchrun`` command lines for one machine (CPU or GPUs) and for several machines.

    Parameters
    ----------
    script : str
        What follows ``torchrun``'s own options: ``-m module ARGS`` or ``train.py ARGS``.
    gpus_per_node, nodes : int
    host, port : str, int
        Address of the first machine (``--node_rank=0``), reachable from every machine.
    """
    return "\n".join([
        "# one machine, 2 processes (gloo on CPU, nccl on 2 GPUs)",
        f"torchrun --standalone --nproc_per_node=2 {script}",
        f"# one machine, {gpus_per_node} GPUs",
        f"torchrun --standalone --nproc_per_node={gpus_per_node} {script}",
        f"# {nodes} machines x {gpus_per_node} GPUs: run on every machine, with --node_rank=0 on "
        f"{host} and " + ("--node_rank=1 on the other" if nodes == 2 else f"--node_rank=1..{nodes - 1} on the others"),
        f"torchrun --nnodes={nodes} --nproc_per_node={gpus_per_node} --node_rank=0 --rdzv_id=course "
        f"--rdzv_backend=c10d --rdzv_endpoint={host}:{port} {script}",
    ])


def free_port() -> int:
    """A TCP port that is free on this machine now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_model(name: str, seed: int) -> torch.nn.Module:
    from torch import nn

    torch.manual_seed(seed)                      # same initial weights on every rank (DDP also
    if name == "mlp":                            # copies rank 0's weights to the others)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "lenet":
        from .cnn import LeNet, LeNetConfig      # 8x8 digits: (B, 1, 8, 8) -> (B, 16, 2, 2)
        return LeNet(LeNetConfig(image_size=8, channels=(8, 16), kernel=3, hidden=32, dropout=0.0))
    raise ValueError(f"model={name!r}; expected 'mlp' or 'lenet'.")


def train_digits(epochs: int = 1, batch_size: int = 100, lr: float = 1e-2, optimizer: str = "adam",
                 schedule: str = "constant", model: str = "mlp", seed: int = 0,
                 progress: bool = False, device=None) -> tuple[torch.nn.Module, dict]:
    """Train a small classifier on scikit-learn's real 8x8 digits with :func:`course_lib.train.fit`.

    The same function runs in one process and under ``torchrun`` (the demo of ``python -m
    course_lib.distributed``); it does not know which. 1,437 training images, 360 held out.

    Parameters
    ----------
    epochs, batch_size, lr, optimizer, schedule, seed
        As in :class:`course_lib.train.TrainConfig`; ``batch_size`` is the *global* batch.
    model : {"mlp", "lenet"}
        A 64-64-10 MLP, or a small LeNet for 8x8 images (no dropout, so runs stay comparable).

    Returns
    -------
    model : nn.Module
        The trained, plain (unwrapped) model.
    result : dict
        ``world_size``, ``backend``, ``device``, ``train_loss``/``train_acc``/``val_loss``/``val_acc``
        per epoch, ``test_accuracy``, ``steps``, ``seconds``, ``weights_sha256`` and
        ``rank_checksums`` (the checksum on every rank: all equal).
    """
    import numpy as np

    from . import train
    from .data import load_digits
    from .device import get_device

    d = load_digits()
    to_x = lambda a: torch.as_tensor((a / 16.0)[:, None].astype(np.float32))   # (N, 8, 8) -> (N, 1, 8, 8)
    tr = (to_x(d.x_train), torch.as_tensor(d.y_train))
    te = (to_x(d.x_test), torch.as_tensor(d.y_test))
    net = _demo_model(model, seed)
    cfg = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                            schedule=schedule, seed=seed, progress=progress)
    device = get_device(device)
    t0 = time.perf_counter()
    hist = train.fit(net, tr, te, config=cfg, device=device)
    seconds = time.perf_counter() - t0
    final = train.evaluate(net, te, device=device)
    mine = weights_checksum(net)
    sums = [mine]
    if dist.is_available() and dist.is_initialized():
        sums = [None] * world_size()
        dist.all_gather_object(sums, mine)
    result = {
        "world_size": world_size(), "backend": dist.get_backend() if dist.is_initialized() else None,
        "device": str(device), "torch": torch.__version__, "data": d.protocol, "model": model,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
        "schedule": schedule, "seed": seed, "n_train": len(tr[0]), "n_test": len(te[0]),
        "steps": len(hist.step_loss), "train_loss": hist.train_loss, "train_acc": hist.train_acc,
        "val_loss": hist.val_loss, "val_acc": hist.val_acc, "final_train_loss": hist.train_loss[-1],
        "test_loss": final["loss"], "test_accuracy": final["accuracy"], "seconds": seconds,
        "weights_sha256": mine, "rank_checksums": sums,
    }
    return net, result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.distributed",
                                description="Train a small classifier on real 8x8 digits with "
                                            "course_lib.train.fit, in one or many processes.",
                                epilog=commands(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=100, help="global batch (all ranks together)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    p.add_argument("--schedule", default="constant", choices=("constant", "onecycle", "cosine"))
    p.add_argument("--model", default="mlp", choices=("mlp", "lenet"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, choices=("nccl", "gloo"))
    p.add_argument("--device", default=None, help="default: cuda (this rank's GPU) if available, else cpu")
    p.add_argument("--out", default=None, help="JSON file written by rank 0")
    p.add_argument("--weights", default=None, help="file for rank 0's trained state dict (torch.save)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``[torchrun ...] python -m course_lib.distributed [--epochs N] ... --out result.json``."""
    args = _parser().parse_args(argv)
    init_from_env(args.backend or ("gloo" if args.device == "cpu" else None))
    try:
        device = args.device
        if device is None and torch.cuda.is_available() and is_distributed():
            device = f"cuda:{torch.cuda.current_device()}"
        net, result = train_digits(args.epochs, args.batch_size, args.lr, args.optimizer, args.schedule,
                                   args.model, args.seed, progress=is_main(), device=device)
        if is_main():
            if args.weights:
                torch.save({k: v.cpu() for k, v in net.state_dict().items()}, args.weights)
            text = json.dumps(result, indent=2)
            if args.out:
                Path(args.out).write_text(text)
            print(f"world_size={result['world_size']} train_loss={result['final_train_loss']:.4f} "
                  f"test_accuracy={result['test_accuracy']:.4f} seconds={result['seconds']:.1f} "
                  f"weights_sha256={result['weights_sha256'][:12]}", flush=True)
    finally:
        cleanup()
    return 0


def _stop(proc: subprocess.Popen) -> None:
    """End ``proc`` and the processes it started (it leads its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(nproc: int = 2, args: list[str] | tuple = (), timeout: float = 300.0,
           weights: str | Path | None = None) -> dict:
    """Run ``python -m course_lib.distributed ARGS`` under ``torchrun`` and return rank 0's JSON.

    Runs ``sys.executable -m torch.distributed.run --standalone --nproc_per_node=NPROC -m
    course_lib.distributed ARGS --out TMP.json`` in a subprocess — how a notebook, which cannot be
    started by ``torchrun`` itself, runs several processes. On a machine without GPUs the
    processes use the CPU and the gloo backend, one thread each.

    Parameters
    ----------
    nproc : int, default=2
        Processes on this machine (``--nproc_per_node``).
    args : list of str
        Options of the demo, e.g. ``["--epochs", "2", "--optimizer", "sgd"]``.
    timeout : float, default=300
        Seconds before the run is stopped (all its processes) and TimeoutError raised.
    weights : path, optional
        Where rank 0 saves the trained state dict.

    Returns
    -------
    dict
        The JSON written by rank 0 (see :func:`train_digits`), plus ``"command"`` (the argument list)
        and ``"wall_seconds"`` (including process start-up).

    Raises
    ------
    ValueError
        If ``nproc`` is not a positive integer.
    RuntimeError
        If the run fails; the message ends with the last lines of its output.
    TimeoutError
        If it runs longer than ``timeout``.
    """
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc={nproc!r} must be a positive integer.")
    with tempfile.TemporaryDirectory(prefix="course_ddp_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "course_lib.distributed", *map(str, args), "--out", str(out)]
        if weights is not None:
            cmd += ["--weights", str(weights)]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")       # torchrun's own default with nproc > 1
        src = str(Path(__file__).resolve().parents[1])  # this course_lib, also when not installed
        env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise TimeoutError(f"torchrun with nproc={nproc} ran past timeout={timeout} s and was "
                               "stopped; raise timeout or train for fewer epochs.") from None
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(log.strip().splitlines()[-25:])
            raise RuntimeError(f"torchrun exited with status {proc.returncode}:\n{tail}")
        result = json.loads(out.read_text())
    result["command"] = ["torchrun", *cmd[3:-2]]
    result["wall_seconds"] = wall
    return result


def compare_single_vs_ddp(nproc: int = 2, args: list[str] | tuple = ("--epochs", "1"),
                          timeout: float = 300.0) -> dict:
    """Train the demo once in this process and once with ``nproc`` processes; compare the weights.

    Both runs use the CPU (the ``torchrun`` one with the gloo backend), so the comparison means
    the same on any machine: the difference is floating-point rounding only (about 1e-8).

    Parameters
    ----------
    nproc : int, default=2
    args : list of str
        Demo options shared by both runs (see ``python -m course_lib.distributed --help``).
    timeout : float
        For the ``torchrun`` run, as in :func:`launch`.

    Returns
    -------
    dict
        ``single`` and ``ddp`` (each run's result dict), ``max_abs_weight_diff`` (largest
        ``|w_single - w_ddp|`` over all weights), ``max_abs_train_loss_diff`` (over the epochs),
        ``same_test_accuracy`` (bool) and ``ranks_identical`` (every rank held the same weights).
    """
    ns = _parser().parse_args([str(a) for a in args])   # the same options, for the in-process run
    with tempfile.TemporaryDirectory(prefix="course_ddp_") as tmp:
        path = Path(tmp) / "ddp.pt"
        ddp = launch(nproc, list(args) + ["--device", "cpu"], timeout=timeout, weights=path)
        ddp_state = torch.load(path)
    single_model, single = train_digits(ns.epochs, ns.batch_size, ns.lr, ns.optimizer, ns.schedule,
                                        ns.model, ns.seed, device="cpu")
    diff = max((single_model.state_dict()[k].cpu() - v).abs().max().item() for k, v in ddp_state.items())
    return {"single": single, "ddp": ddp, "max_abs_weight_diff": diff,
            "max_abs_train_loss_diff": max(abs(a - b) for a, b in zip(single["train_loss"], ddp["train_loss"])),
            "same_test_accuracy": single["test_accuracy"] == ddp["test_accuracy"],
            "ranks_identical": len(set(ddp["rank_checksums"])) == 1}


if __name__ == "__main__":
    sys.exit(main())
