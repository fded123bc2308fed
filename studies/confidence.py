"""Configurations measured by replicates: estimates with intervals from the pooled noise.

A *configuration* is a design; a *replicate* is one training run of it (one Optuna trial) with
replicate index r. Each replicate gives an accuracy and a throughput.

Noise model, and the choices made:

- Accuracy is analysed as is; throughput on the log scale (its noise is multiplicative), so its
  estimate is a geometric mean and its interval the exp of an interval of the mean log. The truth
  an interval targets is then the configuration's median/geometric-mean throughput.
- The within-configuration variance is POOLED over all configurations (df = sum(n_c - 1)): with
  1-3 replicates a configuration's own variance is too poor to use (1-2 df), while the seed noise
  is about the same for all configurations. Config c's interval is
  mean_c ± t_{df, 1-α/2} · s_pooled / sqrt(n_c). The t quantile over the pooled df accounts for
  the uncertainty of s_pooled, so the intervals are calibrated (see tests/studies).
- Throughput's noise is not the same at every speed: on the 2-core VM fast configurations
  (small models, short calls) move 9-17% between replicates, slow ones 1-4% (the default space's
  fixed K = 3 study, docs/replicates.md). One pooled figure would make the fast end of the
  space, where the front is, look surer than it is. So the log-throughput sd is pooled with a
  slope in the speed, sd_c = sd · exp(b · (mean log throughput_c - centre)), fitted over the
  configurations with replicates (:func:`speed_slope`) and kept only where a likelihood-ratio
  test shows it; with b = 0 it is the plain pooled sd. Accuracy's seed noise shows no such trend
  and stays one pooled figure. Calibration: tests/studies/test_speed_noise.py.
- With df = 0 (no configuration has 2+ replicates) the noise is unknown: ``se``, ``low``, ``high``
  are None and ``NoiseModel.known`` is False, unless the caller supplies ``prior_sd``, a noise
  figure known from elsewhere (then the normal quantile is used, and ``source`` says "prior").
- A configuration whose own spread is far above the pooled one keeps the pooled figure. With 2-3
  replicates its own variance has 1-2 df, so a test for "too noisy" has almost no power except for
  gross outliers (a diverged run), which are better treated upstream as failed trials; and using
  max(own, pooled) would over-cover every ordinary configuration (its own sd exceeds the pooled
  one half the time). The cost, measured: one configuration with twice the others' sd among 20
  gets ~74% coverage instead of 95%, the others ~96% (its squares widen the pooled figure).
- Replicates with the same index share their seed stream (a paired design). The front's draws
  (:mod:`studies.noisyfront`) do not use that pairing (they treat configurations as
  independent), which is conservative when seeds affect configurations alike; pairing is used in
  :mod:`studies.effects`, where comparisons are made.

The noise-aware Pareto front over these estimates is :mod:`studies.noisyfront`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from studies.tdist import t_ppf

__all__ = ["ConfigEstimate", "Estimate", "NoiseModel", "Replicate", "estimate", "pooled_sd",
           "speed_slope"]

SLOPE_MIN_DF = 8  # the throughput noise's slope with speed needs this many df ...
SLOPE_MIN_CONFIGS = 4  # ... over this many configurations with 2+ replicates
SLOPE_MAX = 3.0  # |d log sd / d log throughput| at most (sd x20 over the 1.0 of log speed)
SLOPE_TEST = 2.706  # chi-squared(1 df) 90% quantile: the likelihood-ratio test for a slope

def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


@dataclass(frozen=True)
class Replicate:
    """One training run of a configuration.

    Attributes:
        config: the configuration's identity (equal strings = the same design).
        index: replicate index r (>= 0); replicate r of two configurations shares its seeds.
        accuracy: validation accuracy, a fraction (0.93 = 93%).
        throughput: images per second, > 0.
        trial: the Optuna trial number, for display.
    """

    config: str
    index: int
    accuracy: float
    throughput: float
    trial: int

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"replicate index must be >= 0, got {self.index}")
        if not math.isfinite(self.accuracy):
            raise ValueError(f"accuracy must be finite, got {self.accuracy}")
        if not (math.isfinite(self.throughput) and self.throughput > 0):
            raise ValueError(f"throughput must be finite and > 0, got {self.throughput}")


@dataclass(frozen=True)
class Estimate:
    """One objective of one configuration (or of one factor level).

    Attributes:
        mean: accuracy: the arithmetic mean; throughput: the geometric mean.
        se: accuracy: the standard error of the mean; throughput: that of the mean log.
            None when the noise is unknown.
        low: lower end of the interval, in the objective's own units (None when unknown).
        high: upper end.
        n: replicates behind the mean.
    """

    mean: float
    se: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def from_mean(cls, mean: float, se: float | None, n: int, multiplier: float | None,
                  log: bool = False) -> Estimate:
        """The estimate of ``mean`` (the mean log when ``log``) ± ``multiplier`` · ``se``."""
        if se is None or multiplier is None:
            return cls(math.exp(mean) if log else mean, None, None, None, n)
        low, high = mean - multiplier * se, mean + multiplier * se
        if log:
            return cls(math.exp(mean), se, math.exp(low), math.exp(high), n)
        return cls(mean, se, low, high, n)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "se": self.se, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class NoiseModel:
    """The replicate noise, pooled over configurations.

    Attributes:
        accuracy_sd: within-configuration sd of accuracy (None when unknown).
        log_throughput_sd: within-configuration sd of log(throughput) (0.2 ≈ ±20%).
        df: pooled degrees of freedom, sum over configurations of (replicates - 1).
        confidence: the level of every interval made with it (0.95).
        source: "pooled" (from the replicates), "prior" (df was 0; the caller's ``prior_sd``)
            or "unknown".
    """

    accuracy_sd: float | None
    log_throughput_sd: float | None
    df: int
    confidence: float
    source: str
    log_throughput_slope: float = 0.0  # d log(sd) / d log(throughput) (see speed_slope)
    log_throughput_centre: float = 0.0  # the log throughput at which the sd is log_throughput_sd

    def log_throughput_sd_at(self, log_mean: float) -> float | None:
        """The sd of log(throughput) of a configuration whose mean log throughput is
        ``log_mean``: ``log_throughput_sd`` at the centre, scaled by the slope."""
        if self.log_throughput_sd is None:
            return None
        return self.log_throughput_sd * math.exp(
            self.log_throughput_slope * (log_mean - self.log_throughput_centre))

    @property
    def known(self) -> bool:
        """Whether intervals can be given at all."""
        return self.source != "unknown"

    @property
    def multiplier(self) -> float | None:
        """Half-width of an interval in standard errors: t_{df, 1-α/2}, or z for a prior."""
        upper = 1.0 - (1.0 - self.confidence) / 2.0
        if self.source == "pooled":
            return t_ppf(upper, self.df)
        if self.source == "prior":
            return NormalDist().inv_cdf(upper)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy_sd": self.accuracy_sd, "log_throughput_sd": self.log_throughput_sd,
                "log_throughput_slope": self.log_throughput_slope,
                "log_throughput_centre": self.log_throughput_centre,
                "df": self.df, "confidence": self.confidence, "source": self.source,
                "known": self.known}


@dataclass(frozen=True)
class ConfigEstimate:
    """A configuration's estimates over its replicates.

    Attributes:
        config: the configuration's identity.
        n: number of replicates.
        trials: their Optuna trial numbers, in replicate-index order.
        accuracy: mean accuracy with its interval.
        throughput: geometric-mean throughput with its interval.
    """

    config: str
    n: int
    trials: tuple[int, ...]
    accuracy: Estimate
    throughput: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "n": self.n, "trials": list(self.trials),
                "accuracy": self.accuracy.to_dict(), "throughput": self.throughput.to_dict()}


def pooled_sd(samples: Iterable[Sequence[float]]) -> tuple[float | None, int]:
    """Pooled within-sample sd and its degrees of freedom, sum(len - 1).

    Samples of one value add nothing. Returns ``(None, 0)`` when no sample has two values.
    """
    squares = 0.0
    df = 0
    for values in samples:
        if len(values) < 2:
            continue
        centre = math.fsum(values) / len(values)
        squares += math.fsum((v - centre) ** 2 for v in values)
        df += len(values) - 1
    return (math.sqrt(squares / df), df) if df else (None, 0)


def speed_slope(samples: Sequence[Sequence[float]]) -> tuple[float, float, float | None, int]:
    """How the sd of log(throughput) changes with the speed: (slope b, centre, sd at the centre,
    df) of the model sd_c = sd · exp(b · (mean_c - centre)) over samples of log throughputs.

    Maximum likelihood: with SS_c each sample's sum of squares about its mean (df_c = n_c - 1)
    and d_c = mean_c minus the df-weighted centre, the scale profiled out leaves
    L(b) = -(df / 2) · log(sum SS_c · exp(-2 b d_c)), concave in b. The slope is kept only where
    the data show it: a likelihood-ratio test against b = 0 at the 10% level (chi-squared, 1 df),
    at least :data:`SLOPE_MIN_DF` df over :data:`SLOPE_MIN_CONFIGS` samples, and |b| at most
    :data:`SLOPE_MAX`; otherwise b = 0, which is :func:`pooled_sd`.
    """
    groups = [(math.fsum(v) / len(v), len(v) - 1, v) for v in samples if len(v) >= 2]
    sd, df = pooled_sd([g[2] for g in groups])
    if sd is None:
        return 0.0, 0.0, None, 0
    centre = math.fsum(m * d for m, d, _ in groups) / df
    ss = [math.fsum((x - m) ** 2 for x in v) for m, _, v in groups]
    dev = [m - centre for m, _, _ in groups]
    if df < SLOPE_MIN_DF or len(groups) < SLOPE_MIN_CONFIGS or sd == 0.0:
        return 0.0, centre, sd, df

    def total(b: float) -> float:
        return math.fsum(q * math.exp(-2.0 * b * d) for q, d in zip(ss, dev, strict=True))

    low, high = -SLOPE_MAX, SLOPE_MAX  # total() is convex: golden-section search for its minimum
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        a, c = high - ratio * (high - low), low + ratio * (high - low)
        if total(a) <= total(c):
            high = c
        else:
            low = a
    b = (low + high) / 2.0
    gain = df * (math.log(total(0.0)) - math.log(total(b)))  # 2 (L(b) - L(0))
    if gain < SLOPE_TEST or not math.isfinite(gain):
        return 0.0, centre, sd, df
    return b, centre, math.sqrt(total(b) / df), df


def _group(replicates: Sequence[Replicate]) -> dict[str, list[Replicate]]:
    groups: dict[str, list[Replicate]] = {}
    for rep in replicates:
        groups.setdefault(rep.config, []).append(rep)
    for config, reps in groups.items():
        reps.sort(key=lambda r: r.index)
        if len({r.index for r in reps}) != len(reps):
            raise ValueError(f"configuration {config!r} has two replicates with the same index")
    return dict(sorted(groups.items()))  # order by id: the result ignores the input's order


def _noise(groups: Mapping[str, list[Replicate]], confidence: float,
           prior_sd: tuple[float, float] | None) -> NoiseModel:
    acc_sd, df = pooled_sd([r.accuracy for r in reps] for reps in groups.values())
    slope, centre, log_sd, _ = speed_slope(
        [[math.log(r.throughput) for r in reps] for reps in groups.values()])
    if df:
        return NoiseModel(acc_sd, log_sd, df, confidence, "pooled", slope, centre)
    if prior_sd is not None:
        if min(prior_sd) < 0:
            raise ValueError(f"prior_sd must be >= 0, got {prior_sd}")
        return NoiseModel(prior_sd[0], prior_sd[1], 0, confidence, "prior")
    return NoiseModel(None, None, 0, confidence, "unknown")


def _config_estimate(config: str, reps: list[Replicate], noise: NoiseModel,
                     mult: float | None) -> ConfigEstimate:
    n = len(reps)
    acc_se = None if noise.accuracy_sd is None else noise.accuracy_sd / math.sqrt(n)
    acc = Estimate.from_mean(math.fsum(r.accuracy for r in reps) / n, acc_se, n, mult)
    log_mean = math.fsum(math.log(r.throughput) for r in reps) / n
    log_sd = noise.log_throughput_sd_at(log_mean)
    log_se = None if log_sd is None else log_sd / math.sqrt(n)
    thr = Estimate.from_mean(log_mean, log_se, n, mult, log=True)
    return ConfigEstimate(config, n, tuple(r.trial for r in reps), acc, thr)


def estimate(replicates: Sequence[Replicate], confidence: float = 0.95,
             prior_sd: tuple[float, float] | None = None,
             ) -> tuple[NoiseModel, list[ConfigEstimate]]:
    """Per-configuration means with intervals from the pooled noise.

    Args:
        replicates: any number per configuration; two of one configuration with the same index are
            an error (ValueError).
        confidence: level of the intervals.
        prior_sd: (accuracy sd, log-throughput sd) to assume while no configuration has two
            replicates (df = 0); ignored once the replicates give a pooled figure.

    Returns:
        The noise model and one estimate per configuration, ordered by configuration id.
        With unknown noise the estimates have ``se``/``low``/``high`` None.
    """
    _check_confidence(confidence)
    groups = _group(replicates)
    noise = _noise(groups, confidence, prior_sd)
    mult = noise.multiplier  # one quantile for all
    return noise, [_config_estimate(c, reps, noise, mult) for c, reps in groups.items()]
