"""Effects of a factor with intervals and power: paired comparisons and trends.

A *pair* is two configurations equal in everything but the factor (norm=double vs softmax);
replicate r of both shares its seeds, so their difference at a shared index cancels what the seed
does to both alike. Units of analysis (the choice that makes the intervals honest):

- Several pairs: the pairs differ in their true effect (the factor interacts with the rest of the
  design), and the question is the average effect over the space's pairs. So each pair gives ONE
  unit, its mean difference over shared replicate indices (or, when it shares none, the
  difference of the two sides' means), and the interval is a t interval over pairs
  (df = pairs - 1). Replicates sharpen each unit; only more pairs shrink the interaction part.
- Exactly one pair: the replicate differences at shared indices are the units (a paired t test,
  df = shared - 1; replicates the other side lacks are not used); the interval is about that pair.
  With fewer than 2 shared replicates there is no interval.

Power: the variance of a pair's mean difference is between-pair variance (the interaction, tau²)
plus seed variance over the replicates (sigma_d²/m, sigma_d² pooled from pairs with 2+ shared
replicates). ``detectable`` is the effect the study would detect with 80% power (exact, by the
noncentral t); ``Effect.seeds_needed`` says how many replicates per pair would detect a given
effect, or None when seeds cannot get there because tau² alone is too large (then
``Effect.pairs_needed`` says how many pairs would).

``log=True``: the values are throughputs; the effect is a difference of logs (a log-ratio) and
``ratio``/``ratio_low``/``ratio_high`` give it as a factor (1.12 = 12% faster).

Trends over a numeric factor (memory size S, heads) are slopes per doubling (on log2 of the factor)
within groups of configurations equal except that factor, made into an :class:`Effect` the same way
(groups as pairs). A trend is claimed only when its interval excludes 0
(:func:`studies.verdicts.trend_verdict`).

Two estimands (``Effect.scope``):

- ``"space"`` (:func:`paired_effect`, :func:`trend`): the average effect over the space's pairs,
  the measured ones a sample of them. Its interval carries the pairs' differences from each other
  and uses df = pairs - 1: with two or three pairs it is honest and useless (t at df 1 is 12.7).
- ``"measured"`` (:func:`measured_effect`, :func:`measured_trend`): the average effect over the
  pairs (groups) the study measured, the true means of exactly those configurations. Only the seed
  noise is uncertain, and it is the study's pooled seed noise (:class:`Noise`, every configuration
  with 2+ runs contributes, so its df is large), not the pairs' few differences. Each pair's value
  is the difference of its two sides' means over all their runs, with variance
  sigma²(1/n_a + 1/n_b): shared seeds can only make that smaller when they correlate the sides
  positively, so the interval is conservative there. When the study has measured every pair of a
  finite space, this is the space's average effect exactly. See docs/replicates.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from studies.confidence import Estimate, pooled_sd
from studies.tdist import ncp_for_power, t_cdf, t_ppf

__all__ = ["Effect", "LevelEstimate", "Noise", "Trend", "measured_effect", "measured_trend",
           "paired_effect", "trend"]

Key = TypeVar("Key", bound=Hashable)
Level = TypeVar("Level", bound=float)  # factor values: ints are fine too

POWER = 0.8
MAX_SEEDS = 1_000_000  # seeds_needed gives up (None) beyond this
MAX_PAIRS = 1_000_000


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _variance(values: Sequence[float]) -> float:
    centre = _mean(values)
    return math.fsum((v - centre) ** 2 for v in values) / (len(values) - 1)


@dataclass(frozen=True)
class Effect:
    """An average effect of "a" over "b" with its interval and the study's power.

    Attributes:
        mean: a minus b: accuracy units (0.004 = 0.4 points), or log-ratio when ``log``.
        se: its standard error; None when there are too few data for one.
        df: degrees of freedom of the t interval (0 without one).
        low: lower end of the interval (None without one).
        high: upper end.
        p_better: P(a is better than b), from the t distribution of the estimate.
        pairs: units used: configuration pairs (or groups, for a trend).
        differences: (pair, replicate) differences used (per-replicate slopes for a trend).
        detectable: the smallest |effect| detected with 80% power at two-sided
            alpha = 1 - confidence, in the units of ``mean``.
        confidence: level of the interval.
        log: whether the values were log-throughputs.
        between_var: variance of the true effect between pairs (tau²), None when unknown
            (0 for the ``"measured"`` scope, where the pairs are the estimand).
        within_var: seed variance of one replicate difference (sigma_d²), None when unknown;
            for the ``"measured"`` scope, the variance of one pair's (group's) value with one
            run on each side (level), from the pooled seed noise.
        scope: ``"space"``: the average over the space's pairs (df = pairs - 1);
            ``"measured"``: the average over the measured pairs, with the pooled seed noise.
    """

    mean: float
    se: float | None
    df: float
    low: float | None
    high: float | None
    p_better: float | None
    pairs: int
    differences: int
    detectable: float | None
    confidence: float = 0.95
    log: bool = False
    between_var: float | None = None
    within_var: float | None = None
    scope: str = "space"

    @property
    def known(self) -> bool:
        """Whether there is an interval."""
        return self.se is not None

    @property
    def ratio(self) -> float | None:
        """exp(mean) for a log effect: a as a multiple of b."""
        return math.exp(self.mean) if self.log else None

    @property
    def ratio_low(self) -> float | None:
        return math.exp(self.low) if self.log and self.low is not None else None

    @property
    def ratio_high(self) -> float | None:
        return math.exp(self.high) if self.log and self.high is not None else None

    def _alpha(self) -> float:
        return 1.0 - self.confidence

    def _detectable_with(self, seeds: int, pairs: int) -> float | None:
        """Detectable effect with ``seeds`` shared replicates in each of ``pairs`` pairs."""
        if self.within_var is None:
            return None
        if self.scope == "measured":
            if seeds < 1 or pairs < 1:
                return None
            return ncp_for_power(self.df, self._alpha(), POWER) * math.sqrt(
                self.within_var / seeds / pairs)
        if pairs == 1:
            if seeds < 2:
                return None
            return ncp_for_power(seeds - 1, self._alpha(), POWER) * math.sqrt(
                self.within_var / seeds)
        if pairs < 2 or self.between_var is None:
            return None
        var = (self.between_var + self.within_var / seeds) / pairs
        return ncp_for_power(pairs - 1, self._alpha(), POWER) * math.sqrt(var)

    def seeds_needed(self, delta: float) -> int | None:
        """Shared replicates per pair that would detect an effect of ``|delta|`` with 80% power
        (same pairs). None when unknown (no seed variance yet) or when seeds alone cannot get
        there: the between-pair spread is too large, and more pairs are needed (see
        :meth:`pairs_needed`)."""
        return _smallest(lambda m: self._detectable_with(m, self.pairs), abs(delta),
                         start=2 if self.pairs == 1 and self.scope == "space" else 1,
                         stop=MAX_SEEDS)

    def pairs_needed(self, delta: float, seeds: int) -> int | None:
        """Pairs, each with ``seeds`` shared replicates, that would detect ``|delta|`` with 80%
        power. None when unknown (fewer than 2 pairs so far, or no seed variance)."""
        if (self.pairs < 2 and self.scope == "space") or seeds < 1:
            return None
        return _smallest(lambda p: self._detectable_with(seeds, p), abs(delta),
                         start=1 if self.scope == "measured" else 2, stop=MAX_PAIRS)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mean": self.mean, "se": self.se, "df": self.df, "low": self.low, "high": self.high,
            "p_better": self.p_better, "pairs": self.pairs, "differences": self.differences,
            "detectable": self.detectable, "confidence": self.confidence, "log": self.log,
            "between_var": self.between_var, "within_var": self.within_var,
            "scope": self.scope}
        if self.log:
            out.update(ratio=self.ratio, ratio_low=self.ratio_low, ratio_high=self.ratio_high,
                       detectable_ratio=None if self.detectable is None
                       else math.exp(self.detectable))
        return out


def _smallest(detectable: Callable[[int], float | None], delta: float, start: int,
              stop: int) -> int | None:
    """Smallest count in [start, stop] whose detectable effect is <= delta (it decreases with
    the count), or None."""
    if not delta > 0:
        return None
    if (at_stop := detectable(stop)) is None or at_stop > delta:
        return None
    hi = start
    while (d := detectable(hi)) is None or d > delta:  # gallop, then bisect
        hi = min(2 * hi, stop)
    lo = max(start, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        d = detectable(mid)
        if d is not None and d <= delta:
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass(frozen=True)
class _Unit:
    """One pair (or group): its paired values, and the value to use when it has none."""

    paired: tuple[float, ...]
    fallback: float
    fallback_seeds: float  # effective replicate count behind the fallback, for the power split

    @property
    def value(self) -> float:
        return _mean(self.paired) if self.paired else self.fallback

    @property
    def seeds(self) -> float:
        return len(self.paired) if self.paired else self.fallback_seeds


def _from_units(mean: float, se: float | None, df: float, confidence: float, log: bool,
                counts: tuple[int, int], variances: tuple[float | None, float | None],
                scope: str = "space") -> Effect:
    if se is None or not df > 0 or (scope == "space" and df < 1):
        return Effect(mean, None, 0, None, None, None, counts[0], counts[1], None, confidence,
                      log, *variances, scope=scope)
    alpha = 1.0 - confidence
    half = t_ppf(1.0 - alpha / 2.0, df) * se
    if se > 0:
        p_better = t_cdf(mean / se, df)
    else:
        p_better = 1.0 if mean > 0 else 0.0 if mean < 0 else 0.5
    detectable = ncp_for_power(df, alpha, POWER) * se
    return Effect(mean, se, df, mean - half, mean + half, p_better, counts[0], counts[1],
                  detectable, confidence, log, *variances, scope=scope)


def _combine(units: Sequence[_Unit], confidence: float, log: bool) -> Effect:
    """The effect over units: t over units when 2+, over one unit's paired values when 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not units:
        raise ValueError("no pairs to compare")
    differences = sum(len(u.paired) for u in units)
    within_sd, _ = pooled_sd([u.paired for u in units])
    within = None if within_sd is None else within_sd ** 2
    if len(units) == 1:
        values = units[0].paired
        if len(values) < 2:
            return _from_units(units[0].value, None, 0, confidence, log, (1, differences),
                               (None, within))
        se = math.sqrt(_variance(values) / len(values))
        return _from_units(_mean(values), se, len(values) - 1, confidence, log, (1, differences),
                           (None, within))
    per_unit = [u.value for u in units]
    spread = _variance(per_unit)
    between = None
    if within is not None:  # tau² = var(unit means) - the seed part of it
        between = max(0.0, spread - within * _mean([1.0 / u.seeds for u in units]))
    return _from_units(_mean(per_unit), math.sqrt(spread / len(units)), len(units) - 1,
                       confidence, log, (len(units), differences), (between, within))


def _transform(value: float, log: bool) -> float:
    if not math.isfinite(value) or (log and value <= 0):
        raise ValueError(f"values must be finite{' and > 0' if log else ''}, got {value}")
    return math.log(value) if log else value


def _pair_unit(a: Mapping[int, float], b: Mapping[int, float], log: bool) -> _Unit:
    if not a or not b:
        raise ValueError("each side of a pair needs at least one replicate")
    shared = sorted(set(a) & set(b))
    paired = tuple(_transform(a[i], log) - _transform(b[i], log) for i in shared)
    side_a = [_transform(v, log) for v in a.values()]
    side_b = [_transform(v, log) for v in b.values()]
    # Unpaired: var(mean a - mean b) = s²(1/n_a + 1/n_b), as s_d²/m with s_d² ≈ 2s² (no pairing
    # gain) gives m = 2 / (1/n_a + 1/n_b). An approximation, used only to split the power.
    seeds = 2.0 / (1.0 / len(side_a) + 1.0 / len(side_b))
    return _Unit(paired, _mean(side_a) - _mean(side_b), seeds)


def paired_effect(pairs: Mapping[Key, tuple[Mapping[int, float], Mapping[int, float]]],
                  confidence: float = 0.95, log: bool = False) -> Effect:
    """The average effect of a factor, a minus b, over pairs of configurations.

    Args:
        pairs: pair key -> (replicate index -> value for side a, the same for side b). Values are
            accuracies (fractions) or, with ``log``, throughputs.
        confidence: level of the interval.
        log: analyse log values; the effect is then a log-ratio (see ``Effect.ratio``).

    Returns:
        With 2+ pairs, a t interval over the pairs' mean differences (df = pairs - 1); with one
        pair, a paired t interval over its shared replicates (df = shared - 1), or none with
        fewer than 2 shared replicates. Raises ValueError when ``pairs`` is empty.
    """
    return _combine([_pair_unit(a, b, log) for a, b in pairs.values()], confidence, log)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs."""
    mx, my = _mean(xs), _mean(ys)
    return (math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / math.fsum((x - mx) ** 2 for x in xs))


def _group_unit(levels: Mapping[float, Mapping[int, float]], log: bool) -> _Unit:
    values = sorted(levels)
    xs = [math.log2(v) for v in values]
    complete = sorted(set.intersection(*(set(levels[v]) for v in values)))
    # Per replicate index present at every level: its own slope (the seeds are shared).
    paired = tuple(_slope(xs, [_transform(levels[v][i], log) for v in values]) for i in complete)
    means = [_mean([_transform(y, log) for y in levels[v].values()]) for v in values]
    counts = [len(levels[v]) for v in values]
    return _Unit(paired, _slope(xs, means), len(counts) / sum(1.0 / c for c in counts))


@dataclass(frozen=True)
class LevelEstimate:
    """One value of the factor over the groups that have it.

    Attributes:
        value: the factor's value (S = 32).
        configs: configurations (groups) with this value.
        replicates: their replicates in all.
        estimate: mean over those configurations of their means (geometric for throughput), with
            an interval from the pooled seed noise: it is about these configurations, not about
            the space.
    """

    value: float
    configs: int
    replicates: int
    estimate: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "configs": self.configs, "replicates": self.replicates,
                **self.estimate.to_dict()}


@dataclass(frozen=True)
class Trend:
    """The change of an objective per doubling of a numeric factor.

    Attributes:
        per_doubling: the average slope on log2(factor) over groups, as an :class:`Effect`
            (accuracy units, or log-ratio per doubling with ``log``).
        levels: per factor value, ascending.
    """

    per_doubling: Effect
    levels: list[LevelEstimate]

    def to_dict(self) -> dict[str, Any]:
        return {"per_doubling": self.per_doubling.to_dict(),
                "levels": [lv.to_dict() for lv in self.levels]}


def _levels(groups: Sequence[Mapping[float, Mapping[int, float]]], confidence: float,
            log: bool) -> list[LevelEstimate]:
    cells = [[_transform(y, log) for y in reps.values()] for g in groups for reps in g.values()]
    sd, df = pooled_sd(cells)
    mult = t_ppf(1.0 - (1.0 - confidence) / 2.0, df) if df else None
    out = []
    for value in sorted({v for g in groups for v in g}):
        here = [[_transform(y, log) for y in g[value].values()] for g in groups if value in g]
        centre = _mean([_mean(c) for c in here])
        # Mean of cell means: variance sigma²/G² · sum(1/n_g).
        se = None if sd is None else sd * math.sqrt(sum(1.0 / len(c) for c in here)) / len(here)
        out.append(LevelEstimate(value, len(here), sum(len(c) for c in here),
                                 Estimate.from_mean(centre, se, sum(len(c) for c in here), mult,
                                                    log)))
    return out


def _usable_groups(groups: Mapping[Key, Mapping[Level, Mapping[int, float]]]
                   ) -> list[dict[float, Mapping[int, float]]]:
    """The groups with 2+ values of the factor that have runs; ValueError when none has."""
    usable = []
    for levels in groups.values():
        kept = {float(v): reps for v, reps in levels.items() if reps}
        if any(v <= 0 for v in kept):
            raise ValueError(f"factor values must be > 0, got {sorted(kept)}")
        if len(kept) >= 2:
            usable.append(kept)
    if not usable:
        raise ValueError("no group has 2+ values of the factor")
    return usable


def trend(groups: Mapping[Key, Mapping[Level, Mapping[int, float]]],
          confidence: float = 0.95, log: bool = False) -> Trend:
    """The average change per doubling of a numeric factor.

    Args:
        groups: group key (the configuration without this factor) -> factor value (> 0) ->
            replicate index -> value. Groups with fewer than 2 values of the factor (or a value
            without replicates) cannot give a slope and are left out.
        confidence: level of the intervals.
        log: values are throughputs: the slope is of log(throughput) per doubling.

    Returns:
        Per group, the slope is the mean of per-replicate slopes over the replicate indices present
        at every value (shared seeds), or the slope of the per-value means when no index is. With
        2+ groups, a t interval over the groups' slopes; with one, over its per-replicate slopes.
        Raises ValueError when no group gives a slope.
    """
    usable = _usable_groups(groups)
    effect = _combine([_group_unit(g, log) for g in usable], confidence, log)
    return Trend(effect, _levels(usable, confidence, log))


@dataclass(frozen=True)
class Noise:
    """One objective's seed noise over the whole study.

    Attributes:
        sd: the per-run sd pooled within configurations (accuracy units, or log throughput).
        df: its degrees of freedom, sum over configurations of (runs - 1); ``math.inf`` for an
            sd taken as known (a prior).
    """

    sd: float
    df: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sd) and self.sd >= 0) or not self.df > 0:
            raise ValueError(f"noise needs sd >= 0 and df > 0, got sd {self.sd}, df {self.df}")


def _measured(units: Sequence[tuple[float, float, float]], noise: Noise, confidence: float,
              log: bool, differences: int) -> Effect:
    """The average of the units' values, each with variance sd² · k (``(value, k, k at one
    run per side or level)``), with the pooled noise's df."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not units:
        raise ValueError("no pairs to compare")
    count = len(units)
    var = noise.sd ** 2
    se = noise.sd * math.sqrt(math.fsum(k for _, k, _ in units)) / count
    one_run = var * _mean([k1 for _, _, k1 in units])
    return _from_units(_mean([v for v, _, _ in units]), se, noise.df, confidence, log,
                       (count, differences), (0.0, one_run), scope="measured")


def measured_effect(pairs: Mapping[Key, tuple[Mapping[int, float], Mapping[int, float]]],
                    noise: Noise, confidence: float = 0.95, log: bool = False) -> Effect:
    """The average effect of a factor, a minus b, over exactly the pairs given.

    Args:
        pairs: as for :func:`paired_effect`.
        noise: the study's pooled seed noise of this objective (log throughput with ``log``).
        confidence: level of the interval.
        log: analyse log values; the effect is then a log-ratio.

    Returns:
        The mean over pairs of (mean of a's runs - mean of b's runs), its standard error
        sd · sqrt(sum(1/n_a + 1/n_b)) / pairs and a t interval with the noise's df
        (``scope="measured"``). ``differences`` counts the replicate indices both sides share.
        Raises ValueError when ``pairs`` is empty or a side has no run.
    """
    units = []
    differences = 0
    for a, b in pairs.values():
        if not a or not b:
            raise ValueError("each side of a pair needs at least one replicate")
        side_a = [_transform(v, log) for v in a.values()]
        side_b = [_transform(v, log) for v in b.values()]
        units.append((_mean(side_a) - _mean(side_b), 1.0 / len(side_a) + 1.0 / len(side_b), 2.0))
        differences += len(set(a) & set(b))
    return _measured(units, noise, confidence, log, differences)


def measured_trend(groups: Mapping[Key, Mapping[Level, Mapping[int, float]]], noise: Noise,
                   confidence: float = 0.95, log: bool = False) -> Trend:
    """The average change per doubling of a numeric factor over exactly the groups given.

    Args:
        groups: as for :func:`trend` (groups with fewer than 2 values are left out).
        noise: the study's pooled seed noise of this objective.
        confidence: level of the intervals.
        log: values are throughputs.

    Returns:
        Per group, the least-squares slope of its per-value means on log2 of the value, whose
        variance is sd² · sum(c_j² / n_j) (c_j the slope's weights, n_j the runs at value j);
        the mean over groups with a t interval at the noise's df (``scope="measured"``). The
        levels are those of :func:`trend`. Raises ValueError when no group gives a slope.
    """
    usable = _usable_groups(groups)
    units = []
    differences = 0
    for levels in usable:
        values = sorted(levels)
        xs = [math.log2(v) for v in values]
        centre = _mean(xs)
        sxx = math.fsum((x - centre) ** 2 for x in xs)
        weights = [(x - centre) / sxx for x in xs]
        means = [_mean([_transform(y, log) for y in levels[v].values()]) for v in values]
        counts = [len(levels[v]) for v in values]
        units.append((math.fsum(w * m for w, m in zip(weights, means, strict=True)),
                      math.fsum(w * w / n for w, n in zip(weights, counts, strict=True)),
                      math.fsum(w * w for w in weights)))
        differences += len(set.intersection(*(set(levels[v]) for v in values)))
    effect = _measured(units, noise, confidence, log, differences)
    return Trend(effect, _levels(usable, confidence, log))
