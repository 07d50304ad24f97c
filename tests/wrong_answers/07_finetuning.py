"""Plausible wrong answers to the fine-tuning chapter's exercises: each must score 0 on its question."""
WRONG = {
    "q1": {
        "scaled by alpha, not alpha / r": "import torch\n"
                                          "def lora_forward(x, W, b, A, B, alpha):\n"
                                          "    return x @ W.T + b + alpha * (x @ A.T) @ B.T",
        "the adapter without its scale": "import torch\n"
                                         "def lora_forward(x, W, b, A, B, alpha):\n"
                                         "    return x @ W.T + b + (x @ A.T) @ B.T",
        "the bias forgotten": "import torch\n"
                              "def lora_forward(x, W, b, A, B, alpha):\n"
                              "    return x @ W.T + (alpha / A.shape[0]) * (x @ A.T) @ B.T",
        "the adapter dropped (as if B were still 0)": "import torch\n"
                                                      "def lora_forward(x, W, b, A, B, alpha):\n"
                                                      "    return x @ W.T + b",
    },
    "q2": {
        "the gradients forgotten":
            "def training_bytes(total, trainable, optimizer, bytes_per_value=4):\n"
            "    states = {'adamw': 2, 'adam': 2, 'sgd': 1}[optimizer]\n"
            "    return int(bytes_per_value * (total + states * trainable))",
        "optimizer state for every parameter, frozen ones too":
            "def training_bytes(total, trainable, optimizer, bytes_per_value=4):\n"
            "    states = {'adamw': 2, 'adam': 2, 'sgd': 1}[optimizer]\n"
            "    return int(bytes_per_value * (total + trainable + states * total))",
        "SGD's momentum forgotten":
            "def training_bytes(total, trainable, optimizer, bytes_per_value=4):\n"
            "    states = {'adamw': 2, 'adam': 2, 'sgd': 0}[optimizer]\n"
            "    return int(bytes_per_value * (total + trainable + states * trainable))",
    },
    "q3": {
        "the whole classifier trains, not only its last layer":
            "def freeze_backbone(model):\n"
            "    model.requires_grad_(False)\n"
            "    model.classifier.requires_grad_(True)\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "the head frozen too":
            "def freeze_backbone(model):\n"
            "    model.requires_grad_(False)\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "only the convolutions frozen (the messy state kept elsewhere)":
            "def freeze_backbone(model):\n"
            "    model.features.requires_grad_(False)\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "course_lib.finetune (forbidden)":
            "from course_lib import finetune\n"
            "def freeze_backbone(model):\n"
            "    finetune.set_strategy(model, 'head')\n"
            "    return finetune.count_parameters(model)['trainable']",
    },
    "q4": {
        "a missing model.eval() (dropout stays on)":
            "def accuracy(model, x, y):\n"
            "    with torch.no_grad():\n"
            "        pred = model(x).argmax(1)\n"
            "    return float((pred == y).float().mean())",
        "no torch.no_grad()":
            "def accuracy(model, x, y):\n"
            "    was_training = model.training\n"
            "    model.eval()\n"
            "    pred = model(x).argmax(1)\n"
            "    model.train(was_training)\n"
            "    return float((pred == y).float().mean())",
        "the training mode not restored":
            "def accuracy(model, x, y):\n"
            "    model.eval()\n"
            "    with torch.no_grad():\n"
            "        pred = model(x).argmax(1)\n"
            "    return float((pred == y).float().mean())",
        "a tensor, not a float":
            "def accuracy(model, x, y):\n"
            "    was_training = model.training\n"
            "    model.eval()\n"
            "    with torch.no_grad():\n"
            "        pred = model(x).argmax(1)\n"
            "    model.train(was_training)\n"
            "    return (pred == y).float().mean()",
    },
}
