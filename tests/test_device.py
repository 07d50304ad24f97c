"""Device choice, seeding and autocast."""
import os
import random

import numpy as np
import pytest
import torch

from course_lib import device as dev


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
def test_autocast_lowers_precision_on_cuda():
    with dev.autocast("cuda"):
        y = torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
    assert y.dtype in (torch.bfloat16, torch.float16)


def test_setup_picks_profile_device_seed_and_prints_the_run(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.setenv("COURSE_OFFLINE", "yes")
    profile, device = dev.setup(seed=3)
    line = capsys.readouterr().out
    assert (profile, device) == ("full", torch.device("cpu"))
    assert "profile: full" in line and "offline" in line and "device: cpu" in line
    assert torch.rand(1).item() == (torch.manual_seed(3), torch.rand(1).item())[1]
    assert dev.setup(quiet=True).profile == "full" and capsys.readouterr().out == ""
