"""Multi-objective early stopping (MO-ASHA, Schmucker et al. 2021) on top of Optuna.

Optuna's pruners refuse multi-objective studies. Here a trial is the point (validation accuracy
at an epoch, throughput) — throughput is measured before training, so it is known at every rung.
At each rung (epochs 1, η, η², … below the budget) the trial continues only if it ranks in the top
1/η of all trials that reached that rung, ranked by non-dominated sorting with ties broken by
crowding distance, then by hypervolume contribution. Trials of every process and machine are
ranked together: their per-epoch accuracies live in user attrs written as they happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from studies.pareto import crowding_distances, hypervolume_contributions, nondominated_ranks

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
