"""How repeatable is a trial's throughput figure? The default model measured in fresh processes.

Each of ``--runs`` processes (default 10), started one after another, builds the default digits
model from the same seed and calls ``explore.engine.measure.measure_throughput`` with the default
``MeasureSettings`` (batch 256, the trial's warm-up and timing), exactly as a trial does. The
script prints each run's median images/s, its own spread and time, then the median over runs and
``(max − min) / median`` across them: the figure a study's throughput objective can be trusted
to. Goal: at most 5% on an idle machine (other work on the machine moves it, which each run's
spread and the load average printed with it show). On the CPU it also prints the machine's noise
floor before and after the runs: a fixed matrix product timed in blocks as long as the
measurement's, whose spread no measurement on this machine can beat.

Usage::

    python benchmarks/throughput_stability.py                 # CPU, threads as a 1-worker study
    python benchmarks/throughput_stability.py --threads 1     # as each of N workers on N cores
    python benchmarks/throughput_stability.py --retries 0     # one measurement per process
    python benchmarks/throughput_stability.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import (
    add_cuda_graph_option,
    default_config,
    machine_line,
    noise_floor,
    parse_device,
)

from explore.config import MeasureSettings
from explore.engine import allocator
from explore.engine.measure import measure_throughput
from extattn import create_model


def _child(args: argparse.Namespace) -> None:
    allocator.configure()  # as every explore process
    device = parse_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(default_config()).to(device)
    started = time.perf_counter()
    cpu = time.process_time()
    result = measure_throughput(model, (1, 8, 8), device,
                                MeasureSettings(retries=args.retries,
                                                cuda_graph=args.cuda_graph))
    record = result.to_dict()
    record["seconds"] = time.perf_counter() - started
    record["cpu_share"] = (time.process_time() - cpu) / record["seconds"] / result.threads
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu (default), cuda, cuda:K")
    parser.add_argument("--runs", type=int, default=10, help="fresh processes (default 10)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (default: all cores, as one worker)")
    parser.add_argument("--retries", type=int, default=MeasureSettings.retries,
                        help="measure.retries: noisy measurements taken again (default 2)")
    add_cuda_graph_option(parser)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    device = parse_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    settings = MeasureSettings(retries=args.retries, cuda_graph=args.cuda_graph)
    print(f"{machine_line(device)}")
    print(f"default model, MeasureSettings(batch_size={settings.batch_size}, "
          f"warmup={settings.warmup}, min_iters={settings.min_iters}, "
          f"min_time={settings.min_time}, retries={settings.retries}"
          + (f", cuda_graph={settings.cuda_graph}" if device.type == "cuda" else "")
          + f"); {args.runs} fresh processes")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--threads",
           str(args.threads), "--device", str(device), "--retries", str(args.retries),
           "--cuda-graph" if args.cuda_graph else "--no-cuda-graph"]
    block = settings.min_time / settings.min_iters
    floors = [noise_floor(block)] if device.type == "cpu" else []
    medians = []
    print("| run | img/s (median) | spread | noisy | attempts | timed iterations | seconds | "
          "CPU share | load | graph |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for run in range(1, args.runs + 1):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        medians.append(r["median"])
        print(f"| {run} | {r['median']:.0f} | {r['spread']:.1%} | {r['noisy']} | "
              f"{r['attempts']} | {r['iters']} | "
              f"{r['seconds']:.2f} | {r['cpu_share']:.0%} | {os.getloadavg()[0]:.2f} | "
              f"{r.get('graph', False)} |",
              flush=True)
    mid = statistics.median(medians)
    if floors:
        floors.append(noise_floor(block))
        print(f"\nmachine noise floor (before, after the runs): a fixed 256×256 matmul timed in "
              f"40 blocks of {block * 1000:.0f} ms varies by {floors[0]:.1%}, {floors[1]:.1%} "
              "((max − min) / median); the spreads above cannot be expected to fall below it")
    print(f"\nmedian over runs {mid:.0f} img/s ({r['threads']} threads); "
          f"(max − min) / median = {(max(medians) - min(medians)) / mid:.1%}; "
          f"goal ≤ 5% on an idle machine")


if __name__ == "__main__":
    main()
