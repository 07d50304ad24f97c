"""Devices, seeds and mixed precision: the three things every chapter sets up first.

One concept: *where* a computation runs and *how reproducibly*. Every other module of
``course_lib`` takes a ``device`` argument and never calls ``.cuda()`` itself; notebooks call
:func:`setup` once (profile, device, seed, one line describing the run) and pass the device around.

References
----------
- PyTorch notes on reproducibility: https://pytorch.org/docs/stable/notes/randomness.html
- Automatic mixed precision: https://pytorch.org/docs/stable/amp.html
- Micikevicius et al., "Mixed Precision Training", ICLR 2018. arXiv:1710.03740
"""
from __future__ import annotations

import contextlib
import os
import random
import sys

from typing import NamedTuple

import numpy as np
import torch

from . import settings

__all__ = ["get_device", "seed_everything", "autocast", "describe", "setup", "Run"]

_VALID = ("cuda", "mps", "cpu")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Pick the best available device: CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    prefer : str or torch.device, optional
        Force a device ("cpu", "cuda", "cuda:1", "mps"). The environment variable
        ``COURSE_DEVICE`` plays the same role when ``prefer`` is None.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the requested device is unknown or not available on this machine.
    """
    prefer = prefer if prefer is not None else settings.device_name()
    if prefer is not None:
        try:
            dev = torch.device(prefer) if not isinstance(prefer, torch.device) else prefer
        except RuntimeError:
            raise ValueError(f"device={str(prefer)!r} is not a device; expected one of {_VALID}, "
                             "optionally with an index such as 'cuda:1'.") from None
        if dev.type not in _VALID:
            raise ValueError(f"device={str(prefer)!r} is not supported; expected one of {_VALID}.")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(prefer)!r} was requested but CUDA is not available here; "
                             "use device='cpu' or run on a GPU machine (e.g. Colab: Runtime > "
                             "Change runtime type > GPU).")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device={str(prefer)!r} was requested but Apple MPS is not available.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy, PyTorch (all devices) and TensorFlow when it is already imported.

    Parameters
    ----------
    seed : int
        A non-negative integer.
    deterministic : bool, default=False
        Also ask PyTorch for deterministic kernels (slower on GPU; some ops then raise).

    Returns
    -------
    int
        The seed, so that ``seed = seed_everything(0)`` reads well in a notebook.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "tensorflow" in sys.modules:  # never import TF just to seed it: it is slow and optional
        sys.modules["tensorflow"].random.set_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


def autocast(device: torch.device | str, enabled: bool = True):
    """Mixed-precision context for the forward pass: bfloat16/float16 on GPU, a no-op on CPU.

    On CUDA it uses bfloat16 when the GPU supports it (no loss scaling needed), else float16
    (pair it with :class:`torch.amp.GradScaler`, as :func:`course_lib.train.fit` does).
    On CPU and MPS it returns a null context: CPU autocast rarely speeds up the small models of
    this course and changes the numbers.

    Parameters
    ----------
    device : torch.device or str
    enabled : bool, default=True
    """
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def describe(device: torch.device | str | None = None) -> str:
    """One line naming the device, for the top of each notebook."""
    device = get_device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
        mem = torch.cuda.get_device_properties(idx).total_memory / 2**30
        return f"cuda:{idx} ({name}, {mem:.0f} GiB), torch {torch.__version__}"
    if device.type == "mps":
        return f"mps (Apple GPU), torch {torch.__version__}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads), torch {torch.__version__}"


class Run(NamedTuple):
    """What :func:`setup` chose: ``profile, device = setup(0)``."""
    profile: str
    device: torch.device


def setup(seed: int = 0, device: str | torch.device | None = None, quiet: bool = False) -> Run:
    """The first cell of every chapter: read the profile, pick the device, seed everything, and
    print one line saying what this run is (profile, device, network, data mirror).

    Parameters
    ----------
    seed : int, default=0
        Passed to :func:`seed_everything`.
    device : str or torch.device, optional
        As in :func:`get_device` (default: ``COURSE_DEVICE``, else the best available).
    quiet : bool, default=False
        Do not print the line.

    Returns
    -------
    Run
        ``(profile, device)``.
    """
    run = Run(settings.get_profile(), get_device(device))
    seed_everything(seed)
    if not quiet:
        print(f"{settings.summary()} | device: {describe(run.device)}")
    return run
