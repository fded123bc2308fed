"""The training fast path keeps the math, and the throughput figure says when it is noisy."""

from __future__ import annotations

import copy
import dataclasses
import gc
import random
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explore.config import MeasureSettings
from explore.engine.measure import SPREAD_FLAG, Throughput, measure_throughput
from extattn import (
    ModelConfig,
    MultiHeadExternalAttention,
    count_flops,
    create_model,
    double_normalize,
)
from extattn.layers import _DoubleNormValues

CPU = torch.device("cpu")


# --- the lean EA path: same values, same gradients ---------------------------------------------


def test_double_norm_function_matches_the_formula_and_its_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 2, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    mem_v = torch.randn(4, 5, generator=gen, dtype=torch.float64).requires_grad_()  # (hd, S)
    expected = double_normalize(logits, token_dim=1) @ mem_v.t()  # (B, N, H, hd)
    torch.testing.assert_close(_DoubleNormValues.apply(logits, mem_v), expected,
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_DoubleNormValues.apply, (logits, mem_v))


def _with_lean(model: nn.Module, lean: bool) -> nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, MultiHeadExternalAttention):
            m.lean = lean
    return model


@pytest.mark.parametrize("norm", ["double", "softmax"])
@pytest.mark.parametrize("heads", [1, 4])
def test_lean_and_plain_paths_give_the_same_model_gradients(norm: str, heads: int) -> None:
    torch.manual_seed(0)
    base = create_model(ModelConfig(dim=16, heads=heads, mem_size=8, norm=norm)).double()
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(6) % 10
    grads = []
    for lean in (True, False):
        model = _with_lean(base, lean)
        F.cross_entropy(model(x), y).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12,
                                   msg=name)


def test_patch_embedding_as_a_matmul_equals_the_strided_convolution() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(image_size=8, patch_size=2, in_chans=3, dim=12)).double()
    pe = model.patch_embed
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    expected = pe.proj(x).flatten(2).transpose(1, 2)  # the convolution itself, (B, N, dim)
    torch.testing.assert_close(pe(x), expected, rtol=1e-12, atol=1e-12)
    pe(x).square().sum().backward()
    grad = pe.proj.weight.grad.clone()
    pe.proj.weight.grad = None
    expected.square().sum().backward()  # same gradient through the convolution
    torch.testing.assert_close(grad, pe.proj.weight.grad, rtol=1e-12, atol=1e-12)


def test_default_model_flops_are_the_hand_count() -> None:
    # N = 16 tokens, d = 64, S = 64, MLP hidden 128, 2 blocks, 10 classes; patch 2×2×1.
    N, d, S, hidden = 16, 64, 64, 128
    patch = 2 * N * 4 * d
    block = 2 * N * d * d * 2 + 2 * (2 * N * S * d) + 2 * (2 * N * d * hidden)
    assert count_flops(create_model(ModelConfig()), (1, 8, 8)) == patch + 2 * block + 2 * d * 10


# --- throughput: noisy measurements are flagged ------------------------------------------------


@pytest.mark.parametrize(("spread", "noisy"), [(0.05, False), (0.10, False), (0.11, True)])
def test_a_spread_over_ten_percent_is_flagged(spread: float, noisy: bool) -> None:
    t = Throughput(median=1000.0, min=900.0, max=1100.0, spread=spread, iters=20, batch=256,
                   threads=1, device="cpu")
    assert SPREAD_FLAG == 0.10
    assert t.noisy is noisy
    assert t.to_dict()["noisy"] is noisy


class _Jittery(nn.Module):
    """Most forwards take 1 ms, one in four 20 ms (a machine that is busy now and then)."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = random.Random(0)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02 if self.rng.random() < 0.25 else 0.001)
        return x * self.scale


def test_a_disturbed_measurement_is_retried_then_flagged_noisy() -> None:
    settings = MeasureSettings(batch_size=8, warmup=2, min_iters=10, min_time=0.2, retries=2)
    result = measure_throughput(_Jittery(), (1, 8, 8), CPU, settings)
    assert result.spread > SPREAD_FLAG
    assert result.noisy and result.to_dict()["noisy"]
    assert result.min < result.median < result.max
    assert result.attempts == 3  # disturbed every time: all retries taken, the flag kept


class _Burst(nn.Module):
    """Each forward computes for 2 ms (a spin, not a sleep: sleeps overshoot unevenly), and
    during the first ``burst_s`` seconds, one in three also waits 20 ms (a neighbour's burst
    of work)."""

    def __init__(self, burst_s: float) -> None:
        super().__init__()
        self.rng = random.Random(0)
        self.burst_s = burst_s
        self.first: float | None = None
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        now = time.perf_counter()
        self.first = now if self.first is None else self.first
        if now - self.first < self.burst_s and self.rng.random() < 1 / 3:
            time.sleep(0.02)
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return x * self.scale


def test_a_measurement_taken_after_a_burst_replaces_the_disturbed_one() -> None:
    settings = MeasureSettings(batch_size=8, warmup=2, min_iters=10, min_time=0.2, retries=2)
    disturbed = measure_throughput(_Burst(burst_s=1e9), (1, 8, 8), CPU,
                                   dataclasses.replace(settings, retries=0))
    assert disturbed.noisy and disturbed.attempts == 1  # without retries the burst stays
    # The first attempt (~0.3 s) lies inside the burst, the next one (after 0.2 s) after it.
    result = measure_throughput(_Burst(burst_s=0.35), (1, 8, 8), CPU, settings)
    assert result.attempts >= 2
    assert result.spread < disturbed.spread
    # Kept: the steady blocks (2 ms per batch of 8); the disturbed attempt's slowest block
    # held a 20 ms wait.
    assert result.min > disturbed.min * 2


def test_timing_blocks_fill_min_time_and_the_collector_is_restored() -> None:
    calls = 0

    class Counting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            time.sleep(0.001)
            return x

    settings = MeasureSettings(batch_size=4, warmup=1, min_iters=4, min_time=0.2)
    assert gc.isenabled()
    started = time.perf_counter()
    result = measure_throughput(Counting(), (1, 8, 8), CPU, settings)
    elapsed = time.perf_counter() - started
    assert gc.isenabled()
    assert elapsed >= settings.min_time
    # Blocks of several ~1 ms iterations (about min_time / min_iters each), all of them counted.
    assert result.iters > settings.min_iters
    assert calls > result.iters  # warm-up iterations are not timed

    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_throughput(Failing(), (1, 8, 8), CPU, settings)
    assert gc.isenabled()
