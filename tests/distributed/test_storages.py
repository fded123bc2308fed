"""3 workers share one small budget on every storage explore supports.

``explore study run --workers 3`` (a real subprocess, real worker processes) on SQLite, a journal
file, PostgreSQL, MySQL/MariaDB and Redis; then the study is read back with Optuna's API and our
snapshot tables: exactly the budget finished (no overshoot, nothing trained beyond it), trial
numbers unique, nothing left running, and the Pareto snapshots numbered 0..k-1 with the last one
equal to the study's ``best_trials``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from explore.search.budget import FINISHED, claims_budget, count_finished
from studies.storage import open_storage, parse_storage, snapshot_store

pytestmark = pytest.mark.slow

BUDGET = 6
EPOCHS = 2


def test_three_workers_finish_exactly_the_budget(storage_url: str, tiny_toml: Path,
                                                  run_explore: Callable[..., Any]) -> None:
    proc = run_explore("study", "run", "--name", "shared", "--storage", storage_url,
                       "--config", str(tiny_toml), "--trials", str(BUDGET), "--epochs",
                       str(EPOCHS), "--workers", "3", "--device", "cpu", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == BUDGET
    assert summary["stopped"] == "budget reached"

    spec = parse_storage(storage_url)
    storage = open_storage(spec, create=False)
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert count_finished(study) == BUDGET

    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), "trial numbers must be unique"
    # Nothing left running or queued: a racing replicate another worker queued just as the
    # budget filled ends FAIL, marked over budget (a continued run queues it again).
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # No overshoot: only the budget's trials trained; the rest were free duplicates or
    # claims that found the budget full (failed before any work).
    trained = [t for t in trials if "train_seconds" in t.user_attrs and claims_budget(t)]
    assert len(trained) == BUDGET
    assert all(t.state in FINISHED for t in trained)
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("over_budget"), t.user_attrs.get("fail_reason")
    # Three workers really shared the study.
    pids = {t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs}
    assert len(pids) >= 2

    snapshots = snapshot_store(spec, storage).history("shared")
    assert snapshots, "every run with a COMPLETE trial records a Pareto snapshot"
    assert [s.number for s in snapshots] == list(range(len(snapshots)))
    assert [s.n_finished for s in snapshots] == sorted(s.n_finished for s in snapshots)
    last = snapshots[-1]
    best = study.best_trials
    assert [m[0] for m in last.members] == sorted(t.number for t in best)
    values = {t.number: tuple(t.values) for t in best}
    assert {m[0]: (m[1], m[2]) for m in last.members} == values


def test_a_continued_racing_study_on_sqlite_reaches_each_budget_with_nothing_queued(
        tmp_path: Path, tiny_toml: Path, run_explore: Callable[..., Any]) -> None:
    """Two workers race replicates on SQLite up to the budget, then a continuation with a larger
    --trials: each run ends at exactly its budget, with no trial left queued or running."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    for budget in (BUDGET, BUDGET + 4):
        proc = run_explore("study", "run", "--name", "race", "--storage", url, "--config",
                           str(tiny_toml), "--trials", str(budget), "--epochs", str(EPOCHS),
                           "--workers", "2", "--device", "cpu", "-f", "json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["finished"] == budget
        study = optuna.load_study(study_name="race", storage=url)
        trials = study.get_trials(deepcopy=False)
        assert count_finished(study) == budget
        assert not [t.number for t in trials
                    if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        trained = [t for t in trials if "train_seconds" in t.user_attrs and claims_budget(t)]
        assert len(trained) == budget and all(t.state in FINISHED for t in trained)
    assert any(t.user_attrs.get("replicate") for t in trained)  # replicates were raced


WRITERS = 6
ROUNDS = 10
# One writer process (torch-free, so it starts fast): wait until all writers are ready, create
# the tables (all at once) and record ROUNDS fronts with finished counts interleaved with the
# other writers', then ROUNDS with one shared count.
WRITER_SCRIPT = """
import sys, time
from pathlib import Path
from studies.snapshots import SnapshotStore
url, writer, writers, rounds, ready = sys.argv[1], *map(int, sys.argv[2:5]), Path(sys.argv[5])
(ready / str(writer)).touch()
while len(list(ready.iterdir())) < writers:
    time.sleep(0.01)
store = SnapshotStore.from_url(url)
for i in range(rounds):
    n = writer + i * writers
    store.record("race", n, [(n, 0.5 + n / 1000, 100.0 + writer)])
for _ in range(rounds):
    store.record("race", writers * rounds, [(writers * rounds, 0.9, 100.0 + writer)])
"""


@pytest.mark.db
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_concurrent_snapshot_writers_on_servers(kind: str, request: pytest.FixtureRequest,
                                                tmp_path: Path) -> None:
    import subprocess
    import sys

    from studies.snapshots import SnapshotStore

    url = request.getfixturevalue(f"{kind}_url")  # a fresh database on the server
    env = request.getfixturevalue("subprocess_env_factory")()
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, url, str(w), str(WRITERS),
                               str(ROUNDS), str(ready)], env=env, stderr=subprocess.PIPE,
                              text=True)
             for w in range(WRITERS)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, errors
    store = SnapshotStore.from_url(url)
    history = store.history("race")
    store.engine.dispose()
    assert [s.number for s in history] == list(range(len(history))), "gaps or duplicates"
    counts = [s.n_finished for s in history]
    assert counts == sorted(counts), f"finished counts go backwards: {counts}"
    assert len(history) > WRITERS  # the writers really interleaved
