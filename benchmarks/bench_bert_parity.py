"""Chapter 5, BERT: our ``course_lib.bert.BertModel`` against ``transformers.BertModel``, same weights.

As in the chapter (notebooks/05_bert.py): the offline checkpoint (all-MiniLM-L6-v2;
``BERT_CHECKPOINT`` picks another) loaded by ``BertModel.from_pretrained`` and by
``transformers.BertModel.from_pretrained``, both in fp32 and eval mode, on the same padded batches —
here every SST-2 dev sentence, 64 per batch, the last one as a sentence pair. The record is the
largest absolute difference of the last hidden states over the **real tokens**; hidden states at
padding positions are never read by anything (every pooling and head masks them) and are given in
the note. The forward passes of both are timed in the same run (the second of two passes), at the
**same attention implementation** on both sides, set explicitly: the record with the fused kernel
(``attn_implementation="sdpa"`` for both), the note also with the written-out one ("eager"), and the
same torch threads (one process).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402

ORDER = 5.0  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("bert_vs_hf_max_abs_diff", "<= 1e-4", "max |difference|",
         "largest difference between our last hidden states and transformers.BertModel's over the "
         "real tokens, fp32, same checkpoint, every SST-2 dev sentence",
         reference="the reference implementation: Hugging Face transformers {cite:p}`wolf2020transformers`"),
    Goal("bert_forward_seconds_over_hf", "report", "ratio",
         "forward time of our BertModel over transformers.BertModel on the SST-2 dev set, same run, "
         "both with torch's fused scaled_dot_product_attention (attn_implementation='sdpa')"),
)
TINY_SENTENCES = 48
REPS = 3            # timed passes of each batch on each side, after a warm-up; the fastest counts


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    import torch
    from transformers import BertModel as HFBertModel

    from course_lib import bert, data, settings
    from course_lib.device import get_device

    device = get_device()
    sst = data.load_sst2()
    folder = bert.locate_checkpoint(settings.bert_checkpoint())
    tok = bert.load_tokenizer(folder)
    ckpt = folder.parent.name if folder.name == "model" else folder.name
    n = TINY_SENTENCES if tiny else len(sst.dev_sentences)
    sentences = sst.dev_sentences[:n]
    pairs = [""] * (n - 1) + [sst.dev_sentences[n % len(sst.dev_sentences)]]
    models = {impl: (bert.BertModel.from_pretrained(folder, device=device, attn_implementation=impl),
                     HFBertModel.from_pretrained(str(folder), attn_implementation=impl).to(device).eval())
              for impl in ("sdpa", "eager")}
    for impl, (_, hf) in models.items():
        if hf.config._attn_implementation != impl:
            raise RuntimeError(f"transformers runs {hf.config._attn_implementation!r}, not {impl!r}")
    real, padded, scale = 0.0, 0.0, 0.0
    times = {impl: [0.0, 0.0] for impl in models}                  # ours, transformers
    with torch.no_grad():
        for i in range(0, n, 64):
            x = bert.encode(tok, sentences[i:i + 64], pairs=pairs[i:i + 64], max_length=128).to(device)
            for impl, (ours, hf) in models.items():
                best = [float("inf"), float("inf")]
                for rep in range(1 + REPS):        # a warm-up pass, then REPS timed ones, taking
                    with common.Timer() as ta:     # turns; each side's fastest pass counts (the
                        a = ours(x[:, 0], x[:, 1], x[:, 2]).last_hidden_state  # least disturbed)
                    with common.Timer() as tb:
                        b = hf(input_ids=x[:, 0], attention_mask=x[:, 1],
                               token_type_ids=x[:, 2]).last_hidden_state        # (B, T, d)
                    if rep:
                        best = [min(best[0], ta.seconds), min(best[1], tb.seconds)]
                times[impl][0] += best[0]
                times[impl][1] += best[1]
                diff = (a - b).abs().amax(-1)                                         # (B, T)
                mask = x[:, 1].bool()
                real = max(real, diff[mask].max().item())
                if (~mask).any():
                    padded = max(padded, diff[~mask].max().item())
                scale = max(scale, b.abs().max().item())
    (t_ours, t_hf), (e_ours, e_hf) = times["sdpa"], times["eager"]
    threads = torch.get_num_threads() if device.type == "cpu" else None
    dataset = f"{'tiny: ' if tiny else ''}{n} SST-2 dev sentences (one as a pair), checkpoint {ckpt}"
    return [
        common.record(GOALS["bert_vs_hf_max_abs_diff"], real, dataset=dataset, seconds=t_ours + t_hf, tiny=tiny,
                      note=f"padding positions (never read): max {padded:.2e}; largest |hidden state| "
                           f"{scale:.2f}; both attention implementations (sdpa, eager) on both sides"),
        common.record(GOALS["bert_forward_seconds_over_hf"], t_ours / t_hf, dataset=dataset, seconds=t_ours,
                      tiny=tiny, note=common.join_notes(
                          f"sdpa on both sides: ours {t_ours:.2f} s, transformers {t_hf:.2f} s; eager on "
                          f"both sides: ours {e_ours:.2f} s, transformers {e_hf:.2f} s (ratio "
                          f"{e_ours / e_hf:.3f}); {device.type}"
                          + (f", {threads} torch threads for both" if threads else "")
                          + f", batches of 64, fastest of {REPS} interleaved passes per batch",
                          common.load_note())),
    ]


if __name__ == "__main__":
    sys.exit(common.main(records))
