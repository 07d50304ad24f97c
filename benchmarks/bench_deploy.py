"""Chapter 9, deployment: ONNX parity, int8 quantisation, and the HTTP service under load.

The chapter's ``full`` configuration (notebooks/09_deploy.py): the offline checkpoint
(all-MiniLM-L6-v2) with LoRA (r = 8, alpha = 16, query and value) and a new head, fine-tuned on
GLUE SST-2 (``max_length=64``, 1 epoch, AdamW, LoRA at 1e-3, head at 3e-3), LoRA merged, exported
with ``course_lib.deploy.export_text_classifier`` and quantised with ONNX Runtime's dynamic int8.
Everything is measured on the 872 dev sentences, on the CPU (deployment runs there):

- parity: max |logit difference| between PyTorch and ONNX Runtime;
- int8: accuracy points lost (paired, same sentences) and the file-size ratio;
- latency at batch 1 (median of repeated calls on the longest dev sentence), ONNX Runtime over
  PyTorch, same run;
- the service: ``python -m course_lib.serve`` in a subprocess on 127.0.0.1 with micro-batching
  (``--max-batch 32 --max-wait-ms 5``), a bounded load test at concurrency 8 with single dev
  sentences: throughput and p99 latency.

On 2 CPU cores the full training set takes hours: ``--cpu-only`` fine-tunes on a random
3,000-sentence part (the record's dataset and note say so); the full set runs on a GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 9  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("onnx_vs_torch_max_abs_diff", "<= 0.0001", "logit units",
         "max |logit difference| between PyTorch and ONNX Runtime on the SST-2 dev set (float32)"),
    Goal("int8_accuracy_drop_points", "<= 1", "accuracy points",
         "SST-2 dev accuracy of the float32 ONNX model minus the ONNX Runtime dynamic-int8 one",
         reference="Q8BERT: int8 BERT within 1 point of float32 on GLUE tasks (quantisation-aware); "
                   "dynamic int8 {cite:p}`jacob2018quantization`"),
    Goal("int8_size_ratio", "<= 0.35", "ratio", "int8 ONNX file size over the float32 one"),
    Goal("onnx_latency_over_torch", "report", "ratio",
         "median latency at batch 1 on the CPU: ONNX Runtime float32 over PyTorch float32, same run"),
    Goal("serve_throughput_rps", "report", "requests/s",
         "course_lib.serve with micro-batching, 8 concurrent clients on 127.0.0.1, one sentence each"),
    Goal("serve_p99_ms", "report", "ms", "p99 latency of the same load test (nearest rank)",
         reference="Clipper's adaptive batching targets a latency objective {cite:p}`crankshaw2017clipper`"),
)
FULL = dict(max_len=64, epochs=1, batch_size=32, n_train=None, n_dev=None, n_requests=2000, reps=200)
CPU = dict(FULL, batch_size=16, n_train=3000, n_requests=1000, reps=100)
TINY = dict(FULL, max_len=32, batch_size=16, n_train=64, n_dev=96, n_requests=40, reps=5)


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import tempfile

    import numpy as np
    import torch

    from course_lib import bert, data, deploy, serve, train
    from course_lib import finetune as ft
    from course_lib.device import get_device, seed_everything

    cfg = TINY if tiny else (CPU if cpu_only else FULL)
    sst = data.load_sst2()
    folder = bert.locate_checkpoint()
    tok = bert.load_tokenizer(folder)
    n_train = cfg["n_train"] or len(sst.train_sentences)
    sel = np.random.default_rng(0).permutation(len(sst.train_sentences))[:n_train]
    x_tr = bert.encode(tok, [sst.train_sentences[i] for i in sel], max_length=cfg["max_len"])
    y_tr = torch.as_tensor(sst.train_labels[sel])
    dev = list(sst.dev_sentences[:cfg["n_dev"]])
    y_dev = np.asarray(sst.dev_labels[:cfg["n_dev"]])
    seed_everything(0)
    clf = bert.SequenceClassifier(bert.BertModel.from_pretrained(folder), 2, pooling="mean")
    with common.Timer() as t_train:
        ft.finetune(clf, (x_tr, y_tr), strategy="lora", lr=1e-3, head_lr=3e-3, lora_r=8, lora_alpha=16,
                    device=get_device(), config=train.TrainConfig(
                        epochs=cfg["epochs"], batch_size=cfg["batch_size"], optimizer="adamw", schedule="cosine",
                        warmup=0.1, weight_decay=0.01, seed=0, progress=False))
    clf = ft.merge_lora(clf.cpu().eval())
    work = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    onnx_path = deploy.export_text_classifier(clf, tok, work / "sst2.onnx", dev[:4], max_length=cfg["max_len"])
    int8_path = deploy.quantize_onnx(onnx_path, work / "sst2_int8.onnx")
    sess, sess8 = deploy.onnx_session(onnx_path), deploy.onnx_session(int8_path)
    x = bert.encode(tok, dev, max_length=cfg["max_len"])
    with torch.no_grad():
        ref = train.predict(clf, x, device="cpu", batch_size=128).numpy()
    feed = [x[:, i] for i in range(3)]
    out = deploy.run_onnx(sess, feed, batch_size=128)
    out8 = deploy.run_onnx(sess8, feed, batch_size=128)
    parity = deploy.compare(ref, out)
    diff, lo, hi = deploy.paired_difference(out.argmax(1) == y_dev, out8.argmax(1) == y_dev)
    size_ratio = deploy.file_size(int8_path) / deploy.file_size(onnx_path)
    size_note = f"{deploy.file_size(int8_path) / 2**20:.1f} MB vs {deploy.file_size(onnx_path) / 2**20:.1f} MB"

    longest = int(np.argmax([len(s) for s in dev]))
    one = bert.encode(tok, [dev[longest]], max_length=cfg["max_len"])
    one_t = [one[:, i] for i in range(3)]
    one_np = dict(zip(deploy.TEXT_INPUTS, [t.numpy() for t in one_t]))
    with torch.no_grad():
        t_torch = np.median(deploy.time_calls(lambda: clf(*one_t), cfg["reps"], max_seconds=60))
    t_ort = np.median(deploy.time_calls(lambda: sess.run(None, one_np), cfg["reps"], max_seconds=60))

    tokens = [len(ids) for ids in tok(dev)["input_ids"]]
    ref_dist = deploy.reference_distributions(ref.argmax(1), tokens, 2, deploy.LENGTH_BINS)
    model_dir = deploy.save_model_dir(work / "model", onnx_path, kind="text", labels=["negative", "positive"],
                                      name="sst2-minilm-lora", version="bench", tokenizer=tok,
                                      max_length=cfg["max_len"], reference=ref_dist)
    with serve.Server(model_dir, max_batch=32, max_wait_ms=5, start_timeout=120) as s:
        serve.load_test(s.url, [{"text": t} for t in dev[:16]], concurrency=8, n_requests=16, max_seconds=30)  # warm
        load = serve.load_test(s.url, [{"text": t} for t in dev], concurrency=8, n_requests=cfg["n_requests"],
                               max_seconds=300)
    import shutil
    shutil.rmtree(work, ignore_errors=True)

    subset = "" if cfg["n_train"] is None else f"random {n_train:,} of "
    tag = "tiny: " if tiny else ""
    dataset = (f"{tag}GLUE SST-2: LoRA fine-tuning on {subset}{len(sst.train_sentences):,} train sentences, "
               f"{cfg['epochs']} epoch; dev {len(y_dev)} ({sst.source['dev']})")
    cpu_note = ("CPU: a 3,000-sentence training subset (the full set runs on a GPU)"
                if cpu_only and not tiny else None)
    load_note = common.load_note()
    return [
        common.record(GOALS["onnx_vs_torch_max_abs_diff"], parity["max_abs_diff"], tiny=tiny, dataset=dataset,
                      seconds=t_train.seconds,
                      note=common.join_notes(f"same predictions: {parity['agreement']:.2%}", cpu_note)),
        common.record(GOALS["int8_accuracy_drop_points"], -100 * diff, tiny=tiny, dataset=dataset,
                      note=common.join_notes(f"paired 95% interval of the change [{100 * lo:+.2f}, {100 * hi:+.2f}] "
                                             f"points; same predictions {float((out.argmax(1) == out8.argmax(1)).mean()):.2%}",
                                             cpu_note)),
        common.record(GOALS["int8_size_ratio"], size_ratio, tiny=tiny, dataset=dataset,
                      note=size_note),
        common.record(GOALS["onnx_latency_over_torch"], t_ort / t_torch, tiny=tiny, dataset=dataset,
                      note=common.join_notes(f"PyTorch {1000 * t_torch:.2f} ms, ONNX Runtime {1000 * t_ort:.2f} ms, "
                                             f"{len(one[0, 0])} tokens", load_note)),
        common.record(GOALS["serve_throughput_rps"], load["rps"], tiny=tiny, dataset=dataset,
                      seconds=load["seconds"],
                      note=common.join_notes(f"{load['n']} requests, {load['errors']} errors", load_note)),
        common.record(GOALS["serve_p99_ms"], load["p99_ms"], tiny=tiny, dataset=dataset, seconds=load["seconds"],
                      note=common.join_notes(f"p50 {load['p50_ms']:.1f} ms, p95 {load['p95_ms']:.1f} ms", load_note)),
    ]


if __name__ == "__main__":
    sys.exit(common.main(records))
