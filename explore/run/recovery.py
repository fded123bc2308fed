"""Trials that outlive their process: find them, fail them, queue them again.

Optuna's heartbeat does this for RDB storages across machines, but only after its grace period.
explore also knows which process ran a trial (host, pid, process start time), so on start it
re-queues trials whose process on *this* host is gone at once — and on journal storages, which
have no heartbeat, trials of other hosts whose last beat is too old. A re-queued trial keeps its
params; its training state file (named by the experiment) lets it continue from its last epoch.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from studies.internals import storage_of, trial_id
from studies.record import (
    ATTR_CONFIGURATION,
    ATTR_REPLICATE,
    ATTR_RETRIED,
    ATTR_RETRY_COUNT,
    ATTR_RETRY_OF,
    ATTR_WORKER,
)

__all__ = ["MAX_RETRY", "WorkerIdentity", "recover_orphans", "requeue", "stop_on_signals"]

MAX_RETRY = 3  # re-queues of one experiment after interruptions or crashes
# A worker names itself on its trial within milliseconds of Optuna starting it. A process killed
# in between leaves a RUNNING trial with no owner and no Optuna heartbeat (whose stale check
# skips trials that never beat), which nothing else would ever end: a run waiting for the last
# slot of the budget would wait forever.
UNOWNED_AFTER_S = 60.0
FIXED_PARAMS = "fixed_params"  # Optuna's system attr: the params ``enqueue_trial`` gave a trial


def _process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int
    started: str | None

    @classmethod
    def current(cls) -> WorkerIdentity:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def to_attr(self) -> dict[str, Any]:
        return {**asdict(self), "beat": time.time()}

    def is_alive_here(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.started is None or _process_start(self.pid) == self.started


def requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Queue a WAITING copy of ``trial``'s params; False when its retries are used up."""
    count = int(trial.user_attrs.get(ATTR_RETRY_COUNT, 0)) + 1
    if count > MAX_RETRY:
        return False
    origin = trial.user_attrs.get(ATTR_RETRY_OF, trial.number)
    # A replicate stays that replicate of its configuration (racing asked for it).
    identity = {k: trial.user_attrs[k] for k in (ATTR_CONFIGURATION, ATTR_REPLICATE)
                if k in trial.user_attrs}
    # A queued trial (a replicate, a warm-start anchor, a retry) killed before it suggested
    # its params has none yet: it keeps the ones it was queued with, or its retry would be
    # whatever the sampler picks, still named as the queued configuration's replicate.
    params = {**trial.system_attrs.get(FIXED_PARAMS, {}), **trial.params}
    study.enqueue_trial(params, user_attrs={
        ATTR_RETRY_OF: origin, ATTR_RETRIED: trial.number, ATTR_RETRY_COUNT: count,
        "retry_reason": reason, **identity}, skip_if_exists=False)
    return True


def recover_orphans(study: optuna.Study, me: WorkerIdentity,
                    message: Callable[[str], None], stale_after: float | None = None,
                    unowned: dict[int, float] | None = None) -> int:
    """Fail and re-queue RUNNING trials whose worker is dead. Returns how many.

    Args:
        study: The study.
        me: This process.
        message: Where to say what was recovered.
        stale_after: Seconds without a beat after which another host's trial counts as dead
            (journal storages, which have no heartbeat); None trusts Optuna's heartbeat.
        unowned: When given (kept by the caller between calls), RUNNING trials that no worker
            has named itself on are noted here with the time first seen, and count as dead
            after :data:`UNOWNED_AFTER_S` (see there).
    """
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        info = trial.user_attrs.get(ATTR_WORKER)
        if isinstance(info, dict):
            owner = WorkerIdentity(info.get("host", ""), int(info.get("pid", -1)),
                                   info.get("started"))
            if owner == me:
                continue
            if owner.host == me.host:
                dead = not owner.is_alive_here()
            else:
                silent = time.time() - float(info.get("beat", 0))
                dead = stale_after is not None and silent > stale_after
            who = f"worker {owner.host}:{owner.pid}"
        elif unowned is not None:
            first_seen = unowned.setdefault(trial_id(trial), time.monotonic())
            dead = time.monotonic() - first_seen > UNOWNED_AFTER_S
            who = "a worker that never named itself"
        else:
            continue
        if not dead:
            continue
        try:
            storage_of(study).set_trial_user_attr(
                trial_id(trial), "fail_reason", f"{who} died while running it; re-queued")
            if not storage_of(study).set_trial_state_values(trial_id(trial), TrialState.FAIL):
                continue
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # another process recovered or finished it first
        fresh = storage_of(study).get_trial(trial_id(trial))
        if requeue(study, fresh, reason="worker died"):
            message(f"trial {trial.number} was left running by a dead worker: re-queued")
        recovered += 1
    return recovered


@contextmanager
def stop_on_signals(stop: threading.Event, message: Callable[[str], None], name: str,
                    enabled: bool) -> Iterator[dict[str, int]]:
    """First SIGINT/SIGTERM: finish the current epoch, save, stop. Second SIGINT: exit now.
    ``name``: what follows ``--name`` in the command that continues (the study and its
    ``--storage``)."""
    received: dict[str, int] = {}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            os._exit(130)  # the heartbeat / orphan recovery re-queues the running trial
        stop.set()
        received["signal"] = signum
        message(f"stopping after the current epoch (state is saved); continue with: "
                f"explore study run --name {name}   (Ctrl-C again exits now)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
