"""The front drawn with matplotlib: a study's front (over configurations, or Optuna's observed
one over single trials) and several studies compared, as figures and PNG files; the figure and
file helpers the history plot shares. What is drawn: :mod:`studies.frontpoints`."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies import frontpoints as fp
from studies.catalog import Front
from studies.errors import ExploreError
from studies.labels import place_labels
from studies.record import StudyMeta
from studies.replicates import ConfiguredFront

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MARKERS", "SUBTITLE_WIDTH", "compare_figure", "configured_png", "count_text",
           "front_matplotlib", "front_png", "new_figure", "observed_matplotlib", "save_png"]

MARKERS = {"external": "o", "self": "^"}
SUBTITLE_WIDTH = 100  # characters a subtitle line may have: the axes' width at 8.5 points


def new_figure(size: tuple[float, float] = (8.0, 5.5)) -> Figure:
    """A constrained-layout figure with an Agg canvas (a renderer to measure labels with)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure labels with
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """``fig`` into ``path`` through a temporary file beside it; one line if it cannot."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExploreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def count_text(value: float) -> str:
    """``2,000`` for counts and rates, ``12.5`` below a thousand."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _marker(kind: str) -> str:
    return MARKERS.get(kind, "s")


def _scatter(ax: Axes, points: Sequence[fp.Point], color: str | None) -> None:
    """Markers by status: front filled, undecided hollow, dominated grey (or faint ``color``)."""
    for status in ("dominated", "undecided", "front"):
        for marker in sorted({_marker(p.kind) for p in points}):
            pts = [p for p in points if p.status == status and _marker(p.kind) == marker]
            if not pts:
                continue
            xs, ys = [p.x for p in pts], [p.y for p in pts]
            colours = [color or fp.COLORS[p.color] for p in pts]
            if status == "front":
                ax.scatter(xs, ys, s=56, marker=marker, c=colours, edgecolors="black",
                           linewidths=0.6, zorder=5)
            elif status == "undecided":
                ax.scatter(xs, ys, s=42, marker=marker, facecolors="white", edgecolors=colours,
                           linewidths=1.3, zorder=4)
            else:
                ax.scatter(xs, ys, s=20, marker=marker, color=color or fp.GREY,
                           alpha=0.35 if color else 0.8, linewidths=0, zorder=3)


def _error_bars(ax: Axes, points: Sequence[fp.Point], color: str | None) -> None:
    shades = {"front": "#333333", "undecided": "#808080", "dominated": "#cfcfcf"}
    for status, shade in shades.items():
        pts = [p for p in points if p.status == status and p.x_interval and p.y_interval]
        if not pts:
            continue
        xerr = [[p.x - p.x_interval[0] for p in pts if p.x_interval],
                [p.x_interval[1] - p.x for p in pts if p.x_interval]]
        yerr = [[p.y - p.y_interval[0] for p in pts if p.y_interval],
                [p.y_interval[1] - p.y for p in pts if p.y_interval]]
        faint = status == "dominated"
        alpha = 0.3 if faint else 0.9 if status == "front" or color is None else 0.45
        ax.errorbar([p.x for p in pts], [p.y for p in pts], xerr=xerr, yerr=yerr, fmt="none",
                    ecolor=color or shade, elinewidth=0.6 if faint else 0.8,
                    capsize=0 if faint else 2, alpha=alpha, zorder=2, label="_intervals")


def _draw_view(ax: Axes, view: fp.View, color: str | None = None) -> None:
    """One study's points, bars, joined front, noisy rings and runs on ``ax`` (no labels)."""
    if view.runs:
        ax.scatter([r.x for r in view.runs], [r.y for r in view.runs], s=9,
                   color=color or "#555555", alpha=0.22, linewidths=0, zorder=1)
    _error_bars(ax, view.points, color)
    front = view.front
    if front:
        ax.plot([p.x for p in front], [p.y for p in front], "-", color=color or "#444444",
                lw=1.2, zorder=4)
    _scatter(ax, view.points, color)
    noisy = [p for p in view.points if p.noisy]
    if noisy:
        ax.scatter([p.x for p in noisy], [p.y for p in noisy], s=110, facecolors="none",
                   edgecolors=fp.NOISY, linewidths=0.8, zorder=6)


def _throughput_axis(ax: Axes, lo: float, hi: float, log: bool) -> None:
    """Throughput on x over [lo, hi] (padded), in plain numbers with thousands separators."""
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    formatter = FuncFormatter(lambda v, _: count_text(v))
    if log:
        ax.set_xscale("log")
        pad = max((hi / lo) ** 0.06, 1.04)
        ax.set_xlim(lo / pad, hi * pad)
        if hi / lo > 4:
            # 1-2-5 ticks in plain numbers: "2,000" reads better than "2×10³".
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        else:  # within a factor of 4 the decades have no tick: linear nice numbers instead
            ticks = MaxNLocator(nbins=6).tick_values(lo / pad, hi * pad)
            ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if t > 0]))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        pad = (hi - lo) * 0.06 or max(abs(hi) * 0.05, 1.0)
        ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("throughput (images/s, higher is better)")


def _accuracy_axis(ax: Axes, lo: float, hi: float) -> None:
    pad = (hi - lo) * 0.08 or 0.01
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel("accuracy (higher is better)")
    ax.grid(True, alpha=0.3)


def _mpl_handle(key: fp.LegendKey) -> Any:
    from matplotlib.lines import Line2D

    if key.bar:
        return Line2D([], [], color=key.edge, lw=0.8, marker="|", markersize=6, label=key.text)
    if not key.marker:
        return Line2D([], [], ls="none", label=key.text)
    return Line2D([], [], ls="-" if key.line else "none", lw=1.2, marker=key.marker,
                  markersize=key.size, color=key.edge, markerfacecolor=key.face,
                  markeredgecolor=key.edge, label=key.text)


def _freeze(fig: Figure) -> None:
    """Lay the figure out once, then keep that layout: labels are placed in its coordinates."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def _plot_views(views: Sequence[fp.View], colors: Sequence[str | None], title: str,
                subtitle: str, labels: bool = True) -> Figure:
    """The figure of ``views`` (one per study), fp.labelled when ``labels``."""
    fig = new_figure((10.0, 6.0))
    ax = fig.add_subplot()
    for view, color in zip(views, colors, strict=True):
        _draw_view(ax, view, color)
    (x_lo, x_hi), (y_lo, y_hi) = fp.axis_limits(views)
    log = not all(v.observed for v in views) or x_hi / x_lo > 10
    _throughput_axis(ax, x_lo, x_hi, log)
    _accuracy_axis(ax, y_lo, y_hi)
    fig.suptitle(title)
    subtitle = "\n".join(textwrap.fill(line, SUBTITLE_WIDTH) for line in subtitle.split("\n"))
    ax.set_title(subtitle, fontsize=8.5, loc="left", color="#333333")
    fig.legend(handles=[_mpl_handle(k) for k in fp.legend_keys(views, colors)],
               loc="outside right upper", fontsize=8)
    _freeze(fig)
    if labels:
        points = [p for v in views for p in v.points]
        # Several studies: their fronts only, each label in its study's colour.
        others = fp.MAX_OTHER_LABELS if len(views) == 1 else 0
        chosen = [(p, color) for v, color in zip(views, colors, strict=True)
                  for p in fp.labelled(v, others)]
        left_out = place_labels(fig, ax, chosen, points)
        if left_out:
            ax.set_title(f"{subtitle}; {left_out} label(s) left out for room", fontsize=8.5,
                         loc="left", color="#333333")
    return fig


def front_matplotlib(trials: Iterable[Any], meta: StudyMeta | None = None,
                     confidence: float | None = None, configured: ConfiguredFront | None = None,
                     title: str | None = None) -> Figure:
    """The front over configurations with error bars, as a matplotlib figure.

    Args:
        trials: the study's trials (:class:`TrialRecord` or Optuna ``FrozenTrial``); only
            COMPLETE ones count.
        meta: the study (its name titles the plot; its settings give the confidence and seed).
        confidence: interval level; ``None``: the study's stored level (0.95 without one).
        configured: the front already computed from ``trials`` (skips computing it again).
        title: instead of ``NAME: accuracy against throughput``.
    """
    cf = fp.configured_of(trials, meta, confidence, configured)
    name = meta.name if meta is not None else "study"
    view = fp.configured_view(cf, name)
    return _plot_views([view], [None], title or f"{name}: accuracy against throughput",
                       view.subtitle)


def observed_matplotlib(front: Front, title: str | None = None) -> Figure:
    """Optuna's observed front over single trials, as a matplotlib figure."""
    view = fp.observed_view(front)
    return _plot_views([view], [None], title or f"{front.study.name}: accuracy against "
                       "throughput, every trial", view.subtitle)


def front_png(front: Front, path: Path, title: str | None = None) -> Path:
    """Optuna's observed front over single trials (every COMPLETE trial of ``front``)."""
    save_png(observed_matplotlib(front, title), path)
    return path


def configured_png(front: Front, path: Path, title: str | None = None,
                   configured: ConfiguredFront | None = None) -> Path:
    """The front over configurations with error bars (``front`` with its dominated trials)."""
    save_png(front_matplotlib(front.trials, front.study, configured=configured, title=title), path)
    return path


def compare_figure(fronts: Sequence[Front],
                   configured: Sequence[ConfiguredFront] | None = None) -> Figure:
    """Several studies' fronts over configurations on one matplotlib figure, one colour per
    study (labels while there are at most two studies)."""
    views = fp.compare_views(fronts, configured)
    colors = fp.study_colors(len(views))
    return _plot_views(views, colors, fp.compare_title(fronts),
                       "filled and joined: each study's plausible front; hollow: undecided; "
                       "faint: confidently dominated\nHV: hypervolume of the plausible front "
                       "(configuration means) in accuracy × img/s above (0, 0)",
                       labels=len(views) <= 2)

