"""Same budget, one worker with all cores or one single-threaded worker per core?

Runs ``explore study run`` on the same budget (``--trials`` trials of the default digits model,
``--epochs`` epochs each) twice per repeat, alternating:

- ``1 worker x N threads``: ``--workers 1`` (the worker uses every core's thread);
- ``N workers x 1 thread``: ``--workers auto`` (one single-threaded worker per core on a CPU
  machine).

Every trial costs the same: only the learning rate is searched (a continuous range, so no two
trials are duplicates), the model is the default one. Reported per mode: the command's wall time
(process start-up included), the study's span (first trial start to last trial end) and the
summed training time of its trials; the speed-up is serial / parallel of the medians. Each run
uses a fresh SQLite file in a temporary directory. Usage::

    python benchmarks/parallel_workers.py                  # 8 trials x 5 epochs, 3 repeats
    python benchmarks/parallel_workers.py --repeats 1 --trials 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXPLORE = Path(sys.executable).with_name("explore")
CONFIG = """\
[study]
trials = {trials}
sampler = "random"

[train]
epochs = {epochs}

[space]
lr = {{low = 0.001, high = 0.01, log = true}}
"""


def run_once(workers: str, trials: int, epochs: int) -> dict[str, Any]:
    import optuna

    with tempfile.TemporaryDirectory(prefix="explore-parallel-") as tmp:
        directory = Path(tmp)
        (directory / "bench.toml").write_text(CONFIG.format(trials=trials, epochs=epochs))
        db = directory / "bench.db"
        env = {k: v for k, v in os.environ.items()
               if k not in ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS")}
        started = time.perf_counter()
        proc = subprocess.run(
            [str(EXPLORE), "study", "run", "--name", "bench", "--storage", f"sqlite:///{db}",
             "--config", "bench.toml", "--workers", workers, "--device", "cpu",
             "--keep-checkpoints", "none", "-q", "-f", "json"],
            cwd=directory, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"explore failed: {proc.stderr}")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
        done = [t for t in study.trials if "train_seconds" in t.user_attrs]
        ends = [t.datetime_complete for t in done if t.datetime_complete is not None]
        starts = [t.datetime_start for t in done if t.datetime_start is not None]
        span = (max(ends) - min(starts)).total_seconds()
        threads = sorted({t.user_attrs["throughput"]["threads"] for t in done})
        return {"wall_s": round(wall, 2), "span_s": round(span, 2),
                "train_s": round(sum(t.user_attrs["train_seconds"] for t in done), 2),
                "trials": len(done), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))  # as `--workers auto` counts them
    modes = {f"1 worker x {cores} threads": "1", f"{cores} workers x 1 thread": "auto"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    loads = [round(os.getloadavg()[0], 2)]
    for _ in range(args.repeats):
        for name, workers in modes.items():
            runs[name].append(run_once(workers, args.trials, args.epochs))
            loads.append(round(os.getloadavg()[0], 2))
            print(f"{name}: {runs[name][-1]} (load {loads[-1]})", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {"trials": args.trials, "epochs": args.epochs, "cores": cores,
                               "load_avg_1min": loads, "runs": runs}
    medians = {name: {k: round(statistics.median(r[k] for r in rs), 2)
                      for k in ("wall_s", "span_s", "train_s")}
               for name, rs in runs.items()}
    serial, parallel = (medians[name] for name in modes)
    summary["medians"] = medians
    summary["speedup_wall"] = round(serial["wall_s"] / parallel["wall_s"], 2)
    summary["speedup_span"] = round(serial["span_s"] / parallel["span_s"], 2)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.trials} trials x {args.epochs} epochs, default model, {cores} cores; "
          f"1-min load average during the runs: {loads}")
    for name, m in medians.items():
        print(f"  {name:24} wall {m['wall_s']:6.1f} s   span {m['span_s']:6.1f} s   "
              f"training {m['train_s']:6.1f} s")
    print(f"  speed-up of {list(modes)[1]}: {summary['speedup_wall']}x (wall), "
          f"{summary['speedup_span']}x (first trial start to last trial end)")


if __name__ == "__main__":
    main()
