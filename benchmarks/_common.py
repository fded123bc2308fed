"""Helpers shared by the benchmarks.

- :func:`matmul_peak`: the machine's fp32 matrix-product rate, the yardstick of "fraction of
  peak" (a large ``torch.mm``, best of several, with the caller's thread count);
- :func:`machine_line`: what ran where (CPU or GPU name, threads, torch, load average), printed
  with every result because other work on the machine changes the numbers;
- :func:`noise_floor`: how much this machine's own speed moves over short blocks (a fixed
  matmul timed block by block), the floor under any throughput spread measured here;
- :func:`digits`, :func:`default_config`: the default trial's data and model;
- :func:`interleaved`: the order of the modes compared, reversed on every other repeat;
- :func:`table_head`: a Markdown table's header, after a blank line.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from explore.config import DataSettings
from explore.engine.data import Dataset, load_dataset
from explore.engine.device import synchronize
from extattn import ModelConfig

__all__ = [
    "cpu_name",
    "default_config",
    "digits",
    "interleaved",
    "load_average",
    "machine_line",
    "matmul_peak",
    "noise_floor",
    "parse_device",
    "sync",
    "table_head",
]


def add_cuda_graph_option(parser: argparse.ArgumentParser) -> None:
    """``--cuda-graph/--no-cuda-graph``: ``[measure] cuda_graph`` for the script's measurements."""
    parser.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: time CUDA graph replays ([measure] cuda_graph, default) or, "
                             "with --no-cuda-graph, eager forwards")


T = TypeVar("T")


def interleaved(modes: Sequence[T], repeats: int) -> Iterator[tuple[int, T]]:
    """``(repeat, mode)`` for ``repeats`` rounds over ``modes``: in order on even repeats,
    reversed on odd ones, so that a drift of the machine's speed during the run (or the cost of
    going first) falls on every mode alike."""
    for repeat in range(repeats):
        for mode in modes if repeat % 2 == 0 else modes[::-1]:
            yield repeat, mode


def table_head(*columns: str, left: int = 1) -> None:
    """Prints a blank line and a Markdown table's header: ``columns``, the first ``left`` of
    them left-aligned and the others right-aligned (numbers)."""
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if i < left else "---:" for i in range(len(columns))) + "|")


def parse_device(name: str | None) -> torch.device:
    """``--device``: cpu (default), cuda, cuda:K."""
    device = torch.device(name or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    return device


sync = synchronize  # the trainer's and the measurement's own device wait


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_line(device: torch.device) -> str:
    """One line naming the machine, for the record next to the numbers."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (host {cpu_name()})"
    else:
        where = f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return (f"{where}; torch {torch.__version__}; load average {load_average()} "
            f"({time.strftime('%Y-%m-%d %H:%M')})")


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int,
                  clock: Callable[[], float]) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = clock()
        fn()
        sync(device)
        best = min(best, clock() - started)
    return best


def matmul_peak(device: torch.device, size: int | None = None, repeats: int = 5,
                cpu_time: bool = False, dtype: torch.dtype = torch.float32) -> float:
    """fp32 GFLOP/s of a large square ``torch.mm`` on ``device`` with the current thread count
    (``dtype=torch.bfloat16``: the bf16 rate, the yardstick of bf16 training).

    The best of ``repeats`` products after a warm-up: the rate the machine can reach on
    matrix products, which is what "fraction of peak" divides by. On CUDA, TF32 is left as
    configured (off by default in torch), so this is the true fp32 rate; bf16 training can
    exceed it. ``cpu_time``: per second of the process's CPU time instead of wall time (with
    one thread, the rate of a quiet machine even while other work competes for the cores).
    """
    n = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: threads, allocator, clocks
    clock = time.process_time if cpu_time else time.perf_counter
    seconds = _best_seconds(lambda: torch.mm(a, b), device, repeats, clock)
    return 2 * n**3 / seconds / 1e9


def digits(device: torch.device, seed: int = 0) -> Dataset:
    """The bundled digits data set (default split), resident on ``device``."""
    return load_dataset(DataSettings(), seed=seed, device=device)


def default_config(**overrides: object) -> ModelConfig:
    """The default trial's model (the search's fixed settings), with overrides."""
    return ModelConfig().replace(**overrides) if overrides else ModelConfig()


def noise_floor(block_seconds: float, blocks: int = 40) -> float:
    """(max − min) / median of a fixed CPU workload's rate over ``blocks`` blocks of
    ``block_seconds`` each, on this process's threads.

    The workload is a 256×256 fp32 matrix product, the same every block, so any spread is the
    machine's (frequency changes, other tenants of a virtual machine, interrupts), not the
    model's or the measurement's: a throughput spread measured with blocks of that length
    cannot be expected to fall below it.
    """
    import statistics

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for _ in range(50):
        a @ b
    rates = []
    for _ in range(blocks):
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < block_seconds:
            a @ b
            n += 1
        rates.append(n / (time.perf_counter() - started))
    mid = statistics.median(rates)
    return (max(rates) - min(rates)) / mid
