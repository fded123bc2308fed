"""Racing with two workers on one study, on SQLite and on PostgreSQL.

Every trial's worker queues the replicates racing asks for in the study (``enqueue_trial``), and
every worker takes them. Real ``explore`` processes: ``explore study run --workers 2``, and two
``explore study worker`` processes of which one is killed with SIGKILL in the middle of a
replicate. Read back with Optuna: exactly the budget trained, no (configuration, replicate)
trained twice, nothing left running or queued, and the killed replicate finished by the other
worker, continuing from its own saved training state.

The space has three configurations that differ only in a training knob with no measurable effect
(equal models, so equal throughputs; accuracies apart by seed noise only): no configuration's
place on the front is ever decided, so once the space is exhausted the race spends the rest of
the budget on replicates.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from studies.record import (
    ATTR_CONFIG_KEY,
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_FAIL,
    ATTR_OVER_BUDGET,
    ATTR_REPLICATE,
    ATTR_RETRIED,
    ATTR_WORKER,
)
from studies.storage import open_storage, parse_storage
from tests.conftest import EXPLORE, epochs_done, kill_when, spawned, tiny_study_toml

pytestmark = pytest.mark.slow

NAME = "race"
BUDGET = 7
CONFIGURATIONS = 3
EPOCHS = 3
CONFIG = tiny_study_toml(
    "weight_decay = [0.04, 0.05, 0.06]", study="warm_start = 0\nprune = false",
    # a state (and the history) after every epoch: a kill can follow one
    train=f"epochs = {EPOCHS}\nstate_interval = 0.0")
Env = Callable[..., dict[str, str]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.db)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh study database: a SQLite file, or a database on the local PostgreSQL (skipped
    with the reason when the server is not reachable)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture
def env(tmp_path: Path, subprocess_env_factory: Env) -> dict[str, str]:
    """For ``explore`` subprocesses; a private temp dir, so that the machine lock of explore
    runs of other test sessions on this machine does not slow these workers down."""
    return subprocess_env_factory(TMPDIR=str(tmp_path))


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings file; the test runs in ``tmp_path``, like its subprocesses (so that all see
    the artifact directory of a server storage, ``./explore-artifacts``)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "race.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def spawn(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn(*args)``: ``explore ARGS`` in ``tmp_path``; any still running at the end are
    killed."""
    with spawned(tmp_path, env) as start:
        yield start


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=open_storage(parse_storage(url),
                                                                   create=False))


def _check_race(trials: list[FrozenTrial]) -> dict[str, list[int]]:
    """Exactly the budget trained, every replicate once and as its own experiment, nothing
    left running or queued. Returns the replicate indices of every configuration."""
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    # Two workers finishing together may each queue a replicate into the last slot: one stays
    # queued for a continuation of the study (never trained beyond the budget).
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) <= 1 and all(t.user_attrs.get(ATTR_REPLICATE, 0) > 0 for t in waiting)
    trained = [t for t in trials
               if t.state == TrialState.COMPLETE and t.user_attrs.get(ATTR_DUPLICATE) is None]
    assert len(trained) == BUDGET
    pairs = [(t.user_attrs[ATTR_CONFIGURATION], t.user_attrs[ATTR_REPLICATE]) for t in trained]
    assert len(set(pairs)) == BUDGET, f"a replicate was trained twice: {sorted(pairs)}"
    by_config: dict[str, list[int]] = {}
    for config, r in pairs:
        by_config.setdefault(config, []).append(r)
    assert len(by_config) == CONFIGURATIONS
    # Once the space was exhausted, the rest of the budget went to replicates.
    assert sum(len(rs) - 1 for rs in by_config.values()) == BUDGET - CONFIGURATIONS
    # A replicate is a new experiment (its own key and seed), not a repeat of replicate 0.
    assert len({t.user_attrs[ATTR_CONFIG_KEY] for t in trained}) == BUDGET
    assert len({t.user_attrs["seed"] for t in trained}) == BUDGET
    by_number = {t.number: t for t in trials}
    for t in trials:
        source = t.user_attrs.get(ATTR_DUPLICATE)
        if source is not None:  # a replicate queued twice: answered from the same replicate
            assert by_number[source].user_attrs[ATTR_CONFIG_KEY] == t.user_attrs[ATTR_CONFIG_KEY]
        if t.state == TrialState.FAIL:  # a claim that found the budget full, or a kill
            assert t.user_attrs.get(ATTR_OVER_BUDGET) or "died" in t.user_attrs.get(ATTR_FAIL, "")
    return by_config


def test_two_workers_race_to_exactly_the_budget(url: str, config: Path,
                                                env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run([str(EXPLORE), "study", "run", "--name", NAME, "--storage", url,
                           "--config", str(config), "--trials", str(BUDGET), "--replicates",
                           "race", "--workers", "2", "--device", "cpu", "-f", "json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == BUDGET and summary["stopped"] == "budget reached"
    trials = _study(url).get_trials(deepcopy=False)
    _check_race(trials)
    pids = {t.user_attrs[ATTR_WORKER]["pid"] for t in trials if ATTR_WORKER in t.user_attrs}
    assert len(pids) == 2  # both workers took trials of the race


def _kill_mid_replicate(url: str, workers: list[subprocess.Popen[str]],
                        timeout: float = 180) -> FrozenTrial:
    """Wait until a worker is between the first and the last epoch of a replicate > 0, then
    SIGKILL it."""
    study = _study(url)
    killed: FrozenTrial = kill_when(
        workers, lambda: study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
        lambda t: t.user_attrs.get(ATTR_REPLICATE, 0) > 0 and 1 <= epochs_done(t) < EPOCHS,
        timeout)
    return killed


def test_a_replicate_killed_mid_training_is_finished_by_the_other_worker(
        url: str, config: Path, env: dict[str, str], tmp_path: Path,
        spawn: Callable[..., subprocess.Popen[str]]) -> None:
    created = subprocess.run([str(EXPLORE), "study", "run", "--name", NAME, "--storage", url,
                              "--config", str(config), "--trials", str(BUDGET), "--replicates",
                              "race", "--timeout", "0", "-q"],  # create only
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    workers = [spawn("study", "worker", "--name", NAME, "--storage", url, "--device", "cpu",
                     "--worker-index", str(i), "--workers", "2", "--quiet") for i in range(2)]
    killed = _kill_mid_replicate(url, workers)
    survivor = next(p for p in workers if p.poll() is None)
    _, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err

    trials = _study(url).get_trials(deepcopy=False)
    _check_race(trials)
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == TrialState.FAIL
    assert "died while running it" in dead.user_attrs[ATTR_FAIL]
    retries = [t for t in trials if t.user_attrs.get(ATTR_RETRIED) == killed.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    # The same replicate, finished by the other worker: from the killed one's saved state, or,
    # when the racing queue had the same replicate waiting and it ran first, answered from it.
    for key in (ATTR_CONFIGURATION, ATTR_REPLICATE, ATTR_CONFIG_KEY):
        assert retry.user_attrs[key] == killed.user_attrs[key]
    assert retry.params == killed.params
    assert retry.user_attrs[ATTR_WORKER]["pid"] == survivor.pid
    source = retry.user_attrs.get(ATTR_DUPLICATE)
    if source is None:
        assert retry.user_attrs["resumed_from_epoch"] >= 1
        trained = retry
    else:  # a repeat takes its twin's values; the twin holds the training history
        twin = next(t for t in trials if t.number == source)
        assert twin.state == TrialState.COMPLETE and twin.user_attrs.get(ATTR_DUPLICATE) is None
        for key in (ATTR_CONFIGURATION, ATTR_REPLICATE, ATTR_CONFIG_KEY):
            assert twin.user_attrs[key] == killed.user_attrs[key]
        assert retry.values == twin.values
        trained = twin
    assert [h["epoch"] for h in trained.user_attrs["history"]] == list(range(1, EPOCHS + 1))
