"""Inference throughput: the second objective.

Measured before training (weights do not change the timing), on the trial's device, in eval mode
under ``torch.inference_mode()``, with a fixed batch. After a warm-up (``warmup`` iterations, then
more for a fifth of ``min_time``: allocator, thread pool and clocks settle), the iterations are
timed in ``min_iters`` or more blocks of about ``min_time / min_iters`` seconds each, with the
garbage collector paused; the objective is the median of the blocks' images/s, and their spread
(``Throughput.spread``, flagged above 10%) says whether the machine was quiet while it ran.

On CUDA (``cuda_graph``, default on) the forward is captured once as a CUDA graph and the timed
iterations replay it: a small model's eager forward is bound by the host launching its ~50
kernels one by one, so the eager figure ranks the host's Python, not the designs (the figures:
docs/performance.md, "Throughput stability", GPU). Replays are timed for ``graph_min_time``
(0.1 s; at most ``min_time``) instead of ``min_time``: they need no more to be that stable. A
model that cannot be captured (it synchronizes with the host) and a ``torch.compile``'d one are
timed eagerly; the trial records which (``Throughput.graph``).

A measurement disturbed by a burst of other work (spread over twice the flag, 20%) is taken again
after a short pause, up to ``retries`` times, and the least noisy one is kept
(``Throughput.attempts`` says how many were taken): a figure taken between bursts is the
model's, not the neighbours'. A steady jitter of 10–20% (a virtual machine's own) does not get
better by measuring again, so it is only flagged; so is a measurement still noisy after retries.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from explore.config import MeasureSettings
from explore.engine.device import autocast, synchronize

__all__ = ["Throughput", "measure_throughput"]

SPREAD_FLAG = 0.10  # a relative spread above this is flagged as noisy
RETRY_SPREAD = 0.20  # a spread above this (a burst of other work) is worth measuring again
WARMUP_SHARE = 0.2  # warm-up lasts at least this share of min_time (and `warmup` iterations)
RETRY_PAUSE_S = 0.2  # between a noisy measurement and the next attempt


@dataclass(frozen=True)
class Throughput:
    """Images per second over the timed blocks of iterations."""

    median: float  # median of the blocks' images/s: the objective
    min: float  # slowest block
    max: float  # fastest block
    spread: float  # (p90 − p10) / median of the blocks' rates
    iters: int  # timed iterations (all blocks)
    batch: int
    threads: int
    device: str
    attempts: int = 1  # measurements taken (more than one when the first ones were noisy)
    graph: bool = False  # timed as CUDA graph replays (False: eager forwards)

    @property
    def noisy(self) -> bool:
        return self.spread > SPREAD_FLAG

    @property
    def spread_pct(self) -> float:
        """The spread in percent of the median, to 0.1 (a figure to read, not to compute with)."""
        return round(100 * self.spread, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noisy": self.noisy}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Throughput:
        return cls(**{k: v for k, v in data.items() if k != "noisy"})


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
    precision: str = "auto",
) -> Throughput:
    """Median inference images/s of ``model`` on ``device`` (the model is left in eval mode);
    the least noisy of up to ``1 + settings.retries`` measurements. ``precision``: as the
    trial trains (``[train] precision``)."""
    best = _measure_once(model, image_shape, device, settings, precision)
    attempts = 1
    while best.spread > RETRY_SPREAD and attempts <= settings.retries:
        time.sleep(RETRY_PAUSE_S)
        again = _measure_once(model, image_shape, device, settings, precision)
        attempts += 1
        if again.spread < best.spread:
            best = again
    return replace(best, attempts=attempts)


def _measure_once(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    device: torch.device,
    settings: MeasureSettings,
    precision: str,
) -> Throughput:
    model.eval()
    x = torch.randn((settings.batch_size, *image_shape), device=device)
    rates: list[float] = []  # one per block
    iters = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a block would be timed as the model's
    try:
        # On the model's GPU (--device cuda:K): graphs are captured and replayed on the current
        # device's streams.
        on_device = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
        with torch.inference_mode(), autocast(device, precision), on_device:
            graph = (_capture(model, x, device)
                     if device.type == "cuda" and settings.cuda_graph else None)
            captured = graph is not None
            run = graph.replay if graph is not None else lambda: model(x)
            min_time = (min(settings.min_time, settings.graph_min_time) if captured
                        else settings.min_time)
            per_iter = _warm_up(run, device, settings.warmup, min_time)
            # Iterations per block: enough for the block to last min_time / min_iters, so that
            # min_iters blocks fill min_time (one iteration per block without a time bound).
            block_time = min_time / settings.min_iters
            per_block = max(1, math.floor(block_time / per_iter)) if per_iter > 0 else 1
            started = time.perf_counter()
            while (len(rates) < settings.min_iters
                   or time.perf_counter() - started < min_time):
                t0 = time.perf_counter()
                for _ in range(per_block):
                    run()
                synchronize(device)
                rates.append(settings.batch_size * per_block / (time.perf_counter() - t0))
                iters += per_block
            del graph, run  # its memory pool goes back to the allocator
    finally:
        if gc_was_enabled:
            gc.enable()
    rates.sort()
    median = statistics.median(rates)
    return Throughput(
        median=median,
        min=rates[0],
        max=rates[-1],
        spread=(_quantile(rates, 0.9) - _quantile(rates, 0.1)) / median,
        iters=iters,
        batch=settings.batch_size,
        threads=torch.get_num_threads(),
        device=str(device),
        graph=captured,
    )


def _capture(model: nn.Module, x: torch.Tensor, device: torch.device
             ) -> torch.cuda.CUDAGraph | None:
    """``model(x)`` captured as a CUDA graph (in the caller's inference and autocast modes), or
    None: the model is then timed eagerly.

    A capture that fails part-way leaves the process's CUDA random generator unusable (seen on
    an H200: every later ``torch.randn`` raised "Offset increment outside graph capture"), so
    capture is only tried where it will work: not for a ``torch.compile``'d module (its own
    graphs, with ``reduce-overhead``, would nest), and only after a warm-up forward has run with
    synchronizing operations (``.item()``, copies to the host: what capture forbids) raising.
    """
    if hasattr(model, "_orig_mod"):
        return None
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
        for _ in range(2):
            model(x)
        debug_mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model(x)
        except RuntimeError:  # it synchronizes with the host: it cannot be captured
            return None
        finally:
            torch.cuda.set_sync_debug_mode(debug_mode)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return graph


def _warm_up(run: Callable[[], object], device: torch.device, warmup: int, min_time: float
             ) -> float:
    """Untimed iterations; returns the seconds one iteration takes once warm (0: not needed)."""
    for _ in range(warmup):
        run()
    if min_time == 0:  # one iteration per block: no block size to calibrate
        return 0.0
    # Keep warming for a share of min_time; these iterations also size the timed blocks.
    synchronize(device)
    done = 0
    started = time.perf_counter()
    while done == 0 or time.perf_counter() - started < WARMUP_SHARE * min_time:
        run()
        done += 1
    synchronize(device)
    return (time.perf_counter() - started) / done
