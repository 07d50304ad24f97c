"""Chapter 2, autoencoders: test reconstruction error against PCA with the same code size (k = 32).

The chapter's ``full`` configuration (notebooks/02_autoencoders.py), the ``full`` side of
``course_lib.settings.PRESETS["autoencoder"]``: MNIST from ``load_mnist(full=None)`` scaled to
[0, 1]; the linear autoencoder trained by alternating least squares (``fit_linear_autoencoder``,
``als_iter`` iterations); ``ConvAutoencoder(k, channels)`` started from the mean image and trained
with ``TrainConfig(epochs, batch_size, lr, schedule="onecycle", seed=0)`` on the mean squared
error. PCA is scikit-learn's, fitted on the same
training images; errors are per pixel on the test images.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import Goal  # noqa: E402
from course_lib import settings  # noqa: E402

ORDER = 2  # position of its rows in the book's table (the chapter number)
GOALS = common.goals(
    Goal("linear_ae_over_pca_mse", "<= 1.02", "ratio",
         "test MSE of a linear autoencoder over PCA's, same code size (32), MNIST test images",
         reference="1 at the optimum: the linear autoencoder spans the principal subspace "
                   "{cite:p}`baldi1989neural`"),
    Goal("conv_ae_over_pca_mse", "<= 0.60", "ratio",
         "test MSE of the convolutional autoencoder over PCA's, code size 32, MNIST test images",
         reference="deep autoencoders reconstruct far better than PCA at the same code size "
                   "{cite:p}`hinton2006reducing`"),
)
FULL = settings.preset("autoencoder", "full")  # what the notebook runs with COURSE_PROFILE=full
TINY = dict(k=32, als_iter=5, channels=(8, 16), epochs=1, batch_size=64, lr=5e-3, n_train=600, n_test=500)


def records(tiny: bool = False, cpu_only: bool = False) -> list[dict]:
    from course_lib import autoencoder as ae
    from course_lib import data, train
    from course_lib.device import get_device, seed_everything

    cfg = TINY if tiny else FULL
    device = get_device()
    mnist = data.load_mnist(full=None)
    x_train, x_test = ae.images_to_unit(mnist.x_train), ae.images_to_unit(mnist.x_test)
    dataset = mnist.protocol
    if tiny:
        x_train, x_test = x_train[:cfg["n_train"]], x_test[:cfg["n_test"]]
        dataset = f"tiny: first {cfg['n_train']} train / {cfg['n_test']} test of [{dataset}]"
    K = cfg["k"]
    with common.Timer() as t_pca:
        pca_mse, _ = ae.pca_reconstruction(x_train, x_test, K)
    seed_everything(0)
    linear = ae.linear_autoencoder(784, K)
    with common.Timer() as t_lin:
        ae.fit_linear_autoencoder(linear, x_train, n_iter=cfg["als_iter"], device=device)
    linear_mse = ae.reconstruction_mse(linear, x_test, device=device)

    seed_everything(0)
    conv = ae.init_output_bias(ae.ConvAutoencoder(K, cfg["channels"]), x_train)
    with common.Timer() as t_conv:
        ae.train_autoencoder(conv, x_train, device=device, config=train.TrainConfig(
            epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], schedule="onecycle",
            seed=0, progress=False))
    conv_mse = ae.reconstruction_mse(conv, x_test, device=device)
    load = common.load_note()
    return [
        common.record(GOALS["linear_ae_over_pca_mse"], linear_mse / pca_mse, dataset=dataset,
                      seconds=t_lin.seconds, tiny=tiny,
                      note=common.join_notes(f"PCA {pca_mse:.5f} ({t_pca.seconds:.1f} s), linear "
                                             f"autoencoder {linear_mse:.5f}", load)),
        common.record(GOALS["conv_ae_over_pca_mse"], conv_mse / pca_mse, dataset=dataset,
                      seconds=t_conv.seconds, tiny=tiny,
                      note=common.join_notes(f"PCA {pca_mse:.5f}, conv autoencoder {conv_mse:.5f}", load)),
    ]


if __name__ == "__main__":
    sys.exit(common.main(records))
