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
