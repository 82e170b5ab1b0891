"""Matplotlib figures drawn straight to PNG bytes (Agg, no pyplot), safe from any thread.

Widgets show the bytes in `ipywidgets.Image`, so a refresh swaps one value and never flickers.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from edgemnist.prep import SHAPE

__all__ = [
    "accuracy_png",
    "grid_png",
    "digit_share_png",
    "gauge_png",
    "scores_png",
    "prepared_png",
    "frame_png",
    "empty_png",
]

_CERTAIN, _UNCERTAIN, _HIGHLIGHT = "#4c78a8", "#f58518", "#e45756"


# Matplotlib's font cache is shared and not thread-safe: the live thread and a person's clicks
# (the kernel thread) draw at the same time, so drawing is serialised.
_DRAW = threading.Lock()


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with _DRAW:
        fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def digit_share_png(shares: Mapping[str, Any], title: str, size: tuple[float, float] = (4.6, 2.6)) -> bytes:
    """Stacked bars: per digit, percent of the window certain vs uncertain."""
    fig = Figure(figsize=size, dpi=80, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(10)
    ax.bar(x, shares["certain"], color=_CERTAIN, label="certain")
    ax.bar(x, shares["uncertain"], bottom=shares["certain"], color=_UNCERTAIN, label="uncertain")
    ax.set_xticks(x)
    ax.set_ylabel("% of window")
    top = max([c + u for c, u in zip(shares["certain"], shares["uncertain"], strict=True)] + [10.0])
    ax.set_ylim(0, min(100.0, top * 1.2))
    ax.set_title(f"{title} ({shares['total']} images)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def accuracy_png(
    series: Sequence[Mapping[str, Any]],
    title: str,
    size: tuple[float, float] = (4.6, 2.2),
    recent: Mapping[str, Any] | None = None,
) -> bytes:
    """Live accuracy per metrics window, with a dashed marker where the model version changed.

    `recent` (`_data.recent_accuracy`) is the camera's one live accuracy: the title says it, with
    the number of windows it covers, and a dotted line shows it over the windows it covers.
    """
    fig = Figure(figsize=size, dpi=80, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(series))
    y = [100.0 * p["accuracy"] for p in series]
    ax.plot(x, y, marker=".", color=_CERTAIN, lw=1.2)
    for k in range(1, len(series)):
        if series[k]["model_version"] != series[k - 1]["model_version"]:
            ax.axvline(k - 0.5, color=_HIGHLIGHT, ls="--", lw=1)
            ax.text(k - 0.4, 2, str(series[k]["model_version"] or "?")[-8:], color=_HIGHLIGHT, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, max(1, len(series)) - 0.5)
    ax.set_ylabel("accuracy %")
    ax.set_xlabel("metrics window")
    if recent is not None:
        n = int(recent["windows"])
        ax.hlines(
            100.0 * recent["accuracy"], len(series) - n - 0.2, len(series) - 0.8, colors=_UNCERTAIN, ls=":"
        )
        said = f" {100.0 * recent['accuracy']:.1f} % over the last {n} windows"
    else:
        said = ": no labelled window yet"
    ax.set_title(f"{title}: live accuracy{said}", fontsize=9)
    ax.tick_params(labelsize=7)
    return _png(fig)


def gauge_png(value: float | None, maximum: float, label: str = "images/s") -> bytes:
    """A half-dial gauge; the scale grows to the next round number above the value."""
    v = float(value or 0.0)
    top = max(maximum, v)
    top = 10 ** math.ceil(math.log10(top)) if top > 0 else 1.0
    top = top / 2 if v <= top / 2 else top
    fig = Figure(figsize=(2.2, 1.4), dpi=80)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-0.35, 1.1)
    ax.axis("off")
    t = np.linspace(math.pi, 0, 100)
    ax.plot(np.cos(t), np.sin(t), color="#ddd", lw=10, solid_capstyle="butt")
    frac = min(1.0, v / top) if top else 0.0
    tv = np.linspace(math.pi, math.pi * (1 - frac), 100)
    ax.plot(np.cos(tv), np.sin(tv), color=_CERTAIN, lw=10, solid_capstyle="butt")
    ax.text(0, 0.15, f"{v:.1f}", ha="center", fontsize=14, weight="bold")
    ax.text(0, -0.22, f"{label} (max {top:g})", ha="center", fontsize=7)
    return _png(fig)


def scores_png(predictions: Sequence[float], predicted: int, size: tuple[float, float] = (3.2, 1.8)) -> bytes:
    """The ten scores, the predicted digit highlighted."""
    fig = Figure(figsize=size, dpi=80, layout="constrained")
    ax = fig.add_subplot()
    colors = [_HIGHLIGHT if d == predicted else _CERTAIN for d in range(10)]
    ax.bar(range(10), predictions, color=colors)
    ax.set_xticks(range(10))
    ax.set_ylim(0, 1)
    ax.set_title(f"scores: predicted {predicted} ({predictions[predicted]:.2f})", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


def _scaled(img: Image.Image, side: int) -> bytes:
    buf = io.BytesIO()
    img.resize((side, side), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def prepared_png(prepared: Sequence[Sequence[int]] | np.ndarray, side: int = 112) -> bytes:
    """The 28x28 model input as a PNG, ink white on black as the model sees it."""
    arr = np.clip(np.asarray(prepared, dtype=np.int64), 0, 255).astype(np.uint8).reshape(SHAPE)
    return _scaled(Image.fromarray(arr, mode="L"), side)


def frame_png(png: bytes, side: int = 112) -> bytes:
    """The camera frame, enlarged without smoothing."""
    with Image.open(io.BytesIO(png)) as img:
        return _scaled(img.convert("RGB"), side)


def empty_png(side: int = 8) -> bytes:
    """A blank placeholder, so an Image widget has something valid to show."""
    return _scaled(Image.new("L", (1, 1), 255), side)


def grid_png(rows: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """Frames above their prepared images, titled with the prediction (and the truth when known)."""
    n = max(1, len(rows))
    fig = Figure(figsize=(1.2 * n, 2.7), dpi=80, layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for k, row in enumerate(rows):
        with Image.open(io.BytesIO(row["frame"])) as img:
            axes[0][k].imshow(np.asarray(img.convert("L")), cmap="gray", vmin=0, vmax=255)
        axes[1][k].imshow(np.asarray(row["prepared"]), cmap="gray", vmin=0, vmax=255)
        truth = f" (true {row['true_class']})" if row.get("true_class") is not None else ""
        axes[0][k].set_title(f"{row['predicted']} {row['probability']:.2f}{truth}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _png(fig)
