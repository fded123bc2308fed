"""Read studies fast: Optuna's tables with plain SQL, Optuna's API only where there are no tables.

Browsing a 1000-trial study through ``optuna.load_study`` costs the Optuna and SQLAlchemy imports
(~1 s) plus building every ``FrozenTrial``. Here an SQLite file is read with the standard library's
``sqlite3`` (other RDB URLs through SQLAlchemy Core, with the same SQL), and only the rows a command
needs: ``list`` reads counts and values, ``pareto`` reads values, computes the front, then reads
params and user attrs of the front trials alone. Journal and Redis storages have no tables; they go
through Optuna's storage API and give the same records.

Nothing here creates a database: a missing file is an error, and the file is opened without
``create``. The records and the :class:`~studies.record.Catalog` interface are in
:mod:`studies.record`; the plain-SQL reader of RDB storages is :mod:`studies.sqlcatalog`; this
module holds the Optuna-API reader, :func:`open_catalog` and what the commands show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from studies.errors import ExploreError
from studies.internals import study_id, trial_id
from studies.pareto import front_numbers
from studies.record import (
    STATES,
    Catalog,
    StudyMeta,
    TrialRecord,
    TrialStats,
    iso,
    problem_reason,
    trial_json,
)
from studies.replicates import ConfiguredFront, study_front
from studies.storage import StorageSpec, parse_storage

__all__ = [
    "Catalog",
    "ConfiguredStudy",
    "Front",
    "StudyDetail",
    "StudyMeta",
    "StudySummary",
    "TrialRecord",
    "front_numbers",
    "list_studies",
    "open_catalog",
    "configured_study",
    "pareto_front",
    "read_configured",
    "read_front",
    "show_study",
    "trial_json",
]

class OptunaCatalog(Catalog):
    """Journal and Redis storages, through Optuna's storage API (they have no tables)."""

    def __init__(self, spec: StorageSpec) -> None:
        from studies.storage import open_storage

        self.spec = spec
        if spec.path is not None and not spec.path.exists():
            raise ExploreError(f"no study journal at {spec.path}: run `explore study run` "
                               "first or pass --storage")
        self.storage = open_storage(spec, create=False)
        self._studies: list[StudyMeta] | None = None
        self._trials: dict[int, list[TrialRecord]] = {}

    def studies(self) -> list[StudyMeta]:
        if self._studies is None:
            self._studies = []
            for s in self.storage.get_all_studies():
                self._studies.append(StudyMeta(
                    study_id(s), s.study_name, tuple(d.name.lower() for d in s.directions),
                    tuple(s.system_attrs["study:metric_names"])
                    if "study:metric_names" in s.system_attrs else None,
                    dict(s.user_attrs)))
        return self._studies

    def constrained(self) -> set[int]:
        return {m.study_id for m in self.studies()
                if any(t.constraints for t in self.storage.get_all_trials(m.study_id,
                                                                           deepcopy=False))}

    def _all(self, study_id: int) -> list[TrialRecord]:
        if study_id not in self._trials:
            self._trials[study_id] = [
                TrialRecord(number=t.number, state=t.state.name,
                            values=tuple(t.values) if t.state.name == "COMPLETE" and t.values
                            else None,
                            params=dict(t.params), user_attrs=dict(t.user_attrs),
                            datetime_start=t.datetime_start,
                            datetime_complete=t.datetime_complete, trial_id=trial_id(t))
                for t in self.storage.get_all_trials(study_id, deepcopy=False)]
        return self._trials[study_id]

    def stats(self) -> dict[int, TrialStats]:
        out = {}
        for meta in self.studies():
            counts: dict[str, int] = {}
            times: list[dt.datetime] = []
            starts: list[dt.datetime] = []
            for t in self._all(meta.study_id):
                counts[t.state] = counts.get(t.state, 0) + 1
                starts += [t.datetime_start] if t.datetime_start else []
                times += [x for x in (t.datetime_start, t.datetime_complete) if x is not None]
            if counts:
                out[meta.study_id] = TrialStats(counts, min(starts, default=None),
                                                max(times, default=None))
        return out

    def complete_values(self, study_ids: Sequence[int]
                        ) -> dict[int, list[tuple[int, int, tuple[float, ...]]]]:
        return {sid: [(t.trial_id, t.number, t.values) for t in self._all(sid)
                      if t.state == "COMPLETE" and t.values is not None]
                for sid in study_ids}

    def trials(self, study: StudyMeta, trial_ids: Sequence[int] | None = None,
               states: Iterable[str] | None = None) -> list[TrialRecord]:
        wanted_ids = None if trial_ids is None else set(trial_ids)
        wanted_states = None if states is None else set(states)
        return [t for t in self._all(study.study_id)
                if (wanted_ids is None or t.trial_id in wanted_ids)
                and (wanted_states is None or t.state in wanted_states)]


@contextmanager
def open_catalog(storage: str | StorageSpec | None) -> Iterator[Catalog]:
    """The catalog of ``storage`` (a URL, ``None`` for the default, or a parsed spec)."""
    spec = storage if isinstance(storage, StorageSpec) else parse_storage(storage)
    if spec.is_rdb:
        from studies.sqlcatalog import SqlCatalog

        catalog: Catalog = SqlCatalog(spec)
    else:
        catalog = OptunaCatalog(spec)
    try:
        yield catalog
    finally:
        catalog.close()


# ---- what the commands show --------------------------------------------------------------------


@dataclass(frozen=True)
class StudySummary:
    """One row of ``explore study list``."""

    name: str
    dataset: str | None
    states: dict[str, int]
    front_size: int
    best_accuracy: float | None
    best_throughput: float | None
    created: dt.datetime | None  # the first trial's start (Optuna keeps no creation time)
    last_activity: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": self.dataset,
            "trials": sum(self.states.values()),
            **{s.lower(): self.states.get(s, 0) for s in STATES},
            "front_size": self.front_size, "best_accuracy": self.best_accuracy,
            "best_throughput": self.best_throughput, "created": iso(self.created),
            "last_activity": iso(self.last_activity),
        }


def _best(meta: StudyMeta, values: list[tuple[float, ...]], metric: str) -> float | None:
    names = meta.objective_names
    if metric not in names or not values:
        return None
    i = names.index(metric)
    pick = max if meta.directions[i] == "maximize" else min
    return pick(v[i] for v in values)


def list_studies(storage: str | None) -> list[StudySummary]:
    """Every study in ``storage``, by name: trials by state, front size, best values."""
    with open_catalog(storage) as catalog:
        metas = catalog.studies()
        stats = catalog.stats()
        values = catalog.complete_values([m.study_id for m in metas])
        constrained = catalog.constrained()
        fronts = {m.study_id: len(catalog.optuna_front(m)) for m in metas
                  if m.study_id in constrained}
    out = []
    for meta in metas:
        points = [(number, v) for _, number, v in values.get(meta.study_id, [])
                  if len(v) == len(meta.directions)]
        st = stats.get(meta.study_id, TrialStats({}, None, None))
        front_size = fronts.get(meta.study_id)
        if front_size is None:
            front_size = len(front_numbers(points, meta.directions))
        out.append(StudySummary(
            name=meta.name, dataset=meta.settings.get("data", {}).get("dataset"),
            states=st.states, front_size=front_size,
            best_accuracy=_best(meta, [v for _, v in points], "accuracy"),
            best_throughput=_best(meta, [v for _, v in points], "throughput"),
            created=st.first_start, last_activity=st.last_activity))
    return sorted(out, key=lambda s: s.name)


@dataclass(frozen=True)
class Front:
    """A study's Pareto-optimal trials (exactly ``study.best_trials``), and with
    ``include_dominated`` every other COMPLETE trial."""

    study: StudyMeta
    trials: list[TrialRecord]  # by number
    pareto: set[int]  # numbers of the Pareto-optimal trials

    @property
    def front(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.number in self.pareto]

    def to_json(self, with_flag: bool) -> list[dict[str, Any]]:
        names = self.study.objective_names
        return [trial_json(t, names, (t.number in self.pareto) if with_flag else None)
                for t in self.trials]


def read_front(catalog: Catalog, meta: StudyMeta, include_dominated: bool = False) -> Front:
    """The front of ``meta`` read through an open catalog (see :func:`pareto_front`)."""
    complete = catalog.complete_values([meta.study_id])[meta.study_id]
    points = [(number, v) for _, number, v in complete if len(v) == len(meta.directions)]
    if meta.study_id in catalog.constrained():
        on_front = catalog.optuna_front(meta)
    else:
        on_front = set(front_numbers(points, meta.directions))
    ids = [tid for tid, number, _ in complete if include_dominated or number in on_front]
    return Front(meta, catalog.trials(meta, trial_ids=ids), on_front)


def pareto_front(storage: str | StorageSpec | None, name: str,
                 include_dominated: bool = False) -> Front:
    """The Pareto-optimal trials of study ``name`` (``include_dominated``: all COMPLETE)."""
    with open_catalog(storage) as catalog:
        meta = catalog.study(name)
        return read_front(catalog, meta, include_dominated)


@dataclass(frozen=True)
class ConfiguredStudy:
    """A study's configurations and their noise-aware front (``study pareto``)."""

    study: StudyMeta
    front: ConfiguredFront


def read_configured(catalog: Catalog, meta: StudyMeta) -> ConfiguredFront:
    """The noise-aware front over the COMPLETE trials of ``meta`` (an explore study: two
    objectives, accuracy then throughput, both maximized), at the study's stored confidence."""
    if not meta.is_explore:
        raise ExploreError(
            f"study {meta.name!r} was not made by explore (objectives "
            f"{', '.join(meta.objective_names) or 'none'}): it has no configurations to "
            "estimate; `explore study pareto --observed` shows its observed front")
    return study_front(catalog.trials(meta, states=("COMPLETE",)), meta.settings)


def configured_study(storage: str | StorageSpec | None, name: str) -> ConfiguredStudy:
    """Study ``name``'s configurations with intervals and P(Pareto-optimal)."""
    with open_catalog(storage) as catalog:
        meta = catalog.study(name)
        return ConfiguredStudy(meta, read_configured(catalog, meta))


@dataclass(frozen=True)
class StudyDetail:
    """``explore study show``: settings, counts by state, the front, failures with reasons."""

    study: StudyMeta
    where: str
    stats: TrialStats
    front: list[TrialRecord]  # Optuna's observed front (study.best_trials)
    problems: list[TrialRecord]  # FAIL and PRUNED trials (reasons in user attrs)
    configured: ConfiguredFront | None = None  # the noise-aware front (explore studies)

    def to_dict(self) -> dict[str, Any]:
        names = self.study.objective_names
        return {
            "name": self.study.name,
            "storage": self.where,
            "directions": list(self.study.directions),
            "metric_names": names,
            "user_attrs": self.study.user_attrs,
            "states": self.stats.states,
            "created": iso(self.stats.first_start),
            "last_activity": iso(self.stats.last_activity),
            "front": [trial_json(t, names) for t in self.front],
            **({} if self.configured is None else {"noise_aware_front":
                                                   self.configured.to_dict()}),
            "failures": [{"number": t.number, "state": t.state, "reason": problem_reason(t)}
                         for t in self.problems],
        }


def show_study(storage: str | None, name: str) -> StudyDetail:
    """Everything ``explore study show`` prints about study ``name``."""
    with open_catalog(storage) as catalog:
        meta = catalog.study(name)
        front = read_front(catalog, meta, include_dominated=False).trials
        problems = catalog.trials(meta, states=("FAIL", "PRUNED"))
        stats = catalog.stats().get(meta.study_id, TrialStats({}, None, None))
        configured = read_configured(catalog, meta) if meta.is_explore else None
        return StudyDetail(meta, catalog.spec.display, stats, front, problems, configured)
