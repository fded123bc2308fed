"""Trial faults: a NaN loss, an exception inside a trial and an impossible configuration each end
that trial with its reason recorded, and the search goes on; ``--max-failures K`` stops a run
after K consecutive failed trials with one clear line and exit code 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import TINY_MEASURE

EXPLORE = Path(sys.executable).with_name("explore")
STORAGE_ENV = ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")
SETTINGS = """\
[study]
prune = false  # only the faults under test end trials early

[model]
depth = 1
{model}

[train]
epochs = 1
{train}

""" + TINY_MEASURE + """
[space]
{space}
"""


def write_settings(directory: Path, model: str = "dim = 16", train: str = "",
                   space: str = "mem_size = [8, 16]\nheads = [1, 2]") -> None:
    text = SETTINGS.format(model=model, train=train, space=space)
    (directory / "faults.toml").write_text(text, encoding="utf-8")


def load(directory: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{directory / 'explore.db'}")


@pytest.mark.slow
def test_a_nan_loss_fails_the_trial_and_max_failures_stops_the_run(tmp_path: Path) -> None:
    write_settings(tmp_path, train="lr = 1e30")  # AdamW at 1e30 sends the loss to NaN at once
    env = {k: v for k, v in os.environ.items() if k not in STORAGE_ENV}
    proc = subprocess.run(
        [str(EXPLORE), "study", "run", "--name", "nan", "--config", "faults.toml",
         "--trials", "4", "--max-failures", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped after 2 consecutive failed trials; last: "
                           "training loss became nan in epoch 1"), last
    assert proc.stdout == ""

    study = load(tmp_path, "nan")
    ran = [t for t in study.trials if t.state != TrialState.WAITING]
    assert [t.state for t in ran] == [TrialState.FAIL] * 2
    # The warm start's third anchor stays queued for the next run.
    assert [t.user_attrs.get("warm_start_rank") for t in study.trials
            if t.state == TrialState.WAITING] == [3]
    for t in ran:
        assert t.user_attrs["fail_reason"] == "training loss became nan in epoch 1"
        assert "interrupted" not in t.user_attrs  # a fault is not retried


def test_an_exception_inside_a_trial_fails_only_that_trial(
        workdir: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import explore.search.objective

    real = explore.search.objective.train_model
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(explore.search.objective, "train_model", flaky)
    write_settings(workdir)
    result = cli("study", "run", "--name", "flaky", "--config", "faults.toml", "--trials", "2",
                 "--max-failures", "2", "--sampler", "bruteforce")
    assert result.exit_code == 0, result.output
    study = load(workdir, "flaky")
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: disk on fire"
    assert states.count(TrialState.COMPLETE) == 2
    assert "RuntimeError: disk on fire" in result.stderr  # its progress line says why


def test_an_impossible_configuration_is_pruned_before_any_work(
        workdir: Path, cli: Callable[..., Any]) -> None:
    # Every value is possible somewhere (so the space is accepted), but heads=3 never
    # divides dim=16: that trial is pruned with the reason, measuring and training nothing.
    write_settings(workdir, model="", space="dim = [12, 16]\nheads = [3, 4]")
    result = cli("study", "run", "--name", "shapes", "--config", "faults.toml", "--trials", "4",
                 "--sampler", "bruteforce", "--replicates", "1")  # each point once
    assert result.exit_code == 0, result.output
    study = load(workdir, "shapes")
    by_params = {(t.params["dim"], t.params["heads"]): t for t in study.trials}
    assert sorted(by_params) == [(12, 3), (12, 4), (16, 3), (16, 4)]
    pruned = by_params.pop((16, 3))
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs["prune_reason"] == (
        "impossible configuration: heads (3) must divide dim*expand (16*1=16): choose heads "
        "among the divisors of that width")
    for work in ("throughput", "params_count", "history", "train_seconds"):
        assert work not in pruned.user_attrs
    assert all(t.state == TrialState.COMPLETE for t in by_params.values())
