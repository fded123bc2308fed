"""``explore study confirm NAME --seeds K``: train the plausible front again on fresh seeds.

The runs go to the companion study ``NAME-confirm`` (same storage, same settings as ``NAME``,
except no racing, no warm start and no pruning) as queued trials: replicate ``1000 + k`` of each
plausible configuration, k < K, so their seeds were never used by the search. The run is an
ordinary study run of the companion (resumable after any interruption, shareable by workers);
it stops when every queued run has finished. The comparison is :mod:`studies.confirm`.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from explore.run.opening import RunRequest, open_study
from explore.run.progress import Reporter
from explore.run.runner import run_study
from explore.search.racing import record_of
from studies.catalog import configured_study
from studies.confirm import FRESH_REPLICATE, Confirmation, confirm_name, confirmation
from studies.errors import UsageError
from studies.record import ATTR_CONFIGURATION, ATTR_DUPLICATE, ATTR_REPLICATE

__all__ = ["MAX_SEEDS", "confirm_study"]

MAX_SEEDS = 100
_TAKEN = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def _settings(stored: dict[str, Any], runs: int) -> dict[str, dict[str, Any]]:
    out = {section: dict(values) for section, values in stored.items()
           if isinstance(values, dict)}
    out["study"] = {**out.get("study", {}), "replicates": 1, "warm_start": 0, "prune": False,
                    "trials": runs}
    return out


def _enqueue(study: optuna.Study, wanted: list[tuple[str, int, dict[str, Any]]]) -> int:
    """Queue every wanted (configuration, replicate) that no trial has done, runs or waits for."""
    taken = {(t.user_attrs.get(ATTR_CONFIGURATION), t.user_attrs.get(ATTR_REPLICATE))
             for t in study.get_trials(deepcopy=False, states=_TAKEN)
             if t.user_attrs.get(ATTR_DUPLICATE) is None}
    queued = 0
    for key, replicate, params in wanted:
        if (key, replicate) not in taken:
            study.enqueue_trial(params, user_attrs={ATTR_CONFIGURATION: key,
                                                    ATTR_REPLICATE: replicate},
                                skip_if_exists=False)
            queued += 1
    return queued


def confirm_study(storage: str | None, name: str, seeds: int, device: str,
                  reporter: Reporter) -> Confirmation:
    """Train study ``name``'s plausible configurations on ``seeds`` fresh seeds each (what is
    already in the companion study is kept) and compare (see the module docstring)."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds {seeds}: give 1 to {MAX_SEEDS} fresh seeds per configuration")
    source = configured_study(storage, name)
    stored = source.study.settings
    if not stored:
        raise UsageError(f"study {name!r} was not made by explore study run: nothing to confirm")
    front = source.front
    keys = sorted(front.front.plausible)
    if not keys:
        raise UsageError(f"study {name!r} has no completed configuration yet: run it first")
    wanted = [(c.key, FRESH_REPLICATE + k, dict(c.params))
              for c in front.ordered(keys) for k in range(seeds)]
    request = RunRequest(name=confirm_name(name), storage=storage,
                         explicit=_settings(stored, len(wanted)), device=device,
                         queued_only=True)
    opened = open_study(request)
    wanted_pairs = {(key, r) for key, r, _ in wanted}
    other = sum(1 for t in opened.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if (t.user_attrs.get(ATTR_CONFIGURATION), t.user_attrs.get(ATTR_REPLICATE))
                not in wanted_pairs)
    if other:  # runs of configurations an earlier front had: the budget is on top of them
        request.explicit = _settings(stored, len(wanted) + other)
        opened = open_study(request)
    queued = _enqueue(opened.study, wanted)
    if queued:
        reporter.message(f"confirm: {queued} fresh run(s) of {len(keys)} plausible "
                         f"configuration(s) queued in study {opened.name!r}")
    run_study(request, reporter, opened)
    fresh = [record_of(t) for t in opened.study.get_trials(deepcopy=False)
             if int(t.user_attrs.get(ATTR_REPLICATE, 0)) >= FRESH_REPLICATE]
    return confirmation(name, front, keys, fresh, seeds)
