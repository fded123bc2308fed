"""Pareto fronts and hypervolume for two maximized objectives (accuracy, throughput).

Pure Python: browsing commands use it without torch or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["crowding_distances", "dominates", "front_numbers", "hypervolume_2d",
           "hypervolume_contributions", "nondominated_ranks", "pareto_indices"]

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


def front_numbers(points: Sequence[tuple[int, tuple[float, ...]]],
                  directions: Sequence[str]) -> list[int]:
    """Trial numbers on the Pareto front of ``(number, values)``, as ``Study.best_trials``
    selects them (equal points all kept)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    scaled = [tuple(s * v for s, v in zip(signs, values, strict=True)) for _, values in points]
    if len(signs) == 2:
        keep = pareto_indices([(p[0], p[1]) for p in scaled])
    else:  # rare here: a plain O(n²) dominance check
        keep = [i for i, p in enumerate(scaled)
                if not any(all(x >= y for x, y in zip(q, p, strict=True)) and q != p
                           for q in scaled)]
    return [points[i][0] for i in keep]


def nondominated_ranks(points: Sequence[Point]) -> list[int]:
    """Front index of every point (0 = Pareto front), both objectives maximized."""
    n = len(points)
    dominated_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                dominated_by[i] += 1
    ranks = [0] * n
    current = [i for i in range(n) if dominated_by[i] == 0]
    level = 0
    while current:
        nxt = []
        for i in current:
            ranks[i] = level
            for j in beats[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        current = nxt
        level += 1
    return ranks


def crowding_distances(points: Sequence[Point]) -> list[float]:
    """NSGA-II crowding distance within one front (boundary points get infinity)."""
    n = len(points)
    dist = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for k in range(2):
        order = sorted(range(n), key=lambda i: points[i][k])
        lo, hi = points[order[0]][k], points[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for pos in range(1, n - 1):
            dist[order[pos]] += (points[order[pos + 1]][k] - points[order[pos - 1]][k]) / (hi - lo)
    return dist


def hypervolume_contributions(points: Sequence[Point]) -> list[float]:
    """Hypervolume (reference (0, 0)) that each point of one front alone adds.

    Scaling an objective scales every contribution alike, so their order needs no
    normalization. Equal points add nothing that the other does not already cover.
    """
    n = len(points)
    order = sorted(range(n), key=lambda i: (points[i][1], -points[i][0]))  # throughput ↑
    out = [0.0] * n
    for pos, i in enumerate(order):
        acc, thr = points[i]
        prev_thr = points[order[pos - 1]][1] if pos > 0 else 0.0
        next_acc = points[order[pos + 1]][0] if pos + 1 < n else 0.0
        out[i] = max(0.0, thr - prev_thr) * max(0.0, acc - next_acc)
    return out
