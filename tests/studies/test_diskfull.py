"""A full disk is recognised in every shape it reaches us in, in one place (studies.diskfull)."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from studies.diskfull import DiskFull, disk_full, naming_full_disk


def chained(*excs: BaseException) -> BaseException:
    """``excs[0]`` raised from ``excs[1]`` raised from …, as the libraries chain them."""
    for outer, inner in zip(excs, excs[1:], strict=False):
        outer.__cause__ = inner
    return excs[0]


def test_every_shape_of_a_full_disk_is_named_with_its_path() -> None:
    sqlite_full = sqlite3.OperationalError("database or disk is full")
    alchemy = sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite_full)  # keeps it as .orig
    optuna_error = chained(StorageInternalError("An exception is raised during the commit."),
                           alchemy)
    full = disk_full(optuna_error, storage="/data/s.db", files="/data/s-artifacts")
    assert isinstance(full, DiskFull) and full.path == "/data/s.db"
    assert str(full).startswith("no space left on device at /data/s.db: ")
    assert full.exit_code == 1

    # torch's writer: a RuntimeError whose context is the OSError of the write, no file name
    torch_like = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
    torch_like.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert disk_full(torch_like, "/data/s.db", "/data/s-artifacts").path == "/data/s-artifacts"

    named = OSError(errno.ENOSPC, "No space left on device", "/data/s-artifacts/x.pt")
    assert disk_full(RuntimeError("wrapped"), "/db") is None
    assert disk_full(chained(ValueError("outer"), named), "/db", "/a").path == \
        "/data/s-artifacts/x.pt"

    too_large = disk_full(OSError(errno.EFBIG, "File too large", "/data/big.pt"))
    assert too_large is not None and too_large.too_large
    assert str(too_large).startswith("file too large at /data/big.pt: ")
    assert "ulimit -f" in str(too_large)


@pytest.mark.parametrize("exc", [
    OSError(errno.EACCES, "Permission denied", "/x"),
    sqlite3.OperationalError("database is locked"),
    RuntimeError("CUDA out of memory"),
    ValueError("no space for you"),
], ids=["EACCES", "locked", "oom", "value"])
def test_other_errors_are_not_a_full_disk(exc: BaseException) -> None:
    assert disk_full(exc, "/db", "/a") is None


def test_the_context_manager_turns_only_a_full_disk_into_disk_full() -> None:
    with pytest.raises(DiskFull, match="no space left on device at /db"), \
            naming_full_disk("/db", "/a"):
        raise sqlalchemy.exc.OperationalError(
            "INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    with pytest.raises(KeyError), naming_full_disk("/db", "/a"):
        raise KeyError("x")
