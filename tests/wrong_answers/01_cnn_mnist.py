"""Plausible wrong answers to the CNN chapter's exercises: each must score 0 on its question.

Keys: question -> {what the mistake is: the answer cell's source}. tests/test_exercises.py grades
them through the sandboxed harness (course_lib.grading.harness), next to the solutions.
"""
WRONG = {
    "q1": {
        "padding counted once": "def output_size(n, kernel, stride=1, padding=0):\n"
                                "    return (n + padding - kernel) // stride + 1",
        "true division (a float)": "def output_size(n, kernel, stride=1, padding=0):\n"
                                   "    return (n + 2 * padding - kernel) / stride + 1",
        "the +1 inside the division": "def output_size(n, kernel, stride=1, padding=0):\n"
                                      "    return (n + 2 * padding - kernel + 1) // stride",
        "course_lib's helper (forbidden)": "from course_lib.cnn import conv_output_size\n"
                                           "def output_size(n, kernel, stride=1, padding=0):\n"
                                           "    return conv_output_size(n, kernel, stride=stride, padding=padding)",
    },
    "q2": {
        "log of softmax without the max shift (inf at 1000)":
            "def my_cross_entropy(logits, target):\n"
            "    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)\n"
            "    return -torch.log(p[torch.arange(len(target)), target]).mean()",
        "sum instead of mean":
            "def my_cross_entropy(logits, target):\n"
            "    m = logits.max(dim=1).values\n"
            "    lse = m + torch.log(torch.exp(logits - m[:, None]).sum(dim=1))\n"
            "    return (lse - logits[torch.arange(len(target)), target]).sum()",
        "PyTorch's cross_entropy (forbidden)":
            "def my_cross_entropy(logits, target):\n"
            "    return nn.functional.cross_entropy(logits, target)",
        "a Python float (no gradient)":
            "def my_cross_entropy(logits, target):\n"
            "    m = logits.max(dim=1).values\n"
            "    lse = m + torch.log(torch.exp(logits - m[:, None]).sum(dim=1))\n"
            "    return float((lse - logits[torch.arange(len(target)), target]).mean())",
    },
    "q3": {
        "the too-small default": "lr_choice = 0.01",
        "divergent": "lr_choice = 1000.0",
        "a tenth of a good rate": "lr_choice = 0.1",
        "a string": "lr_choice = '3.0'",
    },
    "q4": {"a": "q4_answer = 'a'", "c": "q4_answer = 'c'", "d": "q4_answer = 'd'"},
}
