"""``explore study compare``: several studies' fronts against one common reference.

Two hypervolumes, each named wherever it is shown, both against the reference point (0, 0):

- ``hypervolume_img_s``: of Optuna's observed front (single trials) in accuracy × img/s, the
  number ``explore study history`` and the report print for the same front;
  ``plausible_hypervolume_img_s``: of the plausible front over configurations (their mean
  accuracy and geometric-mean throughput), with its interval, as ``explore study pareto`` prints.
- ``hypervolume`` (kept for scripts): the observed one in (accuracy, throughput / T), T the
  highest throughput of any COMPLETE trial in the compared studies, so that it lies in [0, 1].
  It is the img/s figure divided by T: the same ranking, and it depends on the set compared.

Accuracy is on [0, 1] in every study; one study's images/s can be orders of magnitude above
another's, and both only mean the same where the studies used the same data, training, device
and timing: the notes say where they differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.catalog import Front, open_catalog, read_front
from studies.errors import UsageError
from studies.outfile import check_out
from studies.pareto import hypervolume_2d
from studies.replicates import ConfiguredFront, study_front

__all__ = ["HYPERVOLUME_UNIT", "CompareRow", "Comparison", "compare_studies"]

REFERENCE = (0.0, 0.0)  # (accuracy, throughput): the same for both hypervolumes
HYPERVOLUME_UNIT = "accuracy × img/s"
# Settings that change what accuracy or throughput mean, by section of the stored settings.
COMPARED_SETTINGS = ("data", "model", "train", "measure")
SHOWN_DIFFERENCES = 4  # settings named in a note at most


@dataclass(frozen=True)
class CompareRow:
    name: str
    dataset: str | None
    finished: int  # COMPLETE + PRUNED
    front_size: int  # Optuna's observed front (trials)
    hypervolume: float  # observed front in (accuracy, throughput / scale) against REFERENCE
    best_accuracy: float | None
    best_throughput: float | None
    hypervolume_img_s: float = 0.0  # observed front in accuracy × img/s (as history, report)
    plausible_hypervolume_img_s: float = 0.0  # plausible front of configuration means
    plausible_interval: tuple[float | None, float | None] = (None, None)  # its interval
    configurations: int = 0
    plausible_size: int = 0
    noise_known: bool = False  # False: one run per configuration, no interval


@dataclass(frozen=True)
class Comparison:
    rows: list[CompareRow]
    throughput_scale: float  # T: the highest throughput among the compared studies
    fronts: list[Front] = field(repr=False)
    notes: list[str] = field(default_factory=list)  # e.g. different datasets, epochs, spaces
    plot: Path | None = None
    configured: list[ConfiguredFront] = field(default_factory=list, repr=False)

    def to_records(self) -> list[dict[str, Any]]:
        return [{"study": r.name, "dataset": r.dataset, "finished": r.finished,
                 "front_size": r.front_size, "hypervolume": r.hypervolume,
                 "hypervolume_meaning": "observed front, accuracy × (img/s / throughput_scale)",
                 "hypervolume_img_s": r.hypervolume_img_s,
                 "plausible_hypervolume_img_s": r.plausible_hypervolume_img_s,
                 "plausible_hypervolume_interval": list(r.plausible_interval),
                 "hypervolume_unit": HYPERVOLUME_UNIT,
                 "configurations": r.configurations, "plausible_size": r.plausible_size,
                 "noise_known": r.noise_known,
                 "reference": list(REFERENCE), "throughput_scale": self.throughput_scale,
                 "best_accuracy": r.best_accuracy, "best_throughput": r.best_throughput}
                for r in self.rows]


def _where(settings: dict[str, Any], section: str, key: str) -> Any:
    return (settings.get(section) or {}).get(key)


def _row(f: Front, cf: ConfiguredFront, finished: int, scale: float) -> CompareRow:
    front = [t.values for t in f.front if t.values]
    noisy = cf.front
    return CompareRow(
        name=f.study.name, dataset=_where(f.study.settings, "data", "dataset"),
        finished=finished, front_size=len(f.pareto),
        hypervolume=hypervolume_2d([(v[0], v[1] / scale) for v in front], REFERENCE),
        best_accuracy=max((v[0] for v in front), default=None),
        best_throughput=max((v[1] for v in front), default=None),
        hypervolume_img_s=hypervolume_2d([(v[0], v[1]) for v in front], REFERENCE),
        plausible_hypervolume_img_s=noisy.hypervolume,
        plausible_interval=(noisy.hypervolume_low, noisy.hypervolume_high),
        configurations=len(cf.configs), plausible_size=len(noisy.plausible),
        noise_known=noisy.noise.known)


def compare_studies(storage: str | None, names: Sequence[str], out: Path | None = None
                    ) -> Comparison:
    """Both hypervolumes (common reference), front sizes and best values of each named study;
    with ``out`` also the overlaid fronts over configurations (PNG or HTML)."""
    if len(names) < 2:
        raise UsageError("compare needs at least two study names")
    if len(set(names)) != len(names):
        raise UsageError("each study may be named once")
    if out is not None:
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
    configured = [study_front([t for t in f.trials if _usable(t)], f.study.settings)
                  for f in fronts]
    throughputs = [t.values[1] for f in fronts for t in f.trials if t.values]
    scale = max(throughputs, default=0.0) or 1.0
    rows = [_row(f, cf, finished[f.study.name], scale)
            for f, cf in zip(fronts, configured, strict=True)]
    plot = None
    if out is not None:
        from studies.plots import compare_plot

        plot = compare_plot(fronts, out, configured)
    return Comparison(rows, scale, fronts, _notes(fronts), plot, configured)


def _usable(t: Any) -> bool:
    """Counts for the front over configurations: finite values, a positive throughput."""
    return (t.values is not None and len(t.values) >= 2 and math.isfinite(t.values[0])
            and math.isfinite(t.values[1]) and t.values[1] > 0)


def _flat(settings: dict[str, Any], searched: set[str]) -> dict[str, Any]:
    """``section.key`` -> value over the sections that change what the objectives mean, but
    the fields some study searches (those are the spaces' difference)."""
    return {f"{section}.{key}": value for section in COMPARED_SETTINGS
            for key, value in (settings.get(section) or {}).items() if key not in searched}


def _differences(named: dict[str, dict[str, Any]]) -> list[str]:
    keys = sorted({k for values in named.values() for k in values})
    return [k for k in keys if len({repr(values.get(k)) for values in named.values()}) > 1]


def _described(named: dict[str, dict[str, Any]], differ: list[str], missing: str) -> str:
    shown = "; ".join(f"{k}: " + ", ".join(f"{n} {values.get(k, missing)}"
                                          for n, values in named.items())
                      for k in differ[:SHOWN_DIFFERENCES])
    more = len(differ) - SHOWN_DIFFERENCES
    return shown + (f"; and {more} more" if more > 0 else "")


def _setting_notes(fronts: Sequence[Front]) -> list[str]:
    """Different training, model, data or measurement settings, and different spaces."""
    unknown = [f.study.name for f in fronts if not f.study.settings]
    notes = [f"study {n!r} has no stored explore settings: its training and measurement "
             "cannot be checked against the others'" for n in unknown]
    known = [f for f in fronts if f.study.settings]
    spaces: dict[str, dict[str, Any]] = {}
    for f in known:
        space = f.study.settings.get("space")
        spaces[f.study.name] = space if isinstance(space, dict) else {}
    searched = {k for space in spaces.values() for k in space}
    flats = {f.study.name: _flat(f.study.settings, searched | {"dataset"}) for f in known}
    differ = _differences(flats)
    if differ:
        notes.append(f"the studies differ in {len(differ)} setting(s) "
                     f"({_described(flats, differ, '-')}): their accuracies and throughputs "
                     "need not mean the same")
    differ = _differences(spaces)
    if differ:
        notes.append(f"the studies search different spaces "
                     f"({_described(spaces, differ, 'fixed')}): "
                     "a front can only hold the designs its study could choose")
    return notes


def _notes(fronts: Sequence[Front]) -> list[str]:
    """Warnings that make a comparison questionable (different data, settings or devices)."""
    notes = []
    datasets = {_where(f.study.settings, "data", "dataset") for f in fronts}
    if len(datasets) > 1:
        notes.append("the studies use different datasets ("
                     + ", ".join(sorted(str(d) for d in datasets)) + "): accuracies differ in "
                     "meaning")
    notes += _setting_notes(fronts)
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
