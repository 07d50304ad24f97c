"""Tests of course_lib.word2vec (the Word2Vec chapter) and of the text-corpus loaders in course_lib.data.

Every formula of the notebook is checked against the code (hand-computed toy cases), the
subsampling and negative-sampling tables against gensim's own, the gradients against autograd,
the word2vec file format against gensim's reader and writer, and a short training run on real
Wikipedia text against the human similarity judgements of WordSim-353.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib import word2vec as w2v

gensim = pytest.importorskip("gensim")
from gensim.models import KeyedVectors, Word2Vec  # noqa: E402


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def wiki_tokens():
    """Tokenised documents of the packaged Wikipedia extract (about 0.45M words)."""
    corpus = data.load_text_corpus("enwiki_sample")
    return [w2v.tokenize(d) for d in corpus.documents]


@pytest.fixture(scope="module")
def small(wiki_tokens):
    """200k words of the extract, its vocabulary and encoded documents."""
    toks = w2v.first_tokens(wiki_tokens, 200_000)
    vocab = w2v.Vocab.build(toks, min_count=5)
    return toks, vocab, [vocab.encode(t) for t in toks]


@pytest.fixture(scope="module")
def trained(small):
    toks, vocab, docs = small
    cfg = w2v.SGNSConfig(dim=50, epochs=3, lr=0.05, batch_size=1024, seed=0)
    model, hist = w2v.train_sgns(docs, vocab, cfg, device="cpu", progress=False)
    return model, hist, vocab


# --------------------------------------------------------------------------- data loaders
@pytest.mark.slow
def test_load_text_corpus_offline_falls_back_to_packaged_wikipedia(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("COURSE_DATA_DIR", "/nonexistent-course-cache")
    corpus = data.load_text_corpus()
    assert corpus.name == "enwiki_sample"
    assert corpus.source.startswith("package ") and corpus.source.endswith(".bz2")
    assert "text8 not available: offline" in corpus.protocol
    assert len(corpus.documents) > 100 and corpus.n_words > 400_000
    assert "Anarchism" in corpus.documents[0][:200]          # real Wikipedia text, markup removed
    with pytest.raises(data.DataUnavailableError, match="text8"):
        data.load_text_corpus("text8")
    with pytest.raises(ValueError, match="name='wiki'"):
        data.load_text_corpus("wiki")


def test_word_eval_files_are_verified(monkeypatch):
    files = data.word_eval_files()
    assert set(files) == {"wordsim353", "simlex999", "questions-words"}
    assert files["questions-words"].read_text().startswith(": capital-common-countries")
    bad = data.FileSpec("wordsim353.tsv", sha256="0" * 64)
    monkeypatch.setitem(data.GENSIM_TEST_FILES, "wordsim353", bad)
    with pytest.raises(data.ChecksumError, match="expected sha256 0000"):
        data.word_eval_files()


# --------------------------------------------------------------------------- text -> ids
def test_tokenize_and_vocab_by_hand():
    assert w2v.tokenize("The cat's 2 Cafés, the CAT.") == ["the", "cat", "s", "caf", "s", "the", "cat"]
    docs = [["b", "a", "c", "a"], ["a", "b", "d", "e", "b"]]
    vocab = w2v.Vocab.build(docs, min_count=2)
    assert vocab.words == ["b", "a"]                         # 3 and 3: tie broken by first appearance
    assert vocab.counts.tolist() == [3, 3] and vocab.total == 9
    assert vocab.encode(["a", "zzz", "b", "c"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="min_count=0"):
        w2v.Vocab.build(docs, min_count=0)
    with pytest.raises(ValueError, match="apply tokenize"):
        w2v.Vocab.build(["a text"], min_count=1)
    with pytest.raises(ValueError, match="min_count=10"):
        w2v.Vocab.build(docs, min_count=10)


# --------------------------------------------------------------------------- subsampling
def test_keep_probability_by_hand():
    counts = np.array([1000, 10, 1])
    st = 1e-3 * 1011                                         # s * T
    expected = [min(1.0, (math.sqrt(c / st) + 1) * st / c) for c in (1000, 10, 1)]
    np.testing.assert_allclose(w2v.keep_probability(counts, 1e-3), expected, rtol=1e-12)
    assert expected[0] < expected[1] < expected[2] == 1.0       # the more frequent, the more thinned
    np.testing.assert_array_equal(w2v.keep_probability(counts, 0), 1.0)
    with pytest.raises(ValueError, match="sample=1.5"):
        w2v.keep_probability(counts, 1.5)
    with pytest.raises(ValueError, match="positive counts"):
        w2v.keep_probability(np.array([3, 0]))


def test_subsample_keeps_the_expected_fraction():
    rng = np.random.default_rng(0)
    keep = np.array([0.2, 1.0])
    ids = np.array([0] * 50_000 + [1] * 1000)
    mask = w2v.subsample(ids, keep, rng)
    assert mask[50_000:].all()
    assert abs(mask[:50_000].mean() - 0.2) < 0.01             # 5 standard errors ~ 0.009


@pytest.fixture(scope="module")
def gensim_model(small):
    """gensim's vocabulary on the same 200k words (build_vocab only: no training)."""
    toks, _, _ = small
    model = Word2Vec(vector_size=10, min_count=5, sample=1e-3, negative=5, ns_exponent=0.75, sg=1,
                     workers=1, seed=0)
    model.build_vocab(toks)
    return model


@pytest.mark.slow
def test_vocab_and_subsampling_match_gensim(small, gensim_model):
    _, vocab, _ = small
    wv = gensim_model.wv
    assert set(wv.index_to_key) == set(vocab.words)
    counts = np.array([wv.get_vecattr(w, "count") for w in vocab.words])
    np.testing.assert_array_equal(counts, vocab.counts)
    gensim_keep = np.array([wv.get_vecattr(w, "sample_int") for w in vocab.words]) / 2**32
    np.testing.assert_allclose(w2v.keep_probability(vocab.counts, 1e-3), gensim_keep, atol=1e-9)
    assert (gensim_keep < 1).sum() > 10                       # the comparison covers thinned words


# --------------------------------------------------------------------------- negative sampling
def test_negative_distribution_by_hand():
    np.testing.assert_allclose(w2v.negative_distribution([16, 1]), [8 / 9, 1 / 9])  # 16^0.75 = 8
    np.testing.assert_allclose(w2v.negative_distribution([16, 1], power=1.0), [16 / 17, 1 / 17])
    np.testing.assert_allclose(w2v.negative_distribution([16, 1], power=0.0), [0.5, 0.5])
    with pytest.raises(ValueError, match="power=nan"):
        w2v.negative_distribution([1, 2], power=float("nan"))


@pytest.mark.slow
def test_negative_table_matches_gensim_cum_table(small, gensim_model):
    _, vocab, _ = small
    wv = gensim_model.wv
    p = w2v.negative_distribution(vocab.counts, 0.75)
    p_in_gensim_order = p[[vocab.index[w] for w in wv.index_to_key]]
    ours = np.round(np.cumsum(p_in_gensim_order) * (2**31 - 1))    # gensim's integer cum_table
    np.testing.assert_allclose(ours, gensim_model.cum_table, atol=2)


def test_sample_negatives_follows_the_distribution():
    p = w2v.negative_distribution(np.array([1000, 300, 50, 5, 1]))
    cum = torch.as_tensor(np.cumsum(p), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    draws = w2v.sample_negatives(cum, (200, 1000), gen)
    assert draws.shape == (200, 1000) and draws.dtype == torch.int64
    freq = np.bincount(draws.flatten().numpy(), minlength=5) / draws.numel()
    se = np.sqrt(p * (1 - p) / draws.numel())
    assert np.all(np.abs(freq - p) < 5 * se + 1e-6)


# --------------------------------------------------------------------------- skip-gram pairs
def test_skipgram_pairs_by_hand():
    c, o = w2v.skipgram_pairs([np.array([10, 11, 12, 13])], window=1, shrink=False)
    assert sorted(zip(c.tolist(), o.tolist())) == [(10, 11), (11, 10), (11, 12), (12, 11), (12, 13), (13, 12)]
    c, o = w2v.skipgram_pairs([np.array([1, 2]), np.array([3, 4])], window=5, shrink=False)
    assert sorted(zip(c.tolist(), o.tolist())) == [(1, 2), (2, 1), (3, 4), (4, 3)]   # no crossing
    with pytest.raises(ValueError, match="window=0"):
        w2v.skipgram_pairs([np.array([1, 2])], window=0)
    with pytest.raises(ValueError, match="needs rng"):
        w2v.skipgram_pairs([np.array([1, 2])], window=2)


def test_shrunk_window_gives_window_plus_one_contexts_on_average():
    ids = np.arange(100_000)                                  # distinct ids: pairs identify positions
    c, o = w2v.skipgram_pairs([ids], window=5, rng=np.random.default_rng(0))
    dist = np.abs(c - o)
    assert dist.min() == 1 and dist.max() == 5
    assert abs(len(c) / len(ids) - 6) < 0.05                  # E[2b], b ~ U{1..5}: 2 * 3 = 6
    share = np.bincount(dist)[1:] / len(dist)                 # P(d) ∝ (5 - d + 1): 5:4:3:2:1
    np.testing.assert_allclose(share, np.array([5, 4, 3, 2, 1]) / 15, atol=0.01)


# --------------------------------------------------------------------------- objective
def test_sgns_loss_by_hand():
    v = torch.tensor([[1.0, 0.0]])
    u_pos = torch.tensor([[2.0, 0.0]])
    u_neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])        # scores: +2, then 0 and -1
    sig = lambda x: 1 / (1 + math.exp(-x))                    # noqa: E731
    expected = -math.log(sig(2)) - math.log(sig(-0)) - math.log(sig(1))
    assert w2v.sgns_loss(v, u_pos, u_neg).item() == pytest.approx(expected, rel=1e-6)
    masked = w2v.sgns_loss(v, u_pos, u_neg, torch.tensor([[1.0, 0.0]]))
    assert masked.item() == pytest.approx(-math.log(sig(2)) - math.log(sig(0)), rel=1e-6)
    with pytest.raises(ValueError, match=r"u_neg \(B, K, D\)"):
        w2v.sgns_loss(v, u_pos, u_neg[0])


def test_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    v, u_pos, u_neg = (torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True)
                       for s in [(7, 4), (7, 4), (7, 3, 4)])
    mask = (torch.rand(7, 3, generator=gen) > 0.3).double()
    loss = w2v.sgns_loss(v, u_pos, u_neg, mask)
    loss.sum().backward()
    grad_v, grad_pos, grad_neg, loss2 = w2v.sgns_gradients(v.detach(), u_pos.detach(), u_neg.detach(), mask)
    torch.testing.assert_close(grad_v, v.grad)
    torch.testing.assert_close(grad_pos, u_pos.grad)
    torch.testing.assert_close(grad_neg, u_neg.grad)
    torch.testing.assert_close(loss2, loss.detach())


def test_sgd_step_is_sgd_on_the_summed_loss_with_repeated_rows():
    torch.manual_seed(0)
    model = w2v.SGNS(6, 3, seed=1)
    with torch.no_grad():
        model.out_vectors.weight.normal_()                    # u = 0 at init would hide half the test
    ref = w2v.SGNS(6, 3)
    ref.load_state_dict(model.state_dict())
    center = torch.tensor([0, 0, 2, 5])                       # repeated center
    context = torch.tensor([1, 3, 1, 0])                      # repeated context
    negatives = torch.tensor([[4, 1], [2, 2], [0, 5], [3, 4]])  # a negative equal to a context
    mask = (negatives != context[:, None]).float()
    ref(center, context, negatives, mask).sum().backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    loss = model.sgd_step(center, context, negatives, lr=0.1, neg_mask=mask)
    assert loss.shape == (4,)
    torch.testing.assert_close(model.in_vectors.weight, ref.in_vectors.weight)
    torch.testing.assert_close(model.out_vectors.weight, ref.out_vectors.weight)


def test_training_step_applies_the_formula_gradients_to_touched_rows_only():
    # the hot loop's step (gather, analytic gradients, index_add_) against sgns_gradients:
    # every touched row moves by -lr times the sum of its formula gradients, no other row moves
    gen = torch.Generator().manual_seed(0)
    W_in = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    W_out = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    center = torch.tensor([0, 3, 3, 7])
    targets = torch.tensor([[1, 2, 4], [5, 1, 1], [6, 2, 9], [3, 0, 5]])   # context, 2 negatives
    mask = torch.ones(4, 3, dtype=torch.float64)
    mask[1, 1:] = 0                                                       # negatives equal to the context
    gv, gp, gn, loss = w2v.sgns_gradients(W_in[center], W_out[targets[:, 0]], W_out[targets[:, 1:]],
                                          mask[:, 1:])
    want_in, want_out = W_in.clone(), W_out.clone()
    for i in range(4):
        want_in[center[i]] -= 0.05 * gv[i]
        want_out[targets[i, 0]] -= 0.05 * gp[i]
        for k in range(2):
            want_out[targets[i, 1 + k]] -= 0.05 * gn[i, k]
    got = w2v._sgns_step(W_in, W_out, center, targets, mask, 0.05)
    torch.testing.assert_close(got, loss)
    torch.testing.assert_close(W_in, want_in)
    torch.testing.assert_close(W_out, want_out)
    untouched = [w for w in range(12) if w not in {0, 3, 7}]
    assert torch.equal(W_in[untouched], torch.randn(12, 5, generator=torch.Generator().manual_seed(0),
                                                    dtype=torch.float64)[untouched])


def test_hogwild_workers_train_as_well(small):
    # two workers stepping at once on the shared tables (as gensim's workers): not bitwise
    # reproducible, but the same objective: the loss ends within a few percent of one worker's
    _, vocab, docs = small
    part = w2v.first_tokens(docs, 40_000)
    one = w2v.train_sgns(part, vocab, w2v.SGNSConfig(dim=16, epochs=2, seed=3), device="cpu", progress=False)[1]
    two = w2v.train_sgns(part, vocab, w2v.SGNSConfig(dim=16, epochs=2, seed=3, workers=2), device="cpu",
                         progress=False)[1]
    assert two.pairs == one.pairs and two.loss[-1] < two.loss[0]
    assert abs(two.loss[-1] - one.loss[-1]) < 0.05 * one.loss[-1], (one.loss, two.loss)


def test_model_init_and_config_errors():
    model = w2v.SGNS(50, 8, seed=0)
    assert model.in_vectors.weight.abs().max() <= 0.5 / 8
    assert model.out_vectors.weight.abs().max() == 0
    assert model.vectors().shape == (50, 8) and model.vectors().dtype == np.float32
    for bad in [dict(dim=0), dict(window=-1), dict(lr=0.0), dict(lr=0.01, min_lr=0.1),
                dict(sample=1.0), dict(batch_size=2.5), dict(cpu_threads=0), dict(workers=0)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            w2v.SGNSConfig(**bad)


# --------------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_improves_similarity_rank_correlation(trained, small):
    model, hist, vocab = trained
    before = w2v.evaluate_embeddings(w2v.to_keyed_vectors(vocab.words, w2v.SGNS(len(vocab), 50, seed=0).vectors()))
    after = w2v.evaluate_embeddings(w2v.to_keyed_vectors(vocab.words, model.vectors()))
    assert abs(before["wordsim353"]) < 0.15                   # random vectors: no correlation
    assert after["wordsim353"] > before["wordsim353"] + 0.1   # seeds 0, 1: +0.16, +0.24
    assert after["wordsim353"] > 0.15
    assert hist.loss[-1] < hist.loss[0] < math.log(2) * 6     # starts near 6 log 2 (u = 0), decreases
    assert hist.words == [sum(len(d) for d in small[2])] * 3 and hist.words_per_second > 0


@pytest.mark.slow
def test_training_is_deterministic_and_checks_ids(small):
    _, vocab, docs = small
    cfg = w2v.SGNSConfig(dim=8, epochs=1, chunk_words=20_000, seed=3)
    part = w2v.first_tokens(docs, 20_000)
    a, ha = w2v.train_sgns(part, vocab, cfg, device="cpu", progress=False)
    b, hb = w2v.train_sgns(part, vocab, cfg, device="cpu", progress=False)
    np.testing.assert_array_equal(a.vectors(), b.vectors())
    assert ha.loss == hb.loss
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match=r"must lie in \[0, "):
        w2v.train_sgns([np.array([0, len(vocab)])], vocab, cfg, device="cpu", progress=False)
    with pytest.raises(ValueError, match="hold no token"):
        w2v.train_sgns([np.array([], dtype=np.int64)], vocab, cfg, device="cpu", progress=False)
    with pytest.raises(FloatingPointError, match="lower batch_size=20000"):
        w2v.train_sgns(part, vocab, w2v.SGNSConfig(dim=8, epochs=1, lr=5.0, batch_size=20_000),
                       device="cpu", progress=False)
    assert torch.get_num_threads() == threads                  # restored after training


# --------------------------------------------------------------------------- using the vectors
def test_most_similar_matches_gensim(trained):
    model, _, vocab = trained
    kv = w2v.to_keyed_vectors(vocab.words, model.vectors())
    for pos, neg in [(["war"], []), (["king", "woman"], ["man"]), (["paris", "germany"], ["france"])]:
        ours = w2v.most_similar(model.vectors(), vocab.words, pos, neg, topn=5)
        theirs = kv.most_similar(positive=pos, negative=neg, topn=5)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    with pytest.raises(KeyError, match="qwertyuiop"):
        w2v.most_similar(model.vectors(), vocab.words, ["qwertyuiop"])
    with pytest.raises(ValueError, match="lists of words"):
        w2v.most_similar(model.vectors(), vocab.words, "king")


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trips_with_gensim(tmp_path, trained, binary):
    model, _, vocab = trained
    words, vectors = vocab.words[:300], model.vectors()[:300]
    path = w2v.save_word2vec_format(tmp_path / "ours.txt", words, vectors, binary=binary)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == list(words)
    np.testing.assert_allclose(kv.vectors, vectors, rtol=1e-6, atol=1e-7)
    kv.save_word2vec_format(str(tmp_path / "gensim.txt"), binary=binary)
    words2, vectors2 = w2v.load_word2vec_format(tmp_path / "gensim.txt", binary=binary)
    assert words2 == list(words)
    np.testing.assert_allclose(vectors2, vectors, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="whitespace"):
        w2v.save_word2vec_format(tmp_path / "bad.txt", ["new york"], vectors[:1])


def test_evaluate_embeddings_uses_gensim_protocol(trained):
    model, _, vocab = trained
    kv = w2v.to_keyed_vectors(vocab.words, model.vectors())
    res = w2v.evaluate_embeddings(kv)
    files = data.word_eval_files()
    _, spearman, oov = kv.evaluate_word_pairs(str(files["simlex999"]), case_insensitive=True)
    assert res["simlex999"] == pytest.approx(spearman[0]) and res["simlex999_oov"] == pytest.approx(oov)
    score, _ = kv.evaluate_word_analogies(str(files["questions-words"]), case_insensitive=True)
    assert res["analogy"] == pytest.approx(score) and res["analogy_n"] > 100


@pytest.mark.gpu
def test_sgd_step_on_gpu_matches_cpu():
    cpu = w2v.SGNS(100, 16, seed=0)
    with torch.no_grad():
        cpu.out_vectors.weight.normal_()
    gpu = w2v.SGNS(100, 16).to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    gen = torch.Generator().manual_seed(0)
    c, o = torch.randint(0, 100, (256,), generator=gen), torch.randint(0, 100, (256,), generator=gen)
    n = torch.randint(0, 100, (256, 5), generator=gen)
    cpu.sgd_step(c, o, n, 0.05)
    gpu.sgd_step(c.cuda(), o.cuda(), n.cuda(), 0.05)
    torch.testing.assert_close(gpu.in_vectors.weight.cpu(), cpu.in_vectors.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gpu.out_vectors.weight.cpu(), cpu.out_vectors.weight, atol=1e-5, rtol=1e-4)


def test_first_tokens_keeps_a_prefix_of_the_corpus():
    docs = [["a", "b"], ["c", "d"], ["e"]]
    assert w2v.first_tokens(docs, 3) == [["a", "b"], ["c"]]
    assert w2v.first_tokens(docs, 2) == [["a", "b"]]
    assert w2v.first_tokens(docs, 99) == docs and w2v.first_tokens(docs, None) == docs
    with pytest.raises(ValueError, match="n=0"):
        w2v.first_tokens(docs, 0)
