"""The shared training loop: learning, early stopping, clipping, errors, determinism."""
import pytest
import torch
from torch import nn

from course_lib import train
from course_lib.data import load_digits


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.as_tensor(d.x_train.reshape(len(d.x_train), -1) / 16.0, dtype=torch.float32)
    xt = torch.as_tensor(d.x_test.reshape(len(d.x_test), -1) / 16.0, dtype=torch.float32)
    return (x, torch.as_tensor(d.y_train)), (xt, torch.as_tensor(d.y_test))


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_fit_learns_real_digits_and_records_history(digits):
    tr, te = digits
    model = _mlp()
    before = train.evaluate(model, te)["accuracy"]
    hist = train.fit(model, tr, te, config=train.TrainConfig(epochs=8, lr=3e-3, progress=False))
    after = train.evaluate(model, te)
    assert before < 0.3 and after["accuracy"] > 0.9
    assert len(hist.train_loss) == 8 and len(hist.val_acc) == 8
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert after["accuracy"] == pytest.approx(hist.val_acc[-1])
    assert len(hist.step_loss) == 8 * -(-len(tr[0]) // 128)


def test_fit_is_deterministic_by_seed(digits):
    tr, _ = digits
    cfg = train.TrainConfig(epochs=2, progress=False, seed=1)
    h1 = train.fit(_mlp(), tr, config=cfg)
    h2 = train.fit(_mlp(), tr, config=cfg)
    h3 = train.fit(_mlp(), tr, config=train.TrainConfig(epochs=2, progress=False, seed=2))
    assert h1.step_loss == h2.step_loss
    assert h1.step_loss != h3.step_loss


def test_early_stopping_restores_best_weights(digits):
    tr, te = digits
    model = _mlp()
    calls = []

    def spoil_after_best(epoch, hist, m):  # corrupt the model after epoch 3: val loss rises
        calls.append(epoch)
        if epoch >= 3:
            with torch.no_grad():
                m[2].bias.add_(5.0 * torch.arange(10.0))
        return False

    hist = train.fit(model, tr, te, config=train.TrainConfig(epochs=20, lr=3e-3, patience=2, progress=False),
                     callbacks=[spoil_after_best])
    assert len(hist.epoch) < 20, "patience should have stopped training"
    assert hist.best_epoch is not None and hist.best_epoch <= 3
    restored = train.evaluate(model, te)["loss"]
    assert restored == pytest.approx(min(hist.val_loss), rel=1e-5)


def test_grad_clip_bounds_the_update(digits):
    tr, _ = digits
    norms = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            norms.append(torch.norm(torch.stack([p.grad.norm() for g in self.param_groups for p in g["params"]])).item())
            return super().step(closure)

    model = _mlp()
    opt = Spy(model.parameters(), lr=0.01)
    train.fit(model, tr, optimizer=opt, config=train.TrainConfig(epochs=1, grad_clip=0.05, progress=False))
    assert max(norms) <= 0.05 + 1e-6


def test_schedules_change_the_learning_rate(digits):
    tr, _ = digits
    model = _mlp()
    cfg = train.TrainConfig(epochs=3, lr=0.01, schedule="cosine", warmup=0.2, progress=False)
    opt = train.build_optimizer(model, cfg)
    lrs = []                                          # the rate at the end of every epoch
    train.fit(model, tr, config=cfg, optimizer=opt, callbacks=[lambda e, h, m: lrs.append(opt.param_groups[0]["lr"])])
    assert len(lrs) == 3 and lrs[0] > lrs[1] > lrs[2] and lrs[2] < 1e-3 * cfg.lr   # fit stepped the schedule
    steps = -(-len(tr[0]) // 128)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = train.build_scheduler(opt, train.TrainConfig(epochs=2, lr=0.01, schedule="cosine", warmup=0.2), steps)
    seen = []
    for _ in range(2 * steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] < seen[len(seen) // 5] and seen[-1] < 0.1 * max(seen)  # warm up, then decay
    assert train.build_scheduler(opt, train.TrainConfig(), steps) is None


def test_onecycle_peaks_at_each_groups_own_rate():
    model = _mlp()
    cfg = train.TrainConfig(epochs=1, lr=1e-2, schedule="onecycle")
    opt = train.build_optimizer(model, cfg, groups=[{"params": model[0].parameters(), "lr": 1e-3},
                                                    {"params": model[2].parameters(), "lr": 1e-2}])
    sched = train.build_scheduler(opt, cfg, 100)
    peaks = [0.0] * len(opt.param_groups)
    for _ in range(100):
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, opt.param_groups)]
        opt.step()
        sched.step()
    wanted = [g["max_lr"] for g in opt.param_groups]
    assert wanted == [1e-3, 1e-3, 1e-2, 1e-2]           # weight and bias of each layer: two groups each
    assert peaks == pytest.approx(wanted, rel=1e-3)


class _Zoo(nn.Module):
    """One of each kind of layer, and a tied weight."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.emb_norm = nn.LayerNorm(8)
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.gn = nn.GroupNorm(1, 2)
        self.lin = nn.Linear(8, 8, bias=False)
        self.out = nn.Linear(8, 10)
        self.out.weight = self.emb.weight                 # tied, as in a language model


def test_weight_decay_applies_to_exactly_the_weight_matrices():
    zoo = _Zoo()
    assert train.decay_names(zoo) == {"emb.weight", "conv.weight", "lin.weight"}
    opt = train.build_optimizer(zoo, train.TrainConfig(optimizer="adamw", weight_decay=0.1))
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(zoo.named_parameters())
    assert {n for n, p in named.items() if decay_of[id(p)] == 0.1} == {"emb.weight", "conv.weight", "lin.weight"}
    assert {n for n, p in named.items() if decay_of[id(p)] == 0.0} == {
        "emb_norm.weight", "emb_norm.bias", "conv.bias", "bn.weight", "bn.bias", "gn.weight", "gn.bias",
        "out.bias"}
    assert len(decay_of) == len(named)                    # every tensor once, the tied one too
    zoo.lin.requires_grad_(False)
    opt = train.build_optimizer(zoo, train.TrainConfig(optimizer="sgd", weight_decay=0.1))
    assert id(zoo.lin.weight) not in {id(p) for g in opt.param_groups for p in g["params"]}
    with pytest.raises(ValueError, match="weight_decay=-1"):
        train.TrainConfig(weight_decay=-1)


def test_weight_decay_on_bert_spares_biases_and_every_layernorm():
    from course_lib import bert

    cfg = bert.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=16)
    clf = bert.SequenceClassifier(bert.BertModel(cfg), 2)
    names = {n for n, _ in clf.named_parameters()}
    expected = {n for n in names if not n.endswith(".bias") and "LayerNorm" not in n}
    assert train.decay_names(clf) == expected
    assert "bert.embeddings.LayerNorm.weight" in names - expected           # the embeddings' norm
    assert "bert.embeddings.word_embeddings.weight" in expected


def test_weight_decay_shrinks_only_the_decayed_tensors():
    """One AdamW step with zero gradients: only the decayed tensors move, by lr * wd * w."""
    zoo = _Zoo()
    before = {n: p.detach().clone() for n, p in zoo.named_parameters()}
    opt = train.build_optimizer(zoo, train.TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5))
    for p in zoo.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in zoo.named_parameters():
        want = before[n] * (1 - 0.1 * 0.5) if n in train.decay_names(zoo) else before[n]
        assert torch.allclose(p.detach(), want), n


def test_fit_accepts_a_dataloader_and_a_custom_loss(digits):
    (x, _), _ = digits
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x), batch_size=64)
    ae = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 64))
    hist = train.fit(ae, loader, loader, loss_fn=nn.functional.mse_loss,
                     config=train.TrainConfig(epochs=3, lr=1e-2, progress=False))
    assert hist.val_acc == [None] * 3  # no accuracy for a regression output
    assert hist.val_loss[-1] < hist.val_loss[0]


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0), "epochs=0"), (dict(batch_size=-1), "batch_size=-1"), (dict(lr=0), "lr=0"),
    (dict(lr=float("nan")), "lr=nan"), (dict(optimizer="adagrad"), "optimizer='adagrad'"),
    (dict(schedule="step"), "schedule='step'"), (dict(warmup=1.5), "warmup=1.5"),
    (dict(weight_decay=float("inf")), "weight_decay=inf")])
def test_config_errors_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**kwargs)


def test_fit_errors(digits):
    (x, y), _ = digits
    with pytest.raises(ValueError, match="differ in length: 10 != 9"):
        train.fit(_mlp(), (x[:10], y[:9]), config=train.TrainConfig(epochs=1, progress=False))
    with pytest.raises(ValueError, match="empty dataset"):
        train.fit(_mlp(), (x[:0], y[:0]), config=train.TrainConfig(epochs=1, progress=False))
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.fit(frozen, (x, y), config=train.TrainConfig(epochs=1, progress=False))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train.fit(_mlp(), (x, y), loss_fn=lambda out, t: out.sum() * float("inf"),
                  config=train.TrainConfig(epochs=1, progress=False))


def test_predict_returns_cpu_outputs_in_eval_mode(digits):
    (x, _), _ = digits
    model = nn.Sequential(nn.Linear(64, 10), nn.Dropout(0.9))
    a, b = train.predict(model, x[:50]), train.predict(model, x[:50])
    assert a.shape == (50, 10) and a.device.type == "cpu"
    assert torch.equal(a, b), "dropout must be off in predict"
    assert model.training, "predict must restore training mode"


@pytest.mark.gpu
def test_fit_on_gpu_with_amp(digits):
    tr, te = digits
    model = _mlp()
    hist = train.fit(model, tr, te, device="cuda", config=train.TrainConfig(epochs=5, lr=3e-3, amp=True, progress=False))
    assert next(model.parameters()).device.type == "cuda"
    assert hist.val_acc[-1] > 0.9
