"""Plausible wrong answers to the BERT chapter's exercises: each must score 0 on its question."""
_ATT = ("import math\nimport torch\n"
        "def my_attention(q, k, v, mask):\n"
        "    scores = q @ k.transpose(-2, -1) / {SCALE}\n"
        "    scores = scores.masked_fill({MASK}, float('-inf'))\n"
        "    return torch.softmax(scores, dim={DIM}) @ v")
_OK = dict(SCALE="math.sqrt(q.shape[-1])", MASK="mask[:, None, :] == 0", DIM=-1)
_BP = ("def bert_params(V, d, L, d_ff, P=512, S=2):\n"
       "    embeddings = {EMB}\n"
       "    attention = 4 * (d * d + d) + 2 * d\n"
       "    ffn = (d * d_ff + d_ff) + (d_ff * d + d) + {FFN_LN}\n"
       "    pooler = {POOL}\n"
       "    return int(embeddings + L * (attention + ffn) + pooler)")
_BOK = dict(EMB="(V + P + S) * d + 2 * d", FFN_LN="2 * d", POOL="d * d + d")

WRONG = {
    "q1": {
        "no scaling by sqrt(d)": _ATT.format(**{**_OK, "SCALE": "1.0"}),
        "padding masked as queries, not keys": _ATT.format(**{**_OK, "MASK": "mask[:, :, None] == 0"}),
        "softmax over the queries": _ATT.format(**{**_OK, "DIM": -2}),
        "scaled by d, not its square root": _ATT.format(**{**_OK, "SCALE": "q.shape[-1]"}),
    },
    "q2": {
        "without the pooler": _BP.format(**{**_BOK, "POOL": "0"}),
        "no position or segment embeddings": _BP.format(**{**_BOK, "EMB": "V * d + 2 * d"}),
        "one LayerNorm per block": _BP.format(**{**_BOK, "FFN_LN": "0"}),
    },
    "q3": {
        "ids modified in place":
            "def corrupt(ids, selected, u, random_ids, mask_id):\n"
            "    labels = torch.where(selected, ids, torch.full_like(ids, -100))\n"
            "    rnd = selected & (u >= 0.8) & (u < 0.9)\n"
            "    ids[selected & (u < 0.8)] = mask_id\n"
            "    ids[rnd] = random_ids[rnd]\n"
            "    return ids, labels",
        "the boundary u <= 0.8 masks":
            "def corrupt(ids, selected, u, random_ids, mask_id):\n"
            "    out = ids.clone()\n"
            "    out[selected & (u <= 0.8)] = mask_id\n"
            "    rnd = selected & (u > 0.8) & (u < 0.9)\n"
            "    out[rnd] = random_ids[rnd]\n"
            "    return out, torch.where(selected, ids, torch.full_like(ids, -100))",
        "labels on every position (the loss over unmasked tokens)":
            "def corrupt(ids, selected, u, random_ids, mask_id):\n"
            "    out = ids.clone()\n"
            "    out[selected & (u < 0.8)] = mask_id\n"
            "    rnd = selected & (u >= 0.8) & (u < 0.9)\n"
            "    out[rnd] = random_ids[rnd]\n"
            "    return out, ids.clone()",
        "every selected token masked (no 10/10)":
            "def corrupt(ids, selected, u, random_ids, mask_id):\n"
            "    out = ids.clone()\n"
            "    out[selected] = mask_id\n"
            "    return out, torch.where(selected, ids, torch.full_like(ids, -100))",
    },
}
