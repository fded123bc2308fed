"""Inference throughput: the second objective."""

from __future__ import annotations

import math
import time

import pytest
import torch

from explore.config import MeasureSettings
from explore.engine.measure import SPREAD_FLAG, Throughput, measure_throughput
from extattn import ModelConfig, create_model

CPU = torch.device("cpu")


@pytest.mark.parametrize(("min_iters", "min_time"), [(7, 0.0), (3, 0.2)],
                         ids=["iterations-bound", "time-bound"])
def test_throughput_stats(one_thread: None, min_iters: int, min_time: float) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(dim=16, depth=1, heads=2, mem_size=8, dropout=0.1))
    model.train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    settings = MeasureSettings(batch_size=32, warmup=2, min_iters=min_iters, min_time=min_time)

    started = time.perf_counter()
    result = measure_throughput(model, (1, 8, 8), CPU, settings)
    elapsed = time.perf_counter() - started

    for value in (result.median, result.min, result.max):
        assert math.isfinite(value) and value > 0
    assert result.min <= result.median <= result.max
    assert math.isfinite(result.spread) and result.spread >= 0
    assert result.iters >= min_iters
    if min_time == 0.0:
        assert result.iters == min_iters  # no more than asked once both bounds are met
    assert elapsed >= min_time
    # The slowest timed batch cannot have taken longer than the whole call.
    assert settings.batch_size / result.min <= elapsed
    assert (result.batch, result.threads, result.device) == (32, 1, "cpu")
    assert result.to_dict()["noisy"] == (result.spread > SPREAD_FLAG) == result.noisy
    # Left in eval mode (every submodule), weights untouched, no gradients kept.
    assert not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


def test_throughput_round_trips_through_its_dict() -> None:
    stats = Throughput(median=100.0, min=80.0, max=120.0, spread=0.25, iters=10, batch=256,
                       threads=2, device="cpu")
    assert stats.noisy
    assert Throughput.from_dict(stats.to_dict()) == stats


class _Counting(torch.nn.Module):
    """A model that counts its forwards (the reference's share of the measurement)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_reference_is_timed_in_alternation(one_thread: None) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(dim=16, depth=1, heads=2, mem_size=8))
    reference = _Counting(create_model(ModelConfig(dim=16, depth=1, heads=2, mem_size=8)))
    reference.train()
    settings = MeasureSettings(batch_size=32, warmup=2, min_iters=6, min_time=0.0, retries=0)

    alone = measure_throughput(model, (1, 8, 8), CPU, settings)
    paired = measure_throughput(model, (1, 8, 8), CPU, settings, reference=reference)

    assert alone.reference is None and alone.relative is None
    assert paired.reference is not None and paired.reference > 0
    assert paired.relative is not None and paired.relative > 0
    assert paired.iters == alone.iters == 6  # the model's own blocks are as many as without
    # One reference block (one iteration each, min_time 0, after one untimed call) beside each
    # model block, after the reference's own warm-up: timed as often as the model, in eval mode.
    assert reference.calls == settings.warmup + 2 * paired.iters
    assert not reference.training
    # The same architecture against itself: the ratio of equals (its pairs' median) is near 1,
    # whatever the machine's speed did during the measurement.
    assert 0.5 < paired.relative < 2.0
    round_trip = Throughput.from_dict(paired.to_dict())
    assert (round_trip.reference, round_trip.relative) == (paired.reference, paired.relative)


def test_a_throughput_stored_before_the_reference_still_reads() -> None:
    stored = {"median": 100.0, "min": 80.0, "max": 120.0, "spread": 0.25, "iters": 10,
              "batch": 256, "threads": 2, "device": "cpu", "attempts": 1, "graph": False,
              "noisy": True}
    old = Throughput.from_dict(stored)
    assert (old.reference, old.relative) == (None, None)
    assert old.median == 100.0
