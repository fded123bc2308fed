"""Plots of accuracy against throughput: PNG with matplotlib, HTML with plotly (optional).

Two views of a study share one drawing:

- the front over *configurations* (``explore study plot``, :func:`configured_png`,
  :func:`front_figure`): each configuration one point at its mean accuracy and geometric-mean
  throughput, its 95% interval as error bars on both axes, throughput on a log axis. The plausible
  front (P(Pareto-optimal) >= 0.5) is filled and joined, undecided configurations are hollow, the
  confidently dominated grey. While no configuration has two runs the noise is unknown: no bars,
  and the subtitle and the legend say so. Each run (trial) is a faint dot behind its
  configuration when there are replicates.
- the observed front over single trials (:func:`front_png`, Optuna's ``best_trials``): the
  Pareto-optimal trials filled and joined, the others grey.

In both, colour is the variant (double-normalized EA, softmax EA, self-attention), the marker the
attention kind (circle external, triangle self), and a red ring marks a throughput measurement
flagged noisy (spread > 10%). Labels (``#5 S32/h8/double``: the first trial, the design, ``×3``
runs) go on the front and on at most :data:`MAX_OTHER_LABELS` others, each where it stays inside
the axes and overlaps no other label; one that finds no room is left out and the subtitle says
how many. Throughput and hypervolume axes print thousands separators.
"""

from __future__ import annotations

import datetime as dt
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.catalog import Front, pareto_front
from studies.errors import ExploreError, UsageError
from studies.labels import PLOTLY_HEIGHT, log_ticks, place_labels, plotly_places
from studies.record import ATTR_THROUGHPUT, StudyMeta, TrialRecord, design
from studies.replicates import ConfiguredFront, configured_front, front_settings, front_tolerance
from studies.storage import parse_storage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from studies.history import History

__all__ = ["PlotlyMissing", "check_out", "compare_figure", "compare_plot", "compare_plotly",
           "confident_history_figure", "configured_html", "configured_png", "front_figure",
           "front_html", "front_matplotlib", "front_png", "history_figure", "history_png",
           "is_noisy", "label", "observed_matplotlib", "plot_study", "trial_label", "variant"]

GREY = "#b3b3b3"
NOISY = "#d62728"
COLORS = {"double": "#1f77b4", "softmax": "#ff7f0e", "self": "#2ca02c", "other": "#9467bd"}
VARIANT_NAMES = {"double": "EA, double normalization", "softmax": "EA, softmax",
                 "self": "self-attention", "other": "EA, other normalization"}
MARKERS = {"external": "o", "self": "^"}
PLOTLY_SYMBOLS = {"external": "circle", "self": "triangle-up"}
STUDY_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                "#17becf"]
MAX_OTHER_LABELS = 3  # labels beyond the front: the most promising of the others
NOISY_SPREAD = 0.10  # a measurement's spread above this is noisy (as explore.engine.measure)
SUBTITLE_WIDTH = 100  # characters a subtitle line may have: the axes' width at 8.5 points
_NOISY_TEXT = f"noisy throughput (spread > {NOISY_SPREAD:.0%})"
# Where a label may go, in points from its point, best first: close in the eight directions,
# then farther out (joined to the point by a thin leader line).
def check_out(path: Path, suffixes: Sequence[str]) -> str:
    """The output's format (its suffix); a clear error for another suffix or a missing folder."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise UsageError(f"--out {path}: give a file ending in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist")
    return suffix


# ---- what a point is ---------------------------------------------------------------------------


def config(t: TrialRecord) -> dict[str, Any]:
    """The trial's model config (stored user attr) overlaid with its searched params."""
    stored = t.user_attrs.get("model_config")
    return {**(stored if isinstance(stored, dict) else {}), **t.params}


def variant(t: TrialRecord) -> tuple[str, str]:
    """``(attention kind, colour key)``: ("external", "double"), ("self", "self"), …"""
    cfg = config(t)
    kind = str(cfg.get("attention", "external"))
    if kind == "self":
        return "self", "self"
    norm = str(cfg.get("norm", ""))
    return kind, norm if norm in COLORS else "other"


def label(t: TrialRecord) -> str:
    """The design in a few characters: ``S64/h4/double``, ``SA/h4``."""
    return design(config(t))


def trial_label(t: TrialRecord) -> str:
    """``#5 S32/h8/double``: the trial number and its design."""
    return f"#{t.number} {label(t)}"


def is_noisy(t: TrialRecord) -> bool:
    """Whether the trial's throughput measurement was flagged noisy (or spread above 10%)."""
    figure = t.user_attrs.get(ATTR_THROUGHPUT)
    if not isinstance(figure, dict):
        return False
    if "noisy" in figure:
        return bool(figure["noisy"])
    spread = figure.get("spread")
    return isinstance(spread, (int, float)) and spread > NOISY_SPREAD


def _usable(t: TrialRecord) -> bool:
    """COMPLETE with a finite accuracy and a positive finite throughput."""
    return (t.state == "COMPLETE" and t.values is not None and len(t.values) >= 2
            and math.isfinite(t.values[0]) and math.isfinite(t.values[1]) and t.values[1] > 0)


@dataclass(frozen=True)
class _Point:
    """One marker: a configuration (its means) or a trial."""

    key: str
    label: str
    status: str  # front, undecided or dominated
    kind: str  # attention kind: external, self
    color: str  # colour key of COLORS
    x: float  # throughput
    y: float  # accuracy
    x_interval: tuple[float, float] | None
    y_interval: tuple[float, float] | None
    noisy: bool
    rank: float  # lower: more worth a label among the non-front points
    hover: str


@dataclass(frozen=True)
class _Run:
    """One replicate drawn faintly behind its configuration."""

    x: float
    y: float
    hover: str


@dataclass(frozen=True)
class _View:
    """Everything one study contributes to a plot."""

    name: str
    points: list[_Point]
    runs: list[_Run]  # empty when every configuration has one run (they would coincide)
    observed: bool  # single trials (True) or configurations
    known: bool  # intervals exist (the noise is known)
    subtitle: str
    hypervolume: float | None = None  # of the front (configuration means), accuracy × img/s
    confidence: float = 0.95  # level of the intervals

    @property
    def front(self) -> list[_Point]:
        return sorted((p for p in self.points if p.status == "front"), key=lambda p: p.x)


def _params_text(params: dict[str, Any]) -> str:
    return "<br>".join(f"{k}={v}" for k, v in sorted(params.items()))


def _hover(t: TrialRecord) -> str:
    assert t.values is not None
    noisy = "<br>throughput flagged noisy" if is_noisy(t) else ""
    return (f"trial {t.number}: {label(t)}<br>accuracy {t.values[0]:.4f}<br>"
            f"{t.values[1]:,.0f} img/s{noisy}<br>{_params_text(t.params)}")


def _dominators(values: Sequence[tuple[float, float]]) -> list[int]:
    """How many points beat each point in both objectives (0 on the front)."""
    return [sum(1 for b in values if b[0] >= a[0] and b[1] >= a[1] and b != a) for a in values]


def _observed_view(front: Front) -> _View:
    trials = [t for t in front.trials if _usable(t)]
    values = [(t.values[0], t.values[1]) for t in trials if t.values is not None]
    beaten = _dominators(values)
    points = []
    for t, (acc, thr), n in zip(trials, values, beaten, strict=True):
        kind, color = variant(t)
        points.append(_Point(str(t.number), trial_label(t),
                             "front" if t.number in front.pareto else "dominated", kind, color,
                             thr, acc, None, None, is_noisy(t),
                             n - acc,  # the least beaten first; then the most accurate
                             _hover(t)))
    subtitle = (f"{len(front.pareto)} Pareto-optimal of {len(trials)} trials, each a single run "
                "(Optuna's observed front)")
    return _View(front.study.name, points, [], True, False, subtitle)


def _interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


def _status(cf: ConfiguredFront, key: str) -> str:
    if key in cf.front.plausible:
        return "front"
    return "dominated" if key in cf.front.dominated else "undecided"


def _config_hover(cf: ConfiguredFront, key: str, text: str) -> str:
    e = cf.estimate(key)
    level = f"{cf.front.noise.confidence:.0%}"
    acc = f"accuracy {e.accuracy.mean:.4f}"
    thr = f"{e.throughput.mean:,.0f} img/s"
    if e.accuracy.low is not None and e.accuracy.high is not None:
        acc += f" [{e.accuracy.low:.4f}, {e.accuracy.high:.4f}] ({level})"
    if e.throughput.low is not None and e.throughput.high is not None:
        thr += f" [{e.throughput.low:,.0f}, {e.throughput.high:,.0f}]"
    status = {"front": "plausible front", "undecided": "undecided",
              "dominated": "confidently dominated"}[_status(cf, key)]
    c = cf.config(key)
    runs = ", ".join(f"#{t.number}" for t in c.trials)
    return (f"{text}<br>{e.n} run(s): trials {runs}<br>{acc}<br>{thr}<br>"
            f"P(Pareto-optimal) {cf.front.probability[key]:.2f}: {status}<br>"
            f"{_params_text(c.params)}")


def _noise_text(cf: ConfiguredFront) -> str:
    noise = cf.front.noise
    if not noise.known:
        return ("one run per configuration: the noise is unknown, so no error bars "
                "(means are single runs)")
    sd = noise.accuracy_sd or 0.0
    spread = math.expm1(noise.log_throughput_sd or 0.0)
    return (f"bars: {noise.confidence:.0%} intervals of the means; noise per run, pooled over "
            f"{noise.df} df: accuracy sd {sd:.3f}, img/s ±{spread:.0%}")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _configured_view(cf: ConfiguredFront, name: str) -> _View:
    points = []
    runs: list[_Run] = []
    replicated = cf.replicates > len(cf.configs)
    for c in cf.configs:
        e = cf.estimate(c.key)
        first = c.trials[0]
        kind, color = variant(first)
        text = trial_label(first) + (f" ×{e.n}" if e.n > 1 else "")
        points.append(_Point(
            c.key, text, _status(cf, c.key), kind, color, e.throughput.mean, e.accuracy.mean,
            _interval(e.throughput.low, e.throughput.high),
            _interval(e.accuracy.low, e.accuracy.high),
            2 * sum(is_noisy(t) for t in c.trials) > len(c.trials),
            1.0 - cf.front.probability[c.key], _config_hover(cf, c.key, text)))
        if replicated:
            runs += [_Run(t.values[1], t.values[0], _hover(t)) for t in c.trials
                     if t.values is not None]
    plausible = len(cf.front.plausible)
    subtitle = (f"{plausible} plausible of {_plural(len(cf.configs), 'configuration')}, "
                f"{_plural(cf.replicates, 'run')}\n{_noise_text(cf)}")
    return _View(name, points, runs, False, cf.front.noise.known, subtitle,
                 cf.front.hypervolume, cf.front.noise.confidence)


def _as_record(t: Any) -> TrialRecord:
    """A :class:`TrialRecord` from itself or from an Optuna ``FrozenTrial``."""
    if isinstance(t, TrialRecord):
        return t
    state = getattr(t.state, "name", str(t.state))
    values = tuple(t.values) if state == "COMPLETE" and t.values else None
    return TrialRecord(t.number, state, values, dict(t.params), dict(t.user_attrs),
                       t.datetime_start, t.datetime_complete, getattr(t, "_trial_id", -1))


def _configured(trials: Iterable[Any], meta: StudyMeta | None, confidence: float | None,
                configured: ConfiguredFront | None) -> ConfiguredFront:
    if configured is not None:
        return configured
    settings = meta.settings if meta is not None else None
    level, seed = front_settings(settings)
    usable = [r for r in (_as_record(t) for t in trials) if _usable(r)]
    return configured_front(usable, level if confidence is None else confidence, seed,
                            tolerance=front_tolerance(settings))


def _view_of(front: Front, configured: ConfiguredFront | None = None) -> _View:
    cf = _configured(front.trials, front.study, None, configured)
    return _configured_view(cf, front.study.name)


def _labelled(view: _View, others: int = MAX_OTHER_LABELS) -> list[_Point]:
    """The front (slow to fast), then the ``others`` most promising of the rest."""
    rest = sorted((p for p in view.points if p.status == "undecided"
                   or (view.observed and p.status == "dominated")), key=lambda p: p.rank)
    return view.front + rest[:others]


# ---- matplotlib --------------------------------------------------------------------------------


def _figure(size: tuple[float, float] = (8.0, 5.5)) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure labels with
    return fig


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExploreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _count_text(value: float) -> str:
    """``2,000`` for counts and rates, ``12.5`` below a thousand."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _marker(kind: str) -> str:
    return MARKERS.get(kind, "s")


def _scatter(ax: Axes, points: Sequence[_Point], color: str | None) -> None:
    """Markers by status: front filled, undecided hollow, dominated grey (or faint ``color``)."""
    for status in ("dominated", "undecided", "front"):
        for marker in sorted({_marker(p.kind) for p in points}):
            pts = [p for p in points if p.status == status and _marker(p.kind) == marker]
            if not pts:
                continue
            xs, ys = [p.x for p in pts], [p.y for p in pts]
            colours = [color or COLORS[p.color] for p in pts]
            if status == "front":
                ax.scatter(xs, ys, s=56, marker=marker, c=colours, edgecolors="black",
                           linewidths=0.6, zorder=5)
            elif status == "undecided":
                ax.scatter(xs, ys, s=42, marker=marker, facecolors="white", edgecolors=colours,
                           linewidths=1.3, zorder=4)
            else:
                ax.scatter(xs, ys, s=20, marker=marker, color=color or GREY,
                           alpha=0.35 if color else 0.8, linewidths=0, zorder=3)


def _error_bars(ax: Axes, points: Sequence[_Point], color: str | None) -> None:
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


def _draw_view(ax: Axes, view: _View, color: str | None = None) -> None:
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
                   edgecolors=NOISY, linewidths=0.8, zorder=6)


def _extent(values: Iterable[float], empty: tuple[float, float]) -> tuple[float, float]:
    got = list(values)
    return (min(got), max(got)) if got else empty


def _limits(views: Sequence[_View]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) ranges covering every point, interval and run."""
    xs: list[float] = []
    ys: list[float] = []
    for v in views:
        for p in v.points:
            xs += [p.x, *(p.x_interval or ())]
            ys += [p.y, *(p.y_interval or ())]
        xs += [r.x for r in v.runs]
        ys += [r.y for r in v.runs]
    return _extent((x for x in xs if x > 0), (1.0, 10.0)), _extent(ys, (0.0, 1.0))


def _throughput_axis(ax: Axes, lo: float, hi: float, log: bool) -> None:
    """Throughput on x over [lo, hi] (padded), in plain numbers with thousands separators."""
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    formatter = FuncFormatter(lambda v, _: _count_text(v))
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


@dataclass(frozen=True)
class _Key:
    """One legend entry, drawn alike by matplotlib and plotly."""

    text: str
    marker: str = "o"  # "o", "^" or "" (text only)
    face: str = "#666666"
    edge: str = "black"
    size: float = 7.0
    line: bool = False  # the joining line
    bar: bool = False  # an error bar instead of a marker


def _status_keys(views: Sequence[_View], colors: Sequence[str | None]) -> list[_Key]:
    statuses = {p.status for v in views for p in v.points}
    observed = all(v.observed for v in views)
    keys = []
    if colors[0] is None:
        keys.append(_Key("Pareto-optimal trials, joined" if observed else
                         "plausible front (P(Pareto-optimal) ≥ 0.5), joined",
                         face="#444444", edge="#444444", line=True))
    else:  # one entry per study in a comparison
        for v, color in zip(views, colors, strict=True):
            hv = f", HV {v.hypervolume:,.0f}" if v.hypervolume is not None else ""
            keys.append(_Key(f"{v.name}: plausible front{hv}", face=color or "#444444",
                             edge=color or "#444444", line=True))
    if "undecided" in statuses:
        keys.append(_Key("undecided", face="white", edge="#444444"))
    if "dominated" in statuses:
        keys.append(_Key("dominated trials" if observed else
                         f"confidently dominated (P ≤ {1 - views[0].confidence:.0%})",
                         face=GREY, edge=GREY, size=5.0))
    return keys


def _kind_keys(views: Sequence[_View], per_study: bool) -> list[_Key]:
    """Colours of the variants (one study) or the markers of the attention kinds (several)."""
    points = [p for v in views for p in v.points]
    if not per_study:
        return [_Key(VARIANT_NAMES[key], "^" if key == "self" else "o", COLORS[key], COLORS[key])
                for key in sorted({p.color for p in points}, key=list(COLORS).index)]
    if any(p.kind == "self" for p in points):
        return [_Key("external attention", face="white", edge="#444444"),
                _Key("self-attention", "^", face="white", edge="#444444")]
    return []


def _note_keys(views: Sequence[_View]) -> list[_Key]:
    """Noisy rings, faint runs, error bars or their absence."""
    observed = all(v.observed for v in views)
    keys = []
    if any(p.noisy for v in views for p in v.points):
        keys.append(_Key(_NOISY_TEXT if observed else _NOISY_TEXT + " in most runs",
                         face="none", edge=NOISY, size=10.0))
    if any(v.runs for v in views):
        keys.append(_Key("single runs (replicates)", face="#555555", edge="#555555", size=3.5))
    if any(v.known for v in views):
        keys.append(_Key(f"{views[0].confidence:.0%} interval of the mean", edge="#333333",
                         bar=True))
    elif not observed:
        keys.append(_Key("one run each: noise unknown, no bars", marker=""))
    return keys


def _legend_keys(views: Sequence[_View], colors: Sequence[str | None]) -> list[_Key]:
    return (_status_keys(views, colors) + _kind_keys(views, colors[0] is not None)
            + _note_keys(views))


def _mpl_handle(key: _Key) -> Any:
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


def _plot_views(views: Sequence[_View], colors: Sequence[str | None], title: str,
                subtitle: str, labels: bool = True) -> Figure:
    """The figure of ``views`` (one per study), labelled when ``labels``."""
    fig = _figure((10.0, 6.0))
    ax = fig.add_subplot()
    for view, color in zip(views, colors, strict=True):
        _draw_view(ax, view, color)
    (x_lo, x_hi), (y_lo, y_hi) = _limits(views)
    log = not all(v.observed for v in views) or x_hi / x_lo > 10
    _throughput_axis(ax, x_lo, x_hi, log)
    _accuracy_axis(ax, y_lo, y_hi)
    fig.suptitle(title)
    subtitle = "\n".join(textwrap.fill(line, SUBTITLE_WIDTH) for line in subtitle.split("\n"))
    ax.set_title(subtitle, fontsize=8.5, loc="left", color="#333333")
    fig.legend(handles=[_mpl_handle(k) for k in _legend_keys(views, colors)],
               loc="outside right upper", fontsize=8)
    _freeze(fig)
    if labels:
        points = [p for v in views for p in v.points]
        # Several studies: their fronts only, each label in its study's colour.
        others = MAX_OTHER_LABELS if len(views) == 1 else 0
        chosen = [(p, color) for v, color in zip(views, colors, strict=True)
                  for p in _labelled(v, others)]
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
    cf = _configured(trials, meta, confidence, configured)
    name = meta.name if meta is not None else "study"
    view = _configured_view(cf, name)
    return _plot_views([view], [None], title or f"{name}: accuracy against throughput",
                       view.subtitle)


def observed_matplotlib(front: Front, title: str | None = None) -> Figure:
    """Optuna's observed front over single trials, as a matplotlib figure."""
    view = _observed_view(front)
    return _plot_views([view], [None], title or f"{front.study.name}: accuracy against "
                       "throughput, every trial", view.subtitle)


def front_png(front: Front, path: Path, title: str | None = None) -> Path:
    """Optuna's observed front over single trials (every COMPLETE trial of ``front``)."""
    _save(observed_matplotlib(front, title), path)
    return path


def configured_png(front: Front, path: Path, title: str | None = None,
                   configured: ConfiguredFront | None = None) -> Path:
    """The front over configurations with error bars (``front`` with its dominated trials)."""
    _save(front_matplotlib(front.trials, front.study, configured=configured, title=title), path)
    return path


# ---- plotly ------------------------------------------------------------------------------------


class PlotlyMissing(ExploreError, ImportError):
    """plotly is not installed: a one-line error for the CLI, an ImportError for callers that
    treat plotly as optional (the dashboard figure of a run)."""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ModuleNotFoundError as exc:
        raise PlotlyMissing("HTML plots need plotly, which is not installed: "
                            "pip install 'explore[plotly]' (or write a .png)") from exc
    return go


def _errors(points: Sequence[_Point], axis: str) -> dict[str, Any] | None:
    spans = [p.x_interval if axis == "x" else p.y_interval for p in points]
    if not any(spans):
        return None
    centres = [p.x if axis == "x" else p.y for p in points]
    return {"type": "data", "symmetric": False, "thickness": 1, "width": 2,
            "array": [s[1] - c if s else 0.0 for s, c in zip(spans, centres, strict=True)],
            "arrayminus": [c - s[0] if s else 0.0 for s, c in zip(spans, centres, strict=True)]}


def _plotly_marker(status: str, pts: Sequence[_Point], color: str | None) -> dict[str, Any]:
    symbols = [PLOTLY_SYMBOLS.get(p.kind, "square") for p in pts]
    colours = [color or COLORS[p.color] for p in pts]
    if status == "front":
        return {"size": 11, "color": colours, "symbol": symbols,
                "line": {"width": 1, "color": "black"}}
    if status == "undecided":
        return {"size": 9, "color": "white", "symbol": symbols,
                "line": {"width": 2, "color": colours}}
    return {"size": 7, "color": color or GREY, "symbol": symbols,
            "opacity": 0.45 if color else 0.9}


def _plotly_view(go: Any, view: _View, color: str | None, named: bool,
                 labels: bool, places: dict[str, str] | None = None) -> list[Any]:
    """One study's traces; ``named``: legend entries carry the study's name (compare);
    ``places``: the label sides (:func:`studies.labels.plotly_places`), by default for this
    view alone."""
    prefix = f"{view.name}: " if named else ""
    if places is None:
        places = plotly_places(_labelled(view), _limits([view]), _log_x([view])) if labels \
            else {}
    names = {"front": "Pareto-optimal trials" if view.observed else "plausible front",
             "undecided": "undecided",
             "dominated": "dominated trials" if view.observed else "confidently dominated"}
    if named and view.hypervolume is not None:
        names["front"] += f" (HV {view.hypervolume:,.0f} acc × img/s)"
    traces = []
    if view.runs:
        traces.append(go.Scatter(
            x=[r.x for r in view.runs], y=[r.y for r in view.runs], mode="markers",
            name=f"{prefix}single runs", legendgroup=view.name, showlegend=named,
            marker={"size": 4, "color": color or "#555555", "opacity": 0.3},
            text=[r.hover for r in view.runs], hoverinfo="text"))
    front = view.front
    if front:
        traces.append(go.Scatter(
            x=[p.x for p in front], y=[p.y for p in front], mode="lines", hoverinfo="skip",
            line={"color": color or "#444444", "width": 1.5}, showlegend=False,
            legendgroup=view.name))
    for status in ("dominated", "undecided", "front"):
        pts = [p for p in view.points if p.status == status]
        if not pts:
            continue
        error = "#333333" if status == "front" else "#999999"
        ex, ey = _errors(pts, "x"), _errors(pts, "y")
        traces.append(go.Scatter(
            x=[p.x for p in pts], y=[p.y for p in pts], mode="markers+text",
            name=prefix + names[status], legendgroup=view.name, showlegend=named,
            marker=_plotly_marker(status, pts, color),
            error_x={**ex, "color": color or error} if ex else None,
            error_y={**ey, "color": color or error} if ey else None,
            text=[p.label if p.key in places else "" for p in pts],
            textposition=[places.get(p.key, "top center") for p in pts],
            textfont={"size": 10}, hovertext=[p.hover for p in pts], hoverinfo="text"))
    noisy = [p for p in view.points if p.noisy]
    if noisy:
        traces.append(go.Scatter(
            x=[p.x for p in noisy], y=[p.y for p in noisy], mode="markers",
            name=f"{prefix}noisy throughput", legendgroup=view.name, showlegend=False,
            marker={"size": 18, "symbol": "circle-open", "color": NOISY}, hoverinfo="skip"))
    return traces


def _plotly_marker_key(key: _Key) -> dict[str, Any]:
    if key.bar:
        return {"size": 10, "symbol": "line-ns", "line": {"width": 1, "color": key.edge}}
    if not key.marker:
        return {"size": 1, "color": "white"}
    symbol = {"o": "circle", "^": "triangle-up"}.get(key.marker, "circle")
    if key.face == "none":  # a ring
        return {"size": key.size * 1.4, "symbol": symbol + "-open", "color": key.edge}
    return {"size": key.size * 1.4, "symbol": symbol, "color": key.face,
            "line": {"width": 2 if key.face == "white" else 0, "color": key.edge}}


def _plotly_key(go: Any, key: _Key) -> Any:
    """A legend-only trace explaining a colour, a fill, a marker or a line."""
    return go.Scatter(x=[None], y=[None], mode="lines+markers" if key.line else "markers",
                      name=key.text, marker=_plotly_marker_key(key), line={"color": key.edge},
                      hoverinfo="skip")


def _plotly_figure(views: Sequence[_View], colors: Sequence[str | None], title: str,
                   subtitle: str, labels: bool = True) -> Any:
    go = _plotly()
    per_study = colors[0] is not None
    traces = []
    limits, log_x = _limits(views), _log_x(views)
    wanted = [p for v in views for p in _labelled(v)] if labels else []
    places = plotly_places(wanted, limits, log_x)  # one layout: studies' labels never overlap
    for view, color in zip(views, colors, strict=True):
        traces += _plotly_view(go, view, color, per_study, labels,
                               {k: v for k, v in places.items()
                                if any(p.key == k for p in view.points)})
    # A comparison's status traces are named by study: the legend needs no status keys there.
    keys = _legend_keys(views, colors) if not per_study else (
        _kind_keys(views, per_study) + _note_keys(views))
    fig = go.Figure(traces + [_plotly_key(go, k) for k in keys])
    lines = subtitle.replace("\n", "<br>")
    # optuna-dashboard shows a stored figure in a half-width card 450 px high (the legend
    # beside the axes leaves them about 250 px; labels are placed for that).
    fig.update_layout(title={"text": f"{title}<br><sup>{lines}</sup>"},
                      template="plotly_white", height=PLOTLY_HEIGHT,
                      legend={"itemsizing": "constant", "font": {"size": 10}},
                      margin={"l": 60, "r": 10, "t": 100, "b": 50},
                      xaxis_title="throughput (images/s, higher is better)",
                      yaxis_title="accuracy (higher is better)")
    if log_x:
        fig.update_xaxes(type="log", tickvals=log_ticks(*limits[0]))
    fig.update_xaxes(tickformat=",.0f", tickangle=0)
    return fig


def _log_x(views: Sequence[_View]) -> bool:
    """Throughput on a log axis: over configurations (intervals are multiplicative), or where
    the trials span more than 10x."""
    (x_lo, x_hi), _ = _limits(views)
    return not all(v.observed for v in views) or x_hi / x_lo > 10


def front_figure(trials: Iterable[Any], meta: StudyMeta | None = None,
                 confidence: float | None = None,
                 configured: ConfiguredFront | None = None) -> Any:
    """The front over configurations with error bars as a plotly ``go.Figure`` (for an HTML
    file, or ``optuna_dashboard.save_plotly_graph_object``). Arguments as
    :func:`front_matplotlib`; plotly is imported here (:class:`PlotlyMissing` without it)."""
    _plotly()  # fail before any work when plotly is missing
    cf = _configured(trials, meta, confidence, configured)
    name = meta.name if meta is not None else "study"
    view = _configured_view(cf, name)
    return _plotly_figure([view], [None], f"{name}: accuracy against throughput",
                          view.subtitle)


def _write_html(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # Self-contained (plotly.js inlined, ~4 MB) so that the file opens offline.
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExploreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def front_html(front: Front, path: Path) -> Path:
    """Optuna's observed front over single trials, interactive."""
    view = _observed_view(front)
    _write_html(_plotly_figure([view], [None], f"{front.study.name}: accuracy against "
                               "throughput, every trial", view.subtitle), path)
    return path


def configured_html(front: Front, path: Path, configured: ConfiguredFront | None = None
                    ) -> Path:
    """The front over configurations with error bars, interactive."""
    _write_html(front_figure(front.trials, front.study, configured=configured), path)
    return path


def plot_study(storage: str | None, name: str, out: Path, observed: bool = False) -> Path:
    """``explore study plot``: the front over configurations of study ``name`` with error bars
    (``observed``: Optuna's front over single trials instead)."""
    suffix = check_out(out, (".png", ".html"))
    if suffix == ".html":
        _plotly()  # fail before reading anything when plotly is missing
    front = pareto_front(parse_storage(storage), name, include_dominated=True)
    if not front.study.is_explore:
        raise ExploreError(f"study {name!r} does not maximize accuracy and throughput: only "
                           "explore studies can be plotted")
    if not any(_usable(t) for t in front.trials):
        raise ExploreError(f"study {name!r} has no COMPLETE trials to plot yet")
    if observed:
        return front_png(front, out) if suffix == ".png" else front_html(front, out)
    return configured_png(front, out) if suffix == ".png" else configured_html(front, out)


# ---- history -----------------------------------------------------------------------------------


def _time_unit(seconds: float) -> tuple[str, float]:
    """Seconds for short runs, minutes, then hours."""
    if seconds < 180:
        return "seconds", 1.0
    if seconds < 3 * 3600:
        return "minutes", 60.0
    return "hours", 3600.0


def _history_end(history: History) -> tuple[int, dt.datetime]:
    """The finished count and the time the plot runs to: now's count, not the last snapshot's."""
    last = history.snapshots[-1]
    count = max(history.finished or 0, last.n_finished,
                *(c.n_finished for c in history.confident))
    when = max(history.last_activity or last.created_at, last.created_at,
               *(c.created_at for c in history.confident))
    return count, when


def history_figure(history: History) -> Figure:
    """Hypervolume against finished trials and against time, as a matplotlib figure: Optuna's
    observed front (a step at every snapshot, held until the study's current finished count)
    and, where recorded, the plausible front of configuration means with its interval."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = _figure((10.0, 4.2))
    by_trials, by_time = fig.subplots(1, 2)
    snaps = history.snapshots
    end_count = history.finished or 0
    if snaps:
        end_count, end_time = _history_end(history)
        t0 = snaps[0].created_at
        unit, per = _time_unit((end_time - t0).total_seconds())
        hv = [s.hypervolume for s in snaps] + [snaps[-1].hypervolume]
        counts = [s.n_finished for s in snaps] + [end_count]
        times = [(s.created_at - t0).total_seconds() / per for s in snaps]
        times.append((end_time - t0).total_seconds() / per)
        for ax, xs in ((by_trials, counts), (by_time, times)):
            ax.step(xs, hv, where="post", color="#1f77b4", gid="observed-hypervolume",
                    label="observed front (single trials)")
            ax.plot(xs[:-1], hv[:-1], "o", ms=3, color="#1f77b4")
        if history.confident:
            tops = [_confident_steps(by_trials, history, [c.n_finished for c in
                                                          history.confident] + [end_count]),
                    _confident_steps(by_time, history, [
                        (c.created_at - t0).total_seconds() / per for c in history.confident]
                        + [(end_time - t0).total_seconds() / per])]
            hv += tops
        # The line values set the scale; an interval from very few replicates may run off it.
        for ax in (by_trials, by_time):
            ax.set_ylim(0, max(hv) * 1.08 or 1.0)
        by_time.set_xlabel(f"{unit} since the first snapshot")
        by_trials.legend(fontsize=8, loc="lower right")
    else:
        for ax in (by_trials, by_time):
            ax.text(0.5, 0.5, "no snapshots recorded", ha="center", va="center",
                    transform=ax.transAxes)
        by_time.set_xlabel("time since the first snapshot")
    by_trials.set_xlabel(f"finished trials (now {end_count:,})")
    by_trials.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (by_trials, by_time):
        ax.set_ylabel("hypervolume (accuracy × img/s)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _count_text(v)))
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{history.study}: hypervolume of the front in accuracy × img/s "
                 "above (0, 0)")
    return fig


def _confident_steps(ax: Axes, history: History, xs: Sequence[float]) -> float:
    """The plausible front's hypervolume (configuration means) at ``xs`` (one per confident
    snapshot, then the end) with its interval band; returns the highest value drawn."""
    snaps = history.confident
    hv = [s.hypervolume for s in snaps] + [snaps[-1].hypervolume]
    ax.step(xs, hv, where="post", color="#2ca02c", gid="plausible-hypervolume",
            label="plausible front (configuration means)")
    ends = [*snaps, snaps[-1]]
    band = [(x, s.hypervolume_low, s.hypervolume_high) for x, s in zip(xs, ends, strict=True)
            if s.hypervolume_low is not None and s.hypervolume_high is not None]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                        step="post", color="#2ca02c", alpha=0.15, linewidth=0,
                        label="its interval (the study's confidence)")
    return max(hv)


def confident_history_figure(snapshots: Sequence[Any], name: str, finished: int) -> Any:
    """The plausible front's hypervolume after each recorded change, with its interval band,
    as a plotly figure (for optuna-dashboard), extended to the ``finished`` count so that a
    flat end shows as flat; trial counts on x (integers)."""
    go = _plotly()
    snaps = sorted(snapshots, key=lambda s: s.n_finished)
    if not snaps:
        return None
    xs = [s.n_finished for s in snaps] + [max(finished, snaps[-1].n_finished)]
    ends = [*snaps, snaps[-1]]
    hv = [s.hypervolume for s in ends]
    traces = []
    band = [(x, s.hypervolume_low, s.hypervolume_high) for x, s in zip(xs, ends, strict=True)
            if s.hypervolume_low is not None and s.hypervolume_high is not None]
    if band:
        traces.append(go.Scatter(x=[b[0] for b in band], y=[b[2] for b in band],
                                 mode="lines", line={"width": 0, "shape": "hv"},
                                 hoverinfo="skip", showlegend=False))
        traces.append(go.Scatter(x=[b[0] for b in band], y=[b[1] for b in band],
                                 mode="lines", line={"width": 0, "shape": "hv"}, fill="tonexty",
                                 fillcolor="rgba(44, 160, 44, 0.15)",
                                 name="its interval (the study's confidence)"))
    traces.append(go.Scatter(
        x=xs, y=hv, mode="lines+markers", line={"color": "#2ca02c", "shape": "hv"},
        name="plausible front (configuration means)",
        text=[f"{s.plausible} plausible, {s.dominated} dominated of {s.configurations} "
              f"configurations, {s.replicates} runs" for s in ends], hoverinfo="x+y+text"))
    fig = go.Figure(traces)
    fig.update_layout(
        title={"text": f"{name}: hypervolume of the plausible front<br><sup>accuracy × img/s "
                       "against (0, 0), after each change; flat to the last finished trial"
                       "</sup>"},
        template="plotly_white", height=PLOTLY_HEIGHT, legend={"font": {"size": 10}},
        xaxis_title="finished trials", yaxis_title="hypervolume (accuracy × img/s)")
    fig.update_xaxes(tickformat="d", rangemode="tozero")
    fig.update_yaxes(tickformat=",.0f")
    return fig


def history_png(history: History, path: Path) -> Path:
    """Hypervolume against finished trials and against time (see :func:`history_figure`)."""
    _save(history_figure(history), path)
    return path


# ---- compare -----------------------------------------------------------------------------------


def _compare_title(fronts: Sequence[Front]) -> str:
    names = ", ".join(f"'{f.study.name}'" for f in fronts)
    return f"Fronts of {len(fronts)} studies: {names}"


def _compare_views(fronts: Sequence[Front], configured: Sequence[ConfiguredFront] | None
                   ) -> list[_View]:
    if configured is None:
        return [_view_of(f) for f in fronts]
    return [_view_of(f, c) for f, c in zip(fronts, configured, strict=True)]


def compare_figure(fronts: Sequence[Front],
                   configured: Sequence[ConfiguredFront] | None = None) -> Figure:
    """Several studies' fronts over configurations on one matplotlib figure, one colour per
    study (labels while there are at most two studies)."""
    views = _compare_views(fronts, configured)
    colors: list[str | None] = [STUDY_COLORS[i % len(STUDY_COLORS)] for i in range(len(views))]
    return _plot_views(views, colors, _compare_title(fronts),
                       "filled and joined: each study's plausible front; hollow: undecided; "
                       "faint: confidently dominated\nHV: hypervolume of the plausible front "
                       "(configuration means) in accuracy × img/s above (0, 0)",
                       labels=len(views) <= 2)


def compare_plotly(fronts: Sequence[Front],
                   configured: Sequence[ConfiguredFront] | None = None) -> Any:
    """:func:`compare_figure` as a plotly ``go.Figure`` (each study's traces in its colour)."""
    views = _compare_views(fronts, configured)
    colors: list[str | None] = [STUDY_COLORS[i % len(STUDY_COLORS)] for i in range(len(views))]
    return _plotly_figure(views, colors, _compare_title(fronts),
                          "each study in its own colour; hover for intervals; HV: hypervolume "
                          "of the plausible front in accuracy × img/s", labels=len(views) <= 2)


def compare_plot(fronts: Sequence[Front], path: Path,
                 configured: Sequence[ConfiguredFront] | None = None) -> Path:
    """Fronts of several studies on one plot, one colour per study (PNG or HTML).

    Args:
        fronts: each study's front with its dominated trials.
        path: a ``.png`` or ``.html`` file.
        configured: each study's front over configurations, when already computed.
    """
    suffix = check_out(path, (".png", ".html"))
    if suffix == ".html":
        _write_html(compare_plotly(fronts, configured), path)
        return path
    _save(compare_figure(fronts, configured), path)
    return path
