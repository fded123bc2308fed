"""fp32 against bf16 autocast, by model size: which one ``[train] precision = "auto"`` should be.

For three models of growing size (the default digits model; a CIFAR-sized one, 32×32×3 with
patch 4; a wider and deeper one with patch 2), on synthetic data resident on the device:

- inference images/s (``measure_throughput`` with default settings: CUDA graph replays on a
  GPU), fp32 and bf16, and their ratio;
- training images/s (``train_model``, default training settings, ``--epochs`` epochs of
  ``--images`` images; on CUDA each step a graph replay), fp32 and bf16, and their ratio.

The two precisions take turns ``--repeats`` times (order alternating); medians are printed.
A ratio above 1 means bf16 is faster. On the CPU, bf16 is only worth it with native bf16
(``explore.engine.measure.native_bf16``).

Usage::

    python benchmarks/precision.py --device cuda
    python benchmarks/precision.py --models default --epochs 2      # CPU, quick
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch
from _common import interleaved, machine_line, parse_device

from explore.config import MeasureSettings, TrainSettings
from explore.engine.data import Dataset
from explore.engine.device import native_bf16
from explore.engine.measure import measure_throughput
from explore.engine.train import train_model
from extattn import ModelConfig, count_flops, create_model

MODELS = {
    "default": ModelConfig(),
    "cifar": ModelConfig(image_size=32, in_chans=3, patch_size=4, dim=128, depth=4, heads=4,
                         mem_size=64),
    "large": ModelConfig(image_size=32, in_chans=3, patch_size=2, dim=256, depth=6, heads=8,
                         mem_size=128),
}


def synthetic(config: ModelConfig, images: int, device: torch.device) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    shape = (config.in_chans, config.image_size, config.image_size)
    y = torch.randint(0, config.num_classes, (images,), generator=gen)
    # Learnable: each class shifts the images' mean, so both precisions' accuracies mean something.
    x = torch.randn((images, *shape), generator=gen) + y[:, None, None, None] * 0.2
    n_eval = max(1, images // 5)
    return Dataset("synthetic", x[n_eval:].to(device), y[n_eval:].to(device),
                   x[:n_eval].to(device), y[:n_eval].to(device), config.num_classes, "val",
                   False)


def one_round(config: ModelConfig, data: Dataset, precision: str, epochs: int,
              device: torch.device) -> tuple[float, float, float]:
    """(inference images/s, training images/s, accuracy) of one fresh model."""
    torch.manual_seed(0)
    model = create_model(config).to(device)
    infer = measure_throughput(model, data.image_shape, device, MeasureSettings(), precision)
    settings = TrainSettings(epochs=epochs, precision=precision)
    result = train_model(model, data, settings, seed=0)
    trained = len(data.train_y) * epochs / result.train_seconds
    return infer.median, trained, result.accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu (default), cuda, cuda:K")
    parser.add_argument("--models", type=lambda v: v.split(","), default=list(MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--images", type=int, default=2048, help="synthetic images (default "
                        "2048; a fifth held out)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"--models {','.join(unknown)}: choose from {', '.join(MODELS)}")
    device = parse_device(args.device)
    print(machine_line(device) + f"; native bf16: {native_bf16(device)}")
    print("| model | MFLOP/img | fp32 infer img/s | bf16 infer img/s | bf16/fp32 | fp32 train "
          "img/s | bf16 train img/s | bf16/fp32 | accuracy fp32, bf16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.models:
        config = MODELS[name]
        data = synthetic(config, args.images, device)
        one_round(config, data, "fp32", 1, device)  # warm-up: kernels, allocator, clocks
        runs: dict[str, list[tuple[float, float, float]]] = {"fp32": [], "bf16": []}
        for _, precision in interleaved(("fp32", "bf16"), args.repeats):
            runs[precision].append(one_round(config, data, precision, args.epochs, device))
        med = {p: [statistics.median(r[i] for r in rs) for i in range(3)]
               for p, rs in runs.items()}
        flops = count_flops(create_model(replace(config)), data.image_shape) / 1e6
        print(f"| {name} | {flops:.1f} | {med['fp32'][0]:.0f} | {med['bf16'][0]:.0f} | "
              f"{med['bf16'][0] / med['fp32'][0]:.2f} | {med['fp32'][1]:.0f} | "
              f"{med['bf16'][1]:.0f} | {med['bf16'][1] / med['fp32'][1]:.2f} | "
              f"{med['fp32'][2]:.3f}, {med['bf16'][2]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
