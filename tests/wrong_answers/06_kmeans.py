"""Plausible wrong answers to the k-means chapter's exercises: each must score 0 on its question."""
WRONG = {
    "q1": {
        "the unsquared objective": "import torch\ndef inertia(x, centers, labels):\n"
                                   "    return float((x - centers[labels]).norm(dim=1).sum())",
        "a mean instead of the sum": "import torch\ndef inertia(x, centers, labels):\n"
                                     "    return float(((x - centers[labels]) ** 2).sum(1).mean())",
        "distances to the nearest centre, not the assigned one":
            "import torch\ndef inertia(x, centers, labels):\n"
            "    return float(torch.cdist(x, centers).min(1).values.pow(2).sum())",
        "a tensor, not a float": "import torch\ndef inertia(x, centers, labels):\n"
                                 "    return ((x - centers[labels]) ** 2).sum()",
    },
    "q2": {
        "an empty cluster becomes NaN":
            "def lloyd_step(x, centers):\n"
            "    labels = torch.cdist(x, centers).argmin(1)\n"
            "    return torch.stack([x[labels == j].mean(0) for j in range(len(centers))])",
        "an empty cluster moves to the origin":
            "def lloyd_step(x, centers):\n"
            "    labels = torch.cdist(x, centers).argmin(1)\n"
            "    new = torch.zeros_like(centers)\n"
            "    for j in range(len(centers)):\n"
            "        if (labels == j).any():\n"
            "            new[j] = x[labels == j].mean(0)\n"
            "    return new",
        "assignment by the L1 distance":
            "def lloyd_step(x, centers):\n"
            "    labels = torch.cdist(x, centers, p=1).argmin(1)\n"
            "    new = centers.clone()\n"
            "    for j in range(len(centers)):\n"
            "        if (labels == j).any():\n"
            "            new[j] = x[labels == j].mean(0)\n"
            "    return new",
        "scikit-learn's KMeans (forbidden)":
            "from sklearn.cluster import KMeans\n"
            "def lloyd_step(x, centers):\n"
            "    km = KMeans(len(centers), init=centers.numpy(), n_init=1, max_iter=1).fit(x.numpy())\n"
            "    return torch.tensor(km.cluster_centers_)",
    },
    "q3": {
        "proportional to the distance, not its square":
            "def seeding_probabilities(x, chosen):\n"
            "    d = torch.cdist(x, chosen).min(1).values\n"
            "    return d / d.sum()",
        "only the last chosen centre":
            "def seeding_probabilities(x, chosen):\n"
            "    d2 = ((x - chosen[-1]) ** 2).sum(1)\n"
            "    return d2 / d2.sum()",
        "the farthest centre instead of the nearest":
            "def seeding_probabilities(x, chosen):\n"
            "    d2 = ((x[:, None, :] - chosen[None, :, :]) ** 2).sum(-1).max(1).values\n"
            "    return d2 / d2.sum()",
        "not normalised":
            "def seeding_probabilities(x, chosen):\n"
            "    return ((x[:, None, :] - chosen[None, :, :]) ** 2).sum(-1).min(1).values",
    },
}
