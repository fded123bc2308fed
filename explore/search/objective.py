"""The Optuna objective: a trial's params → plan → throughput → training → (accuracy, img/s).

Model code never sees a trial; this module is the only place that maps between them. The plan
(:mod:`explore.plan`) says what the experiment is, :mod:`explore.search.reuse` whether the study
already holds it, :mod:`explore.engine` measures and trains it.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

import extattn
from explore.config import Settings
from explore.engine import allocator
from explore.engine.data import Dataset, load_dataset
from explore.engine.device import device_name, resolve_precision, torch_threads
from explore.engine.locks import MachineLock
from explore.engine.measure import Throughput, measure_throughput, reference_model
from explore.engine.train import EpochResult, NonFiniteLoss, compile_for_trial, train_model
from explore.engine.trainstate import peek_state
from explore.plan import TrialPlan, plan_trial, split_seed
from explore.run.recovery import WorkerIdentity
from explore.search import reuse
from explore.search.pruning import decide, rungs
from extattn import count_flops, count_params, create_model
from studies.diskfull import DiskFull, disk_full
from studies.internals import trial_id
from studies.record import (
    ATTR_CONFIG_KEY,
    ATTR_CONFIGURATION,
    ATTR_DUPLICATE,
    ATTR_FAIL,
    ATTR_HISTORY,
    ATTR_INTERRUPTED,
    ATTR_KEY_AT,
    ATTR_LOCK_WAIT,
    ATTR_MEASURE_KEY,
    ATTR_MEASURED_BY,
    ATTR_NOISY,
    ATTR_OVER_BUDGET,
    ATTR_PRUNE,
    ATTR_PRUNED_AT,
    ATTR_REPLICATE,
    ATTR_RUNG_RANK,
    ATTR_SPREAD_PCT,
    ATTR_THROUGHPUT,
    ATTR_WORKER,
)

__all__ = ["Interrupted", "Objective", "TrialHooks", "WorkerContext", "versions"]

# A training trial's worker beat (journal storages' liveness) is written at least this often,
# whatever [train] state_interval says: other hosts take a trial silent for 10x the heartbeat
# grace period (300 s by default) for dead.
BEAT_SECONDS = 30.0


class Interrupted(Exception):
    """A stop was requested (signal); the trial saved its state and will be retried."""


class OverBudget(Exception):
    """Trials started earlier already fill the study's budget (a race between workers)."""


@dataclass(frozen=True)
class TrialHooks:
    """What the run loop wants to hear from a trial, and may veto."""

    on_epoch: Callable[[int, EpochResult], None] | None = None
    on_trial_start: Callable[[int, dict[str, Any]], None] | None = None
    save_checkpoint: Callable[[optuna.Trial, torch.nn.Module, TrialPlan], None] | None = None
    claim: Callable[[optuna.Trial], bool] | None = None  # False: the budget is full


@dataclass(frozen=True)
class WorkerContext:
    """Who runs the trials, and what it shares with the machine's other explore processes."""

    identity: WorkerIdentity = field(default_factory=WorkerIdentity.current)
    lock: MachineLock = field(default_factory=lambda: MachineLock(enabled=False))
    measure_threads: int = 0  # torch threads of a measurement; 0: the process's threads


def versions() -> dict[str, str]:
    return {"explore": extattn.__version__, "torch": torch.__version__,
            "optuna": optuna.__version__, "python": platform.python_version(),
            "allocator": allocator.current()}


class Objective:
    """Callable for ``study.optimize``; one instance per worker process."""

    def __init__(self, settings: Settings, data: Dataset, device: torch.device, state_dir: Path,
                 stop: threading.Event, hooks: TrialHooks | None = None,
                 worker: WorkerContext | None = None) -> None:
        self.settings = settings
        self.data = data
        self.device = device
        self.state_dir = state_dir
        self.stop = stop
        self.hooks = hooks or TrialHooks()
        self.worker = worker or WorkerContext()
        c, h, _ = data.image_shape
        self.data_shape = (h, c, data.num_classes)
        self._split: tuple[int, Dataset] | None = None  # the last replicate's own split
        self.storage: str | None = None  # where the study is stored, named if it is full
        self.disk_full: DiskFull | None = None  # set when a trial found no room to write
        self.trial_id: int | None = None  # the storage id of the trial called last
        self._reference: torch.nn.Module | None = None  # built at the first measurement

    def data_for(self, plan: TrialPlan) -> Dataset:
        """The data a trial trains and validates on: the study's, or with ``[data] split =
        "replicate"`` its replicate's hold-out (loaded once per replicate index in a row)."""
        seed = split_seed(self.settings.study.seed, plan.replicate, self.settings.data.split)
        if seed == self.settings.study.seed:
            return self.data
        if self._split is None or self._split[0] != seed:
            self._split = (seed, load_dataset(self.settings.data, seed=seed, device=self.device))
        return self._split[1]

    def state_path(self, plan: TrialPlan) -> Path:
        """The mid-trial training state: named by the experiment key, so any retry of the same
        experiment (in any process) continues it."""
        return self.state_dir / f"{plan.key[:32]}.pt"

    def reference(self) -> torch.nn.Module | None:
        """The model every measurement of this study is timed against (``[measure]
        reference``; :func:`explore.engine.measure.reference_model`), built once; None when
        the setting is off."""
        if not self.settings.measure.reference:
            return None
        if self._reference is None:
            h, c, classes = self.data_shape
            self._reference = reference_model({**self.settings.model, "image_size": h,
                                               "in_chans": c, "num_classes": classes},
                                              self.device)
        return self._reference

    def measure_key(self, plan: TrialPlan) -> str:
        """What the trial's throughput depends on ([measure] reuse). Each replicate measures
        anew, at another moment, unless the figure is stable (CUDA graph replays; their spread
        is in docs/performance.md, "Throughput stability"): a reused figure would make N
        replicates one measurement."""
        stable = self.device.type == "cuda" and self.settings.measure.cuda_graph
        return reuse.measure_key(plan, self.settings, self.device, self.worker.measure_threads,
                                 self.worker.identity.host,
                                 replicate=0 if stable else plan.replicate)

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Run the trial; failures leave their reason in the trial's user attrs."""
        self.trial_id = trial_id(trial)  # the runner fails it if even this first write fails
        trial.set_user_attr(ATTR_WORKER, self.worker.identity.to_attr())
        try:
            if self.hooks.claim is not None and not self.hooks.claim(trial):
                raise OverBudget("trials started earlier fill the budget")
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except OverBudget as exc:
            trial.set_user_attr(ATTR_OVER_BUDGET, str(exc))
            raise
        except Interrupted as exc:
            trial.set_user_attr(ATTR_INTERRUPTED, str(exc))
            raise
        except Exception as exc:
            full = disk_full(exc, self.storage, self.state_dir.parent)
            if full is not None:  # every next trial would fail alike: the run stops (runner)
                self.disk_full = full
            if ATTR_FAIL not in trial.user_attrs or full is not None:
                reason = str(full) if full is not None else f"{exc.__class__.__name__}: {exc}"
                trial.set_user_attr(ATTR_FAIL, reason[:1000])
            if isinstance(exc, torch.OutOfMemoryError) and self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, float]:
        plan = self._plan(trial)
        if self.settings.study.dedup:
            known = reuse.find_evaluated(trial, plan.key, self.stop, self.worker.identity)
            if known is not None:
                return reuse.answer_from(trial, known)
        torch.manual_seed(plan.seed)
        model = create_model(plan.model).to(self.device)
        net = self._compiled(trial, model, plan)
        self._describe(trial, model, plan)
        throughput = self._throughput(trial, net, plan)
        accuracy = self._train(trial, model, net, plan, throughput)
        return accuracy, throughput.median

    def _plan(self, trial: optuna.Trial) -> TrialPlan:
        params = self.settings.space.suggest(trial, self.settings.model)
        if self.hooks.on_trial_start is not None:
            self.hooks.on_trial_start(trial.number, params)
        replicate = trial.user_attrs.get(ATTR_REPLICATE, 0)  # racing queues replicates r > 0
        try:
            plan = plan_trial(params, self.settings, self.data_shape, replicate)
        except ValueError as exc:
            trial.set_user_attr(ATTR_PRUNE, f"impossible configuration: {exc}")
            raise optuna.TrialPruned(str(exc)) from exc
        if self.stop.is_set():
            raise Interrupted("stop requested before training")
        trial.set_user_attr(ATTR_CONFIG_KEY, plan.key)
        trial.set_user_attr(ATTR_KEY_AT, time.time())  # after the key is stored (see reuse)
        trial.set_user_attr(ATTR_CONFIGURATION, plan.config_key)
        trial.set_user_attr(ATTR_REPLICATE, plan.replicate)
        return plan

    def _compiled(self, trial: optuna.Trial, model: torch.nn.Module, plan: TrialPlan
                  ) -> torch.nn.Module:
        """What runs the batches: the model, or its compiled form."""
        if not plan.train.compile:
            return model
        with self.worker.lock.shared():  # heavy CPU work: never while another worker measures
            net, seconds = compile_for_trial(model, self.data, plan.train,
                                             self.settings.measure.batch_size)
        trial.set_user_attr("compile_seconds", round(seconds, 3))
        return net

    def _describe(self, trial: optuna.Trial, model: torch.nn.Module, plan: TrialPlan) -> None:
        c, h, w = self.data.image_shape
        trial.set_user_attr("model_config", plan.model.to_dict())
        trial.set_user_attr("seed", plan.seed)
        trial.set_user_attr("params_count", count_params(model))
        trial.set_user_attr("flops_per_image", count_flops(model, (c, h, w)))
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("device_name", device_name(self.device))
        trial.set_user_attr("precision", resolve_precision(self.device, plan.train.precision))
        trial.set_user_attr("versions", versions())

    def _throughput(self, trial: optuna.Trial, net: torch.nn.Module, plan: TrialPlan
                    ) -> Throughput:
        saved = peek_state(self.state_path(plan))
        key = self.measure_key(plan)
        trial.set_user_attr(ATTR_MEASURE_KEY, key)
        if saved is not None and "throughput" in saved:
            # A resumed experiment keeps the throughput measured when it started.
            throughput = Throughput.from_dict(saved["throughput"])
        elif self.settings.measure.reuse and (
                measured := reuse.find_measured(trial, key)) is not None:
            # This architecture was measured here already.
            throughput = Throughput.from_dict(measured.user_attrs[ATTR_THROUGHPUT])
            trial.set_user_attr(ATTR_MEASURED_BY, measured.number)
        else:
            c, h, w = self.data.image_shape
            asked = time.perf_counter()
            with self.worker.lock.exclusive(), torch_threads(self.worker.measure_threads):
                waited = time.perf_counter() - asked
                throughput = measure_throughput(net, (c, h, w), self.device,
                                                self.settings.measure, plan.train.precision,
                                                reference=self.reference())
            trial.set_user_attr(ATTR_LOCK_WAIT, round(waited, 3))
        trial.set_user_attr(ATTR_THROUGHPUT, throughput.to_dict())
        trial.set_user_attr(ATTR_SPREAD_PCT, throughput.spread_pct)
        trial.set_user_attr(ATTR_NOISY, throughput.noisy)
        return throughput

    def _train(self, trial: optuna.Trial, model: torch.nn.Module, net: torch.nn.Module,
               plan: TrialPlan, throughput: Throughput) -> float:
        study = self.settings.study
        rung_epochs = set(rungs(plan.train.epochs, study.prune_eta)) if study.prune else set()
        state_path = self.state_path(plan)
        epoch_done = self._epoch_callback(trial, plan, throughput.median, rung_epochs)
        started = time.perf_counter()
        try:
            result = train_model(
                model, self.data_for(plan), plan.train, plan.seed,
                augment=self.settings.data.augment, on_epoch=epoch_done,
                state_path=state_path, extra_state={"throughput": throughput.to_dict()},
                epoch_guard=self.worker.lock.shared, net=net, save_at=rung_epochs,
            )
        except optuna.TrialPruned:
            state_path.unlink(missing_ok=True)
            raise
        except NonFiniteLoss as exc:
            trial.set_user_attr(ATTR_FAIL, str(exc))
            state_path.unlink(missing_ok=True)
            raise
        if result.resumed_from:
            trial.set_user_attr("resumed_from_epoch", result.resumed_from)
            trial.set_user_attr(ATTR_HISTORY, [r.to_dict() for r in result.history])
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        if result.graphed:
            trial.set_user_attr("train_graph_seconds", round(result.graph_seconds, 3))
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 3))
        if self.hooks.save_checkpoint is not None:
            self.hooks.save_checkpoint(trial, model, plan)
        state_path.unlink(missing_ok=True)
        return result.accuracy

    def _epoch_callback(self, trial: optuna.Trial, plan: TrialPlan, throughput: float,
                        rung_epochs: set[int]
                        ) -> Callable[[EpochResult, list[EpochResult]], None]:
        last_beat = time.monotonic()

        def epoch_done(record: EpochResult, history: list[EpochResult]) -> None:
            nonlocal last_beat
            stopping = self.stop.is_set() and record.epoch < plan.train.epochs
            # The history goes to the storage with the state it describes ([train]
            # state_interval; rungs and the last epoch always): what a trial shows, a retry
            # resumes. A stop writes it too: the state is saved as the Interrupted goes up.
            if record.saved or stopping:
                trial.set_user_attr(ATTR_HISTORY, [r.to_dict() for r in history])
            if record.saved or stopping or time.monotonic() - last_beat >= BEAT_SECONDS:
                trial.set_user_attr(ATTR_WORKER, self.worker.identity.to_attr())  # a beat
                last_beat = time.monotonic()
            if self.hooks.on_epoch is not None:
                self.hooks.on_epoch(trial.number, record)
            if record.epoch in rung_epochs:
                self._maybe_prune(trial, record, throughput)
            if stopping:
                raise Interrupted(f"stopped after epoch {record.epoch} (state saved)")

        return epoch_done

    def _maybe_prune(self, trial: optuna.Trial, record: EpochResult, throughput: float) -> None:
        """MO-ASHA: stop unless this trial ranks in the top 1/η of those at this rung."""
        study = self.settings.study
        others = []
        for t in trial.study.get_trials(deepcopy=False, states=reuse.EVALUATED):
            if t.number == trial.number or t.user_attrs.get(ATTR_DUPLICATE) is not None:
                continue
            history = t.user_attrs.get(ATTR_HISTORY) or []
            thr = (t.user_attrs.get(ATTR_THROUGHPUT) or {}).get("median")
            if len(history) >= record.epoch and thr is not None:
                others.append((float(history[record.epoch - 1]["accuracy"]), float(thr)))
        decision = decide((record.accuracy, throughput), others, study.prune_eta,
                          study.prune_min_trials)
        if not decision.keep:
            trial.set_user_attr(ATTR_PRUNED_AT, record.epoch)
            trial.set_user_attr(ATTR_RUNG_RANK, [decision.rank, decision.size])
            trial.set_user_attr(ATTR_PRUNE, decision.reason(record.epoch))
            raise optuna.TrialPruned(decision.reason(record.epoch))
