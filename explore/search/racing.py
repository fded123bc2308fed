"""Racing: training runs (replicates) spent where they change the answer.

A configuration's first run comes from the sampler. From the study's replicates,
:func:`studies.replicates.configured_front` estimates every configuration with the seed noise
pooled across configurations, and the probability that it is Pareto-optimal. Then, after every
trial (in whichever worker finished it, on any machine: the study is the only state):

- ``[study] replicates = K``: every configuration is trained K times (a designed experiment).
- ``"race"``: a configuration that is not confidently dominated (P(Pareto) above
  1 - confidence) earns more runs, doubling (2, then 4, ...) up to ``max_replicates``; one that
  is confidently dominated gets no more. While the noise is still unknown (no configuration has
  two runs yet) the observed front's members get their second run first. While the sampler
  still finds new configurations, at most one extra run per two configurations explored so far
  is queued: two thirds of the runs explore. A dominated configuration is decided by its
  dominators' runs as much as by its own, and most configurations are dominated by a few fast
  ones, so exploring wider decides more per run than replicating early (on the default space's
  measured truth, at 60 runs 25 configurations decided against 15 with one extra run per
  configuration explored). Once the sampler has nothing new (a finite space exhausted),
  the remaining budget goes beyond ``max_replicates`` (up to ``EXHAUSTED_CAP`` times it) to every
  configuration not confidently dominated: by the order below first to those whose place is
  undecided, then to the front's members, whose intervals narrow (in simulation at 120 runs,
  1.9 accuracy points wide against 2.4 when the decided front got no more).
- Order: fewest runs first, then the likelier front member. A configuration is confidently
  dominated only when both it and its dominator are measured well enough, so every survivor
  gets its second run before any gets a third (irace races its survivors alike). On the default
  space's measured truth racing decides at 60 runs 97% of what fixed K = 3 decides at 120
  (``benchmarks/racing_policy.py``, docs/performance.md).

Replicates are queued with ``study.enqueue_trial`` (their params, ``configuration`` and
``replicate`` user attrs), so every worker of the study takes them. Just before queuing, the
study is read again and replicates another worker queued meanwhile are left out; a replicate
two workers queue at once all the same is answered the second time by the duplicate cache
(equal experiment keys).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from explore.config import Settings
from explore.search.budget import count_finished, count_running
from studies.record import (
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_OVER_BUDGET,
    ATTR_REPLICATE,
    TrialRecord,
)
from studies.replicates import ConfiguredFront, configuration_of, configured_front

__all__ = ["Replicate", "enqueue", "front_of", "plan", "record_of"]

EXHAUSTED_CAP = 4  # an exhausted space gives survivors up to 4 x max_replicates runs
EXPLORE_PER_EXTRA = 2  # while the search explores: one extra run per 2 configurations explored
_PENDING = (TrialState.WAITING, TrialState.RUNNING)


@dataclass(frozen=True)
class Replicate:
    """One training run racing asks for."""

    configuration: str
    replicate: int
    params: dict[str, Any]
    why: str


def record_of(t: FrozenTrial) -> TrialRecord:
    """A FrozenTrial as the torch-free readers see it."""
    values = tuple(t.values) if t.state == TrialState.COMPLETE and t.values else None
    return TrialRecord(number=t.number, state=t.state.name, values=values,
                       params=dict(t.params), user_attrs=dict(t.user_attrs),
                       datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)


def front_of(trials: Iterable[FrozenTrial], settings: Settings) -> ConfiguredFront:
    # The readers' draws and seed (studies.replicates.study_front): the run, its summary and
    # every browsing command give the same probabilities for the same trials.
    return configured_front([record_of(t) for t in trials], settings.study.confidence,
                            seed=settings.study.seed,
                            tolerance=settings.study.accuracy_tolerance / 100.0)


def _taken(trials: Iterable[FrozenTrial]) -> dict[str, set[int]]:
    """Replicate indices of every configuration that ran, runs or is queued (failed ones too:
    a replicate that failed is not asked for again; one that never ran because the budget was
    full is)."""
    out: dict[str, set[int]] = {}
    for t in trials:
        if t.user_attrs.get(ATTR_DUPLICATE) is not None:
            continue
        if t.state == TrialState.FAIL and t.user_attrs.get(ATTR_OVER_BUDGET) is not None:
            continue
        key = t.user_attrs.get(ATTR_CONFIGURATION)
        if key is None and t.state == TrialState.WAITING:
            continue  # queued by the warm start or a retry: not yet a configuration
        replicate = t.user_attrs.get(ATTR_REPLICATE, 0)
        out.setdefault(str(key) if key else configuration_of(record_of(t)), set()).add(
            int(replicate))
    return out


def _pending(trials: Iterable[FrozenTrial]) -> set[str]:
    return {str(t.user_attrs[ATTR_CONFIGURATION]) for t in trials
            if t.state in _PENDING and ATTR_CONFIGURATION in t.user_attrs}


def _target(n: int, probability: float, known: bool, settings: Settings, exhausted: bool) -> int:
    """How many runs a configuration with ``n`` completed ones should have by now."""
    study = settings.study
    if isinstance(study.replicates, int):
        return study.replicates
    if not known:  # no noise estimate yet: the observed front learns it first
        return 2 if probability >= 1.0 else 1
    if probability <= 1.0 - study.confidence:
        return n  # confidently dominated: no more
    doubled = 1
    while doubled <= n:
        doubled *= 2
    target = min(study.max_replicates, doubled)
    if exhausted and target <= n:  # undecided first (fewest runs), then sharpening the front
        target = min(n + 1, EXHAUSTED_CAP * study.max_replicates)
    return target


def plan(trials: list[FrozenTrial], settings: Settings, exhausted: bool = False
         ) -> list[Replicate]:
    """The replicates to queue now, in order: fewest runs first, then the likelier front member
    (see the module docstring)."""
    if settings.study.replicates == 1:
        return []
    racing = front_of(trials, settings)
    taken = _taken(trials)
    pending = _pending(trials)
    known = racing.front.noise.known
    wanted: list[tuple[int, float, Replicate]] = []
    for config in racing.configs:
        if config.key in pending and settings.study.replicates == "race":
            continue  # wait for its running or queued runs before doubling again
        n = len(config.trials)
        p = racing.front.probability[config.key]
        need = _target(n, p, known, settings, exhausted) - len(taken.get(config.key, ()))
        used = set(taken.get(config.key, set()))
        fresh = (r for r in range(10_000) if r not in used)
        for _ in range(max(0, need)):
            r = next(fresh)
            why = f"P(front) {p:.2f} after {n} run(s)" if known else "noise not yet known"
            wanted.append((len(used), -p, Replicate(config.key, r, dict(config.params), why)))
            used.add(r)
    # Fewest runs first (then the likelier front member): every surviving configuration gets
    # its second run before any gets a third, as irace races its survivors on common instances.
    # Deciding "dominated" needs the loser's runs as much as the winner's; feeding the front
    # first left the many one-run configurations undecided (benchmarks/racing_policy.py).
    wanted.sort(key=lambda w: (w[0], w[1]))
    return [w[2] for w in wanted]


def _extra_runs(trials: Iterable[FrozenTrial]) -> int:
    return sum(1 for t in trials if int(t.user_attrs.get(ATTR_REPLICATE, 0)) > 0
               and t.user_attrs.get(ATTR_DUPLICATE) is None)


def enqueue(study: optuna.Study, settings: Settings, exhausted: bool = False) -> list[Replicate]:
    """Queue what :func:`plan` asks for, within the budget and, while the search still explores,
    at most one extra run per :data:`EXPLORE_PER_EXTRA` configurations explored. Returns what
    was queued."""
    if settings.study.replicates == 1:
        return []
    trials = study.get_trials(deepcopy=False)
    asked = plan(trials, settings, exhausted)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    room = settings.study.trials - count_finished(study) - count_running(study) - waiting
    if settings.study.replicates == "race" and not exhausted:
        room = min(room, len(_taken(trials)) // EXPLORE_PER_EXTRA - _extra_runs(trials))
    queued = asked[:max(0, room)]
    if queued:  # planning took a while: another worker may have queued some of them since
        taken = _taken(study.get_trials(deepcopy=False))
        queued = [w for w in queued if w.replicate not in taken.get(w.configuration, ())]
    for want in queued:
        study.enqueue_trial(want.params, user_attrs={ATTR_CONFIGURATION: want.configuration,
                                                     ATTR_REPLICATE: want.replicate},
                            skip_if_exists=False)
    return queued
