"""Replicates and racing, end to end: real `explore study run` subprocesses on real SQLite files."""

from __future__ import annotations

import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.record import ATTR_CONFIGURATION, ATTR_DUPLICATE, ATTR_OVER_BUDGET, ATTR_REPLICATE
from tests.conftest import EXPLORE, clean_env, tiny_study_toml

_PENDING = (TrialState.WAITING, TrialState.RUNNING)
CONFIG = tiny_study_toml("mem_size = [8, 16]\nheads = [1, 2]",
                        study="trials = {trials}\nwarm_start = 0\nreplicates = {replicates}")


def _run(tmp_path: Path, trials: int, replicates: str) -> optuna.Study:
    config = tmp_path / "race.toml"
    config.write_text(CONFIG.format(trials=trials, replicates=replicates), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'race.db'}"
    result = subprocess.run([str(EXPLORE), "study", "run", "--name", "race", "--storage", url,
                             "-c", str(config), "-q"], capture_output=True, text=True,
                            env=clean_env(), timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plausible" in result.stdout
    return optuna.load_study(study_name="race", storage=url)


def _runs(study: optuna.Study) -> list[tuple[str, int]]:
    return [(t.user_attrs[ATTR_CONFIGURATION], t.user_attrs[ATTR_REPLICATE])
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get(ATTR_DUPLICATE) is None]


@pytest.mark.slow
def test_fixed_replicates_train_every_configuration_k_times(tmp_path: Path) -> None:
    study = _run(tmp_path, trials=8, replicates="2")
    runs = _runs(study)
    assert len(runs) == 8 and len(set(runs)) == 8  # exactly the budget, nothing trained twice
    by_config: dict[str, set[int]] = {}
    for config, r in runs:
        by_config.setdefault(config, set()).add(r)
    assert len(by_config) == 4 and all(r == {0, 1} for r in by_config.values())
    seeds = {t.user_attrs["seed"] for t in study.trials}
    assert len(seeds) == 8  # every replicate its own seed
    with sqlite3.connect(tmp_path / "race.db") as db:
        rows = db.execute("SELECT COUNT(*), MAX(noise_df) FROM explore_confident_snapshots"
                          ).fetchone()
    assert rows[0] >= 1 and rows[1] >= 1  # the confident front was recorded, noise known


@pytest.mark.slow
def test_racing_spends_extra_runs_and_finishes_the_budget_exactly(tmp_path: Path) -> None:
    study = _run(tmp_path, trials=10, replicates='"race"')
    runs = _runs(study)
    assert len(runs) == 10 and len(set(runs)) == 10
    assert any(r > 0 for _, r in runs)  # replicates were raced
    # An exhausted 4-configuration space gives the rest of the budget to replicates.
    assert len({c for c, _ in runs}) == 4


@pytest.mark.slow
def test_a_replicate_queued_as_the_budget_filled_is_let_go_and_queued_again(
        tmp_path: Path) -> None:
    """Another worker may queue a replicate just as the last slot fills. A run that ends at the
    budget leaves it FAIL, marked over budget and never trained, instead of WAITING for
    whichever process opens the study next; a continued run with room asks for it again."""
    study = _run(tmp_path, trials=3, replicates="2")
    counts = Counter(config for config, _ in _runs(study))
    [single] = [config for config, n in counts.items() if n == 1]  # its run 2 did not fit
    first = next(t for t in study.trials if t.user_attrs.get(ATTR_CONFIGURATION) == single)
    # What another worker's late racing.enqueue leaves: that configuration's next replicate.
    study.enqueue_trial(first.params, user_attrs={ATTR_CONFIGURATION: single,
                                                  ATTR_REPLICATE: 1}, skip_if_exists=False)
    late = len(study.trials) - 1

    study = _run(tmp_path, trials=3, replicates="2")  # the budget was full already
    let_go = study.trials[late]
    assert let_go.state == TrialState.FAIL
    assert let_go.user_attrs[ATTR_OVER_BUDGET].startswith("not run")
    assert "train_seconds" not in let_go.user_attrs
    assert not [t.number for t in study.trials if t.state in _PENDING]

    study = _run(tmp_path, trials=4, replicates="2")
    runs = _runs(study)
    assert len(runs) == 4 and (single, 1) in runs  # queued again, trained once
    assert not [t.number for t in study.trials if t.state in _PENDING]


@pytest.mark.parametrize(("line", "says"), [
    ("max_replicates = 0", "max_replicates must be between 1 and 100"),
    ("confidence = 1.5", "confidence must be at least 0.5 and below 1"),
    ('replicates = "sometimes"', 'replicates must be "race" or an integer from 1 to 100'),
])
def test_bad_racing_settings_are_one_line_and_store_nothing(tmp_path: Path, line: str,
                                                            says: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[study]\n{line}\n", encoding="utf-8")
    result = subprocess.run([str(EXPLORE), "study", "run", "--name", "bad", "--storage",
                             f"sqlite:///{tmp_path / 'bad.db'}", "-c", str(config)],
                            capture_output=True, text=True, env=clean_env(), timeout=120,
                            cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.db").exists()
