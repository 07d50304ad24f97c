"""Plausible wrong answers to the GPT chapter's exercises: each must score 0 on its question.

Used by tests/test_exercises.py (graded in the sandbox against the answer key) and by
tests/test_gpt.py (the otter hidden tests of notebooks/08_gpt.py must fail them too).
"""
_ATT = ("import math\nimport torch\n"
        "def my_causal_attention(q, k, v):\n"
        "    T = q.shape[-2]\n"
        "    scores = q @ k.transpose(-2, -1) / {SCALE}\n"
        "    hide = torch.ones(T, T).{TRI}.bool()\n"
        "    return {RET}(torch.softmax(scores.masked_fill(hide, float('-inf')), dim=-1) @ v){END}")
_AOK = dict(SCALE="math.sqrt(q.shape[-1])", TRI="triu(1)", RET="", END="")
_TOPP = ("import torch\n"
         "def top_p_filter(probs, p):\n"
         "    s, order = torch.sort(probs, descending={DESC})\n"
         "    c = torch.cumsum(s, 0)\n"
         "    keep_s = {KEEP}\n"
         "    keep = torch.zeros_like(keep_s).scatter(0, order, keep_s)\n"
         "    out = torch.where(keep, probs, torch.zeros_like(probs))\n"
         "    return {RET}")
_TOK = dict(DESC="True", KEEP="c - s < p", RET="out / out.sum()")
_PPL = ("import torch\n"
        "def perplexity_from_logits(logits, targets):\n"
        "    logp = torch.log_softmax(logits.float(), -1)\n"
        "    keep = targets != -100\n"
        "    picked = logp[keep].gather(1, targets[keep][:, None])\n"
        "    return {RET}")
_K4 = ("from course_lib import gpt as _gpt\n"
       "k_nll = {{k: float(_gpt.BigramLM('add_k', k=k).fit(q4_train, q4_vocab).nll({ON}))\n"
       "         for k in (0.0001, 0.001, 0.01, 0.1, 1.0)}}\n"
       "best_k = {BEST}(k_nll, key=k_nll.get)")

WRONG = {
    "q1": {
        "no causal mask": _ATT.format(**{**_AOK, "TRI": "triu(T)"}),
        "the mask transposed (hides the past)": _ATT.format(**{**_AOK, "TRI": "tril(-1)"}),
        "the diagonal masked too": _ATT.format(**{**_AOK, "TRI": "triu(0)"}),
        "no scaling by sqrt(d)": _ATT.format(**{**_AOK, "SCALE": "1.0"}),
        "a numpy array, not a tensor": _ATT.format(**{**_AOK, "END": ".numpy()"}),
    },
    "q2": {
        "the token that crosses p dropped (cumsum < p)": _TOPP.format(**{**_TOK, "KEEP": "c < p"}),
        "not renormalised": _TOPP.format(**{**_TOK, "RET": "out"}),
        "the least likely tokens kept": _TOPP.format(**{**_TOK, "DESC": "False"}),
        "a threshold relative to the maximum":
            "import torch\n"
            "def top_p_filter(probs, p):\n"
            "    return torch.where(probs >= probs.max() * p, probs, 0 * probs)",
    },
    "q3": {
        "padding counted (targets clamped to 0)":
            "import torch\n"
            "def perplexity_from_logits(logits, targets):\n"
            "    logp = torch.log_softmax(logits.float(), -1)\n"
            "    t = targets.clamp(min=0)\n"
            "    return float(torch.exp(-logp.gather(-1, t[..., None]).mean()))",
        "the loss, not its exponential": _PPL.format(RET="float(-picked.mean())"),
        "a tensor, not a float": _PPL.format(RET="torch.exp(-picked.mean())"),
        "the sum, not the mean": _PPL.format(RET="float(torch.exp(-picked.sum()))"),
        "the mean of per-sequence perplexities":
            "import torch\n"
            "def perplexity_from_logits(logits, targets):\n"
            "    logp = torch.log_softmax(logits.float(), -1)\n"
            "    keep = targets != -100\n"
            "    rows = [torch.exp(-logp[b][keep[b]].gather(1, targets[b][keep[b]][:, None]).mean())\n"
            "            for b in range(len(targets))]\n"
            "    return float(torch.stack(rows).mean())",
    },
    "q4": {
        "measured on the training stream": _K4.format(ON="q4_train", BEST="min"),
        "the worst k": _K4.format(ON="q4_val", BEST="max"),
        "made-up numbers": "k_nll = {k: 1.0 for k in (0.0001, 0.001, 0.01, 0.1, 1.0)}\nbest_k = 0.01",
    },
}
