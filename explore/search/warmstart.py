"""Warm start: throughput is cheap, accuracy is not, so learn the cheap objective first.

A trial's throughput takes a fraction of a second to measure and needs no training; its accuracy
takes the whole training run. Before a new study trains anything, one process probes the
inference throughput of every configuration of a finite space (or of a random sample of a large
or continuous one) with a short measurement, probes the leading ones again in alternating order
(a slow spell of the machine must not pick the anchors), and enqueues the ``warm_start``
fastest distinct models as the first trials. The fastest configuration is the front's
high-throughput end, which no sampler can know before it has tried it; samplers starting from
random proposals find it late or never (TPE spends its first ten trials at random, NSGA-II its
first generation of 50).

The probe's figures are stored in the study (user attr ``explore_warm_start``) and are only used
to choose what to train first: every trial still measures its own throughput properly.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import torch

from explore.config import Settings
from explore.engine.device import resolve_precision, torch_threads
from explore.engine.locks import MachineLock
from explore.engine.measure import measure_throughput
from explore.plan import plan_trial
from explore.run.recovery import WorkerIdentity
from explore.search.budget import count_finished, count_running
from extattn import create_model
from studies.record import ATTR_ANCHOR, ATTR_PROBE_RATE, ATTR_WARM

__all__ = ["ATTR_WARM", "PROBE_LIMIT", "mark_pending", "pending", "prober", "release",
           "take_turn", "warm_start"]

PROBE_LIMIT = 64  # configurations probed at most (a random sample of larger spaces)
PROBE_BUDGET_S = 30.0  # stop probing after this long and use what was measured
REPROBE_FACTOR = 3  # the 3 × warm_start fastest of the screen are probed at the trial's batch ...
REPROBE_ROUNDS = 2  # ... this many times, and each ranks by its fastest pass of all rounds
CLAIM_SETTLE_S = 0.3  # a claim is read back this long after it is written (see take_turn)
WAIT_LIMIT_S = PROBE_BUDGET_S * 3  # another host's claim this old is taken over; waits end


def mark_pending(study: optuna.Study, settings: Settings) -> None:
    """At creation: this study's first run probes and enqueues (when warm start is on and the
    sampler does not enumerate the space itself)."""
    if settings.study.warm_start > 0 and settings.study.sampler not in ("grid", "bruteforce"):
        study.set_user_attr(ATTR_WARM, {"state": "pending"})  # grids enumerate in their order


def pending(study: optuna.Study) -> bool:
    """Whether the probe is still to come: not started, or claimed by a process (probing)."""
    value = study.user_attrs.get(ATTR_WARM)
    return isinstance(value, dict) and value.get("state") in ("pending", "probing")


def prober(record: dict[str, Any]) -> WorkerIdentity | None:
    """The process that claimed the probe (``state`` "probing"), if any."""
    by = record.get("by")
    if record.get("state") != "probing" or not isinstance(by, dict):
        return None
    return WorkerIdentity(str(by.get("host", "")), int(by.get("pid", -1)), by.get("started"))


def lapsed(record: dict[str, Any], me: WorkerIdentity) -> bool:
    """Whether a claimed probe will not finish: its process died (this host), or the claim is
    older than :data:`WAIT_LIMIT_S` (another host, whose processes cannot be seen from here)."""
    owner = prober(record)
    if owner is None:
        return True
    if owner.host == me.host:
        return not owner.is_alive_here()
    return time.time() - float(record.get("since", 0.0)) > WAIT_LIMIT_S


def take_turn(study: optuna.Study, me: WorkerIdentity, may_probe: bool,
              message: Callable[[str], None]) -> bool:
    """Whether this process probes now, or another one does (or did) it.

    One process per study probes, however many workers on however many hosts start at once:
    a process that may probe (worker 0 of its command) claims a pending probe by writing
    itself into the study's record, and reads the record back :data:`CLAIM_SETTLE_S` later.
    Processes that all saw the probe pending all write before any of them reads back (a write
    follows its read within milliseconds), so they all read the last writer, which probes; the
    others wait for it, as the workers that may not probe do. A claim whose process has died
    (same host) or that is older than :data:`WAIT_LIMIT_S` (another host) is taken over.
    Returns False once the probe is done, or after waiting :data:`WAIT_LIMIT_S` (training then
    starts without anchors).
    """
    deadline = time.monotonic() + WAIT_LIMIT_S
    told = False
    while time.monotonic() < deadline:
        record = study.user_attrs.get(ATTR_WARM)
        if not isinstance(record, dict) or record.get("state") not in ("pending", "probing"):
            return False
        if may_probe and (record["state"] == "pending" or prober(record) == me
                          or lapsed(record, me)):  # (its own claim: a probe that raised)
            study.set_user_attr(ATTR_WARM, {"state": "probing", "by": me.to_attr(),
                                            "since": time.time()})
            time.sleep(CLAIM_SETTLE_S)
            record = study.user_attrs.get(ATTR_WARM)
            if isinstance(record, dict) and prober(record) == me:
                return True
            continue
        owner = prober(record)
        if owner is not None and not told:
            message(f"warm start: waiting for the throughput probe of worker "
                    f"{owner.host}:{owner.pid}")
            told = True
        time.sleep(0.5)
    return False


def release(study: optuna.Study, me: WorkerIdentity) -> None:
    """Give a claimed probe back (it raised): pending again, unless another process has
    claimed or finished it meanwhile. Best effort: a storage that fails here is left as it is
    (the claim then lapses with its process)."""
    try:
        record = study.user_attrs.get(ATTR_WARM)
        if isinstance(record, dict) and prober(record) == me:
            study.set_user_attr(ATTR_WARM, {"state": "pending"})
    except Exception:  # noqa: BLE001 - the probe's own error is the one to report
        pass


def _candidates(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """Every distinct configuration of a finite space, else a seeded random sample of it."""
    space = settings.space
    if space.discrete:
        points = list(space.combinations(settings.model, limit=100_000))
        if len(points) <= limit:
            return points
        return random.Random(settings.study.seed).sample(points, limit)
    sampler = optuna.samplers.RandomSampler(seed=settings.study.seed)
    scratch = optuna.create_study(sampler=sampler)  # in memory: never stored
    points = []
    for _ in range(limit):
        trial = scratch.ask()
        points.append(space.suggest(trial, settings.model))
        scratch.tell(trial, 0.0)
    return points


def warm_start(study: optuna.Study, settings: Settings, image_shape: tuple[int, int, int],
               num_classes: int, device: torch.device, lock: MachineLock,
               message: Callable[[str], None], threads: int = 0,
               me: WorkerIdentity | None = None) -> list[dict[str, Any]]:
    """Probe, enqueue the fastest ``settings.study.warm_start`` models, record it; returns the
    enqueued params (fastest first). ``threads``: as the trials measure (0: as they are).
    ``me``: the process probing (recorded as ``by``; see :func:`take_turn`)."""
    c, h, _ = image_shape
    started = time.monotonic()
    # A probe is one warm-up and a timed pass or two, ranked by the fastest pass (other work
    # only ever slows a pass down). The screen of every model runs a quarter of the trial's batch
    # on CPU (the trial's batch on GPUs, where small batches all wait on kernel launches) ...
    full = replace(settings.measure, warmup=1, min_iters=2, min_time=0.0, retries=0)
    screen = replace(full, min_iters=1, batch_size=full.batch_size if device.type == "cuda"
                     else max(1, full.batch_size // 4))
    # (model config, precision) → (model, params, precision)
    models: dict[str, tuple[torch.nn.Module, dict[str, Any], str]] = {}
    screened: dict[str, float] = {}  # model config → img/s at the screen's batch
    rates: dict[str, float] = {}  # model config → fastest img/s at the trial's batch

    def over_time() -> bool:
        return time.monotonic() - started > PROBE_BUDGET_S

    with lock.exclusive(), torch_threads(threads):
        for params in _candidates(settings, PROBE_LIMIT):
            if over_time():
                break
            try:
                plan = plan_trial(params, settings, (h, c, num_classes))
            except ValueError:
                continue  # impossible here: the trial would be pruned anyway
            precision = resolve_precision(device, plan.train.precision)
            key = json.dumps([plan.model.to_dict(), precision], sort_keys=True)
            if key in models:
                continue  # differs in other training fields only: same throughput
            torch.manual_seed(plan.seed)
            try:
                model = create_model(plan.model).to(device)
                screened[key] = measure_throughput(model, image_shape, device, screen,
                                                   precision).max
                models[key] = (model, params, precision)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()  # too big for this device: its trial will say so
                continue
        # ... and the contenders for the anchors are probed at the trial's batch, several times
        # in alternating order: a slow spell of the machine must not decide what trains first.
        contenders = sorted(screened, key=lambda k: -screened[k])
        contenders = contenders[:REPROBE_FACTOR * settings.study.warm_start]
        for round_ in range(REPROBE_ROUNDS):
            for key in contenders[::-1] if round_ % 2 == 0 else contenders:
                if over_time() and key in rates:
                    continue
                probed_model, _, precision = models[key]
                rate = measure_throughput(probed_model, image_shape, device, full, precision).max
                rates[key] = max(rate, rates.get(key, 0.0))
    probed = len(screened)
    measured = {key: (rates[key], models[key][1]) for key in rates}
    rest = sorted(((screened[key], models[key][1]) for key in screened if key not in rates),
                  key=lambda item: -item[0])
    models.clear()  # free the models before training starts
    ranked = sorted(measured.values(), key=lambda item: -item[0])
    # Never a configuration the study has already (a probe cut short and run again), and never
    # more than the budget has left: a queued anchor would outlive the run.
    tried = {json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)}
    left = settings.study.trials - count_finished(study) - count_running(study)
    anchors = [(rate, params) for rate, params in ranked
               if json.dumps(params, sort_keys=True) not in tried]
    anchors = anchors[:max(0, min(settings.study.warm_start, left))]
    for rank, (rate, params) in enumerate(anchors, 1):
        study.enqueue_trial(params, user_attrs={ATTR_ANCHOR: rank, ATTR_PROBE_RATE: round(rate)},
                            skip_if_exists=True)
    seconds = time.monotonic() - started
    me = me or WorkerIdentity.current()
    study.set_user_attr(ATTR_WARM, {
        "state": "done", "by": {"host": me.host, "pid": me.pid},
        "probed": probed, "seconds": round(seconds, 2),
        "batch_size": full.batch_size, "screen_batch_size": screen.batch_size,
        "anchors": [{"params": p, "img_s": round(r)} for r, p in anchors],
        # The contenders at the trial's batch, then the rest at the screen's; fastest first.
        "probes": [{"params": p, "img_s": round(r)} for r, p in ranked],
        "screened": [{"params": p, "img_s": round(r)} for r, p in rest],
    })
    first = (f"training the {len(anchors)} fastest first" if anchors
             else "the fastest are trained or queued already")
    message(f"warm start: probed the throughput of {probed} configurations in {seconds:.1f} s; "
            f"{first}")
    return [p for _, p in anchors]
