"""The Optuna internals explore relies on, named once.

Optuna's public API has no way to reach a study's storage, nor the storage ids of a study and a
trial, yet explore needs all three: recovery and the budget fail trials other workers left
behind (``set_trial_state_values`` on a trial this process does not own), the checkpoint cards
are study system attrs (``Study.set_system_attr`` is gone since Optuna 4), and ``study copy``
writes trials and attrs by id. These attributes have been stable since Optuna 1; should one
change, this module is the only place to follow it (the test suite exercises every caller).
"""

from __future__ import annotations

from typing import Any

__all__ = ["storage_of", "study_id", "trial_id"]


def storage_of(study: Any) -> Any:
    """The ``optuna.storages.BaseStorage`` an ``optuna.Study`` reads and writes."""
    return study._storage


def study_id(study: Any) -> int:
    """The storage id of an ``optuna.Study`` or a ``FrozenStudy``."""
    return int(study._study_id)


def trial_id(trial: Any) -> int:
    """The storage id of an ``optuna.Trial`` or a ``FrozenTrial`` (unique in the storage, where
    the number is unique only in its study)."""
    return int(trial._trial_id)
