"""The front drawn with plotly (optional: the ``plotly`` extra): a study's front and several
studies compared, as ``go.Figure`` objects (for optuna-dashboard) and self-contained HTML files.
What is drawn: :mod:`studies.frontpoints`; plotly is imported only when a figure is made."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from studies import frontpoints as fp
from studies.catalog import Front
from studies.errors import ExploreError
from studies.labels import PLOTLY_HEIGHT, log_ticks, plotly_places
from studies.record import StudyMeta
from studies.replicates import ConfiguredFront

__all__ = ["PLOTLY_SYMBOLS", "PlotlyMissing", "compare_plotly", "configured_html", "front_figure",
           "front_html", "import_plotly", "save_html"]

PLOTLY_SYMBOLS = {"external": "circle", "self": "triangle-up"}


class PlotlyMissing(ExploreError, ImportError):
    """plotly is not installed: a one-line error for the CLI, an ImportError for callers that
    treat plotly as optional (the dashboard figure of a run)."""


def import_plotly() -> Any:
    """``plotly.graph_objects``; :class:`PlotlyMissing` without plotly."""
    try:
        import plotly.graph_objects as go
    except ModuleNotFoundError as exc:
        raise PlotlyMissing("HTML plots need plotly, which is not installed: "
                            "pip install 'explore[plotly]' (or write a .png)") from exc
    return go


def _errors(points: Sequence[fp.Point], axis: str) -> dict[str, Any] | None:
    spans = [p.x_interval if axis == "x" else p.y_interval for p in points]
    if not any(spans):
        return None
    centres = [p.x if axis == "x" else p.y for p in points]
    return {"type": "data", "symmetric": False, "thickness": 1, "width": 2,
            "array": [s[1] - c if s else 0.0 for s, c in zip(spans, centres, strict=True)],
            "arrayminus": [c - s[0] if s else 0.0 for s, c in zip(spans, centres, strict=True)]}


def _plotly_marker(status: str, pts: Sequence[fp.Point], color: str | None) -> dict[str, Any]:
    symbols = [PLOTLY_SYMBOLS.get(p.kind, "square") for p in pts]
    colours = [color or fp.COLORS[p.color] for p in pts]
    if status == "front":
        return {"size": 11, "color": colours, "symbol": symbols,
                "line": {"width": 1, "color": "black"}}
    if status == "undecided":
        return {"size": 9, "color": "white", "symbol": symbols,
                "line": {"width": 2, "color": colours}}
    return {"size": 7, "color": color or fp.GREY, "symbol": symbols,
            "opacity": 0.45 if color else 0.9}


def _plotly_view(go: Any, view: fp.View, color: str | None, named: bool,
                 labels: bool, places: dict[str, str] | None = None) -> list[Any]:
    """One study's traces; ``named``: legend entries carry the study's name (compare);
    ``places``: the label sides (:func:`studies.labels.plotly_places`), by default for this
    view alone."""
    prefix = f"{view.name}: " if named else ""
    if places is None:
        places = plotly_places(fp.labelled(view), fp.axis_limits([view]),
                               fp.log_throughput([view])) if labels else {}
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
            marker={"size": 18, "symbol": "circle-open", "color": fp.NOISY}, hoverinfo="skip"))
    return traces


def _plotly_marker_key(key: fp.LegendKey) -> dict[str, Any]:
    if key.bar:
        return {"size": 10, "symbol": "line-ns", "line": {"width": 1, "color": key.edge}}
    if not key.marker:
        return {"size": 1, "color": "white"}
    symbol = {"o": "circle", "^": "triangle-up"}.get(key.marker, "circle")
    if key.face == "none":  # a ring
        return {"size": key.size * 1.4, "symbol": symbol + "-open", "color": key.edge}
    return {"size": key.size * 1.4, "symbol": symbol, "color": key.face,
            "line": {"width": 2 if key.face == "white" else 0, "color": key.edge}}


def _plotly_key(go: Any, key: fp.LegendKey) -> Any:
    """A legend-only trace explaining a colour, a fill, a marker or a line."""
    return go.Scatter(x=[None], y=[None], mode="lines+markers" if key.line else "markers",
                      name=key.text, marker=_plotly_marker_key(key), line={"color": key.edge},
                      hoverinfo="skip")


def _plotly_figure(views: Sequence[fp.View], colors: Sequence[str | None], title: str,
                   subtitle: str, labels: bool = True) -> Any:
    go = import_plotly()
    per_study = colors[0] is not None
    traces = []
    limits, log_x = fp.axis_limits(views), fp.log_throughput(views)
    wanted = [p for v in views for p in fp.labelled(v)] if labels else []
    places = plotly_places(wanted, limits, log_x)  # one layout: studies' labels never overlap
    for view, color in zip(views, colors, strict=True):
        traces += _plotly_view(go, view, color, per_study, labels,
                               {k: v for k, v in places.items()
                                if any(p.key == k for p in view.points)})
    # A comparison's status traces are named by study: the legend needs no status keys there.
    keys = fp.legend_keys(views, colors) if not per_study else (
        fp.kind_keys(views, per_study) + fp.note_keys(views))
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


def front_figure(trials: Iterable[Any], meta: StudyMeta | None = None,
                 confidence: float | None = None,
                 configured: ConfiguredFront | None = None) -> Any:
    """The front over configurations with error bars as a plotly ``go.Figure`` (for an HTML
    file, or ``optuna_dashboard.save_plotly_graph_object``). Arguments as
    :func:`front_matplotlib`; plotly is imported here (:class:`PlotlyMissing` without it)."""
    import_plotly()  # fail before any work when plotly is missing
    cf = fp.configured_of(trials, meta, confidence, configured)
    name = meta.name if meta is not None else "study"
    view = fp.configured_view(cf, name)
    return _plotly_figure([view], [None], f"{name}: accuracy against throughput",
                          view.subtitle)


def save_html(fig: Any, path: Path) -> None:
    """``fig`` into ``path`` through a temporary file beside it; one line if it cannot."""
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
    view = fp.observed_view(front)
    save_html(_plotly_figure([view], [None], f"{front.study.name}: accuracy against "
                             "throughput, every trial", view.subtitle), path)
    return path


def configured_html(front: Front, path: Path, configured: ConfiguredFront | None = None
                    ) -> Path:
    """The front over configurations with error bars, interactive."""
    save_html(front_figure(front.trials, front.study, configured=configured), path)
    return path


def compare_plotly(fronts: Sequence[Front],
                   configured: Sequence[ConfiguredFront] | None = None) -> Any:
    """:func:`compare_figure` as a plotly ``go.Figure`` (each study's traces in its colour)."""
    views = fp.compare_views(fronts, configured)
    colors = fp.study_colors(len(views))
    return _plotly_figure(views, colors, fp.compare_title(fronts),
                          "each study in its own colour; hover for intervals; HV: hypervolume "
                          "of the plausible front in accuracy × img/s", labels=len(views) <= 2)

