"""Plots of accuracy against throughput written to a file, PNG (matplotlib) or HTML (plotly) by
its suffix: ``explore study plot`` (:func:`plot_study`) and ``explore study compare --out``
(:func:`compare_plot`).

What a plot shows: :mod:`studies.frontpoints`; drawn by :mod:`studies.frontpng` (matplotlib) and
:mod:`studies.fronthtml` (plotly); the hypervolume history by :mod:`studies.historyplot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from studies.catalog import Front, pareto_front
from studies.errors import ExploreError
from studies.fronthtml import compare_plotly, configured_html, front_html, import_plotly, save_html
from studies.frontpng import compare_figure, configured_png, front_png, save_png
from studies.frontpoints import plottable
from studies.outfile import check_out
from studies.replicates import ConfiguredFront
from studies.storage import parse_storage

__all__ = ["compare_plot", "plot_study"]


def plot_study(storage: str | None, name: str, out: Path, observed: bool = False) -> Path:
    """``explore study plot``: the front over configurations of study ``name`` with error bars
    (``observed``: Optuna's front over single trials instead)."""
    suffix = check_out(out, (".png", ".html"))
    if suffix == ".html":
        import_plotly()  # fail before reading anything when plotly is missing
    front = pareto_front(parse_storage(storage), name, include_dominated=True)
    if not front.study.is_explore:
        raise ExploreError(f"study {name!r} does not maximize accuracy and throughput: only "
                           "explore studies can be plotted")
    if not any(plottable(t) for t in front.trials):
        raise ExploreError(f"study {name!r} has no COMPLETE trials to plot yet")
    if observed:
        return front_png(front, out) if suffix == ".png" else front_html(front, out)
    return configured_png(front, out) if suffix == ".png" else configured_html(front, out)


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
        save_html(compare_plotly(fronts, configured), path)
        return path
    save_png(compare_figure(fronts, configured), path)
    return path
