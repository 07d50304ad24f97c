"""From a trained model to a file a service can load: export, parity, quantisation (chapter 9).

What the deployment chapter teaches, as code the notebook and ``course_lib.serve`` import:

- :func:`export_onnx` — ``torch.onnx.export`` with dynamic batch (and sequence) axes, refusing a
  model left in training mode; :func:`graph_summary` reads the exported graph back with ``onnx``;
- :func:`onnx_session`, :func:`run_onnx` and :func:`compare` — the same inputs through PyTorch and
  ONNX Runtime, max |logit difference| and prediction agreement (parity);
- :func:`quantize_onnx` (ONNX Runtime dynamic int8) and :func:`quantize_torch` (PyTorch dynamic
  int8, ``torch.ao.quantization.quantize_dynamic``): weights stored as int8 with one scale per
  tensor, activations quantised on the fly, batch by batch;
- :func:`paired_difference` — the accuracy change of a quantised model on the *same* examples, with
  a 95% interval for paired proportions; :func:`time_calls` and :func:`percentiles` for latency;
- :func:`save_model_dir` / :func:`load_model_dir` — the folder a server loads (``model.onnx``,
  ``model.json`` with version, SHA-256, labels and the dev-set reference for drift, the tokenizer),
  verified at load time so that a missing or corrupt file fails at start-up;
- :func:`psi` — the population stability index, the drift statistic of the monitoring section;
- :func:`keras_to_tflite` / :func:`tflite_predict` — the chapter-2 Keras autoencoder through
  TensorFlow's Lite converter. TensorFlow 2.21 (the pinned version) still ships
  ``tf.lite.TFLiteConverter``; its ``tf.lite.Interpreter`` is deprecated in favour of LiteRT (PyPI
  ``ai-edge-litert``), which :func:`tflite_predict` uses when installed;
- :func:`parse_pbtxt` — reads Triton's protobuf text format (``deploy/triton/*/config.pbtxt``) so
  that a test can check the serving configuration against the exported model.

References
----------
1) ONNX: Open Neural Network Exchange, https://onnx.ai ; PyTorch ``torch.onnx`` documentation.
2) ONNX Runtime, "Quantize ONNX models" (dynamic quantisation),
   https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
3) Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
   Inference", CVPR 2018. arXiv:1712.05877
4) Zafrir et al., "Q8BERT: Quantized 8Bit BERT", 2019. arXiv:1910.06188
5) Yurdakul, "Statistical properties of population stability index", 2018 (PSI thresholds).
6) NVIDIA Triton Inference Server, model configuration
   (https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md).
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .data import file_digest
from .quiet import native_stderr_filtered

__all__ = ["TEXT_INPUTS", "IMAGE_INPUTS", "TFLITE_CONVERTER", "export_onnx", "export_refusal",
           "export_text_classifier",
           "export_image_classifier", "graph_summary", "onnx_session", "run_onnx", "compare",
           "quantize_onnx", "quantize_torch", "paired_difference", "time_calls", "percentiles",
           "file_size", "save_model_dir", "load_model_dir", "ModelBundle", "ModelDirError",
           "psi", "histogram", "LENGTH_BINS", "INK_BINS", "keras_to_tflite", "tflite_predict",
           "parse_pbtxt"]

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_INPUTS = ("pixels",)
TFLITE_CONVERTER = "tf.lite.TFLiteConverter (TensorFlow {version}); interpreter: {interpreter}"
LENGTH_BINS = (0, 8, 12, 16, 20, 24, 32, 48, 64, 10**9)   # token counts, for the drift reference
INK_BINS = tuple(np.round(np.linspace(0, 0.4, 9), 3)) + (1.01,)   # fraction of inked pixels


# --------------------------------------------------------------------------- export
def export_onnx(model: nn.Module, example: tuple, path: str | os.PathLike, *, input_names: Sequence[str],
                output_names: Sequence[str] = ("logits",), dynamic_axes: dict | None = None,
                opset: int = 18, dynamo: bool = False) -> Path:
    """Export ``model`` to one ONNX file with ``torch.onnx.export``.

    Parameters
    ----------
    model : nn.Module
        Must be in evaluation mode (``model.eval()``): an exported graph keeps whatever dropout and
        batch-norm behaviour the model has at export time.
    example : tuple of Tensor
        Real inputs the exporter runs the model on (any batch size when the batch axis is dynamic).
    path : path-like
    input_names, output_names : sequence of str
    dynamic_axes : dict, optional
        ``{name: {axis: "label"}}``; default: axis 0 of every input and output is ``"batch"``.
    opset : int, default=18
    dynamo : bool, default=False
        False: the TorchScript tracer (fast; records the operations of one run, so Python control
        flow that depends on the data is frozen at the branch the example took). True: the
        ``torch.export`` based exporter (refuses data-dependent control flow instead).

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}.")
    if model.training:
        raise ValueError("the model is in training mode (dropout on, batch-norm updating): call "
                         "model.eval() before exporting, or the file computes a different function.")
    example = tuple(example)
    if len(example) != len(input_names):
        raise ValueError(f"{len(example)} example inputs but input_names={list(input_names)!r}.")
    if dynamic_axes is None:
        dynamic_axes = {n: {0: "batch"} for n in (*input_names, *output_names)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(input_names=list(input_names), output_names=list(output_names), opset_version=opset,
                  dynamo=dynamo)
        if dynamo:
            kw["external_data"] = False
            kw["dynamic_shapes"] = _dynamic_shapes(input_names, dynamic_axes)
        else:
            kw["dynamic_axes"] = dynamic_axes
        torch.onnx.export(model, example, str(path), **kw)
    return path


def export_refusal(model: nn.Module, example: tuple) -> str | None:
    """Why ``torch.export`` refuses ``model`` on ``example``, or None when it captures it.

    ``torch.export`` traces the program symbolically: a Python ``if`` on a tensor's *value*
    (data-dependent control flow) cannot be captured and is refused, where the older tracer behind
    ``torch.onnx.export(..., dynamo=False)`` silently records the branch the example took. The
    exporter's own diagnostics (the partial graph it prints, its log lines) are kept out of the
    output; the error's class and first line are returned.

    Parameters
    ----------
    model : nn.Module, in eval mode
    example : tuple of Tensor
        Example inputs, e.g. ``(images,)`` of shape (B, 1, 28, 28).

    Returns
    -------
    str or None
        ``"<ErrorClass>: <first line of its message>"``, or None if the export succeeded.
    """
    import contextlib
    import io
    import logging

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}.")
    previous = logging.root.manager.disable            # the caller's own setting, restored
    logging.disable(logging.CRITICAL)                  # dynamo's and export's log lines
    try:
        with contextlib.redirect_stderr(io.StringIO()):   # the partial graph it prints
            torch.export.export(model, tuple(example))
    except Exception as e:                             # noqa: BLE001 - any refusal is the answer
        first = (str(e).strip().splitlines() or [""])[0]
        return f"{type(e).__name__}: {first[:200]}"
    finally:
        logging.disable(previous)
    return None


def _dynamic_shapes(input_names, dynamic_axes):
    from torch.export import Dim
    dims = {}
    out = []
    for name in input_names:
        axes = dynamic_axes.get(name, {})
        out.append({a: dims.setdefault(label, Dim.AUTO) for a, label in axes.items()} or None)
    return tuple(out)


def export_text_classifier(model: nn.Module, tokenizer, path, sentences: Sequence[str], max_length: int = 64,
                           **kw) -> Path:
    """Export a :class:`course_lib.bert.SequenceClassifier` with dynamic batch and sequence axes.

    Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` ``(batch, sequence)`` int64;
    output ``logits`` ``(batch, n_classes)``. ``sentences``: a few real sentences to trace with.
    """
    from .bert import encode
    packed = encode(tokenizer, list(sentences), max_length=max_length)          # (N, 3, T)
    example = tuple(packed[:, i].contiguous() for i in range(3))               # 3 x (N, T)
    axes = {n: {0: "batch", 1: "sequence"} for n in TEXT_INPUTS}
    axes["logits"] = {0: "batch"}
    return export_onnx(model, example, path, input_names=TEXT_INPUTS, dynamic_axes=axes, **kw)


def export_image_classifier(model: nn.Module, path, images: torch.Tensor, **kw) -> Path:
    """Export an image classifier (e.g. :class:`course_lib.cnn.LeNet`): input ``pixels``
    ``(batch, C, H, W)`` float32, output ``logits`` ``(batch, n_classes)``, dynamic batch."""
    return export_onnx(model, (images,), path, input_names=IMAGE_INPUTS, **kw)


def graph_summary(path: str | os.PathLike) -> dict:
    """What an exported file holds: ``{"inputs": {name: (dtype, dims)}, "outputs": ...,
    "ops": {op_type: count}, "n_nodes", "n_weights", "opset"}``; a symbolic axis shows as its
    label (``"batch"``), a fixed one as an int."""
    import onnx
    m = onnx.load(str(path))

    def io(values):
        out = {}
        for v in values:
            t = v.type.tensor_type
            dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
            out[v.name] = (onnx.TensorProto.DataType.Name(t.elem_type).lower(), dims)
        return out

    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    n_weights = sum(int(np.prod(init.dims)) for init in m.graph.initializer)
    return {"inputs": io(m.graph.input), "outputs": io(m.graph.output), "ops": dict(sorted(ops.items())),
            "n_nodes": len(m.graph.node), "n_weights": n_weights,
            "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))}


# --------------------------------------------------------------------------- running and parity
def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` (``threads``: intra-op threads, default ORT's)."""
    import onnxruntime as ort
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {str(path)!r}.")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: dict | Sequence, batch_size: int | None = None) -> np.ndarray:
    """Run ``session`` on ``inputs`` (a dict by input name, or a sequence in the graph's input
    order, of numpy arrays or tensors) and return its first output, optionally in batches.

    Arrays are passed as they are: a float64 array for a float32 input is an error from ONNX
    Runtime, not silently cast (see the chapter's pitfall).
    """
    names = [i.name for i in session.get_inputs()]
    if not isinstance(inputs, dict):
        inputs = dict(zip(names, inputs))
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"missing inputs {missing}; the graph takes {names}.")
    feed = {n: (inputs[n].cpu().numpy() if torch.is_tensor(inputs[n]) else np.asarray(inputs[n]))
            for n in names}
    N = len(next(iter(feed.values())))
    step = batch_size or N
    outs = [session.run(None, {n: a[i:i + step] for n, a in feed.items()})[0] for i in range(0, N, step)]
    return np.concatenate(outs)


def compare(reference, candidate) -> dict:
    """Parity of two logit arrays ``(N, C)``: ``{"max_abs_diff", "agreement", "n"}`` where
    ``agreement`` is the fraction of rows with the same arg-max."""
    a = reference.detach().cpu().numpy() if torch.is_tensor(reference) else np.asarray(reference)
    b = candidate.detach().cpu().numpy() if torch.is_tensor(candidate) else np.asarray(candidate)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (N, C) arrays of the same shape; got {a.shape} and {b.shape}.")
    return {"max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()),
            "agreement": float((a.argmax(1) == b.argmax(1)).mean()), "n": int(len(a))}


# --------------------------------------------------------------------------- quantisation
def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation with ONNX Runtime: weights of MatMul/Gemm/Conv/Gather stored as
    int8 (per tensor), activations quantised at run time. Returns ``dst``."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    dst = Path(dst)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)                       # ORT logs a pre-processing hint at WARNING
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return dst


def quantize_torch(model: nn.Module) -> nn.Module:
    """PyTorch's dynamic int8 quantisation of every ``nn.Linear`` (a copy; CPU only).

    ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of the ``torchao`` package
    but still ships with torch 2.13; convolutions stay float (dynamic quantisation covers
    linear and recurrent layers only).
    """
    from torch.ao.quantization import quantize_dynamic
    if model.training:
        raise ValueError("call model.eval() before quantising.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).cpu(), {nn.Linear}, dtype=torch.qint8)


def paired_difference(correct_a, correct_b, z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy of ``b`` minus accuracy of ``a`` on the same examples, with a normal interval.

    The per-example difference ``d_i = b_i - a_i`` is in {-1, 0, 1}; its mean is the accuracy
    change and its standard error ``sd(d) / sqrt(n)`` counts only the examples where the two
    models disagree (the paired form: much tighter than two independent intervals).

    Returns
    -------
    (diff, low, high) : floats, fractions (multiply by 100 for points)
    """
    a = np.asarray(correct_a, dtype=np.float64).ravel()
    b = np.asarray(correct_b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"correct_a and correct_b must be two 0/1 arrays of the same length >= 2; "
                         f"got {a.shape} and {b.shape}.")
    d = b - a
    se = d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - z * se), float(d.mean() + z * se)


def time_calls(fn: Callable[[], object], repeats: int = 20, warmup: int = 2,
               max_seconds: float = 10.0) -> np.ndarray:
    """Wall time of ``fn()`` in seconds, ``repeats`` times after ``warmup`` calls (stops early
    after ``max_seconds``, keeping at least 3 timings)."""
    for _ in range(warmup):
        fn()
    out, start = [], time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if len(out) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return np.asarray(out)


def percentiles(timings, qs: Sequence[float] = (50, 95, 99)) -> dict:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of raw timings, by the nearest-rank method
    (the smallest value with at least q% of the timings at or below it: always a real timing)."""
    x = np.sort(np.asarray(timings, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("timings is empty.")
    out = {}
    for q in qs:
        if not 0 < q <= 100:
            raise ValueError(f"percentile q={q!r} must be in (0, 100].")
        out[f"p{q:g}"] = float(x[max(math.ceil(q / 100 * x.size), 1) - 1])
    return out


def file_size(path: str | os.PathLike) -> int:
    """Bytes of a model file, its external-data file (``<name>.data``) included."""
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


# --------------------------------------------------------------------------- drift
def histogram(values, bins: Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in the half-open bins ``[bins[i], bins[i+1])``."""
    return np.histogram(np.asarray(values, dtype=np.float64), bins=np.asarray(bins, dtype=np.float64))[0]


def psi(expected, observed, eps: float = 1e-4) -> float:
    """Population stability index between two count (or frequency) vectors over the same bins.

    ``PSI = sum_i (o_i - e_i) ln(o_i / e_i)`` on proportions (each floored at ``eps``): 0 when the
    distributions agree, symmetric, and by a common rule of thumb < 0.1 stable, 0.1-0.25 a moderate
    shift, > 0.25 a large one.
    """
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if e.shape != o.shape or e.ndim != 1 or e.size < 2:
        raise ValueError(f"expected and observed must be 1-D count vectors of the same length >= 2; "
                         f"got {e.shape} and {o.shape}.")
    if (e < 0).any() or (o < 0).any() or e.sum() == 0 or o.sum() == 0:
        raise ValueError("counts must be non-negative with a positive total.")
    e = np.maximum(e / e.sum(), eps)
    o = np.maximum(o / o.sum(), eps)
    return float(((o - e) * np.log(o / e)).sum())


# --------------------------------------------------------------------------- the model folder
class ModelDirError(RuntimeError):
    """A model folder that cannot be served (missing file, bad checksum, unreadable graph)."""


class ModelBundle:
    """What :func:`load_model_dir` returns: the ONNX Runtime session, its metadata and, for text
    models, the tokenizer saved beside it.

    Attributes
    ----------
    folder : Path
    meta : dict
        ``model.json``: ``name``, ``version``, ``sha256``, ``kind`` ("text" or "image"), ``labels``,
        ``inputs``, ``max_length``/``image_shape``, ``reference`` (dev-set distributions).
    session : onnxruntime.InferenceSession
    tokenizer : tokenizers.Tokenizer or None
        Read from ``tokenizer/tokenizer.json`` (the same normalisation as in training, lower-casing
        included), padding and truncation off.
    """

    def __init__(self, folder, meta, session, tokenizer=None):
        self.folder, self.meta, self.session, self.tokenizer = Path(folder), meta, session, tokenizer

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def logits(self, batch: dict) -> np.ndarray:
        return self.session.run(None, batch)[0]


def save_model_dir(dest: str | os.PathLike, onnx_path: str | os.PathLike, *, kind: str, labels: Sequence[str],
                   name: str, version: str, tokenizer=None, max_length: int | None = None,
                   image_shape: Sequence[int] | None = None, reference: dict | None = None,
                   extra: dict | None = None) -> Path:
    """Write the folder a server loads: ``model.onnx``, ``model.json`` and, for text, ``tokenizer/``.

    Parameters
    ----------
    dest : path-like (created; an existing ``model.onnx`` is replaced)
    onnx_path : the exported file (one file, no external data)
    kind : {"text", "image"}
    labels : class names, in logit order
    name, version : str
        Shown in every response with the file's SHA-256.
    tokenizer : the tokenizer used in training (text models), saved with ``save_pretrained``
    max_length : int, tokens kept per text (longer ones are truncated, as in training)
    image_shape : (H, W) for image models
    reference : dict, optional
        The dev set's distributions for drift: ``{"classes": [counts], "sizes": [counts],
        "size_bins": [...]}`` (see :func:`reference_distributions`).
    """
    if kind not in ("text", "image"):
        raise ValueError(f"kind={kind!r}; expected 'text' or 'image'.")
    if kind == "text" and (tokenizer is None or not max_length):
        raise ValueError("a text model needs its tokenizer and max_length.")
    if kind == "image" and (image_shape is None or len(image_shape) != 2):
        raise ValueError(f"an image model needs image_shape=(H, W); got {image_shape!r}.")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, dest / "model.onnx")
    sess = onnx_session(dest / "model.onnx")
    if sess.get_outputs()[0].shape[-1] != len(labels):
        raise ValueError(f"{len(labels)} labels but the model has {sess.get_outputs()[0].shape[-1]} outputs.")
    meta = {"name": name, "version": str(version), "sha256": file_digest(dest / "model.onnx"), "kind": kind,
            "labels": list(labels), "inputs": [i.name for i in sess.get_inputs()],
            "max_length": max_length, "image_shape": list(image_shape) if image_shape else None,
            "reference": reference, **(extra or {})}
    if tokenizer is not None:
        tokenizer.save_pretrained(str(dest / "tokenizer"))
    (dest / "model.json").write_text(json.dumps(meta, indent=1))
    return dest


def reference_distributions(classes, sizes, n_classes: int, bins: Sequence[float]) -> dict:
    """The dev set's predicted-class counts and size (token count / ink) histogram, for drift."""
    return {"classes": np.bincount(np.asarray(classes), minlength=n_classes).tolist(),
            "sizes": histogram(sizes, bins).tolist(), "size_bins": [float(b) for b in bins]}


__all__.append("reference_distributions")


def load_model_dir(folder: str | os.PathLike) -> ModelBundle:
    """Load and verify a folder written by :func:`save_model_dir`.

    Raises
    ------
    ModelDirError
        Naming the file and the fix, when ``model.json`` or ``model.onnx`` is missing or
        unreadable, the SHA-256 differs from the one recorded (a truncated copy, a file replaced
        by another), the graph's inputs are not those recorded, or the tokenizer is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelDirError(f"model folder {str(folder)!r} does not exist; write one with "
                            "course_lib.deploy.save_model_dir.")
    meta_path, onnx_path = folder / "model.json", folder / "model.onnx"
    for p in (meta_path, onnx_path):
        if not p.is_file():
            raise ModelDirError(f"{str(p)!r} is missing: the folder is not a complete model folder.")
    try:
        meta = json.loads(meta_path.read_text())
        kind, want = meta["kind"], meta["sha256"]
        meta["labels"], meta["version"], meta["name"]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelDirError(f"{str(meta_path)!r} is not a valid model description ({type(e).__name__}: {e}).") from None
    got = file_digest(onnx_path)
    if got != want:
        raise ModelDirError(f"{str(onnx_path)!r} has SHA-256 {got[:12]}..., but model.json records "
                            f"{want[:12]}...: the file is corrupt or was replaced; copy the folder again.")
    try:
        session = onnx_session(onnx_path)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelDirError(f"ONNX Runtime cannot load {str(onnx_path)!r}: {str(e)[:300]}") from None
    names = [i.name for i in session.get_inputs()]
    if names != list(meta.get("inputs", names)):
        raise ModelDirError(f"the graph's inputs {names} differ from model.json's {meta['inputs']}.")
    tokenizer = None
    if kind == "text":
        if not (folder / "tokenizer").is_dir():
            raise ModelDirError(f"{str(folder / 'tokenizer')!r} is missing: a text model is served with "
                                "the tokenizer it was trained with.")
        from tokenizers import Tokenizer                      # the fast Rust tokenizer, without transformers
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 (tokenizers raises its own types)
            raise ModelDirError(f"cannot read {str(folder / 'tokenizer' / 'tokenizer.json')!r}: {e}") from None
        tokenizer.no_truncation()                             # the server truncates, and says so
        tokenizer.no_padding()
    elif kind != "image":
        raise ModelDirError(f"model.json kind={kind!r}; expected 'text' or 'image'.")
    return ModelBundle(folder, meta, session, tokenizer)


# --------------------------------------------------------------------------- TF Lite / LiteRT
def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter       # LiteRT, the successor
        return Interpreter, "LiteRT (ai_edge_litert)"
    except ImportError:
        import tensorflow as tf
        return tf.lite.Interpreter, "tf.lite.Interpreter (deprecated in favour of LiteRT)"


def keras_to_tflite(keras_model, quantize: bool = False) -> tuple[bytes, str]:
    """Convert a Keras model with ``tf.lite.TFLiteConverter.from_keras_model``.

    Returns
    -------
    (flatbuffer bytes, description of the converter and interpreter that ran)
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]     # dynamic-range int8 weights
    import contextlib
    import io
    import logging

    tf_log = logging.getLogger("tensorflow")      # "INFO:tensorflow:Assets written to: /tmp/..."
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
                native_stderr_filtered():
            warnings.simplefilter("ignore")
            content = converter.convert()
    finally:
        tf_log.setLevel(level)
    return content, TFLITE_CONVERTER.format(version=tf.__version__, interpreter=_interpreter_class()[1])


def tflite_predict(content: bytes, x: np.ndarray) -> np.ndarray:
    """Run a TF Lite flatbuffer on ``x`` ``(N, ...)`` float32 (the batch axis resized to N)."""
    cls, _ = _interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = cls(model_content=content)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.asarray(x)
    if x.dtype != inp["dtype"]:
        raise ValueError(f"x has dtype {x.dtype}; the model takes {np.dtype(inp['dtype'])}: cast it first.")
    interp.resize_tensor_input(inp["index"], list(x.shape))
    with native_stderr_filtered():                # "INFO: Created TensorFlow Lite XNNPACK delegate"
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
    return interp.get_tensor(out["index"]).copy()


# --------------------------------------------------------------------------- Triton config
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([{}\[\]:,])|("(?:[^"\\]|\\.)*")|([A-Za-z_][\w.]*|[-+]?[\d.]+(?:e[-+]?\d+)?))',
                    re.S)


class _Repeated(list):
    pass


def parse_pbtxt(text: str) -> dict:
    """Parse protobuf text format (Triton's ``config.pbtxt``) into nested dicts and lists.

    A field that appears several times (``input { ... } input { ... }``) becomes a list; ``[...]``
    is a list; numbers become int/float, quoted strings str, bare words (enums such as
    ``TYPE_INT64``) str. Raises ValueError with the position on a syntax error.
    """
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"pbtxt syntax error at character {pos}: {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group(1):
            continue
        tokens.append(m.group(2) or m.group(3) or m.group(4))
    i = 0

    def value(tok):
        if tok.startswith('"'):
            return json.loads(tok)
        try:
            return int(tok)
        except ValueError:
            try:
                return float(tok)
            except ValueError:
                return tok

    def message(end):
        nonlocal i
        out: dict = {}
        while i < len(tokens) and tokens[i] != end:
            key = tokens[i]
            if not re.fullmatch(r"[A-Za-z_]\w*", key):
                raise ValueError(f"pbtxt: expected a field name, got {key!r}")
            i += 1
            if tokens[i] == ":":
                i += 1
            if tokens[i] == "{":
                i += 1
                v = message("}")
                i += 1
            elif tokens[i] == "[":
                i += 1
                v = []
                while tokens[i] != "]":
                    if tokens[i] == "{":
                        i += 1
                        v.append(message("}"))
                        i += 1
                    else:
                        v.append(value(tokens[i]))
                        i += 1
                    if tokens[i] == ",":
                        i += 1
                i += 1
            else:
                v = value(tokens[i])
                i += 1
            if tokens[i:i + 1] == [","]:
                i += 1
            if key in out:                                 # a repeated field: a list of its values
                if not isinstance(out[key], _Repeated):
                    out[key] = _Repeated([out[key]])
                out[key].append(v)
            else:
                out[key] = v
        return {k: list(v) if isinstance(v, _Repeated) else v for k, v in out.items()}

    try:
        result = message(None)
    except IndexError:
        raise ValueError("pbtxt: unexpected end of text (an unclosed '{' or '[').") from None
    if i != len(tokens):
        raise ValueError(f"pbtxt: unexpected {tokens[i]!r}.")
    return result
