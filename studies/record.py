"""The trial record: what explore writes into a study and every reader relies on.

The user-attr keys below are the contract between the writer (``explore study run``: the
objective, the run loop, recovery, the warm start) and the readers (the ``studies`` browsing
commands, optuna-dashboard, anyone's own scripts reading the database). They are documented as a
table in ``docs/record.md`` (type, writer, readers, meaning); a test keeps that table's keys and
:data:`STUDY_ATTRS` / :data:`TRIAL_ATTRS` equal.

Torch-free and Optuna-free: both sides import it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studies.errors import StudyNotFound

if TYPE_CHECKING:
    from studies.storage import StorageSpec

__all__ = ["EXPLORE_METRICS", "STATES", "STUDY_ATTRS", "TRIAL_ATTRS", "Catalog",
           "StudyMeta", "TrialRecord", "TrialStats", "design", "iso", "problem_reason",
           "trial_json"]

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
EXPLORE_METRICS = ("accuracy", "throughput")

# ---- study user attrs ----------------------------------------------------------------------------
ATTR_SETTINGS = "explore_settings"  # how the study was created: the settings a run continues with
ATTR_VERSION = "explore_version"
ATTR_CREATED_BY = "created_by"
ATTR_WARM = "explore_warm_start"  # the warm start's state: claimed, probing, done

# ---- trial user attrs: identity ------------------------------------------------------------------
ATTR_CONFIG_KEY = "config_key"  # hash of the whole experiment: equal keys, same experiment
ATTR_KEY_AT = "config_key_at"  # when the key was stored: of two twins, the earlier one trains
# The configuration (what the space chose) and which training run of it this trial is: replicate
# r of two configurations shares its seed stream's index, a paired comparison. Trials from before
# replicates have neither: each is replicate 0 of a configuration named by its config_key.
ATTR_CONFIGURATION = "configuration"
ATTR_REPLICATE = "replicate"
ATTR_MODEL_CONFIG = "model_config"
ATTR_SEED = "seed"
ATTR_WORKER = "worker"  # who runs (ran) the trial: host, pid, start; a beat on journals
ATTR_ANCHOR = "warm_start_rank"  # on an enqueued trial: 1 = the fastest probed
ATTR_PROBE_RATE = "probe_img_s"  # on an enqueued trial: the warm start's probed img/s
# ---- trial user attrs: measured ------------------------------------------------------------------
ATTR_THROUGHPUT = "throughput"  # the measurement: median, spread, repeats, threads, noisy
# The measurement's key figures as scalars, for optuna-dashboard's trial page and table (the
# dict above stays the record readers use).
ATTR_SPREAD_PCT = "throughput_spread_pct"
ATTR_NOISY = "throughput_noisy"
ATTR_MEASURE_KEY = "measure_key"  # what the throughput depends on ([measure] reuse)
ATTR_MEASURED_BY = "throughput_from"  # the trial whose measured throughput this one took
# Seconds the trial's measurement waited for the machine lock: for the running epochs of the
# other explore processes on this machine (workers, other studies' runs) to end.
ATTR_LOCK_WAIT = "measure_lock_wait_s"
ATTR_PARAMS_COUNT = "params_count"
ATTR_FLOPS = "flops_per_image"
ATTR_DEVICE = "device"
ATTR_DEVICE_NAME = "device_name"
ATTR_PRECISION = "precision"
ATTR_VERSIONS = "versions"
ATTR_HISTORY = "history"  # per-epoch accuracy/loss, written with each saved training state
ATTR_TRAIN_SECONDS = "train_seconds"
ATTR_WALL_SECONDS = "wall_seconds"
ATTR_COMPILE_SECONDS = "compile_seconds"
ATTR_GRAPH_SECONDS = "train_graph_seconds"
ATTR_RESUMED_FROM = "resumed_from_epoch"
ATTR_CHECKPOINT = "checkpoint_artifact"
# ---- trial user attrs: why it ended as it did ----------------------------------------------------
ATTR_FAIL = "fail_reason"
ATTR_PRUNE = "prune_reason"
ATTR_PRUNED_AT = "pruned_at_epoch"
ATTR_RUNG_RANK = "rung_rank"
ATTR_INTERRUPTED = "interrupted"
ATTR_DUPLICATE = "duplicate_of"  # a trial that repeated an evaluated experiment
ATTR_OVER_BUDGET = "over_budget"
ATTR_RETRY_OF = "retry_of"  # a re-queued trial: the number of the one it retries
ATTR_RETRY_COUNT = "retry_count"
ATTR_RETRIED = "retried_trial"  # a re-queued trial: the number of the trial it replaces


# The keys in the order docs/record.md lists them; the table there gives each one's type, writer,
# readers and meaning (a test keeps the two equal).
STUDY_ATTRS = (ATTR_SETTINGS, ATTR_VERSION, ATTR_CREATED_BY, ATTR_WARM)
TRIAL_ATTRS = (
    ATTR_CONFIG_KEY, ATTR_KEY_AT, ATTR_CONFIGURATION, ATTR_REPLICATE, ATTR_MODEL_CONFIG,
    ATTR_SEED, ATTR_WORKER, ATTR_ANCHOR, ATTR_PROBE_RATE, ATTR_THROUGHPUT, ATTR_SPREAD_PCT,
    ATTR_NOISY, ATTR_MEASURE_KEY, ATTR_MEASURED_BY, ATTR_LOCK_WAIT, ATTR_PARAMS_COUNT,
    ATTR_FLOPS, ATTR_DEVICE, ATTR_DEVICE_NAME, ATTR_PRECISION, ATTR_VERSIONS, ATTR_HISTORY,
    ATTR_TRAIN_SECONDS, ATTR_WALL_SECONDS, ATTR_COMPILE_SECONDS, ATTR_GRAPH_SECONDS,
    ATTR_RESUMED_FROM, ATTR_CHECKPOINT, ATTR_FAIL, ATTR_PRUNE, ATTR_PRUNED_AT, ATTR_RUNG_RANK,
    ATTR_INTERRUPTED, ATTR_DUPLICATE, ATTR_OVER_BUDGET, ATTR_RETRY_OF, ATTR_RETRIED,
    ATTR_RETRY_COUNT,
)


@dataclass(frozen=True)
class StudyMeta:
    """A study's identity, objectives and user attrs."""

    study_id: int
    name: str
    directions: tuple[str, ...]  # "maximize" or "minimize", per objective
    metric_names: tuple[str, ...] | None
    user_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def objective_names(self) -> list[str]:
        """Metric names, or ``values_0``, ``values_1``, … as Optuna names unnamed objectives."""
        if self.metric_names is not None:
            return list(self.metric_names)
        if len(self.directions) == 1:
            return ["value"]
        return [f"values_{i}" for i in range(len(self.directions))]

    @property
    def is_explore(self) -> bool:
        """Maximizes (accuracy, throughput), as every study ``explore study run`` creates."""
        return self.directions == ("maximize", "maximize") and self.metric_names in (
            None, EXPLORE_METRICS)

    @property
    def settings(self) -> dict[str, Any]:
        """The stored explore settings (empty for studies explore did not create)."""
        value = self.user_attrs.get(ATTR_SETTINGS)
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as browsing commands need it (a light ``FrozenTrial``)."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    values: tuple[float, ...] | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    trial_id: int = -1  # the storage's id (joins, artifacts); not shown

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion, when both are known."""
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()

    @property
    def is_duplicate(self) -> bool:
        return self.user_attrs.get(ATTR_DUPLICATE) is not None


def trial_json(t: TrialRecord, names: Sequence[str], pareto: bool | None = None
               ) -> dict[str, Any]:
    """A trial as Optuna's CLI writes it: ``number``, ``values`` keyed by metric name,
    ``datetime_start``, ``datetime_complete``, ``duration``, ``params``, ``user_attrs``,
    ``state`` (times ISO 8601, duration in seconds), plus ``pareto`` when given."""
    out: dict[str, Any] = {
        "number": t.number,
        "values": None if t.values is None else dict(zip(names, t.values, strict=True)),
        "datetime_start": iso(t.datetime_start),
        "datetime_complete": iso(t.datetime_complete),
        "duration": t.duration,
        "params": t.params,
        "user_attrs": t.user_attrs,
        "state": t.state,
    }
    if pareto is not None:
        out["pareto"] = pareto
    return out


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class TrialStats:
    """A study's trials at a glance."""

    states: dict[str, int]
    first_start: dt.datetime | None
    last_activity: dt.datetime | None


class Catalog:
    """The studies of one storage. Use :func:`open_catalog`."""

    spec: StorageSpec

    def studies(self) -> list[StudyMeta]:
        raise NotImplementedError

    def study(self, name: str) -> StudyMeta:
        """The named study.

        Raises:
            StudyNotFound: no such study (the message lists the ones there are).
        """
        metas = self.studies()
        for meta in metas:
            if meta.name == name:
                return meta
        names = sorted(m.name for m in metas)
        where = self.spec.display
        if not names:
            raise StudyNotFound(f"no study named {name!r}: {where} holds no studies")
        shown = ", ".join(names[:10]) + (f" (and {len(names) - 10} more)" if len(names) > 10
                                          else "")
        raise StudyNotFound(f"no study named {name!r} in {where}; studies there: {shown}")

    def stats(self) -> dict[int, TrialStats]:
        """Counts by state and first/last activity, per study id."""
        raise NotImplementedError

    def complete_values(self, study_ids: Sequence[int]
                        ) -> dict[int, list[tuple[int, int, tuple[float, ...]]]]:
        """``(trial_id, number, values)`` of the COMPLETE trials, per study id."""
        raise NotImplementedError

    def trials(self, study: StudyMeta, trial_ids: Sequence[int] | None = None,
               states: Iterable[str] | None = None) -> list[TrialRecord]:
        """Full records (params, user attrs), by number; all trials, or those ids/states."""
        raise NotImplementedError

    def constrained(self) -> set[int]:
        """Ids of studies with trial constraints (none made by explore): there Optuna keeps
        only feasible trials on the front, so :meth:`optuna_front` decides it."""
        raise NotImplementedError

    def optuna_front(self, meta: StudyMeta) -> set[int]:
        """Numbers of ``study.best_trials`` as Optuna itself computes them (slow path)."""
        import optuna

        from studies.storage import open_storage

        study = optuna.load_study(study_name=meta.name,
                                  storage=open_storage(self.spec, create=False))
        return {t.number for t in study.best_trials}

    def close(self) -> None:
        pass


def problem_reason(t: TrialRecord) -> str:
    """Why a trial failed or was pruned, from the user attrs the objective writes."""
    for key in (ATTR_FAIL, ATTR_PRUNE, ATTR_INTERRUPTED):
        if t.user_attrs.get(key):
            return str(t.user_attrs[key])
    return "no reason recorded"


def design(config: dict[str, Any]) -> str:
    """``S32/h4/double`` (EA) or ``SA/h4``: the searched design in a few characters."""
    if config.get("attention", "external") == "self":
        return f"SA/h{config.get('heads', '-')}"
    return f"S{config.get('mem_size', '-')}/h{config.get('heads', '-')}/{config.get('norm', '-')}"
