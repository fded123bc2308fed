"""Optuna's RDB tables read with plain SQL: the fast :class:`~studies.record.Catalog`.

An SQLite file is read with the standard library's ``sqlite3`` (other RDB URLs through SQLAlchemy
Core, with the same SQL), and only the rows a command needs. Nothing here creates a database: a
missing file is an error, and the file is opened without ``create``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from studies.errors import ExploreError
from studies.record import Catalog, StudyMeta, TrialRecord, TrialStats
from studies.storage import StorageSpec, mask_secrets

__all__ = ["SqlCatalog"]


# ---- the SQL connection: sqlite3 for SQLite files, SQLAlchemy Core for servers ----------------


class _Sql:
    """Runs the same SQL text on ``sqlite3`` or on an SQLAlchemy connection (``:name`` params)."""

    def __init__(self, spec: StorageSpec) -> None:
        self.spec = spec
        self._sqlite: Any = None
        self._engine: Any = None
        self.dialect = "sqlite"
        if spec.kind == "sqlite":
            import sqlite3

            assert spec.path is not None
            if not spec.path.exists():
                raise ExploreError(f"no study database at {spec.path}: run `explore study run` "
                                   "first or pass --storage")
            # mode=rw: never create the file; fall back to read-only for a read-only file.
            try:
                self._sqlite = sqlite3.connect(f"{spec.path.as_uri()}?mode=rw", uri=True,
                                               timeout=60)
            except sqlite3.OperationalError:
                self._sqlite = sqlite3.connect(f"{spec.path.as_uri()}?mode=ro", uri=True,
                                               timeout=60)
        else:
            self._engine = _server_engine(spec)
            self.dialect = self._engine.dialect.name

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect in ("mysql", "mariadb") else f'"{name}"'

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            if self._sqlite is not None:
                return list(self._sqlite.execute(sql, params or {}).fetchall())
            from sqlalchemy import text

            with self._engine.connect() as con:
                return [tuple(r) for r in con.execute(text(sql), params or {}).all()]
        except Exception as exc:
            raise _read_error(self.spec, exc) from exc

    def has_table(self, name: str) -> bool:
        if self._sqlite is not None:
            return bool(self.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                  "AND name = :name", {"name": name}))
        from sqlalchemy import inspect

        return bool(inspect(self._engine).has_table(name))

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._engine is not None:
            self._engine.dispose()


def _server_engine(spec: StorageSpec) -> Any:
    from sqlalchemy import create_engine

    from studies.storage import engine_kwargs

    try:
        return create_engine(spec.url, **engine_kwargs(spec))
    except ModuleNotFoundError as exc:
        extra = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql",
                 "MySQLdb": "mysql"}.get(exc.name or "")
        hint = f" (pip install 'explore[{extra}]')" if extra else ""
        raise ExploreError(f"the driver for {spec.display} is not installed: "
                           f"{exc.name}{hint}") from exc


def _read_error(spec: StorageSpec, exc: BaseException) -> ExploreError:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return ExploreError(f"cannot read {spec.display}: "
                        f"{mask_secrets(text[0] if text else exc.__class__.__name__)}")


def _placeholders(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _value(value: Any, kind: str) -> float:
    if kind == "INF_POS":
        return math.inf
    if kind == "INF_NEG":
        return -math.inf
    return float(value)


def _param(internal: float, distribution_json: str) -> Any:
    """Optuna stores a param as a float plus its distribution; turn it back into the value."""
    dist = json.loads(distribution_json)
    name = dist.get("name", "")
    attrs = dist.get("attributes", {})
    if name == "CategoricalDistribution":
        return attrs["choices"][int(internal)]
    if "Int" in name:  # IntDistribution and the old IntUniform/IntLogUniform
        return int(internal)
    return float(internal)


# ---- the catalog -------------------------------------------------------------------------------


class SqlCatalog(Catalog):
    """Optuna's RDB tables read with plain SQL."""

    def __init__(self, spec: StorageSpec) -> None:
        self.spec = spec
        self.sql = _Sql(spec)
        self._has_tables = self.sql.has_table("studies") and self.sql.has_table("trials")
        self._studies: list[StudyMeta] | None = None

    def close(self) -> None:
        self.sql.close()

    def studies(self) -> list[StudyMeta]:
        if self._studies is not None:
            return self._studies
        if not self._has_tables:
            self._studies = []
            return []
        q = self.sql.quote
        names = dict(self.sql.rows("SELECT study_id, study_name FROM studies ORDER BY study_id"))
        directions: dict[int, list[tuple[int, str]]] = {}
        for sid, direction, objective in self.sql.rows(
                "SELECT study_id, direction, objective FROM study_directions"):
            directions.setdefault(sid, []).append((objective, str(direction).lower()))
        metric_names: dict[int, tuple[str, ...]] = {}
        for sid, value in self.sql.rows(
                f"SELECT study_id, value_json FROM study_system_attributes "
                f"WHERE {q('key')} = 'study:metric_names'"):
            metric_names[sid] = tuple(json.loads(value))
        attrs: dict[int, dict[str, Any]] = {}
        for sid, key, value in self.sql.rows(
                f"SELECT study_id, {q('key')}, value_json FROM study_user_attributes"):
            attrs.setdefault(sid, {})[key] = json.loads(value)
        self._studies = [
            StudyMeta(sid, name, tuple(d for _, d in sorted(directions.get(sid, []))),
                      metric_names.get(sid), attrs.get(sid, {}))
            for sid, name in names.items()
        ]
        return self._studies

    def stats(self) -> dict[int, TrialStats]:
        if not self._has_tables:
            return {}
        counts: dict[int, dict[str, int]] = {}
        first: dict[int, dt.datetime] = {}
        last: dict[int, dt.datetime] = {}
        for sid, state, n, start, end, end_start in self.sql.rows(
                "SELECT study_id, state, COUNT(*), MIN(datetime_start), "
                "MAX(datetime_complete), MAX(datetime_start) FROM trials "
                "GROUP BY study_id, state"):
            counts.setdefault(sid, {})[str(state)] = int(n)
            for value, into, better in ((_datetime(start), first, min),
                                        (_datetime(end), last, max),
                                        (_datetime(end_start), last, max)):
                if value is not None:
                    into[sid] = better(into[sid], value) if sid in into else value
        return {sid: TrialStats(c, first.get(sid), last.get(sid)) for sid, c in counts.items()}

    def complete_values(self, study_ids: Sequence[int]
                        ) -> dict[int, list[tuple[int, int, tuple[float, ...]]]]:
        out: dict[int, list[tuple[int, int, tuple[float, ...]]]] = {sid: [] for sid in study_ids}
        if not self._has_tables or not study_ids:
            return out
        marks, params = _placeholders("s", list(study_ids))
        rows = self.sql.rows(
            "SELECT t.study_id, t.trial_id, t.number, v.objective, v.value, v.value_type "
            "FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id "
            f"WHERE t.state = 'COMPLETE' AND t.study_id IN ({marks}) "
            "ORDER BY t.study_id, t.number, v.objective", params)
        current: tuple[int, int, int] | None = None
        values: list[float] = []
        for sid, tid, number, _, value, kind in rows:
            if current is not None and current[1] != tid:
                out[current[0]].append((current[1], current[2], tuple(values)))
                values = []
            current = (sid, tid, number)
            values.append(_value(value, kind))
        if current is not None:
            out[current[0]].append((current[1], current[2], tuple(values)))
        return out

    def trials(self, study: StudyMeta, trial_ids: Sequence[int] | None = None,
               states: Iterable[str] | None = None) -> list[TrialRecord]:
        q = self.sql.quote
        where = "t.study_id = :sid"
        params: dict[str, Any] = {"sid": study.study_id}
        if states is not None:
            marks, extra = _placeholders("st", list(states))
            where += f" AND t.state IN ({marks})"
            params.update(extra)
        base: list[tuple[Any, ...]] = []
        if trial_ids is None:
            base = self.sql.rows(
                "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete "
                f"FROM trials t WHERE {where} ORDER BY t.number", params)
        else:
            for chunk in _chunks(list(trial_ids)):
                marks, extra = _placeholders("t", chunk)
                base += self.sql.rows(
                    "SELECT t.trial_id, t.number, t.state, t.datetime_start, "
                    f"t.datetime_complete FROM trials t WHERE {where} "
                    f"AND t.trial_id IN ({marks})", {**params, **extra})
            base.sort(key=lambda r: r[1])
        ids = [r[0] for r in base]
        values: dict[int, dict[int, float]] = {}
        trial_params: dict[int, dict[str, Any]] = {}
        attrs: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            marks, extra = _placeholders("t", chunk)
            for tid, objective, value, kind in self.sql.rows(
                    f"SELECT trial_id, objective, value, value_type FROM trial_values "
                    f"WHERE trial_id IN ({marks})", extra):
                values.setdefault(tid, {})[objective] = _value(value, kind)
            for tid, name, value, dist in self.sql.rows(
                    f"SELECT trial_id, param_name, param_value, distribution_json "
                    f"FROM trial_params WHERE trial_id IN ({marks}) ORDER BY param_id", extra):
                trial_params.setdefault(tid, {})[name] = _param(value, dist)
            for tid, key, value in self.sql.rows(
                    f"SELECT trial_id, {q('key')}, value_json FROM trial_user_attributes "
                    f"WHERE trial_id IN ({marks}) ORDER BY {q('key')}", extra):
                attrs.setdefault(tid, {})[key] = json.loads(value)
        out = []
        for tid, number, state, start, end in base:
            vals = values.get(tid)
            out.append(TrialRecord(
                number=int(number), state=str(state),
                values=None if not vals or state != "COMPLETE"
                else tuple(vals[k] for k in sorted(vals)),
                params=trial_params.get(tid, {}), user_attrs=attrs.get(tid, {}),
                datetime_start=_datetime(start), datetime_complete=_datetime(end),
                trial_id=int(tid)))
        return out


    def constrained(self) -> set[int]:
        if not self._has_tables:
            return set()
        q = self.sql.quote
        return {int(sid) for (sid,) in self.sql.rows(
            "SELECT DISTINCT t.study_id FROM trial_system_attributes a "
            "JOIN trials t ON t.trial_id = a.trial_id "
            f"WHERE a.{q('key')} = 'constraints' OR a.{q('key')} LIKE 'constraints:%'")}
