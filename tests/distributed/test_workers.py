"""Workers: how many start, and what happens to a trial whose worker is killed with SIGKILL.

The kill tests run real ``explore study worker`` processes against a study created here, wait
until one of them has trained at least one epoch of a trial, ``kill -9`` it, and check that the
trial is retried — by the other worker, or by the next worker started — and that the retry
continues from the saved training state instead of starting over.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from explore.run.opening import RunRequest, open_study
from explore.run.workers import parse_workers
from explore.search.budget import count_finished
from studies.errors import UsageError
from studies.storage import open_storage, parse_storage
from tests.conftest import TINY_MEASURE, epochs_done, kill_when

NAME = "kill"
EPOCHS = 6
BUDGET = 2
# The default model (dim 64, depth 2) trains an epoch in ~0.3 s on one thread: slow enough to
# kill a trial between its first and its last epoch. Duplicate answers are off so that every
# trial trains (the retry must resume, not be answered from another trial).
KILL_TOML = """\
[study]
dedup = false

[train]
state_interval = 0.0  # a state (and the history) after every epoch: a kill can follow one

""" + TINY_MEASURE + """
[space]
mem_size = [8, 16, 32]
heads = [1, 2]
"""
Worker = subprocess.Popen[str]


def test_parse_workers_counts_and_devices() -> None:
    assert parse_workers("3", None) == (3, [None, None, None])
    n, devices = parse_workers("auto", None)
    assert n >= 1 and len(devices) == n
    assert parse_workers("1", "cuda:0,cuda:1") == (2, ["cuda:0", "cuda:1"])
    assert parse_workers("2", "cuda:0, cuda:1") == (4, ["cuda:0", "cuda:0", "cuda:1", "cuda:1"])
    for bad in ("0", "-1", "two"):
        with pytest.raises(UsageError, match="--workers"):
            parse_workers(bad, None)
    with pytest.raises(UsageError, match="--devices"):
        parse_workers("1", " , ")


def test_auto_counts_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Slurm allocation or ``taskset`` limits the CPUs; ``auto`` must not start one worker
    per core of the whole machine."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("auto is one worker per GPU here")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert parse_workers("auto", None) == (1, [None])


def _create_study(url: str, directory: Path) -> None:
    config = directory / "kill.toml"
    config.write_text(KILL_TOML, encoding="utf-8")
    open_study(RunRequest(name=NAME, storage=url, config_file=config, device="cpu",
                          explicit={"study": {"trials": BUDGET}, "train": {"epochs": EPOCHS}}))


def _load(url: str) -> optuna.Study:
    storage = open_storage(parse_storage(url), create=False)
    return optuna.load_study(study_name=NAME, storage=storage)


def _kill_mid_trial(url: str, workers: list[Worker], timeout: float = 180) -> FrozenTrial:
    """Wait until a trial has trained 1..EPOCHS-2 epochs, then SIGKILL its worker."""
    killed: FrozenTrial = kill_when(
        workers, lambda: _load(url).get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
        lambda t: 1 <= epochs_done(t) <= EPOCHS - 2, timeout)
    return killed


def _check_retried(url: str, killed: FrozenTrial) -> None:
    study = _load(url)
    trials = study.get_trials(deepcopy=False)
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == TrialState.FAIL
    assert "died" in dead.user_attrs["fail_reason"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1, [t.user_attrs for t in retries]
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.user_attrs["retry_reason"] == "worker died"
    # Continued from the state saved after the last epoch the killed worker finished.
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert len(retry.user_attrs["history"]) == EPOCHS
    assert count_finished(study) == BUDGET
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_other_worker_retries_killed_trial_from_checkpoint(
        tmp_path: Path, start_worker: Callable[..., Worker]) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    _create_study(url, tmp_path)
    workers = [start_worker(NAME, url, index=i, workers=2) for i in range(2)]
    killed = _kill_mid_trial(url, workers)
    survivor = next(p for p in workers if p.poll() is None)
    out, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err
    _check_retried(url, killed)


@pytest.mark.slow
def test_next_worker_retries_killed_trial_from_checkpoint(
        tmp_path: Path, start_worker: Callable[..., Worker]) -> None:
    url = f"journal:{tmp_path / 'kill.log'}"  # no heartbeat: explore's own recovery
    _create_study(url, tmp_path)
    killed = _kill_mid_trial(url, [start_worker(NAME, url)])
    again = start_worker(NAME, url)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    _check_retried(url, killed)


def test_a_popped_retry_cannot_take_a_slot_claimed_by_later_numbers(tmp_path: Path) -> None:
    """A re-queued trial keeps the low number it got when queued; when a worker starts it
    later, the trials that claimed the last slots meanwhile hold higher numbers. The claim must
    count them (they started first), or the budget is overshot."""
    from explore.search.budget import slot_is_free

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'claims.db'}",
                                directions=["maximize", "maximize"])
    for i in range(4):  # 4 of a budget of 6 finished
        study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0 + i]))
    study.enqueue_trial({}, user_attrs={"retry_of": 0})  # number 4, WAITING
    storage, study_id = study._storage, study._study_id
    late = [storage.get_trial(storage.create_new_trial(study_id)) for _ in range(2)]
    assert [t.number for t in late] == [5, 6]
    assert slot_is_free(study, 5, 6) and slot_is_free(study, 6, 6)  # the last two slots
    time.sleep(0.01)
    retry = study.ask()  # a worker picks the queued retry up now
    assert retry.number == 4
    assert not slot_is_free(study, 4, 6)
