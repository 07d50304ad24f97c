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


# The word-group PCA of chapter 04 (gensim skip-gram panel, coordinates read from the book's
# figure): 32 words in four tight clusters, where labels at a fixed offset collide.
WORD_GROUPS = {
    "countries": {"france": (-0.32, 0.34), "spain": (-0.23, 0.36), "italy": (-0.14, 0.33),
                  "germany": (-0.07, 0.275), "russia": (0.04, 0.26), "china": (-0.23, 0.215),
                  "india": (-0.25, 0.10), "japan": (-0.12, 0.11)},
    "numbers": {"nine": (-0.10, 0.05), "eight": (-0.19, -0.075), "seven": (-0.44, -0.14),
                "six": (-0.46, -0.275), "five": (-0.44, -0.40), "three": (-0.56, -0.495),
                "four": (-0.46, -0.525), "two": (-0.44, -0.59)},
    "months": {"january": (-0.12, 0.285), "february": (0.03, 0.27), "july": (-0.07, 0.245),
               "december": (-0.06, 0.245), "october": (0.065, 0.205), "april": (0.06, 0.18),
               "june": (-0.09, 0.165), "september": (0.035, 0.12)},
    "family": {"husband": (0.23, -0.09), "sister": (0.55, -0.06), "daughter": (0.64, -0.065),
               "wife": (0.575, -0.195), "mother": (0.57, -0.205), "father": (0.625, -0.21),
               "brother": (0.645, -0.215), "son": (0.73, -0.24)}}


def _word_group_axes():
    import matplotlib.pyplot as plt

    words = [w for group in WORD_GROUPS.values() for w in group]
    xy = np.array([c for group in WORD_GROUPS.values() for c in group.values()])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for i, (name, members) in enumerate(WORD_GROUPS.items()):
        pts = np.array(list(members.values()))
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=f"C{i}", label=name)
    ax.margins(0.08)
    return fig, ax, xy, words


def _overlapping_pairs(boxes) -> list:
    return [(i, j) for i in range(len(boxes)) for j in range(i)
            if viz._overlap(boxes[i], boxes[j]) > 0]


def test_point_labels_do_not_overlap_where_fixed_offsets_do():
    import matplotlib.pyplot as plt

    # the naive placement (every label 3 points right of and 2 above its point) collides
    fig, ax, xy, words = _word_group_axes()
    naive = [ax.annotate(w, p, xytext=(3, 2), textcoords="offset points", fontsize=9)
             for w, p in zip(words, xy)]
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [tuple(t.get_window_extent(renderer).extents) for t in naive]
    assert len(_overlapping_pairs(boxes)) >= 3, "the check below could not fail on this case"
    plt.close(fig)

    # the same points with label_points, the layout changed after labelling (tight_layout, a
    # legend under the axes, another DPI): placed at draw time, in display coordinates
    fig, ax, xy, words = _word_group_axes()
    labels = viz.label_points(ax, xy, words, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    fig.tight_layout()
    for dpi in (100, 200):
        fig.set_dpi(dpi)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [tuple(t.get_window_extent(renderer).extents) for t in labels.texts]
        assert np.allclose(boxes, labels.boxes, atol=1.5)     # the drawn text is where it was placed
        assert _overlapping_pairs(boxes) == [], [(words[i], words[j])
                                                 for i, j in _overlapping_pairs(boxes)]
        frame = ax.bbox.extents
        assert all(b[0] >= frame[0] and b[1] >= frame[1] and b[2] <= frame[2] and b[3] <= frame[3]
                   for b in boxes), "a label outside the axes"
        points = ax.transData.transform(xy)                  # no label covers a point
        assert not [(words[i], words[k]) for i, b in enumerate(boxes) for k, (x, y) in enumerate(points)
                    if b[0] < x < b[2] and b[1] < y < b[3]]
    plt.close(fig)
    with pytest.raises(ValueError, match="3 labels for 2 points"):
        viz.label_points(ax, [(0, 0), (1, 1)], ["a", "b", "c"])
