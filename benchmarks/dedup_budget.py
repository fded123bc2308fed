"""How many distinct configurations does a budget of N trials buy, with and without dedup?

Samplers propose configurations they (or another worker) already evaluated, most of all on small
discrete spaces: the default space has 40 configurations, and TPE repeats its favourites. With
the duplicate cache (``--dedup``, the default) a repeat is answered from the study for free and
does not count against ``--trials``; without it (``--no-dedup``) every repeat is trained again
and spends the budget. Each run is a real ``explore study run`` process on the default space;
the runs go ``--lanes`` at a time, single-threaded. The measurement settings are cut down
(``[measure] min_time``) because only which configurations are proposed matters here.

Usage::

    python benchmarks/dedup_budget.py        # N = 20, epochs 2, tpe + random, 3 seeds
    python benchmarks/dedup_budget.py --trials 40 --samplers tpe nsga2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

EXPLORE = Path(sys.executable).with_name("explore")
TOML = """\
[measure]
threads = 1
warmup = 2
min_iters = 5
min_time = 0.1
"""


@dataclass
class Result:
    sampler: str
    dedup: bool
    seed: int
    distinct: int = 0  # configurations trained
    trained: int = 0  # trials that trained (with repeats when dedup is off)
    duplicates: int = 0  # trials answered from the study
    stopped: str = ""
    seconds: float = 0.0


def run_one(r: Result, trials: int, epochs: int, out: Path) -> Result:
    import optuna
    from optuna.trial import TrialState

    directory = out / f"{r.sampler}-{'dedup' if r.dedup else 'nodedup'}-s{r.seed}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.toml").write_text(TOML, encoding="utf-8")
    started = time.monotonic()
    proc = subprocess.run(
        [str(EXPLORE), "study", "run", "--name", "b", "--config", "bench.toml",
         "--trials", str(trials), "--epochs", str(epochs), "--sampler", r.sampler,
         "--seed", str(r.seed), "--dedup" if r.dedup else "--no-dedup", "--no-prune",
         "--keep-checkpoints", "none", "-q", "-f", "json"],
        cwd=directory, capture_output=True, text=True, timeout=1800)
    r.seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{r}: {proc.stderr[-2000:]}")
    r.stopped = json.loads(proc.stdout)["stopped"]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{directory / 'explore.db'}")
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    repeats = [t for t in finished if t.user_attrs.get("duplicate_of") is not None]
    trained = [t for t in finished if t.user_attrs.get("duplicate_of") is None]
    r.duplicates = len(repeats)
    r.trained = len(trained)
    r.distinct = len({t.user_attrs["config_key"] for t in trained})
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="budget N per run (20)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (2)")
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=2, help="runs side by side (2)")
    parser.add_argument("--out", type=Path, help="directory for the studies (default: temp)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="dedup-budget-"))
    jobs = [Result(s, d, seed) for seed in range(args.seeds) for s in args.samplers
            for d in (True, False)]
    load_before = os.getloadavg()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.lanes) as pool:
        results = list(pool.map(lambda r: run_one(r, args.trials, args.epochs, out), jobs))
    print(f"# dedup budget, {dt.date.today()}: python benchmarks/dedup_budget.py "
          f"{' '.join(sys.argv[1:])}")
    print(f"# {len(jobs)} runs in {time.monotonic() - started:.0f} s; load average before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print(f"# budget N = {args.trials} trials of {args.epochs} epochs, default space "
          "(40 configurations)")
    print("| sampler | dedup | distinct configurations (per seed) | mean | trained | "
          "answered free | stopped |")
    print("|---|---|---|---:|---:|---:|---|")
    for sampler in args.samplers:
        for dedup in (True, False):
            mine = [r for r in results if r.sampler == sampler and r.dedup == dedup]
            stops = sorted({r.stopped for r in mine})
            print(f"| {sampler} | {'on' if dedup else 'off'} "
                  f"| {', '.join(str(r.distinct) for r in mine)} "
                  f"| {statistics.fmean(r.distinct for r in mine):.1f} "
                  f"| {statistics.fmean(r.trained for r in mine):.1f} "
                  f"| {statistics.fmean(r.duplicates for r in mine):.1f} | {'; '.join(stops)} |")


if __name__ == "__main__":
    main()
