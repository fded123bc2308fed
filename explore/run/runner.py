"""``explore study run``: run trials of an opened study (:mod:`explore.run.opening` creates or
continues it) until its budget is met.

The loop runs one ``study.optimize(n_trials=1)`` at a time, so between trials it can check the
total budget (COMPLETE + PRUNED across all processes), the timeout, a stop request (signals),
consecutive failures and an exhausted finite space, and recover trials orphaned by dead
processes. Optuna does the rest: storage, heartbeat, stale-trial retries, samplers.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from explore.config import Settings
from explore.engine.data import Dataset, load_dataset
from explore.engine.device import native_bf16, usable_cpus
from explore.engine.locks import MachineLock
from explore.run import board
from explore.run.artifacts import CheckpointKeeper, prune_checkpoints
from explore.run.opening import OpenedStudy, RunRequest, RunSummary, open_study
from explore.run.progress import Reporter
from explore.run.recovery import WorkerIdentity, recover_orphans, requeue, stop_on_signals
from explore.search import racing, warmstart
from explore.search.budget import (
    count_finished,
    count_running,
    distinct_finished,
    finite_size,
    slot_is_free,
    state_counts,
)
from explore.search.objective import Objective, TrialHooks, WorkerContext
from explore.search.sampling import make_sampler, sampler_seed
from studies.diskfull import DiskFull, disk_full, naming_full_disk
from studies.errors import ExploreError
from studies.internals import storage_of, study_id, trial_id
from studies.record import (
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_FAIL,
    ATTR_INTERRUPTED,
    ATTR_LOCK_WAIT,
    ATTR_MEASURED_BY,
    ATTR_OVER_BUDGET,
    ATTR_WORKER,
)
from studies.snapshots import SnapshotStore
from studies.storage import StorageSpec, snapshot_store

__all__ = ["release_queued", "run_study"]

MAX_REPEATS = 100  # consecutive duplicates before the search counts as converged
POLL_S = 1.0
STALE_BEATS = 10  # journal storages: a RUNNING trial this many heartbeat periods silent is dead
WAIT = ("", -1)  # _stop_reason: not now, but no trial to start either
NOT_RUN = "not run: the budget was full when the run ended"


def run_study(request: RunRequest, reporter: Reporter,
              opened: OpenedStudy | None = None) -> RunSummary:
    """Create or continue the study and run trials until its budget, timeout or a stop."""
    opened = opened or open_study(request)
    study, settings, spec, name = opened.study, opened.settings, opened.spec, opened.name
    summary = opened.summary()
    with naming_full_disk(spec.display, spec.artifact_dir()), _quiet_full_disk_threads():
        if summary.finished < summary.target:
            _set_threads(settings, request, opened.device)
            if _emulated_bf16(settings, opened.device) and request.worker == 0:
                reporter.message(f"note: {opened.device.type} has no native bf16 (no "
                                 "avx512_bf16 or AMX): [train] precision = bf16 is emulated "
                                 "here and trains slower than fp32")
            data = (opened.data.to(opened.device) if opened.data is not None
                    else load_dataset(settings.data, seed=settings.study.seed,
                                      device=opened.device))
            snapshots = snapshot_store(spec, opened.storage)
            _loop(study, settings, data, opened.device, spec, snapshots, request, reporter,
                  summary, name)
            if summary.new_trials:
                board.publish(study, settings, reporter.message,
                              snapshots.confident_history(name))
        release_queued(study, settings, reporter.message)
        return finish_summary(opened, summary)


@contextmanager
def _quiet_full_disk_threads() -> Iterator[None]:
    """Optuna's heartbeat thread meets a full study database too, and would print its
    traceback; the main thread names the full disk in one line."""
    before = threading.excepthook

    def hook(args: Any) -> None:
        if args.exc_value is None or disk_full(args.exc_value) is None:
            before(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = before


def release_queued(study: optuna.Study, settings: Settings,
                   message: Callable[[str], None]) -> list[int]:
    """With the budget full, end the racing replicates still queued: FAIL, marked
    :data:`ATTR_OVER_BUDGET` (nothing trained; :func:`racing.enqueue` asks for them again when a
    continued run has room). Returns their numbers.

    Another worker may queue a replicate just as the last slot fills; no worker of this budget
    could run it, and a WAITING trial would be taken by whatever process opens the study next.
    Each trial is taken from the queue as Optuna's own ``ask`` does (WAITING -> RUNNING, which
    only one process can win), so a replicate another worker just started is left to it."""
    if count_finished(study) < settings.study.trials:
        return []  # a replicate still fits: a continued or concurrent run takes it
    released = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if ATTR_CONFIGURATION not in t.user_attrs:
            continue  # a warm-start anchor or a retry of a sampled trial: not racing's
        try:
            if not storage_of(study).set_trial_state_values(trial_id(t), TrialState.RUNNING):
                continue
            storage_of(study).set_trial_user_attr(trial_id(t), ATTR_OVER_BUDGET, NOT_RUN)
            storage_of(study).set_trial_user_attr(trial_id(t), ATTR_FAIL, NOT_RUN)
            storage_of(study).set_trial_state_values(trial_id(t), TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # another process took it first
        released.append(t.number)
    if released:
        message(f"racing: {len(released)} queued run(s) not started (trial(s) "
                f"{', '.join(map(str, released))}): the budget is full; a run with a larger "
                "--trials queues them again")
    return released


def _emulated_bf16(settings: Settings, device: torch.device) -> bool:
    searched = settings.space.get("precision")
    choices = set(searched.choices or ()) if searched is not None else set()
    wanted = settings.train.precision == "bf16" or "bf16" in choices
    return wanted and not native_bf16(device)


def finish_summary(opened: OpenedStudy, summary: RunSummary) -> RunSummary:
    study = opened.study
    summary.finished = count_finished(study)
    summary.states = state_counts(study)
    # Duplicates repeat a front trial's values exactly: show each experiment once.
    summary.front = [t for t in study.best_trials if t.user_attrs.get(ATTR_DUPLICATE) is None]
    summary.elapsed = time.monotonic() - opened.started
    summary.noisy_trials = [t.number for t in summary.front
                            if t.user_attrs.get("throughput", {}).get("noisy")]
    trials = study.get_trials(deepcopy=False)
    summary.reused_throughputs = sum(ATTR_MEASURED_BY in t.user_attrs for t in trials)
    summary.lock_wait_s = sum(float(t.user_attrs.get(ATTR_LOCK_WAIT, 0.0)) for t in trials)
    summary.confident = racing.front_of(trials, opened.settings)
    return summary


def _warm_start(study: optuna.Study, settings: Settings, data: Dataset, device: torch.device,
                request: RunRequest, reporter: Reporter, identity: WorkerIdentity) -> None:
    """A new study's first run probes throughput and enqueues the fastest models: one process
    of all the workers that start, on any host (worker 0 of a command claims it; the others
    wait for it, so that they start from its anchors; see ``warmstart.take_turn``)."""
    if not warmstart.pending(study):
        return
    if warmstart.take_turn(study, identity, request.worker == 0, reporter.message):
        try:
            warmstart.warm_start(study, settings, data.image_shape, data.num_classes, device,
                                 MachineLock(enabled=request.workers > 1 or request.shared_lock),
                                 reporter.message, measure_threads(settings, study), identity)
        except BaseException:
            warmstart.release(study, identity)  # the next run (or another worker) probes
            raise


def _set_threads(settings: Settings, request: RunRequest, device: torch.device) -> None:
    threads = settings.measure.threads or max(1, usable_cpus() // max(1, request.workers))
    torch.set_num_threads(threads)


def measure_threads(settings: Settings, study: optuna.Study) -> int:
    """The torch threads of every throughput measurement of ``study``.

    ``[measure] threads`` when set. Otherwise (0: cores / workers) what the study's first
    measured trial recorded, so that a study continued with another number of workers (or
    after ``--workers auto`` on a machine with more cores) keeps measuring as it began and its
    throughputs stay comparable; for a new study, the process's own count (0)."""
    if settings.measure.threads:
        return settings.measure.threads
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        recorded = t.user_attrs.get("throughput", {}).get("threads")
        if isinstance(recorded, int) and recorded > 0 and t.user_attrs.get(ATTR_DUPLICATE) is None:
            return min(recorded, usable_cpus())
    return 0


@dataclass
class _LoopState:
    """What the loop counts between trials."""

    failures: int = 0  # consecutive failed trials
    repeats: int = 0  # consecutive duplicates (the sampler proposing evaluated experiments)
    deadline: float | None = None  # monotonic time after which no trial starts


def _stop_reason(study: optuna.Study, settings: Settings, request: RunRequest,
                 state: _LoopState, finite: int | None) -> tuple[str, int] | None:
    """Why the loop should end now (reason, exit code), :data:`WAIT` while the last slots of the
    budget are running elsewhere, or None to run another trial."""
    finished = count_finished(study)
    if finished >= settings.study.trials:
        return "budget reached", 0
    if finished + count_running(study) >= settings.study.trials:
        return WAIT  # the last slots are taken; one may still fail
    if state.deadline is not None and time.monotonic() >= state.deadline:
        return "timeout", 0
    if request.queued_only and not any(
            t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        return ("every queued run finished", 0) if not count_running(study) else WAIT
    explored = finite is not None and distinct_finished(study) >= finite
    if (explored or state.repeats >= MAX_REPEATS) and _race_on(study, settings):
        return None  # the sampler has nothing new: the rest of the budget goes to replicates
    if explored:
        return _exhausted(settings), 0
    if state.repeats >= MAX_REPEATS:
        return (f"the sampler proposed {state.repeats} evaluated configurations in a row", 0)
    if state.failures >= request.max_failures:
        return f"{state.failures} consecutive failed trials", 1
    return None


def _race_on(study: optuna.Study, settings: Settings) -> bool:
    """Queue replicates for a search that has nothing new to propose; whether any is queued
    (or was queued before and still waits)."""
    if settings.study.replicates == 1:
        return False
    racing.enqueue(study, settings, exhausted=True)
    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _exhausted(settings: Settings) -> str:
    if settings.study.replicates == 1:
        return "search space exhausted"
    return ("search space exhausted and every configuration confidently dominated or raced "
            "to its limit")


def _after_trial(settings: Settings, name: str, snapshots: SnapshotStore, request: RunRequest,
                 reporter: Reporter, summary: RunSummary, state: _LoopState,
                 checkpoints: tuple[Any, Any]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """The callback after every trial of this process: snapshot, checkpoints, counters."""
    store, directory = checkpoints

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        state.repeats = state.repeats + 1 if trial.user_attrs.get(ATTR_DUPLICATE) is not None \
            else 0
        # Count before reading the front: a snapshot's front is then never older than its
        # count, so the snapshot recorded last always shows the final front.
        finished = count_finished(study)
        front = study.best_trials
        if trial.state == TrialState.COMPLETE:
            snapshots.record(name, finished, [(t.number, *t.values) for t in front])
            trials = study.get_trials(deepcopy=False)
            confident = racing.front_of(trials, settings)
            snapshots.record_confident(name, finished, confident)
            if request.keep_checkpoints == "pareto" and store is not None:
                # the observed front's and the plausible configurations' best replicates
                keep = {t.number for t in front} | confident.kept_trials()
                prune_checkpoints(study, [t for t in trials if t.number in keep], store,
                                  directory)
        for queued in racing.enqueue(study, settings):
            reporter.message(f"racing: queued run {queued.replicate + 1} of "
                             f"{_params_text(queued.params)} ({queued.why})")
        if trial.state == TrialState.FAIL:
            if trial.user_attrs.get(ATTR_INTERRUPTED):
                requeue(study, trial, reason="interrupted")
            elif trial.user_attrs.get(ATTR_OVER_BUDGET) is None:
                state.failures += 1
        else:
            state.failures = 0
        summary.new_trials += 1
        reporter.trial_end(trial, front, finished, settings.study.trials)

    return after_trial


def _fail_running(study: optuna.Study, me: WorkerIdentity, current: int | None,
                  full: DiskFull) -> DiskFull:
    """Mark this process's RUNNING trials (those it named itself on, and ``current``, the one
    it called last) FAIL with ``full`` as the reason. Returns the error to raise: ``full``, or,
    where that write met the full disk too, ``full`` saying that the trial stays RUNNING until
    the next run's recovery fails and re-queues it (:func:`recover_orphans`, this process being
    dead by then): with ``--quiet`` that line is all a user sees."""
    left = "the running trial could not be marked failed: the next run with room re-queues it"
    try:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except Exception:
        return full.noting(left)
    mine = [t for t in trials if trial_id(t) == current
            or _owner(t) == (me.host, me.pid)]
    unmarked = []
    for t in mine:
        try:
            storage_of(study).set_trial_user_attr(trial_id(t), ATTR_FAIL, str(full))
            storage_of(study).set_trial_state_values(trial_id(t), TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # it ended meanwhile (Optuna's heartbeat or another process)
        except Exception:
            unmarked.append(t.number)
    if not unmarked:
        return full
    return full.noting(f"trial {', '.join(map(str, unmarked))} could not be marked failed: "
                       "the next run with room re-queues it")


def _owner(t: FrozenTrial) -> tuple[Any, Any]:
    owner = t.user_attrs.get(ATTR_WORKER) or {}
    return owner.get("host"), owner.get("pid")


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _make_objective(study: optuna.Study, settings: Settings, data: Any, device: torch.device,
                    state_dir: Any, stop: threading.Event, request: RunRequest,
                    reporter: Reporter, keeper: CheckpointKeeper | None) -> Objective:
    def on_trial_start(number: int, params: dict[str, Any]) -> None:
        # the attention kind even where the study fixes it ([space] attention = ["self"])
        shown = {"attention": settings.model.get("attention", "external"), **params}
        reporter.trial_start(number, shown, settings.train.epochs)

    target = settings.study.trials
    hooks = TrialHooks(on_epoch=reporter.epoch, on_trial_start=on_trial_start,
                       save_checkpoint=keeper,
                       claim=lambda trial: slot_is_free(study, trial.number, target))
    worker = WorkerContext(identity=WorkerIdentity.current(),
                           lock=MachineLock(enabled=request.workers > 1 or request.shared_lock),
                           measure_threads=measure_threads(settings, study))
    return Objective(settings, data, device, state_dir, stop, hooks, worker)


def _loop(study: optuna.Study, settings: Settings, data: Any, device: torch.device,
          spec: StorageSpec, snapshots: SnapshotStore, request: RunRequest, reporter: Reporter,
          summary: RunSummary, name: str) -> None:
    stop = threading.Event()
    identity = WorkerIdentity.current()
    artifacts = spec.artifact_dir()
    state_dir = artifacts / "states" / f"study-{study_id(study)}"
    state_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts / "checkpoints")) \
        if request.keep_checkpoints != "none" else None
    if store is not None:
        (artifacts / "checkpoints").mkdir(parents=True, exist_ok=True)
    study.sampler = make_sampler(
        settings, sampler_seed(settings.study.seed, len(study.trials), request.worker))
    finite = finite_size(settings)
    # Journal storages have no heartbeat: a trial of another host counts as dead when its
    # per-epoch beat is this old (RDB storages leave that to Optuna's heartbeat).
    stale_after = None if spec.is_rdb else float(request.heartbeat.grace_period * STALE_BEATS)
    unowned: dict[int, float] = {}  # RUNNING trials no worker named itself on, first seen
    state = _LoopState(deadline=None if request.timeout is None
                       else time.monotonic() + request.timeout)
    keeper = CheckpointKeeper(store, state_dir, name) if store is not None else None
    objective = _make_objective(study, settings, data, device, state_dir, stop, request,
                                reporter, keeper)
    objective.storage = spec.display
    after_trial = _after_trial(settings, name, snapshots, request, reporter, summary, state,
                               (store, artifacts / "checkpoints"))
    reporter.start(name, spec.display, summary.finished, settings.study.trials)
    try:
        with stop_on_signals(stop, reporter.message, f"{name} --storage {summary.storage_url}",
                             request.handle_signals) as received:
            if state.deadline is None or time.monotonic() < state.deadline:
                # --timeout 0 creates only: the first worker that trains probes, on its device
                _warm_start(study, settings, data, device, request, reporter, identity)
            racing.enqueue(study, settings)  # a race an earlier run left unfinished
            while True:
                if stop.is_set():
                    sig = received.get("signal", signal.SIGINT)
                    summary.stopped = "interrupted"
                    summary.exit_code = 130 if sig == signal.SIGINT else 143
                    break
                recover_orphans(study, identity, reporter.message, stale_after, unowned)
                if spec.is_rdb:
                    optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat retries
                ended = _stop_reason(study, settings, request, state, finite)
                if ended == WAIT:
                    time.sleep(POLL_S)
                    continue
                if ended is not None:
                    summary.stopped, summary.exit_code = ended
                    break
                try:
                    study.optimize(objective, n_trials=1, catch=(Exception,),
                                   callbacks=[after_trial])
                except Exception as exc:  # the storage failed telling a trial's end
                    full = disk_full(exc, spec.display, artifacts)
                    if full is None:
                        raise
                    objective.disk_full = full
                if objective.disk_full is not None:  # a full disk fails every next trial too
                    raise _fail_running(study, identity, objective.trial_id,
                                        objective.disk_full)
    finally:
        reporter.close()
    if summary.exit_code == 1:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        last = (failed[-1].user_attrs.get(ATTR_FAIL) if failed else None) \
            or "see `explore study show`"
        raise ExploreError(f"stopped after {state.failures} consecutive failed trials; "
                           f"last: {last}")
