"""A machine-wide reader/writer lock that keeps throughput measurements honest.

Workers on one machine hold the lock *shared* while they train (one epoch at a time) and a
throughput measurement takes it *exclusively*, so every figure is measured on a quiet machine.
A turnstile lock gives the measurement priority: once it waits, no new epoch starts.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MachineLock"]


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
    def shared(self) -> Iterator[None]:
        """Held while training an epoch; many at once."""
        if not self.enabled:
            yield
            return
        with self._flock(self.turnstile, fcntl.LOCK_SH):
            pass  # waits while a measurement is queued or running
        with self._flock(self.main, fcntl.LOCK_SH):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while measuring throughput; alone on the machine."""
        if not self.enabled:
            yield
            return
        with self._flock(self.turnstile, fcntl.LOCK_EX), self._flock(self.main, fcntl.LOCK_EX):
            yield
