"""``explore study dashboard`` serves optuna-dashboard on the study storage."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browse_helpers import EXPLORE, Studies, clean_env, first_line

from studies.dashboard import dashboard_app
from studies.errors import ExploreError
from tests.conftest import dashboard_get


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


@pytest.mark.slow
def test_dashboard_serves_our_studies_and_metric_names(studies: Studies) -> None:
    proc = subprocess.Popen(
        [str(EXPLORE), "study", "dashboard", "--storage", studies.url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        url = first_line(proc, timeout=60)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/")
        base = url.removesuffix("dashboard/")
        summaries = get_json(base + "api/studies")["study_summaries"]
        by_name = {s["study_name"]: s for s in summaries}
        assert set(by_name) == {"grid", "easa"}
        assert by_name["grid"]["directions"] == ["maximize", "maximize"]
        detail = get_json(base + f"api/studies/{by_name['grid']['study_id']}")
        assert detail["objective_names"] == ["accuracy", "throughput"]
        assert len(detail["trials"]) == 8
        # The checkpoints the run kept are the trials' artifacts, served from our store.
        kept = [(t, a["artifact_id"]) for t in detail["trials"] for a in t.get("artifacts", [])
                if (studies.checkpoints / a["artifact_id"]).exists()]
        assert kept
        trial, artifact = kept[0]
        link = base + f"artifacts/{by_name['grid']['study_id']}/{trial['trial_id']}/{artifact}"
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.read() == (studies.checkpoints / artifact).read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_optuna_dashboard_is_a_clear_error(studies: Studies,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    with pytest.raises(ExploreError, match=r"optuna-dashboard is not installed.*\[dashboard\]"):
        dashboard_app(studies.url)


def test_dashboard_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(ExploreError, match="no study database"):
        dashboard_app(str(tmp_path / "absent.db"))
    assert not (tmp_path / "absent.db").exists()


def test_an_old_card_whose_file_is_gone_downloads_a_note(tmp_path: Path) -> None:
    # A study written before explore kept its cards in step with its files: the checkpoint is
    # a trial-attached artifact (it can never be removed from the finished trial), and its file
    # was deleted when the trial left the front. The dashboard must not answer HTTP 500.
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from studies.dashboard import MISSING_NOTE

    db = tmp_path / "old.db"
    checkpoints = tmp_path / "old-artifacts" / "checkpoints"
    checkpoints.mkdir(parents=True)
    store = FileSystemArtifactStore(str(checkpoints))
    study = optuna.create_study(study_name="old", storage=f"sqlite:///{db}",
                                directions=["maximize", "maximize"])
    kept, gone = (tmp_path / "kept.pt"), (tmp_path / "gone.pt")
    kept.write_bytes(b"weights one")
    gone.write_bytes(b"weights two")
    ids = []
    for path in (kept, gone):
        trial = study.ask()
        ids.append((trial._trial_id, upload_artifact(artifact_store=store, file_path=str(path),
                                                     study_or_trial=trial)))
        study.tell(trial, [0.9, 1000.0])
    (checkpoints / ids[1][1]).unlink()
    before = db.read_bytes()

    app = dashboard_app(f"sqlite:///{db}")
    study_id = study._study_id
    status, body = dashboard_get(app, f"/artifacts/{study_id}/{ids[0][0]}/{ids[0][1]}")
    assert status.startswith("200") and body == b"weights one"
    status, body = dashboard_get(app, f"/artifacts/{study_id}/{ids[1][0]}/{ids[1][1]}")
    assert status.startswith("200") and body == MISSING_NOTE
    assert db.read_bytes() == before  # served as it is: nothing written
