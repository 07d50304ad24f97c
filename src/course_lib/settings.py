"""Every setting of the course, read from the environment by one rule, documented once.

One concept: *what a run may do and how big it is*. Every module of ``course_lib``, every notebook
and every benchmark reads its settings here, never from ``os.environ`` itself, so that
``COURSE_OFFLINE=true`` means the same thing to the data loaders, to :mod:`course_lib.bert` and to
the benchmarks.

=========================  ==========================  ==============================================
variable                   default                     meaning
=========================  ==========================  ==============================================
``COURSE_PROFILE``         ``full`` on CUDA, else ci   run size: ``ci`` (2 CPU cores, <= 90 s a
                                                       notebook) or ``full`` (the real configuration)
``COURSE_DEVICE``          best available              ``cpu``, ``cuda``, ``cuda:1`` or ``mps``
``COURSE_OFFLINE``         off                         on: never touch the network (data, BERT hub)
``HF_HUB_OFFLINE``         off                         on: no checkpoint from the Hugging Face hub
``COURSE_DATA_DIR``        ``~/.cache/course_lib``     download cache
``COURSE_DATA_MIRROR``     none                        local mirror folder(s), ``os.pathsep``-separated
``COURSE_DATA_TIMEOUT``    30                          seconds before a stalled download is abandoned
``BERT_CHECKPOINT``        the offline package         the benchmarks' BERT checkpoint (folder or hub)
``COURSE_INSTALL_URL``     the repository, at a commit where a notebook's first cell installs
                                                       ``course_lib`` from (git URL or local folder;
                                                       read by that cell, before the package exists)
``COURSE_CLAIMS_LOG``      none                        a JSON-lines file: every checked claim's margin
                                                       and every verdict's choice of a run
``COURSE_KMEANS_BACKEND``  auto                        ``auto`` or ``torch``: ``torch`` never builds
                                                       k-means' compiled CPU E-step
=========================  ==========================  ==============================================

Switches (``COURSE_OFFLINE``, ``HF_HUB_OFFLINE``) follow one parsing rule, :func:`flag`: ``1``,
``true``, ``yes``, ``on`` turn them on; unset, empty, ``0``, ``false``, ``no``, ``off`` leave them
off (any case, surrounding spaces ignored); anything else is an error that quotes the value.

The run size is the *profile*. Each chapter's settings for both profiles are written once, in
:data:`PRESETS`; a notebook reads ``preset("cnn")`` (the current profile) and a benchmark reads
``preset("cnn", "full")``, so the two cannot drift apart. :func:`pick` chooses one value by
profile for the rest.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, TypeVar

import torch

__all__ = ["PROFILES", "VARIABLES", "PRESETS", "flag", "get_profile", "pick", "preset", "device_name",
           "offline", "hub_offline", "data_dir", "mirrors", "download_timeout", "bert_checkpoint", "claims_log", "kmeans_backend",
           "summary"]

PROFILES = ("ci", "full")
T = TypeVar("T")

#: Every environment variable the course reads: ``name -> (default, meaning)`` (the README's table).
VARIABLES = MappingProxyType({
    "COURSE_PROFILE": ("full on CUDA, else ci", "run size: ci (2 CPU cores, <= 90 s a notebook) or full"),
    "COURSE_DEVICE": ("best available", "cpu, cuda, cuda:1 or mps"),
    "COURSE_OFFLINE": ("off", "on: never touch the network (data downloads, the BERT hub)"),
    "HF_HUB_OFFLINE": ("off", "on: no checkpoint from the Hugging Face hub (data still downloads)"),
    "COURSE_DATA_DIR": ("~/.cache/course_lib", "download cache"),
    "COURSE_DATA_MIRROR": ("none", "local mirror folder(s), separated by os.pathsep"),
    "COURSE_DATA_TIMEOUT": ("30", "seconds before a stalled download is abandoned"),
    "BERT_CHECKPOINT": ("the offline package", "the benchmarks' BERT checkpoint: a folder or a hub name"),
    "COURSE_INSTALL_URL": ("the repository, at the book's commit",
                           "where a notebook's first cell installs course_lib from (git URL or folder)"),
    "COURSE_CLAIMS_LOG": ("none", "a JSON-lines file recording every checked claim and verdict of a run"),
    "COURSE_KMEANS_BACKEND": ("auto", "auto or torch: torch never builds k-means' compiled CPU E-step"),
})

_ON, _OFF = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def _env(name: str) -> str:
    if name not in VARIABLES:
        raise KeyError(f"{name!r} is not a course setting; known: {', '.join(VARIABLES)}.")
    return os.environ.get(name, "").strip()


def flag(name: str) -> bool:
    """The on/off switch ``name`` from the environment (see the module docstring for the rule).

    Raises
    ------
    ValueError
        If the variable holds something that is neither on nor off.
    """
    value = _env(name).lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not a switch; use 1/true/yes/on or "
                     "0/false/no/off (or leave it unset).")


def offline() -> bool:
    """True when the course must not touch the network: ``COURSE_OFFLINE`` is on."""
    return flag("COURSE_OFFLINE")


def hub_offline() -> bool:
    """True when checkpoints must not come from the Hugging Face hub: ``COURSE_OFFLINE`` or
    Hugging Face's own ``HF_HUB_OFFLINE`` is on (the data loaders follow ``COURSE_OFFLINE`` only)."""
    return offline() or flag("HF_HUB_OFFLINE")


def device_name() -> str | None:
    """``COURSE_DEVICE`` as written, or None when unset (then the best device is chosen)."""
    return _env("COURSE_DEVICE") or None


def data_dir() -> Path:
    """The download cache, ``COURSE_DATA_DIR`` (default ``~/.cache/course_lib``)."""
    value = _env("COURSE_DATA_DIR")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "course_lib"


def mirrors() -> list[Path]:
    """The local mirror folders of ``COURSE_DATA_MIRROR``, in order (empty when unset)."""
    return [Path(p.strip()).expanduser() for p in _env("COURSE_DATA_MIRROR").split(os.pathsep) if p.strip()]


def download_timeout() -> float:
    """Seconds before a stalled download is abandoned (``COURSE_DATA_TIMEOUT``, default 30)."""
    value = _env("COURSE_DATA_TIMEOUT") or "30"
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"COURSE_DATA_TIMEOUT={value!r} must be a number of seconds.") from None
    if not seconds > 0:
        raise ValueError(f"COURSE_DATA_TIMEOUT={value!r} must be a positive number of seconds.")
    return seconds


def bert_checkpoint() -> str | None:
    """``BERT_CHECKPOINT`` (a folder or hub name for the benchmarks), or None: the offline package."""
    return _env("BERT_CHECKPOINT") or None


def kmeans_backend() -> str:
    """``COURSE_KMEANS_BACKEND``: "auto" (k-means may build its compiled CPU E-step) or "torch"."""
    value = _env("COURSE_KMEANS_BACKEND").lower() or "auto"
    if value not in ("auto", "torch"):
        raise ValueError(f"COURSE_KMEANS_BACKEND={value!r} must be 'auto' or 'torch' (unset means "
                         "'auto').")
    return value


def claims_log() -> Path | None:
    """``COURSE_CLAIMS_LOG``: where :mod:`course_lib.claims` appends each claim's margin, or None."""
    value = _env("COURSE_CLAIMS_LOG")
    return Path(value).expanduser() if value else None


def get_profile() -> str:
    """``"ci"`` or ``"full"`` from ``COURSE_PROFILE`` (default: full on CUDA, ci otherwise).

    Raises
    ------
    ValueError
        If ``COURSE_PROFILE`` holds anything else.
    """
    value = _env("COURSE_PROFILE").lower()
    if not value:
        return "full" if torch.cuda.is_available() else "ci"
    if value not in PROFILES:
        raise ValueError(f"COURSE_PROFILE={value!r} is not a profile; expected one of {PROFILES}.")
    return value


def _check_profile(profile: str | None) -> str:
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a profile; expected one of {PROFILES}.")
    return profile


def pick(ci: T, full: T, profile: str | None = None) -> T:
    """Choose a setting by profile: ``epochs = pick(ci=2, full=15)``."""
    return ci if _check_profile(profile) == "ci" else full


# --------------------------------------------------------------------------- chapter presets
# Each chapter's run-size settings as ``key: (ci, full)``: read by the notebook (its profile) and by
# the chapter's benchmark (``full``). Change a chapter's configuration here, and only here.
_PRESETS: dict[str, dict[str, tuple[Any, Any]]] = {
    "cnn": {"channels": ((16, 32), (32, 64)), "epochs": (10, 15), "batch_size": (64, 64),
            "lr": (4e-3, 4e-3), "shift": (2, 2)},
    "autoencoder": {"k": (32, 32), "als_iter": (30, 200), "channels": ((16, 32), (32, 64)),
                    "epochs": (6, 30), "batch_size": (64, 64), "lr": (5e-3, 5e-3)},
    "contrastive": {"channels": ((8, 16), (32, 64)), "epochs": (5, 40), "batch_size": (256, 512),
                    "lr": (3e-3, 2e-3)},
    "bert": {"max_len": (48, 64), "epochs": (1, 2), "batch_size": (16, 16), "lr": (1e-4, 3e-5),
             "head_lr": (3e-3, 1e-3)},
    "finetune": {"max_len": (48, 64), "epochs": (1, 3), "batch_size": (16, 32), "lr_full": (1e-4, 1e-4),
                 "lr_lora": (1e-3, 1e-3), "head_lr": (3e-3, 3e-3), "r": (8, 8), "alpha": (16, 16)},
}


def _freeze(table: dict) -> Mapping[str, Mapping[str, tuple[Any, Any]]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in table.items()})


#: ``chapter -> {setting: (ci value, full value)}``, read through :func:`preset`.
PRESETS = _freeze(_PRESETS)


def preset(chapter: str, profile: str | None = None) -> dict[str, Any]:
    """A chapter's settings for one profile (default: the current one), as a new dict.

    Examples
    --------
    >>> preset("cnn", "full")["epochs"]
    15
    """
    if chapter not in PRESETS:
        raise ValueError(f"chapter={chapter!r} has no preset; known: {', '.join(PRESETS)}.")
    i = PROFILES.index(_check_profile(profile))
    return {key: pair[i] for key, pair in PRESETS[chapter].items()}


def summary() -> str:
    """One line with the run's profile, network and data sources (printed by each notebook)."""
    parts = [f"profile: {get_profile()}", "offline" if offline() else "online"]
    found = mirrors()
    if found:    # named, not its path: the book shows no path of the machine that built it
        parts.append(f"data mirror: set ({len(found)} folder{'s' * (len(found) > 1)}, COURSE_DATA_MIRROR)")
    return " | ".join(parts)
