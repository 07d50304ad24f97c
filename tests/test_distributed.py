"""Data-parallel training: 2 processes (gloo, CPU) give the 1-process result on the same global batch.

The ranks are started once (``torch.multiprocessing``, spawn, a free port) and run every scenario in
turn; the parent process trains the same configurations alone and compares.
"""
import os
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from course_lib import distributed as D
from course_lib import launch
from course_lib import train
from course_lib.data import load_digits

WORLD = 2
# 1,437 training digits: batch 100 ends with 37 examples (19 + 18 on the ranks);
# batch 359 ends with a single example, so rank 1's share of the last batch is empty.
CONFIGS = {
    "adam": dict(epochs=2, batch_size=100, lr=3e-3, optimizer="adam"),
    "sgd_cosine": dict(epochs=2, batch_size=359, lr=0.05, optimizer="sgd", schedule="cosine", warmup=0.2,
                       grad_clip=1.0),
}


def _digits():
    d = load_digits()
    to_x = lambda a: torch.as_tensor(a.reshape(len(a), -1) / 16.0, dtype=torch.float32)  # (N, 8, 8) -> (N, 64)
    return (to_x(d.x_train), torch.as_tensor(d.y_train)), (to_x(d.x_test), torch.as_tensor(d.y_test))


def _mlp(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10))


def _run(cfg_kwargs, tr, te, model=None, **fit_kwargs):
    model = model or _mlp()
    hist = train.fit(model, tr, te, config=train.TrainConfig(progress=False, **cfg_kwargs), **fit_kwargs)
    h = hist.as_dict()
    h.pop("seconds")
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "hist": h,
            "is_ddp_wrapped": isinstance(model, nn.parallel.DistributedDataParallel)}


def _worker(rank, port, outdir):
    """One rank: join the group as torchrun would set it up, run every scenario, save the results."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert D.init_from_env("gloo", timeout_s=60) and D.is_distributed() and D.rank() == rank
    tr, te = _digits()
    out = {name: _run(kw, tr, te) for name, kw in CONFIGS.items()}

    weight = D.loss_weight                          # the same run without re-weighting the loss
    D.loss_weight = lambda local_n, global_n, world: 1.0
    try:
        out["unweighted"] = _run(CONFIGS["sgd_cosine"], tr, te)
    finally:
        D.loss_weight = weight

    out["dropout"] = _run(dict(epochs=1, batch_size=100, lr=1e-2), tr, te, model=_mlp(dropout=0.5))

    # a callback that asks to stop on rank 0 only: both ranks stop after epoch 1
    out["stop"] = _run(dict(epochs=3, batch_size=100), tr, te, callbacks=[lambda e, h, m: D.rank() == 0])

    ds = torch.utils.data.TensorDataset(*tr)
    plain = torch.utils.data.DataLoader(ds, batch_size=50)
    try:
        train.fit(_mlp(), plain, config=train.TrainConfig(epochs=1, progress=False))
        out["loader_error"] = None
    except ValueError as e:
        out["loader_error"] = str(e)
    sampled = torch.utils.data.DataLoader(ds, batch_size=50, sampler=torch.utils.data.DistributedSampler(ds, seed=0))
    out["sampler"] = _run(dict(epochs=2, lr=1e-2), sampled, te)
    D.barrier()
    D.cleanup()
    torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The results of every scenario on each of the 2 ranks."""
    outdir = str(tmp_path_factory.mktemp("ddp"))
    ctx = mp.start_processes(_worker, args=(launch.free_port(), outdir), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):                   # raises with the rank's traceback if one fails
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2-process run did not finish within 180 s")
    return [torch.load(os.path.join(outdir, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single(digits):
    """The same configurations in this one process."""
    tr, te = digits
    return {name: _run(kw, tr, te) for name, kw in CONFIGS.items()}


def _max_weight_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_equal_one_process(ranks, single, name):
    one, two = single[name], ranks[0][name]
    for k in one["state"]:
        assert torch.allclose(two["state"][k], one["state"][k], rtol=0, atol=1e-6), k
    h1, h2 = one["hist"], two["hist"]
    assert h2["epoch"] == h1["epoch"] and h2["best_epoch"] == h1["best_epoch"]
    assert h2["train_acc"] == h1["train_acc"] and h2["val_acc"] == h1["val_acc"]   # counts: exact
    for key in ("train_loss", "val_loss", "step_loss"):
        assert len(h2[key]) == len(h1[key])
        assert h2[key] == pytest.approx(h1[key], rel=1e-6, abs=1e-7), key
    assert len(h1["step_loss"]) == CONFIGS[name]["epochs"] * -(-1437 // CONFIGS[name]["batch_size"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [*CONFIGS, "unweighted", "dropout", "stop", "sampler"])
def test_ranks_hold_identical_weights_and_history(ranks, name):
    r0, r1 = ranks[0][name], ranks[1][name]
    assert D.weights_checksum(r0["state"]) == D.weights_checksum(r1["state"])
    assert r0["hist"] == r1["hist"]
    assert not r0["is_ddp_wrapped"], "fit trains the caller's plain module"


@pytest.mark.slow
def test_without_loss_weighting_the_uneven_last_batch_differs(ranks, single):
    """Sanity check of the comparison: dropping the re-weighting is caught at this tolerance."""
    weighted = _max_weight_diff(ranks[0]["sgd_cosine"]["state"], single["sgd_cosine"]["state"])
    unweighted = _max_weight_diff(ranks[0]["unweighted"]["state"], single["sgd_cosine"]["state"])
    assert unweighted > 10 * 1e-6 and unweighted > 100 * weighted, (unweighted, weighted)


@pytest.mark.slow
def test_dropout_model_trains_and_stop_is_decided_together(ranks):
    h = ranks[0]["dropout"]["hist"]
    assert len(h["train_loss"]) == 1 and h["val_acc"][0] > 0.5
    assert ranks[0]["stop"]["hist"]["epoch"] == ranks[1]["stop"]["hist"]["epoch"] == [1]


@pytest.mark.slow
def test_dataloader_needs_a_distributed_sampler(ranks):
    for r in ranks:
        assert "without a DistributedSampler" in r["loader_error"] and "world size 2" in r["loader_error"]
    h = ranks[0]["sampler"]["hist"]
    assert len(h["step_loss"]) == 2 * 15                       # 719 examples per rank, 50 a batch
    assert h["val_loss"][-1] < h["val_loss"][0] and h["val_acc"][-1] > 0.5


@pytest.mark.slow
def test_launch_runs_the_demo_under_torchrun():
    """What the chapter runs: torchrun in a subprocess, rank 0's JSON, compared with one process."""
    res = launch.compare_single_vs_ddp(2, ["--epochs", "1", "--batch-size", "100"], timeout=120)
    ddp, one = res["ddp"], res["single"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo" and one["world_size"] == 1
    assert res["ranks_identical"] and len(ddp["rank_checksums"]) == 2
    assert res["max_abs_weight_diff"] < 1e-6 and res["max_abs_train_loss_diff"] < 1e-6
    assert res["same_test_accuracy"] and ddp["test_accuracy"] > 0.8
    assert ddp["steps"] == 15 and ddp["command"][:2] == ["torchrun", "--standalone"]


# ------------------------------------------------------------------- one process: helpers, errors
@pytest.mark.parametrize("n", range(8))
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_cuts_contiguous_blocks_that_cover_the_batch(n, world):
    x = torch.arange(n * 2).reshape(n, 2)
    parts = [D.shard(x, r, world) for r in range(world)]
    assert torch.equal(torch.cat(parts), x)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [len(p) for p in torch.tensor_split(x, world)] == sizes


def test_shard_defaults_and_errors():
    assert torch.equal(D.shard(torch.arange(5)), torch.arange(5))     # no process group: all of it
    assert D.shard(torch.arange(1), 1, 2).numel() == 0
    with pytest.raises(ValueError, match=r"rank=2 must be an integer in \[0, world=2\)"):
        D.shard(torch.arange(4), 2, 2)
    with pytest.raises(ValueError, match="world=0"):
        D.shard(torch.arange(4), 0, 0)
    with pytest.raises(ValueError, match="first \\(batch\\) axis"):
        D.shard(torch.tensor(3.0), 0, 2)


def test_loss_weight_makes_the_average_of_rank_means_the_global_mean():
    per_example = torch.arange(37.0) ** 2                         # a last batch of 37: 19 + 18
    local = [D.shard(per_example, r, 2) for r in range(2)]
    ddp_average = sum(D.loss_weight(len(p), 37, 2) * p.mean() for p in local) / 2
    assert ddp_average.item() == pytest.approx(per_example.mean().item(), rel=1e-6)
    assert sum(p.mean() for p in local) / 2 != pytest.approx(per_example.mean().item(), rel=1e-3)
    assert D.loss_weight(0, 1, 2) == 0.0
    with pytest.raises(ValueError, match="global_n=0"):
        D.loss_weight(0, 0, 2)


def test_outside_a_process_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert D.init_from_env() is False
    assert (D.is_distributed(), D.rank(), D.world_size(), D.is_main()) == (False, 0, 1, True)
    t = torch.ones(3)
    assert D.all_reduce_sum(t) is t and D.broadcast(t) is t
    D.cleanup()                                                   # a no-op, never an error


@pytest.mark.parametrize("env,match", [
    (dict(RANK="2", WORLD_SIZE="2"), r"RANK=2 must lie in \[0, WORLD_SIZE=2\)"),
    (dict(RANK="0", WORLD_SIZE="two"), "WORLD_SIZE='two' is not an integer"),
    (dict(RANK="0", WORLD_SIZE="0"), "WORLD_SIZE=0 must be a positive integer"),
    (dict(RANK="0", WORLD_SIZE="2"), "MASTER_ADDR is not set"),
    (dict(RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500", BACKEND="mpi"),
     "backend='mpi'"),
])
def test_init_from_env_errors_quote_the_value(monkeypatch, env, match):
    for key in D._ENV:
        monkeypatch.delenv(key, raising=False)
    backend = env.pop("BACKEND", None)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=match):
        D.init_from_env(backend)
    assert not torch.distributed.is_initialized()


def test_commands_show_single_node_multi_gpu_and_multi_node():
    text = launch.commands()
    assert "torchrun --standalone --nproc_per_node=8 -m course_lib.launch" in text
    assert "--nnodes=2" in text and "--node_rank=0" in text and "--rdzv_backend=c10d" in text
    assert "--rdzv_endpoint=HOST:29500" in text
    assert "--nproc_per_node=8" in launch.__doc__ and "--nnodes=2" in launch.__doc__


@pytest.mark.gpu(2)                 # nccl, one GPU per process
def test_two_gpus_with_nccl():
    res = launch.launch(2, ["--epochs", "1", "--device", "cuda"], timeout=300)
    assert res["backend"] == "nccl" and res["world_size"] == 2 and len(set(res["rank_checksums"])) == 1
    assert res["test_accuracy"] > 0.8
