"""Plots: they draw what they are given, and refuse bad input clearly."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

from course_lib import viz
from course_lib.train import History


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert np.array_equal(viz.confusion_matrix(y, p), sk_confusion(y, p, labels=range(10)))
    assert viz.confusion_matrix([0, 1], [1, 1], n_classes=3).shape == (3, 3)
    with pytest.raises(ValueError, match="differ in length: 3 != 2"):
        viz.confusion_matrix([0, 1, 2], [0, 1])


def test_plots_draw_the_values():
    h = History(epoch=[1, 2, 3], train_loss=[3.0, 2.0, 1.0], train_acc=[0.1, 0.5, 0.9],
                val_loss=[3.5, 2.5, 2.0], val_acc=[0.1, 0.4, 0.8])
    ax = viz.plot_history(h)
    assert list(ax.lines[0].get_ydata()) == [3.0, 2.0, 1.0]
    assert list(ax.lines[1].get_ydata()) == [3.5, 2.5, 2.0]
    ax = viz.plot_histories({"a": h, "b": h}, metric="acc")
    assert len(ax.lines) == 4
    with pytest.raises(ValueError, match="metric='f1'"):
        viz.plot_history(h, metric="f1")
    ax = viz.plot_confusion_matrix([0, 1, 1], [0, 1, 0])
    assert [t.get_text() for t in ax.texts] == ["1", "0", "1", "1"]


def test_image_grid_titles_mark_mistakes():
    imgs = np.zeros((4, 8, 8))
    fig = viz.image_grid(imgs, labels=[1, 2, 3, 4], preds=[1, 0, 3, 0], ncols=2)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["1→1", "2→0", "3→3", "4→0"]
    colors = [ax.title.get_color() for ax in fig.axes[:4]]
    assert colors[0] == "black" and colors[1] == "crimson"
    with pytest.raises(ValueError, match="no images"):
        viz.image_grid(imgs[:0])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        viz.image_grid(np.zeros((8, 8)))
