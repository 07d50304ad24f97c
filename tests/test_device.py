"""Device choice, seeding and autocast."""
import os
import random

import numpy as np
import pytest
import torch

from course_lib import device as dev
from course_lib import profile


def test_get_device_defaults_and_cpu():
    d = dev.get_device()
    assert d.type == ("cuda" if torch.cuda.is_available() else d.type)
    assert dev.get_device("cpu") == torch.device("cpu")
    assert "cpu" in dev.describe("cpu")


def test_get_device_env_and_errors(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert dev.get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="device='tpu' is not a device"):
        dev.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            dev.get_device("cuda")


def test_unsupported_device_message():
    with pytest.raises(ValueError, match="'meta' is not supported"):
        dev.get_device("meta")


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()
    dev.seed_everything(5)
    a = draw()
    dev.seed_everything(5)
    assert draw() == a
    dev.seed_everything(6)
    assert draw() != a
    assert os.environ["PYTHONHASHSEED"] == "6"
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="non-negative integer"):
            dev.seed_everything(bad)


def test_autocast_is_a_no_op_on_cpu():
    with dev.autocast("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_lowers_precision_on_cuda():
    with dev.autocast("cuda"):
        y = torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
    assert y.dtype in (torch.bfloat16, torch.float16)


def test_profile_switch(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert profile.get_profile() == "full" and profile.pick(1, 2) == 2
    monkeypatch.setenv("COURSE_PROFILE", "CI")
    assert profile.get_profile() == "ci" and profile.pick(1, 2) == 1
    assert profile.settings(epochs=(2, 15), lr=(1e-3, 3e-4)) == {"epochs": 2, "lr": 1e-3}
    monkeypatch.delenv("COURSE_PROFILE")
    assert profile.get_profile() == ("full" if torch.cuda.is_available() else "ci")
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE='fast'"):
        profile.get_profile()
    with pytest.raises(ValueError, match=r"epochs=3 must be a \(ci, full\) pair"):
        profile.settings(epochs=3)
