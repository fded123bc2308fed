"""The file an ``--out`` option names, checked before any work: its format (the suffix) and an
existing folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from studies.errors import UsageError

__all__ = ["check_out"]


def check_out(path: Path, suffixes: Sequence[str]) -> str:
    """The output's format (its suffix); a clear error for another suffix or a missing folder."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise UsageError(f"--out {path}: give a file ending in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist")
    return suffix
