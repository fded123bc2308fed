"""Trained weights of finished trials in Optuna's artifact store (the dashboard shows them)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from explore.plan import TrialPlan
from extattn import save_checkpoint
from studies.record import ATTR_CHECKPOINT

__all__ = ["CheckpointKeeper", "prune_checkpoints", "used_elsewhere"]


class CheckpointKeeper:
    """Saves a finished trial's model as an artifact of the trial; its id goes to the trial's
    user attr ``checkpoint_artifact``."""

    def __init__(self, store: Any, scratch: Path, study_name: str) -> None:
        self.store = store
        self.scratch = scratch
        self.study_name = study_name

    def __call__(self, trial: optuna.Trial, model: torch.nn.Module, plan: TrialPlan) -> None:
        path = self.scratch / f"checkpoint-{trial._trial_id}.pt"
        save_checkpoint(path, model, plan.model, {
            "study": self.study_name, "trial": trial.number, "params": trial.params,
            "seed": plan.seed, "train": dataclasses.asdict(plan.train), "config_key": plan.key})
        try:
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.store, file_path=str(path), study_or_trial=trial,
                mimetype="application/x-pytorch")
        finally:
            path.unlink(missing_ok=True)
        trial.set_user_attr(ATTR_CHECKPOINT, artifact_id)


def used_elsewhere(study: optuna.Study) -> set[str]:
    """Checkpoint ids the storage's other studies refer to (``study copy`` within one artifact
    folder shares the files): pruning keeps them."""
    storage = study._storage
    used: set[str] = set()
    for other in storage.get_all_studies():
        if other._study_id == study._study_id:
            continue
        for t in storage.get_all_trials(other._study_id, deepcopy=False):
            value = t.user_attrs.get(ATTR_CHECKPOINT)
            if isinstance(value, str):
                used.add(value)
    return used


def prune_checkpoints(study: optuna.Study, front: list[FrozenTrial], store: Any,
                       base: Path) -> None:
    """Remove checkpoints of trials that are no longer on the front (``--keep-checkpoints
    pareto``); the artifact ids come from our user attr, never from user strings. Workers of a
    study prune the same checkpoints after their own trials: one that another worker removed
    between the check and the removal is simply gone already."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    on_front = {t.number for t in front}
    elsewhere: set[str] | None = None  # read once, and only when something is to be removed
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = t.user_attrs.get(ATTR_CHECKPOINT)
        if t.number in on_front or not artifact_id:
            continue
        if elsewhere is None:
            elsewhere = used_elsewhere(study)
        if artifact_id in elsewhere:  # a copy of this study (or its source) still uses it
            continue
        if re.fullmatch(r"[0-9a-f-]{36}", artifact_id) and (base / artifact_id).exists():
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                pass
