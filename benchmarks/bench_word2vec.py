"""Chapter 4, Word2Vec: scratch SGNS (``course_lib.word2vec``) against gensim, same corpus and settings.

The chapter's ``full`` configuration (notebooks/04_word2vec.py): ``load_text_corpus()`` (text8 when
reachable, else the Wikipedia extract packaged in gensim), ``tokenize``, ``Vocab.build(min_count=5)``,
``SGNSConfig(dim=100, window=5, negative=5, ns_exponent=0.75, sample=1e-3, epochs=5 on text8 / 20 on
the extract, lr=0.025, min_lr=1e-4, batch_size=4096 on a GPU / 1024 on a CPU, seed=0)``; gensim
``Word2Vec`` with the same hyper-parameters (sg=1, hs=0), on the same tokens cut into pieces of
10,000. Throughput at the same thread count on both sides: our ``workers`` (Hogwild threads, one
torch thread each) against gensim's ``workers``, at 1 and at the machine's torch thread count (the
record); the WordSim-353 gap is the one-worker run's (deterministic by seed). Both are evaluated by ``word2vec.evaluate_embeddings`` (gensim's own evaluation
functions) on WordSim-353. Throughput is words of the corpus (in vocabulary) x epochs / seconds,
both timed in the same run.
"""
from __future__ import annotations

import dataclasses

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 4  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("sgns_vs_gensim_wordsim_gap_points", "<= 3", "Spearman x 100",
         "WordSim-353 Spearman correlation of gensim skip-gram minus ours (x 100), same corpus and "
         "settings",
         reference="the peer: gensim's skip-gram with negative sampling {cite:p}`rehurek2010software`, "
                   "the model of {cite:p}`mikolov2013distributed`; WordSim-353 "
                   "{cite:p}`finkelstein2002placing`"),
    Goal("sgns_words_per_s_over_gensim", "report", "ratio",
         "training throughput (words/s) of our SGNS over gensim's optimised C, same run",
         reference="gensim's optimised C inner loop {cite:p}`rehurek2010software`"),
    Goal("sgns_words_per_s_gpu", "report", "words/s", "our SGNS training throughput on a GPU",
         cpu=False),
)
FULL_CPU_BATCH, FULL_GPU_BATCH = 1024, 4096
TINY_WORDS = 30_000


def _gensim_sentences(token_docs, limit=10_000):
    return [d[i:i + limit] for d in token_docs for i in range(0, len(d), limit)]


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import time

    from gensim.models import Word2Vec

    from course_lib import data
    from course_lib import word2vec as w2v
    from course_lib.device import get_device

    device = get_device()
    corpus = data.load_text_corpus()
    tokens = [w2v.tokenize(doc) for doc in corpus.documents]
    dataset = corpus.protocol
    if tiny:
        tokens = w2v.first_tokens(tokens, TINY_WORDS)
        dataset = f"tiny: first {TINY_WORDS:,} tokens of [{dataset}]"
    min_count, sample = 5, 1e-3
    vocab = w2v.Vocab.build(tokens, min_count=min_count)
    docs = [vocab.encode(t) for t in tokens]
    n_train_words = sum(len(d) for d in docs)
    cfg = w2v.SGNSConfig(
        dim=20 if tiny else 100, window=5, negative=5, ns_exponent=0.75, sample=sample,
        epochs=1 if tiny else (5 if corpus.name == "text8" else 20),
        lr=0.025, min_lr=1e-4,
        batch_size=FULL_GPU_BATCH if device.type == "cuda" else FULL_CPU_BATCH, seed=0)

    # the same number of threads on both sides: our workers (one torch thread each) against
    # gensim's workers, at 1 and at the machine's torch thread count
    import torch
    counts = sorted({1, max(1, torch.get_num_threads())}) if device.type == "cpu" else [1]
    seconds, models = {}, {}
    for nt in counts:
        run_cfg = dataclasses.replace(cfg, workers=nt, cpu_threads=1)
        t0 = time.perf_counter()
        models[nt], _history = w2v.train_sgns(docs, vocab, run_cfg, device=device, progress=False)
        seconds[("ours", nt)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gensim_sg = Word2Vec(_gensim_sentences(tokens), vector_size=cfg.dim, window=cfg.window,
                             negative=cfg.negative, ns_exponent=cfg.ns_exponent, sample=cfg.sample,
                             min_count=min_count, alpha=cfg.lr, min_alpha=cfg.min_lr, epochs=cfg.epochs,
                             sg=1, hs=0, workers=nt, seed=cfg.seed)
        seconds[("gensim", nt)] = time.perf_counter() - t0
    top = counts[-1]                                        # the record: the most threads, both sides
    model = models[1]                                       # one worker: deterministic by seed
    scratch_seconds, gensim_seconds = seconds[("ours", top)], seconds[("gensim", top)]
    scratch_kv = w2v.to_keyed_vectors(vocab.words, model.vectors())
    ours, theirs = w2v.evaluate_embeddings(scratch_kv), w2v.evaluate_embeddings(gensim_sg.wv)
    words = n_train_words * cfg.epochs
    wps_ours, wps_gensim = words / scratch_seconds, words / gensim_seconds
    per_threads = "; ".join(
        f"{nt} thread{'s' if nt > 1 else ''} each: ours {words / seconds[('ours', nt)]:,.0f} words/s "
        f"({seconds[('ours', nt)]:.1f} s), gensim {words / seconds[('gensim', nt)]:,.0f} words/s "
        f"({seconds[('gensim', nt)]:.1f} s), ratio {seconds[('gensim', nt)] / seconds[('ours', nt)]:.3f}"
        for nt in counts)
    if top > 1:
        hog = w2v.evaluate_embeddings(w2v.to_keyed_vectors(vocab.words, models[top].vectors()))
        per_threads += f"; WordSim-353 of our {top}-worker run {hog['wordsim353']:.3f}"
    gap = 100 * (theirs["wordsim353"] - ours["wordsim353"])
    settings = (f"dim {cfg.dim}, {cfg.epochs} epochs, vocabulary {len(vocab):,}, "
                f"{n_train_words:,} words per epoch")
    load = common.load_note()
    gap_note = (f"WordSim-353 Spearman: ours {ours['wordsim353']:.3f}, gensim {theirs['wordsim353']:.3f} "
                f"({ours['wordsim353_oov']:.0f}% of pairs out of vocabulary); analogies: ours "
                f"{ours['analogy']:.3f}, gensim {theirs['analogy']:.3f}; {settings}")
    if not math.isfinite(gap):
        gap, gap_note = None, "Spearman undefined (too few word pairs in the vocabulary); " + gap_note
    out = [
        common.record(GOALS["sgns_vs_gensim_wordsim_gap_points"], gap, dataset=dataset,
                      seconds=scratch_seconds, note=common.join_notes(gap_note, load), tiny=tiny),
        common.record(GOALS["sgns_words_per_s_over_gensim"], wps_ours / wps_gensim, dataset=dataset,
                      seconds=scratch_seconds + gensim_seconds, tiny=tiny,
                      note=common.join_notes(
                          f"{device.type}, same threads on both sides (our workers with one torch "
                          f"thread each, gensim's workers); record at {top} thread{'s' if top > 1 else ''}; "
                          + per_threads, load)),
    ]
    if device.type == "cuda":
        out.append(common.record(GOALS["sgns_words_per_s_gpu"], wps_ours, dataset=dataset,
                                 seconds=scratch_seconds, tiny=tiny,
                                 note=f"batch {cfg.batch_size} pairs; {settings}"))
    return out


if __name__ == "__main__":
    sys.exit(common.main(records))
