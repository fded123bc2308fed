"""A study's trials grouped into configurations and their replicates, and the noise-aware front
over them (:mod:`studies.confidence`, :mod:`studies.noisyfront`).

A trial is one training run (a replicate) of a configuration. It names both in its user attrs
(``configuration``, ``replicate``); a trial from before replicates names neither and reads as
replicate 0 of a configuration of its own (its ``config_key``). Only COMPLETE trials with values
count, each experiment once: a duplicate repeats another trial's values and adds no evidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studies.confidence import ConfigEstimate, Replicate
from studies.noisyfront import PLAUSIBLE, NoisyFront, noisy_front
from studies.record import (
    ATTR_CONFIG_KEY,
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_MODEL_CONFIG,
    ATTR_REPLICATE,
    ATTR_THROUGHPUT,
    TrialRecord,
)

__all__ = ["ConfiguredFront", "Configuration", "configuration_of", "configurations",
           "configured_front", "front_settings", "front_tolerance", "machine_speed",
           "replicate_of", "replicates", "study_front"]

DRAWS = 2000  # Monte Carlo draws of P(Pareto-optimal): its error is at most 0.011
MAX_TOLERANCE_POINTS = 100.0  # [study] accuracy_tolerance is in points of accuracy


def configuration_of(t: TrialRecord) -> str:
    """The configuration a trial is a replicate of."""
    value = t.user_attrs.get(ATTR_CONFIGURATION) or t.user_attrs.get(ATTR_CONFIG_KEY)
    return str(value) if value else f"trial-{t.number}"


def replicate_of(t: TrialRecord) -> int:
    value = t.user_attrs.get(ATTR_REPLICATE, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(frozen=True)
class Configuration:
    """One configuration and its completed replicates."""

    key: str
    params: dict[str, Any]  # the searched params (equal for all its replicates)
    model_config: dict[str, Any]  # the stored model config overlaid with the params
    trials: tuple[TrialRecord, ...]  # its replicates, by replicate index
    # Each replicate's throughput as the noise model reads it (see :func:`configurations`).
    throughputs: tuple[float, ...]

    @property
    def label(self) -> str:
        return self.key[:12]


def _counts(t: TrialRecord) -> bool:
    return (t.state == "COMPLETE" and t.values is not None and len(t.values) >= 2
            and t.user_attrs.get(ATTR_DUPLICATE) is None)


def _positive(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            math.isfinite(value) and value > 0):
        return float(value)
    return None


def _paired_measurement(t: TrialRecord) -> tuple[float, float] | None:
    """(relative, reference) of a trial timed against the study's reference model
    (``[measure] reference``), or None."""
    throughput = t.user_attrs.get(ATTR_THROUGHPUT)
    if not isinstance(throughput, dict):
        return None
    relative, reference = _positive(throughput.get("relative")), _positive(
        throughput.get("reference"))
    return (relative, reference) if relative is not None and reference is not None else None


def machine_speed(trials: Iterable[TrialRecord]) -> float | None:
    """The reference model's geometric mean images/s over ``trials``, when every one of them
    was timed against it; None otherwise (a study from before the reference, ``[measure]
    reference = false``, CUDA graph replays, or a mix)."""
    paired = [_paired_measurement(t) for t in trials]
    if not paired or any(p is None for p in paired):
        return None
    return math.exp(statistics.fmean(math.log(p[1]) for p in paired if p is not None))


def configurations(trials: Iterable[TrialRecord], speed: float | None = None
                   ) -> list[Configuration]:
    """COMPLETE trials grouped by configuration (first appearance first); of two trials of the
    same replicate of a configuration (a race between workers) the first is kept.

    Each replicate's throughput, as the noise model and the findings read it: where every
    counted trial was timed against the reference model, its speed relative to the reference
    times ``speed`` (default: the reference's mean speed over these trials, see
    :func:`machine_speed`), i.e. its images/s at the study's mean machine speed, without the
    machine's own swings between processes (docs/replicates.md, "The noise-aware front").
    Otherwise its measured images/s (the objective value)."""
    groups: dict[str, dict[int, TrialRecord]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if _counts(t):
            groups.setdefault(configuration_of(t), {}).setdefault(replicate_of(t), t)
    counted = [t for by_index in groups.values() for t in by_index.values()]
    study_speed = machine_speed(counted)
    speed = speed if study_speed is not None and speed is not None else study_speed
    out = []
    for key, by_index in groups.items():
        reps = tuple(by_index[i] for i in sorted(by_index))
        first = reps[0]
        stored = first.user_attrs.get(ATTR_MODEL_CONFIG)
        config = {**(stored if isinstance(stored, dict) else {}), **first.params}
        out.append(Configuration(key, dict(first.params), config, reps,
                                 tuple(_throughput(t, speed) for t in reps)))
    return out


def _throughput(t: TrialRecord, speed: float | None) -> float:
    assert t.values is not None
    paired = _paired_measurement(t) if speed is not None else None
    return paired[0] * speed if paired is not None and speed is not None else float(t.values[1])


def replicates(configs: Sequence[Configuration]) -> list[Replicate]:
    """Each replicate's accuracy and throughput as the noise model reads them."""
    out = []
    for c in configs:
        for t, throughput in zip(c.trials, c.throughputs, strict=True):
            assert t.values is not None
            out.append(Replicate(c.key, replicate_of(t), float(t.values[0]), throughput,
                                 t.number))
    return out


@dataclass(frozen=True)
class ConfiguredFront:
    """The noise-aware front of a study, with each configuration's params and trials."""

    configs: list[Configuration]  # every configuration, first appearance first
    front: NoisyFront

    def estimate(self, key: str) -> ConfigEstimate:
        return next(e for e in self.front.estimates if e.config == key)

    def config(self, key: str) -> Configuration:
        return next(c for c in self.configs if c.key == key)

    @property
    def replicates(self) -> int:
        return sum(len(c.trials) for c in self.configs)

    @property
    def machine_speed(self) -> float | None:
        """The reference model's mean images/s over the counted replicates (None: not every
        one was timed against it): the scale of the throughputs the front compares."""
        return machine_speed(t for c in self.configs for t in c.trials)

    def ordered(self, keys: Iterable[str]) -> list[Configuration]:
        """``keys`` as configurations, by mean throughput (the front from slow to fast)."""
        wanted = set(keys)
        chosen = [c for c in self.configs if c.key in wanted]
        return sorted(chosen, key=lambda c: self.estimate(c.key).throughput.mean)

    def to_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The noise-aware front as JSON: noise, hypervolume, the configurations of ``keys``
        (default: the plausible ones) as :meth:`row` writes them."""
        noisy = self.front
        return {
            "configurations": len(self.configs), "replicates": self.replicates,
            "noise": noisy.noise.to_dict(), "hypervolume": noisy.hypervolume,
            "hypervolume_interval": [noisy.hypervolume_low, noisy.hypervolume_high],
            "dominated": len(noisy.dominated),
            "plausible": [self.row(c) for c in self.ordered(
                noisy.plausible if keys is None else keys)],
        }

    def best_replicate(self, key: str) -> TrialRecord:
        """The configuration's most accurate replicate (the earliest of equals): the weights
        ``study models`` exports for it."""
        return max(self.config(key).trials,
                   key=lambda t: (t.values[0] if t.values else 0.0, -t.number))

    def kept_trials(self) -> set[int]:
        """Trial numbers whose checkpoints the noise-aware front may still need: every replicate
        of every configuration not confidently dominated. Any of them may become a plausible
        configuration's best replicate as runs arrive (the front changes as racing adds
        replicates), and a pruned checkpoint cannot come back. While the noise is unknown (one
        run per configuration, as in ``replicates = 1``), the observed front's: a configuration
        off it there never returns, since new configurations only add dominators."""
        if not self.front.noise.known:
            return {self.best_replicate(k).number for k in self.front.plausible}
        dominated = set(self.front.dominated)
        return {t.number for c in self.configs if c.key not in dominated for t in c.trials}

    def status(self, key: str) -> str:
        """plausible (P(front) >= 0.5), most probable (on the front shown when no configuration
        reaches 0.5), dominated (confidently), or undecided."""
        if key in self.front.plausible:
            return "plausible" if self.front.probability[key] >= PLAUSIBLE else "most probable"
        if key in self.front.dominated:
            return "dominated"
        return "undecided"

    def row(self, c: Configuration) -> dict[str, Any]:
        """One configuration as ``study pareto -f json`` writes it."""
        e = self.estimate(c.key)
        return {
            "configuration": c.key, "status": self.status(c.key), "params": c.params,
            "replicates": e.n,
            "trials": list(e.trials),
            "accuracy": e.accuracy.to_dict(), "throughput": e.throughput.to_dict(),
            "probability_pareto": round(self.front.probability[c.key], 4),
            "plausible": c.key in self.front.plausible,
            "dominated": c.key in self.front.dominated,
            "params_count": c.trials[0].user_attrs.get("params_count"),
        }


def configured_front(trials: Iterable[TrialRecord], confidence: float = 0.95, seed: int = 0,
                     draws: int = DRAWS, tolerance: float = 0.0) -> ConfiguredFront:
    """Group ``trials`` into configurations and compute their noise-aware front (seeded: the
    same trials give the same probabilities); ``tolerance``: accuracy (a fraction) within
    which the faster configuration wins."""
    configs = configurations(trials)
    return ConfiguredFront(configs, noisy_front(replicates(configs), confidence, draws, seed,
                                                tolerance=tolerance))


def front_settings(settings: Mapping[str, Any] | None) -> tuple[float, int]:
    """The confidence level and seed a study's stored settings give its noise-aware front
    (0.95 and 0 for a study without them): every reader and the run itself use the same, so
    they print the same probabilities."""
    study = (settings or {}).get("study")
    study = study if isinstance(study, Mapping) else {}
    confidence = study.get("confidence", 0.95)
    seed = study.get("seed", 0)
    if not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1.0:
        confidence = 0.95
    return float(confidence), seed if isinstance(seed, int) and seed >= 0 else 0


def front_tolerance(settings: Mapping[str, Any] | None) -> float:
    """The accuracy tolerance of a study's stored settings as a fraction (``[study]
    accuracy_tolerance`` is in points); 0, Pareto's strict rule, for a study stored before the
    setting (it keeps the front it had)."""
    study = (settings or {}).get("study")
    points = study.get("accuracy_tolerance", 0.0) if isinstance(study, Mapping) else 0.0
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not (
            0.0 <= points <= MAX_TOLERANCE_POINTS):
        return 0.0
    return float(points) / 100.0


def study_front(trials: Iterable[TrialRecord], settings: Mapping[str, Any] | None
                ) -> ConfiguredFront:
    """:func:`configured_front` at the confidence, seed and tolerance of a study's stored
    settings."""
    confidence, seed = front_settings(settings)
    return configured_front(trials, confidence, seed, tolerance=front_tolerance(settings))
