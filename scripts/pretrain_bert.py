"""Pre-train the course's own small BERT (chapter 5) with masked-language modelling, optionally
plus next-sentence prediction (L = L_MLM + L_NSP), on offline text, reproducibly.

The text
    - the English Wikipedia extract that ships in gensim's wheel (106 articles, about 0.48M words;
      ``course_lib.data.load_text_corpus("enwiki_sample")``), cut into sentences;
    - the SST-2 *training* sentences without their labels (``--no-sst2`` leaves them out). Unlabelled
      in-domain text is legitimate pre-training data and is what "Don't stop pretraining"
      (Gururangan et al., ACL 2020) recommends; the SST-2 dev set is never read.

Every batch holds Wikipedia sentence pairs ``[CLS] A [SEP] B [SEP]`` drawn by
``course_lib.bert.nsp_pairs`` (B follows A half of the time, else B is a random sentence of another
article), a quarter of the batch by default, and rows of SST-2 sentences packed as RoBERTa's
FULL-SENTENCES (``[CLS] s1 [SEP] s2 [SEP] ...`` up to ``--max-len`` pieces, no padding; ``--no-pack``
gives one padded sentence a row). Both runs, with and without ``--nsp``, see exactly the same
batches and the same masks from the same initial weights; the only difference is the NSP term of
the loss (on the pairs). Masks are drawn anew for every batch (RoBERTa's dynamic masking), 30% of
the real tokens by default (``--mask-rate``; Wettig et al. 2023 found rates above BERT's 15% train
better), 80/10/10 (``course_lib.bert.mask_tokens``). The MLM head is evaluated only at the selected
positions (the same loss, a fraction of the cost).

The output folder is a Hugging Face checkpoint (``config.json``, ``model.safetensors`` in float16,
``vocab.txt``, ``tokenizer_config.json``) that ``course_lib.bert.BertModel.from_pretrained`` and
``transformers.BertModel.from_pretrained`` load, plus ``manifest.json``: the command, seed, steps,
time, losses, and the SHA-256 of every file.

The checkpoints shipped in ``src/course_lib/checkpoints/`` were made with the defaults (12,000
steps of 32 sequences of 64 pieces, 3/4 of each batch packed SST-2, 30% masking, lr 1e-3, no
dropout while pre-training, 1 CPU thread each; 27-28 minutes each, both at once on a 2-core
machine), written elsewhere and copied in (``--snapshot-*`` saved copies along the way and does
not change the weights)::

    python scripts/pretrain_bert.py --out src/course_lib/checkpoints/mlm
    python scripts/pretrain_bert.py --nsp --out src/course_lib/checkpoints/mlm_nsp

and the SHA-256 of each model.safetensors goes into ``course_lib.bert.COURSE_CHECKPOINTS``. These
runs leave the frequency plateau: on the SST-2 dev sentences (never trained on) the MLM loss is
about 3.9 nats a masked piece, against about 6.8 for guessing by frequency (chapter 5 measures it).
Yet fine-tuned on 1,000 labelled sentences, the checkpoint does not measurably beat the same
architecture from scratch (chapter 5): the offline text is too small for what the classifier
lacks. An earlier recipe (4,000 steps, 15% masking, padded rows) stayed on the plateau (6.2 nats)
and lost to scratch. A run on a GPU with ``--wiki text8`` (17M words, downloaded and verified) and
many more ``--steps`` is the next step.

References: Devlin et al. 2019 (BERT, arXiv:1810.04805); Liu et al. 2019 (RoBERTa: dynamic masking,
NSP ablation, arXiv:1907.11692); Turc et al. 2019 (small BERTs, "Well-read students learn better",
arXiv:1908.08962); Gururangan et al. 2020 ("Don't stop pretraining", arXiv:2004.10964); Wettig et al. 2023 ("Should you mask
15% in masked language modeling?", EACL 2023, arXiv:2202.08005).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional as F

from course_lib import bert, data, train

MARKUP = ("=", "*", "|", "{", "}", "!", ":", ";", "#", "<", "[[", "thumb", "File:", "Image:")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


TEXT8_SPAN = 25   # words per "sentence" of text8, which has no punctuation to cut at


def wiki_documents(min_words: int = 5, corpus: str = "enwiki_sample") -> list[list[str]]:
    """Wikipedia as documents, each a list of its sentences.

    ``"enwiki_sample"``: the gensim extract's articles, prose paragraphs only (headings, lists,
    tables and leftover markup dropped), cut after . ! or ?. ``"text8"`` (17M words, a download;
    for longer runs on a GPU): text8 has no punctuation and no article breaks, so each of its
    chunks (``course_lib.data``) is a document, cut into spans of ``TEXT8_SPAN`` words."""
    if corpus == "text8":
        docs = []
        for chunk in data.load_text_corpus("text8").documents:
            words = chunk.split()
            spans = [" ".join(words[i:i + TEXT8_SPAN])
                     for i in range(0, len(words) - TEXT8_SPAN + 1, TEXT8_SPAN)]
            if len(spans) >= 2:
                docs.append(spans)
        return docs
    docs = []
    for text in data.load_text_corpus("enwiki_sample").documents:
        sentences = []
        for para in text.split("\n"):
            para = re.sub(r"'{2,}", "", para).strip()
            if not para or para.startswith(MARKUP) or para.count("|") > 1:
                continue
            sentences += [s.strip() for s in SENTENCE_END.split(para)
                          if len(s.split()) >= min_words]
        if len(sentences) >= 2:
            docs.append(sentences)
    return docs


def sst2_sentences(min_words: int = 3) -> list[str]:
    """Unique SST-2 *training* sentences and phrases of ``min_words`` words or more, sorted (no
    labels; the dev set is never read)."""
    return sorted({s.strip() for s in data.load_sst2().train_sentences
                   if len(s.split()) >= min_words})


def pad_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate packed batches (N_i, 3, T_i) along N, right-padding to the longest T (pad id 0,
    mask 0, segment 0)."""
    T = max(p.shape[-1] for p in parts)
    return torch.cat([F.pad(p, (0, T - p.shape[-1])) for p in parts])


def packed_rows(pieces: list[list[int]], order: list[int], n_rows: int, max_len: int,
                cls_id: int, sep_id: int) -> tuple[torch.Tensor, list[int]]:
    """``n_rows`` full rows ``[CLS] s1 [SEP] s2 [SEP] ...`` of exactly ``max_len`` ids, filled with
    the pre-tokenised sentences ``pieces`` in the order ``order`` (RoBERTa's FULL-SENTENCES
    packing: no padding is computed). A sentence that does not fit is cut, and the next row starts
    with the next sentence. Returns (n_rows, 3, max_len) like :func:`course_lib.bert.encode`, and
    the part of ``order`` not used."""
    rows, k = [], 0
    for _ in range(n_rows):
        row = [cls_id]
        while len(row) < max_len:
            if k == len(order):
                raise ValueError("packed_rows ran out of sentences; pass a longer order")
            row += pieces[order[k]][:max_len - len(row) - 1] + [sep_id]
            k += 1
        rows.append(row[:max_len])
    ids = torch.tensor(rows)                                                # (n_rows, max_len)
    return torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], 1), order[k:]


def build_tokenizer(sentences, vocab_size: int, folder: Path, max_len: int):
    """Learn WordPiece on ``sentences``, write ``vocab.txt`` + ``tokenizer_config.json``, and return
    the ``BertTokenizerFast`` read back from them: the tokenizer a learner will load."""
    from transformers import BertTokenizerFast
    learned = bert.train_wordpiece(sentences, vocab_size=vocab_size)
    # HF tokenizers learns the same set of pieces on every run, but numbers the initial alphabet
    # in hash-map order, which changes from run to run: the special tokens keep ids 0-4
    # ([PAD] [UNK] [CLS] [SEP] [MASK]) and the other pieces are numbered in sorted order, so the
    # same text gives the same ids (WordPiece's longest-match cutting does not depend on them).
    specials = learned.all_special_tokens
    pieces = sorted(set(learned.get_vocab()) - set(specials))
    vocab = sorted(specials, key=learned.convert_tokens_to_ids) + pieces
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], vocab[:5]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_len,
         "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
         "mask_token": "[MASK]"}, indent=2) + "\n")
    return BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True,
                             model_max_length=max_len)


def pretrain(args) -> dict:
    """Run the pre-training described by ``args`` (see :func:`parser`); write the checkpoint
    folder ``args.out`` and return its manifest."""
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    out = Path(args.out)
    docs = wiki_documents(corpus=args.wiki)
    sst = sst2_sentences() if args.sst2 else []
    wiki_sentences = [s for d in docs for s in d]
    corpus = {"wiki_documents": len(docs), "wiki_sentences": len(wiki_sentences),
              "sst2_train_sentences": len(sst)}
    tok = build_tokenizer(wiki_sentences + sst, args.vocab, out, args.max_len)
    config = bert.BertConfig(vocab_size=len(tok), hidden_size=args.hidden,
                             num_hidden_layers=args.layers, num_attention_heads=args.heads,
                             intermediate_size=4 * args.hidden,
                             max_position_embeddings=args.max_len)
    torch.manual_seed(args.seed)
    # pre-training without dropout (short budget, as Geiping & Goldstein's "Cramming", 2022);
    # config.json keeps BERT's 0.1 for fine-tuning
    model = bert.BertForPreTraining(replace(config, hidden_dropout_prob=args.dropout,
                                            attention_probs_dropout_prob=args.dropout))
    cfg = train.TrainConfig(epochs=1, batch_size=args.batch, lr=args.lr, optimizer="adamw",
                            schedule="cosine", warmup=args.warmup, weight_decay=0.01)
    opt = train.build_optimizer(model, cfg)
    sched = train.build_scheduler(opt, cfg, steps_per_epoch=args.steps)
    n_sst = round(args.batch * args.sst2_share) if sst else 0
    n_pair = args.batch - n_sst
    pairs = bert.nsp_pairs(docs, n_pair * args.steps, seed=args.seed) if n_pair else []
    sst_pieces = tok(sst, add_special_tokens=False, verbose=False)["input_ids"] if sst else []
    rng = random.Random(args.seed + 1)
    sst_order: list[int] = []
    mask_gen = torch.Generator().manual_seed(args.seed + 2)
    specials = tok.all_special_ids
    log, mlm_sum, nsp_sum, nsp_right, n_log = [], 0.0, 0.0, 0, 0
    model.train()
    for step in range(args.steps):
        parts = []
        if n_pair:
            a, b, y_nsp = zip(*pairs[step * n_pair:(step + 1) * n_pair])
            parts.append(bert.encode(tok, list(a), max_length=args.max_len, pairs=list(b)))
        if n_sst:
            # epochs over SST-2, reshuffled each; packed rows may take up to max_len sentences
            while len(sst_order) < (n_sst * args.max_len if args.pack else n_sst):
                fresh = list(range(len(sst)))
                rng.shuffle(fresh)
                sst_order += fresh
            if args.pack:
                rows, sst_order = packed_rows(sst_pieces, sst_order, n_sst, args.max_len,
                                              tok.cls_token_id, tok.sep_token_id)
                parts.append(rows)
            else:
                take, sst_order = sst_order[:n_sst], sst_order[n_sst:]
                parts.append(bert.encode(tok, [sst[i] for i in take],
                                         max_length=args.max_len))
        x = pad_cat(parts)                                                  # (B, 3, T)
        masked, labels = bert.mask_tokens(x[:, 0], mask_token_id=tok.mask_token_id,
                                          vocab_size=len(tok), special_ids=specials,
                                          attention_mask=x[:, 1], generator=mask_gen,
                                          mlm_probability=args.mask_rate)
        enc = model.bert(masked, x[:, 1], x[:, 2])
        sel = labels != bert.IGNORE_INDEX                                   # (B, T)
        logits = model.cls.predictions(enc.last_hidden_state[sel])          # (n_sel, V)
        loss_mlm = F.cross_entropy(logits, labels[sel])
        if n_pair:
            nsp_logits = model.cls.seq_relationship(enc.pooler_output[:n_pair])  # (n_pair, 2)
            y_nsp = torch.tensor(y_nsp)
            loss_nsp = F.cross_entropy(nsp_logits, y_nsp)
        else:                                    # no pairs (--sst2-share 1): no NSP to report
            nsp_logits, y_nsp, loss_nsp = torch.zeros(0, 2), torch.zeros(0), torch.zeros(())
        loss = loss_mlm + loss_nsp if args.nsp else loss_mlm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        mlm_sum += loss_mlm.item()
        nsp_sum += loss_nsp.item()
        nsp_right += int((nsp_logits.argmax(1) == y_nsp).sum())
        n_log += 1
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            rec = {"step": step + 1, "mlm_loss": round(mlm_sum / n_log, 4),
                   "nsp_loss": round(nsp_sum / n_log, 4),
                   "nsp_accuracy": round(nsp_right / max(n_log * n_pair, 1), 4),
                   "seconds": round(time.perf_counter() - t_start, 1)}
            log.append(rec)
            if not args.quiet:
                print(json.dumps(rec), flush=True)
            mlm_sum, nsp_sum, nsp_right, n_log = 0.0, 0.0, 0, 0
        if args.snapshot_every and (step + 1) % args.snapshot_every == 0 and step + 1 < args.steps:
            snap = Path(args.snapshot_dir or out.with_name(out.name + "_snapshots")) / f"step_{step + 1}"
            snap.mkdir(parents=True, exist_ok=True)
            for name in ("vocab.txt", "tokenizer_config.json"):
                (snap / name).write_bytes((out / name).read_bytes())
            save(model, config, tok, snap, args, log, time.perf_counter() - t_start, corpus)
    return save(model, config, tok, out, args, log, time.perf_counter() - t_start, corpus)


def save(model, config, tok, out: Path, args, log, seconds, corpus) -> dict:
    """Write config.json, model.safetensors (float16) and manifest.json into ``out``."""
    from safetensors.torch import save_file
    keep = ("bert.embeddings.", "bert.encoder.", "cls.predictions.")
    if args.nsp:
        keep += ("bert.pooler.", "cls.seq_relationship.")  # trained only with the NSP loss
    state = {k: v.detach().to(getattr(torch, args.dtype)).contiguous()
             for k, v in model.state_dict().items()
             if k.startswith(keep) and not k.startswith("cls.predictions.decoder.")}  # tied
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)            # safetensors writes 0600; ship 0644
    cfg = {"architectures": ["BertForPreTraining" if args.nsp else "BertForMaskedLM"],
           "model_type": "bert", **{k: v for k, v in vars(config).items()
                                    if k != "attn_implementation"},
           "position_embedding_type": "absolute", "torch_dtype": args.dtype}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    files = {p.name: {"sha256": data.file_digest(p), "bytes": p.stat().st_size}
             for p in sorted(out.iterdir()) if p.name != "manifest.json"}
    manifest = {
        "name": "mlm+nsp" if args.nsp else "mlm",
        "objective": "L_MLM + L_NSP" if args.nsp else "L_MLM",
        "command": "python scripts/pretrain_bert.py " + " ".join(args.argv),
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("argv", "out", "quiet", "snapshot_every", "snapshot_dir")},
        "steps": args.steps, "seed": args.seed, "threads": args.threads,
        "seconds": round(seconds, 1), "minutes": round(seconds / 60, 1),
        "torch": torch.__version__, "corpus": corpus,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final": log[-1] if log else {}, "log": log, "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--nsp", action="store_true", help="add the next-sentence loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    p.add_argument("--vocab", type=int, default=6000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--max-len", dest="max_len", type=int, default=64)
    p.add_argument("--wiki", choices=["enwiki_sample", "text8"], default="enwiki_sample",
                   help="the Wikipedia text: gensim's packaged extract (offline, 0.48M words) "
                        "or text8 (17M words, downloaded and verified by course_lib.data)")
    p.add_argument("--sst2", action=argparse.BooleanOptionalAction, default=True,
                   help="add the unlabelled SST-2 training sentences (default: yes)")
    p.add_argument("--sst2-share", dest="sst2_share", type=float, default=0.75,
                   help="share of each batch taken from SST-2")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                   help="pack the SST-2 sentences into full rows of --max-len ids, no padding "
                        "(default: yes)")
    p.add_argument("--mask-rate", dest="mask_rate", type=float, default=0.3,
                   help="share of the real tokens selected for the MLM loss (default 0.3, as "
                        "Wettig et al. 2023; BERT: 0.15)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout during pre-training (config.json keeps 0.1 for fine-tuning)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--log-every", dest="log_every", type=int, default=100)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--snapshot-every", dest="snapshot_every", type=int, default=0,
                   help="also save the weights every N steps (for learning curves)")
    p.add_argument("--snapshot-dir", dest="snapshot_dir", default=None,
                   help="where snapshots go (default: <out>_snapshots)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.nsp and args.sst2 and round(args.batch * args.sst2_share) >= args.batch:
        parser().error(f"--nsp needs Wikipedia pairs in the batch, but --sst2-share "
                       f"{args.sst2_share!r} leaves none; use a share below 1")
    args.argv = argv
    m = pretrain(args)
    print(f"{m['name']}: {m['steps']} steps in {m['minutes']} min; final {m['final']}; "
          f"model.safetensors {m['files']['model.safetensors']['bytes']:,} bytes, "
          f"sha256 {m['files']['model.safetensors']['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
