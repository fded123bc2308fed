"""Progress while a search runs: a live Rich view on a terminal, plain lines otherwise.

Everything here goes to stderr; the run's summary (data) goes to stdout from the CLI.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import optuna
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from explore.engine.train import EpochResult
from studies.confirm import FRESH_REPLICATE
from studies.record import (
    ATTR_FAIL,
    ATTR_INTERRUPTED,
    ATTR_MODEL_CONFIG,
    ATTR_PRUNE,
    ATTR_REPLICATE,
)

__all__ = ["PlainReporter", "Reporter", "RichReporter", "describe_params", "make_reporter"]


def describe_params(params: dict[str, Any]) -> str:
    """``EA S=32 h=4 double`` / ``SA h=4`` plus any other searched fields."""
    kind = "SA" if params.get("attention") == "self" else "EA"
    parts = [kind]
    if kind == "EA" and "mem_size" in params:
        parts.append(f"S={params['mem_size']}")
    if "heads" in params:
        parts.append(f"h={params['heads']}")
    if kind == "EA" and "norm" in params:
        parts.append(str(params["norm"]))
    for k, v in params.items():
        if k not in ("attention", "mem_size", "heads", "norm"):
            parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


class Reporter:
    """Receives run events; the base class ignores them (``--quiet``)."""

    def start(self, study_name: str, where: str, finished: int, target: int) -> None: ...

    def trial_start(self, number: int, params: dict[str, Any], epochs: int) -> None: ...

    def epoch(self, number: int, record: EpochResult) -> None: ...

    def trial_end(self, trial: optuna.trial.FrozenTrial, front: list[optuna.trial.FrozenTrial],
                  finished: int, target: int) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class PlainReporter(Reporter):
    """One line per finished trial (for logs and pipes)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, study_name: str, where: str, finished: int, target: int) -> None:
        self._print(f"study {study_name} in {where}: {finished}/{target} trials finished")

    def trial_end(self, trial: optuna.trial.FrozenTrial, front: list[optuna.trial.FrozenTrial],
                  finished: int, target: int) -> None:
        self._print(trial_line(trial, front, finished, target))

    def message(self, text: str) -> None:
        self._print(text)


def _shown(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The trial's params with its attention kind, which a study may fix instead of search."""
    stored = trial.user_attrs.get(ATTR_MODEL_CONFIG)
    kind = stored.get("attention") if isinstance(stored, dict) else None
    return {"attention": kind, **trial.params} if kind else dict(trial.params)


def trial_line(trial: optuna.trial.FrozenTrial, front: list[optuna.trial.FrozenTrial],
               finished: int, target: int) -> str:
    desc = describe_params(_shown(trial))
    replicate = trial.user_attrs.get(ATTR_REPLICATE, 0)
    if replicate >= FRESH_REPLICATE:  # `study confirm`'s fresh seeds
        desc += f" fresh seed {replicate - FRESH_REPLICATE + 1}"
    elif replicate:  # racing's extra runs of a configuration
        desc += f" run {replicate + 1}"
    state = trial.state.name
    secs = trial.duration.total_seconds() if trial.duration else 0.0
    head = f"[{finished}/{target}] trial {trial.number} {state:8s} {desc}"
    if trial.state == optuna.trial.TrialState.COMPLETE and trial.values:
        acc, thr = trial.values
        on_front = " *front*" if any(t.number == trial.number for t in front) else ""
        dup = trial.user_attrs.get("duplicate_of")
        extra = f" (same as trial {dup})" if dup is not None else ""
        return f"{head}  acc={acc:.4f}  {thr:,.0f} img/s  {secs:.1f}s{on_front}{extra}"
    reason = (trial.user_attrs.get(ATTR_FAIL) or trial.user_attrs.get(ATTR_PRUNE)
              or trial.user_attrs.get(ATTR_INTERRUPTED) or "")
    return f"{head}  {secs:.1f}s  {reason}".rstrip()


class RichReporter(Reporter):
    """A progress bar over trials, the current trial's epochs, and the live front."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
        )
        self.trials_task = self.bar.add_task("trials", total=1)
        self.current = ""
        self.front: list[optuna.trial.FrozenTrial] = []
        self.live = Live(self._render(), console=self.console, refresh_per_second=4,
                         transient=False)
        self.started = time.monotonic()

    def _render(self) -> Group:
        table = Table(title="Pareto front", show_lines=False, expand=False)
        for col in ("trial", "config", "accuracy", "img/s"):
            table.add_column(col, justify="right" if col != "config" else "left")
        for t in sorted(self.front, key=lambda t: t.values[1]):
            table.add_row(str(t.number), describe_params(_shown(t)), f"{t.values[0]:.4f}",
                          f"{t.values[1]:,.0f}")
        return Group(self.bar, self.current, table)

    def _refresh(self) -> None:
        self.live.update(self._render())

    def start(self, study_name: str, where: str, finished: int, target: int) -> None:
        self.live.start()
        self.console.print(f"study [bold]{study_name}[/] in {where}")
        self.bar.update(self.trials_task, total=target, completed=finished)
        self._refresh()

    def trial_start(self, number: int, params: dict[str, Any], epochs: int) -> None:
        self.epochs = epochs
        self.current = f"trial {number}: {describe_params(params)}  measuring throughput…"
        self._refresh()

    def epoch(self, number: int, record: EpochResult) -> None:
        self.current = (f"trial {number}: epoch {record.epoch}/{self.epochs}  "
                        f"accuracy {record.accuracy:.4f}  loss {record.loss:.3f}")
        self._refresh()

    def trial_end(self, trial: optuna.trial.FrozenTrial, front: list[optuna.trial.FrozenTrial],
                  finished: int, target: int) -> None:
        self.front = front
        self.console.print(trial_line(trial, front, finished, target))
        self.bar.update(self.trials_task, completed=finished, total=target)
        self.current = ""
        self._refresh()

    def message(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        self.live.stop()


def make_reporter(quiet: bool) -> Reporter:
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()
