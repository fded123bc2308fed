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

from studies.record import ATTR_SETTINGS, ATTR_WARM, design

if TYPE_CHECKING:
    from studies.catalog import ConfiguredStudy, Front, StudyDetail, StudySummary
    from studies.compare import Comparison
    from studies.confirm import Confirmation
    from studies.history import History
    from studies.record import TrialRecord
    from studies.replicates import ConfiguredFront

__all__ = ["FORMATS", "confident_table", "front_table", "honest_line", "print_bench",
           "print_compare", "print_configured", "print_confirm", "print_exported",
           "print_front", "print_history", "print_list", "print_models", "print_run_summary",
           "print_show", "print_trained", "show_table", "status_of", "write_json"]

FORMATS = ("table", "json", "csv")


def write_json(data: Any) -> None:
    """The one JSON writer of every ``-f json``: indented, anything else as its ``str``."""
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


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def front_table(rows: Sequence[dict[str, Any]], title: str = "Pareto front",
                pareto: set[int] | None = None) -> Table:
    """Trials sorted by throughput: trial, attention, S, heads, norm, other params, values.

    Args:
        rows: ``{"number", "params", "values": [accuracy, throughput], "user_attrs"}``.
        title: Table title.
        pareto: When given, add a ``pareto`` column marking these trial numbers.
    """
    others = sorted({k for r in rows for k in r["params"]} - {"attention", "mem_size", "heads",
                                                               "norm"})
    table = Table(title=title)
    columns = ["trial", "attention", "S", "heads", "norm", *others, "accuracy", "img/s", "params"]
    if pareto is not None:
        columns.append("pareto")
    for col in columns:
        table.add_column(col, justify="left" if col in ("attention", "norm") else "right")
    for r in sorted(rows, key=lambda r: r["values"][1]):
        p = r["params"]
        attention = p.get("attention", r.get("user_attrs", {}).get("model_config", {})
                          .get("attention", "external"))
        ea = attention == "external"
        cells = [str(r["number"]), attention,
                 str(p.get("mem_size", "-")) if ea else "-",
                 str(p.get("heads", "-")),
                 str(p.get("norm", "-")) if ea else "-",
                 *[f"{p[k]:.4g}" if isinstance(p.get(k), float) else str(p.get(k, "-"))
                   for k in others],
                 f"{r['values'][0]:.4f}", f"{r['values'][1]:,.0f}",
                 _fmt_int(r.get("user_attrs", {}).get("params_count"))]
        if pareto is not None:
            cells.append("*" if r["number"] in pareto else "")
        table.add_row(*cells)
    return table


def _interval(mean: float, low: float | None, high: float | None, spec: str) -> str:
    if low is None or high is None:
        return f"{format(mean, spec)} (±?)"
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def status_of(front: ConfiguredFront, key: str) -> str:
    """plausible (P(front) >= 0.5), dominated (confidently), or undecided."""
    return front.status(key)


def confident_table(front: ConfiguredFront, keys: Sequence[str], title: str) -> Table:
    """Configurations by mean throughput: design, other params, runs, accuracy and img/s with
    their 95% intervals, P(Pareto-optimal) and status."""
    configs = front.ordered(keys)
    others = sorted({k for c in configs for k in c.params}
                    - {"attention", "mem_size", "heads", "norm"})
    table = Table(title=title)
    level = f"{front.front.noise.confidence:.0%}"
    for col in ("design", *others, "runs", "trials", f"accuracy % [{level}]",
                f"img/s [{level}]", "P(front)", "status"):
        table.add_column(col, justify="left" if col in ("design", "status", "trials")
                         else "right")
    for c in configs:
        e = front.estimate(c.key)
        trials = ",".join(str(n) for n in e.trials)
        table.add_row(
            design(c.model_config),
            *[f"{c.params[k]:.4g}" if isinstance(c.params.get(k), float)
              else str(c.params.get(k, "-")) for k in others],
            str(e.n), trials if len(trials) <= 16 else trials[:15] + "…",
            _interval(100 * e.accuracy.mean, _pct(e.accuracy.low), _pct(e.accuracy.high), ".2f"),
            _interval(e.throughput.mean, e.throughput.low, e.throughput.high, ",.0f"),
            f"{front.front.probability[c.key]:.2f}", status_of(front, c.key))
    return table


def front_title(front: ConfiguredFront, prefix: str, detail: str = "") -> str:
    """The front table's title: the plausible configurations, or, when none has P(front) >= 0.5,
    the most probable (what the table then holds)."""
    from studies.noisyfront import PLAUSIBLE  # loaded already: the front was computed with it

    extra = f", {detail}" if detail else ""
    probability = front.front.probability
    if probability and max(probability.values()) < PLAUSIBLE:
        return (f"{prefix}: no configuration has P(front) >= {PLAUSIBLE:g}; the most probable"
                + (f" ({detail})" if detail else ""))
    return f"{prefix}: the plausible configurations (P(front) >= {PLAUSIBLE:g}{extra})"


def honest_line(front: ConfiguredFront) -> str:
    """One line on what the study can and cannot tell apart."""
    noisy = front.front
    n = len(front.configs)
    if not n:
        return "no completed configuration yet"
    if not noisy.noise.known:
        return (f"{n} configuration(s), one run each: the seed noise is unknown, so no "
                "interval can be given and the front above is the observed one (not yet "
                "distinguishable from noise)")
    sd = noisy.noise.accuracy_sd or 0.0
    spread = math.expm1(noisy.noise.log_throughput_sd or 0.0)
    from studies.noisyfront import PLAUSIBLE  # loaded already: the front was computed with it

    best = max(noisy.probability.values())
    if best < PLAUSIBLE:
        told = (f"no configuration is yet more likely on the front than not (the highest "
                f"P(front) is {best:.2f}); the most probable shown above are a guess")
    elif len(noisy.plausible) == 1:
        told = "one configuration is plausibly on the front"
    elif _tied(front):
        told = (f"the {len(noisy.plausible)} plausible configurations cannot be told apart in "
                "accuracy (their intervals overlap)")
    else:
        told = f"the {len(noisy.plausible)} plausible configurations differ beyond the noise"
    ties = (f"; accuracies within {100 * noisy.tolerance:g} points count as ties, won by the "
            "faster design" if noisy.tolerance else "")
    return (f"{n} configurations, {front.replicates} runs; seed noise ±{100 * sd:.1f} accuracy "
            f"points and ±{100 * spread:.0f}% img/s per run (pooled, df {noisy.noise.df}); "
            f"{len(noisy.dominated)} confidently dominated, "
            f"{n - len(noisy.dominated) - len(noisy.plausible)} undecided; {told}{ties}")


def _tied(front: ConfiguredFront) -> bool:
    ests = [front.estimate(k) for k in front.front.plausible]
    for i, a in enumerate(ests):
        for b in ests[i + 1:]:
            if None in (a.accuracy.low, b.accuracy.low, a.accuracy.high, b.accuracy.high):
                return True
            assert a.accuracy.low is not None and b.accuracy.high is not None
            assert a.accuracy.high is not None and b.accuracy.low is not None
            if a.accuracy.low <= b.accuracy.high and b.accuracy.low <= a.accuracy.high:
                return True
    return False


def _emit(records: list[dict[str, Any]], fmt: str, table: Callable[[], Table],
          console: Console) -> None:
    if fmt == "json":
        write_json(records)
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
             front_title(front, f"Pareto front of {result.study.name}", f"{level} intervals"))
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
        write_json(detail.to_dict())
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
                                   title=front_title(front, "Pareto front",
                                                     f"{level} intervals")), console)
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
        write_json(result.to_dict())
        return
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


# ---- what ``study run`` / ``study worker`` and the ``model`` commands print ----

def print_run_summary(summary: Any, fmt: str, console: Console) -> None:
    """``explore study run``/``worker``: the plausible front with intervals, the honest line,
    the budget and where the study is (``summary``: explore's RunSummary, read by field)."""
    if fmt == "json":
        write_json(summary.to_dict())
        return
    front = summary.confident
    show_table(confident_table(front, sorted(front.front.plausible),
                               title=front_title(front, f"Pareto front of {summary.study_name}")),
               console)
    console.print(honest_line(front))
    console.print(f"{summary.finished}/{summary.target} trials finished "
                  f"({summary.new_trials} this run, {summary.elapsed:.1f} s; {summary.stopped})")
    if summary.noisy_trials:
        console.print(f"noisy throughput (spread > 10%) on front trials: {summary.noisy_trials}")
    if summary.reused_throughputs:
        console.print(f"trials whose throughput came from an earlier trial of the same "
                      f"architecture (\\[measure] reuse): {summary.reused_throughputs}")
    if summary.lock_wait_s >= 1.0:
        console.print(f"measurements waited {summary.lock_wait_s:.1f} s in all for other "
                      "explore processes' epochs on this machine (the machine lock)")
    console.print(f"database: {summary.where}")
    console.print(f"dashboard: explore study dashboard --storage {summary.storage_url}")


MODEL_FIELDS = ("attention", "dim", "depth", "heads", "mem_size", "norm", "expand",
                "patch_size", "image_size")


def print_models(presets: dict[str, dict[str, Any]], fmt: str, console: Console) -> None:
    """``explore model list``: the registered presets."""
    if fmt == "json":
        write_json(presets)
        return
    table = Table(title="extattn presets")
    for col in ("name", *MODEL_FIELDS):
        table.add_column(col)
    for name, cfg in presets.items():
        table.add_row(name, *[str(cfg[f]) for f in MODEL_FIELDS])
    console.print(table)


def print_bench(result: dict[str, Any], fmt: str, console: Console) -> None:
    """``explore model bench``: parameters, FLOPs and the throughput with its spread."""
    if fmt == "json":
        write_json(result)
        return
    t = result["throughput"]
    console.print(f"{result['params_count']:,} parameters, "
                  f"{result['flops_per_image']:,} FLOPs/image")
    console.print(f"throughput: {t['median']:,.0f} img/s (min {t['min']:,.0f}, "
                  f"max {t['max']:,.0f}, spread {t['spread']:.1%}, batch {t['batch']}, "
                  f"{t['threads']} threads, {t['device']}, {result['precision']}"
                  + (", CUDA graph replays" if t.get("graph") else "") + ")")
    if "compile_seconds" in result:
        console.print(f"compiled in {result['compile_seconds']:.1f} s (before the measurement)")


def print_trained(result: dict[str, Any], fmt: str, console: Console,
                  checkpoint: Any = None) -> None:
    """``explore model train``: accuracy, throughput and training time (and the checkpoint)."""
    if fmt == "json":
        write_json(result)
        return
    graphed = ", steps as CUDA graph replays" if "train_graph_seconds" in result else ""
    console.print(f"accuracy {result['accuracy']:.4f}, {result['throughput']:,.0f} img/s, "
                  f"trained in {result['train_seconds']:.1f}s{graphed} (seed {result['seed']})")
    if checkpoint is not None:
        console.print(f"checkpoint: {checkpoint}")


def print_exported(index: dict[str, Any], index_path: Any, fmt: str, console: Console) -> None:
    """``explore study models``: one line per exported checkpoint, then the index file."""
    if fmt == "json":
        write_json(index)
        return
    for entry in index["models"]:
        runs = (f"best of {entry['replicates']} run(s), " if "replicates" in entry else "")
        console.print(f"trial {entry['trial']}: {entry['file']} ({entry['source']}, "
                      f"{runs}accuracy {100 * entry['values']['accuracy']:.2f}%, "
                      f"{entry['values']['throughput']:,.0f} img/s)", highlight=False)
    console.print(f"index: {index_path}", highlight=False)
