"""The run-size switch ``COURSE_PROFILE=ci|full`` that every notebook reads.

``ci`` fits the continuous-integration budget: offline data, 2 CPU cores, at most about 90 s a
notebook. ``full`` is the real configuration that reaches a chapter's headline metric and is what
``benchmarks/`` measures. The default is ``full`` when a CUDA GPU is present and ``ci`` otherwise,
so a learner on a Colab GPU gets the real thing without setting anything.
"""
from __future__ import annotations

import os
from typing import Any, TypeVar

import torch

__all__ = ["get_profile", "pick", "PROFILES"]

PROFILES = ("ci", "full")
T = TypeVar("T")


def get_profile() -> str:
    """Return ``"ci"`` or ``"full"`` from ``COURSE_PROFILE`` (default: full on GPU, ci otherwise).

    Raises
    ------
    ValueError
        If ``COURSE_PROFILE`` holds anything else.
    """
    value = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "ci"
    if value not in PROFILES:
        raise ValueError(f"COURSE_PROFILE={value!r} is not a profile; expected one of {PROFILES}.")
    return value


def pick(ci: T, full: T, profile: str | None = None) -> T:
    """Choose a setting by profile: ``epochs = pick(ci=2, full=15)``."""
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a profile; expected one of {PROFILES}.")
    return ci if profile == "ci" else full


def settings(profile: str | None = None, **choices: tuple[Any, Any]) -> dict[str, Any]:
    """Several :func:`pick` at once: ``settings(epochs=(2, 15), batch=(128, 256))``."""
    out = {}
    for key, pair in choices.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"{key}={pair!r} must be a (ci, full) pair.")
        out[key] = pick(pair[0], pair[1], profile)
    return out
