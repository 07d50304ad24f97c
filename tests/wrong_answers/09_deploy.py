"""Plausible wrong answers to the deployment chapter's exercises: each must score 0 on its question."""
_PARITY = ("import numpy as np\n"
           "def parity(reference, candidate):\n"
           "    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)\n"
           "    if a.shape != b.shape:\n"
           "        raise ValueError('shapes differ')\n")
_PCT = "import math\ndef percentile_ms(timings_s, q):\n"
_CHECK = '''def check_request(payload, max_items=64, max_chars=5000):
    if not isinstance(payload, dict):
        return (422, "body")
    unknown = sorted(set(payload) - {"text", "texts"})
    if unknown and UNKNOWN_KEYS:
        return (422, unknown[0])
    if ("text" in payload) == ("texts" in payload):
        return (422, "texts")
    if "text" in payload:
        items, names = [payload["text"]], ["text"]
    else:
        items = payload["texts"]
        if not isinstance(items, list) or not items:
            return (422, "texts")
        if len(items) > max_items - OFF_BY_ONE:
            return (TOO_MANY, "texts")
        names = [f"texts[{i}]" if INDEX else "texts" for i in range(len(items))]
    for item, name in zip(items, names):
        if not isinstance(item, str) or not (item.strip() if STRIP else item):
            return (422, name)
        if len(item) > max_chars:
            return (TOO_LONG, name)
    return None
'''
_RIGHT = dict(UNKNOWN_KEYS=True, OFF_BY_ONE=0, TOO_MANY=422, INDEX=True, STRIP=True, TOO_LONG=413)


def _check(**wrong):
    return "".join(f"{k} = {v!r}\n" for k, v in {**_RIGHT, **wrong}.items()) + _CHECK


WRONG = {
    "q1": {
        "signed max difference":
            _PARITY + "    return float((a - b).max()), float((a.argmax(1) == b.argmax(1)).mean())",
        "mean instead of max":
            _PARITY + "    return float(abs(a - b).mean()), float((a.argmax(1) == b.argmax(1)).mean())",
        "agreement by rows equal":
            _PARITY + "    return float(abs(a - b).max()), float((a == b).all(1).mean())",
        "arg-max over the batch, not the classes":
            _PARITY + "    return float(abs(a - b).max()), float((a.argmax(0) == b.argmax(0)).mean())",
        "NumPy floats, not Python floats":
            _PARITY + "    return np.abs(a - b).max(), (a.argmax(1) == b.argmax(1)).mean()",
        "no shape check (broadcasting decides)":
            "import numpy as np\n"
            "def parity(reference, candidate):\n"
            "    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)\n"
            "    return float(np.abs(a - b).max()), float((a.argmax(1) == b.argmax(1)).mean())",
        "a list, not a tuple":
            _PARITY + "    return [float(abs(a - b).max()), float((a.argmax(1) == b.argmax(1)).mean())]",
    },
    "q2": {
        "NumPy's default (linear) interpolation":
            "import numpy as np\ndef percentile_ms(timings_s, q):\n"
            "    return 1000.0 * float(np.percentile(timings_s, q))",
        "a NumPy float":
            "import numpy as np\ndef percentile_ms(timings_s, q):\n"
            "    return np.float64(1000.0) * np.percentile(timings_s, q, method='inverted_cdf')",
        "seconds, not milliseconds":
            _PCT + "    x = sorted(timings_s)\n    return float(x[max(math.ceil(q * len(x) / 100), 1) - 1])",
        "rank off by one (0-based)":
            _PCT + "    x = sorted(timings_s)\n    return 1000.0 * x[min(math.ceil(q * len(x) / 100), len(x) - 1)]",
        "floor rank":
            _PCT + "    x = sorted(timings_s)\n    return 1000.0 * x[max(int(q * len(x) / 100) - 1, 0)]",
        "not sorted":
            _PCT + "    return 1000.0 * timings_s[max(math.ceil(q * len(timings_s) / 100), 1) - 1]",
        "sorts the caller's list in place":
            _PCT + "    timings_s.sort()\n"
                   "    return 1000.0 * timings_s[max(math.ceil(q * len(timings_s) / 100), 1) - 1]",
    },
    "q3": {
        "white space counts as text": _check(STRIP=False),
        "413 for too many items": _check(TOO_MANY=413),
        "422 for a long text": _check(TOO_LONG=422),
        "the index is not in the field name": _check(INDEX=False),
        "unknown keys ignored": _check(UNKNOWN_KEYS=False),
        "item limit off by one": _check(OFF_BY_ONE=1),
    },
}
