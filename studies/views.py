"""How browsing results are printed: Rich tables for people, JSON or CSV for scripts (stdout)."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from studies.record import ATTR_SETTINGS, ATTR_WARM
from studies.render import confident_table, front_table, honest_line

if TYPE_CHECKING:
    from studies.catalog import ConfiguredStudy, Front, StudyDetail, StudySummary
    from studies.compare import Comparison
    from studies.confirm import Confirmation
    from studies.history import History
    from studies.record import TrialRecord

__all__ = ["FORMATS", "print_compare", "print_configured", "print_confirm", "print_front",
           "print_history", "print_list", "print_show", "show_table"]

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
        title = (f"Trials of {name} (pareto: Optuna's observed front, study.best_trials)"
                 if with_flag else
                 f"Observed Pareto front of {name} (Optuna's study.best_trials, single runs)")
        if not front.study.is_explore:
            return _generic_table(front.trials, front.study.objective_names, title,
                                  front.pareto if with_flag else None)
        return front_table([_row(t) for t in front.trials], title=title,
                           pareto=front.pareto if with_flag else None)

    _emit(front.to_json(with_flag), fmt, table, console)


def print_configured(result: ConfiguredStudy, fmt: str, console: Console,
                     every: bool) -> None:
    """``explore study pareto``: the plausible configurations (``every``: all of them, with
    their status) with intervals and P(Pareto-optimal), and one line on what is told apart."""
    front = result.front
    keys = [c.key for c in front.configs] if every else sorted(front.front.plausible)
    records = [front.row(c) for c in front.ordered(keys)]
    if fmt != "table":
        _emit(records, fmt, lambda: Table(), console)
        return
    level = f"{front.front.noise.confidence:.0%}"
    title = (f"Configurations of {result.study.name}" if every else
             f"Pareto front of {result.study.name}: the plausible configurations "
             f"(P(front) >= 0.5, {level} intervals)")
    show_table(confident_table(front, keys, title=title), console)
    console.print(honest_line(front))


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


def print_show(detail: StudyDetail, fmt: str, console: Console, settings: bool = False) -> None:
    """``explore study show``: counts, the front, failures; the settings with ``settings``."""
    if fmt == "json":
        _json(detail.to_dict())
        return
    meta = detail.study
    console.print(f"[bold]{meta.name}[/] in {detail.where}")
    states = detail.stats.states
    counts = ", ".join(f"{s.lower()} {n}" for s, n in sorted(states.items())) or "none yet"
    objectives = zip(meta.objective_names, meta.directions, strict=True)
    console.print("objectives: " + ", ".join(f"{n} ({d})" for n, d in objectives))
    console.print(f"trials: {sum(states.values())} ({counts}); "
                  f"first started {_when(detail.stats.first_start)}, "
                  f"last activity {_when(detail.stats.last_activity)}")
    warm = meta.user_attrs.get(ATTR_WARM)
    if isinstance(warm, dict):
        console.print(_warm_line(warm))
    if detail.configured is not None:
        front = detail.configured
        level = f"{front.front.noise.confidence:.0%}"
        show_table(confident_table(front, sorted(front.front.plausible),
                                   title=f"Pareto front: the plausible configurations "
                                         f"(P(front) >= 0.5, {level} intervals)"), console)
        console.print(honest_line(front))
        console.print(f"Optuna's observed front (study.best_trials, single runs): trials "
                      f"{', '.join(str(t.number) for t in detail.front) or 'none'}; "
                      "`explore study pareto --observed` shows it")
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
    others = {k: v for k, v in meta.user_attrs.items()
              if k not in (ATTR_SETTINGS, ATTR_WARM)}
    if others:
        console.print("user attrs: " + ", ".join(f"{k}={v}" for k, v in sorted(others.items())))
    if not meta.settings:
        console.print("no explore settings stored (not created by explore study run)")
    elif settings:
        t = Table(title="Stored settings", show_header=True)
        t.add_column("setting")
        t.add_column("value")
        for section, values in meta.settings.items():
            for key, value in (values or {}).items():
                text = value if isinstance(value, str) else json.dumps(value)
                t.add_row(f"{section}.{key}", text)
        show_table(t, console)
    else:
        console.print(f"settings: {sum(len(v or {}) for v in meta.settings.values())} stored "
                      "(`--settings` lists them)")


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
    """``explore study compare``: hypervolumes (both conventions, named), front sizes, bests."""

    def table() -> Table:
        t = Table(title=f"Comparison (hypervolume against accuracy 0, 0 img/s; normalised: "
                        f"throughput / {result.throughput_scale:,.0f} img/s)")
        for col in ("study", "dataset", "finished", "configurations", "observed front",
                    "hypervolume (normalised)", "hypervolume (acc × img/s)",
                    "plausible front", "plausible hypervolume [95%]", "best accuracy %",
                    "best img/s"):
            t.add_column(col, justify="left" if col in ("study", "dataset") else "right")
        for r in result.rows:
            low, high = r.plausible_interval
            span = (f" [{low:,.1f}, {high:,.1f}]" if r.noise_known and low is not None
                    and high is not None else " (±?)")
            t.add_row(r.name, r.dataset or "-", str(r.finished), str(r.configurations),
                      str(r.front_size), f"{r.hypervolume:.4f}", f"{r.hypervolume_img_s:,.1f}",
                      str(r.plausible_size), f"{r.plausible_hypervolume_img_s:,.1f}{span}",
                      _num(None if r.best_accuracy is None else 100 * r.best_accuracy, ".2f"),
                      _num(r.best_throughput, ",.0f"))
        return t

    _emit(result.to_records(), fmt, table, console)


def _span(low: float | None, high: float | None, spec: str, scale: float = 1.0) -> str:
    if low is None or high is None:
        return "[?]"
    return f"[{format(scale * low, spec)}, {format(scale * high, spec)}]"


def print_confirm(result: Confirmation, fmt: str, console: Console) -> None:
    """``explore study confirm``: the search's estimates against the fresh seeds'."""
    if fmt == "json":
        _json(result.to_dict())
        return
    from studies.render import design

    level = f"{result.confidence:.0%}"
    t = Table(title=f"{result.study}: the plausible front on {result.seeds} fresh seed(s) per "
                    f"configuration ({level} intervals; runs in study {result.companion})")
    for col in ("design", "search runs", "search accuracy %", "fresh runs", "fresh accuracy %",
                "optimism (points)", "search img/s", "fresh img/s", "search/fresh img/s"):
        t.add_column(col, justify="left" if col == "design" else "right")
    for r in result.rows:
        s_acc, f = r.search.accuracy, r.fresh
        cells = [design(r.model_config), str(r.search.n),
                 f"{100 * s_acc.mean:.2f} {_span(s_acc.low, s_acc.high, '.2f', 100)}"]
        if f is None or r.accuracy is None or r.throughput is None:
            cells += ["0", "-", "-", f"{r.search.throughput.mean:,.0f}", "-", "-"]
        else:
            a, th = r.accuracy, r.throughput
            cells += [str(f.n),
                      f"{100 * f.accuracy.mean:.2f} "
                      f"{_span(f.accuracy.low, f.accuracy.high, '.2f', 100)}",
                      f"{100 * a.difference:+.2f} {_span(a.low, a.high, '+.2f', 100)}",
                      f"{r.search.throughput.mean:,.0f}", f"{f.throughput.mean:,.0f}",
                      f"{math.exp(th.difference):.2f}x "
                      + ("[?]" if th.low is None or th.high is None
                         else f"[{math.exp(th.low):.2f}, {math.exp(th.high):.2f}]")]
        t.add_row(*cells)
    show_table(t, console)
    mean = result.mean_optimism
    if mean is None:
        console.print("no fresh run has finished yet")
        return
    outside = [r for r in result.rows if r.accuracy is not None and r.accuracy.low is not None
               and r.accuracy.high is not None and not r.accuracy.low <= 0 <= r.accuracy.high]
    side = "above" if mean >= 0 else "below"
    console.print(f"the search's accuracy estimates are {100 * abs(mean):.2f} points {side} the "
                  f"fresh seeds' on average (the winner's optimism); {len(outside)} of "
                  f"{len(result.rows)} configuration(s) differ beyond the noise")
