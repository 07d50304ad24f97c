"""Plausible wrong answers to the autoencoder chapter's exercises: each must score 0 on its question."""
WRONG = {
    "q1": {
        "the parentheses: the second term's sign flipped":
            "def my_bce(x_hat, x):\n"
            "    log_p = torch.log(x_hat).clamp(min=-100)\n"
            "    log_q = torch.log(1 - x_hat).clamp(min=-100)\n"
            "    return (-x * log_p + (1 - x) * log_q).mean()",
        "no clamp (inf at 0 and 1)":
            "def my_bce(x_hat, x):\n"
            "    return -(x * torch.log(x_hat) + (1 - x) * torch.log(1 - x_hat)).mean()",
        "a sum instead of a mean":
            "def my_bce(x_hat, x):\n"
            "    log_p = torch.log(x_hat).clamp(min=-100)\n"
            "    log_q = torch.log(1 - x_hat).clamp(min=-100)\n"
            "    return -(x * log_p + (1 - x) * log_q).sum()",
        "PyTorch's binary_cross_entropy (forbidden)":
            "def my_bce(x_hat, x):\n"
            "    return torch.nn.functional.binary_cross_entropy(x_hat, x)",
    },
    "q2": {
        "the kept eigenvalues instead of the dropped ones":
            "def pca_error(x, k):\n"
            "    x = np.asarray(x, dtype=np.float64)\n"
            "    xc = x - x.mean(axis=0)\n"
            "    eig = np.linalg.eigvalsh(xc.T @ xc / len(x))\n"
            "    return float(eig[x.shape[1] - k:].sum() / x.shape[1])",
        "not centred":
            "def pca_error(x, k):\n"
            "    x = np.asarray(x, dtype=np.float64)\n"
            "    eig = np.linalg.eigvalsh(x.T @ x / len(x))\n"
            "    return float(eig[:x.shape[1] - k].sum() / x.shape[1])",
        "covariance over N - 1":
            "def pca_error(x, k):\n"
            "    x = np.asarray(x, dtype=np.float64)\n"
            "    xc = x - x.mean(axis=0)\n"
            "    eig = np.linalg.eigvalsh(xc.T @ xc / (len(x) - 1))\n"
            "    return float(eig[:x.shape[1] - k].sum() / x.shape[1])",
        "scikit-learn's PCA (forbidden)":
            "from sklearn.decomposition import PCA\n"
            "def pca_error(x, k):\n"
            "    p = PCA(k).fit(x)\n"
            "    return float(((x - p.inverse_transform(p.transform(x))) ** 2).mean())",
    },
    "q3": {
        "the biases penalised":
            "def ae_loss(X, W, b, W2, b2, lam):\n"
            "    H = 1.0 / (1.0 + np.exp(-(X @ W.T + b)))\n"
            "    R = H @ W2.T + b2\n"
            "    return float(0.5 * ((X - R) ** 2).sum() + 0.5 * lam * ((W ** 2).sum() + (W2 ** 2).sum()\n"
            "                 + (b ** 2).sum() + (b2 ** 2).sum()))",
        "a mean instead of the sum":
            "def ae_loss(X, W, b, W2, b2, lam):\n"
            "    H = 1.0 / (1.0 + np.exp(-(X @ W.T + b)))\n"
            "    R = H @ W2.T + b2\n"
            "    return float(0.5 * ((X - R) ** 2).mean() + 0.5 * lam * ((W ** 2).sum() + (W2 ** 2).sum()))",
        "tanh instead of the sigmoid":
            "def ae_loss(X, W, b, W2, b2, lam):\n"
            "    H = np.tanh(X @ W.T + b)\n"
            "    R = H @ W2.T + b2\n"
            "    return float(0.5 * ((X - R) ** 2).sum() + 0.5 * lam * ((W ** 2).sum() + (W2 ** 2).sum()))",
        "a NumPy float64, not a float":
            "def ae_loss(X, W, b, W2, b2, lam):\n"
            "    H = 1.0 / (1.0 + np.exp(-(X @ W.T + b)))\n"
            "    R = H @ W2.T + b2\n"
            "    return 0.5 * ((X - R) ** 2).sum() + 0.5 * lam * ((W ** 2).sum() + (W2 ** 2).sum())",
    },
}
