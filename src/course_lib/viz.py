"""Pictures a learner would rather look at than read: training curves, image grids, confusion matrices.

Every function draws on a Matplotlib ``Axes`` (created when not given) and returns it, so a notebook
can compose figures and myst-nb ``glue`` can store them.

:func:`label_points` labels the points of a scatter plot where no label overlaps another label, a
point or the frame (placed at draw time, after the layout is known).

Figures in the book are read on phones, on retina screens and by screen readers:
:func:`describe_figure` attaches a description to a figure (its alt text in the book; without one a
description is made from its titles and axis labels, :func:`figure_description`), and
:func:`use_book_figures` makes IPython show figures at twice the pixel density with that
description as their ``text/plain`` (the book shows it as the figure's alt text and, its first
sentence, as its caption).

References
----------
- Hunter, "Matplotlib: A 2D Graphics Environment", Computing in Science & Engineering 9(3), 2007.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.artist
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_history", "plot_histories", "image_grid", "confusion_matrix", "plot_confusion_matrix",
           "label_points", "RepelledLabels", "describe_figure", "figure_description", "use_book_figures"]


def _ax(ax, figsize=(5, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_history(history, ax=None, metric: str = "loss", label: str | None = None):
    """Train (and validation, when recorded) ``metric`` per epoch of a :class:`~course_lib.train.History`."""
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric={metric!r}; expected 'loss' or 'acc'.")
    ax = _ax(ax)
    h = history.as_dict() if hasattr(history, "as_dict") else dict(history)
    prefix = f"{label}: " if label else ""
    train, val = h[f"train_{metric}"], h.get(f"val_{metric}") or []
    if any(v is None for v in train):
        raise ValueError(f"this history has no '{metric}' values (not a classifier?).")
    line, = ax.plot(h["epoch"], train, "-o", ms=3, label=f"{prefix}train")
    if val and all(v is not None for v in val):
        ax.plot(h["epoch"], val, "--s", ms=3, color=line.get_color(), label=f"{prefix}validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel({"loss": "loss", "acc": "accuracy"}[metric])
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_histories(histories: dict, metric: str = "loss", ax=None):
    """Several runs on one plot: ``plot_histories({"fixed": h1, "broken": h2})``."""
    ax = _ax(ax)
    for name, h in histories.items():
        plot_history(h, ax=ax, metric=metric, label=name)
    return ax


def image_grid(images, labels: Sequence | None = None, preds: Sequence | None = None,
               ncols: int = 10, cmap: str = "gray_r", size: float = 1.0, title: str | None = None):
    """Show images ``(N, H, W)`` or ``(N, 1, H, W)`` in a grid, titled by label (and prediction).

    A title is red where ``preds`` differs from ``labels``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    imgs = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]                                    # (N, 1, H, W) -> (N, H, W)
    if imgs.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, 1, H, W); got {imgs.shape}.")
    n = len(imgs)
    if n == 0:
        raise ValueError("no images to show.")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(imgs[i], cmap=cmap)
        if labels is not None:
            text, color = f"{labels[i]}", "black"
            if preds is not None:
                text = f"{labels[i]}→{preds[i]}"
                color = "black" if preds[i] == labels[i] else "crimson"
            ax.set_title(text, fontsize=14, color=color)      # ~10 px on a phone at 15 columns
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    shown = ", ".join(f"{labels[i]}" + (f" predicted {preds[i]}" if preds is not None else "")
                      for i in range(min(n, 12))) if labels is not None else ""
    describe_figure(fig, f"{title + ': ' if title else ''}a grid of {n} images ({imgs.shape[1]}×"
                         f"{imgs.shape[2]} pixels)" + (f"; labels {shown}" + (", …" if n > 12 else "")
                                                       if shown else ""))
    return fig


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of examples with true class ``i`` predicted as ``j``: shape ``(K, K)``."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} != {y_pred.shape[0]}.")
    k = n_classes or int(max(y_true.max(), y_pred.max())) + 1
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def plot_confusion_matrix(y_true, y_pred, class_names: Sequence | None = None, ax=None,
                          normalize: bool = False):
    """Heat map of :func:`confusion_matrix`, counts written in each cell."""
    cm = confusion_matrix(y_true, y_pred, len(class_names) if class_names is not None else None)
    k = len(cm)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    shown = cm / cm.sum(axis=1, keepdims=True).clip(min=1) if normalize else cm
    ax = _ax(ax, figsize=(5.5, 5))
    ax.imshow(np.log1p(shown * (100 if normalize else 1)), cmap="Blues")
    for i in range(k):
        for j in range(k):
            txt = f"{shown[i, j]:.2f}" if normalize else str(cm[i, j])
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if i == j else ("crimson" if cm[i, j] else "grey"))
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return ax


# --------------------------------------------------------------------------- point labels
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1))


def _overlap(a, b) -> float:
    """Area shared by two boxes ``(x0, y0, x1, y1)``."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box, frame) -> float:
    """Area of ``box`` outside ``frame``."""
    return (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, frame)


class RepelledLabels(matplotlib.artist.Artist):
    """Text labels of points, placed at draw time where they overlap neither each other, nor the
    points, nor the axes' frame (a greedy search, no extra dependency).

    Made by :func:`label_points`. The placement is computed each time the figure is drawn, in
    display coordinates, after the layout (``tight_layout``, the saving DPI) is known. For each
    point, most crowded first, the label tries 8 directions around it (right first) at growing
    distances (``radii``, in points) and takes the first position that touches nothing already
    placed; where none is free it takes the least-overlapping one. A label moved beyond the second
    radius gets a thin leader line to its point.

    Attributes
    ----------
    texts : list of matplotlib.text.Text
        The labels (positions in display pixels after a draw).
    boxes : list of tuple
        Each label's box ``(x0, y0, x1, y1)`` in display pixels, as placed by the last draw.
    """

    def __init__(self, ax, xy, labels, fontsize: float = 8, colors=None, marker_size: float = 5,
                 radii=(2, 5, 9, 14, 20, 28, 38, 50), pad: float = 1.0):
        from matplotlib.lines import Line2D
        from matplotlib.text import Text
        from matplotlib.transforms import IdentityTransform

        super().__init__()
        self._ax = ax
        self.xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        if len(labels) != len(self.xy):
            raise ValueError(f"{len(labels)} labels for {len(self.xy)} points.")
        colors = list(colors) if colors is not None else ["0.1"] * len(self.xy)
        self.radii, self.pad, self.marker_size = tuple(radii), pad, marker_size
        self.set_figure(ax.figure)
        self.set_zorder(4)
        self.texts = [Text(0, 0, str(label), fontsize=fontsize, color=c, ha="left", va="bottom",
                           transform=IdentityTransform()) for label, c in zip(labels, colors)]
        self.leaders = [Line2D([], [], lw=0.6, color="0.45", transform=IdentityTransform())
                        for _ in self.texts]
        for artist in (*self.texts, *self.leaders):
            artist.set_figure(ax.figure)
        self.boxes: list[tuple] = []

    def place(self, renderer) -> list[tuple]:
        """Compute the label boxes for the axes as they are now (display pixels)."""
        pts = self._ax.transData.transform(self.xy)
        px = renderer.points_to_pixels(1.0)
        frame = tuple(self._ax.bbox.extents)
        pad, mark = self.pad * px, self.marker_size * px / 2
        markers = [(x - mark, y - mark, x + mark, y + mark) for x, y in pts]
        sizes = []
        for t in self.texts:
            t.set_position((0, 0))
            bb = t.get_window_extent(renderer)
            sizes.append((bb.width, bb.height))
        width = np.median([w for w, _ in sizes]) if sizes else 0.0
        dist = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        crowd = (dist < 1.5 * width + 1e-9).sum(axis=1)
        order = sorted(range(len(pts)), key=lambda i: (-crowd[i], i))
        placed: list[tuple] = []
        boxes: list[tuple] = [()] * len(pts)
        for i in order:
            (x, y), (w, h) = pts[i], sizes[i]
            best, best_cost = None, np.inf
            for k, r in enumerate(self.radii):
                r = mark + r * px
                for cx, cy in _DIRECTIONS:
                    d = r * (0.75 if cx and cy else 1.0)
                    x0 = x + cx * d - w / 2 * (1 - cx)
                    y0 = y + cy * d - h / 2 * (1 - cy)
                    box = (x0, y0, x0 + w, y0 + h)
                    grown = (x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad)
                    cost = (sum(_overlap(grown, b) for b in placed)
                            + sum(_overlap(grown, m) for m in markers)
                            + 10 * _outside(box, frame))
                    if cost < best_cost:
                        best, best_cost, best_k = box, cost, k
                    if cost == 0:
                        break
                if best_cost == 0:
                    break
            boxes[i] = best
            placed.append(best)
            self.texts[i].set_position(best[:2])
            if best_k >= 2:                               # far from its point: a leader line
                tx = min(max(x, best[0]), best[2])
                ty = min(max(y, best[1]), best[3])
                self.leaders[i].set_data([x, tx], [y, ty])
            else:
                self.leaders[i].set_data([], [])
        self.boxes = boxes
        return boxes

    def draw(self, renderer):
        if not self.get_visible():
            return
        self.place(renderer)
        for artist in (*self.leaders, *self.texts):
            artist.draw(renderer)
        self.stale = False

    def get_window_extent(self, renderer=None):
        from matplotlib.transforms import Bbox

        renderer = renderer or self.figure.canvas.get_renderer()
        boxes = self.place(renderer)
        return Bbox.union([Bbox.from_extents(*b) for b in boxes]) if boxes else Bbox.null()


def label_points(ax, xy, labels, fontsize: float = 8, colors=None, marker_size: float = 5,
                 **kw) -> RepelledLabels:
    """Label the points ``xy`` (data coordinates, shape ``(n, 2)``) of ``ax`` with ``labels``,
    placed so that no two labels overlap and none covers a point (:class:`RepelledLabels`).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    xy : array-like, shape (n, 2)
    labels : sequence of str
    fontsize : float, default=8
    colors : sequence of colours, optional
        One per label (default: near-black).
    marker_size : float, default=5
        The markers' diameter in points (the area to keep free around each point).

    Returns
    -------
    RepelledLabels
        The artist (added to ``ax``); its ``boxes`` are the placed labels after a draw.
    """
    artist = RepelledLabels(ax, xy, labels, fontsize=fontsize, colors=colors,
                            marker_size=marker_size, **kw)
    ax.add_artist(artist)
    return artist


# --------------------------------------------------------------------------- figures in the book
def describe_figure(fig, text: str):
    """Attach a description to ``fig``: its alt text in the book. Returns ``fig``.

    Say what the figure shows (axes, what is compared, the visible trend), not how it was drawn.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a figure description must be a non-empty string; got {text!r}.")
    fig.course_description = text.strip()
    return fig


def figure_description(fig) -> str:
    """The description of ``fig``: the one attached by :func:`describe_figure`, else one made from
    its title, the titles and axis labels of its panels, and the legend entries."""
    text = getattr(fig, "course_description", None)
    if text:
        return text
    parts = []
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    panels = []
    for ax in fig.get_axes():
        if not ax.get_visible() or not ax.axison and not ax.get_title():
            continue
        bits = [f"“{ax.get_title()}”"] if ax.get_title() else []
        xl, yl = ax.get_xlabel(), ax.get_ylabel()
        if xl or yl:
            bits.append(f"{yl or 'values'} against {xl or 'index'}")
        legend = ax.get_legend()
        if legend is not None:
            names = [t.get_text() for t in legend.get_texts()]
            if names:
                bits.append("lines: " + ", ".join(names))
        if bits:
            panels.append(" — ".join(bits))
    if sup:
        parts.append(sup)
    if panels:
        parts.append(("; ".join(panels)) if len(panels) == 1 else
                     f"{len(panels)} panels: " + "; ".join(panels))
    return ". ".join(parts) if parts else f"a figure with {len(fig.get_axes())} panel(s)"


def use_book_figures() -> None:
    """In IPython: figures at twice the pixel density, with :func:`figure_description` as text.

    Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    from matplotlib.figure import Figure
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")
    plt.rcParams.update({"savefig.facecolor": "white", "figure.facecolor": "white"})  # dark mode
    ip.display_formatter.formatters["text/plain"].for_type(
        Figure, lambda fig, p, cycle: p.text(figure_description(fig)))
