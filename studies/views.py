"""How browsing results are printed: Rich tables for people, JSON or CSV for scripts (stdout)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from studies.record import ATTR_SETTINGS, ATTR_WARM
from studies.render import front_table

if TYPE_CHECKING:
    from studies.catalog import Front, StudyDetail, StudySummary
    from studies.compare import Comparison
    from studies.history import History
    from studies.record import TrialRecord

__all__ = ["FORMATS", "print_compare", "print_front", "print_history", "print_list",
           "print_show", "show_table"]

FORMATS = ("table", "json", "csv")


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _csv(records: Sequence[dict[str, Any]]) -> None:
    from studies.export import csv_text

    sys.stdout.write(csv_text(records))


def show_table(table: Table, console: Console) -> None:
    """Print ``table``; into a pipe or file at its natural width instead of squeezed to 80
    columns (a terminal keeps its own width)."""
    if console.is_terminal:
        console.print(table)
        return
    before = console.width
    console.width = 10_000  # a table (expand=False) takes only its natural width of that
    try:
        console.print(table)
    finally:
        console.width = before


def _emit(records: list[dict[str, Any]], fmt: str, table: Callable[[], Table],
          console: Console) -> None:
    if fmt == "json":
        _json(records)
    elif fmt == "csv":
        _csv(records)
    else:
        show_table(table(), console)


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_list(rows: list[StudySummary], fmt: str, console: Console) -> None:
    """``explore study list``."""

    def table() -> Table:
        t = Table(title="Studies")
        for col in ("study", "dataset", "trials", "complete", "pruned", "fail", "running",
                    "front", "best accuracy", "best img/s", "created", "last activity"):
            t.add_column(col, justify="left" if col in ("study", "dataset") else "right")
        for r in rows:
            s = r.states
            t.add_row(r.name, r.dataset or "-", str(sum(s.values())), str(s.get("COMPLETE", 0)),
                      str(s.get("PRUNED", 0)), str(s.get("FAIL", 0)),
                      str(s.get("RUNNING", 0) + s.get("WAITING", 0)), str(r.front_size),
                      _num(r.best_accuracy, ".4f"), _num(r.best_throughput, ",.0f"),
                      _when(r.created), _when(r.last_activity))
        return t

    _emit([r.to_dict() for r in rows], fmt, table, console)


SHOWN_FIELDS = ("attention", "mem_size", "heads", "norm")  # front_table's design columns


def _row(t: TrialRecord) -> dict[str, Any]:
    """A front_table row; design fields a study fixed (not searched) come from the stored model
    config, so that every row shows its attention, S, heads and norm."""
    stored = t.user_attrs.get("model_config")
    fixed = {k: stored[k] for k in SHOWN_FIELDS if isinstance(stored, dict) and k in stored}
    return {"number": t.number, "params": {**fixed, **t.params},
            "values": list(t.values or (0.0, 0.0)), "user_attrs": t.user_attrs}


def print_front(front: Front, fmt: str, console: Console, with_flag: bool) -> None:
    """``explore study pareto``: the front (``with_flag``: all COMPLETE, marked)."""
    name = front.study.name

    def table() -> Table:
        title = f"{'Trials' if with_flag else 'Pareto front'} of {name}"
        if not front.study.is_explore:
            return _generic_table(front.trials, front.study.objective_names, title,
                                  front.pareto if with_flag else None)
        return front_table([_row(t) for t in front.trials], title=title,
                           pareto=front.pareto if with_flag else None)

    _emit(front.to_json(with_flag), fmt, table, console)


def _generic_table(trials: Sequence[TrialRecord], names: Sequence[str], title: str,
                   pareto: set[int] | None) -> Table:
    """For studies explore did not create: number, params, values."""
    keys = sorted({k for t in trials for k in t.params})
    t = Table(title=title)
    for col in ("trial", *keys, *names, *(["pareto"] if pareto is not None else [])):
        t.add_column(col, justify="right")
    for tr in trials:
        cells = [str(tr.number), *[str(tr.params.get(k, "-")) for k in keys],
                 *[f"{v:.6g}" for v in (tr.values or ())]]
        if pareto is not None:
            cells.append("*" if tr.number in pareto else "")
        t.add_row(*cells)
    return t


def print_show(detail: StudyDetail, fmt: str, console: Console) -> None:
    """``explore study show``: settings, counts, the front, failures."""
    if fmt == "json":
        _json(detail.to_dict())
        return
    meta = detail.study
    console.print(f"[bold]{meta.name}[/] in {detail.where}")
    settings = meta.settings
    if settings:
        t = Table(title="Stored settings", show_header=True)
        t.add_column("setting")
        t.add_column("value")
        for section, values in settings.items():
            for key, value in (values or {}).items():
                text = value if isinstance(value, str) else json.dumps(value)
                t.add_row(f"{section}.{key}", text)
        show_table(t, console)
    else:
        console.print("no explore settings stored (not created by explore study run)")
    others = {k: v for k, v in meta.user_attrs.items()
              if k not in (ATTR_SETTINGS, ATTR_WARM)}
    if others:
        console.print("user attrs: " + ", ".join(f"{k}={v}" for k, v in sorted(others.items())))
    warm = meta.user_attrs.get(ATTR_WARM)
    if isinstance(warm, dict):
        console.print(_warm_line(warm))
    states = detail.stats.states
    counts = ", ".join(f"{s.lower()} {n}" for s, n in sorted(states.items())) or "none yet"
    objectives = zip(meta.objective_names, meta.directions, strict=True)
    console.print("objectives: " + ", ".join(f"{n} ({d})" for n, d in objectives))
    console.print(f"trials: {sum(states.values())} ({counts}); "
                  f"first started {_when(detail.stats.first_start)}, "
                  f"last activity {_when(detail.stats.last_activity)}")
    if meta.is_explore:
        show_table(front_table([_row(t) for t in detail.front], title="Pareto front"), console)
    else:
        show_table(_generic_table(detail.front, meta.objective_names, "Pareto front", None),
                   console)
    if detail.problems:
        from studies.record import problem_reason

        t = Table(title="Failed and pruned trials")
        t.add_column("trial", justify="right")
        t.add_column("state")
        t.add_column("reason", overflow="fold")
        for tr in detail.problems:
            t.add_row(str(tr.number), tr.state, problem_reason(tr))
        show_table(t, console)




def _warm_line(warm: dict[str, Any]) -> str:
    by = warm.get("by")
    by = by if isinstance(by, dict) else {}
    if warm.get("state") == "probing":
        return (f"warm start: being probed by worker {by.get('host')}:{by.get('pid')} (if it "
                "died, the next run probes)")
    if warm.get("state") != "done":
        return "warm start: not done yet (the next run probes first)"
    probes = warm.get("probes") or []
    rates = [p["img_s"] for p in probes]
    span = (f" (the fastest {len(rates)}: {max(rates):,} down to {min(rates):,} img/s)"
            if rates else "")
    anchors = "; ".join(" ".join(f"{k}={v}" for k, v in a["params"].items())
                        for a in warm.get("anchors", []))
    return (f"warm start: probed {warm.get('probed', 0)} configurations in "
            f"{warm.get('seconds', 0)} s{span}; trained first: {anchors or 'none'}")


def print_history(history: History, fmt: str, console: Console) -> None:
    """``explore study history``: the recorded snapshots of the front."""

    def table() -> Table:
        t = Table(title=f"Pareto-front history of {history.study} "
                        f"(hypervolume against accuracy 0, 0 img/s)")
        for col in ("snapshot", "finished trials", "time (UTC)", "hypervolume", "front size",
                    "members"):
            t.add_column(col, justify="left" if col in ("time (UTC)", "members") else "right")
        for s in history.snapshots:
            t.add_row(str(s.number), str(s.n_finished), s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                      f"{s.hypervolume:,.1f}", str(s.front_size),
                      " ".join(str(m[0]) for m in s.members))
        return t

    _emit(history.to_records(), fmt, table, console)


def print_compare(result: Comparison, fmt: str, console: Console) -> None:
    """``explore study compare``: hypervolume with a common reference, front sizes, bests."""

    def table() -> Table:
        t = Table(title="Comparison (hypervolume of accuracy × throughput/"
                        f"{result.throughput_scale:,.0f} img/s, reference 0, 0)")
        for col in ("study", "dataset", "finished", "front size", "hypervolume",
                    "best accuracy", "best img/s"):
            t.add_column(col, justify="left" if col in ("study", "dataset") else "right")
        for r in result.rows:
            t.add_row(r.name, r.dataset or "-", str(r.finished), str(r.front_size),
                      f"{r.hypervolume:.4f}", _num(r.best_accuracy, ".4f"),
                      _num(r.best_throughput, ",.0f"))
        return t

    _emit(result.to_records(), fmt, table, console)
