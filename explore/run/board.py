"""What a run leaves for optuna-dashboard: a study note with the noise-aware front and the
findings, and the front with its error bars as a Plotly figure stored with the study.

Both are optuna-dashboard's own study records (``save_note``, ``save_plotly_graph_object``: study
system attrs), written at the end of every run; the dashboard shows the note on the study page
and the figure among its plots. Without the ``dashboard`` extra (or plotly, for the figure)
nothing is written. A failure here never fails the run: the trials are stored already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from explore.config import Settings
from explore.search.racing import front_of, record_of
from studies.internals import study_id
from studies.record import TrialRecord, design
from studies.replicates import ConfiguredFront
from studies.views import honest_line

__all__ = ["FIGURE_ID", "HISTORY_ID", "note_text", "publish"]

FIGURE_ID = "explore-front"  # the stored figure's id: each run replaces the last one
HISTORY_ID = "explore-history"  # the plausible front's hypervolume over the trials


def _interval(mean: float, low: float | None, high: float | None, spec: str,
              scale: float = 1.0) -> str:
    text = format(scale * mean, spec)
    if low is None or high is None:
        return f"{text} (±?)"
    return f"{text} [{format(scale * low, spec)}, {format(scale * high, spec)}]"


def note_text(name: str, front: ConfiguredFront, findings: Sequence[str], finished: int
              ) -> str:
    """The study note (Markdown)."""
    level = f"{front.front.noise.confidence:.0%}"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {name}: the plausible front ({finished} finished trials, {when})", "",
             honest_line(front), "",
             f"| design | runs | trials | accuracy % [{level}] | img/s [{level}] | P(front) |",
             "|---|---:|---|---:|---:|---:|"]
    for c in front.ordered(front.front.plausible):
        e = front.estimate(c.key)
        lines.append(
            f"| {design(c.model_config)} | {e.n} | {', '.join(map(str, e.trials))} | "
            f"{_interval(e.accuracy.mean, e.accuracy.low, e.accuracy.high, '.2f', 100)} | "
            f"{_interval(e.throughput.mean, e.throughput.low, e.throughput.high, ',.0f')} | "
            f"{front.front.probability[c.key]:.2f} |")
    if findings:
        lines += ["", "### Findings", "", *[f"- {line}" for line in findings]]
    lines += ["", "Each trial is one training run (replicate) of a configuration: its user attrs "
              "`configuration` and `replicate` name both. Optuna's own Pareto front "
              "(study.best_trials) is the observed one, single runs; "
              f"`explore study pareto {name}` lists every configuration with its intervals."]
    return "\n".join(lines) + "\n"


def _figure(records: list[TrialRecord], study: optuna.Study, settings: Settings) -> Any:
    from studies.fronthtml import front_figure
    from studies.record import StudyMeta

    names = tuple(study.metric_names) if study.metric_names else None
    meta = StudyMeta(study_id(study), study.study_name, ("maximize", "maximize"), names,
                     dict(study.user_attrs))
    return front_figure(records, meta, settings.study.confidence)


def publish(study: optuna.Study, settings: Settings, note: Callable[[str], None],
            history: Sequence[Any] = ()) -> bool:
    """Write the note and the figures (the front; with ``history``, the recorded confident
    snapshots, the plausible front's hypervolume over the trials); False when
    optuna-dashboard is not installed."""
    try:
        import optuna_dashboard
    except ImportError:
        return False
    from studies.analysis import finding_lines

    trials = study.get_trials(deepcopy=False)
    records = [record_of(t) for t in trials]
    front = front_of(trials, settings)
    finished = sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
                   for t in trials)
    try:
        findings = finding_lines(records, settings.study.confidence)
        optuna_dashboard.save_note(study, note_text(study.study_name, front, findings,
                                                    finished))
    except Exception as exc:  # noqa: BLE001 - the run's trials are stored; say it and go on
        note(f"note: the dashboard note was not written ({exc.__class__.__name__}: {exc})")
        return False
    try:
        figure = _figure(records, study, settings)
        if figure is not None:
            optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=FIGURE_ID)
        if history:
            from studies.historyplot import confident_history_figure

            grown = confident_history_figure(history, study.study_name, finished)
            if grown is not None:
                optuna_dashboard.save_plotly_graph_object(study, grown,
                                                          graph_object_id=HISTORY_ID)
    except ImportError:
        pass  # no plotly: the note alone
    except Exception as exc:  # noqa: BLE001
        note(f"note: the dashboard figure was not written ({exc.__class__.__name__}: {exc})")
    return True
