"""A machine-wide reader/writer lock that keeps throughput measurements honest.

Workers on one machine hold the lock *shared* while they train (one epoch at a time) and a
throughput measurement takes it *exclusively*, so every figure is measured on a quiet machine.
A turnstile lock gives the measurement priority: once it waits, no new epoch starts, and the
running ones step aside at their next check (:meth:`SharedHold.pause_if_wanted`).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MachineLock", "SharedHold", "would_block"]


class MachineLock:
    """``flock``-based reader/writer lock shared by every explore process of this user."""

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 enabled: bool = True) -> None:
        base = Path(directory or tempfile.gettempdir())
        self.enabled = enabled
        self.main = base / f"explore-{os.getuid()}-measure.lock"
        self.turnstile = base / f"explore-{os.getuid()}-measure.turnstile"

    @contextmanager
    def _flock(self, path: Path, mode: int) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def shared(self) -> Iterator[SharedHold | None]:
        """Held while training an epoch; many at once. Yields the hold (None when disabled),
        whose :meth:`SharedHold.pause_if_wanted` lets a waiting measurement in mid-epoch."""
        if not self.enabled:
            yield None
            return
        hold = SharedHold(self)
        hold.acquire()
        try:
            yield hold
        finally:
            hold.release()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while measuring throughput; alone on the machine."""
        if not self.enabled:
            yield
            return
        with self._flock(self.turnstile, fcntl.LOCK_EX), self._flock(self.main, fcntl.LOCK_EX):
            yield


def would_block(path: Path, mode: int) -> bool:
    """Whether ``flock(mode)`` on ``path`` would wait: another open file holds a conflicting
    lock (LOCK_SH: someone holds it exclusively; LOCK_EX: someone holds it at all)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class SharedHold:
    """The shared side of a :class:`MachineLock`, held by one training epoch.

    An epoch of a large dataset can take minutes; a measurement queued behind it would keep its
    own worker idle that long, and every other worker as it finishes its epoch (the turnstile
    stops new ones). So the trainer asks every so often (:meth:`pause_if_wanted`) whether a
    measurement waits, and if one does, steps aside until it is done.
    """

    def __init__(self, lock: MachineLock) -> None:
        self.lock = lock
        self._fd: int | None = None

    def acquire(self) -> None:
        with self.lock._flock(self.lock.turnstile, fcntl.LOCK_SH):
            pass  # waits while a measurement is queued or running
        fd = os.open(self.lock.main, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def measurement_waiting(self) -> bool:
        """Whether a measurement holds the turnstile (it waits for the running epochs)."""
        return would_block(self.lock.turnstile, fcntl.LOCK_SH)

    def pause_if_wanted(self, before: Callable[[], None] | None = None) -> float:
        """If a measurement is waiting, let it run: ``before()`` (e.g. wait for the GPU's
        queued work), release, wait until it is done, take the shared side again. Returns the
        seconds paused (0.0 when nothing was waiting), to keep out of the epoch's time."""
        if not self.measurement_waiting():
            return 0.0
        started = time.perf_counter()
        if before is not None:
            before()
        self.release()
        self.acquire()
        return time.perf_counter() - started
