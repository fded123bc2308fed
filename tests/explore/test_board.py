"""What a run leaves for optuna-dashboard: the study note (the plausible front with intervals and
the findings) and the front figure, read back with optuna-dashboard's own API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest

from explore.run.board import FIGURE_ID, HISTORY_ID
from tests.conftest import EXPLORE, clean_env, tiny_study_toml

optuna_dashboard = pytest.importorskip("optuna_dashboard")

CONFIG = tiny_study_toml('mem_size = [8]\nheads = [1, 2]\nnorm = ["softmax", "double"]',
                        study="trials = 6\nwarm_start = 0\nreplicates = 2")


@pytest.mark.slow
def test_a_run_stores_a_note_and_the_front_figure(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(CONFIG, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'b.db'}"
    proc = subprocess.run([str(EXPLORE), "study", "run", "--name", "b", "--storage", url, "-c",
                           "b.toml", "-q"], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr, proc.stderr  # neither the note nor the figure failed
    study = optuna.load_study(study_name="b", storage=url)
    note = optuna_dashboard.get_note(study)
    assert note.startswith("## b: the plausible front (6 finished trials")
    plausible = json.loads(subprocess.run(
        [str(EXPLORE), "study", "pareto", "b", "--storage", url, "-f", "json"], cwd=tmp_path,
        env=clean_env(), capture_output=True, text=True, timeout=120).stdout)
    rows = [line for line in note.splitlines() if line.startswith("| S")]
    assert len(rows) == len(plausible) >= 1
    assert "### Findings" in note and "Double normalization" in note
    assert "`configuration` and `replicate`" in note
    for t in study.trials:  # every trial names its configuration and replicate for the board
        assert t.user_attrs["replicate"] in (0, 1) and t.user_attrs["configuration"]
    attrs = study._storage.get_study_system_attrs(study._study_id)
    figure = [k for k in attrs if k.startswith(f"dashboard:plot_data:{FIGURE_ID}:")]
    assert figure, sorted(attrs)
    # the plausible front's hypervolume over the trials, as `study history` has it, drawn to
    # the last finished trial
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # its own reader

    objects = get_plotly_graph_objects(attrs)
    assert HISTORY_ID in objects and FIGURE_ID in objects, sorted(objects)
    data = json.loads(objects[HISTORY_ID])["data"]
    line = next(t for t in data if t.get("name") == "plausible front (configuration means)")
    assert line["x"][-1] == 6 and line["x"] == sorted(line["x"])
    history = json.loads(subprocess.run(
        [str(EXPLORE), "study", "history", "b", "--storage", url, "-f", "json"], cwd=tmp_path,
        env=clean_env(), capture_output=True, text=True, timeout=120).stdout)
    assert history
