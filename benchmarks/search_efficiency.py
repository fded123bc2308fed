"""How fast does each search reach a good Pareto front? Hypervolume against wall time on digits.

Every configuration runs as its own process under the same wall-clock budget (``--budget``
seconds from its launch, imports included; the process is killed at the budget, and only trials
finished by then count), for ``--seeds`` seeds, the runs interleaved seed by seed so that
changing load on the machine hits every configuration alike. ``--lanes`` runs go side by side,
each single-threaded (on a small model one thread per core beats two threads on one trial, and
every configuration gets the same share of the machine).

Configurations:

- ``A optuna-nsga2``: baseline A, a plain Optuna script written here the way Optuna's
  multi-objective PyTorch example is (a torch ``DataLoader`` over the same normalized digits
  split, the same model family via ``extattn.create_model``, the same epochs and optimizer,
  ``NSGAIISampler()`` with default arguments but the seed, no pruning, no duplicate cache,
  throughput from ``explore.engine.measure.measure_throughput`` so the objective is identical);
- ``B random``: baseline B, ``explore study run --sampler random --no-prune --no-dedup``;
- ``<sampler>[+prune][+dedup][+warm][+minK]``: ``explore study run`` with that sampler and
  options (``warm``: ``--warm-start 3``, the fastest probed configurations trained first,
  otherwise ``--warm-start 0``; ``minK``: ``[study] prune_min_trials = K``).

The score is the hypervolume of the COMPLETE trials finished so far against the reference point
(0, 0), accuracy times throughput divided by the best throughput measured in the whole
benchmark run (so numbers from different machines compare). The table gives the final
hypervolume (mean ± sd over seeds) and the time each configuration's mean curve needs to reach
baseline A's final mean hypervolume; a second pair of columns (``*``) scores the same trials with
every architecture's throughput measured again after all runs, one architecture after another
on an otherwise idle benchmark, so that a lucky measurement on a busy machine earns nothing.

Usage::

    python benchmarks/search_efficiency.py                 # defaults: 9 configurations × 3 seeds
    python benchmarks/search_efficiency.py --budget 30 --seeds 1 --configs "A optuna-nsga2" tpe
    python benchmarks/search_efficiency.py --analyze /tmp/search-efficiency-XXXX   # re-read runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _scoring import BASELINE_A, BASELINE_B, Run, analyze, load_runs, plot, table

ROOT = Path(__file__).resolve().parent.parent
EXPLORE = Path(sys.executable).with_name("explore")
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_CONFIGS = (
    BASELINE_A, BASELINE_B,
    "tpe", "tpe+dedup", "tpe+dedup+warm", "tpe+prune+dedup+warm",
    "nsga2+dedup+warm", "gp+dedup+warm", "random+dedup+warm",
)
# Settings every explore run shares: one torch thread (the lanes share the cores).
BENCH_TOML = "[measure]\nthreads = 1\n"
REMEASURE_ROUNDS = 3


def all_configs() -> list[str]:
    out = [BASELINE_A, BASELINE_B]
    for sampler in SAMPLERS:
        out += [sampler, f"{sampler}+prune", f"{sampler}+dedup", f"{sampler}+prune+dedup",
                f"{sampler}+dedup+warm", f"{sampler}+prune+dedup+warm"]
    return out


def parse_config(config: str) -> tuple[str, dict[str, Any]]:
    """``"tpe+prune+dedup+min2"`` → ``("tpe", {"prune": True, "dedup": True, "warm": False,
    "min": 2})``."""
    if config == BASELINE_B:
        return "random", {"prune": False, "dedup": False, "warm": False, "min": None}
    sampler, *rest = config.split("+")
    mins = [int(t[3:]) for t in rest if t.startswith("min") and t[3:].isdigit()]
    unknown = [t for t in rest
               if t not in ("prune", "dedup", "warm") and not t.startswith("min")]
    if sampler not in SAMPLERS or unknown or len(mins) > 1:
        raise ValueError(f"unknown configuration {config!r}")
    return sampler, {"prune": "prune" in rest, "dedup": "dedup" in rest, "warm": "warm" in rest,
                     "min": mins[0] if mins else None}


# ---------------------------------------------------------------------------------------------
# baseline A: a plain Optuna script


def baseline_a(seed: int, storage: str, budget: float) -> None:
    """The Optuna multi-objective example's shape, on explore's data, model and objective."""
    import optuna
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from explore.config import DataSettings, MeasureSettings, TrainSettings
    from explore.engine.data import load_dataset
    from explore.engine.measure import measure_throughput
    from extattn import ModelConfig, create_model

    torch.set_num_threads(1)
    train = TrainSettings()  # epochs, batch size, AdamW and schedule as explore's defaults
    data = load_dataset(DataSettings(), seed=seed)  # explore's split and normalization
    train_loader = DataLoader(TensorDataset(data.train_x, data.train_y),
                              batch_size=train.batch_size, shuffle=True)
    valid_loader = DataLoader(TensorDataset(data.eval_x, data.eval_y),
                              batch_size=train.batch_size, shuffle=False)
    cpu = torch.device("cpu")

    def define_model(trial: optuna.Trial) -> torch.nn.Module:
        config = ModelConfig(
            image_size=8, in_chans=1, num_classes=10,
            attention=trial.suggest_categorical("attention", ["external"]),
            mem_size=trial.suggest_categorical("mem_size", [8, 16, 32, 64, 128]),
            heads=trial.suggest_categorical("heads", [1, 2, 4, 8]),
            norm=trial.suggest_categorical("norm", ["softmax", "double"]),
        )
        return create_model(config)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        torch.manual_seed(seed * 100_003 + trial.number)
        model = define_model(trial)
        throughput = measure_throughput(model, (1, 8, 8), cpu, MeasureSettings()).median
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
        rest = [p for n, p in model.named_parameters() if p.ndim < 2 or "pos_embed" in n]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay},
                                       {"params": rest, "weight_decay": 0.0}], lr=train.lr)
        steps = len(train_loader) * train.epochs
        warmup = max(1, round(train.warmup_epochs * len(train_loader)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (
            (s + 1) / warmup if s < warmup
            else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))))
        model.train()
        for _ in range(train.epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y, label_smoothing=train.label_smoothing)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in valid_loader:
                correct += (model(x).argmax(dim=1) == y).sum().item()
        return correct / len(valid_loader.dataset), throughput

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="bench", storage=storage,
                                directions=["maximize", "maximize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=seed))
    study.optimize(objective, timeout=budget)


# ---------------------------------------------------------------------------------------------
# running the configurations


def command(config: str, seed: int, budget: float, db: Path, toml: Path) -> list[str]:
    if config == BASELINE_A:
        return [sys.executable, str(Path(__file__).resolve()), "--baseline-a", "--seed",
                str(seed), "--storage", f"sqlite:///{db}", "--budget", str(budget)]
    sampler, opts = parse_config(config)
    if opts["min"] is not None:
        toml = db.with_name("bench.toml")
        toml.write_text(f"[study]\nprune_min_trials = {opts['min']}\n\n{BENCH_TOML}",
                        encoding="utf-8")
    return [str(EXPLORE), "study", "run", "--name", "bench", "--storage", f"sqlite:///{db}",
            "--config", str(toml), "--sampler", sampler, "--seed", str(seed),
            "--trials", "100000", "--timeout", str(budget), "--keep-checkpoints", "none",
            "--prune" if opts["prune"] else "--no-prune",
            "--dedup" if opts["dedup"] else "--no-dedup",
            "--warm-start", "3" if opts["warm"] else "0", "-q"]


def launch(run: Run, toml: Path) -> Run:
    """Run one configuration for its budget (then kill it) and read its trials back."""
    started = dt.datetime.now()
    run.started = started.isoformat()
    # Each run its own temporary directory, so its own machine lock: the lanes stand for
    # separate machines, and explore's runs must not wait for each other's epochs.
    env = {**os.environ, "TMPDIR": str(Path(run.db).parent)}
    proc = subprocess.Popen(command(run.config, run.seed, run.budget, Path(run.db), toml),
                            cwd=Path(run.db).parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    try:
        _, err = proc.communicate(timeout=run.budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    run.stderr_tail = (err or "")[-2000:]
    read_trials(run, started)
    return run


def read_trials(run: Run, started: dt.datetime) -> None:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{run.db}")
    except KeyError:
        return  # killed before the study existed
    for t in study.get_trials(deepcopy=False):
        duplicate = t.user_attrs.get("duplicate_of") is not None
        run.duplicates += duplicate
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not duplicate:
            run.trained += 1
            run.pruned += t.state == TrialState.PRUNED
        if t.state != TrialState.COMPLETE or t.datetime_complete is None:
            continue
        seconds = (t.datetime_complete - started).total_seconds()
        if seconds <= run.budget:
            arch = {k: t.params[k] for k in ("mem_size", "heads", "norm")}
            run.points.append([round(seconds, 3), t.values[0], t.values[1], arch])


def run_all(configs: Sequence[str], seeds: Sequence[int], budget: float, lanes: int,
            out: Path) -> list[Run]:
    toml = out / "bench.toml"
    toml.write_text(BENCH_TOML, encoding="utf-8")
    runs = []
    for seed in seeds:  # interleaved: all configurations of one seed, then the next seed
        for config in configs:
            directory = out / f"{config.replace(' ', '_')}-s{seed}"
            directory.mkdir(parents=True, exist_ok=True)
            runs.append(Run(config, seed, budget, str(directory / "run.db")))
    total = math.ceil(len(runs) / lanes) * budget
    print(f"{len(runs)} runs of {budget:.0f} s, {lanes} side by side: about "
          f"{total / 60:.1f} min; raw results in {out}", file=sys.stderr, flush=True)
    done = 0

    def one(run: Run) -> Run:
        nonlocal done
        launch(run, toml)
        done += 1
        print(f"[{done}/{len(runs)}] {run.config} seed {run.seed}: {len(run.points)} complete, "
              f"{run.pruned} pruned, {run.duplicates} duplicates", file=sys.stderr, flush=True)
        if not run.points and run.stderr_tail:
            print(run.stderr_tail, file=sys.stderr)
        return run

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        return list(pool.map(one, runs))


def remeasure(runs: Sequence[Run]) -> dict[str, float]:
    """Every architecture seen, measured again after the runs (nothing else of ours runs):
    ``REMEASURE_ROUNDS`` rounds over all of them, keeping each one's best median — other work
    on the machine only ever slows a measurement down."""
    import torch

    from explore.config import MeasureSettings
    from explore.engine.measure import measure_throughput
    from extattn import ModelConfig, create_model

    torch.set_num_threads(1)
    archs = sorted({json.dumps(p[3], sort_keys=True) for r in runs for p in r.points})
    models = {key: create_model(ModelConfig(image_size=8, in_chans=1, num_classes=10,
                                            **json.loads(key))) for key in archs}
    out: dict[str, float] = {}
    for _ in range(REMEASURE_ROUNDS):
        for key, model in models.items():
            median = measure_throughput(model, (1, 8, 8), torch.device("cpu"),
                                        MeasureSettings()).median
            out[key] = max(out.get(key, 0.0), median)
    return out


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg": [round(v, 2) for v in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0,
                        help="wall-clock seconds per run, from launch (default 60)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration (3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, … (to add independent runs)")
    parser.add_argument("--lanes", type=int, default=2,
                        help="runs side by side, one thread each (default 2)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help=f"configurations, or 'all' for every sampler × prune × dedup "
                             f"(default: {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--out", type=Path, help="directory for the raw runs (default: temp)")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "search_efficiency.png",
                        help="where to save the plot (default docs/search_efficiency.png)")
    parser.add_argument("--no-remeasure", action="store_true",
                        help="skip measuring every architecture again after the runs")
    parser.add_argument("--analyze", type=Path, nargs="+", metavar="DIR",
                        help="only analyze the runs saved in DIR(s) by earlier invocations")
    parser.add_argument("--baseline-a", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.baseline_a:
        baseline_a(args.seed, args.storage, args.budget)
        return
    if args.analyze:
        runs, throughput, meta = load_runs(args.analyze)
    else:
        configs = all_configs() if args.configs == ["all"] else args.configs
        unknown = set()
        for config in set(configs) - {BASELINE_A}:
            try:
                parse_config(config)
            except ValueError:
                unknown.add(config)
        if unknown:
            parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(all_configs())}")
        out = args.out or Path(tempfile.mkdtemp(prefix="search-efficiency-"))
        out.mkdir(parents=True, exist_ok=True)
        meta = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(["python", "benchmarks/search_efficiency.py", *sys.argv[1:]]),
                "machine_before": machine()}
        started = time.monotonic()
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = run_all(configs, seeds, args.budget, args.lanes, out)
        meta["runs_seconds"] = round(time.monotonic() - started, 1)
        meta["machine_after_runs"] = machine()
        throughput = None if args.no_remeasure else remeasure(runs)
        meta["machine_after"] = machine()
        (out / "runs.json").write_text(json.dumps(
            {"meta": meta, "runs": [asdict(r) for r in runs], "remeasured": throughput},
            indent=1), encoding="utf-8")
    rows, grid, info = analyze(runs, throughput)
    print(f"# search efficiency, {meta.get('date', '?')}: {meta.get('command', '')}")
    for key in ("machine_before", "machine_after_runs", "machine_after"):
        if key in meta:
            print(f"# {key}: {meta[key]}")
    nan = float("nan")
    print(f"# best throughput measured {info['best_throughput']:.0f} img/s "
          f"(re-measured: {info['best_throughput_re']:.0f}); baseline A's final HV "
          f"{info['target'] or nan:.3f} (re-measured {info['target_re'] or nan:.3f})")
    print(table(rows, info))
    plot(rows, grid, info, args.png)
    print(f"# plot: {args.png}")


if __name__ == "__main__":
    main()
