"""Multi-objective early stopping (MO-ASHA, Schmucker et al. 2021) on top of Optuna.

Optuna's pruners refuse multi-objective studies. Here a trial is the point (validation accuracy
at an epoch, throughput) — throughput is measured before training, so it is known at every rung.
At each rung (epochs 1, η, η², … below the budget) the trial continues only if it ranks in the top
1/η of all trials that reached that rung, ranked by non-dominated sorting with ties broken by
crowding distance, then by hypervolume contribution. Trials of every process and machine are
ranked together: their per-epoch accuracies live in user attrs written as they happen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "RungDecision",
    "crowding_distances",
    "decide",
    "hypervolume_contributions",
    "nondominated_ranks",
    "rungs",
]

Point = tuple[float, float]


def rungs(epochs: int, eta: int, first: int = 1) -> list[int]:
    """Epochs at which trials are compared: first, first·η, first·η², … strictly below
    ``epochs`` (the last epoch is the full budget, never a rung)."""
    out = []
    r = first
    while r < epochs:
        out.append(r)
        r *= eta
    return out


def nondominated_ranks(points: Sequence[Point]) -> list[int]:
    """Front index of every point (0 = Pareto front), both objectives maximized."""
    n = len(points)
    dominated_by = [0] * n
    dominates: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            a, b = points[i], points[j]
            if a[0] >= b[0] and a[1] >= b[1] and a != b:
                dominates[i].append(j)
                dominated_by[j] += 1
            elif b[0] >= a[0] and b[1] >= a[1] and a != b:
                dominates[j].append(i)
                dominated_by[i] += 1
    ranks = [0] * n
    current = [i for i in range(n) if dominated_by[i] == 0]
    level = 0
    while current:
        nxt = []
        for i in current:
            ranks[i] = level
            for j in dominates[i]:
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


@dataclass(frozen=True)
class RungDecision:
    keep: bool
    rank: int  # 1-based position of the trial among those at the rung
    size: int  # trials at the rung, including this one
    allowed: int  # how many positions continue

    def reason(self, epoch: int) -> str:
        return (f"MO-ASHA rung at epoch {epoch}: ranked {self.rank} of {self.size} "
                f"(top {self.allowed} continue)")


def decide(me: Point, others: Sequence[Point], eta: int, min_trials: int) -> RungDecision:
    """Whether the trial at ``me`` continues, given the points of other trials at this rung."""
    points = [me, *others]
    size = len(points)
    allowed = max(1, size // eta)
    if size < min_trials:
        return RungDecision(True, 1, size, size)
    ranks = nondominated_ranks(points)
    crowd = [0.0] * size
    gain = [0.0] * size
    for level in set(ranks):
        members = [i for i in range(size) if ranks[i] == level]
        # Equal points share one entry, so that they tie on everything that follows.
        front = sorted({points[i] for i in members})
        scores = dict(zip(front, zip(crowding_distances(front), hypervolume_contributions(front),
                                     strict=True), strict=True))
        for i in members:
            crowd[i], gain[i] = scores[points[i]]
    # Sort by front, then by crowding (more isolated first), then by hypervolume contribution
    # (the two ends of a front are both infinitely isolated), then by the point itself, so
    # that distinct points have one consistent order. Only equal points remain tied: the trial
    # being judged goes last among them, so clones never all pass.
    order = sorted(range(size), key=lambda i: (ranks[i], -crowd[i], -gain[i],
                                               tuple(-v for v in points[i]), i == 0))
    position = order.index(0) + 1
    return RungDecision(position <= allowed, position, size, allowed)
