"""Skips decided in one place, each with its reason.

- ``@pytest.mark.gpu`` (or ``gpu(2)``): needs that many CUDA devices; skipped otherwise.
- ``@pytest.mark.needs("otter", ...)``: needs these importable packages (an optional extra of
  ``pyproject.toml``); skipped otherwise, naming the extra to install.
- ``@pytest.mark.slow``: runs in ``make test`` and CI's full test command, not in ``make unit``.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

#: import name -> the optional extra of pyproject.toml that installs it
EXTRAS = {"otter": "grading", "tensorflow": "tf", "keras": "tf", "transformers": "nlp", "gensim": "nlp",
          "peft": "nlp", "jupytext": "book", "selenium": "test", "nbval": "test"}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*packages): needs these optional packages (skipped without)")


def missing(*packages: str) -> list[str]:
    """The packages of ``packages`` that cannot be imported here."""
    return [p for p in packages if importlib.util.find_spec(p) is None]


def skip_reason(item) -> str | None:
    """Why ``item`` cannot run on this machine, or None."""
    gpu = item.get_closest_marker("gpu")
    if gpu is not None:
        wanted = gpu.args[0] if gpu.args else 1
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < wanted:
            return f"needs {wanted} CUDA device(s), this machine has {have}"
    for mark in item.iter_markers("needs"):
        gone = missing(*mark.args)
        if gone:
            extras = sorted({EXTRAS.get(p, p) for p in gone})
            return (f"needs {', '.join(gone)}: pip install -e \".[{','.join(extras)}]\""
                    if all(p in EXTRAS for p in gone) else f"needs {', '.join(gone)}")
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = skip_reason(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
