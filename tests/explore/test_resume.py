"""Nothing lost: real ``explore`` processes killed with SIGKILL, stopped with SIGINT/SIGTERM, and
two processes sharing one SQLite file.

Every test drives ``explore`` subprocesses on a real SQLite file in ``tmp_path`` and watches the
database (plain SQL, read-only use) to signal them at the right moment. Trials are tiny (a 1-block,
dim-16 model, 6 epochs of ~0.3 s) so that a kill can land inside a trial.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import EXPLORE, TINY_MEASURE, clean_env, spawned

EPOCHS = 6
CONFIG = """\
[study]
prune = false  # every trial runs all its epochs, whatever the default

[model]
dim = 16
depth = 1

[train]
epochs = {epochs}
batch_size = {batch}
state_interval = {state_interval}

""" + TINY_MEASURE + """
[space]
mem_size = [8, 16]
heads = [1, 2]
norm = ["softmax", "double"]
"""


def write_config(directory: Path, epochs: int = EPOCHS, batch: int = 16,
                 state_interval: float = 1.0) -> None:
    """``state_interval``: seconds between saved states and history writes; 0 shows every
    epoch (for a test that must see a trial part-way), the default 1 s fewer of these ~0.2 s
    epochs."""
    (directory / "tiny.toml").write_text(
        CONFIG.format(epochs=epochs, batch=batch, state_interval=state_interval),
        encoding="utf-8")


def env_for(directory: Path) -> dict[str, str]:
    """No storage overrides; a private temp dir, so the machine lock of other explore runs on
    this machine (other test sessions) cannot slow these down."""
    return {**clean_env(), "TMPDIR": str(directory)}


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn(*args, log=LOG)`` starts ``explore`` in ``tmp_path`` (stdout/stderr to files);
    every process still alive at the end is killed."""
    with spawned(tmp_path, env_for(tmp_path), to_files=True) as start:
        yield start


def run_to_end(directory: Path, *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXPLORE), *args], cwd=directory, env=env_for(directory),
                          capture_output=True, text=True, timeout=timeout)


def running(db: Path) -> list[dict[str, Any]]:
    """RUNNING trials: number, epochs in their history, the pid that runs them, attr keys."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(db, timeout=10)
        try:
            rows = con.execute(
                "SELECT t.number, a.key, a.value_json FROM trials t LEFT JOIN "
                "trial_user_attributes a ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING'"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return []
    trials: dict[int, dict[str, Any]] = {}
    for number, key, value in rows:
        trial = trials.setdefault(number, {"number": number, "epochs": 0, "pid": None,
                                           "keys": set()})
        if key is None:
            continue
        trial["keys"].add(key)
        if key == "history":
            trial["epochs"] = len(json.loads(value))
        elif key == "worker":
            trial["pid"] = json.loads(value)["pid"]
    return sorted(trials.values(), key=lambda t: t["number"])


def wait_for(condition: Callable[[], Any], proc: subprocess.Popen[str], timeout: float,
             what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail if ``proc`` ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"explore exited ({proc.returncode}) before {what}: "
                        + Path(proc.stderr_path).read_text())  # type: ignore[attr-defined]
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def mid_trial(db: Path, pid: int, last: int = EPOCHS - 2) -> Callable[[], Any]:
    """A trial of process ``pid`` between its first and its ``last`` epoch."""
    return lambda: [t for t in running(db) if t["pid"] == pid and 1 <= t["epochs"] <= last]


def load(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def check_finished(study: optuna.Study, budget: int) -> None:
    from explore.search.budget import count_finished

    states = [t.state for t in study.trials]
    assert count_finished(study) == budget, states
    assert TrialState.RUNNING not in states
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))


UNINTERRUPTED = """
import json, sys
import optuna, torch
from explore.config import Settings
from explore.engine.data import load_dataset
from explore.plan import plan_trial
from explore.engine.train import train_model
from extattn import create_model

url, name, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
study = optuna.load_study(study_name=name, storage=url)
trial = study.trials[number]
settings = Settings.from_dict(study.user_attrs["explore_settings"])
torch.set_num_threads(settings.measure.threads or 1)
data = load_dataset(settings.data, seed=settings.study.seed)
c, h, _ = data.image_shape
plan = plan_trial(trial.params, settings, (h, c, data.num_classes))
torch.manual_seed(plan.seed)
result = train_model(create_model(plan.model), data, plan.train, plan.seed,
                     augment=settings.data.augment)
print(json.dumps({"key": plan.key, "accuracy": result.accuracy,
                  "history": [[r.accuracy, r.loss] for r in result.history]}))
"""


def train_uninterrupted(db: Path, name: str, number: int) -> dict[str, Any]:
    """Train trial ``number``'s experiment from scratch and without a stop, with explore's
    trainer in a fresh process (the code on disk now, like the runs it is compared with)."""
    proc = subprocess.run([sys.executable, "-c", UNINTERRUPTED, f"sqlite:///{db}", name,
                           str(number)], cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


# ---- kill -9 ----

KILLS = 3  # at most MAX_RETRY kills of one experiment: every killed trial is re-queued
BUDGET = 4


@pytest.mark.slow
def test_kill_9_at_random_points_then_the_same_command_finishes_exactly(
        tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]) -> None:
    rng = random.Random(20210502)
    write_config(tmp_path, state_interval=0.0)  # the first kill waits for a saved epoch
    db = tmp_path / "explore.db"
    args = ("study", "run", "--name", "crash", "--config", "tiny.toml",
            "--trials", str(BUDGET), "--seed", "11")
    complete: dict[int, tuple[Any, ...]] = {}  # COMPLETE trials seen after each kill
    killed_mid_trial: list[dict[str, Any]] = []
    for round_ in range(KILLS):
        proc = spawn(*args, log="kill")
        if round_ == 0:  # at least once: inside a trial, after an epoch was saved
            wait_for(mid_trial(db, proc.pid), proc, 120, "a trial's first epoch")
        else:  # elsewhere: some random time after its first trial started (training,
            # measuring, storing, or between two trials: the trials take about a second)
            wait_for(lambda p=proc: [t for t in running(db) if t["pid"] == p.pid], proc, 120,
                     "a trial to start")
            time.sleep(rng.uniform(0.1, 1.5))
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        orphans = running(db)  # whatever the kill left RUNNING (one process: all of it is its)
        killed_mid_trial += [t for t in orphans if t["pid"] == proc.pid and t["epochs"] >= 1]
        for t in load(db, "crash").get_trials(states=(TrialState.COMPLETE,)):
            complete[t.number] = (t.values, t.params, t.user_attrs)
    assert killed_mid_trial, "no kill landed inside a trial"

    done = run_to_end(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    # The last kill's orphan is re-queued, and said so; a kill between two trials leaves none.
    if [t for t in orphans if t["pid"] == proc.pid]:
        assert "re-queued" in done.stderr, done.stderr
    elif not orphans:
        assert "re-queued" not in done.stderr, done.stderr
    assert integrity(db) == "ok"
    study = load(db, "crash")
    check_finished(study, BUDGET)
    trials = {t.number: t for t in study.trials}
    for number, (values, params, attrs) in complete.items():
        t = trials[number]
        assert (t.state, t.values, t.params, t.user_attrs) == (
            TrialState.COMPLETE, values, params, attrs)
    # Every killed trial failed with its reason and came back as a re-queued copy.
    for t in trials.values():
        if t.state == TrialState.FAIL:
            assert "died while running it" in t.user_attrs["fail_reason"]
            assert any(u.user_attrs.get("retried_trial") == t.number for u in trials.values())
    for killed in killed_mid_trial:
        assert trials[killed["number"]].state == TrialState.FAIL
    resumed = [t for t in trials.values() if t.state == TrialState.COMPLETE
               and t.user_attrs.get("resumed_from_epoch", 0) >= 1
               and t.user_attrs.get("retry_of") is not None]
    assert resumed, "no re-queued trial continued from its saved state"
    for t in resumed:
        history = t.user_attrs["history"]
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        assert t.values[1] == trials[t.user_attrs["retry_of"]].user_attrs["throughput"]["median"]
    # On the CPU a resumed trial ends exactly where an uninterrupted one does.
    t = resumed[0]
    alone = train_uninterrupted(db, "crash", t.number)
    assert alone["key"] == t.user_attrs["config_key"]  # the same experiment
    assert t.values[0] == alone["accuracy"]
    assert [[h["accuracy"], h["loss"]] for h in t.user_attrs["history"]] == alone["history"]


# ---- SIGINT / SIGTERM ----


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "state_interval"), [
    (signal.SIGINT, 130, 0.0),  # the stopped epoch's state was saved with it
    (signal.SIGTERM, 143, 3600.0),  # no state saved yet: it is saved as the trial stops
], ids=["SIGINT-saved-each-epoch", "SIGTERM-not-yet-saved"])
def test_a_signal_stops_after_the_epoch_and_the_run_continues(
        signum: int, code: int, state_interval: float, tmp_path: Path,
        spawn: Callable[..., subprocess.Popen[str]]) -> None:
    write_config(tmp_path, state_interval=state_interval)
    db = tmp_path / "explore.db"
    args = ("study", "run", "--name", "sig", "--config", "tiny.toml", "--trials", "1",
            "--seed", "5")
    proc = spawn(*args, log="signal")
    if state_interval:  # no history until the trial stops or ends: wait for training to start
        [target] = wait_for(lambda: [t for t in running(db) if t["pid"] == proc.pid
                                     and "throughput" in t["keys"]], proc, 120,
                            "training to start")
    else:
        [target] = wait_for(mid_trial(db, proc.pid), proc, 120, "a trial's first epoch")
    sent = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == code
    assert time.monotonic() - sent < 10
    stderr = Path(proc.stderr_path).read_text()  # type: ignore[attr-defined]
    # The command as printed opens this database, wherever it is run from.
    assert f"continue with `explore study run --name sig --storage sqlite:///{db.resolve()}`" \
        in stderr, stderr
    assert "Traceback" not in stderr

    study = load(db, "sig")
    trials = {t.number: t for t in study.trials}
    assert all(t.state != TrialState.RUNNING for t in trials.values())
    stopped = trials[target["number"]]
    state_file = (tmp_path / "explore-artifacts" / "states" / f"study-{study._study_id}"
                  / f"{stopped.user_attrs['config_key'][:32]}.pt")
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == stopped.number]
    if stopped.state == TrialState.COMPLETE:  # the signal came during the last epoch
        assert not retries
    else:
        assert stopped.state == TrialState.FAIL
        assert "stopped after epoch" in stopped.user_attrs["interrupted"]
        assert [t.state for t in retries] == [TrialState.WAITING]
        assert retries[0].system_attrs["fixed_params"] == stopped.params  # same experiment
        assert state_file.is_file()

    done = run_to_end(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    study = load(db, "sig")
    check_finished(study, 1)
    if retries:
        again = study.trials[retries[0].number]
        assert again.state == TrialState.COMPLETE
        assert again.user_attrs["resumed_from_epoch"] == len(stopped.user_attrs["history"])
        assert not state_file.exists()  # removed once the trial finished


@pytest.mark.slow
def test_a_second_sigint_exits_at_once_and_the_next_run_recovers_the_trial(
        tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]) -> None:
    write_config(tmp_path, epochs=1, batch=2)  # an epoch of seconds: a graceful stop would wait
    db = tmp_path / "explore.db"
    args = ("study", "run", "--name", "twice", "--config", "tiny.toml", "--trials", "1")
    proc = spawn(*args, log="twice")
    wait_for(lambda: [t for t in running(db) if t["pid"] == proc.pid
                      and "throughput" in t["keys"]], proc, 120, "training to start")
    proc.send_signal(signal.SIGINT)
    # Two signals before the handler runs would count as one: the second follows its message.
    wait_for(lambda: "stopping after the current epoch" in Path(
        proc.stderr_path).read_text(), proc, 60, "the first SIGINT's message")  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    # At once, not at the next safe point: it exited mid-epoch (no timing assertion: the
    # machine's load would make one flaky), so its trial is still marked RUNNING.
    [left] = running(db)
    assert left["epochs"] == 0

    done = run_to_end(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert f"trial {left['number']} was left running by a dead worker: re-queued" in done.stderr
    study = load(db, "twice")
    check_finished(study, 1)
    [finished] = study.get_trials(states=(TrialState.COMPLETE,))
    assert finished.user_attrs["retry_of"] == left["number"]


# ---- two processes on one file ----


@pytest.mark.slow
def test_two_workers_on_one_sqlite_file_lose_no_trial(
        tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]],
        cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, epochs=2)
    db = tmp_path / "explore.db"
    monkeypatch.chdir(tmp_path)
    first = cli("study", "run", "--name", "pair", "--config", "tiny.toml", "--trials", "1",
                "--seed", "2", "--quiet")  # in-process: the study exists before the workers
    assert first.exit_code == 0, first.output
    budget = 4
    study = load(db, "pair")
    settings = study.user_attrs["explore_settings"]
    settings["study"]["trials"] = budget  # what `explore study run --trials 4` stores
    study.set_user_attr("explore_settings", settings)

    workers = [spawn("study", "worker", "--name", "pair", "--worker-index", str(i),
                     log="worker") for i in range(2)]
    for proc in workers:
        assert proc.wait(timeout=300) == 0, Path(proc.stderr_path).read_text()  # type: ignore
    assert integrity(db) == "ok"
    study = load(db, "pair")
    check_finished(study, budget)
    pids = set()
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL), t.state
        if t.state == TrialState.FAIL:  # only a race for the last slot, never a lost trial
            assert "over_budget" in t.user_attrs, t.user_attrs
        if t.number > 0:
            pids.add(t.user_attrs["worker"]["pid"])
    assert pids == {proc.pid for proc in workers}


# ---- a trial no worker ever named itself on ----


def test_a_trial_without_an_owner_is_recovered_after_a_while(tmp_path: Path) -> None:
    """A process killed between Optuna starting a trial and the objective's first write leaves
    a RUNNING trial with no owner and no Optuna heartbeat: nothing else would ever end it."""
    from explore.run.recovery import UNOWNED_AFTER_S, WorkerIdentity, recover_orphans

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}",
                                directions=["maximize", "maximize"])
    trial = study.ask()
    heads = trial.suggest_int("heads", 1, 4)
    me, said, seen = WorkerIdentity.current(), [], {}
    assert recover_orphans(study, me, said.append) == 0  # not tracked: left alone
    assert recover_orphans(study, me, said.append, unowned=seen) == 0  # just seen
    seen[trial._trial_id] -= UNOWNED_AFTER_S + 1
    assert recover_orphans(study, me, said.append, unowned=seen) == 1
    failed, copy = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == (
        "a worker that never named itself died while running it; re-queued")
    assert copy.state == TrialState.WAITING
    assert copy.system_attrs["fixed_params"] == {"heads": heads}
    assert said == ["trial 0 was left running by a dead worker: re-queued"]
