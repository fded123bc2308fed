"""Racing's replicate policy against fixed K on a known truth, without training (seconds).

The truth is ``benchmarks/racing_truth.json`` (``--truth``): the 40 configurations' means of a
fixed K = 3 study of the default digits space (``repeatability.py``'s ``fixed3-s1.db``), shrunk
towards their grand mean by the share of their spread that the noise does not explain (each mean
of 3 runs carries noise/sqrt(3) besides its truth), and that study's pooled noise; the file names
its study and date. ``--write-truth DB`` writes it from another study. Each simulated training run
draws an accuracy and a throughput around its configuration's truth with that noise; replicate r
of a configuration draws the same noise in every search of the same seed, as it trains with the
same seed in every real study of the same study seed. A run of the simulation is a real
in-memory Optuna study driven as ``explore study run`` drives one: new configurations in a random
order (the sampler's part), replicates queued by :func:`explore.search.racing.enqueue` after every
run, and the noise-aware front of :mod:`studies.replicates` read at several budgets.

Compared, over ``--seeds`` seeds each and the same draws of the truth:

- ``race``: the policy as it is (fewest runs first among the configurations that earn one);
- ``front-first``: the same targets served the likelier front member first (the order before
  2026-12-03);
- ``fixed K``: every configuration K times (``--k``, default 3), explored in the same order.

Printed per budget: configurations explored, confidently dominated (P <= 0.05; the decisions),
plausible (P >= 0.5), the plausible front's median 95% interval widths (sharpness, as
``repeatability.py`` measures it; mean over the seeds whose front has one), wrong decisions
(truly Pareto-optimal configurations called dominated), the share of fixed K's final
dominated set held, and whether the fronts agree on every claim.
Then the runs each search needs to reach fixed K's answer (>= 90% of its dominated set and no
front claim contradicted, at that budget and every later one; ``repeatability.py``'s rule).
Goal: racing's median over seeds at most half of fixed K's runs.

    python benchmarks/racing_policy.py [--seeds 6] [--k 3] [--truth FILE]
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
sys.path.insert(0, str(REPO / "benchmarks"))

import repeatability  # noqa: E402 (the matching rule: one definition for both benchmarks)

from explore.config import Settings, resolve_settings  # noqa: E402
from explore.search import racing  # noqa: E402
from studies.noisyfront import front_mask  # noqa: E402
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE  # noqa: E402
from studies.replicates import configured_front  # noqa: E402

TRUTH = REPO / "benchmarks" / "racing_truth.json"
Policy = Callable[[optuna.Study, Settings, bool], None]
# means, accuracy sd, log-throughput sd at the centre, its slope with log speed, the centre
Truth = tuple[dict[str, tuple[float, float]], float, float, float, float]
COVER = 0.9  # racing matches fixed K: it dominates >= 90% of what fixed K dominates ...


def load_truth(path: Path = TRUTH) -> Truth:
    doc = json.loads(path.read_text(encoding="utf-8"))
    truth = {json.dumps(c["params"], sort_keys=True): (c["accuracy"], c["throughput"])
             for c in doc["configurations"]}
    noise = doc["noise"]
    return (truth, noise["accuracy_sd"], noise["log_throughput_sd"],
            noise.get("log_throughput_slope", 0.0), noise.get("log_throughput_centre", 0.0))


def truth_from(db: Path) -> dict[str, Any]:
    """A truth file's content from a fixed-K study (``repeatability.py``'s ``fixed3-s1.db``):
    each configuration's mean accuracy and throughput as the tool reads them (relative to the
    reference model where the study timed one) and the noise pooled over the study."""
    from studies.catalog import open_catalog  # noqa: PLC0415 (only this option reads a study)

    with open_catalog(f"sqlite:///{db.resolve()}") as catalog:
        meta = catalog.studies()[0]
        cf = configured_front(catalog.trials(meta), 0.95, 0)
    noise = cf.front.noise
    # Each configuration's mean of K runs holds noise/sqrt(K) besides its truth: shrunk towards
    # the grand mean by the share of their spread that the noise does not explain (the
    # empirical-Bayes estimate of the true means, as the front's partial pooling reads them).
    # Unshrunk, a space of tied accuracies would be simulated as spread out.
    acc = {c.key: cf.estimate(c.key).accuracy.mean for c in cf.configs}
    log_rate = {c.key: math.log(cf.estimate(c.key).throughput.mean) for c in cf.configs}
    runs = {c.key: len(c.trials) for c in cf.configs}

    def shrunk(means: dict[str, float], sd: Callable[[float], float]) -> dict[str, float]:
        grand, spread = statistics.mean(means.values()), statistics.pvariance(means.values())
        noise_var = statistics.mean(sd(m) ** 2 / runs[k] for k, m in means.items())
        keep = max(0.0, spread - noise_var) / spread if spread > 0 else 0.0
        return {k: grand + keep * (m - grand) for k, m in means.items()}

    acc = shrunk(acc, lambda _: noise.accuracy_sd or 0.0)
    log_rate = shrunk(log_rate, lambda m: noise.log_throughput_sd_at(m) or 0.0)
    times = [t.datetime_complete for c in cf.configs for t in c.trials if t.datetime_complete]
    return {
        "what": "means of a fixed-K study of the default digits space, shrunk towards the "
                "grand mean by the share of their spread the noise does not explain: the truth "
                "benchmarks/racing_policy.py simulates",
        "from": f"benchmarks/racing_policy.py --write-truth {db.name}",
        "measured": f"{min(times):%Y-%m-%d %H:%M}–{max(times):%H:%M} UTC" if times else None,
        "noise": {"accuracy_sd": round(noise.accuracy_sd or 0.0, 5),
                  "log_throughput_sd": round(noise.log_throughput_sd or 0.0, 5),
                  "log_throughput_slope": round(noise.log_throughput_slope, 4),
                  "log_throughput_centre": round(noise.log_throughput_centre, 5),
                  "df": noise.df, "source": "pooled within configurations over the same study"},
        "configurations": [
            {"params": c.params, "runs": len(c.trials),
             "accuracy": round(acc[c.key], 5), "throughput": round(math.exp(log_rate[c.key]), 1)}
            for c in cf.configs],
    }


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
             truth: Truth, tolerance: float) -> list[Any]:
    """One simulated study: its trials as the readers see them, by trial number. Replicate r of
    a configuration draws the same noise in every search of the same seed (as replicate r
    trains with the same seed in every real study of the same study seed), so racing is judged
    on the very runs fixed K made."""
    means, sd_acc, sd_log, slope, centre = truth
    order = sorted(means)
    index = {key: i for i, key in enumerate(order)}
    choices: dict[str, list[Any]] = {}
    for key in order:
        for name, value in json.loads(key).items():
            if value not in choices.setdefault(name, []):
                choices[name].append(value)
    random.Random(seed).shuffle(order)
    settings = resolve_settings({"study": {"trials": budget, "replicates": replicates,
                                           "seed": seed, "accuracy_tolerance": tolerance}})
    study = optuna.create_study(directions=["maximize", "maximize"])
    explored = 0
    for _ in range(budget):
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
        key = json.dumps(params, sort_keys=True)
        acc, rate = means[key]
        draw = np.random.default_rng([seed, index[key], int(trial.user_attrs[ATTR_REPLICATE])])
        e_acc, e_log = draw.normal(0.0, 1.0, size=2)
        sd_rate = sd_log * math.exp(slope * (math.log(rate) - centre))  # noise grows with speed
        study.tell(trial, [acc + sd_acc * e_acc, rate * math.exp(sd_rate * e_log)])
        policy(study, settings, explored == len(order))
    return [racing.record_of(t) for t in study.get_trials() if t.state == TrialState.COMPLETE]


def front(records: list[Any], tolerance: float) -> Any:
    return configured_front(records, 0.95, 0, draws=1000, tolerance=tolerance / 100.0)


def agrees(cf: Any, reference: Any) -> tuple[float, bool]:
    """(share of ``reference``'s confidently dominated set that ``cf`` dominates too, whether
    the fronts agree on every claim), by ``repeatability.py``'s rule
    (:func:`repeatability.matches`): which of truly tied designs a run names varies; a claim
    must not."""
    held, _, claims = repeatability.matches(repeatability.Front.of(cf),
                                            repeatability.Front.of(reference))
    return held, claims


def runs_to_match(records: list[Any], reference: Any, tolerance: float) -> int | None:
    """The smallest n from which every prefix of ``records`` holds >= 90% of ``reference``'s
    dominated set and agrees with its front's claims (repeatability.py's rule)."""
    settled = None
    for n in range(len(records), 0, -1):
        cf = front(records[:n], tolerance)
        held, claims = agrees(cf, reference)
        if not cf.front.noise.known or held < COVER or not claims:
            break
        settled = n
    return settled


def row_at(records: list[Any], n: int, reference: Any, truth_front: set[str],
           tolerance: float) -> tuple[float, ...]:
    """(explored, dominated, plausible, wrong, held, claims agree, the plausible front's median
    accuracy width in points and throughput high/low, NaN where it has none) after the first n
    runs."""
    cf = front(records[:n], tolerance)
    dominated = set(cf.front.dominated)
    held, claims = agrees(cf, reference)
    _, acc, thr = repeatability.widths(repeatability.Front.of(cf))
    return (len(cf.configs), len(dominated), len(cf.front.plausible),
            len(dominated & truth_front), held, float(claims),
            math.nan if acc is None else acc, math.nan if thr is None else thr)


def _mean(values: list[float], fmt: str) -> str:
    """The mean of the defined values, shown with ``fmt``; a dash where none is."""
    known = [v for v in values if not math.isnan(v)]
    return fmt.format(statistics.mean(known)) if known else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=Settings().study.accuracy_tolerance,
                        help="[study] accuracy_tolerance, points (default: the default)")
    parser.add_argument("--throughput-sd", type=float, default=None,
                        help="one per-run noise of log throughput for every configuration "
                             "(default: the truth's, growing with speed where it does)")
    parser.add_argument("--truth", type=Path, default=TRUTH,
                        help="the truth file (default: benchmarks/racing_truth.json)")
    parser.add_argument("--write-truth", type=Path, metavar="DB",
                        help="write the truth file from a fixed-K study's SQLite file and exit")
    args = parser.parse_args()
    if args.write_truth:
        if not args.write_truth.is_file():
            parser.error(f"--write-truth {args.write_truth}: no such file")
        args.truth.write_text(json.dumps(truth_from(args.write_truth), indent=1) + "\n",
                              encoding="utf-8")
        print(f"wrote {args.truth}")
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    truth = load_truth(args.truth)
    if args.throughput_sd is not None:  # one noise for every configuration
        truth = (*truth[:2], args.throughput_sd, 0.0, 0.0)
    means = truth[0]
    truth_front = true_front(means, args.tolerance / 100.0)
    full = args.k * len(means)
    checkpoints = sorted({Settings().study.trials, len(means), full // 2, full * 2 // 3, full})
    searches: list[tuple[str, Policy, str | int]] = [
        (f"fixed K = {args.k}", race, args.k), ("race", race, "race"),
        ("front-first", front_first, "race")]
    rows: dict[str, list[list[tuple[float, ...]]]] = {name: [] for name, _, _ in searches}
    needed: dict[str, list[int | None]] = {name: [] for name, _, _ in searches[1:]}
    for seed in range(args.seeds):
        reference = None
        for name, policy, replicates in searches:
            records = simulate(policy, replicates, full, seed, truth, args.tolerance)
            if reference is None:
                reference = front(records, args.tolerance)
            else:
                needed[name].append(runs_to_match(records, reference, args.tolerance))
            rows[name].append([row_at(records, n, reference, truth_front, args.tolerance)
                               for n in checkpoints if n <= len(records)])
        print(f"  seed {seed}: done", file=sys.stderr, flush=True)
    print(f"# racing policy: {len(means)} configurations, {len(truth_front)} truly on the front "
          f"(accuracy tolerance {args.tolerance:g} points), {args.seeds} seeds, means over "
          f"seeds; noise sd {truth[1] * 100:.2f} points (accuracy), {truth[2]:.3g} (log "
          "throughput" + (f" at {math.exp(truth[4]):.0f} img/s, x e^({truth[3]:.2f} d log "
                          "speed)" if truth[3] else "") + f"); truth {args.truth.name}\n")
    print("| search | runs | explored | dominated (P <= 0.05) | plausible | front's accuracy "
          "width (points) | front's throughput width (high/low) | wrong | of fixed K's "
          "dominated | front claims agree |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, per_seed in rows.items():
        for i, n in enumerate(checkpoints):
            at = [r[i] for r in per_seed if i < len(r)]
            if at:
                c = [statistics.mean(r[j] for r in at) for j in range(6)]
                print(f"| {name} | {n} | {c[0]:.1f} | {c[1]:.1f} | {c[2]:.1f} | "
                      f"{_mean([r[6] for r in at], '{:.2f}')} | "
                      f"{_mean([r[7] for r in at], '{:.3f}')} | {c[3]:.1f} | "
                      f"{c[4]:.0%} | {c[5]:.0%} |")
    print(f"\nruns to reach fixed K = {args.k}'s answer ({full} runs; >= {COVER:.0%} of its "
          "dominated set and no front claim contradicted, from then on), per seed:")
    ok = False
    for name, ns in needed.items():
        ratios = [n / full if n is not None else math.inf for n in ns]
        median = statistics.median(ratios)
        shown = ", ".join(str(n) if n is not None else "never" for n in ns)
        print(f"- {name}: {shown}; median ratio "
              + (f"{median:.2f}" if median != math.inf else "never"))
        ok = ok or (name == "race" and median <= 0.5)
    print(f"\ngoal: racing's median ratio <= 0.50: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
