"""Racing's replicate policy against fixed K on a known truth, without training (seconds).

The truth is ``benchmarks/racing_truth.json``: the means of the 40 configurations of the default
digits space from a fixed K = 3 study, and the pooled seed noise of that study (accuracy sd 1.66
points, throughput sd 0.254 on the log scale). Each simulated training run draws an accuracy and
a throughput around its configuration's truth with that noise. A run of the simulation is a real
in-memory Optuna study driven as ``explore study run`` drives one: new configurations in a random
order (the sampler's part), replicates queued by :func:`explore.search.racing.enqueue` after every
run, and the noise-aware front of :mod:`studies.replicates` read at several budgets.

Compared, over ``--seeds`` seeds each and the same draws of the truth:

- ``race``: the policy as it is (fewest runs first among the configurations that earn one);
- ``front-first``: the same targets served the likelier front member first (the order before
  2026-12-03);
- ``fixed K``: every configuration K times (``--k``, default 3), explored in the same order.

Printed per budget: configurations explored, confidently dominated (P <= 0.05; the decisions),
plausible (P >= 0.5), and wrong decisions: true Pareto-optimal configurations called dominated.
Goal: racing decides at half the runs what fixed K decides at all of them (its mean dominated
count at K x 40 / 2 runs >= fixed K's at K x 40), with no more wrong decisions per decision.

    python benchmarks/racing_policy.py [--seeds 6] [--k 3]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from explore.config import Settings, resolve_settings  # noqa: E402
from explore.search import racing  # noqa: E402
from studies.noisyfront import front_mask  # noqa: E402
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE  # noqa: E402
from studies.replicates import configured_front  # noqa: E402

TRUTH = REPO / "benchmarks" / "racing_truth.json"
Policy = Callable[[optuna.Study, Settings, bool], None]


def load_truth() -> tuple[dict[str, tuple[float, float]], float, float]:
    doc = json.loads(TRUTH.read_text(encoding="utf-8"))
    truth = {json.dumps(c["params"], sort_keys=True): (c["accuracy"], c["throughput"])
             for c in doc["configurations"]}
    return truth, doc["noise"]["accuracy_sd"], doc["noise"]["log_throughput_sd"]


def true_front(truth: dict[str, tuple[float, float]], tolerance: float = 0.0) -> set[str]:
    """The truth's front with ties up to ``tolerance`` (a fraction) given to the faster one, by
    the rule the tool's front uses (:func:`studies.noisyfront.front_mask`)."""
    keys = sorted(truth)
    keep = front_mask([[truth[k][0] for k in keys]], [[truth[k][1] for k in keys]], tolerance)[0]
    return {k for k, kept in zip(keys, keep, strict=True) if kept}


def race(study: optuna.Study, settings: Settings, exhausted: bool) -> None:
    racing.enqueue(study, settings, exhausted)


def front_first(study: optuna.Study, settings: Settings, exhausted: bool) -> None:
    """The same targets, the likelier front member served first."""
    plan = racing.plan

    def ordered(trials: list[Any], settings: Settings, exhausted: bool = False) -> list[Any]:
        asked = plan(trials, settings, exhausted)
        cf = racing.front_of(trials, settings)
        runs = {c.key: len(c.trials) for c in cf.configs}
        return sorted(asked, key=lambda w: (-cf.front.probability[w.configuration],
                                            runs[w.configuration]))

    racing.plan = ordered
    try:
        racing.enqueue(study, settings, exhausted)
    finally:
        racing.plan = plan


def simulate(policy: Policy, replicates: str | int, budget: int, seed: int,
             checkpoints: list[int], tolerance: float, throughput_sd: float | None = None
             ) -> dict[int, tuple[int, int, int, int]]:
    """One simulated study; at each checkpoint: (explored, dominated, plausible, wrong).
    ``throughput_sd``: the per-run noise of log throughput instead of the truth's."""
    truth, sd_acc, sd_log = load_truth()
    sd_log = sd_log if throughput_sd is None else throughput_sd
    front = true_front(truth, tolerance / 100.0)
    order = sorted(truth)
    choices: dict[str, list[Any]] = {}
    for key in order:
        for name, value in json.loads(key).items():
            if value not in choices.setdefault(name, []):
                choices[name].append(value)
    random.Random(seed).shuffle(order)
    noise = np.random.default_rng(seed)
    settings = resolve_settings({"study": {"trials": budget, "replicates": replicates,
                                           "seed": seed, "accuracy_tolerance": tolerance}})
    study = optuna.create_study(directions=["maximize", "maximize"])
    explored = 0
    out: dict[int, tuple[int, int, int, int]] = {}
    for n in range(1, budget + 1):
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if explored == len(order):
                break  # nothing queued and nothing new: the policy stopped
            key = order[explored]
            explored += 1
            study.enqueue_trial(json.loads(key), user_attrs={ATTR_CONFIGURATION: key,
                                                             ATTR_REPLICATE: 0})
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, values)  # the queued (fixed) values
                  for name, values in choices.items()}
        acc, rate = truth[json.dumps(params, sort_keys=True)]
        study.tell(trial, [acc + noise.normal(0.0, sd_acc),
                           rate * math.exp(noise.normal(0.0, sd_log))])
        policy(study, settings, explored == len(order))
        if n in checkpoints:
            cf = configured_front([racing.record_of(t) for t in study.get_trials()], 0.95, 0,
                                  draws=1000, tolerance=tolerance / 100.0)
            dominated = set(cf.front.dominated)
            out[n] = (len(cf.configs), len(dominated), len(cf.front.plausible),
                      len(dominated & front))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=Settings().study.accuracy_tolerance,
                        help="[study] accuracy_tolerance, points (default: the default)")
    parser.add_argument("--throughput-sd", type=float, default=None,
                        help="per-run noise of log throughput (default: the truth's, 0.254)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    truth, _, _ = load_truth()
    full = args.k * len(truth)
    checkpoints = sorted({Settings().study.trials, len(truth), full // 2, full * 2 // 3, full})
    searches: list[tuple[str, Policy, str | int]] = [
        ("race", race, "race"), ("front-first", front_first, "race"),
        (f"fixed K = {args.k}", race, args.k)]
    results: dict[str, list[dict[int, tuple[int, int, int, int]]]] = {}
    for name, policy, replicates in searches:
        results[name] = [simulate(policy, replicates, full, seed, checkpoints, args.tolerance,
                                    args.throughput_sd)
                         for seed in range(args.seeds)]
        print(f"  {name}: done", file=sys.stderr, flush=True)
    print(f"# racing policy: {len(truth)} configurations, "
          f"{len(true_front(truth, args.tolerance / 100))} truly on the front (accuracy "
          f"tolerance {args.tolerance:g} points), {args.seeds} seeds, means over seeds, "
          f"throughput noise sd {args.throughput_sd or load_truth()[2]:.3g} (log)\n")
    print("| search | runs | explored | dominated (P <= 0.05) | plausible | wrong |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        for n in checkpoints:
            rows = [r[n] for r in runs if n in r]
            if rows:
                cells = [statistics.mean(r[i] for r in rows) for i in range(4)]
                print(f"| {name} | {n} | {cells[0]:.1f} | {cells[1]:.1f} | {cells[2]:.1f} | "
                      f"{cells[3]:.1f} |")
    half = [r[full // 2][1] for r in results["race"] if full // 2 in r]
    fixed = [r[full][1] for r in results[f"fixed K = {args.k}"] if full in r]
    ok = bool(half and fixed) and statistics.mean(half) >= statistics.mean(fixed)
    print(f"\nracing at {full // 2} runs decides {statistics.mean(half):.1f} configurations, "
          f"fixed K = {args.k} at {full}: {statistics.mean(fixed):.1f} "
          f"(goal: racing >= fixed at half the runs): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
