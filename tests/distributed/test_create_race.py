"""Several runs started at once on a study that does not exist yet: one creates it, the others
join it (``DuplicatedStudyError`` and the moment before the settings are stored are handled),
and together they stop at the budget."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import EXPLORE, clean_env, write_tiny_config

RUNS = 3
BUDGET = 4


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_runs_started_together_create_one_study_and_share_its_budget(tmp_path: Path,
                                                                       storage: str) -> None:
    write_tiny_config(tmp_path)
    url = "sqlite:///race.db" if storage == "sqlite" else "journal:race.log"
    procs = [subprocess.Popen([str(EXPLORE), "study", "run", "--name", "race", "--storage", url,
                               "--config", "tiny.toml", "--epochs", "1", "--trials", str(BUDGET),
                               "--keep-checkpoints", "none", "-q"],
                              cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(RUNS)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    if storage == "sqlite":
        opened = f"sqlite:///{tmp_path / 'race.db'}"
        summaries = optuna.get_all_study_summaries(opened)
        study = optuna.load_study(study_name="race", storage=opened)
    else:
        from studies.storage import open_storage, parse_storage

        backend = open_storage(parse_storage(f"journal:{tmp_path / 'race.log'}"), create=False)
        summaries = optuna.get_all_study_summaries(backend)
        study = optuna.load_study(study_name="race", storage=backend)
    assert [s.study_name for s in summaries] == ["race"]
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE
               and t.user_attrs.get("duplicate_of") is None]
    assert len(trained) == BUDGET  # the atomic claim: no overshoot, whoever created the study
    assert all(t.state != TrialState.RUNNING for t in study.trials)
