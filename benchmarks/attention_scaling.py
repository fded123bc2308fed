"""Forward time of external attention (EA) against self-attention (SA) as the token count N grows.

EA costs O(d·S·N), SA O(d·N²): quadrupling N should about quadruple EA's time and multiply SA's by
up to 16. The script times one attention layer (no MLP, no norms) per variant:

- ``EA double lean``: multi-head EA, double normalization, the L1 step applied after ``M_v``;
- ``EA double plain``: the same math materializing the L1-normalized N×S map (``lean=False``);
- ``EA softmax``: multi-head EA with softmax over the memory slots only;
- ``SA``: multi-head scaled-dot-product self-attention (``torch``'s fused kernel).

Each time is the median of at least ``--repeats`` forward passes (more for fast points, up to
``--min-time`` seconds) after ``--warmup`` passes, in ``torch.inference_mode()``, synchronizing on
CUDA; the variants are interleaved so that noise from other work hits them alike. Usage::

    python benchmarks/attention_scaling.py            # CPU, and CUDA when available
    python benchmarks/attention_scaling.py --quick    # smaller batch, fewer repeats
    python benchmarks/attention_scaling.py --device cpu
    python benchmarks/attention_scaling.py --allocator system   # the C library's defaults

By default the process runs under explore's allocator policy (``explore/allocator.py``: large
tensors reuse freed heap memory instead of a fresh page-faulting ``mmap`` per activation), as
every explore worker does; ``--allocator system`` shows what the same code does without it.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from explore.engine import allocator
from extattn import MultiHeadExternalAttention, SelfAttention

TOKENS = (64, 256, 1024, 4096)
DIM, HEADS, MEM_SIZE = 256, 8, 64

VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "EA double lean": lambda: MultiHeadExternalAttention(DIM, HEADS, MEM_SIZE, "double", lean=True),
    "EA double plain": lambda: MultiHeadExternalAttention(
        DIM, HEADS, MEM_SIZE, "double", lean=False
    ),
    "EA softmax": lambda: MultiHeadExternalAttention(DIM, HEADS, MEM_SIZE, "softmax"),
    "SA": lambda: SelfAttention(DIM, HEADS),
}


def time_once(module: nn.Module, x: torch.Tensor) -> float:
    """Seconds of one forward pass (the caller holds ``inference_mode``)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    module(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def measure(
    device: torch.device, batch: int, warmup: int, repeats: int, min_time: float
) -> dict[str, dict[int, float]]:
    """``{variant: {N: median seconds}}``.

    At each N the variants take turns, one pass each per round, so that a disturbance on the
    machine hits them alike; rounds go on until there are ``repeats`` of them and the variants
    have run for ``min_time`` seconds each on average (short passes get more samples).
    """
    torch.manual_seed(0)
    modules = {name: make().to(device).eval() for name, make in VARIANTS.items()}
    results: dict[str, dict[int, float]] = {name: {} for name in VARIANTS}
    with torch.inference_mode():
        for n in TOKENS:
            x = torch.randn(batch, n, DIM, device=device)  # (B, N, C)
            for module in modules.values():
                for _ in range(warmup):
                    time_once(module, x)
            samples: dict[str, list[float]] = {name: [] for name in modules}
            while (
                len(samples["SA"]) < repeats
                or sum(map(sum, samples.values())) < min_time * len(modules)
            ):
                for name, module in modules.items():
                    samples[name].append(time_once(module, x))
            for name, times in samples.items():
                results[name][n] = statistics.median(times)
    return results


def crossover(ea: dict[int, float], sa: dict[int, float]) -> str:
    """Smallest measured N from which EA stays faster than SA."""
    faster = [n for n in TOKENS if ea[n] < sa[n]]
    for n in faster:
        if all(ea[m] < sa[m] for m in TOKENS if m >= n):
            return f"<= {n}" if n == TOKENS[0] else f"{n}"
    return f"> {TOKENS[-1]}"


def report(results: dict[str, dict[int, float]]) -> str:
    """Markdown tables: times, scaling, EA/SA and lean/plain ratios, crossovers."""
    names = list(results)
    sa = results["SA"]
    lines = ["Forward time, ms (median):", ""]
    lines.append("| N | " + " | ".join(names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    for n in TOKENS:
        lines.append(f"| {n} | " + " | ".join(f"{results[k][n] * 1e3:.2f}" for k in names) + " |")

    lines += ["", "Scaling t(4N)/t(N) (linear = 4, quadratic = 16):", ""]
    lines.append("| N → 4N | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for small, big in itertools.pairwise(TOKENS):
        cells = " | ".join(f"{results[k][big] / results[k][small]:.2f}" for k in names)
        lines.append(f"| {small} → {big} | {cells} |")

    ea_names = [k for k in names if k != "SA"]
    lines += ["", "Ratios (< 1: the first is faster):", ""]
    header = [f"{k} / SA" for k in ea_names] + ["lean / plain"]
    lines.append("| N | " + " | ".join(header) + " |")
    lines.append("|---:|" + "---:|" * len(header))
    for n in TOKENS:
        cells = [f"{results[k][n] / sa[n]:.2f}" for k in ea_names]
        cells.append(f"{results['EA double lean'][n] / results['EA double plain'][n]:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")

    lines += ["", "Crossover N (EA faster than SA from this N on):", ""]
    lines += [f"- {k}: {crossover(results[k], sa)}" for k in ea_names]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="batch 2, 1 warm-up, 3 repeats, 0.05 s per point"
    )
    parser.add_argument(
        "--device", action="append", help="cpu, cuda, cuda:1 … (repeatable; default: cpu and "
        "cuda when available)"
    )
    parser.add_argument("--batch", type=int, help="sequences per forward pass (default 8)")
    parser.add_argument("--repeats", type=int, help="timed passes per point (default 7)")
    parser.add_argument("--warmup", type=int, help="untimed passes per point (default 2)")
    parser.add_argument(
        "--min-time", type=float, help="timed seconds per point at least (default 0.5)"
    )
    parser.add_argument(
        "--allocator", choices=allocator.POLICIES, default="heap",
        help="C allocator policy (default heap: explore's, see explore/allocator.py)"
    )
    args = parser.parse_args()
    policy = allocator.configure(args.allocator)

    batch = args.batch or (2 if args.quick else 8)
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.5)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    for name in devices:
        device = torch.device(name)
        if device.type == "cuda":
            what = torch.cuda.get_device_name(device)
        else:
            cpu = platform.processor() or platform.machine()
            what = f"{cpu}, {torch.get_num_threads()} threads"
        print(f"## {device} ({what})")
        print(
            f"{datetime.date.today()}, torch {torch.__version__}, float32, dim {DIM}, "
            f"{HEADS} heads, S {MEM_SIZE}, batch {batch}; median of >= {repeats} passes and "
            f">= {min_time} s per point, after {warmup} warm-up, variants interleaved, "
            f"allocator policy {policy}"
        )
        print()
        print(report(measure(device, batch, warmup, repeats, min_time)))
        print()


if __name__ == "__main__":
    main()
