r"""Scoring of ``search_efficiency.py``'s runs: hypervolume over wall time, the time a curve
reaches baseline A's final value, the table and the plot, and reading saved runs back.

A run's points are ``[seconds since launch, accuracy, images/s, architecture]`` for each trial
COMPLETE within the budget; the hypervolume is taken against (0, 0) with the throughput divided
by the best of the whole benchmark (or, for HV\*, by each architecture's re-measured figure).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.pareto import hypervolume_2d

BASELINE_A = "A optuna-nsga2"
BASELINE_B = "B random"
GRID_STEP = 1.0  # seconds between points of the hypervolume curves


@dataclass
class Run:
    config: str
    seed: int
    budget: float
    db: str
    started: str = ""  # ISO time of the launch
    points: list[list[Any]] = field(default_factory=list)  # [seconds, accuracy, img/s, params]
    trained: int = 0  # trials that trained (complete or pruned, not duplicates)
    pruned: int = 0
    duplicates: int = 0
    stderr_tail: str = ""



# ---------------------------------------------------------------------------------------------
# hypervolume


def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """2-D hypervolume of maximized (accuracy, throughput) points against (0, 0): the one
    explore's own reports compute."""
    return hypervolume_2d(points)


def curve(run: Run, scale: float, grid: Sequence[float],
          throughput: dict[str, float] | None = None) -> list[float]:
    """Hypervolume of the trials finished by each time of ``grid`` (throughput / ``scale``)."""
    pts = sorted(run.points, key=lambda p: p[0])
    out, i, current = [], 0, []
    for t in grid:
        while i < len(pts) and pts[i][0] <= t:
            thr = pts[i][2] if throughput is None else throughput[
                json.dumps(pts[i][3], sort_keys=True)]
            current.append((pts[i][1], thr / scale))
            i += 1
        out.append(hypervolume(current))
    return out


def first_reach(values: Sequence[float], grid: Sequence[float], target: float) -> float | None:
    return next((t for t, v in zip(grid, values, strict=True) if v >= target - 1e-12), None)


@dataclass
class Row:
    config: str
    trained: float
    pruned: float
    duplicates: float
    final: list[float]
    reach: float | None  # time the mean curve reaches baseline A's final mean
    reached: int  # seeds whose own curve reaches it
    final_re: list[float]
    reach_re: float | None
    mean_curve: list[float]
    mean_curve_re: list[float]


def analyze(runs: Sequence[Run], throughput: dict[str, float] | None
            ) -> tuple[list[Row], list[float], dict[str, Any]]:
    budget = max(r.budget for r in runs)
    grid = [GRID_STEP * k for k in range(int(budget / GRID_STEP) + 1)]
    best = max((p[2] for r in runs for p in r.points), default=1.0)
    best_re = max(throughput.values(), default=1.0) if throughput else 1.0
    configs = list(dict.fromkeys(r.config for r in runs))
    curves = {c: [curve(r, best, grid) for r in runs if r.config == c] for c in configs}
    curves_re = {c: [curve(r, best_re, grid, throughput) for r in runs if r.config == c]
                 for c in configs} if throughput else {}

    def mean_curve(cs: list[list[float]]) -> list[float]:
        return [statistics.fmean(v) for v in zip(*cs, strict=True)]

    target = statistics.fmean(c[-1] for c in curves[BASELINE_A]) if BASELINE_A in curves else None
    target_re = (statistics.fmean(c[-1] for c in curves_re[BASELINE_A])
                 if throughput and BASELINE_A in curves_re else None)
    rows = []
    for c in configs:
        mine = [r for r in runs if r.config == c]
        mc = mean_curve(curves[c])
        rows.append(Row(
            config=c,
            trained=statistics.fmean(r.trained for r in mine),
            pruned=statistics.fmean(r.pruned for r in mine),
            duplicates=statistics.fmean(r.duplicates for r in mine),
            final=[cv[-1] for cv in curves[c]],
            reach=first_reach(mc, grid, target) if target is not None else None,
            reached=sum(first_reach(cv, grid, target) is not None for cv in curves[c])
            if target is not None else 0,
            final_re=[cv[-1] for cv in curves_re[c]] if throughput else [],
            reach_re=first_reach(mean_curve(curves_re[c]), grid, target_re)
            if target_re is not None else None,
            mean_curve=mc,
            mean_curve_re=mean_curve(curves_re[c]) if throughput else [],
        ))
    info = {"target": target, "target_re": target_re, "best_throughput": best,
            "best_throughput_re": best_re, "budget": budget}
    return rows, grid, info


def mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def seconds(value: float | None, budget: float) -> str:
    return f"{value:.0f} s ({value / budget:.2f})" if value is not None else "not reached"


def table(rows: Sequence[Row], info: dict[str, Any]) -> str:
    budget = info["budget"]
    lines = [
        "| configuration | trained | pruned | dups | final HV | t → A's HV (÷ budget) | seeds "
        "| final HV* | t → A's HV* |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.trained:.1f} | {r.pruned:.1f} | {r.duplicates:.1f} "
            f"| {mean_sd(r.final)} | {seconds(r.reach, budget)} | {r.reached}/{len(r.final)} "
            f"| {mean_sd(r.final_re)} | {seconds(r.reach_re, budget)} |")
    return "\n".join(lines)


def plot(rows: Sequence[Row], grid: Sequence[float], info: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("as measured by each trial", "mean_curve", "target")]
    if rows and rows[0].mean_curve_re:
        panels.append(("throughput re-measured after the runs (*)", "mean_curve_re",
                       "target_re"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (title, attr, target) in zip(axes[0], panels, strict=True):
        for r in rows:
            style = "--" if r.config in (BASELINE_A, BASELINE_B) else "-"
            ax.plot(grid, getattr(r, attr), style, label=r.config,
                    linewidth=2 if style == "--" else 1.3)
        if info[target] is not None:
            ax.axhline(info[target], color="grey", linewidth=0.8, linestyle=":")
            ax.text(grid[0], info[target], " baseline A's final", va="bottom", fontsize=8,
                    color="grey")
        ax.set_xlabel("wall time since launch (s)")
        ax.set_ylabel("hypervolume (accuracy × throughput / best throughput)")
        ax.set_title(f"digits, mean over seeds: {title}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_runs(dirs: Sequence[Path]
              ) -> tuple[list[Run], dict[str, float] | None, dict[str, Any]]:
    """The runs saved by earlier invocations; an architecture re-measured by several of them
    keeps its best figure."""
    runs: list[Run] = []
    throughput: dict[str, float] | None = {}
    metas = []
    for out in dirs:
        data = json.loads((out / "runs.json").read_text(encoding="utf-8"))
        runs += [Run(**r) for r in data["runs"]]
        metas.append(data.get("meta", {}))
        if data.get("remeasured") is None:
            throughput = None
        elif throughput is not None:
            for key, value in data["remeasured"].items():
                throughput[key] = max(throughput.get(key, 0.0), value)
    meta = metas[0] if len(metas) == 1 else {
        "date": ", ".join(m.get("date", "?") for m in metas),
        "command": " + ".join(m.get("command", "?") for m in metas)}
    return runs, throughput, meta
