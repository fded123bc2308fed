"""The noise-aware Pareto front over configurations measured by replicates.

The front: draws of the TRUE means given the data, the Pareto set of each draw, and the share of
draws in which each configuration is on it: the posterior probability of being Pareto-optimal.
Per draw a pooled sigma from sigma² = df·s²/chi²_df (a 1/sigma prior), shared by all
configurations. Then, by default (``pooling="partial"``), the true means of each objective are
drawn as spread around a common mean by an amount tau learnt from the configurations themselves
(a hierarchical normal model, :func:`_partial_pool`): where the observed means differ by no more
than the noise explains, tau is small and every configuration is pulled towards the others; where
they are spread out, tau is large and each keeps its own mean. With flat priors on each mean
(``pooling="none"``: mean_c + sigma/sqrt(n_c)·Z) a study of tied designs overstates how far apart
they are (the winner's curse): simulated with accuracies within 0.4 points under 3 points of seed
noise, 77% of the P >= 0.95 claims were truly on the front, against 90% with partial pooling
(tests/studies/test_calibration.py). The per-configuration intervals stay each configuration's
own (mean ± t·se): they answer "what is this configuration's mean", the front answers "which are
best", where selection among many is what misleads.

Ties: with a ``tolerance`` (``[study] accuracy_tolerance``, in points), a configuration counts as
dominated by a faster one that is at most that much less accurate (:func:`front_mask`). Without
it, designs whose true accuracies tie can never be told apart by speed: among k+1 tied
configurations the slowest stays on the front in about 1/(k+1) of the draws however many runs
each gets, so with fewer than 20 explored nothing tied is ever confidently dominated.

``plausible`` is what a user should look at; ``dominated`` is what racing may stop spending
replicates on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from studies.confidence import ConfigEstimate, NoiseModel, Replicate, estimate
from studies.pareto import hypervolume_2d

__all__ = ["NoisyFront", "front_mask", "noisy_front", "pareto_mask"]

PLAUSIBLE = 0.5  # P(Pareto-optimal) from which a configuration is on the plausible front
POOLINGS = ("partial", "none")  # how the true means are drawn: spread around a common mean, or not
PARTIAL_MIN_CONFIGS = 3  # with fewer configurations their spread is unknown: no partial pooling
TAU_GRID = 64  # cells of the grid over the spread of the true means
SIGMA_BINS = 16  # levels of the noise sd at which the spread's likelihood is computed

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]



def pareto_mask(first: npt.ArrayLike, second: npt.ArrayLike) -> BoolArray:
    """Non-dominated points of each row, both objectives maximized (vectorized).

    ``first`` and ``second`` are arrays of shape (..., k): each row is a set of k points. Equal
    points are all kept, as :func:`studies.pareto.pareto_indices` keeps them.
    """
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if a.shape[-1] == 0:
        return np.zeros(a.shape, dtype=bool)
    # Sort each row by first descending, then second descending: a point's dominators all come
    # before it, and equal points are adjacent.
    order = np.lexsort((-b, -a), axis=-1)
    sa = np.take_along_axis(a, order, axis=-1)
    sb = np.take_along_axis(b, order, axis=-1)
    k = a.shape[-1]
    best_before = np.full_like(sb, -np.inf)  # max of `second` over earlier positions
    best_before[..., 1:] = np.maximum.accumulate(sb, axis=-1)[..., :-1]
    new = np.ones(sa.shape, dtype=bool)
    new[..., 1:] = (sa[..., 1:] != sa[..., :-1]) | (sb[..., 1:] != sb[..., :-1])
    start = np.maximum.accumulate(np.where(new, np.arange(k), 0), axis=-1)
    # Everything before a point's group of equals is better in `first` or equal in `first` and
    # better in `second`: the point is dominated iff one of those is at least as good in `second`.
    keep_sorted = np.take_along_axis(best_before, start, axis=-1) < sb
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return keep


def front_mask(first: npt.ArrayLike, second: npt.ArrayLike, tolerance: float = 0.0) -> BoolArray:
    """The front of each row with ties in ``first`` up to ``tolerance`` given to ``second``.

    From the highest ``second`` down, a point is kept when its ``first`` exceeds that of every
    point kept before it by more than ``tolerance``: each member is worth its lower ``second``
    (it is more than ``tolerance`` better in ``first`` than every member above it in
    ``second``). Measured against kept points only, so a chain of small steps cannot remove a
    point that is well above the members above it (A 94, B 94.8, C 95.6 with 1 point of
    tolerance: B goes, A and C stay). With ``tolerance`` 0 this is :func:`pareto_mask`.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    if tolerance == 0:
        return pareto_mask(first, second)
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    order = np.lexsort((-a, -b), axis=-1)  # by `second` descending, then `first` descending
    sa = np.take_along_axis(a, order, axis=-1)
    keep_sorted = np.zeros(sa.shape, dtype=bool)
    best = np.full(sa.shape[:-1], -np.inf)  # `first` of the last kept point: the best so far
    for j in range(sa.shape[-1]):  # one vector step per point, across all rows at once
        kept = sa[..., j] > best + tolerance
        keep_sorted[..., j] = kept
        best = np.where(kept, sa[..., j], best)
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return keep


def _hypervolume_rows(first: FloatArray, second: FloatArray,
                      reference: tuple[float, float]) -> FloatArray:
    """:func:`studies.pareto.hypervolume_2d` of each row of points (vectorized)."""
    if first.shape[-1] == 0:
        return np.zeros(first.shape[:-1])
    order = np.lexsort((-second, -first), axis=-1)
    a = np.take_along_axis(first, order, axis=-1) - reference[0]
    b = np.take_along_axis(second, order, axis=-1)
    covered = np.full_like(b, reference[1])
    covered[..., 1:] = np.maximum(np.maximum.accumulate(b, axis=-1)[..., :-1], reference[1])
    # Points not beyond the reference in `first` sort last, so clipping them adds nothing.
    return np.sum(np.clip(a, 0.0, None) * np.clip(b - covered, 0.0, None), axis=-1)


@dataclass(frozen=True)
class NoisyFront:
    """The Pareto front over configurations, with the noise taken into account.

    Attributes:
        estimates: every configuration's estimates, ordered by id.
        probability: config -> P(it is Pareto-optimal), by Monte Carlo over ``draws`` (its
            Monte Carlo error is at most 0.5/sqrt(draws)). With unknown noise: 1.0 for the members
            of the observed front (of the means), 0.0 for the rest.
        plausible: configurations with probability >= 0.5; when none reaches 0.5, the most
            probable one(s). What a user should be shown as "the front".
        dominated: the confidently dominated, probability <= 1 - confidence (0.05 at 95%): racing
            may stop spending replicates on them. Empty when the noise is unknown.
        hypervolume: hypervolume of the plausible configurations' means (geometric-mean
            throughput), against ``reference``.
        hypervolume_low: interval of that hypervolume over the draws of the true means (None when
            the noise is unknown).
        hypervolume_high: its upper end.
        draws: Monte Carlo draws made (0 when the noise is unknown).
        seed: the numpy seed used: the same input and seed give the same output.
        noise: the pooled noise model.
        reference: the hypervolume's reference point (accuracy, throughput).
        tolerance: accuracy (a fraction: 0.005 = half a point) up to which a faster
            configuration counts as at least as accurate (:func:`front_mask`); 0: Pareto's
            strict rule.
        pooling: how the true means were drawn ("partial" or "none", see the module docstring).
    """

    estimates: list[ConfigEstimate]
    probability: dict[str, float]
    plausible: list[str]
    dominated: list[str]
    hypervolume: float
    hypervolume_low: float | None
    hypervolume_high: float | None
    draws: int
    seed: int
    noise: NoiseModel
    reference: tuple[float, float] = (0.0, 0.0)
    tolerance: float = 0.0
    pooling: str = "partial"

    def to_dict(self) -> dict[str, Any]:
        return {"estimates": [e.to_dict() for e in self.estimates],
                "probability": dict(self.probability), "plausible": list(self.plausible),
                "dominated": list(self.dominated), "hypervolume": self.hypervolume,
                "hypervolume_low": self.hypervolume_low,
                "hypervolume_high": self.hypervolume_high, "draws": self.draws,
                "seed": self.seed, "noise": self.noise.to_dict(),
                "reference": list(self.reference), "tolerance": self.tolerance,
                "pooling": self.pooling}


def _sigma_draws(rng: np.random.Generator, sd: float, noise: NoiseModel,
                 draws: int) -> FloatArray:
    """Per-draw noise sd, shape (draws, 1): from its posterior when pooled, fixed for a prior."""
    if noise.source == "prior":
        return np.full((draws, 1), sd)
    return sd * np.sqrt(noise.df / rng.chisquare(noise.df, size=(draws, 1)))


def _partial_pool(rng: np.random.Generator, means: FloatArray, n: FloatArray, sigma: FloatArray,
                  sd: float) -> FloatArray:
    """Draws of the true means when they are themselves spread around a common mean.

    Model: theta_c ~ N(mu, tau²), the mean of configuration c ~ N(theta_c, sigma²/n_c); flat prior
    on mu, uniform prior on tau over a grid (:data:`TAU_GRID` cells up to well past the means'
    own spread). Per draw, with that draw's sigma: tau from its posterior on the grid (mu
    integrated out, as in Gelman et al.'s hierarchical normal model; the likelihood is computed
    at :data:`SIGMA_BINS` quantiles of the sigma draws, the nearest one standing for each draw),
    then mu given tau, then every theta_c given both: B_c·mean_c + (1 - B_c)·mu with
    B_c = tau² / (tau² + se_c²). Shape (draws, configs).
    """
    top = 4.0 * float(np.std(means, ddof=1)) + 4.0 * sd / math.sqrt(float(n.min()))
    step = max(top, 1e-12) / TAU_GRID
    grid = (np.arange(TAU_GRID) + 0.5) * step
    flat = sigma[:, 0]
    levels = np.quantile(flat, (np.arange(SIGMA_BINS) + 0.5) / SIGMA_BINS)
    nearest = np.abs(flat[:, None] - levels[None, :]).argmin(axis=1)
    # The tau likelihood at every (sigma level, tau) pair: shape (levels, grid, configs).
    w = 1.0 / (grid[None, :, None] ** 2 + (levels[:, None, None] ** 2) / n[None, None, :])
    total = w.sum(axis=2)
    centre = (w * means).sum(axis=2) / total
    loglik = 0.5 * (np.log(w).sum(axis=2) - (w * (means - centre[..., None]) ** 2).sum(axis=2)
                    - np.log(total))
    cdf = np.cumsum(np.exp(loglik - loglik.max(axis=1, keepdims=True)), axis=1)[nearest]
    pick = (cdf < rng.uniform(size=(flat.size, 1)) * cdf[:, -1:]).sum(axis=1)
    tau = grid[np.minimum(pick, TAU_GRID - 1)] + step * (rng.uniform(size=flat.size) - 0.5)
    tau2 = tau[:, None] ** 2
    se2 = sigma ** 2 / n  # (draws, configs): each draw's own sigma from here on
    w = 1.0 / (tau2 + se2)
    total = w.sum(axis=1, keepdims=True)
    mu = (w * means).sum(axis=1, keepdims=True) / total + rng.standard_normal(
        total.shape) / np.sqrt(total)
    shrink = tau2 / (tau2 + se2)
    return (shrink * means + (1.0 - shrink) * mu
            + np.sqrt(shrink * se2) * rng.standard_normal(se2.shape))


def _true_draws(estimates: Sequence[ConfigEstimate], noise: NoiseModel, draws: int,
                rng: np.random.Generator, pooling: str) -> tuple[FloatArray, FloatArray]:
    """Draws of the true mean accuracy and mean log-throughput, each of shape (draws, configs)."""
    assert noise.accuracy_sd is not None and noise.log_throughput_sd is not None
    n = np.array([float(e.n) for e in estimates])
    acc = np.array([e.accuracy.mean for e in estimates])
    log_thr = np.log([e.throughput.mean for e in estimates])
    # Throughput's sd scales with the speed (NoiseModel.log_throughput_slope): configuration c's
    # sd is the centre's times scale_c, the same as n_c / scale_c² replicates at the centre's sd.
    scale = np.exp(noise.log_throughput_slope * (log_thr - noise.log_throughput_centre))
    thr_n = n / scale ** 2
    acc_sigma = _sigma_draws(rng, noise.accuracy_sd, noise, draws)
    thr_sigma = _sigma_draws(rng, noise.log_throughput_sd, noise, draws)
    if pooling == "partial" and len(estimates) >= PARTIAL_MIN_CONFIGS:
        return (_partial_pool(rng, acc, n, acc_sigma, noise.accuracy_sd),
                _partial_pool(rng, log_thr, thr_n, thr_sigma, noise.log_throughput_sd))
    acc_true = acc + acc_sigma / np.sqrt(n) * rng.standard_normal((draws, len(estimates)))
    log_true = log_thr + thr_sigma / np.sqrt(thr_n) * rng.standard_normal(
        (draws, len(estimates)))
    return acc_true, log_true


def _plausible(probability: Mapping[str, float]) -> list[str]:
    chosen = [c for c, p in probability.items() if p >= PLAUSIBLE]
    if chosen or not probability:
        return chosen
    top = max(probability.values())
    return [c for c, p in probability.items() if p == top]


def _observed(estimates: Sequence[ConfigEstimate], tolerance: float) -> set[int]:
    """Indices of the front of the means (the throughputs' geometric means)."""
    if not estimates:
        return set()
    keep = front_mask([[e.accuracy.mean for e in estimates]],
                      [[math.log(e.throughput.mean) for e in estimates]], tolerance)[0]
    return {i for i, k in enumerate(keep) if k}


def _points(estimates: Sequence[ConfigEstimate], names: Iterable[str]) -> list[tuple[float, float]]:
    wanted = set(names)
    return [(e.accuracy.mean, e.throughput.mean) for e in estimates if e.config in wanted]


def noisy_front(replicates: Sequence[Replicate], confidence: float = 0.95, draws: int = 2000,
                seed: int = 0, reference: tuple[float, float] = (0.0, 0.0),
                prior_sd: tuple[float, float] | None = None, tolerance: float = 0.0,
                pooling: str = "partial") -> NoisyFront:
    """The front over configurations: estimates, P(Pareto-optimal), plausible and dominated sets.

    Args:
        replicates: the replicates of every configuration (see :func:`estimate`).
        confidence: level of the intervals and of "confidently dominated".
        draws: Monte Carlo draws of the true means (vectorized: 200 configurations x 2000 draws
            take a few tens of milliseconds).
        seed: numpy ``default_rng`` seed.
        reference: (accuracy, throughput) reference point of the hypervolume.
        prior_sd: see :func:`estimate`.
        tolerance: accuracy difference (a fraction) within which the faster configuration
            wins (:func:`front_mask`); 0 is the strict Pareto rule.
        pooling: "partial" (the default): the true means are drawn as spread around a common
            mean by an amount learnt from the configurations themselves (see the module
            docstring); "none": flat priors, each configuration on its own.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    noise, estimates = estimate(replicates, confidence, prior_sd)
    names = [e.config for e in estimates]
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    if not noise.known or not estimates:
        observed = _observed(estimates, tolerance)
        probability = {c: 1.0 if i in observed else 0.0 for i, c in enumerate(names)}
        plausible = _plausible(probability)
        area = hypervolume_2d(_points(estimates, plausible), reference)
        return NoisyFront(estimates, probability, plausible, [], area, None, None, 0, seed,
                          noise, reference, tolerance, pooling)
    acc, log_thr = _true_draws(estimates, noise, draws, np.random.default_rng(seed), pooling)
    share = front_mask(acc, log_thr, tolerance).mean(axis=0)
    probability = {c: float(p) for c, p in zip(names, share, strict=True)}
    plausible = _plausible(probability)
    dominated = [c for c, p in probability.items() if p <= 1.0 - confidence]
    chosen = [i for i, c in enumerate(names) if c in set(plausible)]
    # With 1-2 degrees of freedom the sigma draws are heavy-tailed (a few are huge): the
    # hypervolume interval is then very wide, but finite (exp overflows past log 709).
    areas = _hypervolume_rows(acc[:, chosen], np.exp(np.clip(log_thr[:, chosen], -700, 700)),
                              reference)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(areas, [tail, 1.0 - tail])
    area = hypervolume_2d(_points(estimates, plausible), reference)
    return NoisyFront(estimates, probability, plausible, dominated, area, float(low), float(high),
                      draws, seed, noise, reference, tolerance, pooling)
