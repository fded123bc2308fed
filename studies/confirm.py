"""``explore study confirm``: the search's estimates of its plausible front against fresh seeds.

A search that picks its front from noisy runs picks the lucky ones: the estimates of the
configurations it selects are biased upwards (the winner's curse; irace's post-selection race and
SMAC's ``validate`` exist for it). ``confirm`` trains every plausible configuration again on seeds
the search never used (replicate indices from :data:`FRESH_REPLICATE`), in a companion study
``NAME-confirm`` of the same storage, and compares, per configuration:

- the search's estimate (its replicates, noise pooled over the search's configurations),
- the fresh estimate (the fresh replicates, noise pooled over the fresh runs; with one fresh seed
  each, the search's noise figure is used for their intervals),
- the search's optimism, search - fresh: accuracy in points, throughput as a ratio, each with its
  interval (the two estimates are independent: their standard errors add in quadrature; degrees
  of freedom: the smaller of the two, which is conservative).

Where both were timed against the reference model (``[measure] reference``), the fresh runs'
throughputs are read on the search's scale (its reference's mean speed): the comparison is then
of the designs, not of the machine's speed during the search and during the confirmation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from studies.confidence import ConfigEstimate, Estimate, NoiseModel, estimate
from studies.record import TrialRecord
from studies.replicates import ConfiguredFront, configurations, replicates
from studies.tdist import t_ppf

__all__ = ["FRESH_REPLICATE", "Confirmation", "ConfirmRow", "Optimism", "confirm_name",
           "confirmation"]

FRESH_REPLICATE = 1000  # fresh seeds are replicates 1000, 1001, ...: a search stays far below


def confirm_name(name: str) -> str:
    """The companion study that holds study ``name``'s confirmation runs."""
    return f"{name}-confirm"


@dataclass(frozen=True)
class Optimism:
    """search - fresh, with its interval (None when either side's noise is unknown)."""

    difference: float  # accuracy: a fraction (0.004 = 0.4 points); throughput: a log ratio
    low: float | None
    high: float | None

    def to_dict(self, log: bool) -> dict[str, Any]:
        f = math.exp if log else (lambda v: v)
        return {("ratio" if log else "difference"): f(self.difference),
                "low": None if self.low is None else f(self.low),
                "high": None if self.high is None else f(self.high)}


@dataclass(frozen=True)
class ConfirmRow:
    key: str
    model_config: dict[str, Any]
    search: ConfigEstimate
    fresh: ConfigEstimate | None  # None: no fresh run completed yet
    accuracy: Optimism | None
    throughput: Optimism | None

    def to_dict(self) -> dict[str, Any]:
        return {"configuration": self.key, "params": self.model_config,
                "search": self.search.to_dict(),
                "fresh": None if self.fresh is None else self.fresh.to_dict(),
                "accuracy_optimism": None if self.accuracy is None
                else self.accuracy.to_dict(log=False),
                "throughput_ratio": None if self.throughput is None
                else self.throughput.to_dict(log=True)}


@dataclass(frozen=True)
class Confirmation:
    study: str
    companion: str
    seeds: int
    confidence: float
    rows: list[ConfirmRow]
    search_noise: NoiseModel
    fresh_noise: NoiseModel | None

    @property
    def mean_optimism(self) -> float | None:
        """Mean accuracy optimism over the confirmed configurations (a fraction)."""
        diffs = [r.accuracy.difference for r in self.rows if r.accuracy is not None]
        return sum(diffs) / len(diffs) if diffs else None

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "companion": self.companion, "seeds": self.seeds,
                "confidence": self.confidence, "mean_accuracy_optimism": self.mean_optimism,
                "search_noise": self.search_noise.to_dict(),
                "fresh_noise": None if self.fresh_noise is None else self.fresh_noise.to_dict(),
                "configurations": [r.to_dict() for r in self.rows]}


def _quantile(confidence: float, df: int | None) -> float:
    upper = 1.0 - (1.0 - confidence) / 2.0
    return NormalDist().inv_cdf(upper) if df is None else t_ppf(upper, df)


def _optimism(a: Estimate, b: Estimate, confidence: float, df: int | None, log: bool
              ) -> Optimism:
    centre_a = math.log(a.mean) if log else a.mean
    centre_b = math.log(b.mean) if log else b.mean
    diff = centre_a - centre_b
    if a.se is None or b.se is None:
        return Optimism(diff, None, None)
    half = _quantile(confidence, df) * math.hypot(a.se, b.se)
    return Optimism(diff, diff - half, diff + half)


def _df(search: NoiseModel, fresh: NoiseModel) -> int | None:
    """Degrees of freedom of a search-minus-fresh difference (None: a normal quantile)."""
    known = [n.df for n in (search, fresh) if n.source == "pooled" and n.df > 0]
    return min(known) if known else None


def confirmation(name: str, search: ConfiguredFront, keys: Sequence[str],
                 fresh_trials: Iterable[TrialRecord], seeds: int) -> Confirmation:
    """Compare the search's estimates of ``keys`` with the fresh runs (see the module doc)."""
    confidence = search.front.noise.confidence
    # The fresh runs' throughputs on the search's scale (its reference's mean speed), so that
    # the two estimates compare the designs, not the machine's speed then and now.
    fresh_configs = [c for c in configurations(fresh_trials, search.machine_speed)
                     if c.key in set(keys)]
    noise = search.front.noise
    prior = ((noise.accuracy_sd, noise.log_throughput_sd)
             if noise.accuracy_sd is not None and noise.log_throughput_sd is not None else None)
    fresh_noise, fresh_estimates = (estimate(replicates(fresh_configs), confidence, prior)
                                    if fresh_configs else (None, []))
    by_key = {e.config: e for e in fresh_estimates}
    df = _df(noise, fresh_noise) if fresh_noise is not None else None
    rows = []
    for c in search.ordered(keys):
        mine = search.estimate(c.key)
        fresh = by_key.get(c.key)
        rows.append(ConfirmRow(
            c.key, c.model_config, mine, fresh,
            None if fresh is None else _optimism(mine.accuracy, fresh.accuracy, confidence, df,
                                                 log=False),
            None if fresh is None else _optimism(mine.throughput, fresh.throughput, confidence,
                                                 df, log=True)))
    return Confirmation(name, confirm_name(name), seeds, confidence, rows, noise, fresh_noise)
