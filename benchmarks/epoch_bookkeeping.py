"""What a trial spends per epoch besides training: state saves and history writes.

After every epoch a trial evaluates the model, and it used to save its whole training state
(weights, AdamW moments, generators: one ``torch.save`` of a packed buffer) and write its
history and worker beat to the study (two ``set_user_attr`` calls, each a storage transaction).
``[train] state_interval`` (default 1 s) saves the state, and writes the history with it, only
once that many seconds of training have passed since the last save (and always after the last
epoch, at pruning rungs and when stopping). This script runs the same trials both ways, as
``explore study run`` on a fresh SQLite file per run, and reads what every trial recorded:

- ``wall_seconds`` (training, evaluations and this bookkeeping) minus ``train_seconds`` (the
  training steps alone), per epoch: evaluation plus bookkeeping;
- the trial's ``wall_seconds`` itself, whose ratio between the two modes is the gain.

Two models: the default one (epochs of ~0.25 s on one CPU thread, where bookkeeping is a few
per cent) and a small one with large batches whose epochs take milliseconds, as the default
model's do on a GPU when each step is a CUDA graph replay (~15 ms an epoch on an H200), where
it was about as long as the epoch. The runs alternate (``--repeats`` times each, order flipped
every repeat); the learning rate is searched from the same seed, so both modes train the same
trials. Usage::

    python benchmarks/epoch_bookkeeping.py                 # both models, 3 repeats, 4 trials
    python benchmarks/epoch_bookkeeping.py --models fast --repeats 2 --trials 2 --epochs 6
    python benchmarks/epoch_bookkeeping.py --device cuda --models default   # on a GPU
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

from _common import interleaved, load_average

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("explore")  # the installed command, or the repo's cli.py
EXPLORE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, str(REPO / "cli.py")]
MODES = {"each epoch": 0.0, "default (1 s)": 1.0}
MODELS = {  # [model] settings, [train] batch_size, searched learning rates
    "default": ("", 64, (0.002, 0.01)),  # dim 64, depth 2, 4 heads, S 64
    "fast": ("[model]\ndim = 16\ndepth = 1\nheads = 2\nmem_size = 16\n", 512, (0.02, 0.05)),
}
CONFIG = """\
[study]
trials = {trials}
sampler = "random"
prune = false

{model}
[train]
epochs = {epochs}
state_interval = {interval}
batch_size = {batch}

[measure]
min_time = 0.05
retries = 0

[space]
lr = {{low = {low}, high = {high}, log = true}}
"""


def run_once(model: str, interval: float, trials: int, epochs: int, device: str
             ) -> list[dict[str, Any]]:
    """The finished trials' records of one ``explore study run``."""
    import optuna

    with tempfile.TemporaryDirectory(prefix="explore-bookkeeping-") as tmp:
        directory = Path(tmp)
        settings, batch, (low, high) = MODELS[model]
        (directory / "bench.toml").write_text(CONFIG.format(
            trials=trials, epochs=epochs, interval=interval, model=settings, batch=batch,
            low=low, high=high), encoding="utf-8")
        db = directory / "bench.db"
        env = {k: v for k, v in os.environ.items()
               if k not in ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS")}
        proc = subprocess.run(
            [*EXPLORE, "study", "run", "--name", "bench", "--storage", f"sqlite:///{db}",
             "--config", "bench.toml", "--workers", "1", "--device", device, "--seed", "3"],
            cwd=directory, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"explore study run failed:\n{proc.stderr[-2000:]}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
        out = []
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            attrs = t.user_attrs
            if "duplicate_of" in attrs:
                continue
            out.append({"lr": t.params["lr"], "wall": attrs["wall_seconds"],
                        "train": attrs["train_seconds"], "epochs": len(attrs["history"]),
                        "accuracy": t.values[0]})
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default,fast",
                        help=f"comma-separated, among {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models or args.repeats < 1 or args.trials < 1 or args.epochs < 1:
        parser.error(f"--models {args.models}: choose among {', '.join(MODELS)}; "
                     "--repeats, --trials and --epochs must be >= 1")
    print(f"{args.device}, one worker; {args.trials} trials x {args.epochs} epochs per run, "
          f"{args.repeats} repeats per mode; load average {load_average()} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    rows = []
    for model in models:
        trials: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for repeat, mode in interleaved(list(MODES), args.repeats):
            done = run_once(model, MODES[mode], args.trials, args.epochs, args.device)
            trials[mode] += done
            print(f"  {model:7s} repeat {repeat + 1} {mode:14s} trial wall "
                  + ", ".join(f"{t['wall']:.3f}" for t in done) + " s", flush=True)
        lrs = {mode: sorted(round(t["lr"], 12) for t in ts) for mode, ts in trials.items()}
        if len({tuple(v) for v in lrs.values()}) != 1:
            raise SystemExit("the two modes trained different trials: not comparable")
        stats = {}
        for mode, ts in trials.items():
            stats[mode] = {
                "wall": statistics.median(t["wall"] for t in ts),
                "train_epoch": statistics.median(t["train"] / t["epochs"] for t in ts),
                "other_epoch": statistics.median((t["wall"] - t["train"]) / t["epochs"]
                                                 for t in ts),
                "accuracy": statistics.mean(t["accuracy"] for t in ts),
            }
        rows.append((model, stats))
    print()
    print("| model | mode | trial wall (median) | training per epoch | evaluation + "
          "bookkeeping per epoch | mean accuracy |")
    print("|---|---|---:|---:|---:|---:|")
    for model, stats in rows:
        for mode, s in stats.items():
            print(f"| {model} | {mode} | {s['wall']:.3f} s | {s['train_epoch'] * 1e3:.1f} ms | "
                  f"{s['other_epoch'] * 1e3:.1f} ms | {s['accuracy']:.4f} |")
    print()
    for model, stats in rows:
        each, default = stats["each epoch"], stats["default (1 s)"]
        print(f"{model}: trial wall, each epoch / default = {each['wall'] / default['wall']:.2f}; "
              f"per epoch outside training {each['other_epoch'] * 1e3:.1f} -> "
              f"{default['other_epoch'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
