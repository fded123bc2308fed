"""Where the labels of a front's points go, so that none overlaps another or leaves the axes.

matplotlib: each label is measured with the figure's renderer and tried at growing distances in
eight directions; the nearest free spot that covers the fewest markers wins, and a far one gets a
leader line. plotly: text is laid out in the browser, where it cannot be measured from here, so
labels are placed on an estimate of the plot area and of their size, on one of four sides, and a
label that fits nowhere is left to the hover text. Both take the points most wanted first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

__all__ = ["LABEL_SIZE", "PLOTLY_AREA", "PLOTLY_CHAR", "PLOTLY_HEIGHT", "SIDES", "Labelled",
           "log_ticks", "place_labels", "plotly_places"]


class Labelled(Protocol):
    """What a label is placed for: a point with its data coordinates and text."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def status(self) -> str: ...  # front, undecided or dominated
    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...


LABEL_SIZE = 7.0  # points
_DISTANCES = (3.0, 8.0, 14.0, 22.0, 32.0, 46.0)
_DIRECTIONS = ((1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_LEADER_FROM = 14.0  # points: labels at least this far get a leader line
_MARK_PX = 5.0  # half the side of the box a point's marker occupies, in pixels at 100 dpi


def _offset(direction: tuple[int, int], distance: float) -> tuple[float, float, str, str]:
    dx, dy = direction
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    diagonal = 0.7 if dx and dy else 1.0
    return dx * distance * diagonal, dy * distance * diagonal, ha, va


_CANDIDATES = [_offset(d, r) for r in _DISTANCES for d in _DIRECTIONS]


def _inside(box: Bbox, frame: Bbox) -> bool:
    return (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
            and box.y1 <= frame.y1)


def _apart(box: Bbox, others: Sequence[Bbox], gap: float) -> bool:
    return all(box.x1 + gap < o.x0 or o.x1 + gap < box.x0 or box.y1 + gap < o.y0
               or o.y1 + gap < box.y0 for o in others)


def _move(text: Any, candidate: tuple[float, float, str, str]
          ) -> tuple[float, float, str, str]:
    """Put an annotation's text at ``candidate``: (dx, dy) points, alignments."""
    dx, dy, ha, va = candidate
    text.xyann = (dx, dy)
    text.set_horizontalalignment(ha)
    text.set_verticalalignment(va)
    return candidate


def place_labels(fig: Figure, ax: Axes, chosen: Sequence[tuple[Labelled, str | None]],
                  points: Sequence[Labelled]) -> int:
    """Label ``chosen`` (points and their text colour) inside ``ax`` without two labels
    overlapping, covering as few of ``points`` as it can; returns how many found no room."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    scale = fig.dpi / 100.0
    frame = ax.get_window_extent(renderer).padded(-2 * scale)
    marks = [Bbox.from_bounds(x - _MARK_PX * scale, y - _MARK_PX * scale,
                              2 * _MARK_PX * scale, 2 * _MARK_PX * scale)
             for x, y in ax.transData.transform([(p.x, p.y) for p in points])]
    placed: list[Bbox] = []
    left_out = 0
    for p, color in chosen:
        shade = color or ("black" if p.status == "front" else "#555555")
        text = ax.annotate(p.label, (p.x, p.y), xytext=(0, 0), textcoords="offset points",
                           fontsize=LABEL_SIZE, color=shade,
                           bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                 "edgecolor": "none", "alpha": 0.7},
                           annotation_clip=False, zorder=7, gid="point-label")
        best: tuple[int, int, Bbox] | None = None  # (score, candidate, box)
        for index, candidate in enumerate(_CANDIDATES):
            _move(text, candidate)
            box = text.get_window_extent(renderer)
            if not _inside(box, frame) or not _apart(box, placed, scale):
                continue
            # Near and over a marker or two beats far away: a marker costs two rings.
            covered = sum(1 for m in marks if not _apart(box, [m], 0.0))
            score = 2 * covered + index // len(_DIRECTIONS)
            if best is None or score < best[0]:
                best = (score, index, box)
            if covered == 0:
                break
        if best is None:
            text.remove()
            left_out += 1
            continue
        dx, dy, _, _ = _move(text, _CANDIDATES[best[1]])
        placed.append(best[2])
        if math.hypot(dx, dy) >= _LEADER_FROM * 0.7:
            ax.annotate("", (p.x, p.y), xytext=(dx, dy), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6,
                                    "shrinkA": 0, "shrinkB": 3},
                        annotation_clip=False, zorder=6, gid="label-leader")
    return left_out


# ---- plotly ----

# Plotly lays text out in the browser, where it cannot be measured from here: labels are placed
# on an estimate of the plot area and of their size (the dashboard draws the figure about this
# big), trying four sides of each point; a label that fits nowhere is left to the hover text.
PLOTLY_HEIGHT = 450  # px of the whole figure: optuna-dashboard's card for a stored figure
PLOTLY_AREA = (250.0, 260.0)  # px of the axes there, beside the legend (560 px wide)
PLOTLY_CHAR = (6.0, 13.0)  # px per character of a size-10 label, and its line height
SIDES = {"top center": (0.0, 1.0), "bottom center": (0.0, -1.0),
          "middle right": (1.0, 0.0), "middle left": (-1.0, 0.0)}


def plotly_places(points: Sequence[Labelled], limits: tuple[tuple[float, float],
                   tuple[float, float]], log_x: bool) -> dict[str, str]:
    """Where each of ``points`` (most wanted first) gets its label: a textposition, or no
    entry when every side would overlap a label already placed or leave the axes."""
    (x_lo, x_hi), (y_lo, y_hi) = limits
    width, height = PLOTLY_AREA

    def px(p: Labelled) -> tuple[float, float]:
        if log_x:
            fx = (math.log(p.x) - math.log(x_lo)) / max(math.log(x_hi) - math.log(x_lo), 1e-12)
        else:
            fx = (p.x - x_lo) / max(x_hi - x_lo, 1e-12)
        return fx * width, (p.y - y_lo) / max(y_hi - y_lo, 1e-12) * height

    placed: list[tuple[float, float, float, float]] = []
    out: dict[str, str] = {}
    for p in points:
        cx, cy = px(p)
        w, h = PLOTLY_CHAR[0] * len(p.label), PLOTLY_CHAR[1]
        for side, (dx, dy) in SIDES.items():
            x0 = cx - w / 2 + dx * (w / 2 + 6)
            y0 = cy - h / 2 + dy * (h / 2 + 5)
            box = (x0, y0, x0 + w, y0 + h)
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3]
                                  and b[1] < box[3] for b in placed):
                placed.append(box)
                out[p.key] = side
                break
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round values inside [lo, hi], the densest set whose labels do not touch on the estimated
    axis width: 1-9, else 1-2-3-5, 1-2-5, 1-3 or powers of ten per decade (plotly's own log
    ticks crowd a narrow axis with 40,000 50,000 60,000)."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    span = max(math.log(hi / lo), 1e-12)
    inside: list[float] = []
    for steps in ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        inside = [m * 10.0 ** e for e in decades for m in steps if lo <= m * 10.0 ** e <= hi]
        gaps = [math.log(b / a) / span * PLOTLY_AREA[0] for a, b in itertools.pairwise(inside)]
        widest = max((len(f"{t:,.0f}") for t in inside), default=0) * PLOTLY_CHAR[0] * 1.2
        if all(g >= widest + 8 for g in gaps):
            break
    return inside if len(inside) >= 2 else [lo, hi]
