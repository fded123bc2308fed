"""Do two independent studies tell the same story? Racing's noise-aware front against today's
single-seed search, both run with two or more study seeds in the same benchmark run.

Runs (each one ``explore study run`` process, one after another, interleaved seed by seed so
that changing load on the machine hits both searches alike; default settings except what the
options below name; one SQLite file each, kept in ``--workdir``):

- ``race-sS``: ``--replicates race --trials T --seed S`` for every S in ``--seeds``;
- ``single-sS``: ``--replicates 1`` (today's behaviour), same T and S;
- ``fixedK-sS``: ``--replicates K`` over the whole space (``--trials`` = K x the space's size),
  S the first seed: the reference racing is judged against (skipped by ``--skip-fixed``);
- ``race-long-sS``: a copy of ``race-sS`` (first seed) continued to fixed K's budget (or
  ``--long-trials``): the same racing study given more runs, whose first T runs are exactly the
  default study (skipped by ``--skip-fixed``).

The claims judged, not the names: when designs truly tie, which tied one a run names varies;
the honest output then says they tie. What is measured (P = the probability of being
Pareto-optimal from :func:`studies.replicates.configured_front`, with the study's confidence
and seed as the tool's own readers use them):

- Contradictions. A *confident front claim* is a configuration with P >= 0.95 in one run; it is
  *checkable* when the other run evaluated the configuration too, and *contradicted* when the
  other run gives it P <= 0.05 (confidently dominated). Counted over every ordered pair of runs
  (run i's claims checked against run j). A single-seed study has no noise estimate: its P is 1
  for the observed front's members and 0 for the rest, so every front member is a claim and
  every other configuration is "dominated", as the issue's "9 of 11" figure counts them.
  Goal for racing: contradicted / checkable <= 5%.
- Interval overlap: over configurations both racing runs evaluated, the share whose 95%
  intervals (accuracy; throughput) overlap. Goal >= 90%. Single-seed runs have no intervals.
- Sharpness: the median 95% interval width of the plausible front's configurations (accuracy in
  points, throughput as high/low), replayed on prefixes of the longest racing run (its first
  T/2, T, 2T, ... training runs, by trial number). Goal: narrower at the largest budget than at
  the default one T (without the long run: at T than at the first prefix with intervals).
- Decisiveness: the share of a racing run's evaluated configurations that are confidently
  dominated (P <= 0.05). Goal >= 25% (the slow end of the default space is 10x slower than its
  fast end).
- Double vs softmax: the report's effect (:func:`studies.analysis.analyze`) over the run's pairs
  of configurations equal but for ``norm`` (accuracy; log throughput): over the measured pairs
  with the pooled seed noise once it is known (:func:`studies.effects.measured_effect`). A
  verdict is "+" (double better, interval above 0), "-" (below 0), "0" (no difference
  detectable: the interval holds 0) or "too few" (no interval). Two runs agree when their
  verdicts are equal and not "too few". The plausible fronts' overlap (Jaccard of the two
  runs' plausible sets; observed fronts for single-seed) is reported, not a goal.
- What racing saves against fixed K: from the fixed-K study's final confidently dominated set
  D_K and plausible front P_K, replay ``configured_front`` on every prefix of ``race-long`` (its
  first n training runs, by trial number). Racing *matches* fixed K at n when its confidently
  dominated set holds >= 90% of D_K (vacuously when D_K is empty), the two fronts agree on every
  claim, and its noise is known (before any configuration has a second run there is no confident
  statement to compare). Fronts agree on their claims when neither's plausible front holds a
  configuration the other confidently dominates and each's confident members (P >= 0.95) are
  plausible in the other: which of truly tied designs a run names varies, a claim must not (the
  plausible fronts' Jaccard index is printed beside it). The runs racing needs are the smallest
  n from which it matches at every longer prefix too (it settled, not a lucky moment); the
  figure is that n over fixed K's training runs. Goal <= 1/2. Both use the same study seed, so
  replicate r of a configuration has the same training seed in both: the question is whether
  racing reaches fixed K's answer with fewer of the same runs. Against the single-seed search:
  at the same ``--trials`` racing adds no training runs (the budget counts replicates); it
  spends some on replicates instead of new configurations, and its wall time is shown against
  single-seed's.
- The default demo (a racing study at the default budget) stays <= 5 minutes of wall time.

Training runs are COMPLETE or PRUNED trials that were not answered by the duplicate cache. A
configuration is named by its searched params across runs (its key hashes the study seed too).
The wall time of ``race-long`` is that of the continuation only.

Usage::

    python benchmarks/repeatability.py                       # seeds 1 2, 20 trials, 12 epochs
    python benchmarks/repeatability.py --skip-fixed          # racing vs single-seed only
    python benchmarks/repeatability.py --epochs 1 --trials 6 --fixed-k 2 --config small.toml
    python benchmarks/repeatability.py --analyze DIR         # print again from a --workdir
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import machine_line

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("explore")
EXPLORE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, str(REPO / "cli.py")]
STUDY = "bench"
CLAIM = 0.95  # P(Pareto-optimal) from which a configuration is a confident front claim
DENIAL = 0.05  # P at or below which it is confidently dominated
CONTRADICTION_GOAL = 0.05
OVERLAP_GOAL = 0.90
DOMINATED_GOAL = 0.25
SAVING_GOAL = 0.5
COVER = 0.9  # racing matches fixed K: it holds >= 90% of fixed K's dominated set ...
SURE = 0.95  # ... and the fronts agree on their claims: members with P(front) >= 0.95
DEMO_SECONDS = 300.0


@dataclass
class Run:
    """One ``explore study run`` of the benchmark."""

    name: str  # race-s1, single-s1, fixed3-s1, race-long-s1
    search: str  # race, single, fixed, race-long
    replicates: str  # the --replicates value
    seed: int
    trials: int  # the --trials asked
    db: str
    wall: float = 0.0  # seconds of the process (imports included)


# ---------------------------------------------------------------------------------------------
# running the studies


def space_size(config: Path | None) -> int:
    """Configurations in the space the studies search (the config file's, or the default)."""
    from explore.config import load_toml, resolve_settings
    from explore.search.budget import finite_size
    from studies.errors import UsageError

    try:
        raw, source = load_toml(config) if config else ({}, None)
        size = finite_size(resolve_settings(raw, source=source))
    except UsageError as exc:
        raise SystemExit(f"--config: {exc}") from None
    if size is None:
        raise SystemExit("fixed K needs a finite space (lists or stepped ranges); "
                         "use --skip-fixed")
    return size


def launch(run: Run, args: argparse.Namespace) -> None:
    """Run (or continue) one study to its ``--trials`` and time it."""
    command = [*EXPLORE, "study", "run", "--name", STUDY, "--storage", f"sqlite:///{run.db}",
               "--replicates", run.replicates, "--seed", str(run.seed),
               "--trials", str(run.trials), "--device", args.device,
               "--keep-checkpoints", "none", "-q"]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.config is not None:
        command += ["--config", str(args.config.resolve())]
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")}
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=Path(run.db).parent, env=env, capture_output=True,
                          text=True, timeout=4 * 3600)
    run.wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{run.name}: explore study run failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    print(f"  {run.name}: to {run.trials} trials in {run.wall:.1f} s", file=sys.stderr,
          flush=True)


def plan_runs(args: argparse.Namespace, out: Path) -> list[Run]:
    runs = []
    for seed in args.seeds:
        for search, replicates in (("race", "race"), ("single", "1")):
            name = f"{search}-s{seed}"
            runs.append(Run(name, search, replicates, seed, args.trials, str(out / f"{name}.db")))
    if not args.skip_fixed:
        seed, k = args.seeds[0], args.fixed_k
        budget = k * space_size(args.config)
        runs.append(Run(f"fixed{k}-s{seed}", "fixed", str(k), seed, budget,
                        str(out / f"fixed{k}-s{seed}.db")))
        runs.append(Run(f"race-long-s{seed}", "race-long", "race", seed,
                        args.long_trials or budget, str(out / f"race-long-s{seed}.db")))
    return runs


def run_all(args: argparse.Namespace, out: Path) -> list[Run]:
    """Run every study, saving what ran to ``runs.json`` after each (for ``--analyze``)."""
    runs = plan_runs(args, out)
    continued = sum(args.trials for r in runs if r.search == "race-long")
    print(f"{len(runs)} studies, {sum(r.trials for r in runs) - continued} trials at most; "
          f"databases in {out}", file=sys.stderr, flush=True)
    meta = {"command": " ".join(["python", "benchmarks/repeatability.py", *sys.argv[1:]]),
            "machine": machine_line_for(args.device), "trials": args.trials,
            "epochs": args.epochs, "runs": []}
    for run in runs:
        if run.search == "race-long":  # the default racing study, continued
            shutil.copyfile(out / f"race-s{run.seed}.db", run.db)
        launch(run, args)
        meta["runs"].append(asdict(run))
        (out / "runs.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return runs


def machine_line_for(device: str) -> str:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return machine_line(torch.device(device))


# ---------------------------------------------------------------------------------------------
# reading them back


@dataclass(frozen=True)
class Front:
    """A run's noise-aware front with every configuration named by its params.

    A configuration's key hashes the study seed too, so two studies name the same design
    differently; its searched params (with the same settings file) name it in both.
    """

    configs: list[Any]  # studies.replicates.Configuration, first appearance first
    probability: dict[str, float]  # params label -> P(Pareto-optimal)
    estimates: dict[str, Any]  # params label -> studies.confidence.ConfigEstimate
    plausible: set[str]
    dominated: set[str]
    known: bool  # whether the noise is known (some configuration has two runs)

    @classmethod
    def of(cls, configured: Any) -> Front:
        label = {c.key: json.dumps(c.params, sort_keys=True) for c in configured.configs}
        front = configured.front
        return cls(configured.configs,
                   {label[k]: p for k, p in front.probability.items()},
                   {label[e.config]: e for e in front.estimates},
                   {label[k] for k in front.plausible}, {label[k] for k in front.dominated},
                   front.noise.known)


@dataclass
class Study:
    """One run's trials, as the torch-free readers see them."""

    run: Run
    records: list[Any]  # studies.record.TrialRecord, by number
    confidence: float
    seed: int
    tolerance: float = 0.0  # [study] accuracy_tolerance as a fraction (studies.replicates)
    _final: Front | None = None  # the front of all its trials, once computed

    @property
    def trained(self) -> list[Any]:
        """The training runs, by trial number."""
        return [t for t in self.records
                if t.state in ("COMPLETE", "PRUNED") and not t.is_duplicate]

    def front(self, runs: int | None = None) -> Front:
        """The noise-aware front of the first ``runs`` training runs (all by default), as
        :func:`studies.replicates.configured_front` gives it with the study's confidence, seed
        and accuracy tolerance (what ``study pareto`` prints)."""
        from studies.replicates import configured_front

        if runs is None or runs >= len(self.trained):
            if self._final is None:
                self._final = Front.of(configured_front(self.records, self.confidence,
                                                        seed=self.seed, tolerance=self.tolerance))
            return self._final
        last = self.trained[runs - 1].number if runs > 0 else -1
        return Front.of(configured_front([t for t in self.records if t.number <= last],
                                         self.confidence, seed=self.seed,
                                         tolerance=self.tolerance))


def load(run: Run) -> Study:
    import optuna

    from explore.search.racing import record_of
    from studies.record import ATTR_SETTINGS
    from studies.replicates import front_tolerance

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run.db}")
    stored = study.user_attrs.get(ATTR_SETTINGS, {})
    settings = stored.get("study", {})
    records = sorted((record_of(t) for t in study.get_trials(deepcopy=False)),
                     key=lambda t: t.number)
    return Study(run, records, float(settings.get("confidence", 0.95)),
                 int(settings.get("seed", run.seed)), front_tolerance(stored))


# ---------------------------------------------------------------------------------------------
# the measures


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def contradictions(studies: Sequence[Study]) -> tuple[int, int, int]:
    """(claims, checkable, contradicted) over every ordered pair of runs."""
    claims = checkable = contradicted = 0
    fronts = [s.front().probability for s in studies]
    for i, j in itertools.permutations(range(len(fronts)), 2):
        mine, theirs = fronts[i], fronts[j]
        claimed = [c for c, p in mine.items() if p >= CLAIM]
        claims += len(claimed)
        checked = [c for c in claimed if c in theirs]
        checkable += len(checked)
        contradicted += sum(theirs[c] <= DENIAL for c in checked)
    return claims, checkable, contradicted


def _overlap(a: Any, b: Any) -> bool | None:
    if None in (a.low, a.high, b.low, b.high):
        return None
    return bool(max(a.low, b.low) <= min(a.high, b.high))


def interval_overlap(studies: Sequence[Study], objective: str) -> tuple[int, int]:
    """(shared configurations with intervals in both runs, those whose intervals overlap), over
    every pair of runs."""
    shared = overlapping = 0
    for a, b in itertools.combinations([s.front().estimates for s in studies], 2):
        for label in a.keys() & b.keys():
            ok = _overlap(getattr(a[label], objective), getattr(b[label], objective))
            if ok is not None:
                shared += 1
                overlapping += ok
    return shared, overlapping


def widths(front: Front) -> tuple[int, float | None, float | None]:
    """(plausible configurations, median accuracy width in points, median throughput high/low)
    of the plausible front; None where the noise is unknown."""
    chosen = [front.estimates[c] for c in front.plausible]
    acc = [100.0 * (e.accuracy.high - e.accuracy.low) for e in chosen
           if e.accuracy.low is not None]
    thr = [e.throughput.high / e.throughput.low for e in chosen if e.throughput.low is not None]
    return (len(chosen), statistics.median(acc) if acc else None,
            statistics.median(thr) if thr else None)


def budgets(total: int, default: int) -> list[int]:
    """T/2, T, 2T, 4T, ... and the total: the prefixes the sharpness is shown at."""
    out = [n for n in (default // 2, default) if 0 < n <= total]
    n = default * 2
    while n < total:
        out.append(n)
        n *= 2
    if total not in out:
        out.append(total)
    return sorted(set(out))


def category(effect: Any) -> str:
    if effect is None or effect.low is None or effect.high is None:
        return "too few"
    return "+" if effect.low > 0 else "-" if effect.high < 0 else "0"


def norm_effects(study: Study) -> dict[str, Any]:
    """Double minus softmax per objective ("accuracy"; "throughput" as a log-ratio) as
    ``explore study report`` states it (:func:`studies.analysis.analyze`): over the pairs the run
    measured, with its pooled seed noise, or the observed effect while the noise is unknown.
    None where the run has no pair of configurations equal but for ``norm``."""
    from studies.analysis import analyze

    question = analyze(study.records, study.confidence).norm
    return {"accuracy": question.accuracy, "throughput": question.speed}


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def sure(front: Front) -> set[str]:
    """The front's confident members: P(Pareto-optimal) >= 0.95."""
    return {k for k, p in front.probability.items() if p >= SURE}


def matches(front: Front, reference: Front) -> tuple[float, float, bool]:
    """(share of ``reference``'s confidently dominated set that ``front`` dominates too, Jaccard
    of the plausible fronts, whether the fronts agree on every claim: neither's plausible front
    holds a configuration the other confidently dominates, and each's confident members are
    plausible in the other)."""
    dominated = reference.dominated
    held = len(dominated & front.dominated) / len(dominated) if dominated else 1.0
    claims = (not front.plausible & reference.dominated
              and not reference.plausible & front.dominated
              and sure(reference) <= front.plausible and sure(front) <= reference.plausible)
    return held, jaccard(front.plausible, reference.plausible), claims


def runs_to_match(racing: Study, reference: Study) -> tuple[int | None, Any]:
    """The smallest n from which every prefix of ``racing``'s training runs matches the
    reference's final front (see the module docstring), and (front, held, Jaccard) at that n."""
    final = reference.front()
    settled: int | None = None
    details = None
    for n in range(len(racing.trained), 0, -1):  # from the end: where it last stopped matching
        front = racing.front(n)
        held, overlap, claims = matches(front, final)
        if not front.known or held < COVER or not claims:
            break
        settled = n
        details = (front, held, overlap)
    return settled, details


# ---------------------------------------------------------------------------------------------
# the report


def report_runs(studies: Sequence[Study]) -> None:
    from studies.replicates import replicate_of

    print("## runs\n")
    rows: list[list[Any]] = []
    for s in studies:
        configs = s.front().configs
        extra = sum(replicate_of(t) > 0 for t in s.trained)
        rows.append([s.run.name, s.run.replicates, s.run.seed, s.run.trials, len(s.trained),
                     len(configs), extra, f"{s.run.wall:.1f} s"])
    _table(["run", "replicates", "seed", "trials asked", "training runs", "configurations",
            "replicate runs", "wall"], rows)


def report_contradictions(race: Sequence[Study], single: Sequence[Study]) -> None:
    print(f"## contradictions: confident front claims (P >= {CLAIM}) that another run "
          f"confidently dominates (P <= {DENIAL})\n")
    rows: list[list[Any]] = []
    for label, group, goal in (("racing", race, True), ("single seed (today)", single, False)):
        claims, checkable, contradicted = contradictions(group)
        ok = contradicted / checkable <= CONTRADICTION_GOAL if checkable else None
        rows.append([label, claims, checkable, contradicted, _pct(contradicted, checkable),
                     f"<= {CONTRADICTION_GOAL:.0%}" if goal else "-",
                     _verdict(ok) if goal else "reference"])
    _table(["search", "claims", "checkable", "contradicted", "rate", "goal", "verdict"], rows)


def report_overlap(race: Sequence[Study]) -> None:
    print("## 95% intervals of shared configurations that overlap between racing runs\n")
    rows: list[list[Any]] = []
    for objective in ("accuracy", "throughput"):
        shared, overlapping = interval_overlap(race, objective)
        ok = overlapping / shared >= OVERLAP_GOAL if shared else None
        rows.append([objective, shared, overlapping, _pct(overlapping, shared),
                     f">= {OVERLAP_GOAL:.0%}", _verdict(ok)])
    _table(["objective", "shared", "overlapping", "share", "goal", "verdict"], rows)
    print("(single seed: no intervals, the noise is unknown)\n")


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def report_sharpness(longest: Study, default: int) -> None:
    print(f"## sharpness: median 95% interval width of the plausible front, {longest.run.name} "
          "by training runs\n")
    shown = budgets(len(longest.trained), default)
    if not shown:
        print("(no training runs)\n")
        return
    rows: list[list[Any]] = []
    figures = []
    for n in shown:
        count, acc, thr = widths(longest.front(n))
        figures.append((n, acc, thr))
        rows.append([n, count, _fmt(acc, "{:.2f}"), _fmt(thr, "{:.3f}")])
    _table(["training runs", "front configurations", "accuracy width (points)",
            "throughput width (high/low)"], rows)
    last = figures[-1]
    rows = []
    for index, objective in ((1, "accuracy"), (2, "throughput")):
        # From the default budget when the run went beyond it, else from the first prefix that
        # has intervals.
        known = [f for f in figures[:-1] if f[index] is not None]
        beyond = last[0] > default and any(f[0] == default for f in known)
        base = next((f for f in known if f[0] == default), None) if beyond else \
            (known[0] if known else None)
        first, final = (None, last[index]) if base is None else (base[index], last[index])
        ok = None if first is None or final is None else final < first
        rows.append([objective, "n/a" if base is None else base[0], _fmt(first, "{:.3f}"),
                     last[0], _fmt(final, "{:.3f}"), "narrower", _verdict(ok)])
    _table(["objective", "runs", "width", "more runs", "width then", "goal", "verdict"], rows)


def report_decisions(studies: Sequence[Study]) -> None:
    print(f"## decisions: evaluated configurations confidently dominated (P <= {DENIAL})\n")
    rows: list[list[Any]] = []
    for s in studies:
        front = s.front()
        configs, dominated = len(front.configs), len(front.dominated)
        goal = s.run.search == "race"
        ok = dominated / configs >= DOMINATED_GOAL if configs and goal else None
        rows.append([s.run.name, configs, dominated, _pct(dominated, configs),
                     f">= {DOMINATED_GOAL:.0%}" if goal else "-",
                     _verdict(ok) if goal else "reported"])
    _table(["run", "configurations", "confidently dominated", "share", "goal", "verdict"], rows)


def _describe(effect: Any) -> str:
    from studies.verdicts import verdict

    return "no double/softmax pair" if effect is None else verdict(effect, "double", "softmax")


def report_norm(race: Sequence[Study], single: Sequence[Study]) -> None:
    print("## double vs softmax: verdicts of independent runs (+: double better, -: softmax "
          "better, 0: no difference detectable)\n")
    rows: list[list[Any]] = []
    for label, group in (("racing", race), ("single seed (today)", single)):
        effects = [norm_effects(s) for s in group]
        for objective in ("accuracy", "throughput"):
            cats = [category(e[objective]) for e in effects]
            agree = None if "too few" in cats else len(set(cats)) == 1
            rows.append([label, objective, " / ".join(cats),
                         "n/a (too few data)" if agree is None else "yes" if agree else "no",
                         "agree" if label == "racing" else "-",
                         _verdict(agree) if label == "racing" else "reference"])
    _table(["search", "objective", "verdicts (by seed)", "agree", "goal", "verdict"], rows)
    for s in [*race, *single]:
        found = norm_effects(s)
        print(f"- {s.run.name}: accuracy: {_describe(found['accuracy'])}; throughput: "
              f"{_describe(found['throughput'])}")
    print()
    print("## plausible fronts' overlap (reported, not a goal)\n")
    rows = []
    for label, group in (("racing", race), ("single seed (today)", single)):
        for a, b in itertools.combinations(group, 2):
            fa, fb = a.front().plausible, b.front().plausible
            rows.append([label, f"{a.run.name} / {b.run.name}", len(fa), len(fb), len(fa & fb),
                         len(fa | fb), f"{jaccard(fa, fb):.2f}"])
    _table(["search", "runs", "front a", "front b", "shared", "union", "Jaccard"], rows)


def report_saving(long: Study | None, fixed: Study | None, race: Sequence[Study],
                  single: Sequence[Study]) -> None:
    print("## what racing saves\n")
    if long is not None and fixed is not None:
        n, details = runs_to_match(long, fixed)
        total = len(fixed.trained)
        final = fixed.front()
        row: list[Any] = [f"fixed K = {fixed.run.replicates} ({fixed.run.name})", total,
                          len(final.dominated), len(final.plausible)]
        if n is None or details is None:
            row += [f"not within {len(long.trained)}", "-", "-", "-", "-", "-",
                    f"<= {SAVING_GOAL:.2f}", "FAIL"]
        else:
            front, held, overlap = details
            row += [n, f"{held:.0%}", f"{overlap:.2f}", "yes",
                    len(front.dominated & final.plausible), f"{n / total:.2f}",
                    f"<= {SAVING_GOAL:.2f}", _verdict(n / total <= SAVING_GOAL)]
        _table(["reference", "its runs", "its dominated", "its plausible", "racing runs",
                "dominated held", "front Jaccard", "front claims agree",
                "racing dominates its plausible", "ratio",
                "goal", "verdict"], [row])
        print(f"(racing matches at n runs: it confidently dominates >= {COVER:.0%} of the "
              "reference's dominated set and the two fronts agree on every claim (no "
              "plausible member the other dominates, confident members plausible in the other)"
              ", at n and every later prefix of "
              f"{long.run.name}, {len(long.trained)} runs)\n")
        prefixes = []
        for n in sorted({*range(len(race[0].trained) if race else 20, len(long.trained) + 1,
                                max(1, total // 12)), len(long.trained)}):
            front = long.front(n)
            held, overlap, claims = matches(front, final)
            prefixes.append([n, len(front.configs), len(front.dominated), f"{held:.0%}",
                             f"{overlap:.2f}", "yes" if claims else "no",
                             f"{max(front.probability.values()):.2f}"])
        _table([f"{long.run.name} runs", "configurations", "dominated",
                f"of {fixed.run.name}'s dominated", "front Jaccard", "front claims agree",
                "highest P(front)"],
               prefixes)
        print(f"({fixed.run.name} at {total} runs: {len(final.dominated)} dominated, highest "
              f"P(front) {max(final.probability.values()):.2f})\n")
    else:
        print("(no fixed-K reference: --skip-fixed)\n")
    rows: list[list[Any]] = []
    by_seed = {s.run.seed: s for s in single}
    for r in race:
        s = by_seed.get(r.run.seed)
        if s is None:
            continue
        rc, sc = r.front().configs, s.front().configs
        rows.append([r.run.seed, len(s.trained), len(r.trained), len(r.trained) - len(s.trained),
                     len(sc), len(rc), f"{s.run.wall:.1f} s", f"{r.run.wall:.1f} s",
                     f"{r.run.wall / s.run.wall:.2f}" if s.run.wall else "n/a"])
    _table(["seed", "single runs", "racing runs", "runs added", "single configurations",
            "racing configurations", "single wall", "racing wall", "wall ratio"], rows)


def report_demo(race: Sequence[Study]) -> None:
    print(f"## the default demo: a racing study's wall time (goal <= {DEMO_SECONDS:.0f} s)\n")
    _table(["run", "trials", "wall", "goal", "verdict"],
           [[s.run.name, s.run.trials, f"{s.run.wall:.1f} s", f"<= {DEMO_SECONDS:.0f} s",
             _verdict(s.run.wall <= DEMO_SECONDS)] for s in race])


def report(runs: Sequence[Run], meta: dict[str, Any]) -> None:
    studies = [load(r) for r in runs]
    race = [s for s in studies if s.run.search == "race"]
    single = [s for s in studies if s.run.search == "single"]
    fixed = next((s for s in studies if s.run.search == "fixed"), None)
    long = next((s for s in studies if s.run.search == "race-long"), None)
    if len(race) < 2 or len(single) < 2:
        raise SystemExit("the runs are incomplete: two racing and two single-seed studies are "
                         "needed")
    print(f"# repeatability: {meta['command']}")
    print(f"machine: {meta['machine']}")
    print(f"{len(race)} racing and {len(single)} single-seed studies of {meta['trials']} trials"
          f" ({meta['epochs'] or 'default'} epochs)\n")
    report_runs(studies)
    report_contradictions(race, single)
    report_overlap(race)
    report_sharpness(long or max(race, key=lambda s: len(s.trained)), meta["trials"])
    report_decisions([*race, *([fixed] if fixed else []), *([long] if long else [])])
    report_norm(race, single)
    report_saving(long, fixed, race, single)
    report_demo(race)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="study seeds of the independent runs (default 1 2)")
    parser.add_argument("--trials", type=int, default=20,
                        help="training runs per racing and single-seed study (default 20)")
    parser.add_argument("--epochs", type=int, help="training epochs per trial (default: 12)")
    parser.add_argument("--fixed-k", type=int, default=3,
                        help="replicates of every configuration in the reference (default 3)")
    parser.add_argument("--long-trials", type=int,
                        help="budget racing is continued to (default: fixed K's)")
    parser.add_argument("--skip-fixed", action="store_true",
                        help="no fixed-K reference and no long racing run (quick)")
    parser.add_argument("--config", type=Path, help="settings file passed to every study")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--workdir", type=Path, help="keep the databases here (default: temp)")
    parser.add_argument("--analyze", type=Path, metavar="DIR",
                        help="only print the report of an earlier run's --workdir")
    args = parser.parse_args()
    if args.analyze:
        meta = json.loads((args.analyze / "runs.json").read_text(encoding="utf-8"))
        runs = [Run(**r) for r in meta["runs"]]
        for run in runs:  # the databases where they are now
            run.db = str(args.analyze.resolve() / Path(run.db).name)
        report(runs, meta)
        return
    if len(set(args.seeds)) < 2:
        parser.error("--seeds needs two or more different seeds")
    if min(args.trials, args.fixed_k, args.epochs or 1, args.long_trials or 1) < 1:
        parser.error("--trials, --fixed-k, --epochs and --long-trials must be >= 1")
    if args.config is not None and not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    out = (args.workdir or Path(tempfile.mkdtemp(prefix="repeatability-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = run_all(args, out)
    report(runs, json.loads((out / "runs.json").read_text(encoding="utf-8")))
    if args.workdir is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
