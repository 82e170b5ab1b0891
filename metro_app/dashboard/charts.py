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
from PIL import Image, ImageDraw, ImageFont

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
    "ShareChart",
    "AccuracyChart",
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
    fig = Figure(figsize=size, dpi=80)  # fixed margins: a constrained layout costs more than the drawing
    fig.subplots_adjust(left=0.15, right=0.98, top=0.9, bottom=0.1)
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
    """Live accuracy per metrics window, with a dashed marker where the model version changed, and
    while a candidate scores in shadow, the share of images both models agreed on.

    `recent` (`_data.recent_accuracy`) is the camera's one live accuracy: the title says it, with
    the number of windows it covers, and a dotted line shows it over the windows it covers.
    """
    fig = Figure(figsize=size, dpi=80)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.88, bottom=0.2)
    ax = fig.add_subplot()
    x = np.arange(len(series))
    y = [np.nan if p.get("accuracy") is None else 100.0 * p["accuracy"] for p in series]
    ax.plot(x, y, marker=".", color=_CERTAIN, lw=1.2, label="live accuracy")
    agree = [np.nan if p.get("agreement") is None else 100.0 * p["agreement"] for p in series]
    shown = [v for v in agree if not np.isnan(v)]
    if shown:
        ax.plot(x, agree, marker=".", color=_HIGHLIGHT, lw=1.0, ls=":", label="agrees with shadow")
        ax.legend(fontsize=7, loc="lower left")
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
        said = f" {100.0 * recent['accuracy']:.1f} % over the last {n} labelled windows"
    else:
        said = ": no labelled window yet"
    if shown:
        said += f"; agrees with shadow {shown[-1]:.1f} %"
    ax.set_title(f"{title}: live accuracy{said}", fontsize=9)
    ax.tick_params(labelsize=7)
    return _png(fig)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one size only
        return ImageFont.load_default()


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _save(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def gauge_png(value: float | None, maximum: float, label: str = "images/s") -> bytes:
    """A half-dial gauge; the scale grows to the next round number above the value.

    Drawn with Pillow (a few milliseconds): it changes with every window, so it must be cheap.
    """
    v = float(value or 0.0)
    top = max(maximum, v)
    top = 10 ** math.ceil(math.log10(top)) if top > 0 else 1.0
    top = top / 2 if v <= top / 2 else top
    frac = min(1.0, v / top) if top else 0.0
    img = Image.new("RGB", (176, 112), "white")
    draw = ImageDraw.Draw(img)
    box = (18, 8, 158, 148)
    draw.arc(box, 180, 360, fill=(221, 221, 221), width=14)
    if frac > 0:
        draw.arc(box, 180, 180 + 180 * frac, fill=_rgb(_CERTAIN), width=14)
    draw.text((88, 66), f"{v:.1f}", fill="black", font=_font(20), anchor="mm")
    draw.text((88, 100), f"{label} (max {top:g})", fill="black", font=_font(10), anchor="mm")
    return _save(img)


def scores_png(predictions: Sequence[float], predicted: int, size: tuple[int, int] = (256, 144)) -> bytes:
    """The ten scores as bars, the predicted digit highlighted (Pillow: a new image every refresh)."""
    w, h = size
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    left, bottom, top, right = 28, h - 18, 20, w - 6
    draw.line((left, top, left, bottom), fill="black")
    draw.line((left, bottom, right, bottom), fill="black")
    for tick in (0.0, 0.5, 1.0):
        y = bottom - tick * (bottom - top)
        draw.text((left - 4, y), f"{tick:g}", fill="black", font=_font(9), anchor="rm")
    step = (right - left) / 10
    for d in range(10):
        p = max(0.0, min(1.0, float(predictions[d])))
        x0 = left + d * step + step * 0.15
        colour = _rgb(_HIGHLIGHT if d == predicted else _CERTAIN)
        y0 = bottom - p * (bottom - top)
        if y0 < bottom - 1:  # a bar at least a pixel high
            draw.rectangle((x0, y0, x0 + step * 0.7, bottom - 1), fill=colour)
        draw.text((x0 + step * 0.35, bottom + 8), str(d), fill="black", font=_font(9), anchor="mm")
    title = f"scores: predicted {predicted} ({float(predictions[predicted]):.2f})"
    draw.text((w / 2, 9), title, fill="black", font=_font(11), anchor="mm")
    return _save(img)


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


class ShareChart:
    """`digit_share_png` for a live view: one figure kept and its bars moved, so a new window costs
    only the drawing (about a third of building the figure again)."""

    def __init__(self, size: tuple[float, float] = (4.6, 2.6)) -> None:
        self.fig = Figure(figsize=size, dpi=80)
        self.fig.subplots_adjust(left=0.15, right=0.98, top=0.9, bottom=0.1)
        self.ax = self.fig.add_subplot()
        x = np.arange(10)
        self.certain = self.ax.bar(x, [0.0] * 10, color=_CERTAIN, label="certain")
        self.uncertain = self.ax.bar(x, [0.0] * 10, bottom=[0.0] * 10, color=_UNCERTAIN, label="uncertain")
        self.ax.set_xticks(x)
        self.ax.set_ylabel("% of window")
        self.ax.legend(fontsize=7, loc="upper right")

    def png(self, shares: Mapping[str, Any], title: str) -> bytes:
        for bar, top_bar, c, u in zip(
            self.certain, self.uncertain, shares["certain"], shares["uncertain"], strict=True
        ):
            bar.set_height(c)
            top_bar.set_y(c)
            top_bar.set_height(u)
        top = max([c + u for c, u in zip(shares["certain"], shares["uncertain"], strict=True)] + [10.0])
        self.ax.set_ylim(0, min(100.0, top * 1.2))
        self.ax.set_title(f"{title} ({shares['total']} images)", fontsize=9)
        return _png(self.fig)


class AccuracyChart:
    """`accuracy_png` for a live view: one figure kept, its line and markers replaced per window."""

    def __init__(self, size: tuple[float, float] = (4.6, 2.2)) -> None:
        self.fig = Figure(figsize=size, dpi=80)
        self.fig.subplots_adjust(left=0.12, right=0.98, top=0.88, bottom=0.2)
        self.ax = self.fig.add_subplot()
        (self.line,) = self.ax.plot([], [], marker=".", color=_CERTAIN, lw=1.2, label="live accuracy")
        self.ax.set_ylim(0, 100)
        self.ax.set_ylabel("accuracy %")
        self.ax.set_xlabel("metrics window")
        self.ax.tick_params(labelsize=7)
        self._marks: list[Any] = []

    def png(self, series: Sequence[Mapping[str, Any]], title: str, recent: Mapping[str, Any] | None) -> bytes:
        for artist in self._marks:
            artist.remove()
        self._marks = []
        x = np.arange(len(series))
        y = [np.nan if p.get("accuracy") is None else 100.0 * p["accuracy"] for p in series]
        self.line.set_data(x, y)
        agree = [np.nan if p.get("agreement") is None else 100.0 * p["agreement"] for p in series]
        shown = [v for v in agree if not np.isnan(v)]
        if shown:  # a candidate scores in shadow: how often it agreed with the serving model
            (line,) = self.ax.plot(
                x, agree, marker=".", color=_HIGHLIGHT, lw=1.0, ls=":", label="agrees with shadow"
            )
            self._marks += [line, self.ax.legend(handles=[self.line, line], fontsize=7, loc="lower left")]
        for k in range(1, len(series)):
            if series[k]["model_version"] != series[k - 1]["model_version"]:
                self._marks.append(self.ax.axvline(k - 0.5, color=_HIGHLIGHT, ls="--", lw=1))
                self._marks.append(
                    self.ax.text(
                        k - 0.4, 2, str(series[k]["model_version"] or "?")[-8:], color=_HIGHLIGHT, fontsize=7
                    )
                )
        if recent is not None:
            n = int(recent["windows"])
            level = 100.0 * recent["accuracy"]
            self._marks.append(
                self.ax.hlines(level, len(series) - n - 0.2, len(series) - 0.8, colors=_UNCERTAIN, ls=":")
            )
            said = f" {level:.1f} % over the last {n} windows"
        else:
            said = ": no labelled window yet"
        if shown:
            said += f"; agrees with shadow {shown[-1]:.1f} %"
        self.ax.set_xlim(-0.5, max(1, len(series)) - 0.5)
        self.ax.set_title(f"{title}: live accuracy{said}", fontsize=9)
        return _png(self.fig)
