"""Plots of accuracy against throughput: PNG with matplotlib, HTML with plotly (optional).

Pareto-optimal trials are coloured by variant (double-normalized EA, softmax EA, self-attention)
and connected; dominated trials are grey. External attention is drawn with circles, self-attention
with triangles. Points are labelled ``S64/h4/double`` (``SA/h4`` for self-attention): the front
always, the other trials while there are few enough to read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.catalog import Front, pareto_front
from studies.errors import ExploreError, UsageError
from studies.record import TrialRecord
from studies.storage import parse_storage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from studies.history import History

__all__ = ["check_out", "compare_plot", "front_html", "front_png", "history_png", "label",
           "plot_study", "variant"]

GREY = "#b3b3b3"
COLORS = {"double": "#1f77b4", "softmax": "#ff7f0e", "self": "#2ca02c", "other": "#9467bd"}
MARKERS = {"external": "o", "self": "^"}
PLOTLY_SYMBOLS = {"external": "circle", "self": "triangle-up"}
STUDY_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                "#17becf"]
LABEL_ALL_UP_TO = 40  # label dominated trials too while a plot has at most this many points


def check_out(path: Path, suffixes: Sequence[str]) -> str:
    """The output's format (its suffix); a clear error for another suffix or a missing folder."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise UsageError(f"--out {path}: give a file ending in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist")
    return suffix


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
    cfg = config(t)
    heads = cfg.get("heads", "?")
    if cfg.get("attention", "external") == "self":
        return f"SA/h{heads}"
    return f"S{cfg.get('mem_size', '?')}/h{heads}/{cfg.get('norm', '?')}"


def _x(t: TrialRecord) -> float:
    """Throughput (the x axis) of a trial with values."""
    assert t.values is not None
    return t.values[1]


def _y(t: TrialRecord) -> float:
    """Accuracy (the y axis) of a trial with values."""
    assert t.values is not None
    return t.values[0]


def _points(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    return [t for t in trials if t.values is not None and len(t.values) >= 2]


def _log_x(trials: Sequence[TrialRecord]) -> bool:
    xs = [_x(t) for t in _points(trials) if _x(t) > 0]
    return bool(xs) and max(xs) / min(xs) > 10


def _figure(size: tuple[float, float] = (8.0, 5.5)) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExploreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _draw_front(ax: Axes, front: Front, color: str | None = None, name: str | None = None,
                dominated: bool = True, labels: bool = True) -> None:
    """One study on ``ax``: grey dominated points, coloured connected front, labels."""
    trials = _points(front.trials)
    on = sorted((t for t in trials if t.number in front.pareto), key=_x)
    off = [t for t in trials if t.number not in front.pareto]
    label_all = len(trials) <= LABEL_ALL_UP_TO
    if dominated:
        for kind, marker in MARKERS.items():
            pts = [t for t in off if variant(t)[0] == kind]
            if pts:
                grey = f"dominated ({'SA' if kind == 'self' else 'EA'})"
                ax.scatter([_x(t) for t in pts], [_y(t) for t in pts], s=22,
                           marker=marker, color=GREY, alpha=0.8, zorder=2,
                           label=None if name else grey)
    if on:
        ax.plot([_x(t) for t in on], [_y(t) for t in on], "-",
                color=color or "#444444", lw=1.3, zorder=3, label=name and f"{name} front")
    seen: set[tuple[str, str]] = set()
    for t in on:
        kind, key = variant(t)
        legend: str | None = None
        if name is None and (kind, key) not in seen:
            seen.add((kind, key))
            legend = "front: self-attention" if kind == "self" else f"front: EA, {key}"
        ax.scatter([_x(t)], [_y(t)], s=48, marker=MARKERS.get(kind, "s"),
                   color=color or COLORS[key], edgecolor="black", linewidth=0.6, zorder=4,
                   label=legend)
    if labels:
        for t in on + (off if label_all and dominated else []):
            ax.annotate(label(t), (_x(t), _y(t)), xytext=(4, 4),
                        textcoords="offset points", fontsize=7,
                        color="black" if t.number in front.pareto else "#777777")


def _axes_style(ax: Axes, log_x: bool, title: str) -> None:
    if log_x:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # 1-2-5 ticks in plain numbers: "2,000" reads better than "2×10³" over 1-2 decades.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("throughput (images/s, higher is better)")
    ax.set_ylabel("accuracy (higher is better)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def front_png(front: Front, path: Path, title: str | None = None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    _draw_front(ax, front)
    n = len(_points(front.trials))
    _axes_style(ax, _log_x(front.trials),
                title or f"{front.study.name}: {len(front.pareto)} Pareto-optimal of {n} trials")
    _save(fig, path)
    return path


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ModuleNotFoundError as exc:
        raise ExploreError("HTML plots need plotly, which is not installed: "
                           "pip install 'explore[plotly]' (or write a .png)") from exc
    return go


def _hover(t: TrialRecord) -> str:
    params = "<br>".join(f"{k}={v}" for k, v in sorted(t.params.items()))
    return (f"trial {t.number}: {label(t)}<br>accuracy {_y(t):.4f}<br>{_x(t):,.0f} img/s"
            f"<br>{params}")


def _plotly_traces(go: Any, front: Front, color: str | None, name: str | None) -> list[Any]:
    trials = _points(front.trials)
    on = sorted((t for t in trials if t.number in front.pareto), key=_x)
    off = [t for t in trials if t.number not in front.pareto]
    prefix = f"{name}: " if name else ""
    traces = []
    if off:
        traces.append(go.Scatter(
            x=[_x(t) for t in off], y=[_y(t) for t in off], mode="markers",
            name=f"{prefix}dominated",
            marker={"color": GREY, "size": 7,
                    "symbol": [PLOTLY_SYMBOLS.get(variant(t)[0], "square") for t in off]},
            text=[_hover(t) for t in off], hoverinfo="text"))
    if on:
        traces.append(go.Scatter(
            x=[_x(t) for t in on], y=[_y(t) for t in on], mode="lines+markers+text",
            name=f"{prefix}Pareto front", line={"color": color or "#444444"},
            marker={"size": 11, "line": {"width": 1, "color": "black"},
                    "color": [color or COLORS[variant(t)[1]] for t in on],
                    "symbol": [PLOTLY_SYMBOLS.get(variant(t)[0], "square") for t in on]},
            text=[label(t) for t in on], textposition="top center",
            hovertext=[_hover(t) for t in on], hoverinfo="text"))
    return traces


def _plotly_layout(fig: Any, title: str, log_x: bool) -> None:
    fig.update_layout(title=title, template="plotly_white",
                      xaxis_title="throughput (images/s, higher is better)",
                      yaxis_title="accuracy (higher is better)")
    if log_x:
        fig.update_xaxes(type="log")


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
    go = _plotly()
    fig = go.Figure(_plotly_traces(go, front, None, None))
    n = len(_points(front.trials))
    _plotly_layout(fig, f"{front.study.name}: {len(front.pareto)} Pareto-optimal of {n} trials",
                   _log_x(front.trials))
    _write_html(fig, path)
    return path


def plot_study(storage: str | None, name: str, out: Path) -> Path:
    """``explore study plot``: accuracy against throughput of every COMPLETE trial."""
    suffix = check_out(out, (".png", ".html"))
    if suffix == ".html":
        _plotly()  # fail before reading anything when plotly is missing
    front = pareto_front(parse_storage(storage), name, include_dominated=True)
    if not front.trials:
        raise ExploreError(f"study {name!r} has no COMPLETE trials to plot yet")
    return front_png(front, out) if suffix == ".png" else front_html(front, out)


def history_png(history: History, path: Path) -> Path:
    """Hypervolume against finished trials and against time."""
    fig = _figure((10.0, 4.0))
    by_trials, by_time = fig.subplots(1, 2)
    snaps = history.snapshots
    if snaps:
        hv = [s.hypervolume for s in snaps]
        # A snapshot holds until the next one: draw steps.
        by_trials.step([s.n_finished for s in snaps], hv, where="post", marker="o", ms=3)
        t0 = snaps[0].created_at
        minutes = [(s.created_at - t0).total_seconds() / 60 for s in snaps]
        by_time.step(minutes, hv, where="post", marker="o", ms=3, color="#d62728")
    else:
        for ax in (by_trials, by_time):
            ax.text(0.5, 0.5, "no snapshots recorded", ha="center", va="center",
                    transform=ax.transAxes)
    by_trials.set_xlabel("finished trials")
    by_time.set_xlabel("minutes since the first snapshot")
    for ax in (by_trials, by_time):
        ax.set_ylabel("hypervolume (accuracy × img/s)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{history.study}: hypervolume of the Pareto front (reference 0, 0)")
    _save(fig, path)
    return path


def compare_plot(fronts: Sequence[Front], path: Path) -> Path:
    """Fronts of several studies on one plot, one colour per study (PNG or HTML)."""
    suffix = check_out(path, (".png", ".html"))
    all_trials = [t for f in fronts for t in f.trials]
    title = "Pareto fronts: " + " vs ".join(f.study.name for f in fronts)
    if suffix == ".html":
        go = _plotly()
        traces = []
        for i, f in enumerate(fronts):
            traces += _plotly_traces(go, f, STUDY_COLORS[i % len(STUDY_COLORS)], f.study.name)
        fig = go.Figure(traces)
        _plotly_layout(fig, title, _log_x(all_trials))
        _write_html(fig, path)
        return path
    fig = _figure()
    ax = fig.add_subplot()
    for i, f in enumerate(fronts):
        color = STUDY_COLORS[i % len(STUDY_COLORS)]
        _draw_front(ax, f, color=color, name=f.study.name, dominated=False,
                    labels=len(fronts) <= 2)
        off = [t for t in _points(f.trials) if t.number not in f.pareto]
        if off:  # each study's dominated trials, faint in its own colour
            ax.scatter([_x(t) for t in off], [_y(t) for t in off], s=12,
                       color=color, alpha=0.2, zorder=1)
    _axes_style(ax, _log_x(all_trials), title)
    _save(fig, path)
    return path
