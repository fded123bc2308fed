"""``explore study confirm``: the plausible front re-trained on fresh seeds, end to end in real
subprocesses on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest

from studies.confirm import FRESH_REPLICATE
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE
from tests.conftest import run_explore, tiny_study_toml

CONFIG = tiny_study_toml('mem_size = [8, 16]\nheads = [1]\nnorm = ["softmax", "double"]',
                        study="trials = 6\nwarm_start = 0\nreplicates = 2")


def _explore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_explore(tmp_path, *args)


@pytest.mark.slow
def test_confirm_trains_the_plausible_front_on_fresh_seeds_and_resumes(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    ran = _explore(tmp_path, "study", "run", "--name", "base", "--storage", url, "-c", "c.toml",
                   "-q")
    assert ran.returncode == 0, ran.stderr
    plausible = {r["configuration"] for r in json.loads(_explore(
        tmp_path, "study", "pareto", "base", "--storage", url, "-f", "json").stdout)}
    assert plausible

    result = _explore(tmp_path, "study", "confirm", "base", "--seeds", "2", "--storage", url,
                      "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["companion"] == "base-confirm" and data["seeds"] == 2
    assert {r["configuration"] for r in data["configurations"]} == plausible
    for row in data["configurations"]:
        assert row["fresh"]["n"] == 2 and row["search"]["n"] == 2
        opt = row["accuracy_optimism"]
        assert opt["difference"] == pytest.approx(
            row["search"]["accuracy"]["mean"] - row["fresh"]["accuracy"]["mean"])
        assert opt["low"] < opt["difference"] < opt["high"]

    search = optuna.load_study(study_name="base", storage=url)
    fresh = optuna.load_study(study_name="base-confirm", storage=url)
    assert len(search.trials) == 6  # the search itself is untouched
    runs = [(t.user_attrs[ATTR_CONFIGURATION], t.user_attrs[ATTR_REPLICATE]) for t in fresh.trials]
    assert sorted(runs) == sorted((k, FRESH_REPLICATE + i) for k in plausible for i in range(2))
    search_seeds = {t.user_attrs["seed"] for t in search.trials}
    fresh_seeds = {t.user_attrs["seed"] for t in fresh.trials}
    assert len(fresh_seeds) == len(fresh.trials) and not fresh_seeds & search_seeds

    again = _explore(tmp_path, "study", "confirm", "base", "--seeds", "2", "--storage", url,
                     "-f", "json")
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="base-confirm", storage=url).trials) == len(runs)
    assert json.loads(again.stdout)["configurations"] == data["configurations"]

    table = _explore(tmp_path, "study", "confirm", "base", "--seeds", "2", "--storage", url)
    assert "fresh" in table.stdout and "winner's optimism" in table.stdout, table.stderr


@pytest.mark.parametrize("args, says", [
    (["--seeds", "0"], "--seeds 0"),
    (["--seeds", "1000"], "--seeds 1000"),
])
def test_confirm_refuses_bad_seeds_and_stores_nothing(tmp_path: Path, args: list[str],
                                                      says: str) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = _explore(tmp_path, "study", "confirm", "base", "--storage", url, *args)
    assert result.returncode == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_confirm_of_a_missing_study_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna.create_study(study_name="other", storage=url)
    result = _explore(tmp_path, "study", "confirm", "base", "--storage", url)
    assert result.returncode == 1 and "no study named 'base'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert optuna.get_all_study_names(url) == ["other"]


@pytest.mark.parametrize("replicate, says", [(0, None), (1, " run 2 "),
                                             (FRESH_REPLICATE, " fresh seed 1 ")])
def test_a_progress_line_names_the_run_or_the_fresh_seed(replicate: int, says: str | None
                                                         ) -> None:
    from optuna.distributions import CategoricalDistribution

    from explore.run.progress import trial_line

    t = optuna.trial.create_trial(params={"mem_size": 8},
                                  distributions={"mem_size": CategoricalDistribution([8, 16])},
                                  values=[0.9, 1000.0], user_attrs={ATTR_REPLICATE: replicate})
    line = trial_line(t, [], 1, 4)
    if says is None:
        assert " run " not in line and "fresh" not in line
    else:
        assert says in line, line
