"""A full disk, or a file over the process's size limit, named once wherever it happens.

The same condition reaches us in many shapes: ``OSError`` errno 28 (ENOSPC) or 27 (EFBIG, over
``ulimit -f``), SQLite's "database or disk is full", SQLAlchemy's ``OperationalError`` and
Optuna's ``StorageInternalError`` wrapping that, and torch's ``RuntimeError`` ("[enforce fail at
inline_container.cc] ... file write failed") with the ``OSError`` of the write as its context.
:func:`disk_full` recognises all of them by walking the exception chain; :class:`DiskFull` is the
one-line error the CLI prints. No torch here: ``studies`` never imports it.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studies.errors import ExploreError

__all__ = ["DiskFull", "disk_full", "naming_full_disk"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")
_TOO_LARGE_TEXT = ("file too large",)
NEARLY_FULL_BYTES = 1 << 20  # an I/O error with less room than this is the full disk
_DB_MODULES = ("sqlite3", "sqlalchemy", "optuna.storages", "optuna.exceptions", "psycopg",
               "pymysql", "MySQLdb")


class DiskFull(ExploreError):
    """No space left where something was being written (exit code 1)."""

    def __init__(self, path: str | Path, too_large: bool = False,
                 note: str | None = None) -> None:
        self.path = str(path)
        self.too_large = too_large
        self.note = note
        if too_large:
            text = (f"file too large at {path}: the process's file size limit (ulimit -f) "
                    "was reached; raise it and run again")
        else:
            text = (f"no space left on device at {path}: free some space there (or write to "
                    "another disk: --storage, EXPLORE_ARTIFACTS, --out) and run again")
        super().__init__(f"{text} ({note})" if note else text)

    def noting(self, note: str) -> DiskFull:
        """The same error with ``note`` (what became of the work in flight) on its line."""
        return DiskFull(self.path, self.too_large, note)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError keeps the driver's error
        todo += [e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None]


def disk_full(exc: BaseException, storage: str | Path | None = None,
              files: str | Path | None = None) -> DiskFull | None:
    """The :class:`DiskFull` that ``exc`` is, or None when it is something else.

    Args:
        exc: Any exception; its ``__cause__``/``__context__`` chain is searched.
        storage: Where the study database is (named when a database error says it is full).
        files: Where files were being written (named when the error carries no file name).
    """
    kind: str | None = None
    filename: str | None = None
    via_db = False
    for e in _chain(exc):
        module = type(e).__module__
        via_db = via_db or module.startswith(_DB_MODULES)
        text = str(e).lower()
        if isinstance(e, OSError) and e.errno in (*_NO_SPACE, errno.EFBIG):
            kind = kind or ("large" if e.errno == errno.EFBIG else "space")
            filename = filename or (str(e.filename) if e.filename else None)
        elif any(t in text for t in _NO_SPACE_TEXT):
            kind = kind or "space"
            via_db = via_db or "database" in text
        elif any(t in text for t in _TOO_LARGE_TEXT):
            kind = kind or "large"
        elif "disk i/o error" in text and _nearly_full(storage):
            kind, via_db = kind or "space", True  # SQLite's answer when its index finds no room
    if kind is None:
        return None
    where = filename or (storage if via_db and storage is not None else files) or storage
    return DiskFull(where or "a path the error does not name (--debug shows the traceback)",
                    too_large=kind == "large")


def _nearly_full(path: str | Path | None) -> bool:
    """Whether the file system of a local ``path`` has (almost) no room left."""
    if path is None or "://" in str(path):
        return False
    folder = Path(path).parent
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


@contextmanager
def naming_full_disk(storage: str | Path | None, files: str | Path | None) -> Iterator[None]:
    """Turn a full disk inside the block into :class:`DiskFull` (other errors pass as they are)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        full = disk_full(exc, storage, files)
        if full is None:
            raise
        raise full from exc
