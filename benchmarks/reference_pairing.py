"""Does timing a fixed reference model alongside each trial's take the machine's swings out of
a study's throughput noise?

A study measures every trial in its own process, at its own moment, between other trials'
training; on a shared virtual machine the same model's images/s moves between those moments,
and the noise-aware front reads that as noise of the designs. With ``[measure] reference`` (the
default) each measurement alternates blocks of the trial's model with blocks of one fixed
reference model and records the ratio of their speeds, which the front reads at the study's mean
machine speed (docs/replicates.md).

The script runs one real study with a fixed ``--replicates K`` (default 3) of every configuration
it explores (``--trials``, default 30: 10 configurations of the default digits space), then reads
the same trials twice: by their measured images/s (the objective value, what the front read
before the reference) and by the reference. Printed for both: the pooled per-run noise of log
throughput (what every interval is made of), the median width of the configurations'
throughput intervals, and how many configurations the front decides (confidently dominated at
the study's confidence). Goal: less noise with the reference than without (it must not add more
of its own than it takes out; how much it takes out depends on how much the machine drifts).

    python benchmarks/reference_pairing.py --workdir DIR [--trials 30] [--replicates 3] [--epochs N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import machine_line

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("explore")
EXPLORE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, str(REPO / "cli.py")]
STUDY = "reference"
GOAL = 1.0  # the reference's noise below this share of the measured figures'


def run_study(db: Path, args: argparse.Namespace) -> float:
    command = [*EXPLORE, "study", "run", "--name", STUDY, "--storage", f"sqlite:///{db}",
               "--replicates", str(args.replicates), "--trials", str(args.trials),
               "--seed", str(args.seed), "--keep-checkpoints", "none", "-q"]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")}
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=db.parent, env=env, capture_output=True, text=True,
                          timeout=4 * 3600)
    if proc.returncode != 0:
        raise SystemExit(f"explore study run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def without_reference(t: Any) -> Any:
    """The trial as a study from before the reference stores it: its measured figure only."""
    throughput = {k: v for k, v in t.user_attrs.get("throughput", {}).items()
                  if k not in ("relative", "reference")}
    return replace(t, user_attrs={**t.user_attrs, "throughput": throughput})


def summary(records: list[Any], settings: dict[str, Any]) -> dict[str, Any]:
    from studies.replicates import study_front

    cf = study_front(records, settings)
    noise = cf.front.noise
    widths = [math.log(e.throughput.high / e.throughput.low) for e in cf.front.estimates
              if e.throughput.low and e.throughput.high]
    return {"sd": noise.log_throughput_sd, "df": noise.df, "configs": len(cf.configs),
            "width": statistics.median(widths) if widths else None,
            "dominated": len(cf.front.dominated), "plausible": len(cf.front.plausible),
            "speed": cf.machine_speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True,
                        help="where the study database goes (an existing one is continued)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="training epochs (default: the default 12)")
    args = parser.parse_args()
    if args.replicates < 2:
        raise SystemExit("--replicates: at least 2 (the noise is estimated within configurations)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    import optuna
    import torch

    from explore.search.racing import record_of
    from studies.record import ATTR_SETTINGS

    print(machine_line(torch.device("cpu")))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: one study, --replicates {args.replicates}, "
          f"--trials {args.trials}, --seed {args.seed}; load before {os.getloadavg()[0]:.2f}")
    wall = run_study(args.workdir / "reference.db", args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY,
                              storage=f"sqlite:///{args.workdir / 'reference.db'}")
    settings = study.user_attrs.get(ATTR_SETTINGS, {})
    records = [record_of(t) for t in study.get_trials(deepcopy=False)]
    paired = summary(records, settings)
    if paired["speed"] is None:
        raise SystemExit("the study's trials were not all timed against the reference "
                         "([measure] reference = false, or a CUDA graph device)")
    measured = summary([without_reference(t) for t in records], settings)
    print(f"study: {wall:.1f} s, {paired['configs']} configurations, load after "
          f"{os.getloadavg()[0]:.2f}; the reference's mean speed {paired['speed']:,.0f} img/s\n")
    print("| throughput read by | per-run noise (sd of log, pooled) | median interval width "
          "(high/low) | confidently dominated | plausible |")
    print("|---|---:|---:|---:|---:|")
    for name, s in (("measured images/s", measured), ("the reference", paired)):
        width = f"{math.exp(s['width']):.2f}" if s["width"] is not None else "-"
        print(f"| {name} | {s['sd']:.3g} (df {s['df']}) | {width} | "
              f"{s['dominated']} of {s['configs']} | {s['plausible']} |")
    share = paired["sd"] / measured["sd"]
    print(f"\nnoise with the reference / without: {share:.2f} (goal < {GOAL:g}): "
          f"{'PASS' if share < GOAL else 'FAIL'}")


if __name__ == "__main__":
    main()
