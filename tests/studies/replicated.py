"""Realistic replicated studies without training: real Optuna trials in a real SQLite file.

A configuration's true accuracy and throughput follow the paper's picture on digits (accuracy
grows with the memory size S and saturates, more heads help a little, double normalization a few
tenths of a point; throughput falls with S and heads; self-attention is accurate and slow). Each
replicate adds seed noise to accuracy (sd 0.02, about ±3 points at 95% on 360 images) and
process noise to throughput (log-normal, sd 0.15), and one measurement in eight is flagged noisy.
Replicates go, as racing would give them, to the configurations nearest the observed front of
the means (at most ``max_replicates`` each), mixed in with new configurations; the runner's
snapshots (observed front after every trial that changes it; the confident front every
``Plan.confident_every`` trials) are recorded as the runner records them.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from studies.pareto import pareto_indices
from studies.record import TrialRecord
from studies.replicates import configured_front
from studies.snapshots import SnapshotStore

MEM_SIZES = (8, 16, 32, 64, 128)
HEADS = (1, 2, 4, 8)
NEW_SHARE = 0.55  # the share of trials that try a new configuration while some are left
NORMS = ("double", "softmax")


@dataclass(frozen=True)
class Design:
    params: dict[str, Any]
    model_config: dict[str, Any]
    accuracy: float  # true mean
    throughput: float  # true median img/s

    @property
    def key(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def designs(dims: tuple[int, ...] = (64,)) -> list[Design]:
    out = []
    for dim in dims:
        wide = math.log2(dim / 64)
        for s in MEM_SIZES:
            for h in HEADS:
                for norm in NORMS:
                    acc = (0.935 - 0.07 * math.exp(-s / 20) + 0.012 * math.log2(h)
                           - 0.003 * math.log2(h) ** 2 + (0.003 if norm == "double" else 0.0)
                           + 0.006 * wide)
                    thr = 14000.0 / (1 + s / 24) / (1 + 0.3 * h) / (1 + 0.6 * wide)
                    params = {"attention": "external", "mem_size": s, "heads": h, "norm": norm}
                    if len(dims) > 1:
                        params["dim"] = dim
                    out.append(Design(params, {**params, "dim": dim, "depth": 2}, acc, thr))
        for h in HEADS:
            params = {"attention": "self", "heads": h, **({"dim": dim} if len(dims) > 1 else {})}
            out.append(Design(params, {**params, "dim": dim, "depth": 2, "mem_size": 64,
                                       "norm": "double"},
                              0.94 + 0.006 * math.log2(h) + 0.006 * wide,
                              1500.0 / (1 + 0.3 * h) / (1 + 0.6 * wide)))
    return out


def settings(epochs: int = 12, dims: tuple[int, ...] = (64,)) -> dict[str, Any]:
    space: dict[str, Any] = {"attention": ["external", "self"], "mem_size": list(MEM_SIZES),
                             "heads": list(HEADS), "norm": list(NORMS)}
    if len(dims) > 1:
        space["dim"] = list(dims)
    return {"study": {"sampler": "tpe", "seed": 7, "replicates": "race", "max_replicates": 4,
                      "confidence": 0.95},
            "data": {"dataset": "digits", "val_fraction": 0.2},
            "model": {"depth": 2, **({} if len(dims) > 1 else {"dim": dims[0]})},
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01},
            "measure": {"batch_size": 256, "threads": 1},
            "space": space}


def _distributions(params: dict[str, Any]) -> dict[str, BaseDistribution]:
    choices = {"attention": ("external", "self"), "mem_size": MEM_SIZES, "heads": HEADS,
               "norm": NORMS, "dim": (32, 64)}
    out: dict[str, BaseDistribution] = {k: CategoricalDistribution(choices[k]) for k in params}
    return out


def _next_replicate(runs: dict[str, list[tuple[float, float]]], limit: int,
                    rng: random.Random) -> str | None:
    """The configuration nearest the front of the means that may have another run."""
    keys = list(runs)
    means = [(sum(a for a, _ in runs[k]) / len(runs[k]),
              math.exp(sum(math.log(t) for _, t in runs[k]) / len(runs[k]))) for k in keys]
    front = set(pareto_indices(means))
    beaten = [sum(1 for b in means if b[0] >= a[0] and b[1] >= a[1] and b != a) for a in means]
    open_ = [i for i, k in enumerate(keys) if len(runs[k]) < limit]
    if not open_:
        return None
    best = min(beaten[i] + (0 if i in front else 1) for i in open_)
    return keys[rng.choice([i for i in open_ if beaten[i] + (0 if i in front else 1) == best])]


def _trial(design: Design, replicate: int, rng: random.Random) -> optuna.trial.FrozenTrial:
    accuracy = min(max(design.accuracy + rng.gauss(0.0, 0.02), 0.0), 1.0)
    throughput = design.throughput * math.exp(rng.gauss(0.0, 0.15))
    spread = abs(rng.gauss(0.05, 0.04)) if rng.random() > 0.125 else 0.1 + rng.random() * 0.2
    params = dict(design.params)
    return create_trial(
        values=[accuracy, throughput], params=params, distributions=_distributions(params),
        user_attrs={"configuration": design.key, "replicate": replicate,
                    "model_config": design.model_config,
                    "params_count": 1000 * design.model_config["mem_size"]
                    * design.model_config["heads"],
                    "throughput": {"median": throughput, "spread": spread,
                                   "noisy": spread > 0.1, "threads": 1, "device": "cpu",
                                   "graph": False}})


@dataclass(frozen=True)
class Plan:
    """What :func:`make_study` makes."""

    trials: int  # COMPLETE replicates
    seed: int = 0
    dims: tuple[int, ...] = (64,)  # more than one: dim is searched too
    max_replicates: int = 4  # 1: one run per configuration
    epochs: int = 12  # stored as train.epochs
    pruned: int = 0  # PRUNED trials after the COMPLETE ones (no snapshot: the front is unchanged)
    confident_every: int = 0  # record the confident front every this many trials (0: never)


def make_study(url: str | None, name: str, plan: Plan) -> optuna.Study:
    """A study made as ``plan`` says in ``url`` (``None``: in memory, without snapshots)."""
    rng = random.Random(plan.seed)
    study = optuna.create_study(study_name=name, storage=url,
                                directions=["maximize", "maximize"])
    study.set_metric_names(["accuracy", "throughput"])
    study.set_user_attr("explore_settings", settings(plan.epochs, plan.dims))
    study.set_user_attr("created_by", "explore")
    store = SnapshotStore.from_url(url) if url is not None else None
    pool = designs(plan.dims)
    rng.shuffle(pool)
    by_key = {d.key: d for d in pool}
    runs: dict[str, list[tuple[float, float]]] = {}
    records: list[TrialRecord] = []
    for i in range(plan.trials):
        unexplored = [d for d in pool if d.key not in runs]
        key = None
        if runs and (not unexplored or rng.random() > NEW_SHARE):
            key = _next_replicate(runs, plan.max_replicates, rng)
        design = by_key[key] if key is not None else unexplored[0]
        frozen = _trial(design, len(runs.get(design.key, [])), rng)
        assert frozen.values is not None
        runs.setdefault(design.key, []).append((frozen.values[0], frozen.values[1]))
        study.add_trial(frozen)
        records.append(TrialRecord(i, "COMPLETE", tuple(frozen.values), frozen.params,
                                   frozen.user_attrs, None, None))
        if store is not None:
            _record(store, name, records, plan.confident_every)
    for _ in range(plan.pruned):
        params = dict(pool[0].params)
        study.add_trial(create_trial(state=TrialState.PRUNED, params=params,
                                     distributions=_distributions(params),
                                     user_attrs={"prune_reason": "below the median"}))
    if store is not None:
        store.engine.dispose()
    return study


def _record(store: SnapshotStore, name: str, records: list[TrialRecord],
            confident_every: int) -> None:
    """What the runner records after a trial: the observed front, the confident front."""
    values = [(r.values[0], r.values[1]) for r in records if r.values]
    members = [(records[i].number, *values[i]) for i in pareto_indices(values)]
    store.record(name, len(records), members)
    if confident_every and len(records) % confident_every == 0:
        store.record_confident(name, len(records), configured_front(records, 0.95, 7))
