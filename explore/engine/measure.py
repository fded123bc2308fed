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

With a ``reference`` model (``[measure] reference``, the trial's default: a fixed model, the same
for every trial of a study), the timed blocks alternate between the model and the reference
(model, reference, reference, model, ...), and ``Throughput.relative`` is the median of the
model's rate over the reference's in each pair of neighbouring blocks. The machine's own speed,
which moves ±20–25% between processes on a shared virtual machine, moves both alike and drops
out of the ratio; the noise-aware front compares designs by it (docs/replicates.md, "The noise
model"). CUDA graph replays need no reference (stable to 0.2%) and are timed without one.
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
from extattn import ModelConfig, create_model

__all__ = ["Throughput", "measure_throughput", "reference_model"]

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
    reference: float | None = None  # the reference model's median images/s, timed alongside
    relative: float | None = None  # median of the model's rate / the reference's, block pairs

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


def reference_model(fields: dict[str, Any], device: torch.device) -> nn.Module:
    """The model a study's measurements are timed against (``[measure] reference``): the
    study's fixed model ``fields`` (with the data's shape) and the library's defaults for what
    is searched (one head where the default does not divide), the same in every process. Its
    weights do not change its speed; it is built without touching the global random state."""
    try:
        config = ModelConfig(**fields)
    except ValueError:  # e.g. the default heads do not divide the study's dim
        config = ModelConfig(**{**fields, "heads": 1})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(config).to(device).eval()


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
    reference: nn.Module | None = None,
) -> Throughput:
    """Median inference images/s of ``model`` on ``device`` (the model is left in eval mode);
    the least noisy of up to ``1 + settings.retries`` measurements. ``precision``: as the
    trial trains (``[train] precision``); ``reference``: a fixed model timed in alternation
    with ``model`` (on ``device`` already), for ``Throughput.relative``."""
    best = _measure_once(model, image_shape, device, settings, precision, reference)
    attempts = 1
    while best.spread > RETRY_SPREAD and attempts <= settings.retries:
        time.sleep(RETRY_PAUSE_S)
        again = _measure_once(model, image_shape, device, settings, precision, reference)
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
    reference: nn.Module | None = None,
) -> Throughput:
    model.eval()
    x = torch.randn((settings.batch_size, *image_shape), device=device)
    rates: list[float] = []  # one per block
    reference_rates: list[float] = []  # the reference's blocks, one beside each model block
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
            per_block = _block_size(run, device, settings, min_time)
            # The reference's run and block size, or None (no reference, or graph replays).
            paired = _reference_run(reference, x, device, settings, min_time, captured)
            model_seconds = 0.0  # the model's own blocks fill min_time; the reference's add to it
            while len(rates) < settings.min_iters or model_seconds < min_time:
                # Pairs of blocks in turn (model, reference; reference, model; ...), so that a
                # drift of the machine's speed within a pair falls on both alike.
                model_first = len(rates) % 2 == 0
                if paired is not None and not model_first:
                    reference_rates.append(_timed_block(*paired, settings.batch_size, device,
                                                        rewarm=True))
                rates.append(_timed_block(run, per_block, settings.batch_size, device,
                                          rewarm=paired is not None))
                model_seconds += settings.batch_size * per_block / rates[-1]
                iters += per_block
                if paired is not None and model_first:
                    reference_rates.append(_timed_block(*paired, settings.batch_size, device,
                                                        rewarm=True))
            del graph, run  # its memory pool goes back to the allocator
    finally:
        if gc_was_enabled:
            gc.enable()
    relative = (statistics.median(m / r for m, r in zip(rates, reference_rates, strict=True))
                if reference_rates else None)
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
        reference=statistics.median(reference_rates) if reference_rates else None,
        relative=relative,
    )


def _reference_run(reference: nn.Module | None, x: torch.Tensor, device: torch.device,
                   settings: MeasureSettings, min_time: float, captured: bool
                   ) -> tuple[Callable[[], object], int] | None:
    """The reference model's forward on ``x`` and its block size, warmed up; None without a
    reference or when the model is timed as graph replays (they need none)."""
    if reference is None or captured:
        return None
    reference.eval()

    def run() -> object:
        return reference(x)

    return run, _block_size(run, device, settings, min_time)


def _block_size(run: Callable[[], object], device: torch.device, settings: MeasureSettings,
                min_time: float) -> int:
    """Warms ``run`` up; returns the iterations per timed block: enough for a block to last
    ``min_time / min_iters``, so that ``min_iters`` blocks fill ``min_time`` (one iteration
    per block without a time bound)."""
    per_iter = _warm_up(run, device, settings.warmup, min_time)
    block_time = min_time / settings.min_iters
    return max(1, math.floor(block_time / per_iter)) if per_iter > 0 else 1


def _timed_block(run: Callable[[], object], iterations: int, batch: int, device: torch.device,
                 rewarm: bool = False) -> float:
    """Images/s of ``iterations`` calls of ``run``, waited for on ``device``; ``rewarm``: after
    one untimed call, so that a block does not pay for the caches the other model's block left
    (without it a large design's ratio to the reference came in two modes, 0.41 and 0.55, from
    one process to the next; docs/performance.md, "Reference pairing")."""
    if rewarm:
        run()
        synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iterations):
        run()
    synchronize(device)
    return batch * iterations / (time.perf_counter() - t0)


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
