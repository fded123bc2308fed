"""Training speed of the default trial: explore's trainer against a hand-written DataLoader loop.

Two comparisons on the default digits model (dim 64, depth 2, 4 heads, S 64, 16 tokens) with the
default training settings (12 epochs, batch 64, AdamW lr 1e-2, warm-up + cosine, label
smoothing, gradient clipping):

1. **Per process** (same thread count, ``--threads``, default 1 on CPU): images/s trained by
   ``explore.engine.train.train_model`` (data resident on the device, batches by index, fused AdamW,
   no per-step host sync) against the loop of the Optuna PyTorch example: a ``TensorDataset`` in
   a ``DataLoader(shuffle=True)``, batches moved to the device each step, ``loss.item()`` every
   step, an evaluation loop over a ``DataLoader`` with ``.item()`` per batch. Same model code,
   data, recipe and epochs; the two take turns ``--repeats`` times (order alternating). Each is
   also given as a fraction of the machine's fp32 matmul peak measured in the same run with the
   same threads (model FLOPs per image from ``extattn.count_flops``, ×3 for forward + backward).
2. **Whole machine** (CPU only): trials per hour of the hand-written script as people run it
   (one process, every core's thread, ``--machine-trials`` trials one after another) against
   explore's policy (one single-threaded worker per core, side by side, the machine lock held
   shared while training and exclusively while measuring, as ``explore study run`` does). Every
   trial of both measures its inference throughput (``measure_throughput``, default settings)
   before training: both produce the two objectives. Worker processes start together after
   their imports (a shared start time), so start-up is counted for neither.

Usage::

    python benchmarks/train_speed.py                    # CPU, 3 repeats, whole machine too
    python benchmarks/train_speed.py --epochs 4 --repeats 2 --no-machine
    python benchmarks/train_speed.py --device cuda      # per-process comparison on the GPU
    python benchmarks/train_speed.py --compile --no-machine  # and the torch.compile'd trainer
    python benchmarks/train_speed.py --device cuda --compile --compile-mode default,reduce-overhead
    python benchmarks/train_speed.py --bf16             # and explore with --precision bf16
    python benchmarks/train_speed.py --device cuda --fp32   # and explore in fp32 on the GPU

On CUDA explore's trainer runs each step as a CUDA graph replay (``[train] cuda_graph``); a row
with the steps launched eagerly is added (``--no-eager-steps`` leaves it out), and their ratio
printed. ``--bf16`` adds explore's trainer under bf16 autocast (``--precision bf16``) to both
comparisons, with its accuracies, and its rate as a fraction of the bf16 matmul peak measured in
the same run (the fp32 "of peak" column would flatter it).

Timings move with other work on the machine: the load average is printed with the results;
compare numbers from one run only. With one CPU thread the "per CPU-s" columns (images per
second of the process's CPU time spent training, against the matmul peak per CPU-second) are
what the run would reach on a quiet machine even while other work competes for the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    default_config,
    digits,
    interleaved,
    machine_line,
    matmul_peak,
    parse_device,
    sync,
    table_head,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from explore.config import COMPILE_MODES, MeasureSettings, TrainSettings
from explore.engine.data import Dataset
from explore.engine.locks import MachineLock
from explore.engine.measure import measure_throughput
from explore.engine.train import compile_for_trial, evaluate, train_model
from extattn import count_flops, create_model

EXPLORE = "explore trainer"
COMPILED = "explore, --compile"
BF16 = "explore, --precision bf16"
FP32 = "explore, --precision fp32"
EAGER = "explore, eager steps"
HANDWRITTEN = "DataLoader loop"


def _cosine_with_warmup(total: int, warmup: int):  # the same schedule as explore's trainer
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def handwritten_trial(data: Dataset, settings: TrainSettings, seed: int,
                      device: torch.device, measure: bool = False) -> dict[str, Any]:
    """The Optuna PyTorch example's loop: DataLoader over CPU tensors, ``.item()`` per step.

    ``measure``: time inference first, as a script with a throughput objective must.
    """
    torch.manual_seed(seed)
    model: nn.Module = create_model(default_config()).to(device)
    if measure:
        measure_throughput(model, data.image_shape, device, MeasureSettings())
    train_loader = DataLoader(TensorDataset(data.train_x.cpu(), data.train_y.cpu()),
                              batch_size=settings.batch_size, shuffle=True)
    valid_loader = DataLoader(TensorDataset(data.eval_x.cpu(), data.eval_y.cpu()),
                              batch_size=settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    steps = len(train_loader)
    warmup = max(1, round(settings.warmup_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(steps * settings.epochs, warmup))
    train_seconds = train_cpu = 0.0
    accuracy = 0.0
    for _epoch in range(settings.epochs):
        started, cpu = time.perf_counter(), time.process_time()
        model.train()
        running = 0.0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y, label_smoothing=settings.label_smoothing)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(x)
        sync(device)
        train_seconds += time.perf_counter() - started
        train_cpu += time.process_time() - cpu
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in valid_loader:
                pred = model(x.to(device)).argmax(dim=1, keepdim=True)
                correct += pred.eq(y.to(device).view_as(pred)).sum().item()
        accuracy = correct / len(valid_loader.dataset)  # type: ignore[arg-type]
    return {"accuracy": accuracy, "train_seconds": train_seconds, "train_cpu": train_cpu}


def explore_trial(data: Dataset, settings: TrainSettings, seed: int, device: torch.device,
                  lock: MachineLock | None = None, measure: bool = False,
                  compiled: bool = False) -> dict[str, Any]:
    """What a trial of ``explore study run`` does with the model (measure, then train).

    ``train_cpu``: the process's CPU seconds of the trial less ``epochs`` evaluations (one
    ``evaluate`` call timed after training): the trainer reports wall time only.
    ``compiled``: as ``--compile`` does, every graph is compiled first (``compile_seconds``),
    outside the training figures.
    """
    torch.manual_seed(seed)
    model = create_model(default_config()).to(device)
    net, compile_seconds = model, 0.0
    if compiled:
        net, compile_seconds = compile_for_trial(model, data, replace(settings, compile=True),
                                                 MeasureSettings().batch_size)
    cpu = time.process_time()
    if measure:
        count_flops(model, data.image_shape)
        with lock.exclusive() if lock else _null():
            measure_throughput(net, data.image_shape, device, MeasureSettings(),
                               settings.precision)
    result = train_model(model, data, settings, seed,
                         epoch_guard=lock.shared if lock else _null, net=net)
    trial_cpu = time.process_time() - cpu
    eval_cpu = []
    for _ in range(3):
        started = time.process_time()
        evaluate(net, data.eval_x, data.eval_y, settings.precision)
        eval_cpu.append(time.process_time() - started)
    return {"accuracy": result.accuracy, "train_seconds": result.train_seconds,
            "train_cpu": trial_cpu - settings.epochs * statistics.median(eval_cpu),
            "compile_seconds": compile_seconds}


class _null:  # a do-nothing context manager (and its own factory)
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def per_process(args: argparse.Namespace, device: torch.device) -> None:
    data = digits(device)
    settings = TrainSettings(epochs=args.epochs)
    flops = count_flops(create_model(default_config()).to(device), data.image_shape)
    train_flops = 3 * flops  # forward + backward ≈ 3 forwards
    images = len(data.train_y) * settings.epochs
    peak = matmul_peak(device)
    quiet = device.type == "cpu" and torch.get_num_threads() == 1
    cpu_peak = matmul_peak(device, cpu_time=True) if quiet else float("nan")
    print(f"[per process] {machine_line(device)}")
    print(f"model: {flops / 1e6:.2f} MFLOP/image forward, {train_flops / 1e6:.2f} trained; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s"
          + (f" ({cpu_peak:.1f} per CPU-second)" if quiet else "")
          + f"; {settings.epochs} epochs × {len(data.train_y)} images, batch "
          f"{settings.batch_size}")
    runs: dict[str, list[dict[str, Any]]] = {EXPLORE: [], HANDWRITTEN: []}
    trials = {EXPLORE: lambda s: explore_trial(data, settings, s, device),
              HANDWRITTEN: lambda s: handwritten_trial(data, settings, s, device)}
    for mode in (args.compile_mode if args.compile else []):
        name = COMPILED if mode == "default" else f"{COMPILED} ({mode})"
        runs[name] = []
        trials[name] = (lambda m: lambda s: explore_trial(data, replace(settings, compile_mode=m),
                                                          s, device, compiled=True))(mode)
    extra = {BF16: args.bf16 and device.type == "cpu",  # on CUDA explore's default is bf16
             FP32: args.fp32 and device.type == "cuda",  # on the CPU it is fp32
             EAGER: device.type == "cuda" and args.eager_steps}
    changes = {BF16: {"precision": "bf16"}, FP32: {"precision": "fp32"},
               EAGER: {"cuda_graph": False}}
    for name in (n for n, wanted in extra.items() if wanted):
        runs[name] = []
        trials[name] = (lambda changed: lambda s: explore_trial(data, changed, s, device))(
            replace(settings, **changes[name]))
    failed: dict[str, str] = {}

    def attempt(name: str, seed: int, label: str) -> dict[str, Any] | None:
        """One trial of ``name``; an extra trainer that fails (a compile mode) ends its row."""
        try:
            return trials[name](seed)
        except Exception as exc:
            if name in (EXPLORE, HANDWRITTEN):
                raise
            failed[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            print(f"  {label} {name:18s} FAILED: {failed[name]}", flush=True)
            return None

    if device.type == "cuda":  # the first trial of each also pays for kernels loading, cuBLAS
        for name in list(runs):  # handles and (--compile) compiling: one untimed round first
            warm = attempt(name, args.seed, "warm-up ")
            if warm is not None:
                print(f"  warm-up  {name:18s} acc {warm['accuracy']:.3f} (not counted)",
                      flush=True)
    for repeat, name in interleaved(list(runs), args.repeats):
        if name in failed:
            continue
        cpu = time.process_time()
        wall = time.perf_counter()
        run = attempt(name, args.seed + repeat, f"repeat {repeat + 1}")
        if run is None:
            continue
        run["cpu_seconds"] = time.process_time() - cpu
        run["wall_seconds"] = time.perf_counter() - wall
        runs[name].append(run)
        compiling = (f" (compile {run['compile_seconds']:.1f} s)"
                     if run.get("compile_seconds") else "")
        print(f"  repeat {repeat + 1} {name:18s} acc {run['accuracy']:.3f} "
              f"train {run['train_seconds']:.2f} s ({run['train_cpu']:.2f} s CPU), trial "
              f"{run['wall_seconds']:.2f} s wall, {run['cpu_seconds']:.2f} s CPU"
              + compiling, flush=True)
    table_head("trainer", "img/s trained", "GFLOP/s", "of peak", "img/s per CPU-s",
               "of CPU-s peak", "accuracy")
    rate = {}
    for name, rs in runs.items():
        if name in failed:
            print(f"| {name} | failed: {failed[name]} | | | | | |")
            continue
        rate[name] = statistics.median(images / r["train_seconds"] for r in rs)
        gflops = rate[name] * train_flops / 1e9
        accs = ", ".join(f"{r['accuracy']:.3f}" for r in rs)
        if quiet:
            cpu_rate = statistics.median(images / r["train_cpu"] for r in rs)
            cpu_cols = f"{cpu_rate:.0f} | {cpu_rate * train_flops / 1e9 / cpu_peak:.0%}"
        else:
            cpu_cols = "n/a | n/a"
        print(f"| {name} | {rate[name]:.0f} | {gflops:.1f} | {gflops / peak:.0%} | {cpu_cols} "
              f"| {accs} |")
    print(f"\nexplore / DataLoader loop, images/s trained: {rate[EXPLORE] / rate[HANDWRITTEN]:.2f}"
          f"   (medians; load average now {os.getloadavg()[0]:.2f})")
    if EAGER in rate:
        print(f"explore's steps as CUDA graph replays / launched eagerly: "
              f"{rate[EXPLORE] / rate[EAGER]:.2f}x images/s trained")
    if FP32 in rate:
        print(f"explore bf16 autocast (CUDA default) / fp32: {rate[EXPLORE] / rate[FP32]:.2f}x "
              f"images/s trained")
    if BF16 in rate:
        bf16_peak = matmul_peak(device, dtype=torch.bfloat16)
        gflops = rate[BF16] * train_flops / 1e9
        print(f"{BF16}: {rate[BF16] / rate[EXPLORE]:.2f}x explore's fp32 images/s, "
              f"{rate[BF16] / rate[HANDWRITTEN]:.2f}x the DataLoader loop's; {gflops:.1f} GFLOP/s "
              f"= {gflops / bf16_peak:.0%} of the bf16 matmul peak ({bf16_peak:.1f} GFLOP/s)")


def _child(args: argparse.Namespace) -> None:
    """One process of the whole-machine comparison; prints its trials as JSON."""
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = digits(device)
    precision = "bf16" if args.child == "explore-bf16" else "auto"
    settings = TrainSettings(epochs=args.epochs, precision=precision)
    lock = MachineLock(args.lock_dir) if args.lock_dir else None
    trial = handwritten_trial if args.child == "script" else explore_trial
    trial(data, TrainSettings(epochs=1, precision=precision), 0, device)  # warm up, untimed
    time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    out = []
    for i in range(args.trials):
        seed = args.seed + i
        if args.child != "script":
            out.append(explore_trial(data, settings, seed, device, lock, measure=True))
        else:
            out.append(handwritten_trial(data, settings, seed, device, measure=True))
    print(json.dumps({"start": started, "end": time.time(), "trials": out}))


def _spawn(mode: str, threads: int, trials: int, seed: int, args: argparse.Namespace,
           start_at: float, lock_dir: str = "") -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--threads",
           str(threads), "--trials", str(trials), "--seed", str(seed), "--epochs",
           str(args.epochs), "--start-at", f"{start_at:.3f}", "--lock-dir", lock_dir]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _collect(procs: list[subprocess.Popen[str]]) -> tuple[float, list[float]]:
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a benchmark process failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return span, [t["accuracy"] for r in results for t in r["trials"]]


def whole_machine(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    device = torch.device("cpu")
    print(f"\n[whole machine] {machine_line(device)}")
    print(f"fp32 matmul peak, {cores} threads: {matmul_peak(device):.1f} GFLOP/s; "
          f"{args.machine_trials} trials of {args.epochs} epochs per mode")
    modes = ["script", "explore", *(["explore-bf16"] if args.bf16 else [])]
    spans: dict[str, list[float]] = {m: [] for m in modes}
    accs: dict[str, list[float]] = {m: [] for m in modes}
    for repeat, mode in interleaved(modes, args.repeats):
        start_at = time.time() + args.startup
        seed = 100 * repeat
        if mode == "script":
            span, acc = _collect([_spawn("script", cores, args.machine_trials, seed, args,
                                         start_at)])
        else:
            per_worker = math.ceil(args.machine_trials / cores)
            with tempfile.TemporaryDirectory(prefix="explore-lock-") as lock_dir:
                span, acc = _collect([
                    _spawn(mode, 1, per_worker, seed + w * per_worker, args, start_at,
                           lock_dir)
                    for w in range(cores)])
            span *= args.machine_trials / (per_worker * cores)  # same trial count
        spans[mode].append(span)
        accs[mode].extend(acc)
        print(f"  repeat {repeat + 1} {mode:8s} {span:6.2f} s for {args.machine_trials} "
              f"trials → {3600 * args.machine_trials / span:.0f} trials/h; accuracy "
              f"{statistics.mean(acc):.3f}  (load {os.getloadavg()[0]:.2f})", flush=True)
    print()
    print("| mode | trials/h (median) | mean accuracy |")
    print("|---|---:|---:|")
    per_hour = {m: 3600 * args.machine_trials / statistics.median(s) for m, s in spans.items()}
    labels = {"script": f"hand-written script, 1 process × {cores} threads",
              "explore": f"explore policy, {cores} workers × 1 thread",
              "explore-bf16": f"explore policy, {cores} workers × 1 thread, --precision bf16"}
    for mode in spans:
        print(f"| {labels[mode]} | {per_hour[mode]:.0f} | {statistics.mean(accs[mode]):.3f} |")
    print(f"\nexplore / hand-written, trials per hour: "
          f"{per_hour['explore'] / per_hour['script']:.2f}")
    if args.bf16:
        print(f"explore --precision bf16 / hand-written, trials per hour: "
              f"{per_hour['explore-bf16'] / per_hour['script']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu (default), cuda, cuda:K")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the per-process comparison on CPU (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="also the trainer with --compile (torch.compile; compile time "
                             "printed, not counted)")
    parser.add_argument("--compile-mode", type=lambda v: v.split(","), default=["default"],
                        help="torch.compile modes for --compile, comma-separated, one row each "
                             f"({', '.join(COMPILE_MODES)}; default: default)")
    parser.add_argument("--bf16", action="store_true",
                        help="also explore's trainer with --precision bf16 (autocast; on CPUs "
                             "with native bf16)")
    parser.add_argument("--fp32", action="store_true",
                        help="CUDA: also explore's trainer with --precision fp32 (its default "
                             "there is bf16 autocast)")
    parser.add_argument("--eager-steps", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: also explore's trainer with [train] cuda_graph = false "
                             "(each step launched eagerly; default: on)")
    parser.add_argument("--per-process", action=argparse.BooleanOptionalAction, default=True,
                        help="the per-process comparison")
    parser.add_argument("--machine", action=argparse.BooleanOptionalAction, default=True,
                        help="the whole-machine comparison (CPU only)")
    parser.add_argument("--machine-trials", type=int, default=os.cpu_count() or 1,
                        help="trials per mode in the whole-machine comparison (default: cores)")
    parser.add_argument("--startup", type=float, default=10.0,
                        help="seconds the worker processes get for imports before they start")
    # internal: one worker process of the whole-machine comparison
    parser.add_argument("--child", choices=("script", "explore", "explore-bf16"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--lock-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    unknown = sorted(set(args.compile_mode) - set(COMPILE_MODES))
    if unknown:
        parser.error(f"--compile-mode {','.join(unknown)}: choose from {', '.join(COMPILE_MODES)}")
    device = parse_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.per_process:
        per_process(args, device)
    if args.machine and device.type == "cpu":
        whole_machine(args)


if __name__ == "__main__":
    main()
