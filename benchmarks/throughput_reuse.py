"""A study that tunes training with the architecture: `[measure] reuse` on against off.

When a search covers training settings (here the learning rate, continuous) as well as the
architecture (here 2 memory sizes × 2 head counts), architectures repeat across trials, and each
repeat used to measure its inference throughput again: ~0.7 s of a ~3 s CPU trial at the
default `[measure]` settings, under the machine lock's exclusive side. With `reuse = true`
(default) a later trial of an architecture takes the first clean figure measured on this
machine. This script runs the same study both ways (`explore study run`, default model and
measurement settings, TPE, the same seed, a fresh SQLite file each time), alternating, and
prints per mode: the study's wall time (process start-up included), the trials that measured,
the median trial span (start to finish, measurement included), and the front's hypervolume
against (0, 0) in accuracy × images/s. Usage::

    python benchmarks/throughput_reuse.py                      # 12 trials, 2 repeats per mode
    python benchmarks/throughput_reuse.py --trials 6 --repeats 1 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import interleaved, load_average, table_head

from studies.pareto import hypervolume_2d

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("explore")
EXPLORE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, str(REPO / "cli.py")]
CONFIG = """\
[study]
prune = false

[train]
epochs = {epochs}

[measure]
reuse = {reuse}

[space]
mem_size = [16, 64]
heads = [1, 4]
lr = {{low = 0.003, high = 0.02, log = true}}
"""
MODES = {"reuse off": "false", "reuse on (default)": "true"}


def run_once(reuse: str, trials: int, epochs: int, device: str) -> dict[str, Any]:
    import optuna

    with tempfile.TemporaryDirectory(prefix="explore-reuse-") as tmp:
        directory = Path(tmp)
        (directory / "bench.toml").write_text(CONFIG.format(epochs=epochs, reuse=reuse),
                                              encoding="utf-8")
        db = directory / "bench.db"
        env = {k: v for k, v in os.environ.items()
               if k not in ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS")}
        started = time.perf_counter()
        proc = subprocess.run(
            [*EXPLORE, "study", "run", "--name", "bench", "--storage", f"sqlite:///{db}",
             "--config", "bench.toml", "--trials", str(trials), "--device", device,
             "--seed", "5", "--keep-checkpoints", "none", "-q"],
            cwd=directory, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"explore study run failed:\n{proc.stderr[-2000:]}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
        done = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
                if "duplicate_of" not in t.user_attrs]
        return {
            "wall": wall,
            "measured": sum("throughput_from" not in t.user_attrs for t in done),
            "trials": len(done),
            "span": statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                                      for t in done),
            "hv": hypervolume_2d([(t.values[0], t.values[1]) for t in study.best_trials]),
            "accuracy": statistics.mean(t.values[0] for t in done),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    if min(args.trials, args.repeats, args.epochs) < 1:
        parser.error("--trials, --repeats and --epochs must be >= 1")
    print(f"{args.device}; {args.trials} trials × {args.epochs} epochs per study, "
          f"{args.repeats} repeats per mode; load average {load_average()} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat, mode in interleaved(list(MODES), args.repeats):
        r = run_once(MODES[mode], args.trials, args.epochs, args.device)
        runs[mode].append(r)
        print(f"  repeat {repeat + 1} {mode:18s} {r['wall']:6.1f} s, {r['measured']} of "
              f"{r['trials']} trials measured, median trial {r['span']:.2f} s", flush=True)
    table_head("mode", "study wall (median)", "trials measured", "median trial span",
               "front hypervolume", "mean accuracy")
    medians = {}
    for mode, rs in runs.items():
        medians[mode] = statistics.median(r["wall"] for r in rs)
        print(f"| {mode} | {medians[mode]:.1f} s | "
              f"{'/'.join(str(r['measured']) for r in rs)} of {rs[0]['trials']} | "
              f"{statistics.median(r['span'] for r in rs):.2f} s | "
              f"{statistics.median(r['hv'] for r in rs):,.0f} | "
              f"{statistics.mean(r['accuracy'] for r in rs):.4f} |")
    off, on = medians["reuse off"], medians["reuse on (default)"]
    print(f"\nstudy wall time, reuse off / on: {off / on:.2f}")


if __name__ == "__main__":
    main()
