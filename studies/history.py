"""``explore study history``: the Pareto-front snapshots the runner recorded, and their plot."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.catalog import open_catalog
from studies.outfile import check_out
from studies.storage import StorageSpec, parse_storage

if TYPE_CHECKING:
    from studies.snapshots import ConfidentSnapshot, Snapshot

__all__ = ["History", "read_confident", "read_snapshots", "study_history"]


@dataclass(frozen=True)
class History:
    """A study's recorded fronts.

    Attributes:
        study: its name.
        snapshots: Optuna's observed front each time it changed, oldest first.
        plot: the PNG drawn, if any.
        finished: the study's COMPLETE + PRUNED trials now (None: not read); the plot's
            hypervolume holds from the last snapshot up to this count.
        last_activity: when the study last started or finished a trial (UTC, naive, as the
            snapshots' times).
        confident: the recorded fronts over configurations (plausible front's hypervolume with
            its interval), by finished count.
    """

    study: str
    snapshots: list[Snapshot]
    plot: Path | None = None
    finished: int | None = None
    last_activity: dt.datetime | None = None
    confident: tuple[ConfidentSnapshot, ...] = ()

    def to_records(self) -> list[dict[str, Any]]:
        return [{"snapshot": s.number, "n_finished": s.n_finished,
                 "time": s.created_at.isoformat(), "hypervolume": s.hypervolume,
                 "reference": list(s.reference), "front_size": s.front_size,
                 "members": [{"number": n, "accuracy": a, "throughput": t}
                             for n, a, t in s.members]}
                for s in self.snapshots]


def _read(spec: StorageSpec, name: str, confident: bool
          ) -> tuple[list[Snapshot], list[ConfidentSnapshot]]:
    from studies.storage import open_storage, snapshot_store

    store = snapshot_store(spec, open_storage(spec, create=False), create=False)
    try:
        return store.history(name), store.confident_history(name) if confident else []
    finally:
        store.engine.dispose()


def read_snapshots(spec: StorageSpec, name: str) -> list[Snapshot]:
    """The study's snapshots, oldest first (the study must exist)."""
    return _read(spec, name, False)[0]


def read_confident(spec: StorageSpec, name: str) -> list[ConfidentSnapshot]:
    """The study's recorded fronts over configurations, by finished count."""
    return _read(spec, name, True)[1]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A trial time (Optuna stores the worker's local time, naive) as naive UTC, the snapshots'
    convention; a naive time is read in this machine's time zone."""
    return None if value is None else value.astimezone(dt.UTC).replace(tzinfo=None)


def study_history(storage: str | None, name: str, plot: Path | None = None) -> History:
    """The snapshots of study ``name``; with ``plot`` also draw hypervolume against finished
    trials and time into that PNG file."""
    spec = parse_storage(storage)
    if plot is not None:
        check_out(plot, (".png",))
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)  # a clear error before anything else is opened
        stats = catalog.stats().get(meta.study_id)
    finished = (stats.states.get("COMPLETE", 0) + stats.states.get("PRUNED", 0)) if stats else 0
    snapshots, confident = _read(spec, name, plot is not None)
    history = History(name, snapshots, None, finished,
                      _utc(stats.last_activity) if stats else None, tuple(confident))
    if plot is not None:
        from studies.historyplot import history_png

        history_png(history, plot)
        history = History(name, history.snapshots, plot, history.finished,
                          history.last_activity, history.confident)
    return history
