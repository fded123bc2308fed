"""Storage URLs: resolve, validate, mask, open.

Accepted forms:

- ``sqlite:///path/to/file.db`` or a plain path ending in ``.db``/``.sqlite``/``.sqlite3``
  (the default is ``explore.db`` in the current directory, or ``$EXPLORE_STORAGE``);
- any SQLAlchemy URL Optuna's RDB storage accepts: ``postgresql+psycopg://…``,
  ``mysql+pymysql://…``;
- ``journal:PATH`` (an Optuna journal file; no heartbeat, explore re-queues stale trials itself);
- ``redis://host:port/db`` (Optuna's Redis journal).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from studies.diskfull import disk_full
from studies.errors import UsageError

if TYPE_CHECKING:
    import optuna

    from studies.snapshots import SnapshotStore

__all__ = [
    "DEFAULT_DB_NAME",
    "ENV_STORAGE",
    "Heartbeat",
    "StorageSpec",
    "enable_wal",
    "mask_url",
    "mask_secrets",
    "open_storage",
    "parse_storage",
]

DEFAULT_DB_NAME = "explore.db"
ENV_STORAGE = "EXPLORE_STORAGE"
ENV_ARTIFACTS = "EXPLORE_ARTIFACTS"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
SQLITE_BUSY_TIMEOUT_S = 60
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Heartbeat:
    """Optuna's heartbeat settings for RDB storages (seconds)."""

    interval: int = 10
    grace_period: int = 30
    max_retry: int = 3


@dataclass(frozen=True)
class StorageSpec:
    """A validated storage location."""

    url: str  # the URL to connect with (may hold a password: never print it)
    kind: str  # "sqlite", "rdb", "journal" or "redis"
    path: Path | None = None  # the file, for sqlite and journal files

    @property
    def display(self) -> str:
        """Where the study lives, safe to print."""
        return str(self.path) if self.path is not None else mask_url(self.url)

    @property
    def is_rdb(self) -> bool:
        return self.kind in ("sqlite", "rdb")

    def artifact_dir(self) -> Path:
        """Where checkpoints and training states live: next to a file storage, else
        ``$EXPLORE_ARTIFACTS`` or ``./explore-artifacts`` (share it between machines)."""
        if os.environ.get(ENV_ARTIFACTS):
            return Path(os.environ[ENV_ARTIFACTS]).resolve()
        if self.path is not None:
            return self.path.parent / f"{self.path.stem}-artifacts"
        return Path("explore-artifacts").resolve()


_PASSWORD_RE = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)", re.I
)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_secrets(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def mask_secrets(text: str) -> str:
    """Replace passwords of any URLs inside free text (error messages, logs)."""
    return _PASSWORD_RE.sub(lambda m: f"{m['head']}***{m['tail']}", text)


# A bare scheme's default SQLAlchemy driver, and the URL scheme of the driver our extras install.
_DRIVERS = {"mysql": ("MySQLdb", "mysql+pymysql"), "postgresql": ("psycopg2", "postgresql+psycopg")}


def parse_storage(url: str | None) -> StorageSpec:
    """Resolve ``url`` (or ``$EXPLORE_STORAGE``, or the default file) and validate its form."""
    if url is not None and not url.strip():
        raise UsageError("--storage is empty: give sqlite:///FILE.db, a FILE.db path, "
                         "postgresql+psycopg://…, mysql+pymysql://…, journal:FILE.log or "
                         "redis://… (or leave it out for ./explore.db)")
    url = url or os.environ.get(ENV_STORAGE) or DEFAULT_DB_NAME
    if url.startswith("journal:"):
        raw = url[len("journal:"):]
        raw = raw[2:] if raw.startswith("//") else raw
        if not raw:
            raise UsageError("journal storage needs a file: use journal:PATH/TO/FILE.log")
        path = Path(raw).expanduser().resolve()
        _check_file_target(path, what="journal file")
        return StorageSpec(url=f"journal:{path}", kind="journal", path=path)
    if url.startswith(("redis://", "rediss://")):
        return StorageSpec(url=url, kind="redis")
    if "://" not in url:
        if url.endswith(SQLITE_SUFFIXES) or Path(url).exists():
            path = Path(url).expanduser().resolve()
            _check_sqlite_target(path)
            return StorageSpec(url=f"sqlite:///{path}", kind="sqlite", path=path)
        raise UsageError(
            f"storage {url!r} is not a URL: use sqlite:///FILE.db, a FILE.db path, "
            "postgresql+psycopg://…, mysql+pymysql://…, journal:FILE.log or redis://…"
        )
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in RDB_SCHEMES:
        raise UsageError(
            f"unknown storage scheme {scheme!r} in {mask_url(url)}: use sqlite:///FILE.db, "
            "postgresql+psycopg://…, mysql+pymysql://…, journal:FILE.log or redis://…"
        )
    if scheme in _DRIVERS and "+" not in url.split("://", 1)[0]:
        default, ours = _DRIVERS[scheme]
        if importlib.util.find_spec(default) is None:  # SQLAlchemy's default driver is absent
            raise UsageError(
                f"{mask_url(url)} asks for SQLAlchemy's default driver {default}, which is not "
                f"installed: use {ours}://… (the driver explore installs)")
    if scheme == "sqlite":
        raw = url.split("://", 1)[1]
        if raw in ("", "/", "/:memory:"):
            raise UsageError("an in-memory SQLite storage would lose the study: give a file path")
        path = Path(raw[1:] if raw.startswith("/") else raw).expanduser().resolve()
        _check_sqlite_target(path)
        return StorageSpec(url=f"sqlite:///{path}", kind="sqlite", path=path)
    return StorageSpec(url=url, kind="rdb")


def _check_file_target(path: Path, what: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a {what}: give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"directory {parent} does not exist: create it or choose another path")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise UsageError(f"{path} is not readable and writable: fix its permissions")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {path}: directory {parent} is not writable")


def _check_sqlite_target(path: Path) -> None:
    _check_file_target(path, what="SQLite database")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise UsageError(f"{path} is not an SQLite database: give another file")


def _enable_wal(path: Path) -> None:
    """WAL lets readers (browsing, the dashboard) work while a run writes; it persists in the
    file, so setting it once is enough.

    Switching the journal mode needs the file to itself, and SQLite answers "database is locked"
    at once (without waiting out the busy timeout) while another process holds it, as processes
    started together on a new database do: retry, re-reading the mode, until the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.02
    while True:
        con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        finally:
            con.close()
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def enable_wal(spec: StorageSpec) -> None:
    """Switch an existing SQLite study database to WAL. A run calls this once it has checked
    the study and is about to write: reading or refusing a database never changes its file."""
    if spec.kind == "sqlite" and spec.path is not None:
        _enable_wal(spec.path)


def engine_kwargs(spec: StorageSpec) -> dict[str, Any]:
    if spec.kind == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True}


OPTUNA_TABLES = {"studies", "version_info", "alembic_version", "trials"}


def refuse_foreign_sqlite(path: Path) -> None:
    """An SQLite file of another application (tables of its own, none of Optuna's) is not a
    study database: adding Optuna's tables to it is refused."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return  # not a database: open_storage says so
    if names and not names & OPTUNA_TABLES:
        shown = ", ".join(sorted(names)[:4]) + (", …" if len(names) > 4 else "")
        raise UsageError(f"{path} is another application's SQLite database (tables {shown}), "
                         "not a study database: give explore its own file with --storage")


def repair_torn_journal(path: Path, lock: Any) -> Path | None:
    """Cut a journal file whose last record is incomplete (a crash or a full disk mid-write) back
    to its last complete record, after keeping the whole file as ``FILE.torn-TIME``; say so on
    stderr. Appending after a torn line would make the file unreadable, for Optuna too. Done
    under the journal's own write lock, so that no writer is mid-record. Returns the backup."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock.acquire()
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
            data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.torn-{stamp}")
        shutil.copy2(path, backup)
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    sys.stderr.write(f"note: {path} ended in an incomplete record ({len(data) - keep} bytes, "
                     f"a crash or a full disk mid-write): kept the whole file as {backup} and "
                     "continued from the last complete record\n")
    return backup


def open_storage(
    spec: StorageSpec, *, heartbeat: Heartbeat | None = None, create: bool = True
) -> optuna.storages.BaseStorage:
    """Open the Optuna storage behind ``spec``; errors become one-line :class:`UsageError`s.

    Args:
        spec: From :func:`parse_storage`.
        heartbeat: Enable Optuna's heartbeat and retry stale trials (RDB storages only).
        create: Allow creating a new database file. Browsing commands pass False so that a
            typo never leaves an empty database behind.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

    if spec.path is not None and not create and not spec.path.exists():
        raise UsageError(f"no study database at {spec.path}: run `explore study run` first "
                         "or pass --storage")
    try:
        if spec.kind == "journal":
            assert spec.path is not None
            journal = JournalFileBackend(str(spec.path))
            if create:  # a run appends: never after a torn record (browsing reads past it)
                repair_torn_journal(spec.path, journal._lock)
            return JournalStorage(journal)
        if spec.kind == "redis":
            backend = JournalRedisBackend(spec.url)
            backend._redis.ping()  # fail now, with a clear message, if the server is away
            return JournalStorage(backend)
        if spec.kind == "sqlite":
            assert spec.path is not None
            if create and (not spec.path.exists() or spec.path.stat().st_size == 0):
                _enable_wal(spec.path)  # a new database; existing ones: see enable_wal
        hb: dict[str, Any] = {}
        if heartbeat is not None:
            hb = {
                "heartbeat_interval": heartbeat.interval,
                "grace_period": heartbeat.grace_period,
                "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                    max_retry=heartbeat.max_retry
                ),
            }
        storage = _rdb_storage(spec, hb)
        if spec.kind == "sqlite" and create:
            _immediate_transactions(storage.engine)
        return storage
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        extra = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql",
                 "redis": "redis", "MySQLdb": "mysql"}.get(exc.name or "", None)
        hint = f" (pip install 'explore[{extra}]')" if extra else ""
        raise UsageError(
            f"the driver for {spec.display} is not installed: {exc.name}{hint}"
        ) from exc
    except RuntimeError as exc:
        text = str(exc)
        if "pip install -U optuna" in text:  # a schema this Optuna does not know: newer
            raise UsageError(
                f"{spec.display} was written by a newer Optuna than this one "
                f"(optuna {optuna.__version__}): upgrade it with pip install -U optuna"
            ) from exc
        if "storage upgrade" in text or "schema" in text.lower():
            raise UsageError(
                f"{spec.display} was written by another Optuna schema version; "
                f"back it up, then run: optuna storage upgrade --storage {mask_url(spec.url)}"
            ) from exc
        raise UsageError(f"cannot open {spec.display}: {mask_secrets(_first_line(exc))}") from exc
    except Exception as exc:  # driver errors: unreachable server, bad credentials, bad file
        full = disk_full(exc, spec.display)
        if full is not None:
            raise full from exc
        raise UsageError(f"cannot open {spec.display}: {mask_secrets(_first_line(exc))}") from exc


def _rdb_storage(spec: StorageSpec, hb: dict[str, Any]) -> Any:
    """Optuna's RDB storage. Processes started together on a new database race to create its
    tables and Alembic's version row; the loser sees "table ... already exists" or a UNIQUE
    constraint on ``alembic_version`` and simply opens what the winner made. On SQLite it may
    instead see "database is locked" at once: a transaction that read the schema and then writes
    after another process wrote gets no busy wait (WAL snapshots), so it is tried again too."""
    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(spec.url, engine_kwargs=engine_kwargs(spec), **hb)
        except Exception as exc:
            text = str(exc)
            racing = ("already exists" in text or "alembic_version" in text  # tables, version row
                      or (spec.kind == "sqlite" and "database is locked" in text))
            if not racing or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _immediate_transactions(engine: Any) -> None:
    """Make every SQLite transaction of a writing process ``BEGIN IMMEDIATE``.

    Python's sqlite3 driver starts a transaction only at the first write, so Optuna's
    read-check-write steps (taking a WAITING trial: read its state, set it RUNNING) are not
    atomic on SQLite: two processes could both read WAITING and both take the same trial (seen
    as "Cannot tell a COMPLETE trial" when the second one finishes it). With the write lock taken
    at the start of each transaction, the second process reads the trial after the first one
    committed, finds it RUNNING and takes another. Waits for the lock use the busy timeout.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver no longer issues BEGIN itself

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections made before the listeners existed are not reused


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def snapshot_store(spec: StorageSpec, storage: optuna.storages.BaseStorage,
                   create: bool = True) -> SnapshotStore:
    """Our snapshot tables: inside the study database for RDB storages; for journal storages
    (which hold no tables) in a side SQLite file, ``<journal stem>-snapshots.db`` next to a
    journal file or ``snapshots.db`` in the artifact directory for Redis. ``create=False``
    (browsing, delete): no table or file is created; without them there are no snapshots."""
    from optuna.storages import RDBStorage
    from sqlalchemy import create_engine

    from studies.snapshots import SnapshotStore  # SQLAlchemy's ORM: ~0.4 s, only when needed

    if isinstance(storage, RDBStorage):
        return SnapshotStore(storage.engine, create=create)
    if spec.path is not None:
        side = spec.path.parent / f"{spec.path.stem}-snapshots.db"
    else:
        side = spec.artifact_dir() / "snapshots.db"
    if not create:
        url = f"sqlite:///{side}" if side.is_file() else "sqlite://"  # nothing made on disk
        return SnapshotStore(create_engine(url), create=False)
    side.parent.mkdir(parents=True, exist_ok=True)
    _enable_wal(side)
    return SnapshotStore.from_url(f"sqlite:///{side}")
