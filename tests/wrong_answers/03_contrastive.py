"""Plausible wrong answers to the contrastive chapter's exercises: each must score 0 on its question."""
_SOL = ("def my_nt_xent(z1, z2, tau):\n"
        "    n = len(z1)\n"
        "    u = {U}\n"
        "    logits = {LOGITS}\n"
        "    positive = {POS}\n"
        "    return nn.functional.cross_entropy(logits, positive)")
_U = "nn.functional.normalize(torch.cat([z1, z2]), dim=1)"
_MASKED = "(u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float('-inf'))"
_POS = "(torch.arange(2 * n) + n) % (2 * n)"

WRONG = {
    "q1": {
        "the self-pair counted (no diagonal mask)": _SOL.format(U=_U, LOGITS="u @ u.T / tau", POS=_POS),
        "not normalised": _SOL.format(U="torch.cat([z1, z2])", LOGITS=_MASKED, POS=_POS),
        "temperature multiplied": _SOL.format(U=_U, LOGITS=_MASKED.replace("/ tau", "* tau"), POS=_POS),
        "only z1's anchors": "def my_nt_xent(z1, z2, tau):\n"
                             "    n = len(z1)\n"
                             f"    u = {_U}\n"
                             f"    logits = {_MASKED}\n"
                             f"    positive = {_POS}\n"
                             "    return nn.functional.cross_entropy(logits[:n], positive[:n])",
        "course_lib's info_nce (forbidden)": "from course_lib import contrastive\n"
                                             "def my_nt_xent(z1, z2, tau):\n"
                                             "    return contrastive.info_nce(z1, z2, tau)",
    },
    "q2": {
        "not normalised": "def align_uniform(z1, z2):\n"
                          "    align = (z1 - z2).pow(2).sum(1).mean()\n"
                          "    uniform = torch.pdist(z1).pow(2).mul(-2).exp().mean().log()\n"
                          "    return float(align), float(uniform)",
        "distances not squared": "def align_uniform(z1, z2):\n"
                                 "    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)\n"
                                 "    align = (u1 - u2).norm(dim=1).mean()\n"
                                 "    uniform = torch.pdist(u1).mul(-2).exp().mean().log()\n"
                                 "    return float(align), float(uniform)",
        "i = j pairs included": "def align_uniform(z1, z2):\n"
                                "    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)\n"
                                "    align = (u1 - u2).pow(2).sum(1).mean()\n"
                                "    uniform = torch.cdist(u1, u1).pow(2).mul(-2).exp().mean().log()\n"
                                "    return float(align), float(uniform)",
        "tensors, not floats": "def align_uniform(z1, z2):\n"
                               "    u1, u2 = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)\n"
                               "    align = (u1 - u2).pow(2).sum(1).mean()\n"
                               "    uniform = torch.pdist(u1).pow(2).mul(-2).exp().mean().log()\n"
                               "    return align, uniform",
    },
    "q3": {
        "the smallest candidate": "tau_choice = min(candidates)",
        "the largest candidate": "tau_choice = max(candidates)",
        "the smallest where the weight is below half":
            "tau_choice = min(t for t in candidates if torch.softmax(negative_sims / t, 0)[0] < 0.5)",
    },
    "q4": {"a": "q4_answer = 'a'", "c": "q4_answer = 'c'", "d": "q4_answer = 'd'"},
}
