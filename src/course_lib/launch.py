"""Run training in several processes: the ``torchrun`` commands, a demo, and a launcher for notebooks.

One concept: *starting* a data-parallel run (what :mod:`course_lib.distributed` does inside it).
:func:`course_lib.train.fit` needs no change of code to run in several processes: start the same
script with ``torchrun`` instead of ``python`` and call
:func:`course_lib.distributed.init_from_env` once at the top. ``python -m course_lib.launch`` is
such a script (:func:`train_digits`: a small classifier on scikit-learn's real 8x8 digits).

Commands (see :func:`commands`)::

    # one machine, 2 CPU processes (gloo) or 2 GPUs (nccl): the fine-tuning chapter runs this
    torchrun --standalone --nproc_per_node=2 -m course_lib.launch --epochs 1 --out result.json
    # one machine with 8 GPUs
    torchrun --standalone --nproc_per_node=8 -m course_lib.launch --epochs 3 --out result.json
    # two machines with 8 GPUs each: run on both, --node_rank=0 on HOST and --node_rank=1 on the other
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --rdzv_id=course --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m course_lib.launch --epochs 3 --out result.json

From Python (a notebook cannot be ``torchrun`` itself): :func:`launch` runs the command above as a
subprocess and returns rank 0's JSON; :func:`compare_single_vs_ddp` trains the same model in this
process and under ``torchrun`` and reports the largest weight difference.

References
----------
- PyTorch, ``torchrun`` (elastic launch): https://pytorch.org/docs/stable/elastic/run.html
- Karpathy, nanoGPT ``train.py`` (one script, ``python`` or ``torchrun``): https://github.com/karpathy/nanoGPT
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import train
from .cnn import LeNet, LeNetConfig
from .data import load_digits
from .device import get_device
from .distributed import cleanup, init_from_env, is_distributed, is_main, weights_checksum, world_size

__all__ = ["commands", "free_port", "train_digits", "launch", "compare_single_vs_ddp", "main"]


def commands(script: str = "-m course_lib.launch --epochs 3 --out result.json",
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
    torch.manual_seed(seed)                      # same initial weights on every rank (DDP also
    if name == "mlp":                            # copies rank 0's weights to the others)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "lenet":                          # 8x8 digits: (B, 1, 8, 8) -> (B, 16, 2, 2)
        return LeNet(LeNetConfig(image_size=8, channels=(8, 16), kernel=3, hidden=32, dropout=0.0))
    raise ValueError(f"model={name!r}; expected 'mlp' or 'lenet'.")


def train_digits(epochs: int = 1, batch_size: int = 100, lr: float = 1e-2, optimizer: str = "adam",
                 schedule: str = "constant", model: str = "mlp", seed: int = 0,
                 progress: bool = False, device=None) -> tuple[torch.nn.Module, dict]:
    """Train a small classifier on scikit-learn's real 8x8 digits with :func:`course_lib.train.fit`.

    The same function runs in one process and under ``torchrun`` (the demo of ``python -m
    course_lib.launch``); it does not know which. 1,437 training images, 360 held out.

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
    p = argparse.ArgumentParser(prog="python -m course_lib.launch",
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
    """``[torchrun ...] python -m course_lib.launch [--epochs N] ... --out result.json``."""
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
    """Run ``python -m course_lib.launch ARGS`` under ``torchrun`` and return rank 0's JSON.

    Runs ``sys.executable -m torch.distributed.run --standalone --nproc_per_node=NPROC -m
    course_lib.launch ARGS --out TMP.json`` in a subprocess — how a notebook, which cannot be
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
               "-m", "course_lib.launch", *map(str, args), "--out", str(out)]
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
        Demo options shared by both runs (see ``python -m course_lib.launch --help``).
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
