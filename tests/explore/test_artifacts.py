"""``--keep-checkpoints pareto``: checkpoints of trials that left the front are removed, by every
worker after its own trials, so two workers may remove the same one at the same moment."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import IntDistribution
from optuna.trial import create_trial

from explore.run.artifacts import prune_checkpoints


def _study_with_checkpoints(base: Path) -> tuple[optuna.Study, FileSystemArtifactStore,
                                                 dict[int, str]]:
    """Trials 0 and 1 are on the front, trial 2 is dominated; each has a checkpoint."""
    base.mkdir()
    store = FileSystemArtifactStore(str(base))
    study = optuna.create_study(directions=["maximize", "maximize"])
    ids = {}
    for number, values in enumerate([(0.9, 100.0), (0.8, 200.0), (0.7, 50.0)]):
        artifact_id = str(uuid.uuid4())
        store.write(artifact_id, io.BytesIO(b"weights"))
        ids[number] = artifact_id
        study.add_trial(create_trial(values=list(values), params={"x": number},
                                     distributions={"x": IntDistribution(0, 9)},
                                     user_attrs={"checkpoint_artifact": artifact_id}))
    return study, store, ids


def test_only_the_fronts_checkpoints_stay(tmp_path: Path) -> None:
    base = tmp_path / "checkpoints"
    study, store, ids = _study_with_checkpoints(base)
    prune_checkpoints(study, study.best_trials, store, base)
    assert sorted(p.name for p in base.iterdir()) == sorted([ids[0], ids[1]])
    prune_checkpoints(study, study.best_trials, store, base)  # nothing left to do: no error
    assert len(list(base.iterdir())) == 2


class _OtherWorkerFirst(FileSystemArtifactStore):
    """The interleaving CI met: between this worker's check that the file exists and its
    removal, another worker of the study removed it."""

    def remove(self, artifact_id: str) -> None:
        super().remove(artifact_id)  # the other worker
        super().remove(artifact_id)  # this one: ArtifactNotFound


def test_a_checkpoint_another_worker_removed_first_is_no_error(tmp_path: Path) -> None:
    base = tmp_path / "checkpoints"
    study, _, ids = _study_with_checkpoints(base)
    prune_checkpoints(study, study.best_trials, _OtherWorkerFirst(str(base)), base)
    assert sorted(p.name for p in base.iterdir()) == sorted([ids[0], ids[1]])
