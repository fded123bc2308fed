"""FLOPs per image against measured inference throughput across the default search space.

For every model of the default space (mem_size 8…128 × heads 1, 2, 4, 8 × norm softmax/double,
the other settings at their defaults: dim 64, depth 2, 16 tokens), the script counts forward
FLOPs per image (``extattn.count_flops``) and measures images/s with the trial's own
``measure_throughput`` (default ``MeasureSettings``), then prints the FLOP rate each model
reaches and its fraction of the machine's matmul peak (a large ``torch.mm`` in the same run,
same threads, in the models' precision: fp32, or bf16 with ``--precision bf16``). The
configurations are measured ``--rounds`` times in alternating order (the median is kept), so
that a disturbance on the machine does not single one out.

Last, two cost models fitted by least squares: ``seconds/image = fixed + FLOPs / rate`` (R² says
how much of the throughput differences FLOPs alone explain), and the same plus a term in the
attention maps' size, depth·N·H·S elements per image, which the element-wise work of EA
(softmax, L1 sums, their backward) scales with but FLOP counts leave out.

Usage::

    python benchmarks/cost_model.py                   # CPU, threads as a 1-worker study
    python benchmarks/cost_model.py --threads 1       # as each worker of a one-per-core study
    python benchmarks/cost_model.py --device cuda
    python benchmarks/cost_model.py --precision bf16  # bf16 autocast, against the bf16 peak
"""

from __future__ import annotations

import argparse
import itertools
import statistics

import torch
from _common import (
    add_cuda_graph_option,
    default_config,
    interleaved,
    machine_line,
    matmul_peak,
    parse_device,
)

from explore.config import MeasureSettings
from explore.engine.device import resolve_precision
from explore.engine.measure import measure_throughput
from extattn import ModelConfig, count_flops, create_model

MEM_SIZES = (8, 16, 32, 64, 128)
HEADS = (1, 2, 4, 8)
NORMS = ("softmax", "double")


def fit(features: list[list[float]], seconds: list[float]) -> tuple[list[float], float]:
    """Least squares ``seconds = c0 + Σ c_i · feature_i``: ``([c0, c1, …], R²)``."""
    x = torch.tensor([[1.0, *row] for row in features], dtype=torch.float64)
    y = torch.tensor(seconds, dtype=torch.float64).unsqueeze(1)
    coef = torch.linalg.lstsq(x, y).solution
    residual = y - x @ coef
    total = y - y.mean()
    r2 = 1 - float(residual.square().sum() / total.square().sum()) if total.abs().sum() else 1.0
    return coef.squeeze(1).tolist(), r2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu (default), cuda, cuda:K")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: all cores, as one worker)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per configuration")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="as [train] precision (auto: bf16 on CUDA, fp32 on CPU); the peak "
                             "is measured in the same dtype")
    add_cuda_graph_option(parser)
    args = parser.parse_args()
    device = parse_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    settings = MeasureSettings(cuda_graph=args.cuda_graph)
    precision = resolve_precision(device, args.precision)
    peak = matmul_peak(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    print(machine_line(device))
    print(f"{precision} matmul peak {peak:.1f} GFLOP/s; MeasureSettings batch "
          f"{settings.batch_size}, {args.rounds} rounds, models run in {precision}"
          + (f", cuda_graph={settings.cuda_graph}" if device.type == "cuda" else ""))

    configs: list[ModelConfig] = [
        default_config(mem_size=s, heads=h, norm=n)
        for s, h, n in itertools.product(MEM_SIZES, HEADS, NORMS)
    ]
    models = []
    flops = []
    for config in configs:
        torch.manual_seed(0)
        model = create_model(config).to(device)
        models.append(model)
        flops.append(count_flops(model, (1, 8, 8)))
    rates: list[list[float]] = [[] for _ in configs]
    spreads: list[list[float]] = [[] for _ in configs]
    for _, i in interleaved(range(len(configs)), args.rounds):
        result = measure_throughput(models[i], (1, 8, 8), device, settings, precision)
        rates[i].append(result.median)
        spreads[i].append(result.spread)

    print()
    print("| mem_size | heads | norm | MFLOP/image | img/s | GFLOP/s | of peak | spread |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    medians = [statistics.median(r) for r in rates]
    for config, f, rate, spread in zip(configs, flops, medians, spreads, strict=True):
        gflops = rate * f / 1e9
        print(f"| {config.mem_size} | {config.heads} | {config.norm} | {f / 1e6:.2f} | "
              f"{rate:.0f} | {gflops:.1f} | {gflops / peak:.0%} | {max(spread):.1%} |")
    fractions = [rate * f / 1e9 / peak for f, rate in zip(flops, medians, strict=True)]
    print(f"\nfraction of peak: min {min(fractions):.0%}, median "
          f"{statistics.median(fractions):.0%}, max {max(fractions):.0%}")
    seconds = [1 / r for r in medians]
    (fixed, per_flop), r2 = fit([[float(f)] for f in flops], seconds)
    print(f"cost model 1: seconds/image = {fixed * 1e6:.1f} µs + FLOPs / "
          f"({1 / per_flop / 1e9:.1f} GFLOP/s); R² = {r2:.2f}")
    # Element-wise work on the attention maps (softmax, L1 sums) grows with N·H·S, not FLOPs.
    maps = [float(c.depth * c.num_tokens * c.heads * c.mem_size) for c in configs]
    (fixed, per_flop, per_elem), r2 = fit([[f, m] for f, m in zip(flops, maps, strict=True)],
                                          seconds)
    print(f"cost model 2: seconds/image = {fixed * 1e6:.1f} µs + FLOPs / "
          f"({1 / per_flop / 1e9:.1f} GFLOP/s) + {per_elem * 1e9:.2f} ns × attention-map "
          f"elements (depth·N·H·S); R² = {r2:.2f}")

if __name__ == "__main__":
    main()
