"""Trained weights of finished trials in the study's artifact store, each shown on its trial's
optuna-dashboard page by a card the study holds (see :mod:`studies.dashboard`), so that removing
a checkpoint removes its card too."""

from __future__ import annotations

import dataclasses
import io
import re
import uuid
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from explore.plan import TrialPlan
from extattn import save_checkpoint
from studies.dashboard import card_key, card_value, is_placeholder, placeholder
from studies.internals import storage_of, study_id, trial_id
from studies.record import ATTR_CHECKPOINT

__all__ = ["CheckpointKeeper", "prune_checkpoints", "used_elsewhere"]


class CheckpointKeeper:
    """Saves a finished trial's model in the artifact store; its id goes to the trial's user
    attr ``checkpoint_artifact`` and its dashboard card (``trial-0007.pt``) to the study."""

    def __init__(self, store: Any, scratch: Path, study_name: str) -> None:
        self.store = store
        self.scratch = scratch
        self.study_name = study_name

    def __call__(self, trial: optuna.Trial, model: torch.nn.Module, plan: TrialPlan) -> None:
        artifact_id = str(uuid.uuid4())
        path = self.scratch / f"checkpoint-{artifact_id}.pt"
        save_checkpoint(path, model, plan.model, {
            "study": self.study_name, "trial": trial.number, "params": trial.params,
            "seed": plan.seed, "train": dataclasses.asdict(plan.train), "config_key": plan.key})
        try:
            with path.open("rb") as f:
                self.store.write(artifact_id, f)
        finally:
            path.unlink(missing_ok=True)
        trial.set_user_attr(ATTR_CHECKPOINT, artifact_id)
        # Not a trial system attr (optuna.artifacts.upload_artifact's): that one could never be
        # taken back once the trial finished, and pruning removes files of finished trials.
        storage_of(trial.study).set_study_system_attr(
            study_id(trial.study), card_key(trial_id(trial), artifact_id),
            card_value(artifact_id, trial.number))


def used_elsewhere(study: optuna.Study) -> set[str]:
    """Checkpoint ids the storage's other studies refer to (``study copy`` within one artifact
    folder shares the files): pruning keeps them."""
    storage = storage_of(study)
    used: set[str] = set()
    for other in storage.get_all_studies():
        if study_id(other) == study_id(study):
            continue
        for t in storage.get_all_trials(study_id(other), deepcopy=False):
            value = t.user_attrs.get(ATTR_CHECKPOINT)
            if isinstance(value, str):
                used.add(value)
    return used


def prune_checkpoints(study: optuna.Study, front: list[FrozenTrial], store: Any,
                      base: Path) -> None:
    """Remove checkpoints of trials that are no longer on the front (``--keep-checkpoints
    pareto``) and their dashboard cards; the artifact ids come from our user attr, never from
    user strings. Workers of a study prune the same checkpoints after their own trials: one
    that another worker removed between the check and the removal is simply gone already.
    Trials of studies from before the cards keep their trial-attached card (it cannot change)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    on_front = {t.number for t in front}
    elsewhere: set[str] | None = None  # read once, and only when something is to be removed
    cards: dict[str, Any] | None = None
    storage, sid = storage_of(study), study_id(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = t.user_attrs.get(ATTR_CHECKPOINT)
        if t.number in on_front or not isinstance(artifact_id, str) or \
                not re.fullmatch(r"[0-9a-f-]{36}", artifact_id):
            continue
        if elsewhere is None:
            elsewhere = used_elsewhere(study)
            cards = storage.get_study_system_attrs(sid)
        if artifact_id in elsewhere:  # a copy of this study (or its source) still uses it
            continue
        path = base / artifact_id
        if f"artifacts:{artifact_id}" in t.system_attrs:  # a fixed card (studies from before)
            if not is_placeholder(path):  # leave a note for its card to download
                store.write(artifact_id, io.BytesIO(placeholder(t.number, study.study_name)))
            continue
        if path.exists():
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                pass
        key = card_key(trial_id(t), artifact_id)
        if cards is not None and cards.get(key, card_value(None)) != card_value(None):
            storage.set_study_system_attr(sid, key, card_value(None))
