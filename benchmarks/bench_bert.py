"""Chapter 5, BERT: SST-2 fine-tuning (parity with ``transformers``: ``bench_bert_parity.py``).

The chapter's ``full`` configuration (notebooks/05_bert.py): the offline checkpoint
(all-MiniLM-L6-v2, ``bert.locate_checkpoint()``; ``BERT_CHECKPOINT`` picks another), GLUE SST-2
from ``data.load_sst2()``, sentences encoded with ``max_length=max_len``; ``SequenceClassifier(...,
pooling="mean")`` trained by ``train.fit`` with ``TrainConfig(epochs, batch_size, lr,
optimizer="adamw", schedule="onecycle", weight_decay=0.01, seed=0)``, the head at ``head_lr``
(the ``full`` side of ``course_lib.settings.PRESETS["bert"]``); (b) the same architecture from random weights; (c) TF-IDF (1-2 grams, sublinear tf) and
scikit-learn's logistic regression (C=10). Every model is tested on the 872 dev sentences.

On 2 CPU cores the full training set (67,349 sentences, 2 epochs of a 22M-parameter Transformer)
takes hours: ``--cpu-only`` skips those two records (``sst2_dev_acc_pretrained_full_ft``,
``sst2_dev_acc_scratch`` on the full set) and measures the 1,000-sentence comparison.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402
from course_lib import settings  # noqa: E402

ORDER = 5.1  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("sst2_dev_acc_pretrained_full_ft", ">= 0.88", "accuracy",
         "pretrained checkpoint + head, every weight fine-tuned on the full SST-2 training set",
         cpu=False,
         reference="BERT-base 93.5, BERT-large 94.9 (GLUE test) {cite:p}`devlin2019bert`; MiniLM keeps "
                   "about 99% of its teacher's GLUE accuracy {cite:p}`wang2020minilm`"),
    Goal("sst2_dev_acc_scratch", "report", "accuracy",
         "the same architecture from random weights, same data and budget as the pretrained model",
         ),
    Goal("sst2_dev_acc_tfidf_lr", "report", "accuracy",
         "TF-IDF (1-2 grams) + logistic regression, same training sentences",
         reference="SST binary, sentences: naive Bayes 81.8%, bigram naive Bayes 83.1%, RNTN 85.4% "
                   "{cite:p}`socher2013recursive`"),
    Goal("pretrained_over_scratch_gain_points_1k", ">= 10", "accuracy points",
         "dev accuracy of the fine-tuned pretrained model minus the from-scratch one, 1,000 training "
         "sentences",
         reference="pre-training matters most with few labels {cite:p}`howard2018universal`"),
)
FULL = dict(settings.preset("bert", "full"), n_small=1000)   # the notebook's full run
TINY = dict(max_len=32, epochs=1, batch_size=16, lr=1e-4, head_lr=3e-3, n_small=32, n_dev=64,
            n_tfidf=1000)


def _fine_tune(make_encoder, x_tr, y_tr, x_dev, cfg, device):
    """The chapter's fine-tuning cell; returns (predicted dev labels, seconds)."""
    import numpy as np
    import torch

    from course_lib import bert, train
    from course_lib.device import seed_everything

    seed_everything(0)
    clf = bert.SequenceClassifier(make_encoder(), 2, pooling="mean")
    ft_config = train.TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                  optimizer="adamw", schedule="onecycle", weight_decay=0.01, seed=0,
                                  progress=False)
    opt = train.build_optimizer(clf, ft_config, groups=[{"params": clf.bert.parameters(), "lr": cfg["lr"]},
                                                        {"params": clf.classifier.parameters(), "lr": cfg["head_lr"]}])
    sched = train.build_scheduler(opt, ft_config, steps_per_epoch=int(np.ceil(len(y_tr) / cfg["batch_size"])))
    with common.Timer() as t:
        train.fit(clf, (x_tr, y_tr), config=ft_config, device=device, optimizer=opt, scheduler=sched)
    pred = train.predict(clf, x_dev, device=device, batch_size=64).argmax(1).numpy()
    return pred, t.seconds


def _tfidf(train_sentences, y_train, dev_sentences):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    with common.Timer() as t:
        tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        lr_model = LogisticRegression(C=10.0, max_iter=2000).fit(tfidf.fit_transform(train_sentences), y_train)
    return lr_model.predict(tfidf.transform(dev_sentences)), t.seconds


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import numpy as np
    import torch

    from course_lib import bert, data, settings
    from course_lib.device import get_device

    cfg = TINY if tiny else FULL
    device = get_device()
    sst = data.load_sst2()
    folder = bert.locate_checkpoint(settings.bert_checkpoint())
    tok = bert.load_tokenizer(folder)
    ckpt = folder.parent.name if folder.name == "model" else folder.name
    n_dev = cfg.get("n_dev", len(sst.dev_sentences))
    order = np.argsort([len(s) for s in sst.dev_sentences[:n_dev]])   # by length: less padding
    dev_sentences = [sst.dev_sentences[i] for i in order]
    y_dev = sst.dev_labels[:n_dev][order]
    x_dev = bert.encode(tok, dev_sentences, max_length=cfg["max_len"])
    tiny_tag = "tiny: " if tiny else ""
    out = []

    rng = np.random.default_rng(0)
    perm = rng.permutation(len(sst.train_sentences))

    def subset(n):
        idx = perm[:n]
        sentences = [sst.train_sentences[i] for i in idx]
        return sentences, bert.encode(tok, sentences, max_length=cfg["max_len"]), torch.as_tensor(sst.train_labels[idx])

    def acc(pred):
        return float((np.asarray(pred) == y_dev).mean())

    pretrained = lambda: bert.BertModel.from_pretrained(folder)          # noqa: E731
    scratch = lambda: bert.BertModel(bert.BertModel.from_pretrained(folder).config)  # noqa: E731
    dev_note = f"dev: {len(y_dev)} sentences" + (f" (first {n_dev})" if tiny else "")

    # ---- 1,000 training sentences: pretrained vs scratch (and TF-IDF on the same sentences)
    n_small = cfg["n_small"]
    s_small, x_small, y_small = subset(n_small)
    small_data = (f"{tiny_tag}SST-2: {n_small:,} training sentences (seeded draw) / "
                  f"{'dev subset' if tiny else 'dev'} ({len(y_dev)}), checkpoint {ckpt}")
    pred_pre, sec_pre = _fine_tune(pretrained, x_small, y_small, x_dev, cfg, device)
    pred_scr, sec_scr = _fine_tune(scratch, x_small, y_small, x_dev, cfg, device)
    pred_tf, sec_tf = _tfidf(s_small, y_small.numpy(), dev_sentences)
    load = common.load_note()
    gain = 100 * (acc(pred_pre) - acc(pred_scr))
    lo, hi = bert.accuracy_interval(int((pred_pre == y_dev).sum()), len(y_dev))
    out.append(common.record(
        GOALS["pretrained_over_scratch_gain_points_1k"], gain, dataset=small_data, seconds=sec_pre + sec_scr,
        tiny=tiny, note=common.join_notes(
            f"pretrained {acc(pred_pre):.4f} (95% CI {lo:.3f}-{hi:.3f}, {sec_pre:.0f} s), from scratch "
            f"{acc(pred_scr):.4f} ({sec_scr:.0f} s), TF-IDF + LR {acc(pred_tf):.4f}", load)))
    out.append(common.record(GOALS["sst2_dev_acc_scratch"], acc(pred_scr), dataset=small_data,
                             seconds=sec_scr, tiny=tiny, note=load or None))
    out.append(common.record(GOALS["sst2_dev_acc_tfidf_lr"], acc(pred_tf), dataset=small_data,
                             seconds=sec_tf, tiny=tiny))

    # ---- the full training set
    n_full = cfg.get("n_tfidf", len(sst.train_sentences)) if tiny else len(sst.train_sentences)
    full_data = (f"{tiny_tag}SST-2: {'first ' if tiny else ''}{n_full:,} training sentences / "
                 f"{'dev subset' if tiny else 'dev'} ({len(y_dev)})")
    s_full = [sst.train_sentences[i] for i in perm[:n_full]]
    pred_tf, sec_tf = _tfidf(s_full, sst.train_labels[perm[:n_full]], dev_sentences)
    out.append(common.record(GOALS["sst2_dev_acc_tfidf_lr"], acc(pred_tf), dataset=full_data,
                             seconds=sec_tf, tiny=tiny))
    if not cpu_only:
        n_ft = cfg["n_small"] if tiny else len(sst.train_sentences)
        if tiny:
            s_ft, x_ft, y_ft = s_small, x_small, y_small
        else:
            s_ft, x_ft, y_ft = subset(n_ft)
        ft_data = f"{full_data}, checkpoint {ckpt}"
        pred_pre, sec_pre = _fine_tune(pretrained, x_ft, y_ft, x_dev, cfg, device)
        lo, hi = bert.accuracy_interval(int((pred_pre == y_dev).sum()), len(y_dev))
        out.append(common.record(GOALS["sst2_dev_acc_pretrained_full_ft"], acc(pred_pre), dataset=ft_data,
                                 seconds=sec_pre, tiny=tiny,
                                 note=common.join_notes(f"95% CI {lo:.3f}-{hi:.3f}; {device.type}",
                                                        common.load_note())))
        pred_scr, sec_scr = _fine_tune(scratch, x_ft, y_ft, x_dev, cfg, device)
        out.append(common.record(GOALS["sst2_dev_acc_scratch"], acc(pred_scr), dataset=ft_data,
                                 seconds=sec_scr, tiny=tiny, note=common.load_note() or None))
    return out


if __name__ == "__main__":
    sys.exit(common.main(records))
