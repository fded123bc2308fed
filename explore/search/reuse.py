"""The study as a cache of evaluated work: experiments already trained, architectures already
measured.

- An experiment (equal :attr:`~explore.plan.TrialPlan.key`) finished once is not trained again:
  a repeat takes its values (``duplicate_of``). Replicate r of a configuration has its own key,
  so it is a new experiment, never a repeat of replicate 0.
- With ``[measure] reuse``, an architecture measured once on a machine (equal measure key) takes
  that figure instead of measuring again (``throughput_from``); racing turns this off where the
  device is noisy, so that every replicate measures at another moment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from explore.config import Settings
from explore.engine.device import device_name, resolve_precision
from explore.plan import TrialPlan
from explore.run.recovery import WorkerIdentity, recover_orphans
from studies.internals import storage_of, trial_id
from studies.record import (
    ATTR_CONFIG_KEY,
    ATTR_DUPLICATE,
    ATTR_KEY_AT,
    ATTR_MEASURE_KEY,
    ATTR_MEASURED_BY,
    ATTR_PRUNE,
    ATTR_THROUGHPUT,
)

__all__ = ["answer_from", "find_evaluated", "find_measured", "measure_key"]

DUPLICATE_POLL_S = 1.0
EVALUATED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# What a duplicate copies from the trial it repeats (not its history or checkpoint).
COPIED_ATTRS = ("model_config", "seed", "params_count", "flops_per_image", "throughput",
                "throughput_spread_pct", "throughput_noisy", "train_seconds", "device",
                "device_name", "precision")


def measure_key(plan: TrialPlan, settings: Settings, device: torch.device, threads: int,
                host: str, replicate: int = 0) -> str:
    """What an inference throughput depends on: the model, its numerics and compilation,
    how it is timed, and where (device, host, threads, torch); not how it is trained.
    ``replicate`` > 0 keeps a replicate's figure its own (its own moment)."""
    measure = dataclasses.asdict(settings.measure)
    for how_often in ("retries", "reuse", "threads"):
        measure.pop(how_often)
    train = plan.train
    blob = json.dumps({
        "model": plan.model.to_dict(),
        "precision": resolve_precision(device, train.precision),
        "compile": [train.compile, train.compile_mode] if train.compile else False,
        "measure": measure, "threads": threads or torch.get_num_threads(),
        "device": [device.type, device_name(device)], "host": host,
        "torch": torch.__version__,
        **({"replicate": replicate} if replicate else {}),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def find_measured(trial: optuna.Trial, key: str) -> FrozenTrial | None:
    """The first trial whose throughput was measured under ``key`` and not flagged noisy (any
    state: a failed or pruned trial measured before it trained)."""
    for t in trial.study.get_trials(deepcopy=False):
        if (t.number != trial.number and t.user_attrs.get(ATTR_MEASURE_KEY) == key
                and ATTR_MEASURED_BY not in t.user_attrs):
            figure = t.user_attrs.get(ATTR_THROUGHPUT)
            if isinstance(figure, dict) and not figure.get("noisy", True):
                return t
    return None


def _order(t: FrozenTrial) -> tuple[float, int]:
    """Which of two running twins trains: the one that stored its key first (a twin from
    before the time was stored: by trial number)."""
    at = t.user_attrs.get(ATTR_KEY_AT)
    return (float(at) if isinstance(at, (int, float)) else float("-inf"), t.number)


def find_evaluated(trial: optuna.Trial, key: str, stop: threading.Event,
                   identity: WorkerIdentity) -> FrozenTrial | None:
    """A finished trial of the same experiment; waits for one still running elsewhere that
    stored its key first, so that no experiment is trained twice at the same time.

    Each trial stores its key, then the time (``config_key_at``), then looks. Of two twins the
    one with the earlier time never waits (it may not have seen the other), and the later one
    always sees it and waits: one order both read alike, so they never wait for each other.
    Equal trial numbers, retries and queued replicates included, all follow it.
    """
    mine = storage_of(trial.study).get_trial(trial_id(trial))
    me = _order(mine)
    while True:
        running = False
        for t in trial.study.get_trials(deepcopy=False, states=EVALUATED):
            if t.number == trial.number or t.user_attrs.get(ATTR_CONFIG_KEY) != key:
                continue
            if t.user_attrs.get(ATTR_DUPLICATE) is not None:
                continue
            if t.state == TrialState.RUNNING:
                running = running or _order(t) < me
                continue
            return t
        if not running or stop.is_set():
            return None
        time.sleep(DUPLICATE_POLL_S)
        # A twin whose process died is never finished: fail (and re-queue) it as the run
        # loop does between trials, so that this trial stops waiting and trains.
        recover_orphans(trial.study, identity, lambda message: None)
        optuna.storages.fail_stale_trials(trial.study)


def answer_from(trial: optuna.Trial, known: FrozenTrial) -> tuple[float, float]:
    """Take the values of an identical finished experiment instead of training again."""
    trial.set_user_attr(ATTR_DUPLICATE, known.number)
    for key in COPIED_ATTRS:
        if key in known.user_attrs:
            trial.set_user_attr(key, known.user_attrs[key])
    if known.state == TrialState.PRUNED:
        reason = f"same experiment as trial {known.number}, which was pruned"
        trial.set_user_attr(ATTR_PRUNE, reason)
        raise optuna.TrialPruned(reason)
    accuracy, throughput = known.values
    return accuracy, throughput
