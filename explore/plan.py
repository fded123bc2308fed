"""The Optuna objective: a trial's params → configs → throughput + training → (accuracy, img/s).

Model code never sees a trial; this module is the only place that maps between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

import extattn
from explore.config import Settings, TrainSettings
from explore.engine import allocator
from explore.engine.data import Dataset
from explore.engine.locks import MachineLock
from explore.engine.measure import Throughput, measure_throughput, resolve_precision, torch_threads
from explore.engine.train import EpochResult, NonFiniteLoss, compile_for_trial, train_model
from explore.engine.trainstate import peek_state
from explore.run.recovery import ATTR_WORKER, WorkerIdentity, recover_orphans
from explore.search.pruning import decide, rungs
from explore.space import HOW_NOT_WHAT
from extattn import ModelConfig, count_flops, count_params, create_model

__all__ = ["Interrupted", "Objective", "TrialPlan", "plan_trial"]

ATTR_HISTORY = "history"  # per-epoch accuracy/loss, written with each saved training state
ATTR_FAIL = "fail_reason"
ATTR_PRUNE = "prune_reason"
ATTR_DUPLICATE = "duplicate_of"
ATTR_OVER_BUDGET = "over_budget"
ATTR_MEASURE_KEY = "measure_key"  # what the throughput depends on ([measure] reuse)
ATTR_MEASURED_BY = "throughput_from"  # the trial whose measured throughput this one took
# Seconds the trial's measurement waited for the machine lock: for the running epochs of the
# other explore processes on this machine (workers, other studies' runs) to end.
ATTR_LOCK_WAIT = "measure_lock_wait_s"
DUPLICATE_POLL_S = 1.0
# A training trial's worker beat (journal storages' liveness) is written at least this often,
# whatever [train] state_interval says: other hosts take a trial silent for 10x the heartbeat
# grace period (300 s by default) for dead.
BEAT_SECONDS = 30.0
_EVALUATED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# What a duplicate copies from the trial it repeats (not its history or checkpoint).
_COPIED_ATTRS = ("model_config", "seed", "params_count", "flops_per_image", "throughput",
                 "train_seconds", "device", "device_name", "precision")


class Interrupted(Exception):
    """A stop was requested (signal); the trial saved its state and will be retried."""


class OverBudget(Exception):
    """Trials started earlier already fill the study's budget (a race between workers)."""


@dataclass(frozen=True)
class TrialPlan:
    """Everything a trial's params decide, and the identity of that experiment."""

    model: ModelConfig
    train: TrainSettings
    key: str  # hash of the whole experiment: equal keys are the same experiment
    seed: int  # derived from the key, never from the trial number


def experiment_key(model: dict[str, Any], train: dict[str, Any], settings: Settings) -> str:
    if not train.get("compile"):  # eager is the reference: keys from before the option stay
        train = {k: v for k, v in train.items() if k not in ("compile", "compile_mode")}
    if train.get("precision") == "auto":  # likewise: keys from before the option stay
        train = {k: v for k, v in train.items() if k != "precision"}
    train = {k: v for k, v in train.items() if k not in HOW_NOT_WHAT}  # how it runs, not what
    data = dataclasses.asdict(settings.data)
    for machine_specific in ("data_dir", "download"):
        data.pop(machine_specific)
    blob = json.dumps({"model": model, "train": train, "data": data,
                       "seed": settings.study.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def plan_trial(params: dict[str, Any], settings: Settings, data_shape: tuple[int, int, int]
               ) -> TrialPlan:
    """Apply ``params`` to the fixed settings.

    Raises:
        ValueError: the combination is impossible (e.g. heads not dividing dim*expand).
    """
    image_size, in_chans, num_classes = data_shape
    model_fields = {**settings.model, "image_size": image_size, "in_chans": in_chans,
                    "num_classes": num_classes}
    train_fields = dataclasses.asdict(settings.train)
    for name, value in params.items():
        if name in train_fields:
            train_fields[name] = value
        else:
            model_fields[name] = value
    model = ModelConfig(**model_fields)
    train = TrainSettings(**train_fields)
    if model.attention == "self":  # unused fields must not make equal SA models differ
        model = model.replace(mem_size=ModelConfig.mem_size, norm=ModelConfig.norm)
    key = experiment_key(model.to_dict(), dataclasses.asdict(train), settings)
    return TrialPlan(model=model, train=train, key=key, seed=int(key[:8], 16))


def versions() -> dict[str, str]:
    return {"explore": extattn.__version__, "torch": torch.__version__,
            "optuna": optuna.__version__, "python": platform.python_version(),
            "allocator": allocator.current()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


class Objective:
    """Callable for ``study.optimize``; one instance per worker process."""

    def __init__(
        self,
        settings: Settings,
        data: Dataset,
        device: torch.device,
        state_dir: Path,
        stop: threading.Event,
        on_epoch: Callable[[int, EpochResult], None] | None = None,
        on_trial_start: Callable[[int, dict[str, Any]], None] | None = None,
        save_checkpoint: Callable[[optuna.Trial, torch.nn.Module, TrialPlan], None] | None = None,
        identity: WorkerIdentity | None = None,
        lock: MachineLock | None = None,
        claim: Callable[[optuna.Trial], bool] | None = None,
        measure_threads: int = 0,
    ) -> None:
        self.claim = claim
        self.measure_threads = measure_threads  # 0: the process's threads
        self.identity = identity or WorkerIdentity.current()
        self.lock = lock or MachineLock(enabled=False)
        self.settings = settings
        self.data = data
        self.device = device
        self.state_dir = state_dir
        self.stop = stop
        self.on_epoch = on_epoch
        self.on_trial_start = on_trial_start
        self.save_checkpoint = save_checkpoint
        c, h, _ = data.image_shape
        self.data_shape = (h, c, data.num_classes)

    def state_path(self, plan: TrialPlan) -> Path:
        """The mid-trial training state: named by the experiment key, so any retry of the same
        experiment (in any process) continues it."""
        return self.state_dir / f"{plan.key[:32]}.pt"

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Run the trial; failures leave their reason in the trial's user attrs."""
        trial.set_user_attr(ATTR_WORKER, self.identity.to_attr())
        try:
            if self.claim is not None and not self.claim(trial):
                raise OverBudget("trials started earlier fill the budget")
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except OverBudget as exc:
            trial.set_user_attr(ATTR_OVER_BUDGET, str(exc))
            raise
        except Interrupted as exc:
            trial.set_user_attr("interrupted", str(exc))
            raise
        except Exception as exc:
            if ATTR_FAIL not in trial.user_attrs:
                trial.set_user_attr(ATTR_FAIL, f"{exc.__class__.__name__}: {exc}"[:1000])
            if isinstance(exc, torch.OutOfMemoryError) and self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, float]:
        params = self.settings.space.suggest(trial, self.settings.model)
        if self.on_trial_start is not None:
            self.on_trial_start(trial.number, params)
        try:
            plan = plan_trial(params, self.settings, self.data_shape)
        except ValueError as exc:
            trial.set_user_attr(ATTR_PRUNE, f"impossible configuration: {exc}")
            raise optuna.TrialPruned(str(exc)) from exc
        if self.stop.is_set():
            raise Interrupted("stop requested before training")
        trial.set_user_attr("config_key", plan.key)
        if self.settings.study.dedup:
            known = self._find_evaluated(trial, plan.key)
            if known is not None:
                return self._answer_from(trial, known)

        torch.manual_seed(plan.seed)
        model = create_model(plan.model).to(self.device)
        c, h, w = self.data.image_shape
        net: torch.nn.Module = model  # what runs the batches: the model, or its compiled form
        if plan.train.compile:  # heavy CPU work: never while another worker measures
            with self.lock.shared():
                net, seconds = compile_for_trial(model, self.data, plan.train,
                                                 self.settings.measure.batch_size)
            trial.set_user_attr("compile_seconds", round(seconds, 3))
        trial.set_user_attr("model_config", plan.model.to_dict())
        trial.set_user_attr("seed", plan.seed)
        trial.set_user_attr("params_count", count_params(model))
        trial.set_user_attr("flops_per_image", count_flops(model, (c, h, w)))
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("device_name", device_name(self.device))
        trial.set_user_attr("precision", resolve_precision(self.device, plan.train.precision))
        trial.set_user_attr("versions", versions())

        state_path = self.state_path(plan)
        saved = peek_state(state_path)
        measure_key = self._measure_key(plan)
        trial.set_user_attr(ATTR_MEASURE_KEY, measure_key)
        if saved is not None and "throughput" in saved:
            # A resumed experiment keeps the throughput measured when it started.
            throughput = Throughput.from_dict(saved["throughput"])
        elif self.settings.measure.reuse and (
                measured := self._find_measured(trial, measure_key)) is not None:
            # This architecture was measured here already.
            throughput = Throughput.from_dict(measured.user_attrs["throughput"])
            trial.set_user_attr(ATTR_MEASURED_BY, measured.number)
        else:
            asked = time.perf_counter()
            with self.lock.exclusive(), torch_threads(self.measure_threads):
                waited = time.perf_counter() - asked
                throughput = measure_throughput(net, (c, h, w), self.device,
                                                self.settings.measure, plan.train.precision)
            trial.set_user_attr(ATTR_LOCK_WAIT, round(waited, 3))
        trial.set_user_attr("throughput", throughput.to_dict())
        rung_epochs = set(rungs(plan.train.epochs, self.settings.study.prune_eta)) \
            if self.settings.study.prune else set()

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
                trial.set_user_attr(ATTR_WORKER, self.identity.to_attr())  # a beat for journals
                last_beat = time.monotonic()
            if self.on_epoch is not None:
                self.on_epoch(trial.number, record)
            if record.epoch in rung_epochs:
                self._maybe_prune(trial, record, throughput.median)
            if stopping:
                raise Interrupted(f"stopped after epoch {record.epoch} (state saved)")

        started = time.perf_counter()
        try:
            result = train_model(
                model, self.data, plan.train, plan.seed,
                augment=self.settings.data.augment, on_epoch=epoch_done,
                state_path=state_path, extra_state={"throughput": throughput.to_dict()},
                epoch_guard=self.lock.shared, net=net, save_at=rung_epochs,
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
        if self.save_checkpoint is not None:
            self.save_checkpoint(trial, model, plan)
        state_path.unlink(missing_ok=True)
        return result.accuracy, throughput.median

    def _measure_key(self, plan: TrialPlan) -> str:
        """What an inference throughput depends on: the model, its numerics and compilation,
        how it is timed, and where (device, host, threads, torch); not how it is trained."""
        measure = dataclasses.asdict(self.settings.measure)
        for how_often in ("retries", "reuse", "threads"):
            measure.pop(how_often)
        train = plan.train
        blob = json.dumps({
            "model": plan.model.to_dict(),
            "precision": resolve_precision(self.device, train.precision),
            "compile": [train.compile, train.compile_mode] if train.compile else False,
            "measure": measure, "threads": self.measure_threads or torch.get_num_threads(),
            "device": [self.device.type, device_name(self.device)], "host": self.identity.host,
            "torch": torch.__version__,
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _find_measured(self, trial: optuna.Trial, measure_key: str) -> FrozenTrial | None:
        """The first trial whose throughput was measured under ``measure_key`` and not flagged
        noisy (any state: a failed or pruned trial measured before it trained)."""
        for t in trial.study.get_trials(deepcopy=False):
            if (t.number != trial.number and t.user_attrs.get(ATTR_MEASURE_KEY) == measure_key
                    and ATTR_MEASURED_BY not in t.user_attrs):
                figure = t.user_attrs.get("throughput")
                if isinstance(figure, dict) and not figure.get("noisy", True):
                    return t
        return None

    def _find_evaluated(self, trial: optuna.Trial, key: str) -> FrozenTrial | None:
        """A finished trial of the same experiment; waits for one still running elsewhere
        (started earlier), so that no experiment is trained twice at the same time."""
        while True:
            running = False
            for t in trial.study.get_trials(deepcopy=False, states=_EVALUATED):
                if t.number == trial.number or t.user_attrs.get("config_key") != key:
                    continue
                if t.user_attrs.get(ATTR_DUPLICATE) is not None:
                    continue
                if t.state == TrialState.RUNNING:
                    running = running or t.number < trial.number
                    continue
                return t
            if not running or self.stop.is_set():
                return None
            time.sleep(DUPLICATE_POLL_S)
            # A twin whose process died is never finished: fail (and re-queue) it as the run
            # loop does between trials, so that this trial stops waiting and trains.
            recover_orphans(trial.study, self.identity, lambda message: None)
            optuna.storages.fail_stale_trials(trial.study)

    def _answer_from(self, trial: optuna.Trial, known: FrozenTrial) -> tuple[float, float]:
        """Take the values of an identical finished experiment instead of training again."""
        trial.set_user_attr(ATTR_DUPLICATE, known.number)
        for key in _COPIED_ATTRS:
            if key in known.user_attrs:
                trial.set_user_attr(key, known.user_attrs[key])
        if known.state == TrialState.PRUNED:
            reason = f"same experiment as trial {known.number}, which was pruned"
            trial.set_user_attr(ATTR_PRUNE, reason)
            raise optuna.TrialPruned(reason)
        accuracy, throughput = known.values
        return accuracy, throughput

    def _maybe_prune(self, trial: optuna.Trial, record: EpochResult, throughput: float) -> None:
        """MO-ASHA: stop unless this trial ranks in the top 1/η of those at this rung."""
        study = self.settings.study
        others = []
        for t in trial.study.get_trials(deepcopy=False, states=_EVALUATED):
            if t.number == trial.number or t.user_attrs.get(ATTR_DUPLICATE) is not None:
                continue
            history = t.user_attrs.get(ATTR_HISTORY) or []
            thr = (t.user_attrs.get("throughput") or {}).get("median")
            if len(history) >= record.epoch and thr is not None:
                others.append((float(history[record.epoch - 1]["accuracy"]), float(thr)))
        decision = decide((record.accuracy, throughput), others, study.prune_eta,
                          study.prune_min_trials)
        if not decision.keep:
            trial.set_user_attr("pruned_at_epoch", record.epoch)
            trial.set_user_attr("rung_rank", [decision.rank, decision.size])
            trial.set_user_attr(ATTR_PRUNE, decision.reason(record.epoch))
            raise optuna.TrialPruned(decision.reason(record.epoch))

