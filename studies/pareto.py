"""Pareto fronts and hypervolume for two maximized objectives (accuracy, throughput).

Pure Python: browsing commands use it without torch or numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "hypervolume_2d", "pareto_indices"]

Point = tuple[float, float]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one (maximizing)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_indices(points: Sequence[Point]) -> list[int]:
    """Indices (ascending) of the non-dominated points, as ``Study.best_trials`` selects them.

    Equal points are all kept (neither dominates the other), as Optuna does.
    """
    by_first: dict[float, list[int]] = {}
    for i, p in enumerate(points):
        by_first.setdefault(p[0], []).append(i)
    front: list[int] = []
    best_second = float("-inf")  # best second objective among strictly larger first objectives
    for first in sorted(by_first, reverse=True):
        group = by_first[first]
        top = max(points[i][1] for i in group)
        if top > best_second:
            front.extend(i for i in group if points[i][1] == top)
            best_second = top
    return sorted(front)


def hypervolume_2d(points: Sequence[Point], reference: Point = (0.0, 0.0)) -> float:
    """Area dominated by ``points`` and bounded below by ``reference`` (both maximized).

    Points not strictly better than the reference in both objectives contribute nothing.
    """
    useful = [p for p in points if p[0] > reference[0] and p[1] > reference[1]]
    useful.sort(key=lambda p: (-p[0], -p[1]))  # accuracy descending
    area = 0.0
    covered_y = reference[1]
    for x, y in useful:
        if y > covered_y:
            area += (x - reference[0]) * (y - covered_y)
            covered_y = y
    return area
