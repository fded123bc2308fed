"""Pareto snapshots: numbering, what gets recorded, and safety under concurrent writers.

Every test uses a real SQLite file in WAL mode (as explore opens its databases). The concurrent
tests hammer one study from many threads and from many processes: snapshot numbers must come out
unique and contiguous (0..k-1), and the finished counts must never go backwards in number order.
The same checks against PostgreSQL and MySQL are in ``tests/distributed/test_storages.py``.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from studies.snapshots import Snapshot, SnapshotStore

WRITERS = 8
ROUNDS = 12


def wal_url(path: Path) -> str:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return f"sqlite:///{path}"


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore.from_url(wal_url(tmp_path / "snaps.db"))


def test_numbers_start_at_zero_and_unchanged_fronts_are_skipped(store: SnapshotStore) -> None:
    first = store.record("s", 1, [(0, 0.5, 100.0)])
    assert first is not None and first.number == 0 and first.n_finished == 1
    assert store.record("s", 2, [(0, 0.5, 100.0)]) is None  # same members: nothing new
    second = store.record("s", 3, [(2, 0.9, 50.0), (0, 0.5, 100.0)])
    assert second is not None and second.number == 1
    assert second.members == ((0, 0.5, 100.0), (2, 0.9, 50.0))  # sorted by trial number
    assert second.hypervolume == pytest.approx(0.5 * 100.0 + (0.9 - 0.5) * 50.0)
    assert [s.number for s in store.history("s")] == [0, 1]
    assert store.latest("s") == second
    assert store.history("other") == [] and store.latest("other") is None


def test_an_older_view_gives_way_to_a_newer_snapshot(store: SnapshotStore) -> None:
    assert store.record("s", 5, [(4, 0.8, 10.0)]) is not None
    # A worker that read the front before the 5th trial finished must not append after it.
    assert store.record("s", 4, [(1, 0.7, 20.0)]) is None
    assert [s.n_finished for s in store.history("s")] == [5]


def test_studies_are_numbered_separately_and_deleted_alone(store: SnapshotStore) -> None:
    store.record("a", 1, [(0, 0.5, 1.0)])
    store.record("b", 1, [(0, 0.6, 1.0)])
    store.record("a", 2, [(1, 0.7, 1.0)])
    assert [s.number for s in store.history("a")] == [0, 1]
    assert [s.number for s in store.history("b")] == [0]
    assert store.delete_study("a") == 2
    assert store.history("a") == [] and len(store.history("b")) == 1


def _front(n: int, writer: int) -> list[tuple[int, float, float]]:
    """A front that differs for every (n, writer), so no record is skipped as unchanged."""
    return [(n, 0.5 + n / 1000, 100.0 + writer), (1000 + writer, 0.1, 1000.0)]


def _write(url: str, writer: int, rounds: int, barrier: threading.Barrier | None) -> None:
    """One writer: ``rounds`` records with finished counts interleaved with the others'
    (``writer``, ``writer + WRITERS``, …) and then ``rounds`` with one shared count."""
    if barrier is not None:
        barrier.wait()
    store = SnapshotStore.from_url(url)  # all at once: creating the tables must not race
    for i in range(rounds):
        n = writer + i * WRITERS
        store.record("race", n, _front(n, writer))
    for _ in range(rounds):
        store.record("race", WRITERS * rounds, _front(WRITERS * rounds, writer))
    store.engine.dispose()


def check_consistent(history: list[Snapshot]) -> None:
    assert history, "no snapshot recorded"
    assert [s.number for s in history] == list(range(len(history))), "gaps or duplicates"
    counts = [s.n_finished for s in history]
    assert counts == sorted(counts), f"finished counts go backwards: {counts}"
    assert all(s.front_size == 2 and len(s.members) == 2 for s in history), "interleaved"


def test_concurrent_threads_number_snapshots_without_gaps(tmp_path: Path) -> None:
    url = wal_url(tmp_path / "threads.db")
    SnapshotStore.from_url(url)
    barrier = threading.Barrier(WRITERS)
    threads = [threading.Thread(target=_write, args=(url, w, ROUNDS, barrier))
               for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    history = SnapshotStore.from_url(url).history("race")
    check_consistent(history)
    assert len(history) > WRITERS  # the writers really interleaved


def test_concurrent_processes_create_tables_and_number_snapshots(tmp_path: Path) -> None:
    # Worker processes open a fresh side file together (journal storages), then record.
    url = wal_url(tmp_path / "procs.db")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_write, args=(url, w, ROUNDS, barrier)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    check_consistent(SnapshotStore.from_url(url).history("race"))
