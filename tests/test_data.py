"""Tests of course_lib.data: registry, verified sources, transport, loaders and CLI.

No test touches the internet: downloads go to a local ``http.server`` on 127.0.0.1, and every
other URL is refused by the ``data_no_network`` fixture. The real-data tests read the local
mirror (``../shared/data`` from the project root, or ``$COURSE_TEST_MIRROR``) and are skipped
where it is absent.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data

MIRROR = Path(os.environ.get("COURSE_TEST_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_mirror = pytest.mark.skipif(not (MIRROR / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"no local data mirror at {MIRROR}")
BODY = np.random.default_rng(0).bytes(200_000)  # synthetic payload: these tests test transport
HALF = len(BODY) // 2


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def data_env(tmp_path, monkeypatch):
    """A fresh cache, no mirror, online, short timeout."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setenv("COURSE_DATA_TIMEOUT", "5")
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def data_no_network(monkeypatch):
    """Refuse any URL but 127.0.0.1; record every call to urlopen."""
    calls = []
    real = urllib.request.urlopen

    def guarded(req, *args, **kwargs):
        url = req.full_url if isinstance(req, urllib.request.Request) else req
        calls.append(url)
        if urllib.parse.urlsplit(url).hostname != "127.0.0.1":
            raise urllib.error.URLError(f"network disabled in tests: {url}")
        return real(req, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    return calls


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}   # name -> bytes, served under /good/, /norange/, ...
    log: list = []                 # (path, Range header)

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code, body, ctype="application/octet-stream", length=None, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None or mode in ("404", "403"):
            return self.send_error(403 if mode == "403" else 404)
        if mode == "bad":
            return self._send(200, bytes(reversed(body)))
        if mode == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Error: quota exceeded</body></html>",
                              "text/html")
        if mode == "trunc" or (mode == "flaky" and sum(p == self.path for p, _ in self.log) == 1):
            self._send(200, body[:HALF], length=len(body))  # promise more than is sent, then close
            self.close_connection = True
            return None
        if mode == "stall":
            time.sleep(2)
            return self._send(200, body)
        if rng and mode != "norange":
            start = int(rng.split("=")[1].rstrip("-"))
            return self._send(206, body[start:],
                              headers=[("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")])
        return self._send(200, body)


@pytest.fixture(scope="module")
def data_server():
    """A local HTTP server on an ephemeral port, stopped at the end of the module."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def data_toy(monkeypatch, data_server):
    """Register a dataset 'toy' with one synthetic file served by the local server."""
    _Handler.files = {"toy.bin": BODY}
    _Handler.log = []
    spec = data.FileSpec("toy.bin", sha256=_sha(BODY), md5=hashlib.md5(BODY).hexdigest(), size=len(BODY))
    monkeypatch.setitem(data.REGISTRY, "toy", data.Dataset("toy", "synthetic bytes", files=(spec,),
                                                           urls=(data_server + "/good/",)))
    return data_server


def _down_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# --------------------------------------------------------------------------- transport
def test_download_verified_then_cached(data_toy, data_env):
    res = data.fetch("toy", urls=[data_toy + "/good/"])["toy.bin"]
    assert res.source == f"download {data_toy}/good/toy.bin"
    assert res.path == data_env / "toy" / "toy.bin" and res.path.read_bytes() == BODY
    assert data.fetch("toy")["toy.bin"].source.startswith("cache ")
    assert len(_Handler.log) == 1


def test_wrong_checksum_is_rejected(data_toy, data_env):
    with pytest.raises(data.ChecksumError, match="checksum mismatch for toy.bin from") as e:
        data.fetch("toy", urls=[data_toy + "/bad/"])
    assert f"expected sha256 {_sha(BODY)}, got {_sha(bytes(reversed(BODY)))}" in str(e.value)
    assert not list((data_env / "toy").iterdir())  # neither the file nor a .part


def test_html_error_page_with_status_200_never_becomes_data(data_toy, data_env):
    with pytest.raises(data.ChecksumError, match="HTML") as e:
        data.fetch("toy", urls=[data_toy + "/html/"])
    assert "/html/toy.bin" in str(e.value)
    assert not list((data_env / "toy").iterdir())


@pytest.mark.parametrize("code", ["404", "403"])
def test_http_error_falls_back_to_next_url(data_toy, code, caplog):
    caplog.set_level(logging.INFO, logger="course_lib.data")
    res = data.fetch("toy", urls=[f"{data_toy}/{code}/", data_toy + "/good/"])["toy.bin"]
    assert res.source == f"download {data_toy}/good/toy.bin" and res.path.read_bytes() == BODY
    assert [p for p, _ in _Handler.log] == [f"/{code}/toy.bin", "/good/toy.bin"]
    assert f"HTTP {code}" in caplog.text


def test_truncated_transfer_leaves_no_data_file(data_toy, data_env):
    with pytest.raises(data.DataUnavailableError, match="interrupted"):
        data.fetch("toy", urls=[data_toy + "/trunc/"])
    assert not (data_env / "toy" / "toy.bin").exists()
    assert len(_Handler.log) == 2  # retried once


def test_truncated_transfer_is_resumed_with_range(data_toy, data_env):
    res = data.fetch("toy", urls=[data_toy + "/flaky/"])["toy.bin"]
    assert res.path.read_bytes() == BODY
    assert _Handler.log == [("/flaky/toy.bin", None), ("/flaky/toy.bin", f"bytes={HALF}-")]
    assert not (data_env / "toy" / "toy.bin.part").exists()


def test_partial_file_is_resumed(data_toy, data_env):
    (data_env / "toy").mkdir(parents=True)
    (data_env / "toy" / "toy.bin.part").write_bytes(BODY[:50_000])
    assert data.fetch("toy")["toy.bin"].path.read_bytes() == BODY
    assert _Handler.log == [("/good/toy.bin", "bytes=50000-")]


def test_server_ignoring_range_restarts_cleanly(data_toy, data_env):
    (data_env / "toy").mkdir(parents=True)
    (data_env / "toy" / "toy.bin.part").write_bytes(b"x" * 50_000)
    assert data.fetch("toy", urls=[data_toy + "/norange/"])["toy.bin"].path.read_bytes() == BODY


def test_server_down_falls_through_then_clear_error(data_toy):
    down = _down_url()
    res = data.fetch("toy", urls=[down, data_toy + "/good/"])["toy.bin"]
    assert res.source.startswith(f"download {data_toy}/good/")
    res.path.unlink()
    msg = r"no source for toy/toy.bin: set COURSE_DATA_MIRROR"
    with pytest.raises(data.DataUnavailableError, match=msg) as e:
        data.fetch("toy", urls=[down])
    assert down in str(e.value)


def test_failed_download_is_normal_operation_nothing_on_stderr(data_toy, data_env, tmp_path,
                                                               monkeypatch, capfd, caplog):
    """No network: the packaged copy serves the file, the source says why, stderr stays empty.

    A notebook writes a loader's messages into its cell outputs; stderr there fails the book build,
    so a fallback (normal operation) must not print to stderr. A corrupt mirror file still warns.
    """
    packaged = tmp_path / "packaged"
    packaged.mkdir()
    (packaged / "toy.bin").write_bytes(BODY)
    toy = data.REGISTRY["toy"]
    monkeypatch.setitem(data.REGISTRY, "toy", dataclasses.replace(toy, package_dirs=(str(packaged),)))
    down = _down_url()
    res = data.fetch("toy", urls=[down])["toy.bin"]
    assert res.source.startswith(f"package packaged/toy.bin (download failed: {down}toy.bin")
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    # Python's logging prints WARNING and above to stderr when nothing is configured (lastResort)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "toy.bin").write_bytes(BODY[::-1])
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(mirror))
    data.fetch("toy", urls=[down])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("rejected: checksum mismatch" in m for m in warned)     # a real problem still warns


def test_stalled_server_times_out(data_toy, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_TIMEOUT", "0.5")
    t0 = time.monotonic()
    with pytest.raises(data.DataUnavailableError, match="stall"):
        data.fetch("toy", urls=[data_toy + "/stall/"])
    assert time.monotonic() - t0 < 2


def test_corrupt_cache_is_fetched_again(data_toy, data_env, caplog):
    path = data.fetch("toy")["toy.bin"].path
    path.write_bytes(BODY[:-1] + b"\x00")
    res = data.fetch("toy")["toy.bin"]
    assert res.source.startswith("download ") and res.path.read_bytes() == BODY
    assert "corrupt cache file" in caplog.text


def test_offline_never_calls_urlopen(data_toy, data_no_network, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(data.DataUnavailableError, match="unset COURSE_OFFLINE to download from"):
        data.fetch("toy")
    split = data.load_mnist()
    assert "held-out" in split.protocol
    assert data_no_network == []


def test_unknown_dataset_and_file_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnst'; known: mnist, fashion_mnist"):
        data.fetch("mnst")
    with pytest.raises(ValueError, match=r"dataset 'mnist' has no file 'train.gz'"):
        data.fetch("mnist", files=["train.gz"])
    with pytest.raises(ValueError, match="has no files to fetch"):
        data.fetch("digits")


def test_archive_source_extracts_and_verifies_members(data_server, monkeypatch, data_env):
    train, dev = b"sentence\tlabel\ngood film \t1\nbad\t0\n", b"sentence\tlabel\nfine\t1\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("SST-2/train.tsv", train)
        zf.writestr("SST-2/dev.tsv", dev)
    _Handler.files = {"SST-2.zip": buf.getvalue()}
    ds = data.Dataset("sst2", "synthetic", urls=(data_server + "/good/",),
                      files=(data.FileSpec("train.tsv", sha256=_sha(train), member="SST-2/train.tsv"),
                             data.FileSpec("dev.tsv", sha256=_sha(b"other"), member="SST-2/dev.tsv")),
                      archive=data.FileSpec("SST-2.zip", md5=hashlib.md5(buf.getvalue()).hexdigest()))
    monkeypatch.setitem(data.REGISTRY, "sst2", ds)
    res = data.fetch("sst2", files=["train.tsv"])["train.tsv"]
    assert res.source == f"download {data_server}/good/SST-2.zip (member SST-2/train.tsv)"
    assert res.path.read_bytes() == train
    with pytest.raises(data.ChecksumError, match="member SST-2/dev.tsv"):
        data.fetch("sst2", files=["dev.tsv"])
    assert not (data_env / "sst2" / "dev.tsv").exists()


def test_read_idx_validates_magic_and_size(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "x.gz"
    good.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + np.array([2, 3, 4], ">u4").tobytes() + x.tobytes()))
    np.testing.assert_array_equal(data.read_idx(good), x)
    bad = tmp_path / "page.gz"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"is not an IDX file: magic number '3c68746d'"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + np.array([5], ">u4").tobytes() + b"\x01\x02")
    with pytest.raises(ValueError, match=r"header says shape \(5,\)"):
        data.read_idx(short)


# --------------------------------------------------------------------------- real data
@pytest.fixture
def data_mirror_copy(tmp_path):
    """A writable copy of the real mirror (mnist + sst2)."""
    dest = tmp_path / "mirror"
    for sub in ("mnist", "sst2"):
        shutil.copytree(MIRROR / sub, dest / sub)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


@needs_mirror
def test_corrupt_mirror_file_rejected_next_source_used(data_mirror_copy, data_server, monkeypatch, caplog):
    labels = data_mirror_copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    _Handler.files = {labels.name: labels.read_bytes()}
    raw = bytearray(labels.read_bytes())
    raw[100] ^= 0xFF
    labels.write_bytes(bytes(raw))
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(data_mirror_copy))
    names = ["t10k-images-idx3-ubyte.gz", labels.name]
    res = data.fetch("mnist", files=names, urls=[data_server + "/good/"])
    assert res[names[0]].source.startswith("mirror ")
    assert res[labels.name].source == f"download {data_server}/good/{labels.name}"
    assert f"mirror file {labels} rejected: checksum mismatch" in caplog.text
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    (Path(os.environ["COURSE_DATA_DIR"]) / "mnist" / labels.name).unlink()
    with pytest.raises(data.ChecksumError, match="rejected: checksum mismatch, expected sha256 f7ae60f9"):
        data.fetch("mnist", files=[labels.name])


@needs_mirror
def test_load_mnist_real_mirror(monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    s = data.load_mnist()
    assert s.x_train.shape == (5000, 28, 28) and s.x_test.shape == (10000, 28, 28)
    assert s.x_train.dtype == s.x_test.dtype == np.uint8 and s.y_train.dtype == np.int64
    assert s.x_train.min() == 0 and s.x_train.max() == 255 and s.x_test.max() == 255
    assert np.bincount(s.y_train).tolist() == [500] * 10
    assert np.bincount(s.y_test, minlength=10).min() > 850
    assert "official MNIST test set (10,000)" in s.protocol and "5,000" in s.protocol
    assert s.source["test"].startswith("mirror mnist/")
    with pytest.raises(data.DataUnavailableError, match="full=True needs the official 60,000"):
        data.load_mnist(full=True)


def test_load_mnist_offline_without_mirror_holds_out(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    s = data.load_mnist(holdout=1000, seed=3)
    assert "held-out 1,000" in s.protocol and "official test set not available" in s.protocol
    assert len(s.x_train) == 4000 and len(s.x_test) == 1000
    assert not set(s.indices["train"]) & set(s.indices["test"])
    assert np.bincount(s.y_test).tolist() == [100] * 10
    assert s.x_train.shape[1:] == (28, 28) and s.x_train.dtype == np.uint8


@needs_mirror
def test_load_mnist_full_uses_official_train(data_server, monkeypatch):
    """With the (here: synthetic, 20-image) training files downloadable, full MNIST is used."""
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    imgs = gzip.compress(b"\x00\x00\x08\x03" + np.array([20, 28, 28], ">u4").tobytes() + x.tobytes())
    labs = gzip.compress(b"\x00\x00\x08\x01" + np.array([20], ">u4").tobytes() + y.tobytes())
    _Handler.files = {"train-images-idx3-ubyte.gz": imgs, "train-labels-idx1-ubyte.gz": labs}
    real = data.REGISTRY["mnist"]
    files = (data.FileSpec("train-images-idx3-ubyte.gz", sha256=_sha(imgs)),
             data.FileSpec("train-labels-idx1-ubyte.gz", sha256=_sha(labs)), *real.files[2:])
    monkeypatch.setitem(data.REGISTRY, "mnist", data.Dataset("mnist", "", files, (data_server + "/good/",)))
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(MIRROR))
    s = data.load_mnist(full=True)
    np.testing.assert_array_equal(s.x_train, x)
    assert len(s.x_test) == 10000 and s.protocol.startswith("train: official MNIST training set (20)")
    assert s.source["train"].startswith(f"download {data_server}/good/")
    assert "5,000" in data.load_mnist(full=False).protocol


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Debian package")
def test_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    s = data.load_fashion_mnist()
    assert s.x_train.shape == (60000, 28, 28) and s.x_test.shape == (10000, 28, 28)
    assert np.bincount(s.y_test).tolist() == [1000] * 10
    assert s.source["train"].startswith("package fashion-mnist/")


@needs_mirror
def test_load_sst2_from_mirror(monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    s = data.load_sst2()
    assert len(s.train_sentences) == len(s.train_labels) == 67349
    assert len(s.dev_sentences) == len(s.dev_labels) == 872
    assert np.bincount(s.train_labels).tolist() == [29780, 37569]
    assert np.bincount(s.dev_labels).tolist() == [428, 444]
    assert s.source["dev"] == "mirror sst2/dev.tsv"
    assert data.sources_served()["sst2 dev"] == "mirror sst2/dev.tsv"


def test_load_digits():
    s = data.load_digits()
    assert s.x_train.shape == (1437, 8, 8) and s.x_test.shape == (360, 8, 8)
    assert 0 <= s.x_train.min() and s.x_train.max() <= 16
    assert not set(s.indices["train"]) & set(s.indices["test"])


def test_load_wine():
    s = data.load_wine()
    assert s.x_train.shape == (142, 13) and s.x_test.shape == (36, 13)
    assert set(s.y_train) == {0, 1, 2} and len(s.source["features"]) == 13
    assert s.x_train[:, s.source["features"].index("proline")].min() > 100   # unscaled units
    assert not set(s.indices["train"]) & set(s.indices["test"])


# --------------------------------------------------------------------------- command line
@needs_mirror
def test_cli_list_and_verify(data_mirror_copy, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_MIRROR", str(MIRROR))
    assert data.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist: MNIST" in out and f"mirror {MIRROR / 'mnist'} (2/4 files)" in out and "sst2" in out
    assert data.main(["verify", str(MIRROR)]) == 0
    assert "4 file(s) checked, 0 mismatch(es)" in capsys.readouterr().out
    bad = data_mirror_copy / "sst2" / "dev.tsv"
    bad.write_bytes(bad.read_bytes().replace(b"\t1\n", b"\t0\n", 1))
    assert data.main(["verify", str(data_mirror_copy)]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH {bad}: expected sha256 54a9c12c" in out and "1 mismatch(es)" in out
    assert data.main(["verify", str(data_mirror_copy / "nowhere")]) == 2


def test_cli_fetch_fills_a_mirror(data_toy, tmp_path, capsys):
    dest = tmp_path / "lab"
    assert data.main(["fetch", "toy", "--dest", str(dest)]) == 0
    assert (dest / "toy" / "toy.bin").read_bytes() == BODY
    assert "toy/toy.bin: download" in capsys.readouterr().out
    assert data.main(["verify", str(dest)]) == 0
    assert data.main(["fetch", "text8", "--dest", str(dest)]) == 1  # no network here
    assert "error: no source for text8/text8.zip" in capsys.readouterr().err
    assert not (dest / "text8").exists()


@needs_mirror
def test_module_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(data.__file__).parents[1]), "COURSE_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "course_lib.data", "verify", str(MIRROR)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "0 mismatch(es)" in proc.stdout


def test_per_class_subset_is_balanced_seeded_and_checked():
    y = np.repeat(np.arange(3), [5, 7, 4])
    idx = data.per_class_subset(y, 2, seed=0)
    assert len(idx) == 6 and np.all(np.bincount(y[idx]) == 2) and len(set(idx)) == 6
    assert np.array_equal(idx, data.per_class_subset(torch.as_tensor(y), 2, seed=0))   # tensors too
    assert not np.array_equal(idx, data.per_class_subset(y, 2, seed=1))
    assert np.all(np.diff(idx) > 0)                                                    # sorted
    for bad in (5, 0, 2.0, True):
        with pytest.raises(ValueError, match=rf"per_class={bad!r} must be an integer in \[1, 4\]"):
            data.per_class_subset(y, bad)


def test_file_digest_streams_the_same_digest_as_hashlib(tmp_path):
    blob = os.urandom((1 << 20) + 12345)            # crosses the 1 MiB block boundary
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    assert data.file_digest(path) == hashlib.sha256(blob).hexdigest()
    assert data.file_digest(str(path), "md5") == hashlib.md5(blob).hexdigest()
    gz = tmp_path / "blob.bin.gz"
    gz.write_bytes(gzip.compress(blob))
    assert data.file_digest(gz, gunzip=True) == hashlib.sha256(blob).hexdigest()
    assert data.file_digest(gz) == hashlib.sha256(gz.read_bytes()).hexdigest()
    assert data.file_digest(gz) != data.file_digest(gz, gunzip=True)
