"""Tests for course_lib.finetune: the LoRA formula, merged = unmerged outputs, parity with the
`peft` package on the real MiniLM checkpoint, which parameters each strategy trains, layer-wise
learning rates, parameter and optimizer-memory counts, heads swapped for forgetting, errors."""
import copy
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import bert, cnn, train
from course_lib import finetune as ft
from course_lib.data import load_digits

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from checkpoints import needs_ckpt  # noqa: E402  (tests/checkpoints.py)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.as_tensor(d.x_train.reshape(len(d.x_train), -1) / 16.0, dtype=torch.float32)  # (N, 64)
    return x, torch.as_tensor(d.y_train)


@pytest.fixture(scope="module")
def digit_images():
    """sklearn's real 8x8 digits laid out like MNIST (LeNet's input size)."""
    d = load_digits()
    return cnn.images_to_tensor(cnn.to_mnist_frame(d.x_train)), torch.as_tensor(d.y_train)


def test_to_mnist_frame_centres_and_scales():
    d = load_digits()
    out = cnn.to_mnist_frame(d.x_train[:5])
    assert out.shape == (5, 28, 28) and out.dtype == torch.uint8
    assert out[:, :4].sum() == 0 and out[:, :, -4:].sum() == 0       # 4-pixel margin, as MNIST
    full = cnn.to_mnist_frame(np.full((1, 8, 8), 16.0))
    assert full[0, 4:24, 4:24].min() == 255 and full.sum() == 255 * 400
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        cnn.to_mnist_frame(np.zeros((8, 8)))


@pytest.fixture(scope="module")
def minilm():
    folder = bert.locate_checkpoint()
    tok = bert.load_tokenizer(folder)
    ids = bert.encode(tok, ["a gripping, funny and moving film.", "dull",
                            "it 's a charming and often affecting journey ."])
    return folder, ids


# --------------------------------------------------------------------------- LoRA formula
def test_lora_starts_at_the_base_layer_and_follows_the_formula(digits):
    x = digits[0][:50]                                               # (50, 64) real pixels
    torch.manual_seed(0)
    base = nn.Linear(64, 32)
    lora = ft.LoRALinear.from_linear(copy.deepcopy(base), r=4, alpha=8)
    assert torch.equal(lora(x), base(x))                             # B = 0 at init
    with torch.no_grad():
        lora.lora_B.normal_()
    A, B, W, b = lora.lora_A, lora.lora_B, lora.weight, lora.bias
    expected = x @ W.T + b + (8 / 4) * (x @ A.T) @ B.T              # the formula in the chapter
    assert torch.allclose(lora(x), expected, atol=1e-5)
    assert not torch.allclose(lora(x), base(x), atol=1e-3)
    assert lora.delta_weight().shape == (32, 64)
    assert torch.linalg.matrix_rank(lora.delta_weight()) <= 4


def test_merge_gives_same_outputs_and_unmerge_restores_weights(digits):
    x = digits[0][:50]
    torch.manual_seed(1)
    lora = ft.LoRALinear(64, 32, r=3, alpha=6)
    with torch.no_grad():
        lora.lora_B.normal_()
    w0, before = lora.weight.detach().clone(), lora(x)
    lora.merge()
    lora.merge()                                                     # idempotent
    assert lora.merged and torch.allclose(lora(x), before, atol=1e-5)
    assert not torch.allclose(lora.weight, w0)
    with pytest.raises(RuntimeError, match="unmerge"):
        with ft.lora_disabled(nn.Sequential(lora)):
            pass
    lora.unmerge()
    assert torch.allclose(lora.weight, w0, atol=1e-6) and torch.allclose(lora(x), before, atol=1e-5)
    with ft.lora_disabled(nn.Sequential(lora)):
        assert torch.equal(lora(x), nn.functional.linear(x, lora.weight, lora.bias))  # the base layer
    assert torch.allclose(lora(x), before, atol=1e-5)                # switched back on


def test_lora_trains_only_the_adapters(digits):
    x, y = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    w0 = model[0].weight.detach().clone()
    names = ft.add_lora(model, targets=("0",), r=2)
    assert names == ["0"] and isinstance(model[0], ft.LoRALinear)
    for p in model[2].parameters():
        p.requires_grad_(False)
    train.fit(model, (x, y), config=train.TrainConfig(epochs=2, lr=1e-2, progress=False))
    assert torch.equal(model[0].weight, w0)                          # the base weight never moved
    assert model[0].lora_B.abs().sum() > 0                           # the adapter did


@pytest.mark.parametrize("kw, match", [({"r": 0}, "r=0"), ({"r": 40}, r"\[1, 32\]"),
                                       ({"alpha": -1.0}, "alpha=-1.0"), ({"dropout": 1.0}, "dropout=1.0")])
def test_lora_errors_quote_the_bad_value(kw, match):
    with pytest.raises(ValueError, match=match):
        ft.LoRALinear(64, 32, **kw)


def test_add_lora_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="no nn.Linear matched"):
        ft.add_lora(model, targets=("query",))
    with pytest.raises(TypeError, match="Conv2d"):
        ft.add_lora(model, targets=("0",))


# --------------------------------------------------------------------------- LoRA on BERT
@pytest.mark.slow
@needs_ckpt
def test_lora_on_bert_keeps_checkpoint_names_and_merges_exactly(minilm):
    folder, ids = minilm
    model = bert.BertModel.from_pretrained(folder).eval()
    keys_before = set(model.state_dict())
    ref = model(ids).last_hidden_state
    model.requires_grad_(False)                                      # freeze, then add adapters
    torch.manual_seed(0)                      # A's random init: the same whatever ran before
    names = ft.add_lora(model, ("query", "value"), r=8, alpha=16)
    L, d = model.config.num_hidden_layers, model.config.hidden_size
    assert len(names) == 2 * L
    assert keys_before <= set(model.state_dict())                    # query.weight etc. unchanged
    assert torch.allclose(model(ids).last_hidden_state, ref, atol=1e-6)  # B = 0: same model
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ft.LoRALinear):
                m.lora_B.normal_(std=0.02)
    adapted = model(ids).last_hidden_state
    assert (adapted - ref).abs().max() > 1e-3
    lora_keys = set(ft.lora_state_dict(model))
    assert len(lora_keys) == 4 * L and all("lora_" in k for k in lora_keys)
    ft.merge_lora(model)
    assert not any(isinstance(m, ft.LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == keys_before                    # a plain BertModel again
    assert torch.allclose(model(ids).last_hidden_state, adapted, atol=1e-5)
    # the merged state dict loads into a fresh model with strict names
    fresh = bert.BertModel(model.config).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(fresh(ids).last_hidden_state, adapted, atol=1e-5)


@pytest.mark.slow
@needs_ckpt
def test_lora_matches_peft_on_the_real_checkpoint(minilm):
    peft = pytest.importorskip("peft")
    from transformers import BertModel as HFBertModel

    folder, ids = minilm
    ours = bert.BertModel.from_pretrained(folder).eval()
    ft.add_lora(ours, ("query", "value"), r=4, alpha=8)
    hf = HFBertModel.from_pretrained(str(folder)).eval()
    hf = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                  lora_dropout=0.0))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, m in ours.named_modules():
            if isinstance(m, ft.LoRALinear):
                m.lora_B.normal_(std=0.05)
                theirs = hf.base_model.model.get_submodule(name)
                theirs.lora_A["default"].weight.copy_(m.lora_A)      # (r, in)
                theirs.lora_B["default"].weight.copy_(m.lora_B)      # (out, r)
    ids_, am, tt = ids[:, 0], ids[:, 1], ids[:, 2]
    with torch.no_grad():
        a = ours(ids).last_hidden_state
        b = hf(input_ids=ids_, attention_mask=am, token_type_ids=tt).last_hidden_state
    mask = am.bool()
    assert (a[mask] - b[mask]).abs().max() < 1e-4
    ours_trainable = sum(m.lora_A.numel() + m.lora_B.numel() for m in ours.modules()
                         if isinstance(m, ft.LoRALinear))
    assert ours_trainable == hf.get_nb_trainable_parameters()[0]


# --------------------------------------------------------------------------- strategies
@pytest.mark.slow
@needs_ckpt
def test_strategies_train_the_right_parameters_on_bert(minilm):
    folder, _ = minilm
    base = bert.BertModel.from_pretrained(folder)
    cfg = base.config
    d, L = cfg.hidden_size, cfg.num_hidden_layers
    head = d * 2 + 2

    def counts(strategy, **kw):
        clf = bert.SequenceClassifier(copy.deepcopy(base), 2, pooling="mean")
        return ft.set_strategy(clf, strategy, **kw), clf

    c, clf = counts("feature_extraction")
    assert c["trainable"] == head
    c, clf = counts("partial", n_unfrozen=1)                          # the pooler + head
    assert c["trainable"] == head + d * d + d
    c, clf = counts("partial", n_unfrozen=2)                          # + the last encoder layer
    layer = sum(p.numel() for p in clf.bert.encoder.layer[-1].parameters())
    assert c["trainable"] == head + d * d + d + layer
    c, clf = counts("full")
    assert c["trainable"] == c["total"] == sum(p.numel() for p in clf.parameters())
    c, clf = counts("lora", lora_r=8)
    assert c["trainable"] == head + L * 2 * 8 * (d + d)               # r (in + out) per adapted matrix
    assert c["fraction"] < 0.02


def test_strategies_on_lenet_and_errors(digit_images):
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16))
    blocks, head = ft.parts(net)
    assert [type(b).__name__ for b in blocks] == ["Conv2d", "Conv2d", "Linear"]
    assert head is net.classifier[-1]
    c = ft.set_strategy(net, "feature_extraction")
    assert c["trainable"] == 16 * 10 + 10
    c = ft.set_strategy(net, "partial", n_unfrozen=1)
    assert c["trainable"] == 16 * 10 + 10 + sum(p.numel() for p in blocks[-1].parameters())
    with pytest.raises(ValueError, match="n_unfrozen=9"):
        ft.set_strategy(net, "partial", n_unfrozen=9)
    with pytest.raises(ValueError, match="strategy='linear'"):
        ft.set_strategy(net, "linear")
    with pytest.raises(TypeError, match="Sequential lacks blocks"):
        ft.parts(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.slow
def test_feature_extraction_and_lora_leave_pretrained_weights_untouched(digit_images):
    x, y = digit_images
    torch.manual_seed(0)
    pre = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16))
    cfg = train.TrainConfig(epochs=1, batch_size=64, optimizer="adamw", schedule="cosine",
                            warmup=0.1, progress=False)
    for strategy in ("feature_extraction", "lora", "full"):
        net = copy.deepcopy(pre)
        ft.replace_head(net, 10)
        before = copy.deepcopy(net.state_dict())
        hist = ft.finetune(net, (x, y), strategy=strategy, lr=3e-3, config=cfg)
        conv_moved = not torch.equal(net.features[0].weight, before["features.0.weight"])
        fc1 = net.classifier[1]
        fc1_moved = not torch.equal(fc1.weight, before["classifier.1.weight"])
        assert conv_moved == (strategy == "full") and fc1_moved == (strategy == "full")
        assert not torch.equal(net.classifier[-1].weight, before["classifier.4.weight"])  # head learned
        assert hist.params == ft.count_parameters(net)
        change = ft.relative_change(before, net)
        assert len(change) == 3 and (max(change) > 0) == (strategy != "feature_extraction")
        assert (change[0] > 0) == (strategy == "full")                   # LoRA adapts fc1 only
    with pytest.raises(TypeError, match=r"Sequential lacks blocks\(\), get_head\(\)"):
        ft.finetune(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (x, y))


def test_layerwise_groups_decay_towards_the_input():
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16))
    ft.set_strategy(net, "full")
    groups = ft.layerwise_param_groups(net, lr=1e-3, head_lr=1e-2, decay=0.5)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs == {"head": 1e-2, "block2": 1e-3, "block1": 5e-4, "block0": 2.5e-4}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))  # each parameter once
    ft.set_strategy(net, "feature_extraction")
    assert [g["name"] for g in ft.layerwise_param_groups(net, 1e-3)] == ["head"]
    with pytest.raises(ValueError, match="decay=1.5"):
        ft.layerwise_param_groups(net, 1e-3, decay=1.5)


# --------------------------------------------------------------------------- memory, heads
@pytest.mark.parametrize("optimizer, cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_memory_formula_matches_the_optimizer_state(digit_images, optimizer, cls):
    x, y = digit_images
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16))
    ft.set_strategy(net, "partial", n_unfrozen=1)
    opt = cls([p for p in net.parameters() if p.requires_grad], lr=1e-3,
              **({"momentum": 0.9} if optimizer == "sgd" else {}))
    nn.functional.cross_entropy(net(x[:32]), y[:32]).backward()
    opt.step()
    mem = ft.memory_footprint(net, optimizer)
    assert mem["optimizer"] == ft.optimizer_state_bytes(opt)
    grads = sum(p.grad.numel() * 4 for p in net.parameters() if p.grad is not None)
    assert mem["gradients"] == grads
    assert mem["weights"] == 4 * sum(p.numel() for p in net.parameters())
    assert mem["total"] == mem["weights"] + mem["gradients"] + mem["optimizer"]


def test_swap_head_reads_the_backbone_with_the_old_head(digit_images):
    x, _ = digit_images
    torch.manual_seed(0)
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=16)).eval()
    ref = net(x[:20])
    old = ft.replace_head(net, 3, seed=1)
    assert net(x[:20]).shape == (20, 3) and net.config.n_classes == 3
    view = ft.swap_head(net, old).eval()
    assert torch.equal(view(x[:20]), ref)                             # the original network again
    assert net(x[:20]).shape == (20, 3)                               # the model kept its new head
    with torch.no_grad():
        net.features[0].weight.mul_(2)                                # backbone shared, not copied
    assert not torch.allclose(view(x[:20]), ref)
    with pytest.raises(ValueError, match="n_classes=1"):
        ft.replace_head(net, 1)


class _TwoLayerNet(nn.Module):
    """A model family finetune has never heard of: it only names its parts."""

    lora_targets = ("body.0",)

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        return self.out(self.body(x.flatten(1)))

    def blocks(self):
        return [self.body[0], self.body[2]]

    def get_head(self):
        return self.out

    def set_head(self, head):
        self.out = head

    def reset_head(self, n_classes, seed=0):
        old, self.out = self.out, nn.Linear(16, n_classes)
        return old


def test_a_new_model_family_plugs_in_without_editing_finetune(digit_images):
    x, y = digit_images
    torch.manual_seed(0)
    net = _TwoLayerNet()
    old = ft.replace_head(net, 10)
    assert old is not net.out and net.out.out_features == 10
    before = copy.deepcopy(net.state_dict())
    hist = ft.finetune(net, (x, y), strategy="partial", n_unfrozen=1, lr=3e-3,
                       config=train.TrainConfig(epochs=1, batch_size=64, optimizer="adamw", progress=False))
    assert hist.params["trainable"] == 32 * 16 + 16 + 16 * 10 + 10
    assert torch.equal(net.body[0].weight, before["body.0.weight"])          # frozen block
    assert not torch.equal(net.body[2].weight, before["body.2.weight"])      # the top block trains
    assert ft.relative_change(before, net)[0] == 0 < ft.relative_change(before, net)[1]
    ft.set_strategy(net, "lora", lora_r=2)                                   # the model's own targets
    assert isinstance(net.body[0], ft.LoRALinear) and not isinstance(net.body[2], ft.LoRALinear)
    view = ft.swap_head(net, old)
    assert view.out is old and net.out is not old
