"""The study's budget: which trials count, and the atomic claim of a slot.

``--trials N`` is the study's total of trained trials: COMPLETE + PRUNED, except duplicates
answered from the study (they cost nothing) and trials that found the budget full when they
started. Every process counts the same way from the storage, so workers on many machines share one
budget without a coordinator.
"""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from explore.config import Settings
from studies.record import ATTR_DUPLICATE, ATTR_OVER_BUDGET

__all__ = ["FINISHED", "claims_budget", "count_finished", "count_running", "distinct_finished",
           "finite_size", "slot_is_free", "state_counts"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def claims_budget(t: FrozenTrial) -> bool:
    """Whether a trial holds (or will hold) one of the budget's slots."""
    return (t.user_attrs.get(ATTR_DUPLICATE) is None
            and t.user_attrs.get(ATTR_OVER_BUDGET) is None)


def slot_is_free(study: optuna.Study, number: int, target: int) -> bool:
    """Atomic budget claim: trial ``number`` may train only if the finished trials plus the
    running ones that started before it leave a slot. Two workers can never both take the
    last slot, so the budget is never overshot.

    "Before" is a lower trial number (numbers order creation) or an earlier start: a re-queued
    trial keeps the low number it got when queued, but claims its slot when a worker starts it.
    """
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    mine = next((t.datetime_start for t in trials if t.number == number), None)

    def before(t: FrozenTrial) -> bool:
        if t.number < number:
            return True
        return (t.number != number and mine is not None and t.datetime_start is not None
                and t.datetime_start < mine)

    held = sum(1 for t in trials
               if claims_budget(t) and (t.state != TrialState.RUNNING or before(t)))
    return held < target


def count_running(study: optuna.Study, exclude: int | None = None) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if claims_budget(t) and t.number != exclude)


def count_finished(study: optuna.Study) -> int:
    """Finished trials that count against the budget: COMPLETE + PRUNED, except duplicates
    answered from the study (they cost nothing, so repeats cannot burn the budget)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if claims_budget(t))


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def finite_size(settings: Settings) -> int | None:
    """Number of distinct configurations when every searched field is discrete."""
    if not settings.space.discrete:
        return None
    return sum(1 for _ in settings.space.combinations(settings.model))


def distinct_finished(study: optuna.Study) -> int:
    """Distinct configurations finished; a param of one possible value (the lists of one value
    that studies from before suggested) does not tell configurations apart."""
    seen = {tuple(sorted((k, v) for k, v in t.params.items() if not _one_value(t, k)))
            for t in study.get_trials(deepcopy=False, states=FINISHED)}
    return len(seen)


def _one_value(t: FrozenTrial, name: str) -> bool:
    distribution = t.distributions.get(name)
    return isinstance(distribution, CategoricalDistribution) and len(distribution.choices) == 1
