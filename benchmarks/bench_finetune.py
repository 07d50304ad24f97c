"""Chapter 7, fine-tuning: LoRA against full fine-tuning of the BERT checkpoint on SST-2.

The chapter's ``full`` configuration (notebooks/07_finetuning.py): the offline checkpoint
(all-MiniLM-L6-v2, ``bert.locate_checkpoint()``), GLUE SST-2 from ``data.load_sst2()`` encoded
with ``max_length=max_len``; ``SequenceClassifier(..., pooling="mean")`` trained by
``course_lib.finetune.finetune`` with ``TrainConfig(epochs, batch_size, optimizer="adamw",
schedule="cosine", warmup=0.1, weight_decay=0.01)``: full fine-tuning with the backbone at
``lr_full``, LoRA (rank ``r``, ``alpha``, query and value of every layer) at ``lr_lora``, the new
head at ``head_lr`` in both (the ``full`` side of ``course_lib.settings.PRESETS["finetune"]``).
Both are tested on the 872 dev sentences.

On 2 CPU cores the full training set (67,349 sentences x 3 epochs, twice) takes hours:
``--cpu-only`` fine-tunes on a random 3,000-sentence part for 2 epochs (the record's dataset
and note say so); the full set runs without the flag, on a GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402
from course_lib import settings  # noqa: E402

ORDER = 7  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("lora_vs_full_gap_points", "<= 1", "accuracy points",
         "SST-2 dev accuracy of full fine-tuning minus LoRA (r = 8 on query and value), same data "
         "and schedule",
         reference="RoBERTa-base on SST-2: full fine-tuning 94.8, LoRA 95.1 (0.24% of the parameters) "
                   "{cite:p}`hu2022lora`"),
    Goal("lora_trainable_percent", "<= 2", "% of parameters",
         "trainable parameters of the LoRA model (adapters + head) over all its parameters",
         reference="LoRA trains 0.01-1% of GPT-3 / RoBERTa parameters {cite:p}`hu2022lora`"),
    Goal("lora_train_seconds_over_full", "report", "ratio",
         "training time of LoRA over full fine-tuning, same data, same run"),
)
FULL = dict(settings.preset("finetune", "full"), n_train=None, n_dev=None)   # the notebook's full run
CPU = dict(FULL, epochs=2, batch_size=16, n_train=3000)
TINY = dict(FULL, max_len=32, epochs=1, batch_size=16, n_train=64, n_dev=96)


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import copy

    import numpy as np
    import torch

    from course_lib import bert, data, train
    from course_lib import finetune as ft
    from course_lib.device import get_device, seed_everything

    cfg = TINY if tiny else (CPU if cpu_only else FULL)
    device = get_device()
    sst = data.load_sst2()
    folder = bert.locate_checkpoint()
    tok = bert.load_tokenizer(folder)
    n_train = cfg["n_train"] or len(sst.train_sentences)
    sel = np.random.default_rng(0).permutation(len(sst.train_sentences))[:n_train]
    x_tr = bert.encode(tok, [sst.train_sentences[i] for i in sel], max_length=cfg["max_len"])
    y_tr = torch.as_tensor(sst.train_labels[sel])
    dev_idx = np.arange(len(sst.dev_sentences))[:cfg["n_dev"]]
    x_dev = bert.encode(tok, [sst.dev_sentences[i] for i in dev_idx], max_length=cfg["max_len"])
    y_dev = torch.as_tensor(sst.dev_labels[dev_idx])
    base = bert.BertModel.from_pretrained(folder)
    tc = train.TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], optimizer="adamw",
                           schedule="cosine", warmup=0.1, weight_decay=0.01, seed=0, progress=False)
    acc, secs, frac = {}, {}, {}
    for strategy, lr in (("full", cfg["lr_full"]), ("lora", cfg["lr_lora"])):
        seed_everything(0)
        clf = bert.SequenceClassifier(copy.deepcopy(base), 2, pooling="mean")
        with common.Timer() as t:
            hist = ft.finetune(clf, (x_tr, y_tr), strategy=strategy, lr=lr, head_lr=cfg["head_lr"],
                               config=tc, device=device, lora_r=cfg["r"], lora_alpha=cfg["alpha"])
        pred = train.predict(clf, x_dev, device=device, batch_size=128).argmax(1)
        acc[strategy] = float((pred == y_dev).float().mean())
        secs[strategy], frac[strategy] = t.seconds, hist.params["fraction"]
        del clf
    subset = "" if cfg["n_train"] is None else f"random {n_train:,} of "
    tag = "tiny: " if tiny else ""
    dataset = (f"{tag}GLUE SST-2: train {subset}{len(sst.train_sentences):,} sentences, "
               f"{cfg['epochs']} epochs; dev {len(y_dev)} ({sst.source['dev']})")
    cpu_note = ("CPU: a 3,000-sentence training subset, 2 epochs (the full set runs on a GPU)"
                if cpu_only and not tiny else None)
    ci = {s: bert.accuracy_interval(round(acc[s] * len(y_dev)), len(y_dev)) for s in acc}
    detail = (f"full {acc['full']:.4f} [{ci['full'][0]:.3f}, {ci['full'][1]:.3f}], "
              f"LoRA {acc['lora']:.4f} [{ci['lora'][0]:.3f}, {ci['lora'][1]:.3f}]")
    return [
        common.record(GOALS["lora_vs_full_gap_points"], 100 * (acc["full"] - acc["lora"]), tiny=tiny,
                      dataset=dataset, seconds=secs["full"] + secs["lora"],
                      note=common.join_notes(detail, cpu_note, common.load_note())),
        common.record(GOALS["lora_trainable_percent"], 100 * frac["lora"], tiny=tiny, dataset=dataset,
                      note=f"r = {cfg['r']}, query and value of every layer, plus the head"),
        common.record(GOALS["lora_train_seconds_over_full"], secs["lora"] / secs["full"], tiny=tiny,
                      dataset=dataset, seconds=secs["lora"], note=common.join_notes(cpu_note, common.load_note())),
    ]


if __name__ == "__main__":
    sys.exit(common.main(records))
