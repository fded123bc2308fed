"""Inference throughput: the second objective.

Measured before training (weights do not change the timing), on the trial's device, in eval mode
under ``torch.inference_mode()``, with a fixed batch, warm-up, and at least ``min_iters`` timed
iterations and ``min_time`` seconds; the objective is the median images/s.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from explore.config import MeasureSettings

__all__ = ["Throughput", "autocast", "measure_throughput"]

SPREAD_FLAG = 0.10  # a relative spread above this is flagged as noisy


@dataclass(frozen=True)
class Throughput:
    """Images per second over the timed iterations."""

    median: float
    min: float
    max: float
    spread: float  # (p90 − p10) / median of the per-iteration rates
    iters: int
    batch: int
    threads: int
    device: str

    @property
    def noisy(self) -> bool:
        return self.spread > SPREAD_FLAG

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noisy": self.noisy}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Throughput:
        return cls(**{k: v for k, v in data.items() if k != "noisy"})


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled context elsewhere (fp32 on CPU)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure_throughput(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    device: torch.device,
    settings: MeasureSettings,
) -> Throughput:
    """Median inference images/s of ``model`` on ``device`` (the model is left in eval mode)."""
    model.eval()
    x = torch.randn((settings.batch_size, *image_shape), device=device)
    rates: list[float] = []
    with torch.inference_mode(), autocast(device):
        for _ in range(settings.warmup):
            model(x)
        _sync(device)
        start = time.perf_counter()
        while len(rates) < settings.min_iters or time.perf_counter() - start < settings.min_time:
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            rates.append(settings.batch_size / (time.perf_counter() - t0))
    rates.sort()
    median = statistics.median(rates)
    return Throughput(
        median=median,
        min=rates[0],
        max=rates[-1],
        spread=(_quantile(rates, 0.9) - _quantile(rates, 0.1)) / median,
        iters=len(rates),
        batch=settings.batch_size,
        threads=torch.get_num_threads(),
        device=str(device),
    )
