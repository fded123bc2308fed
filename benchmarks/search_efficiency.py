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
  throughput from ``explore.measure.measure_throughput`` so the objective is identical);
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXPLORE = Path(sys.executable).with_name("explore")
BASELINE_A = "A optuna-nsga2"
BASELINE_B = "B random"
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_CONFIGS = (
    BASELINE_A, BASELINE_B,
    "tpe", "tpe+dedup", "tpe+dedup+warm", "tpe+prune+dedup+warm",
    "nsga2+dedup+warm", "gp+dedup+warm", "random+dedup+warm",
)
# Settings every explore run shares: one torch thread (the lanes share the cores).
BENCH_TOML = "[measure]\nthreads = 1\n"
REMEASURE_ROUNDS = 3
GRID_STEP = 1.0  # seconds between points of the hypervolume curves


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
    from explore.data import load_dataset
    from explore.measure import measure_throughput
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


@dataclass
class Run:
    config: str
    seed: int
    budget: float
    db: str
    started: str = ""  # ISO time of the launch
    points: list[list[Any]] = field(default_factory=list)  # [seconds, accuracy, img/s, params]
    trained: int = 0  # trials that trained (complete or pruned, not duplicates)
    pruned: int = 0
    duplicates: int = 0
    stderr_tail: str = ""


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
    proc = subprocess.Popen(command(run.config, run.seed, run.budget, Path(run.db), toml),
                            cwd=Path(run.db).parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
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
    from explore.measure import measure_throughput
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


# ---------------------------------------------------------------------------------------------
# hypervolume


def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """2-D hypervolume of maximized (accuracy, throughput) points against (0, 0)."""
    total, covered = 0.0, 0.0
    for acc, thr in sorted(points, key=lambda p: (-p[0], -p[1])):
        if thr > covered:
            total += acc * (thr - covered)
            covered = thr
    return total


def curve(run: Run, scale: float, grid: Sequence[float],
          throughput: dict[str, float] | None = None) -> list[float]:
    """Hypervolume of the trials finished by each time of ``grid`` (throughput / ``scale``)."""
    pts = sorted(run.points, key=lambda p: p[0])
    out, i, current = [], 0, []
    for t in grid:
        while i < len(pts) and pts[i][0] <= t:
            thr = pts[i][2] if throughput is None else throughput[
                json.dumps(pts[i][3], sort_keys=True)]
            current.append((pts[i][1], thr / scale))
            i += 1
        out.append(hypervolume(current))
    return out


def first_reach(values: Sequence[float], grid: Sequence[float], target: float) -> float | None:
    return next((t for t, v in zip(grid, values, strict=True) if v >= target - 1e-12), None)


@dataclass
class Row:
    config: str
    trained: float
    pruned: float
    duplicates: float
    final: list[float]
    reach: float | None  # time the mean curve reaches baseline A's final mean
    reached: int  # seeds whose own curve reaches it
    final_re: list[float]
    reach_re: float | None
    mean_curve: list[float]
    mean_curve_re: list[float]


def analyze(runs: Sequence[Run], throughput: dict[str, float] | None
            ) -> tuple[list[Row], list[float], dict[str, Any]]:
    budget = max(r.budget for r in runs)
    grid = [GRID_STEP * k for k in range(int(budget / GRID_STEP) + 1)]
    best = max((p[2] for r in runs for p in r.points), default=1.0)
    best_re = max(throughput.values(), default=1.0) if throughput else 1.0
    configs = list(dict.fromkeys(r.config for r in runs))
    curves = {c: [curve(r, best, grid) for r in runs if r.config == c] for c in configs}
    curves_re = {c: [curve(r, best_re, grid, throughput) for r in runs if r.config == c]
                 for c in configs} if throughput else {}

    def mean_curve(cs: list[list[float]]) -> list[float]:
        return [statistics.fmean(v) for v in zip(*cs, strict=True)]

    target = statistics.fmean(c[-1] for c in curves[BASELINE_A]) if BASELINE_A in curves else None
    target_re = (statistics.fmean(c[-1] for c in curves_re[BASELINE_A])
                 if throughput and BASELINE_A in curves_re else None)
    rows = []
    for c in configs:
        mine = [r for r in runs if r.config == c]
        mc = mean_curve(curves[c])
        rows.append(Row(
            config=c,
            trained=statistics.fmean(r.trained for r in mine),
            pruned=statistics.fmean(r.pruned for r in mine),
            duplicates=statistics.fmean(r.duplicates for r in mine),
            final=[cv[-1] for cv in curves[c]],
            reach=first_reach(mc, grid, target) if target is not None else None,
            reached=sum(first_reach(cv, grid, target) is not None for cv in curves[c])
            if target is not None else 0,
            final_re=[cv[-1] for cv in curves_re[c]] if throughput else [],
            reach_re=first_reach(mean_curve(curves_re[c]), grid, target_re)
            if target_re is not None else None,
            mean_curve=mc,
            mean_curve_re=mean_curve(curves_re[c]) if throughput else [],
        ))
    info = {"target": target, "target_re": target_re, "best_throughput": best,
            "best_throughput_re": best_re, "budget": budget}
    return rows, grid, info


def mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def seconds(value: float | None, budget: float) -> str:
    return f"{value:.0f} s ({value / budget:.2f})" if value is not None else "not reached"


def table(rows: Sequence[Row], info: dict[str, Any]) -> str:
    budget = info["budget"]
    lines = [
        "| configuration | trained | pruned | dups | final HV | t → A's HV (÷ budget) | seeds "
        "| final HV* | t → A's HV* |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.trained:.1f} | {r.pruned:.1f} | {r.duplicates:.1f} "
            f"| {mean_sd(r.final)} | {seconds(r.reach, budget)} | {r.reached}/{len(r.final)} "
            f"| {mean_sd(r.final_re)} | {seconds(r.reach_re, budget)} |")
    return "\n".join(lines)


def plot(rows: Sequence[Row], grid: Sequence[float], info: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("as measured by each trial", "mean_curve", "target")]
    if rows and rows[0].mean_curve_re:
        panels.append(("throughput re-measured after the runs (*)", "mean_curve_re",
                       "target_re"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (title, attr, target) in zip(axes[0], panels, strict=True):
        for r in rows:
            style = "--" if r.config in (BASELINE_A, BASELINE_B) else "-"
            ax.plot(grid, getattr(r, attr), style, label=r.config,
                    linewidth=2 if style == "--" else 1.3)
        if info[target] is not None:
            ax.axhline(info[target], color="grey", linewidth=0.8, linestyle=":")
            ax.text(grid[0], info[target], " baseline A's final", va="bottom", fontsize=8,
                    color="grey")
        ax.set_xlabel("wall time since launch (s)")
        ax.set_ylabel("hypervolume (accuracy × throughput / best throughput)")
        ax.set_title(f"digits, mean over seeds: {title}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_runs(dirs: Sequence[Path]
              ) -> tuple[list[Run], dict[str, float] | None, dict[str, Any]]:
    """The runs saved by earlier invocations; an architecture re-measured by several of them
    keeps its best figure."""
    runs: list[Run] = []
    throughput: dict[str, float] | None = {}
    metas = []
    for out in dirs:
        data = json.loads((out / "runs.json").read_text(encoding="utf-8"))
        runs += [Run(**r) for r in data["runs"]]
        metas.append(data.get("meta", {}))
        if data.get("remeasured") is None:
            throughput = None
        elif throughput is not None:
            for key, value in data["remeasured"].items():
                throughput[key] = max(throughput.get(key, 0.0), value)
    meta = metas[0] if len(metas) == 1 else {
        "date": ", ".join(m.get("date", "?") for m in metas),
        "command": " + ".join(m.get("command", "?") for m in metas)}
    return runs, throughput, meta


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
