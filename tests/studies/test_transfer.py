"""``delete`` and ``copy``: the study with its snapshots and checkpoints, nothing else."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from browse_helpers import Studies, load

from studies.catalog import list_studies, pareto_front
from studies.errors import ExploreError, StudyNotFound, UsageError
from studies.snapshots import SnapshotStore
from studies.transfer import copy_study, delete_study


def checkpoint_ids(studies: Studies, name: str) -> set[str]:
    return {t.user_attrs["checkpoint_artifact"] for t in load(studies, name).trials
            if "checkpoint_artifact" in t.user_attrs}


def test_delete_removes_study_snapshots_and_checkpoints(studies_copy: Studies) -> None:
    ids = {i for i in checkpoint_ids(studies_copy, "grid")
           if (studies_copy.checkpoints / i).exists()}
    others = {i for i in checkpoint_ids(studies_copy, "easa")
              if (studies_copy.checkpoints / i).exists()}
    assert ids and others
    snaps = len(SnapshotStore.from_url(studies_copy.url).history("grid"))
    study_id = load(studies_copy, "grid")._study_id
    states = studies_copy.checkpoints.parent / "states" / f"study-{study_id}"
    states.mkdir(parents=True, exist_ok=True)
    (states / "left-by-an-interrupted-trial.pt").write_bytes(b"x")
    result = delete_study(studies_copy.url, "grid")
    assert not states.exists()
    assert (result.trials, result.snapshots, result.checkpoints) == (8, snaps, len(ids))
    assert [r.name for r in list_studies(studies_copy.url)] == ["easa"]
    assert SnapshotStore.from_url(studies_copy.url).history("grid") == []
    assert SnapshotStore.from_url(studies_copy.url).history("easa") != []
    assert not any((studies_copy.checkpoints / i).exists() for i in ids)
    assert all((studies_copy.checkpoints / i).exists() for i in others)
    with pytest.raises(StudyNotFound):
        delete_study(studies_copy.url, "grid")


def test_delete_asks_first_and_a_no_changes_nothing(studies_copy: Studies) -> None:
    questions: list[str] = []

    def no(question: str) -> bool:
        questions.append(question)
        return False

    result = delete_study(studies_copy.url, "easa", confirm=no)
    assert not result.deleted
    assert questions == [f"study 'easa' in {studies_copy.db} with 4 trials"]
    assert [r.name for r in list_studies(studies_copy.url)] == ["easa", "grid"]
    with pytest.raises(StudyNotFound):
        delete_study(studies_copy.url, "nope", confirm=no)
    assert len(questions) == 1


def test_copy_brings_trials_snapshots_and_checkpoints(studies: Studies, tmp_path: Path) -> None:
    target = tmp_path / "other" / "copy.db"
    target.parent.mkdir()
    result = copy_study(studies.url, "grid", str(target))
    assert (result.study, result.to_study, result.trials) == ("grid", "grid", 8)
    url = f"sqlite:///{target}"
    source, copied = load(studies, "grid"), optuna.load_study(study_name="grid", storage=url)
    assert [(t.number, t.values, t.params, t.user_attrs) for t in copied.trials] == [
        (t.number, t.values, t.params, t.user_attrs) for t in source.trials]
    assert copied.user_attrs == source.user_attrs
    assert copied.metric_names == ["accuracy", "throughput"]
    assert SnapshotStore.from_url(url).history("grid") == \
        SnapshotStore.from_url(studies.url).history("grid")
    artifacts = target.parent / "copy-artifacts" / "checkpoints"
    kept = {i for i in checkpoint_ids(studies, "grid") if (studies.checkpoints / i).exists()}
    assert result.checkpoints == len(kept) > 0
    assert {p.name for p in artifacts.iterdir()} == kept
    assert pareto_front(url, "grid").pareto == pareto_front(studies.url, "grid").pareto


def test_copy_refuses_to_overwrite(studies: Studies, tmp_path: Path) -> None:
    target = str(tmp_path / "copy.db")
    copy_study(studies.url, "easa", target)
    with pytest.raises(ExploreError, match="already has a study named 'easa'"):
        copy_study(studies.url, "easa", target)
    copy_study(studies.url, "easa", target, to_name="easa2")
    assert [r.name for r in list_studies(target)] == ["easa", "easa2"]
    assert SnapshotStore.from_url(f"sqlite:///{target}").history("easa2") != []
    with pytest.raises(UsageError, match="--to-name"):
        copy_study(studies.url, "easa", studies.url)


def test_copy_of_a_missing_study_creates_nothing(studies: Studies, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    with pytest.raises(StudyNotFound):
        copy_study(studies.url, "nope", str(target))
    assert not target.exists()


def test_a_copy_in_the_same_storage_never_loses_the_source_weights(studies_copy: Studies,
                                                                    tmp_path: Path) -> None:
    """A copy inside one database shares the checkpoint files: deleting the copy keeps what the
    source uses (and the other way round); the last study that uses a file removes it."""
    from explore.run.export_models import export_models

    url = studies_copy.url
    ids = {i for i in checkpoint_ids(studies_copy, "easa")
           if (studies_copy.checkpoints / i).exists()}
    assert ids
    copied = copy_study(url, "easa", url, to_name="easa2")
    assert copied.shared == len(ids) and copied.checkpoints == 0
    deleted = delete_study(url, "easa2")
    assert deleted.checkpoints == 0
    assert all((studies_copy.checkpoints / i).exists() for i in ids)
    result = export_models(url, "easa", tmp_path / "m", retrain=False, observed=True)
    assert all(m["source"] == "artifact" for m in result.index["models"])

    copy_study(url, "easa", url, to_name="easa3")
    assert delete_study(url, "easa").checkpoints == 0  # the copy still uses them
    assert all((studies_copy.checkpoints / i).exists() for i in ids)
    assert delete_study(url, "easa3").checkpoints == len(ids)  # the last user removes them
    assert not any((studies_copy.checkpoints / i).exists() for i in ids)


def test_pruning_a_continued_copy_keeps_the_checkpoints_its_source_uses(
        studies_copy: Studies) -> None:
    from explore.run.artifacts import prune_checkpoints, used_elsewhere

    url = studies_copy.url
    copy_study(url, "easa", url, to_name="easa2")
    ids = {i for i in checkpoint_ids(studies_copy, "easa")
           if (studies_copy.checkpoints / i).exists()}
    copy = optuna.load_study(study_name="easa2", storage=url)
    assert ids <= used_elsewhere(copy)
    store = optuna.artifacts.FileSystemArtifactStore(str(studies_copy.checkpoints))
    prune_checkpoints(copy, [], store, studies_copy.checkpoints)  # as if nothing were on its front
    assert all((studies_copy.checkpoints / i).exists() for i in ids)


# ---- the dashboard's checkpoint cards travel with the copy, under the copy's trial ids ------

def _cards_study(db: Path) -> tuple[optuna.Study, Path, list[str]]:
    """Study ``cards`` in ``db``: trial 0 keeps its checkpoint (a live card), trial 1's was
    pruned (file gone, card null), as ``explore study run`` leaves them."""
    import uuid

    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from studies.dashboard import card_key, card_value

    folder = db.parent / f"{db.stem}-artifacts" / "checkpoints"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="cards", storage=f"sqlite:///{db}",
                                directions=["maximize", "maximize"])
    ids = [str(uuid.uuid4()) for _ in range(2)]
    for number, artifact_id in enumerate(ids):
        study.add_trial(create_trial(values=[0.9 - number / 10, 100.0], params={"x": number},
                                     distributions={"x": IntDistribution(0, 9)},
                                     user_attrs={"checkpoint_artifact": artifact_id}))
    trials = study.get_trials()
    (folder / ids[0]).write_bytes(b"weights of trial 0")
    study._storage.set_study_system_attr(study._study_id, card_key(trials[0]._trial_id, ids[0]),
                                         card_value(ids[0], 0))
    study._storage.set_study_system_attr(study._study_id, card_key(trials[1]._trial_id, ids[1]),
                                         card_value(None))
    return study, folder, ids


def _served(url: str, name: str, folder: Path) -> dict[int, list[bytes]]:
    """What optuna-dashboard shows and downloads for each trial of study ``name``."""
    from wsgiref.util import setup_testing_defaults

    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    from optuna.artifacts import FileSystemArtifactStore

    app = optuna_dashboard.wsgi(url, artifact_store=FileSystemArtifactStore(str(folder)))

    def get(path: str) -> bytes:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), (path, status, body)
        return body

    study_id = optuna.load_study(study_name=name, storage=url)._study_id
    import json

    detail = json.loads(get(f"/api/studies/{study_id}"))
    return {t["number"]: [get(f"/artifacts/{study_id}/{t['trial_id']}/{a['artifact_id']}")
                          for a in t["artifacts"]] for t in detail["trials"]}


def test_a_copy_shows_the_kept_checkpoints_on_its_own_trials(tmp_path: Path) -> None:
    source, folder, ids = _cards_study(tmp_path / "src.db")
    target = tmp_path / "dst.db"
    other = optuna.create_study(study_name="other", storage=f"sqlite:///{target}")
    for _ in range(3):  # the copy's trial ids differ from the source's
        other.add_trial(optuna.trial.create_trial(value=1.0))
    result = copy_study(f"sqlite:///{tmp_path / 'src.db'}", "cards", str(target))
    assert result.checkpoints == 1
    copied = optuna.load_study(study_name="cards", storage=f"sqlite:///{target}")
    assert {t._trial_id for t in copied.trials}.isdisjoint(t._trial_id for t in source.trials)
    dst_folder = tmp_path / "dst-artifacts" / "checkpoints"
    assert _served(f"sqlite:///{target}", "cards", dst_folder) == {
        0: [b"weights of trial 0"], 1: []}
    cards = [k for k in copied._storage.get_study_system_attrs(copied._study_id)
             if k.startswith("dashboard:artifacts:")]
    assert cards == [f"dashboard:artifacts:{copied.trials[0]._trial_id}:{ids[0]}"]


def test_a_copy_in_one_storage_keeps_its_card_when_the_source_prunes(tmp_path: Path) -> None:
    from explore.run.artifacts import prune_checkpoints

    source, folder, ids = _cards_study(tmp_path / "one.db")
    url = f"sqlite:///{tmp_path / 'one.db'}"
    assert copy_study(url, "cards", url, to_name="cards2").shared == 1
    store = optuna.artifacts.FileSystemArtifactStore(str(folder))
    prune_checkpoints(source, [], store, folder)  # the copy still uses trial 0's file
    assert (folder / ids[0]).is_file()
    assert _served(url, "cards2", folder) == {0: [b"weights of trial 0"], 1: []}
    assert _served(url, "cards", folder) == {0: [b"weights of trial 0"], 1: []}
    delete_study(url, "cards2")
    prune_checkpoints(source, [], store, folder)  # now the source is its only user
    assert not (folder / ids[0]).exists()
    assert _served(url, "cards", folder) == {0: [], 1: []}
