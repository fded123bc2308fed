"""Racing survives kill -9: a run of two workers on a real SQLite file, killed (the whole process
group, SIGKILL) once replicates are queued, then continued with the same command.

Both kinds of replicates are checked on a finite space smaller than the budget, so that the rest
of the budget must go to replicates: ``--replicates 2`` (every configuration exactly twice) and
``--replicates race`` (three configurations that differ only in a training knob with no
measurable effect, so that no configuration's place on the front is ever decided and the race
spends the whole budget). After the resume: exactly the budget trained, no (configuration,
replicate) trained twice, every replicate of a configuration its own index and its own
experiment, nothing left running, and the replicates the kill left queued were run. And a
replicate whose worker died after taking it from the queue but before it suggested its params
comes back as that replicate of that configuration.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from studies.record import (
    ATTR_CONFIG_KEY,
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_FAIL,
    ATTR_REPLICATE,
    ATTR_RETRIED,
    ATTR_WORKER,
)
from tests.conftest import EXPLORE, clean_env, tiny_study_toml

NAME = "race"
# Trials of about a second (batch 32): a kill lands inside one.
TRAIN = "epochs = 2\nbatch_size = 32\nstate_interval = 0.0"


@dataclass(frozen=True)
class Case:
    replicates: str  # --replicates
    space: str  # the [space] table's body
    configurations: int  # how many the space has
    budget: int  # --trials: more than the space
    queues_ahead: bool  # replicates wait in the queue a while (the kill waits for one there)


FIXED = Case("2", "mem_size = [8, 16]", 2, 4, False)  # budget = 2 x the space
# Same model, three weight decays: equal throughputs, accuracies apart by seed noise only.
# A queued replicate waits only until its worker's next loop (milliseconds): the kill waits for
# one queued, running or finished while a worker is busy, which a loaded machine cannot miss.
RACE = Case("race", "weight_decay = [0.04, 0.05, 0.06]", 3, 7, False)


def _env(directory: Path) -> dict[str, str]:
    """A private temp dir: the machine lock of other explore runs on this machine (other test
    sessions) cannot slow these down."""
    return {**clean_env(), "TMPDIR": str(directory)}


def _args(directory: Path, case: Case, workers: int = 2) -> list[str]:
    config = directory / "race.toml"
    config.write_text(tiny_study_toml(case.space, study="warm_start = 0\nprune = false",
                                      train=TRAIN), encoding="utf-8")
    return [str(EXPLORE), "study", "run", "--name", NAME, "--storage",
            f"sqlite:///{directory / 'race.db'}", "--config", str(config), "--trials",
            str(case.budget), "--replicates", case.replicates, "--workers", str(workers),
            "--device", "cpu", "-q"]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """``group(args)`` starts ``args`` as the leader of a new process group (its workers join
    it); a group still alive at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        with open(tmp_path / "killed.err", "wb") as err:
            proc = subprocess.Popen(args, cwd=tmp_path, env=_env(tmp_path), stdout=err,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _study_exists(db: Path) -> bool:
    """Whether ``explore`` has created the study (read-only SQL: opening the file with Optuna
    before then would create its tables alongside the run doing so)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return bool(con.execute("SELECT 1 FROM studies WHERE study_name = ?", (NAME,))
                        .fetchone())
        finally:
            con.close()
    except sqlite3.OperationalError:  # no file or no tables yet
        return False


def _trials(db: Path) -> list[FrozenTrial]:
    """The study's trials, read with Optuna from the SQLite file."""
    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{db}")
    return study.get_trials(deepcopy=False)


def _mid_race(trials: list[FrozenTrial], queued: bool) -> bool:
    """A replicate > 0 queued (``queued``: still waiting), running or finished, while a worker
    is inside a trial, and every running trial names its worker. (A kill in the milliseconds
    between Optuna starting a trial and its worker naming itself leaves an unowned trial, which
    recovery ends only after it has been unowned for a minute, ``UNOWNED_AFTER_S``: another
    test's matter, not this one's.)"""
    replicated = any(int(t.user_attrs.get(ATTR_REPLICATE, 0)) > 0
                     and (t.state == TrialState.WAITING or not queued) for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    busy = bool(running) and all(ATTR_WORKER in t.user_attrs for t in running)
    return replicated and busy


def _kill_mid_race(directory: Path, proc: subprocess.Popen[bytes], queued: bool,
                   timeout: float = 180) -> list[FrozenTrial]:
    """SIGKILL the run's whole process group once it is mid-race; the trials as it left them."""
    db = directory / "race.db"
    deadline = time.monotonic() + timeout
    while not (_study_exists(db) and _mid_race(_trials(db), queued)):
        if proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before it was mid-race: "
                        + (directory / "killed.err").read_text())
        if time.monotonic() > deadline:
            pytest.fail("no replicate was queued in time")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return _trials(db)


def _trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The training runs: COMPLETE trials not answered from another one."""
    return [t for t in trials
            if t.state == TrialState.COMPLETE and t.user_attrs.get(ATTR_DUPLICATE) is None]


def _check_race(trials: list[FrozenTrial], case: Case) -> dict[str, list[int]]:
    """Exactly the budget trained, each replicate once, as its own experiment. Returns the
    replicate indices of every configuration."""
    trained = _trained(trials)
    assert len(trained) == case.budget
    pairs = [(t.user_attrs[ATTR_CONFIGURATION], t.user_attrs[ATTR_REPLICATE]) for t in trained]
    assert len(set(pairs)) == len(pairs), f"a replicate was trained twice: {sorted(pairs)}"
    by_config: dict[str, list[int]] = {}
    for config, r in pairs:
        by_config.setdefault(config, []).append(r)
    assert len(by_config) == case.configurations  # the whole space explored
    # A replicate is a new experiment: its own key (and seed), never a repeat of replicate 0.
    assert len({t.user_attrs[ATTR_CONFIG_KEY] for t in trained}) == case.budget
    assert len({t.user_attrs["seed"] for t in trained}) == case.budget
    by_number = {t.number: t for t in trials}
    for t in trials:
        source = t.user_attrs.get(ATTR_DUPLICATE)
        if source is not None and t.state == TrialState.COMPLETE:
            twin = by_number[source]
            assert twin.user_attrs[ATTR_CONFIG_KEY] == t.user_attrs[ATTR_CONFIG_KEY]
            assert twin.user_attrs[ATTR_REPLICATE] == t.user_attrs[ATTR_REPLICATE]
    return by_config


@pytest.mark.slow
@pytest.mark.parametrize("case", [FIXED, RACE], ids=["replicates-2", "race"])
def test_kill_9_mid_race_then_the_same_command_finishes_the_race(
        case: Case, tmp_path: Path,
        group: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    args = _args(tmp_path, case)
    left = _kill_mid_race(tmp_path, group(args), queued=case.queues_ahead)
    running = {t.number for t in left if t.state == TrialState.RUNNING}
    waiting = {t.number for t in left if t.state == TrialState.WAITING}

    done = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name=NAME,
                               storage=f"sqlite:///{tmp_path / 'race.db'}").get_trials()
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states, states
    # two workers finishing together may leave one replicate queued for a continuation
    assert states.count(TrialState.WAITING) <= 1, states
    by_number = {t.number: t for t in trials}
    # What the kill left running failed, and its retry (the same replicate) finished.
    for number in running:
        dead = by_number[number]
        assert dead.state == TrialState.FAIL
        assert "died while running it" in dead.user_attrs[ATTR_FAIL]
        retries = [t for t in trials if t.user_attrs.get(ATTR_RETRIED) == number]
        assert [t.state for t in retries] == [TrialState.COMPLETE]
        for key in (ATTR_CONFIGURATION, ATTR_REPLICATE):
            if key in dead.user_attrs:
                assert retries[0].user_attrs[key] == dead.user_attrs[key]
    # What the kill left queued was run.
    assert all(by_number[n].state == TrialState.COMPLETE for n in waiting), [
        (n, by_number[n].state, by_number[n].user_attrs) for n in waiting]

    by_config = _check_race(trials, case)
    if case.replicates == "race":
        # The space was exhausted early: the rest of the budget went to replicates.
        assert sum(len(rs) - 1 for rs in by_config.values()) == case.budget - case.configurations
    else:
        assert all(sorted(rs) == [0, 1] for rs in by_config.values()), by_config


# Queue replicate 1 of the trained configuration (as racing queues it) and take it as a worker
# does, then wait to be killed before suggesting any params: Optuna has popped it (RUNNING, no
# params yet, only the queued ``fixed_params``).
TAKE_REPLICATE = """
import sys, time
import optuna
from explore.run.recovery import WorkerIdentity
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE, ATTR_WORKER

study = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])
first = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
study.enqueue_trial(first.params, user_attrs={
    ATTR_CONFIGURATION: first.user_attrs[ATTR_CONFIGURATION], ATTR_REPLICATE: 1})
trial = study.ask()
trial.set_user_attr(ATTR_WORKER, WorkerIdentity.current().to_attr())
print(trial.number, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_replicate_killed_before_its_params_comes_back_as_that_replicate(
        tmp_path: Path) -> None:
    """The retry of a queued trial killed before it suggested its params keeps the params it
    was queued with (Optuna's ``fixed_params``): replicate 1 of the trained configuration, not
    replicate 1 of whatever the sampler picks."""
    case = Case("2", "weight_decay = [0.04, 0.05]", 2, 4, False)
    args = _args(tmp_path, case, workers=1)
    trials_at = args.index("--trials") + 1
    first = subprocess.run([*args[:trials_at], "1", *args[trials_at + 1:]], cwd=tmp_path,
                           env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path / 'race.db'}"
    taker = subprocess.Popen([sys.executable, "-c", TAKE_REPLICATE, NAME, url],
                             cwd=Path(__file__).parents[2], env=_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert taker.stdout is not None
        number = int(taker.stdout.readline() or -1)
        assert number > 0, taker.communicate()
    finally:
        taker.send_signal(signal.SIGKILL)
        taker.communicate(timeout=30)
    popped = _trials(tmp_path / "race.db")[number]
    assert popped.state == TrialState.RUNNING and popped.params == {}

    done = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = _trials(tmp_path / "race.db")
    retry = next(t for t in trials if t.user_attrs.get(ATTR_RETRIED) == number)
    assert retry.state == TrialState.COMPLETE
    queued = next(t for t in trials if t.state == TrialState.COMPLETE and t.number < number)
    assert retry.params == queued.params
    assert retry.user_attrs[ATTR_CONFIGURATION] == queued.user_attrs[ATTR_CONFIGURATION]
    assert retry.user_attrs[ATTR_REPLICATE] == 1
    by_config = _check_race(trials, case)
    assert all(sorted(rs) == [0, 1] for rs in by_config.values()), by_config
