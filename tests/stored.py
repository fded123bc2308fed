"""What a user has stored, read so that a test can compare it before and after a command: every
trial of every study (through plain Optuna) and the bytes of every file under a folder.

No torch here: the ``studies`` tests use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["file_bytes", "running", "same_files", "same_trials", "trials_of"]


def trials_of(storage: Any) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Every trial of every study in ``storage`` (a URL or an Optuna storage), by (study, number):
    its state, values, params, user and system attrs and times."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage) if "://" in storage else storage
    found: dict[tuple[str, int], tuple[Any, ...]] = {}
    try:
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            for t in study.get_trials(deepcopy=False):
                found[(summary.study_name, t.number)] = (
                    t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.datetime_start,
                    t.datetime_complete)
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()  # no connection (or WAL file) outlives the reading
    return found


def running(storage: Any) -> list[tuple[str, int]]:
    """The trials left RUNNING."""
    return [key for key, t in trials_of(storage).items() if t[0] == TrialState.RUNNING]


def same_trials(before: dict[tuple[str, int], tuple[Any, ...]],
                after: dict[tuple[str, int], tuple[Any, ...]]) -> None:
    """Every trial stored before is still there, unchanged (new trials may have been added)."""
    lost = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert not lost, f"trials lost: {lost}"
    assert not changed, f"trials changed: {changed}"


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (none when ``root`` is missing)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def same_files(before: dict[str, bytes], after: dict[str, bytes], may_go: str = "\0") -> None:
    """Every file there before keeps its bytes; only names starting with ``may_go`` (scratch
    such as mid-trial training states) may have gone."""
    lost = sorted(k for k in before if k not in after and not k.startswith(may_go))
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert not lost, f"files lost: {lost}"
    assert not changed, f"files changed: {changed}"
