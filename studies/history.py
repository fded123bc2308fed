"""``explore study history``: the Pareto-front snapshots the runner recorded, and their plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.catalog import open_catalog
from studies.storage import StorageSpec, parse_storage

if TYPE_CHECKING:
    from studies.snapshots import Snapshot

__all__ = ["History", "read_snapshots", "study_history"]


@dataclass(frozen=True)
class History:
    study: str
    snapshots: list[Snapshot]
    plot: Path | None = None

    def to_records(self) -> list[dict[str, Any]]:
        return [{"snapshot": s.number, "n_finished": s.n_finished,
                 "time": s.created_at.isoformat(), "hypervolume": s.hypervolume,
                 "reference": list(s.reference), "front_size": s.front_size,
                 "members": [{"number": n, "accuracy": a, "throughput": t}
                             for n, a, t in s.members]}
                for s in self.snapshots]


def read_snapshots(spec: StorageSpec, name: str) -> list[Snapshot]:
    """The study's snapshots, oldest first (the study must exist)."""
    from studies.storage import open_storage, snapshot_store

    store = snapshot_store(spec, open_storage(spec, create=False))
    try:
        return store.history(name)
    finally:
        store.engine.dispose()


def study_history(storage: str | None, name: str, plot: Path | None = None) -> History:
    """The snapshots of study ``name``; with ``plot`` also draw hypervolume against finished
    trials and time into that PNG file."""
    spec = parse_storage(storage)
    if plot is not None:
        from studies.plots import check_out

        check_out(plot, (".png",))
    with open_catalog(spec) as catalog:
        catalog.study(name)  # a clear error before anything else is opened
    history = History(name, read_snapshots(spec, name))
    if plot is not None:
        from studies.plots import history_png

        history_png(history, plot)
        history = History(name, history.snapshots, plot)
    return history
