"""The machine lock: exclusion and priority, and honest throughput figures next to busy workers.

The quick tests check the lock's semantics with threads (``flock`` locks belong to open files, so
threads of one process exclude each other like processes do). The slow test runs
``benchmarks/lock_honesty.py``: one model's throughput solo, then while 2 other processes train,
with and without the lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from explore.locks import MachineLock

REPO = Path(__file__).resolve().parents[2]
HOLD_S = 0.3


def _hold_shared(lock: MachineLock, events: list[str], name: str,
                 started: threading.Event | None = None) -> None:
    with lock.shared():
        events.append(f"{name} in")
        if started is not None:
            started.set()
        time.sleep(HOLD_S)
        events.append(f"{name} out")


def test_exclusive_waits_for_the_running_epoch(tmp_path: Path) -> None:
    lock = MachineLock(tmp_path)
    events: list[str] = []
    started = threading.Event()
    trainer = threading.Thread(target=_hold_shared, args=(lock, events, "epoch", started))
    trainer.start()
    started.wait(5)
    with lock.exclusive():
        events.append("measure")
    trainer.join()
    assert events == ["epoch in", "epoch out", "measure"]


def test_a_waiting_measurement_goes_before_new_epochs(tmp_path: Path) -> None:
    lock = MachineLock(tmp_path)
    events: list[str] = []
    started = threading.Event()
    first = threading.Thread(target=_hold_shared, args=(lock, events, "epoch 1", started))
    first.start()
    started.wait(5)

    def measure() -> None:
        with lock.exclusive():
            events.append("measure")

    measurer = threading.Thread(target=measure)
    measurer.start()
    time.sleep(HOLD_S / 3)  # the measurement now waits on the running epoch
    second = threading.Thread(target=_hold_shared, args=(lock, events, "epoch 2"))
    second.start()
    for t in (first, measurer, second):
        t.join(10)
    assert events == ["epoch 1 in", "epoch 1 out", "measure", "epoch 2 in", "epoch 2 out"]


def test_epochs_share_and_a_disabled_lock_excludes_nothing(tmp_path: Path) -> None:
    lock = MachineLock(tmp_path)
    events: list[str] = []
    threads = [threading.Thread(target=_hold_shared, args=(lock, events, f"e{i}"))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert events[:2] == ["e0 in", "e1 in"] or events[:2] == ["e1 in", "e0 in"]

    events.clear()
    started = threading.Event()
    trainer = threading.Thread(target=_hold_shared, args=(lock, events, "epoch", started))
    trainer.start()
    started.wait(5)
    with MachineLock(tmp_path, enabled=False).exclusive():
        events.append("measure")
    trainer.join()
    assert events == ["epoch in", "measure", "epoch out"]


@pytest.mark.slow
def test_throughput_next_to_busy_workers_stays_honest_with_the_lock() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "lock_honesty.py"),
                           "--quick", "--trainers", "2", "--repeats", "7", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    note = (f"solo {result['solo']}, busy with lock {result['busy_lock']}, busy without lock "
            f"{result['busy_no_lock']} img/s; per-repeat ratios to solo {result['ratios']}")
    # Paired per repeat, so that other load on the machine cancels out. The 10% bound is
    # what benchmarks/lock_honesty.py reports on a quiet machine (docs/performance.md); a test
    # shares the machine with whatever else runs, so it allows 15% (still far from the ~0.3 of
    # solo that the same measurement reads without the lock).
    assert abs(result["lock_vs_solo"] - 1) <= 0.15, note
    # Without the lock, 3 busy threads on 2 cores: a measurement that shares a core gets about
    # half of solo, one that the scheduler leaves alone on a core about all of it, so the median
    # ranged 0.29-0.91 over runs here (not robust on a quiet machine). Robust: some of the 7
    # measurements were disturbed.
    assert min(result["ratios"]["busy_no_lock"]) < 0.8, note
