"""course_lib.gpt: causality and the shift, parity with transformers.GPT2LMHeadModel, the KV cache,
sampling distributions, the count baselines, and clear errors on bad input."""
import math
import os

import numpy as np
import pytest
import torch

from course_lib import gpt

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # offline tests never touch the network

TINY = dict(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=4)
# random configurations for the parity test: sizes, activation, epsilon, feed-forward width
CONFIGS = [dict(vocab_size=101, n_positions=32, n_embd=48, n_layer=3, n_head=4),
           dict(vocab_size=67, n_positions=20, n_embd=32, n_layer=2, n_head=2, activation_function="relu",
                n_inner=80, layer_norm_epsilon=1e-6)]


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = gpt.GPTConfig(**{**TINY, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **kw})
    return gpt.GPT2LMHeadModel(cfg).eval()


def hf_pair(cfg_kw, seed):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    hc = transformers.GPT2Config(**cfg_kw, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                 bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    ours = gpt.GPT2LMHeadModel(gpt.GPTConfig.from_dict(hc.to_dict())).eval()
    gpt.load_gpt2_state(ours, hf.state_dict())          # no renaming: the names are GPT-2's
    return ours, hf


# --------------------------------------------------------------------------- the mask and the shift
def test_output_at_t_does_not_depend_on_later_tokens():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 61, (2, 20), generator=g)
    t = 9
    changed = ids.clone()
    changed[:, t + 1:] = torch.randint(0, 61, (2, 20 - t - 1), generator=g)
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)       # the test can fail


def test_without_the_causal_mask_the_past_sees_the_future():
    model = tiny_model(causal=False)
    ids = torch.randint(0, 61, (1, 12))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 61
    with torch.no_grad():
        assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0], atol=1e-4)


def test_causal_attention_equals_the_formula_with_a_triangular_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))            # (B, h, T, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(6, 6).triu(1).bool(), float("-inf"))
    ref = scores.softmax(-1) @ v
    assert torch.allclose(gpt.causal_attention(q, k, v), ref, atol=1e-6)
    # a padding key gets weight 0: its value cannot leak
    key_mask = torch.ones(2, 6, dtype=torch.bool)
    key_mask[0, 2] = False
    v2 = v.clone()
    v2[0, :, 2] = 1e6
    out = gpt.causal_attention(q, k, v2, key_mask)
    assert out[0, :, 3:].abs().max() < 1e3 and torch.isfinite(out).all()


def test_make_windows_targets_are_inputs_shifted_by_one():
    ids = torch.arange(100, 121)                                          # 21 tokens
    x, y = gpt.make_windows(ids, block_size=5)
    assert x.shape == y.shape == (4, 5)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(x[0], torch.arange(100, 105)) and torch.equal(y[0], torch.arange(101, 106))
    assert torch.equal(x[1, 0:1], y[0, -1:])                              # every token predicted once
    with pytest.raises(ValueError, match="block_size"):
        gpt.make_windows(ids[:5], block_size=5)


def test_lm_loss_is_the_mean_nll_and_perplexity_its_exp():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))     # (1, 2, 3)
    y = torch.tensor([[0, 1]])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert abs(gpt.lm_loss(logits, y).item() - expected) < 1e-6
    assert abs(gpt.lm_loss(logits, torch.tensor([[0, -100]])).item() + math.log(0.5)) < 1e-6
    assert abs(gpt.perplexity(math.log(7.0)) - 7.0) < 1e-9


# --------------------------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_logits_match_transformers_gpt2(i):
    ours, hf = hf_pair(CONFIGS[i], seed=i)
    V, P = CONFIGS[i]["vocab_size"], CONFIGS[i]["n_positions"]
    assert set(ours.state_dict()) == set(hf.state_dict())                  # the same names
    assert ours.lm_head.weight.data_ptr() == ours.transformer.wte.weight.data_ptr()   # tied
    g = torch.Generator().manual_seed(10 + i)
    ids = torch.randint(0, V, (3, P), generator=g)
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-5
        # padding: row 1 right-padded, row 2 left-padded with positions counted on real tokens
        mask = torch.ones(3, P, dtype=torch.long)
        mask[1, -7:] = 0
        mask[2, :5] = 0
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        a = ours(ids, mask, pos)
        b = hf(ids, attention_mask=mask, position_ids=pos).logits
    assert (a - b)[mask.bool()].abs().max().item() <= 1e-5               # real tokens


def test_hf_weights_are_stored_transposed_as_conv1d():
    ours, hf = hf_pair(CONFIGS[0], seed=0)
    c_attn = ours.transformer.h[0].attn.c_attn
    assert isinstance(c_attn, gpt.Conv1D) and c_attn.weight.shape == (48, 3 * 48)   # (in, out)
    x = torch.randn(2, 48)
    assert torch.allclose(c_attn(x), x @ c_attn.weight + c_attn.bias, atol=1e-6)


def test_load_accepts_openai_names_without_prefix_and_rejects_foreign_keys():
    ours, hf = hf_pair(CONFIGS[0], seed=3)
    raw = {k[len("transformer."):]: v for k, v in hf.state_dict().items() if k.startswith("transformer.")}
    raw["h.0.attn.bias"] = torch.ones(1, 1, 32, 32)                        # old mask buffer: ignored
    fresh = gpt.GPT2LMHeadModel(ours.config).eval()
    gpt.load_gpt2_state(fresh, raw)
    ids = torch.randint(0, 101, (1, 10))
    with torch.no_grad():
        assert torch.allclose(fresh(ids), hf(ids).logits, atol=1e-5)
    with pytest.raises(ValueError, match="unexpected"):
        gpt.load_gpt2_state(fresh, {**raw, "h.0.attn.q_attn.weight": torch.zeros(1)})


def test_greedy_generation_matches_transformers_generate():
    ours, hf = hf_pair(CONFIGS[0], seed=5)
    ids = torch.randint(0, 101, (1, 6), generator=torch.Generator().manual_seed(2))
    a = ours.generate(ids, 12, temperature=0)
    b = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- the KV cache
def test_kv_cache_gives_the_same_tokens_and_logits_as_the_uncached_loop():
    model = tiny_model(seed=2)
    ids = torch.randint(0, 61, (2, 5), generator=torch.Generator().manual_seed(0))
    for kw in (dict(temperature=0), dict(temperature=1.0, top_k=20), dict(temperature=0.8, top_p=0.9)):
        a = model.generate(ids, 15, use_cache=True, generator=torch.Generator().manual_seed(7), **kw)
        b = model.generate(ids, 15, use_cache=False, generator=torch.Generator().manual_seed(7), **kw)
        assert torch.equal(a, b), kw
    # one cached step equals the last row of a full forward pass
    with torch.no_grad():
        full = model(a)
        logits, cache = model(a[:, :-1], use_cache=True)
        step, _ = model(a[:, -1:], past_key_values=cache, use_cache=True)
    assert torch.allclose(step[:, 0], full[:, -1], atol=1e-5)
    assert cache[0][0].shape == (2, 4, a.shape[1] - 1, 8)                 # (B, heads, T, head size)


def test_left_padded_batch_generates_what_each_prompt_generates_alone():
    model = tiny_model(seed=4)
    short, long = [3, 9, 4], [5, 1, 7, 2, 8, 6]
    alone = [model.generate(torch.tensor([p]), 8, temperature=0)[0, len(p):] for p in (short, long)]
    ids = torch.tensor([[0] * 3 + short, long])
    mask = torch.tensor([[0] * 3 + [1] * 3, [1] * 6])
    for cache in (True, False):
        out = model.generate(ids, 8, temperature=0, attention_mask=mask, use_cache=cache)
        assert torch.equal(out[0, 6:], alone[0]) and torch.equal(out[1, 6:], alone[1])
    right = model.generate(torch.tensor([short + [0] * 3, long]), 8, temperature=0,
                           attention_mask=torch.tensor([[1] * 3 + [0] * 3, [1] * 6]))
    assert not torch.equal(right[0, 6:], alone[0])                        # the pitfall: right padding


# --------------------------------------------------------------------------- sampling
def test_top_k_top_p_and_temperature_filter_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    p = gpt.process_logits(logits, top_p=0.75).softmax(-1)
    assert torch.allclose(p, torch.tensor([[0.625, 0.375, 0, 0, 0]]), atol=1e-6)   # 0.5+0.3 >= 0.75
    p = gpt.process_logits(logits, top_p=0.5).softmax(-1)
    assert torch.allclose(p, torch.tensor([[1.0, 0, 0, 0, 0]]))
    p = gpt.process_logits(logits, top_k=3).softmax(-1)
    assert torch.allclose(p, torch.tensor([[5 / 9, 3 / 9, 1 / 9, 0, 0]]), atol=1e-6)
    hot = gpt.process_logits(logits, temperature=2.0).softmax(-1)
    ref = torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]) ** 0.5
    assert torch.allclose(hot, ref / ref.sum(), atol=1e-6)
    assert torch.equal(gpt.sample_next_token(logits, temperature=0), torch.tensor([0]))


def test_sampling_frequencies_follow_the_filtered_distribution():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04])).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    draws = gpt.sample_next_token(logits, top_p=0.85, generator=g)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    expected = torch.tensor([0.5, 0.3, 0.1, 0, 0]) / 0.9
    assert (freq - expected).abs().max() < 0.015                          # ~4 standard errors
    draws = gpt.sample_next_token(logits, temperature=0.5, generator=g)
    expected = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]) ** 2
    assert (torch.bincount(draws, minlength=5).float() / len(draws) - expected / expected.sum()).abs().max() < 0.015


def test_repetition_penalty_lowers_seen_tokens_as_in_ctrl():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]])
    out = gpt.process_logits(logits, torch.tensor([[0, 1]]), repetition_penalty=2.0)
    assert torch.allclose(out, torch.tensor([[1.0, -2.0, 0.5, 1.0]]))


# --------------------------------------------------------------------------- errors
def test_clear_errors_on_bad_input():
    model = tiny_model()
    with pytest.raises(ValueError, match="n_positions=24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(TypeError, match="float32"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="empty prompt"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="exceeds the context"):
        model.generate(torch.zeros(1, 20, dtype=torch.long), 5)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"top_p=.*\(0, 1\]"):
            model.generate(torch.zeros(1, 2, dtype=torch.long), 3, top_p=bad)
    with pytest.raises(ValueError, match="temperature"):
        gpt.process_logits(torch.zeros(1, 3), temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        gpt.process_logits(torch.zeros(1, 3), top_k=0)
    with pytest.raises(ValueError, match="divisible"):
        gpt.GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(5, dtype=torch.long))


def test_from_pretrained_offline_says_it_needs_the_internet(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="internet"):
        gpt.GPT2LMHeadModel.from_pretrained("gpt2")


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("COURSE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1",
                    reason="needs the internet (Hugging Face hub)")
def test_from_pretrained_gpt2_matches_transformers_online():
    transformers = pytest.importorskip("transformers")
    ours = gpt.GPT2LMHeadModel.from_pretrained("gpt2", device="cpu")
    hf = transformers.GPT2LMHeadModel.from_pretrained("gpt2").eval()
    tok = transformers.AutoTokenizer.from_pretrained("gpt2")
    ids = tok(["Hello, my dog is cute and"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max().item() < 1e-3
    assert torch.equal(ours.generate(ids, 10, temperature=0),
                       hf.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=50256))


# --------------------------------------------------------------------------- tokeniser and baselines
TEXT = ["the cat sat on the mat . the dog sat on the log .", "a cat and a dog met on the mat ."] * 20


def test_byte_level_bpe_round_trips_and_never_meets_an_unknown_symbol():
    tok = gpt.train_bpe(TEXT, vocab_size=300, min_frequency=1)
    assert tok.get_vocab_size() <= 300 and tok.token_to_id(gpt.EOT) is not None
    for s in ["the cat sat", "naïve café, 東京 ✓"]:                       # unseen bytes still encode
        assert tok.decode(tok.encode(s).ids) == s
    assert len(tok.encode("the cat sat on the mat").ids) < len("the cat sat on the mat")
    stream = gpt.encode_documents(tok, TEXT[:2])
    assert (stream == tok.token_to_id(gpt.EOT)).sum() == 2
    packed = gpt.encode_batch(tok, ["the cat", "the cat sat on the mat"], max_length=32, side="left")
    assert packed.shape[1] == 2 and packed[0, 1, 0] == 0 and packed[0, 1, -1] == 1


def test_count_baselines_by_hand():
    ids = np.array([0, 1, 0, 1, 0, 2])                                   # V = 3
    uni = gpt.UnigramLM().fit(ids, 3)
    assert np.allclose(np.exp(uni.log_probs_), np.array([4, 3, 2]) / 9)
    add = gpt.BigramLM("add_k", k=1.0).fit(ids, 3)
    assert np.isclose(add.prob([0], [1])[0], (2 + 1) / (3 + 3))           # c(0,1)=2, c(0)=3
    kn = gpt.BigramLM(discount=0.5).fit(ids, 3)
    p_cont = (np.array([1, 1, 1]) - 0.5 + 0.5 * 3 / 3) / 3                # each token follows 1 context
    assert np.isclose(kn.prob([0], [1])[0], (2 - 0.5) / 3 + 0.5 * 2 / 3 * p_cont[1])
    for model in (add, kn):                                               # each row is a distribution
        for v in range(3):
            assert np.isclose(model.prob([v] * 3, [0, 1, 2]).sum(), 1.0)


def test_bigram_beats_unigram_on_text_with_structure():
    tok = gpt.train_bpe(TEXT, vocab_size=280, min_frequency=1)
    ids = gpt.encode_documents(tok, TEXT)
    V = tok.get_vocab_size()
    train_ids, val_ids = ids[:len(ids) * 3 // 4], ids[len(ids) * 3 // 4:]
    assert gpt.BigramLM().fit(train_ids, V).nll(val_ids) < gpt.UnigramLM().fit(train_ids, V).nll(val_ids) - 0.5
    with pytest.raises(ValueError, match="vocab_size"):
        gpt.UnigramLM().fit(np.array([0, 5]), 3)


def test_sequence_classifier_reads_the_last_real_token():
    model = tiny_model()
    clf = gpt.SequenceClassifier(model.transformer, 2).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    x = torch.stack([ids, torch.tensor([[1, 1, 1, 0, 0]])], 1)           # (1, 2, 5)
    alone = torch.stack([ids[:, :3], torch.ones(1, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        assert torch.allclose(clf(x), clf(alone), atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        gpt.SequenceClassifier(model.transformer, 2, pooling="cls")


def test_score_options_is_the_sum_of_the_option_token_log_probs():
    tok = gpt.train_bpe(TEXT, vocab_size=300, min_frequency=1)
    model = tiny_model(vocab_size=tok.get_vocab_size())
    s = gpt.score_options(model, tok, ["the cat sat on the", "a dog"], [" mat", " log ."])
    ids = tok.encode("the cat sat on the").ids + tok.encode(" log .").ids
    n = len(tok.encode(" log .").ids)
    with torch.no_grad():
        logp = model(torch.tensor([ids])).log_softmax(-1)[0]
    expected = sum(logp[len(ids) - n - 1 + j, ids[len(ids) - n + j]].item() for j in range(n))
    assert s.shape == (2, 2) and abs(s[0, 1] - expected) < 1e-4


# --------------------------------------------------------------------------- the exercises' wrong answers
def _hidden_tests():
    """The chapter's hidden test functions, compiled from notebooks/08_gpt.py."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "notebooks" / "08_gpt.py").read_text()
    namespace = {}
    for block in re.findall(r"^(def test_q\d_hidden\(.*?)(?=^test_q\d_hidden\()", source, flags=re.S | re.M):
        exec(compile(block, "08_gpt.py", "exec"), namespace)
    return namespace


def _scores_zero(test, *answer):
    try:
        test(*answer)
    except Exception:          # an AssertionError, or the wrong answer's own crash: no points
        return True
    return False


@pytest.fixture(scope="module")
def q4_data():
    from course_lib import data
    articles = [gpt.clean_wiki_text(d) for d in data.load_text_corpus("enwiki_sample").documents[:3]]
    tok = gpt.train_bpe(articles[:2], vocab_size=400)
    return dict(q4_vocab=tok.get_vocab_size(), q4_train=gpt.encode_documents(tok, articles[:2]),
                q4_val=gpt.encode_documents(tok, articles[2:]))


# the answers each hidden test takes (q4 also takes the experiment's data)
_ANSWERS = {"q1": ["my_causal_attention"], "q2": ["top_p_filter"], "q3": ["perplexity_from_logits"],
            "q4": ["k_nll", "best_k"]}


@pytest.mark.slow
def test_exercise_hidden_tests_give_zero_to_the_catalogue_of_wrong_answers(q4_data):
    """The otter hidden tests (instant grading) fail every wrong answer of tests/wrong_answers/08_gpt.py
    and pass the solutions; test_exercises.py grades the same catalogue in the sandbox."""
    from pathlib import Path

    from submissions import solutions, wrong_answers   # tests/submissions.py

    tests = _hidden_tests()
    catalogue = wrong_answers("08_gpt")
    assert sorted(catalogue) == sorted(_ANSWERS) and all(len(v) >= 3 for v in catalogue.values())
    sols = solutions(Path(__file__).resolve().parents[1] / "notebooks" / "08_gpt.ipynb")

    def run(q, source):
        namespace = dict(q4_data, torch=torch, _gpt=gpt)   # what the earlier cells defined
        exec(compile(source, f"{q} answer", "exec"), namespace)
        extra = [q4_data[n] for n in ("q4_train", "q4_val", "q4_vocab")] if q == "q4" else []
        return _scores_zero(tests[f"test_{q}_hidden"], *(namespace[n] for n in _ANSWERS[q]), *extra)

    for q in _ANSWERS:
        assert not run(q, sols[q]), f"{q}: the solution fails its hidden test"
        for what, source in catalogue[q].items():
            assert run(q, source), f"{q}: the wrong answer '{what}' passes the hidden test"
