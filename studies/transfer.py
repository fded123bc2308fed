"""``explore study delete`` and ``explore study copy``: a study with everything explore keeps
beside it (Pareto snapshots, checkpoints in the artifact store, mid-trial training states)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies.catalog import open_catalog
from studies.dashboard import card_key, parse_card_key
from studies.errors import ExploreError, UsageError
from studies.internals import study_id, trial_id
from studies.record import ATTR_CHECKPOINT, Catalog, TrialRecord
from studies.storage import (
    ENV_ARTIFACTS,
    StorageSpec,
    open_storage,
    parse_storage,
    refuse_foreign_sqlite,
    snapshot_store,
)

__all__ = ["CopyResult", "DeleteResult", "copy_study", "delete_study"]

_ARTIFACT_ID = re.compile(r"[0-9a-f-]{36}")  # Optuna's artifact ids are UUID4 strings


@dataclass(frozen=True)
class DeleteResult:
    study: str
    where: str
    trials: int
    snapshots: int
    checkpoints: int
    deleted: bool = True  # False: the confirmation was refused, nothing changed


@dataclass(frozen=True)
class CopyResult:
    study: str
    to_study: str
    where: str  # the target, safe to print
    trials: int
    snapshots: int
    checkpoints: int
    shared: int = 0  # checkpoint files the copy shares with its source (one artifact folder)


def _checkpoint_ids(trials: list[TrialRecord]) -> list[str]:
    """Artifact ids of the checkpoints the runner recorded (only ids of the expected form, so
    a user attr can never point a file operation elsewhere)."""
    ids = []
    for t in trials:
        value = t.user_attrs.get(ATTR_CHECKPOINT)
        if isinstance(value, str) and _ARTIFACT_ID.fullmatch(value):
            ids.append(value)
    return ids


def used_elsewhere(catalog: Catalog, study_id: int) -> set[str]:
    """Checkpoint ids that trials of the storage's other studies refer to: a copy within one
    artifact folder shares its source's files, so neither may remove them."""
    used: set[str] = set()
    for other in catalog.studies():
        if other.study_id != study_id:
            used.update(_checkpoint_ids(catalog.trials(other)))
    return used


def _checkpoint_dir(spec: StorageSpec) -> Path:
    return spec.artifact_dir() / "checkpoints"


def delete_study(storage: str | None, name: str,
                 confirm: Callable[[str], bool] | None = None) -> DeleteResult:
    """Delete study ``name``: Optuna's rows, our snapshot rows, its checkpoints and states.

    Args:
        confirm: Asked (with a description of the study) once the study is known to exist;
            nothing is deleted unless it returns True. None: no question.
    """
    import optuna

    spec = parse_storage(storage)
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)
        trials = catalog.trials(meta)
        keep = used_elsewhere(catalog, meta.study_id)
    if confirm is not None and not confirm(
            f"study {name!r} in {spec.display} with {len(trials)} trials"):
        return DeleteResult(name, spec.display, len(trials), 0, 0, deleted=False)
    backend = open_storage(spec, create=False)
    optuna.delete_study(study_name=name, storage=backend)
    store = snapshot_store(spec, backend, create=False)
    try:
        snapshots = store.delete_study(name)
    finally:
        store.engine.dispose()
    removed = 0
    folder = _checkpoint_dir(spec)
    for artifact_id in _checkpoint_ids(trials):
        path = folder / artifact_id
        if artifact_id not in keep and path.is_file():
            path.unlink()
            removed += 1
    # Mid-trial training states live under the study id. Only a database's own artifact folder
    # is known to hold no other database's study of that id (a shared $EXPLORE_ARTIFACTS may);
    # states left elsewhere are harmless, as they are found by experiment key only.
    if spec.path is not None and not os.environ.get(ENV_ARTIFACTS):
        shutil.rmtree(spec.artifact_dir() / "states" / f"study-{meta.study_id}",
                      ignore_errors=True)
    return DeleteResult(name, spec.display, len(trials), snapshots, removed)


def copy_study(storage: str | None, name: str, to_storage: str,
               to_name: str | None = None) -> CopyResult:
    """Copy study ``name`` into ``to_storage`` (as ``to_name``) as ``optuna.copy_study`` does,
    plus its Pareto snapshots, the checkpoint files its trials refer to and their dashboard
    cards (rekeyed: the copy's trials have new ids)."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    spec = parse_storage(storage)
    target = parse_storage(to_storage)
    new_name = to_name or name
    if target.url == spec.url and new_name == name:
        raise UsageError("the target storage is the source: pass --to-name to copy the study "
                         "under another name")
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)
        trials = catalog.trials(meta)
    if target.kind == "sqlite" and target.path is not None and target.path.is_file():
        refuse_foreign_sqlite(target.path)
    source = open_storage(spec, create=False)
    destination = open_storage(target, create=True)
    try:
        trial_ids = _copy_rows(source, name, destination, new_name)
    except DuplicatedStudyError as exc:
        raise ExploreError(f"{target.display} already has a study named {new_name!r}: "
                           "pass --to-name, or delete it first") from exc
    snapshots = _copy_snapshots(spec, source, name, target, destination, new_name)
    copied = shared = 0
    src_dir, dst_dir = _checkpoint_dir(spec), _checkpoint_dir(target)
    for artifact_id in _checkpoint_ids(trials):
        if not (src_dir / artifact_id).is_file():
            continue
        if src_dir.resolve() == dst_dir.resolve():
            shared += 1  # one file, two studies: delete and pruning keep it while either uses it
            continue
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_dir / artifact_id, dst_dir / artifact_id)
        copied += 1
    _copy_cards(source, name, destination, new_name, trial_ids, dst_dir)
    return CopyResult(name, new_name, target.display, len(trials), snapshots, copied, shared)


def _copy_rows(source: Any, name: str, destination: Any, new_name: str) -> dict[int, int]:
    """``optuna.copy_study``, less the checkpoint cards (their keys name the source's trial
    ids; :func:`_copy_cards` writes them for the copy's). Returns source → copy trial ids."""
    import optuna

    from_study = optuna.load_study(study_name=name, storage=source)
    to_study = optuna.create_study(study_name=new_name, storage=destination,
                                   directions=from_study.directions)
    for key, value in source.get_study_system_attrs(study_id(from_study)).items():
        if parse_card_key(key) is None:
            destination.set_study_system_attr(study_id(to_study), key, value)
    for key, value in from_study.user_attrs.items():
        to_study.set_user_attr(key, value)
    return {trial_id(t): destination.create_new_trial(study_id(to_study), template_trial=t)
            for t in from_study.get_trials(deepcopy=False)}


def _copy_cards(source: Any, name: str, destination: Any, new_name: str,
                trial_ids: dict[int, int], folder: Path) -> None:
    """The source's live checkpoint cards, keyed by the copy's trial ids, for the files the
    copy has: no card of the copy points to a file it lacks."""
    from_id = source.get_study_id_from_name(name)
    to_id = destination.get_study_id_from_name(new_name)
    for key, value in source.get_study_system_attrs(from_id).items():
        parsed = parse_card_key(key)
        if parsed is None or json.loads(value) is None or parsed[0] not in trial_ids:
            continue
        if (folder / parsed[1]).is_file():
            destination.set_study_system_attr(to_id, card_key(trial_ids[parsed[0]], parsed[1]),
                                              value)


def _copy_snapshots(spec: StorageSpec, source: object, name: str, target: StorageSpec,
                    destination: object, new_name: str) -> int:
    from sqlalchemy.orm import Session

    from studies.snapshots import MemberRow, SnapshotRow

    src = snapshot_store(spec, source, create=False)  # type: ignore[arg-type]
    dst = snapshot_store(target, destination)  # type: ignore[arg-type]
    try:
        snaps = src.history(name)
        dst.delete_study(new_name)  # rows left by an earlier study of that name
        with Session(dst.engine) as session, session.begin():
            for s in snaps:
                session.add(SnapshotRow(
                    study_name=new_name, number=s.number, n_finished=s.n_finished,
                    created_at=s.created_at, hypervolume=s.hypervolume,
                    ref_accuracy=s.reference[0], ref_throughput=s.reference[1],
                    front_size=s.front_size,
                    members=[MemberRow(trial_number=n, accuracy=a, throughput=t)
                             for n, a, t in s.members]))
        return len(snaps)
    finally:
        src.engine.dispose()
        dst.engine.dispose()
