"""How fast do browsing commands start on a big study? ``explore study list`` / ``pareto`` against
``optuna best-trials`` on a 1000-trial study.

The study is built directly with Optuna (``study.add_trials``) with plausible values and the user
attrs a real run writes (history, throughput, model config, …), plus Pareto snapshots recorded as
the runner records them. Every command runs as a fresh subprocess (cold interpreter, warm disk
cache), as a user would run it; the script prints the median and best wall time of each.

    .venv/bin/python benchmarks/browse_speed.py [--trials 1000] [--repeats 7] [--keep DIR]

Building the study takes 20-60 s (Optuna inserts trial by trial); ``--keep DIR`` reuses it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
NAME = "big"


def build_study(db: Path, n_trials: int, seed: int = 0) -> float:
    """Write an explore-like study of ``n_trials`` trials into ``db``; returns seconds taken."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from explore.config import Settings
    from studies.pareto import front_numbers
    from studies.snapshots import SnapshotStore

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name=NAME, storage=url, directions=["maximize"] * 2)
    study.set_metric_names(["accuracy", "throughput"])
    study.set_user_attr("explore_settings", Settings().to_dict())
    study.set_user_attr("explore_version", "0.1.0")
    rng = random.Random(seed)
    space = {"attention": ["external"], "mem_size": [8, 16, 32, 64, 128], "heads": [1, 2, 4, 8],
             "norm": ["softmax", "double"]}
    dists = {k: CategoricalDistribution(v) for k, v in space.items()}
    t0 = time.time() - 3600
    trials = []
    for number in range(n_trials):
        params = {k: rng.choice(v) for k, v in space.items()}
        s, h = params["mem_size"], params["heads"]
        acc = min(0.99, 0.80 + 0.03 * math.log2(s) / 7 + 0.01 * (params["norm"] == "double")
                  + 0.005 * math.log2(h) + rng.gauss(0, 0.02))
        thr = 60000 / (1 + s / 32) / (1 + h / 8) * rng.uniform(0.9, 1.1)
        state = TrialState.COMPLETE if rng.random() > 0.08 else TrialState.PRUNED
        start = t0 + number * 3.0
        history = [{"epoch": e, "accuracy": acc * (1 - 0.5 ** e), "loss": 2.3 * 0.8 ** e,
                    "seconds": 0.2} for e in range(1, 13)]
        attrs: dict[str, Any] = {
            "model_config": {"image_size": 8, "in_chans": 1, "num_classes": 10, "patch_size": 2,
                             "dim": 64, "depth": 2, "heads": h, "mem_size": s,
                             "norm": params["norm"], "attention": "external", "expand": 1,
                             "mlp_ratio": 2.0, "dropout": 0.0},
            "config_key": f"{rng.getrandbits(256):064x}", "seed": rng.getrandbits(31),
            "params_count": 50000 + 300 * s + 100 * h, "flops_per_image": 1_600_000 + 9000 * s,
            "device": "cpu", "device_name": "x86_64",
            "versions": {"explore": "0.1.0", "torch": "2.14.1", "optuna": optuna.__version__},
            "throughput": {"median": thr, "min": thr * 0.9, "max": thr * 1.05, "spread": 0.04,
                           "iters": 40, "batch": 256, "threads": 2, "device": "cpu",
                           "noisy": False},
            "history": history, "train_seconds": 2.4, "wall_seconds": 3.0,
        }
        if state == TrialState.PRUNED:
            attrs["prune_reason"] = "MO-ASHA rung 3: rank 5 of 6"
        trials.append(create_trial(
            state=state, params=params, distributions=dists,
            values=[acc, thr] if state == TrialState.COMPLETE else None, user_attrs=attrs,
            intermediate_values=None))
        trials[-1].datetime_start = _dt(start)
        trials[-1].datetime_complete = _dt(start + 2.9)
    study.add_trials(trials)

    # Snapshots as the runner records them: after each COMPLETE trial that changes the front.
    store = SnapshotStore.from_url(url)
    done: list[tuple[int, tuple[float, float]]] = []
    last: set[int] = set()
    for i, t in enumerate(trials):
        if t.state != TrialState.COMPLETE:
            continue
        done.append((i, (t.values[0], t.values[1])))
        front = set(front_numbers(done, ["maximize", "maximize"]))
        if front != last:
            store.record(NAME, i + 1, [(n, *v) for n, v in done if n in front])
            last = front
    store.engine.dispose()
    return time.perf_counter() - started


def _dt(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], repeats: int, cwd: Path) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of ``cmd`` as a fresh subprocess. CPU time
    (user + system) hardly changes when other jobs share the machine; wall time does."""
    env = {k: v for k, v in os.environ.items() if k not in ("EXPLORE_STORAGE", "OPTUNA_STORAGE")}
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), _children_cpu()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        cpu.append(_children_cpu() - c)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(times), min(times), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keep", type=Path,
                        help="Build the study in this directory and keep it (reused next time).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        db = where / f"big-{args.trials}.db"
        if db.exists():  # kept from an earlier --keep run
            print(f"reusing {db}")
        else:
            built = build_study(db, args.trials)
            print(f"built {args.trials} trials in {built:.1f} s: {db}")
        url = f"sqlite:///{db}"
        explore, optuna_cli = str(BIN / "explore"), str(BIN / "optuna")
        cases = [
            ("explore study list", [explore, "study", "list", "--storage", url]),
            ("explore study pareto", [explore, "study", "pareto", NAME, "--storage", url]),
            ("explore study pareto -f json",
             [explore, "study", "pareto", NAME, "--storage", url, "-f", "json"]),
            ("explore study pareto --all", [explore, "study", "pareto", NAME, "--all",
                                            "--storage", url]),
            ("explore --version (start-up floor)", [explore, "--version"]),
            ("optuna best-trials -f json", [optuna_cli, "best-trials", "--storage", url,
                                            "--study-name", NAME, "-f", "json"]),
        ]
        results: dict[str, tuple[float, float]] = {}
        load = os.getloadavg()[0]
        print(f"load average before timing: {load:.2f} on {os.cpu_count()} cores; "
              f"{args.repeats} runs each\n")
        print("| command | wall median (s) | wall best (s) | CPU median (s) |")
        print("|---|---:|---:|---:|")
        for label, cmd in cases:
            median, best, cpu = timed(cmd, args.repeats, where)
            results[label] = (median, cpu)
            print(f"| `{label}` | {median:.3f} | {best:.3f} | {cpu:.3f} |")
        ours = results["explore study pareto -f json"]
        theirs = results["optuna best-trials -f json"]
        print(f"\noptuna best-trials / explore study pareto (JSON both): "
              f"{theirs[0] / ours[0]:.1f}x wall, {theirs[1] / ours[1]:.1f}x CPU")
        print(f"load average after timing: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
