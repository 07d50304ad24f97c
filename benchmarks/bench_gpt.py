"""Chapter 8, GPT: parity with transformers, the KV cache, training-step time, and the ``full``
pre-training and fine-tuning run of the chapter (notebooks/08_gpt.py).

- ``gpt_vs_hf_max_abs_diff``: our ``GPT2LMHeadModel`` and ``transformers.GPT2LMHeadModel`` with the
  same random weights (the chapter's ``full`` shape, fp32, eval mode) on real text (tokens of the
  packaged Wikipedia extract through a BPE trained on it), one batch with a left-padded row whose
  positions count real tokens; max |logits difference| over the real tokens.
- ``gpt_kv_cache_speedup_256``: ``generate`` of 256 new tokens after a 16-token prompt, uncached
  over cached, same model (the ``full`` shape), same seed; the tokens must be equal.
- ``gpt_train_step_over_hf``: time of a training step (forward, loss, backward, AdamW step) of ours
  over ``transformers.GPT2LMHeadModel`` at the same configuration and batch, same run.
- GPU set (``cpu=False``): the chapter's ``full`` profile — BPE, pre-training, the Kneser-Ney
  bigram on the same split (``gpt_val_ppl_over_bigram``), then SST-2 fine-tuning with 1,000 labels,
  pre-trained minus the same architecture from scratch (``gpt_sst2_pretrained_minus_scratch_points_1k``).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 5.5  # placed after BERT in the book, as the chapter is
GOALS = common.goals(
    Goal("gpt_vs_hf_max_abs_diff", "<= 1e-5", "max |difference|",
         "largest difference between our logits and transformers.GPT2LMHeadModel's over the real "
         "tokens, same random weights, fp32, one right- and one left-padded row",
         reference="the reference implementation: Hugging Face transformers {cite:p}`wolf2020transformers`"),
    Goal("gpt_kv_cache_speedup_256", ">= 3", "ratio",
         "generation time of 256 new tokens without the KV cache over with it (same tokens), "
         "the chapter's full model shape, batch 1"),
    Goal("gpt_train_step_over_hf", "<= 1.1", "ratio",
         "training-step time of our GPT over transformers.GPT2LMHeadModel, same configuration and batch"),
    Goal("gpt_val_ppl_over_bigram", "<= 0.7", "ratio", cpu=False,
         about="validation perplexity of the pre-trained GPT over the Kneser-Ney bigram's, same "
               "tokens and split (full profile)"),
    Goal("gpt_sst2_pretrained_minus_scratch_points_1k", "report", "accuracy points", cpu=False,
         about="SST-2 dev accuracy of the pre-trained GPT minus the same architecture from scratch, "
               "1,000 labels, mean of two seeds"),
)


def _shape(tiny: bool):
    from course_lib import gpt

    P = gpt.PROFILES["full"]
    if tiny:
        return dict(n_embd=32, n_layer=2, n_head=4, n_positions=64), 32
    return {k: P[k] for k in ("n_embd", "n_layer", "n_head", "n_positions")}, 256


def _text_ids(tiny: bool):
    """Real tokens: the packaged Wikipedia extract through a BPE trained on it."""
    from course_lib import data, gpt

    docs = [gpt.clean_wiki_text(d) for d in data.load_text_corpus("enwiki_sample").documents[:4 if tiny else 20]]
    tok = gpt.train_bpe(docs, vocab_size=300 if tiny else 2048)
    return tok, gpt.encode_documents(tok, docs)


def _parity(tiny: bool, shape: dict, ids):
    import torch
    import transformers

    from course_lib import gpt

    V = int(ids.max()) + 1
    hc = transformers.GPT2Config(vocab_size=V, **shape, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    ours = gpt.GPT2LMHeadModel(gpt.GPTConfig.from_dict(hc.to_dict())).eval()
    gpt.load_gpt2_state(ours, hf.state_dict())
    T = min(shape["n_positions"], 128)
    x = ids[:4 * T].view(4, T).clone()
    mask = torch.ones_like(x)
    mask[1, -T // 3:] = 0                                   # right padding
    mask[2, :T // 4] = 0                                    # left padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with common.Timer() as t, torch.no_grad():
        a = ours(x, mask, pos)
        b = hf(x, attention_mask=mask, position_ids=pos).logits
    diff = (a - b).abs()[mask.bool()].max().item()
    return diff, t.seconds, f"4 x {T} tokens, vocabulary {V}; transformers attention: " \
                            f"{getattr(hf.config, '_attn_implementation', '?')}"


def _kv_speedup(shape: dict, n_new: int, ids):
    import torch

    from course_lib import gpt

    torch.manual_seed(0)
    model = gpt.GPT2LMHeadModel(gpt.GPTConfig(vocab_size=int(ids.max()) + 1, **shape)).eval()
    prompt = ids[None, :16]
    times, outs = {}, {}
    for cache in (True, False):
        best = float("inf")
        for _ in range(2):
            with common.Timer() as t:
                outs[cache] = model.generate(prompt, n_new, temperature=1.0, top_k=50, use_cache=cache,
                                             generator=torch.Generator().manual_seed(0))
            best = min(best, t.seconds)
        times[cache] = best
    if not torch.equal(outs[True], outs[False]):
        raise AssertionError("the KV cache changed the generated tokens")
    return times[False] / times[True], times


def _step_ratio(shape: dict, ids, steps: int):
    import torch
    import transformers

    from course_lib import gpt

    V = int(ids.max()) + 1
    T = min(shape["n_positions"], 256)
    B = 8
    x = ids[:B * (T + 1)].view(B, T + 1)
    hc = transformers.GPT2Config(vocab_size=V, **shape, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hc).train()
    ours = gpt.GPT2LMHeadModel(gpt.GPTConfig.from_dict(hc.to_dict())).train()

    def run(model, forward):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        best = float("inf")
        for step in range(steps + 1):                      # the first step warms up
            with common.Timer() as t:
                loss = gpt.lm_loss(forward(model, x[:, :-1]), x[:, 1:])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if step:
                best = min(best, t.seconds)
        return best

    t_hf = run(hf, lambda m, xb: m(xb).logits)
    t_ours = run(ours, lambda m, xb: m(xb))
    return t_ours / t_hf, t_ours, t_hf, f"batch {B} x {T} tokens, best of {steps} steps each"


def _full_run(tiny: bool):
    """The chapter's full profile: returns (ppl ratio, gain points, seconds, dataset, note)."""
    import copy

    import numpy as np
    import torch

    from course_lib import bert, data, gpt, train
    from course_lib.device import get_device, seed_everything

    P = dict(gpt.PROFILES["full"])
    if tiny:
        P.update(corpus_chars=150_000, vocab_size=400, n_positions=64, n_embd=32, n_layer=1, n_head=2,
                 epochs=1, batch_size=32, n_labels=64, sst_epochs=1, rounds=1)
    device = get_device()
    corpus = data.load_text_corpus("enwiki_sample" if tiny else None)
    docs = [gpt.clean_wiki_text(d) for d in corpus.documents]
    tr, va = gpt.split_documents(docs, 0.1, seed=0, max_chars=P["corpus_chars"])
    tok = gpt.train_bpe(tr, vocab_size=P["vocab_size"])
    V, EOT = tok.get_vocab_size(), tok.token_to_id(gpt.EOT)
    tr_ids, va_ids = gpt.encode_documents(tok, tr), gpt.encode_documents(tok, va)
    bigram = gpt.BigramLM().fit(tr_ids, V).nll(va_ids)
    T = P["n_positions"]
    cfg = gpt.GPTConfig(vocab_size=V, n_positions=T, n_embd=P["n_embd"], n_layer=P["n_layer"],
                        n_head=P["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=EOT, eos_token_id=EOT)
    seed_everything(0)
    model = gpt.GPT2LMHeadModel(cfg)
    with common.Timer() as t:
        run = gpt.pretrain(model, gpt.make_windows(tr_ids, T), gpt.make_windows(va_ids, T), epochs=P["epochs"],
                           batch_size=P["batch_size"], lr=P["lr"], rounds=P["rounds"], device=device)
    ratio = gpt.perplexity(run["val_loss"][-1]) / gpt.perplexity(bigram)
    sst = data.load_sst2()
    idx = np.random.default_rng(0).permutation(len(sst.train_sentences))[:P["n_labels"]]
    x = gpt.encode_batch(tok, [sst.train_sentences[i] for i in idx], max_length=T)
    y = torch.as_tensor(sst.train_labels[idx])
    dev_sentences = sst.dev_sentences[:96] if tiny else sst.dev_sentences
    x_dev = gpt.encode_batch(tok, dev_sentences, max_length=T)
    y_dev = np.asarray(sst.dev_labels[:len(dev_sentences)])
    conf = train.TrainConfig(epochs=P["sst_epochs"], batch_size=16, lr=3e-4, optimizer="adamw",
                             weight_decay=0.01, progress=False)
    acc = {}
    for name, make in [("pre", lambda: copy.deepcopy(model.transformer)), ("scratch", lambda: gpt.GPT2Model(cfg))]:
        accs = []
        for seed in (0, 1):
            seed_everything(seed)
            clf = gpt.SequenceClassifier(make(), 2)
            train.fit(clf, (x, y), config=conf, device=device)
            accs.append(float((train.predict(clf, x_dev, device=device).argmax(1).numpy() == y_dev).mean()))
        acc[name] = float(np.mean(accs))
    gain = 100 * (acc["pre"] - acc["scratch"])
    dataset = (f"{'tiny: ' if tiny else ''}{corpus.protocol}; BPE {V}; SST-2 {len(x)} labels, "
               f"{len(y_dev)} dev sentences")
    note = (f"validation perplexity {gpt.perplexity(run['val_loss'][-1]):.1f} vs Kneser-Ney bigram "
            f"{gpt.perplexity(bigram):.1f}; {len(run['step_loss'])} steps; SST-2 pre-trained "
            f"{acc['pre']:.3f}, scratch {acc['scratch']:.3f}")
    return ratio, gain, t.seconds, dataset, note


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    shape, n_new = _shape(tiny)
    tok, ids = _text_ids(tiny)
    out = []
    diff, secs, note = _parity(tiny, shape, ids)
    data_name = f"{'tiny: ' if tiny else ''}packaged English Wikipedia extract (gensim), byte-level BPE"
    out.append(common.record(GOALS["gpt_vs_hf_max_abs_diff"], diff, dataset=data_name, seconds=secs,
                             note=note, tiny=tiny))
    speedup, times = _kv_speedup(shape, n_new, ids)
    shape_txt = f"n_embd {shape['n_embd']}, {shape['n_layer']} layers, {shape['n_head']} heads"
    out.append(common.record(GOALS["gpt_kv_cache_speedup_256"], speedup, dataset=data_name,
                             seconds=times[True] + times[False], tiny=tiny,
                             note=common.join_notes(f"{n_new} new tokens after 16; {shape_txt}; uncached "
                                                    f"{times[False]:.2f} s, cached {times[True]:.2f} s",
                                                    common.load_note())))
    ratio, t_ours, t_hf, note = _step_ratio(shape, ids, steps=2 if tiny else 5)
    out.append(common.record(GOALS["gpt_train_step_over_hf"], ratio, dataset=data_name, seconds=t_ours + t_hf,
                             tiny=tiny, note=common.join_notes(f"{shape_txt}; {note}; ours {t_ours:.3f} s, "
                                                               f"transformers {t_hf:.3f} s", common.load_note())))
    if not cpu_only:
        ppl_ratio, gain, secs, dataset, note = _full_run(tiny)
        out.append(common.record(GOALS["gpt_val_ppl_over_bigram"], ppl_ratio, dataset=dataset, seconds=secs,
                                 note=note, tiny=tiny))
        out.append(common.record(GOALS["gpt_sst2_pretrained_minus_scratch_points_1k"], gain, dataset=dataset,
                                 seconds=secs, note=note, tiny=tiny))
    return out


if __name__ == "__main__":
    sys.exit(common.main(records))
