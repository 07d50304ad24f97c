"""A model behind an HTTP API: validation, micro-batching, metrics and drift (chapter 9).

Start it with one command, on a folder written by :func:`course_lib.deploy.save_model_dir`::

    python -m course_lib.serve --model DIR [--port 8000] [--max-batch 32] [--max-wait-ms 5]

The model is loaded and verified (SHA-256, graph inputs, tokenizer) **before** the server listens:
a missing or corrupt file stops the command with a message and exit status 2, never a failure on
the first request. Endpoints:

- ``POST /predict`` — ``{"text": "..."}`` or ``{"texts": ["...", ...]}`` for a text model,
  ``{"image": [[...]]}`` or ``{"images": [[[...]]]}`` (``H x W`` grey levels 0..255) for an image
  model. Answers ``{"predictions": [{"label", "class", "probabilities"}...], "model": {...}}``.
  Bad input is answered with a 4xx and ``{"error": {"field", "message"}}`` naming the field:
  400 body not UTF-8 or not JSON, 413 body or one text too long, 422 wrong types, empty text, too
  many items, an image of the wrong shape or values. A text longer than the model's ``max_length``
  tokens (but under ``max_chars`` characters) is **truncated**, as in training, and its prediction
  says ``"truncated": true``.
- ``GET /health`` — ``{"status": "ok", "model": {...}}``.
- ``GET /metrics`` — Prometheus text format (``prometheus_client``): requests by endpoint and
  status, a latency histogram, micro-batch sizes, predicted-class counts, input sizes, the drift
  statistics and the model's version.
- ``GET /drift`` — the population stability index (:func:`course_lib.deploy.psi`) of the predicted
  classes and of the input sizes (tokens per text, ink per image) over the last ``--drift-window``
  items served, against the dev set's distributions stored in ``model.json``.

Every response carries the model's name, version and SHA-256 (in the JSON body of ``/predict``,
``/health``, ``/drift`` and every error, and as ``X-Model-Version`` / ``X-Model-SHA256`` headers).

**Micro-batching.** Requests that arrive within ``max_wait_ms`` of each other are run as one batch
of at most ``max_batch`` items by one inference thread: under concurrent load the model sees fewer,
larger batches (higher throughput), at the price of up to ``max_wait_ms`` of extra latency for a
lone request. ``--max-batch 1`` turns it off (requests run one at a time, in arrival order).

**Shutdown.** SIGTERM or SIGINT: uvicorn stops accepting connections, lets requests in flight finish
(up to ``--graceful-seconds``), then the batcher drains its queue and the process exits with 0.

The client side used by the tests and the notebook is here too: :class:`Server` (start the command
in a subprocess on a free port of 127.0.0.1, wait until healthy, stop it) and :func:`load_test`
(a bounded load test that refuses any host but the local machine).

References
----------
1) FastAPI, https://fastapi.tiangolo.com ; uvicorn, https://www.uvicorn.org (graceful shutdown).
2) Prometheus exposition format, https://prometheus.io/docs/instrumenting/exposition_formats/
3) Crankshaw et al., "Clipper: A Low-Latency Online Prediction Serving System", NSDI 2017
   (adaptive batching). arXiv:1612.03079
4) NVIDIA Triton Inference Server, dynamic batcher (``max_queue_delay_microseconds``).
"""
import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from . import deploy

__all__ = ["ServeConfig", "RequestError", "create_app", "main", "Server", "free_port", "load_test",
           "LOOPBACK"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    max_batch: int = 32              # items per micro-batch (1: no batching)
    max_wait_ms: float = 5.0         # how long a batch's first request waits for others
    max_items: int = 64              # texts or images in one request
    max_chars: int = 5000            # characters in one text (413 above; tokens above max_length are truncated)
    max_body_bytes: int = 4 << 20    # request body (413 above)
    drift_window: int = 500          # items served that the drift statistic looks at
    threads: int = 0                 # ONNX Runtime intra-op threads (0: its default)

    def __post_init__(self):
        for name in ("max_batch", "max_items", "max_chars", "max_body_bytes", "drift_window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an integer >= 1.")
        if not (self.max_wait_ms >= 0 and math.isfinite(self.max_wait_ms)):
            raise ValueError(f"max_wait_ms={self.max_wait_ms!r} must be a number >= 0.")


class RequestError(Exception):
    """A bad request: HTTP ``status``, the ``field`` at fault and a message naming the fix."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


# --------------------------------------------------------------------------- validation
def _items(payload, one: str, many: str, max_items: int) -> tuple[list, str]:
    """The list of items of a request, and the field name they came from."""
    if not isinstance(payload, dict):
        raise RequestError(422, "body", f"the body must be a JSON object such as {{\"{many}\": [...]}}; "
                                        f"got a JSON {_json_type(payload)}.")
    unknown = sorted(set(payload) - {one, many})
    if unknown:
        raise RequestError(422, unknown[0], f"unknown field {unknown[0]!r}; this model takes "
                                            f"\"{one}\" (one item) or \"{many}\" (a list).")
    if (one in payload) == (many in payload):
        raise RequestError(422, many, f"send exactly one of \"{one}\" (one item) or \"{many}\" (a list).")
    if one in payload:
        return [payload[one]], one
    items = payload[many]
    if not isinstance(items, list):
        raise RequestError(422, many, f"\"{many}\" must be a list; got a JSON {_json_type(items)}.")
    if not items:
        raise RequestError(422, many, f"\"{many}\" is empty; send at least one item.")
    if len(items) > max_items:
        raise RequestError(422, many, f"\"{many}\" has {len(items)} items; the limit is {max_items} "
                                      "per request: split it into several requests.")
    return items, many


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


def _field(name: str, single: bool, i: int) -> str:
    return name if single else f"{name}[{i}]"


class _TextModel:
    one, many = "text", "texts"

    def __init__(self, bundle: deploy.ModelBundle, cfg: ServeConfig):
        self.tok, self.max_length, self.cfg = bundle.tokenizer, int(bundle.meta["max_length"]), cfg
        self.pad = self.tok.token_to_id("[PAD]") or 0
        self.bins = (bundle.meta.get("reference") or {}).get("size_bins") or list(deploy.LENGTH_BINS)

    def prepare(self, items, name, single):
        out = []
        for i, t in enumerate(items):
            f = _field(name, single, i)
            if not isinstance(t, str):
                raise RequestError(422, f, f"{f} must be a string; got a JSON {_json_type(t)}.")
            if not t.strip():
                raise RequestError(422, f, f"{f} is empty (or only white space); send some text.")
            if len(t) > self.cfg.max_chars:
                raise RequestError(413, f, f"{f} has {len(t):,} characters; the limit is "
                                           f"{self.cfg.max_chars:,}.")
        enc = [e.ids for e in self.tok.encode_batch(list(items), add_special_tokens=True)]
        for ids in enc:
            n = len(ids)
            ids = ids if n <= self.max_length else ids[:self.max_length - 1] + ids[-1:]   # keep [SEP]
            out.append((ids, n > self.max_length, n))
        return out

    def run(self, prepared) -> np.ndarray:
        T = max(len(p[0]) for p in prepared)
        ids = np.full((len(prepared), T), self.pad, dtype=np.int64)         # (B, T) padded to the longest
        mask = np.zeros((len(prepared), T), dtype=np.int64)
        for r, (seq, _, _) in enumerate(prepared):
            ids[r, :len(seq)] = seq
            mask[r, :len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    @staticmethod
    def size(p):
        return min(p[2], 10**8)

    @staticmethod
    def extra(p):
        return {"truncated": bool(p[1]), "tokens": int(p[2])}


class _ImageModel:
    one, many = "image", "images"

    def __init__(self, bundle: deploy.ModelBundle, cfg: ServeConfig):
        self.H, self.W = bundle.meta["image_shape"]
        self.mean, self.std = bundle.meta.get("normalize", [0.0, 1.0])
        self.bins = (bundle.meta.get("reference") or {}).get("size_bins") or list(deploy.INK_BINS)

    def prepare(self, items, name, single):
        out = []
        for i, img in enumerate(items):
            f = _field(name, single, i)
            if not isinstance(img, list) or not all(isinstance(row, list) for row in img):
                raise RequestError(422, f, f"{f} must be a list of {self.H} rows of {self.W} numbers "
                                           f"(grey levels 0..255); got a JSON {_json_type(img)}.")
            shape = (len(img), *sorted({len(r) for r in img}))
            if shape != (self.H, self.W):
                got = f"{len(img)} rows of lengths {sorted({len(r) for r in img})}"
                raise RequestError(422, f, f"{f} must be {self.H} x {self.W}; got {got}.")
            if not all(type(v) in (int, float) for row in img for v in row):
                raise RequestError(422, f, f"{f} must hold only numbers (grey levels 0..255).")
            a = np.asarray(img, dtype=np.float64)
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
                raise RequestError(422, f, f"{f} values must be grey levels in 0..255; got the range "
                                           f"[{a.min():g}, {a.max():g}].")
            out.append(a)
        return out

    def run(self, prepared):
        x = np.stack(prepared)[:, None] / 255.0                               # (B, 1, H, W) in [0, 1]
        return {"pixels": ((x - self.mean) / self.std).astype(np.float32)}   # float32, as exported

    @staticmethod
    def size(p):
        return float((p > 127).mean())                                        # fraction of inked pixels

    @staticmethod
    def extra(p):
        return {}


# --------------------------------------------------------------------------- micro-batching
class MicroBatcher:
    """Collects concurrent requests into batches of at most ``max_batch`` items, waiting at most
    ``max_wait_s`` after the first, and runs ``run_batch(items)`` on one worker thread."""

    def __init__(self, run_batch, max_batch: int, max_wait_s: float, on_batch=None):
        self.run_batch, self.max_batch, self.max_wait_s, self.on_batch = run_batch, max_batch, max_wait_s, on_batch
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self.queue: asyncio.Queue | None = None
        self.task = None

    async def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self):
        """Finish everything queued, then stop."""
        if self.task is not None:
            await self.queue.put(None)
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, items: list) -> list:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((items, fut))
        return await fut

    async def _loop(self):
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            batch, n = [first], len(first[0])
            deadline = loop.time() + self.max_wait_s
            while n < self.max_batch and self.max_batch > 1:
                left = deadline - loop.time()
                try:
                    nxt = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if nxt is None:
                    stopping = True
                    break
                if n + len(nxt[0]) > self.max_batch:                 # keep it for the next batch
                    self.queue._queue.appendleft(nxt)                # noqa: SLF001 (asyncio.Queue is a deque)
                    break
                batch.append(nxt)
                n += len(nxt[0])
            items = [it for b in batch for it in b[0]]
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, items)
            except Exception as e:  # noqa: BLE001 (passed to every waiting request)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            if self.on_batch:
                self.on_batch(len(items))
            pos = 0
            for its, fut in batch:
                if not fut.done():
                    fut.set_result(results[pos:pos + len(its)])
                pos += len(its)


# --------------------------------------------------------------------------- the app
def create_app(bundle: deploy.ModelBundle, cfg: ServeConfig | None = None):
    """The FastAPI application serving ``bundle`` (a verified model folder)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from starlette.exceptions import HTTPException as StarletteHTTPException

    cfg = cfg or ServeConfig()
    meta = bundle.meta
    info = {"name": meta["name"], "version": meta["version"], "sha256": meta["sha256"]}
    model = _TextModel(bundle, cfg) if bundle.kind == "text" else _ImageModel(bundle, cfg)
    labels = list(meta["labels"])
    reference = meta.get("reference") or {}

    reg = CollectorRegistry()
    m_requests = Counter("course_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=reg)
    m_latency = Histogram("course_request_latency_seconds", "Latency of /predict requests", registry=reg,
                          buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
    m_batch = Histogram("course_batch_size", "Items per model call (micro-batch size)", registry=reg,
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    m_in_flight = Gauge("course_requests_in_flight", "/predict requests being answered now", registry=reg)
    m_pred = Counter("course_predictions", "Predicted classes", ["label"], registry=reg)
    m_size = Histogram("course_input_size", "Tokens per text / inked fraction per image", registry=reg,
                       buckets=[b for b in model.bins[1:-1]])
    Gauge("course_model_info", "The model served", ["name", "version", "sha256"], registry=reg).labels(**info).set(1)
    window = collections.deque(maxlen=cfg.drift_window)                  # (class, size) of recent items
    lock = threading.Lock()

    def drift() -> dict:
        with lock:
            recent = list(window)
        out = {"window": len(recent), "psi_prediction": None, "psi_input_size": None}
        if len(recent) >= 20 and reference.get("classes"):
            classes = np.bincount([c for c, _ in recent], minlength=len(labels))
            sizes = deploy.histogram([s for _, s in recent], reference["size_bins"])
            out.update(psi_prediction=deploy.psi(reference["classes"], classes),
                       psi_input_size=deploy.psi(reference["sizes"], sizes),
                       served={"classes": classes.tolist(), "sizes": sizes.tolist()})
        out["reference"] = reference
        return out

    g_drift = Gauge("course_drift_psi", "PSI of served traffic vs the dev set (NaN until 20 items)", ["feature"],
                    registry=reg)
    g_drift.labels("prediction").set_function(lambda: drift()["psi_prediction"] or float("nan"))
    g_drift.labels("input_size").set_function(lambda: drift()["psi_input_size"] or float("nan"))

    def run_batch(prepared):
        logits = bundle.logits(model.run(prepared))                        # (B, C)
        z = logits - logits.max(1, keepdims=True)
        return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).tolist()       # softmax, (B, C)

    batcher = MicroBatcher(run_batch, cfg.max_batch, cfg.max_wait_ms / 1000, on_batch=m_batch.observe)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"{meta['name']} {meta['version']}", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status, field, message):
        return JSONResponse({"error": {"field": field, "message": message}, "model": info}, status_code=status)

    @app.middleware("http")
    async def stamp(request: Request, call_next):
        counted = request.url.path == "/predict"
        if counted:
            m_in_flight.inc()
        try:
            response = await call_next(request)
        except Exception as e:  # noqa: BLE001 (never take the service down)
            response = error(500, "server", f"internal error: {type(e).__name__}: {str(e)[:200]}")
        finally:
            if counted:
                m_in_flight.dec()
        response.headers["X-Model-Version"] = info["version"]
        response.headers["X-Model-SHA256"] = info["sha256"]
        m_requests.labels(request.url.path if request.url.path in ("/predict", "/health", "/metrics", "/drift")
                          else "other", str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        first = (exc.errors() or [{}])[0]
        return error(422, ".".join(str(x) for x in first.get("loc", ["body"])), str(first.get("msg", exc)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, "path" if exc.status_code in (404, 405) else "body", str(exc.detail))

    @app.get("/health")
    async def health():
        return {"status": "ok", "kind": bundle.kind, "labels": labels, "model": info}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    @app.get("/drift")
    async def get_drift():
        return {**drift(), "model": info}

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        try:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
                raise RequestError(413, "body", f"the body has {int(declared):,} bytes; the limit is "
                                                f"{cfg.max_body_bytes:,}.")
            body = await request.body()
            if len(body) > cfg.max_body_bytes:
                raise RequestError(413, "body", f"the body has {len(body):,} bytes; the limit is {cfg.max_body_bytes:,}.")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RequestError(400, "body", f"the body is not valid UTF-8 (byte {body[e.start]:#04x} at "
                                                f"position {e.start}); send JSON encoded as UTF-8.") from None
            try:
                payload = json.loads(text)
            except ValueError as e:
                raise RequestError(400, "body", f"the body is not valid JSON ({e}).") from None
            items, name = _items(payload, model.one, model.many, cfg.max_items)
            prepared = model.prepare(items, name, name == model.one)
        except RequestError as e:
            return error(e.status, e.field, e.message)
        probs = await batcher.submit(prepared)
        preds = []
        for p, pr in zip(prepared, probs):
            k = int(np.argmax(pr))
            preds.append({"label": labels[k], "class": k, "probabilities": pr, **model.extra(p)})
            m_pred.labels(labels[k]).inc()
            size = model.size(p)
            m_size.observe(size)
            with lock:
                window.append((k, size))
        m_latency.observe(time.perf_counter() - t0)
        return {"predictions": preds, "model": info}

    app.state.batcher, app.state.config, app.state.info = batcher, cfg, info
    return app


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="folder written by course_lib.deploy.save_model_dir")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    d = ServeConfig()
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="items per micro-batch; 1 turns batching off")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms)
    parser.add_argument("--max-items", type=int, default=d.max_items)
    parser.add_argument("--max-chars", type=int, default=d.max_chars)
    parser.add_argument("--drift-window", type=int, default=d.drift_window)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    parser.add_argument("--graceful-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        cfg = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_items=args.max_items,
                          max_chars=args.max_chars, drift_window=args.drift_window, threads=args.threads)
        if not 0 < args.port < 65536:
            raise ValueError(f"--port {args.port} must be in 1..65535.")
        bundle = deploy.load_model_dir(args.model)
        if args.threads:
            bundle.session = deploy.onnx_session(bundle.folder / "model.onnx", threads=args.threads)
    except (deploy.ModelDirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    import uvicorn

    app = create_app(bundle, cfg)
    m = bundle.meta
    print(f"serving {m['name']} {m['version']} (sha256 {m['sha256'][:12]}) on http://{args.host}:{args.port} "
          f"max_batch={cfg.max_batch} max_wait_ms={cfg.max_wait_ms:g}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=args.graceful_seconds))

    def request_stop(signum, frame):            # graceful: stop accepting, finish requests in flight
        server.should_exit = True

    server.capture_signals = contextlib.nullcontext   # our handlers: exit 0 after a graceful stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    try:
        server.run()
    except OSError as e:                         # the port is taken, the address is not ours
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr, flush=True)
        return 2
    if not server.started:
        print(f"error: the server did not start on {args.host}:{args.port}.", file=sys.stderr, flush=True)
        return 2
    print("stopped", flush=True)
    return 0


# --------------------------------------------------------------------------- client side
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_local(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"refusing to send traffic to {host!r}: this helper only talks to the local "
                         f"machine ({', '.join(LOOPBACK)}).")


class Server:
    """``python -m course_lib.serve`` in a subprocess on a free port of 127.0.0.1.

    Use as a context manager (stopped on exit), or call :meth:`stop`. ``start_timeout``: seconds
    to wait for ``/health``; if the process exits first, :class:`RuntimeError` carries its stderr.
    ``options`` become command-line flags: ``max_batch=1`` -> ``--max-batch 1``.
    """

    def __init__(self, model_dir, *, port: int | None = None, start_timeout: float = 60.0, wait: bool = True,
                 **options):
        self.model_dir, self.port = Path(model_dir), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "course_lib.serve", "--model", str(self.model_dir), "--port", str(self.port)]
        for k, v in options.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.returncode = None
        if wait:
            self.wait_ready(start_timeout)

    def wait_ready(self, timeout: float = 60.0) -> "Server":
        """Block until ``/health`` answers (start several servers with ``wait=False``, then wait)."""
        import httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"the server exited with status {self.proc.returncode} before it was "
                                   f"ready: {err.strip()[-2000:] or out.strip()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"the server did not answer /health within {timeout:g} s.")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL after ``timeout`` s. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.returncode is None:
            self.returncode = self.proc.returncode
            self.stdout, self.stderr = self.proc.communicate()
        return self.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def load_test(url: str, payloads: list, *, concurrency: int, n_requests: int, max_seconds: float = 30.0,
              path: str = "/predict", timeout: float = 30.0) -> dict:
    """A bounded load test: ``concurrency`` clients send ``payloads`` (cycled) to ``url + path``
    until ``n_requests`` were sent or ``max_seconds`` passed, one request at a time each.

    Only the local machine is allowed (127.0.0.1, localhost, ::1).

    Returns
    -------
    dict
        ``n`` (answered), ``errors`` (non-200 or failed), ``seconds``, ``rps`` (answered per
        second), ``p50_ms``, ``p95_ms``, ``p99_ms`` (nearest rank) and ``latencies_ms`` (array).
    """
    import httpx
    _check_local(url)
    if not (isinstance(concurrency, int) and concurrency >= 1 and isinstance(n_requests, int) and n_requests >= 1):
        raise ValueError(f"concurrency={concurrency!r} and n_requests={n_requests!r} must be integers >= 1.")
    if not payloads:
        raise ValueError("payloads is empty.")
    counter = iter(range(n_requests))
    lock = threading.Lock()
    latencies, errors = [], []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    deadline = start + max_seconds
    with httpx.Client(base_url=url, limits=limits, timeout=timeout) as client:
        def worker():
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = client.post(path, json=payloads[i % len(payloads)])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if ok else errors).append(dt)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max_seconds + timeout)
    seconds = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    out = {"concurrency": concurrency, "n": len(lat), "errors": len(errors), "seconds": seconds,
           "rps": len(lat) / seconds if seconds > 0 else float("nan"), "latencies_ms": lat}
    if len(lat):
        out.update({f"{k}_ms": v for k, v in deploy.percentiles(lat).items()})
    return out


if __name__ == "__main__":
    sys.exit(main())
