"""``explore study compare``: several studies' fronts against one common reference.

Hypervolumes are only comparable against the same reference point and the same scales. Accuracy
is already on [0, 1]; throughput is not, and one study's images/s can be orders of magnitude
above another's. So every front is measured in (accuracy, throughput / T) with T the highest
throughput of any COMPLETE trial in the compared studies, against the reference point (0, 0):
every hypervolume lies in [0, 1], and 1 would be a model with accuracy 1 at the fastest speed
seen. The numbers depend on the set compared (T does): compare them within one table only. The
snapshot hypervolumes of ``explore study history`` use raw images/s and are per study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.catalog import Front, open_catalog, read_front
from studies.errors import UsageError
from studies.pareto import hypervolume_2d

__all__ = ["CompareRow", "Comparison", "compare_studies"]

REFERENCE = (0.0, 0.0)  # (accuracy, normalized throughput)


@dataclass(frozen=True)
class CompareRow:
    name: str
    dataset: str | None
    finished: int  # COMPLETE + PRUNED
    front_size: int
    hypervolume: float  # in (accuracy, throughput / scale) against REFERENCE
    best_accuracy: float | None
    best_throughput: float | None


@dataclass(frozen=True)
class Comparison:
    rows: list[CompareRow]
    throughput_scale: float  # T: the highest throughput among the compared studies
    fronts: list[Front] = field(repr=False)
    notes: list[str] = field(default_factory=list)  # e.g. different datasets
    plot: Path | None = None

    def to_records(self) -> list[dict[str, Any]]:
        return [{"study": r.name, "dataset": r.dataset, "finished": r.finished,
                 "front_size": r.front_size, "hypervolume": r.hypervolume,
                 "reference": list(REFERENCE), "throughput_scale": self.throughput_scale,
                 "best_accuracy": r.best_accuracy, "best_throughput": r.best_throughput}
                for r in self.rows]


def _where(settings: dict[str, Any], section: str, key: str) -> Any:
    return (settings.get(section) or {}).get(key)


def compare_studies(storage: str | None, names: Sequence[str], out: Path | None = None
                    ) -> Comparison:
    """Hypervolume (common reference), front size and best values of each named study; with
    ``out`` also the overlaid fronts (PNG or HTML)."""
    if len(names) < 2:
        raise UsageError("compare needs at least two study names")
    if len(set(names)) != len(names):
        raise UsageError("each study may be named once")
    if out is not None:
        from studies.plots import check_out

        check_out(out, (".png", ".html"))
    fronts: list[Front] = []
    finished: dict[str, int] = {}
    with open_catalog(storage) as catalog:
        metas = [catalog.study(n) for n in names]
        stats = catalog.stats()
        for meta in metas:
            if not meta.is_explore:
                raise UsageError(f"study {meta.name!r} does not maximize accuracy and "
                                 "throughput: only explore studies can be compared")
            fronts.append(read_front(catalog, meta, include_dominated=True))
            states = stats[meta.study_id].states if meta.study_id in stats else {}
            finished[meta.name] = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
    throughputs = [t.values[1] for f in fronts for t in f.trials if t.values]
    scale = max(throughputs, default=0.0) or 1.0
    rows = []
    for f in fronts:
        front = [t.values for t in f.front if t.values]
        rows.append(CompareRow(
            name=f.study.name, dataset=_where(f.study.settings, "data", "dataset"),
            finished=finished[f.study.name], front_size=len(f.pareto),
            hypervolume=hypervolume_2d([(v[0], v[1] / scale) for v in front], REFERENCE),
            best_accuracy=max((v[0] for v in front), default=None),
            best_throughput=max((v[1] for v in front), default=None)))
    notes = _notes(fronts)
    plot = None
    if out is not None:
        from studies.plots import compare_plot

        plot = compare_plot(fronts, out)
    return Comparison(rows, scale, fronts, notes, plot)


def _notes(fronts: Sequence[Front]) -> list[str]:
    """Warnings that make a comparison questionable (different data or devices)."""
    notes = []
    datasets = {_where(f.study.settings, "data", "dataset") for f in fronts}
    if len(datasets) > 1:
        notes.append("the studies use different datasets ("
                     + ", ".join(sorted(str(d) for d in datasets)) + "): accuracies differ in "
                     "meaning")
    devices = {str(t.user_attrs.get("device_name", t.user_attrs.get("device")))
               for f in fronts for t in f.front}
    if len(devices - {"None"}) > 1:
        notes.append("front trials were measured on different devices ("
                     + ", ".join(sorted(devices - {"None"})) + "): throughputs differ in meaning")
    timings = {bool((t.user_attrs.get("throughput") or {}).get("graph"))
               for f in fronts for t in f.front}
    if len(timings) > 1:
        notes.append("front trials were timed both as CUDA graph replays and as eager forwards "
                     "([measure] cuda_graph): throughputs differ in meaning")
    for f in fronts:
        if not f.pareto:
            notes.append(f"study {f.study.name!r} has no COMPLETE trials yet")
    return notes
