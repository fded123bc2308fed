"""The hypervolume history: against finished trials and against time as a matplotlib figure
(``explore study history --plot`` and the report), and the plausible front's over the trials as
a plotly figure (for optuna-dashboard)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.fronthtml import import_plotly
from studies.frontpng import count_text, new_figure, save_png
from studies.labels import PLOTLY_HEIGHT

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from studies.history import History

__all__ = ["confident_history_figure", "history_figure", "history_png"]


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

    fig = new_figure((10.0, 4.2))
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
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: count_text(v)))
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
    go = import_plotly()
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
    save_png(history_figure(history), path)
    return path

