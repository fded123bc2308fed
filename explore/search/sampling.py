"""Samplers by name, seeded; on small discrete spaces, steered away from repeats.

With the duplicate cache a repeated configuration costs nothing, but it teaches nothing either,
and model-based samplers feed on their own repeats: on the 40-configuration default space,
multi-objective TPE answered from the cache proposed one configuration 148 times in 222 trials
(``benchmarks/search_efficiency.py``, 180 s). :class:`AvoidEvaluated` lets the sampler choose
each value, and only replaces a value that leaves no configuration untried (nor running
elsewhere) for the rest of the trial, so the sampler's preferences survive and the search
keeps learning until every configuration has been tried.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from explore.config import SAMPLERS, Settings

__all__ = ["SAMPLERS", "AvoidEvaluated", "make_sampler", "sampler_seed"]

# Above this many configurations, repeats are rare and the per-value scan is not worth it.
MAX_AVOIDED_SPACE = 5000
_TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
Point = tuple[tuple[str, Any], ...]


def sampler_seed(study_seed: int, n_existing: int, worker: int = 0) -> int:
    """A fresh study run is reproducible from its seed; a continuation (or another worker)
    gets a different stream, so it does not re-propose what the first run proposed."""
    digest = hashlib.sha256(f"{study_seed}:{n_existing}:{worker}".encode()).hexdigest()
    return int(digest[:8], 16)


def _norm(value: Any) -> Any:
    """Floats of a stepped range compare by value, not by their last rounding bit."""
    return round(value, 10) if isinstance(value, float) else value


def _point(params: dict[str, Any]) -> Point:
    return tuple(sorted((k, _norm(v)) for k, v in params.items()))


class AvoidEvaluated(BaseSampler):
    """Wraps a sampler so that it never walks into a configuration already evaluated.

    ``points`` are all configurations of a finite space. When the wrapped sampler picks a
    value with which every configuration that is still possible for this trial was already
    tried (COMPLETE, PRUNED, RUNNING or queued), the value is replaced by a random one that
    still leads to an untried configuration. Values that keep a fresh configuration possible
    are never touched, so the wrapped sampler's model decides everything it can.
    """

    def __init__(self, base: BaseSampler, points: Iterable[dict[str, Any]], seed: int) -> None:
        self.base = base
        self.points = [dict(_point(p)) for p in points]
        self.names = {k for p in self.points for k in p}  # what the space searches
        self._rng = random.Random(seed)

    # --- the wrapped sampler does the work -------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        params = self.base.sample_relative(study, trial, search_space)
        if params and self._open(study, trial, params) is False:
            return {}  # a repeat as a whole: let the values be chosen one by one below
        return params

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        value = self.base.sample_independent(study, trial, param_name, param_distribution)
        partial = {**trial.params, param_name: value}
        if self._open(study, trial, partial) is not False:
            return value
        fresh = self._fresh_values(study, trial, param_name, param_distribution)
        return self._rng.choice(fresh) if fresh else value

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng.seed()

    # --- which configurations are still untried --------------------------------------------

    def _taken(self, study: Study, trial: FrozenTrial) -> set[Point]:
        # A queued trial (a replicate, a retry, an anchor) has no params yet: its queued ones
        # are taken as well, or the sampler proposes what is already waiting to run.
        # Only searched names count: trials of studies from before suggested the lists of one
        # value as params too.
        return {_point({k: v for k, v in {**t.system_attrs.get("fixed_params", {}),
                                          **t.params}.items() if k in self.names})
                for t in study._get_trials(deepcopy=False, states=_TAKEN)
                if t.number != trial.number}

    def _consistent(self, partial: dict[str, Any]) -> list[dict[str, Any]]:
        fixed = {k: _norm(v) for k, v in partial.items() if k in self.names}
        return [p for p in self.points
                if all(k in p and p[k] == v for k, v in fixed.items())]

    def _open(self, study: Study, trial: FrozenTrial, partial: dict[str, Any]) -> bool | None:
        """Whether an untried configuration extends ``partial``; None when none of the
        space's configurations does (the trial is outside the enumerated space)."""
        candidates = self._consistent(partial)
        if not candidates:
            return None
        taken = self._taken(study, trial)
        return any(tuple(sorted(p.items())) not in taken for p in candidates)

    def _fresh_values(self, study: Study, trial: FrozenTrial, name: str,
                      distribution: BaseDistribution) -> list[Any]:
        taken = self._taken(study, trial)
        fixed = {k: _norm(v) for k, v in trial.params.items() if k in self.names}
        values = []
        for p in self.points:
            if name in p and all(k in p and p[k] == v for k, v in fixed.items()) and \
                    tuple(sorted(p.items())) not in taken:
                values.append(p[name])
        return [v for v in dict.fromkeys(values) if _admits(distribution, v)]


def _admits(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``distribution`` can take ``value`` (from its public fields: choices, or low,
    high and step)."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, IntDistribution | FloatDistribution):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not distribution.low <= value <= distribution.high:
            return False
        step = distribution.step
        if step is None:
            return True
        steps = (value - distribution.low) / step
        return abs(steps - round(steps)) < 1e-8
    return False


# The samplers that need nothing but their seed.
_SEEDED: dict[str, Callable[..., BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
}


def _base_sampler(settings: Settings, seed: int) -> optuna.samplers.BaseSampler:
    name = settings.study.sampler
    if name in _SEEDED:
        return _SEEDED[name](seed=seed)
    if name == "grid":
        from studies.errors import UsageError

        if settings.space.is_conditional(settings.model):
            raise UsageError(
                "--sampler grid cannot skip mem_size/norm for self-attention trials: "
                "use --sampler bruteforce, which enumerates conditional spaces exactly"
            )
        return optuna.samplers.GridSampler(settings.space.grid(), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def _finite_points(settings: Settings) -> list[dict[str, Any]] | None:
    """Every configuration of a space whose fields are all discrete and not too many."""
    if not settings.space.discrete:
        return None
    points = list(settings.space.combinations(settings.model, limit=MAX_AVOIDED_SPACE + 1))
    return points if len(points) <= MAX_AVOIDED_SPACE else None


def make_sampler(settings: Settings, seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler. With the duplicate cache on, samplers are kept from proposing
    evaluated configurations of a finite space (grid and bruteforce enumerate it themselves);
    ``--no-dedup`` asks for repeats, so it gets the sampler as it is."""
    base = _base_sampler(settings, seed)
    if not settings.study.dedup or settings.study.sampler in ("grid", "bruteforce"):
        return base
    points = _finite_points(settings)
    if points is None:
        return base
    return AvoidEvaluated(base, points, seed)
