"""Plausible wrong answers to the word2vec chapter's exercises: each must score 0 on its question."""
WRONG = {
    "q1": {
        "the paper's sqrt(t / f), without the +1 term":
            "def p_keep(count, total, sample):\n"
            "    f = count / total\n"
            "    return float(min(1.0, (sample / f) ** 0.5))",
        "no cap at 1":
            "def p_keep(count, total, sample):\n"
            "    f = count / total\n"
            "    return float(((f / sample) ** 0.5 + 1) * sample / f)",
        "the discard probability":
            "def p_keep(count, total, sample):\n"
            "    f = count / total\n"
            "    return float(1 - min(1.0, ((f / sample) ** 0.5 + 1) * sample / f))",
        "course_lib's keep_probability (forbidden)":
            "import numpy as np\n"
            "from course_lib import word2vec as w2v\n"
            "def p_keep(count, total, sample):\n"
            "    return float(w2v.keep_probability(np.array([count, total - count]), sample)[0])",
    },
    "q2": {
        "log(sigmoid) computed naively (inf at large dot products)":
            "def pair_loss(v_c, u_o, u_negs):\n"
            "    sig = lambda x: 1 / (1 + np.exp(-x))\n"
            "    return float(-np.log(sig(np.dot(u_o, v_c))) - np.log(sig(-(np.asarray(u_negs) @ v_c))).sum())",
        "the negatives' sign flipped":
            "def pair_loss(v_c, u_o, u_negs):\n"
            "    pos = float(np.dot(u_o, v_c))\n"
            "    neg = np.asarray(u_negs) @ np.asarray(v_c)\n"
            "    return float(np.logaddexp(0, -pos) + np.logaddexp(0, -neg).sum())",
        "a mean over the negatives":
            "def pair_loss(v_c, u_o, u_negs):\n"
            "    pos = float(np.dot(u_o, v_c))\n"
            "    neg = np.asarray(u_negs) @ np.asarray(v_c)\n"
            "    return float(np.logaddexp(0, -pos) + np.logaddexp(0, neg).mean())",
    },
    "q3": {
        "2 n window (no document edges)": "def n_pairs(n, window):\n    return 2 * n * window",
        "no cap at 0 for a window longer than the document":
            "def n_pairs(n, window):\n    return int(sum(2 * (n - d) for d in range(1, window + 1)))",
        "one direction only": "def n_pairs(n, window):\n    return int(sum(max(n - d, 0) for d in range(1, window + 1)))",
    },
}
