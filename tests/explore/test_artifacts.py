"""``--keep-checkpoints pareto``: checkpoints of trials that left the front are removed, by every
worker after its own trials, so two workers may remove the same one at the same moment."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import IntDistribution
from optuna.trial import create_trial

from explore.run.artifacts import prune_checkpoints
from tests.conftest import dashboard_get


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


# ---- the dashboard's cards: one per kept checkpoint, none for a removed one -----------------

def _storages(tmp_path: Path) -> dict[str, Any]:
    from optuna.storages.journal import JournalFileBackend

    return {"sqlite": optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'cards.db'}"),
            "journal": optuna.storages.JournalStorage(
                JournalFileBackend(str(tmp_path / "cards.log")))}




def _trial_cards(app: Any, study_id: int) -> dict[int, list[dict[str, Any]]]:
    status, body = dashboard_get(app, f"/api/studies/{study_id}")
    assert status.startswith("200"), body
    return {t["number"]: t["artifacts"] for t in json.loads(body)["trials"]}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_removed_checkpoint_leaves_no_card(tmp_path: Path, kind: str) -> None:
    """Three trained trials get a card each (``trial-000N.pt``) that downloads their file;
    pruning the dominated one removes its file and its card, the others stay downloadable."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    from explore.config import resolve_settings
    from explore.plan import plan_trial
    from explore.run.artifacts import CheckpointKeeper
    from extattn import create_model, load_checkpoint

    storage = _storages(tmp_path)[kind]
    base = tmp_path / "checkpoints"
    base.mkdir()
    store = FileSystemArtifactStore(str(base))
    study = optuna.create_study(storage=storage, study_name="cards",
                                directions=["maximize", "maximize"])
    settings = resolve_settings({"model": {"dim": 16, "depth": 1}})
    plan = plan_trial({"mem_size": 8, "heads": 1}, settings, (8, 1, 10))
    keeper = CheckpointKeeper(store, tmp_path, "cards")
    for values in [(0.9, 100.0), (0.8, 200.0), (0.7, 50.0)]:
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        keeper(trial, create_model(plan.model), plan)
        study.tell(trial, list(values))
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    cards = _trial_cards(app, study._study_id)
    assert [[c["filename"] for c in cards[n]] for n in range(3)] == [
        ["trial-0000.pt"], ["trial-0001.pt"], ["trial-0002.pt"]]
    trials = study.get_trials()
    for t in trials:
        artifact_id = t.user_attrs["checkpoint_artifact"]
        assert cards[t.number][0]["artifact_id"] == artifact_id
        status, body = dashboard_get(
            app, f"/artifacts/{study._study_id}/{t._trial_id}/{artifact_id}")
        assert status.startswith("200") and body == (base / artifact_id).read_bytes()
        assert load_checkpoint(base / artifact_id)[1] == plan.model  # a real checkpoint

    prune_checkpoints(study, study.best_trials, store, base)
    gone = trials[2].user_attrs["checkpoint_artifact"]
    assert not (base / gone).exists()
    cards = _trial_cards(app, study._study_id)
    assert cards[2] == [] and len(cards[0]) == len(cards[1]) == 1
    status, _ = dashboard_get(app, f"/artifacts/{study._study_id}/{trials[2]._trial_id}/{gone}")
    assert status.startswith("404")  # not a 500 on a missing file: there is no card any more
    assert trials[2].user_attrs["checkpoint_artifact"] == gone  # explore's readers still see it


def test_a_fixed_card_of_an_older_study_gets_a_note_not_a_missing_file(tmp_path: Path) -> None:
    """Studies from before the study-level cards attached each checkpoint to its trial
    (``artifacts:<id>``, fixed once the trial finished). Pruning leaves a short note in the
    file's place, so the card downloads it instead of failing; `study models` reads the note
    as "not kept" and retrains."""
    from explore.run.export_models import _checkpoint_file
    from studies.dashboard import PLACEHOLDER_PREFIX, is_placeholder
    from studies.record import TrialRecord

    base = tmp_path / "checkpoints"
    base.mkdir()
    store = FileSystemArtifactStore(str(base))
    study = optuna.create_study(directions=["maximize", "maximize"], study_name="old")
    ids = {}
    for number, values in enumerate([(0.9, 100.0), (0.7, 50.0), (0.6, 40.0)]):
        trial = study.ask()
        trial.suggest_int("x", number, number)
        source = tmp_path / f"checkpoint-{number}.pt"
        source.write_bytes(b"weights %d" % number)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=str(source), study_or_trial=trial)
        trial.set_user_attr("checkpoint_artifact", artifact_id)
        ids[number] = artifact_id
        study.tell(trial, list(values))
    (base / ids[2]).unlink()  # an earlier version's pruning removed this one already
    prune_checkpoints(study, study.best_trials, store, base)
    assert (base / ids[0]).read_bytes() == b"weights 0"  # the front keeps its weights
    for number in (1, 2):  # every fixed card of a removed checkpoint downloads a note
        path = base / ids[number]
        assert is_placeholder(path) and path.read_bytes().startswith(PLACEHOLDER_PREFIX)
        assert f"trial {number} of study 'old'" in path.read_text()
        record = TrialRecord(number=number, state="COMPLETE", values=(0.7, 50.0), params={},
                             user_attrs={"checkpoint_artifact": ids[number]},
                             datetime_start=None, datetime_complete=None)
        assert _checkpoint_file(base, record) is None  # not a checkpoint: retrain it
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    prune_checkpoints(study, study.best_trials, store, base)  # again: nothing changes
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before
