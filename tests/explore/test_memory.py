"""The memory estimate (explore.memory) against real models: parameters counted exactly, the
activations saved for backward measured with torch's saved-tensor hooks; a large space is
checked at a bounded number of points."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from explore.config import resolve_settings
from explore.memory import (
    MAX_POINTS,
    corner_points,
    estimate,
    largest_need,
    param_count,
    saved_per_image,
)
from extattn import ModelConfig, count_params, create_model

CONFIGS = [
    {},
    {"attention": "self"},
    {"mem_size": 1024, "norm": "softmax"},
    {"dim": 48, "heads": 3, "expand": 2, "mlp_ratio": 3.0, "depth": 3},
    {"image_size": 32, "patch_size": 4, "in_chans": 3, "num_classes": 100, "mem_size": 256},
    {"attention": "self", "expand": 4, "heads": 8},
]


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda f: str(f) if f else "default")
def test_parameters_are_counted_exactly(fields: dict[str, Any]) -> None:
    config = ModelConfig(**fields)
    assert param_count(config) == count_params(create_model(config))


def saved_elements(config: ModelConfig, batch: int) -> float:
    """Elements torch saves for backward per image (parameters not counted), in fp32."""
    torch.manual_seed(0)
    model = create_model(config)
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(batch, config.in_chans, config.image_size, config.image_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).logsumexp(-1).sum()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights) / 4 / batch


@pytest.mark.parametrize("fields", [
    {"mem_size": 2048}, {"mem_size": 2048, "norm": "softmax"}, {"mem_size": 512, "heads": 8},
    {"image_size": 16, "patch_size": 2, "mem_size": 256, "depth": 3},
], ids=["S2048", "S2048-softmax", "S512-h8", "N64-S256"])
def test_saved_activations_match_a_measurement(fields: dict[str, Any]) -> None:
    config = ModelConfig(**fields)
    measured = saved_elements(config, batch=4)
    assert 0.9 <= saved_per_image(config) / measured <= 1.2, (saved_per_image(config), measured)


def test_small_models_are_not_underestimated() -> None:
    for fields in CONFIGS:
        config = ModelConfig(**fields)
        assert saved_per_image(config) >= 0.7 * saved_elements(config, batch=2), fields


def test_the_estimate_grows_with_memory_size_and_batch() -> None:
    small, big = ModelConfig(mem_size=64), ModelConfig(mem_size=1 << 20)
    assert estimate(big, 128, 256).bytes > 1000 * estimate(small, 128, 256).bytes
    assert estimate(small, 512, 1).bytes > estimate(small, 64, 1).bytes
    need = estimate(big, 128, 1)
    assert (need.what, need.batch, need.maps) == ("training batch", 128, True)
    # 4 bytes x 128 images x (2 blocks' saved maps + 2 at the peak) x 4 heads x 16 tokens x S
    assert need.bytes == pytest.approx(4 * 128 * 4 * 4 * 16 * (1 << 20), rel=0.01)


def test_a_large_space_is_checked_at_a_bounded_number_of_points() -> None:
    space = {"mem_size": [8, 16, 32, 64, 128, 256, 512, 1024], "heads": [1, 2, 4],
             "dim": list(range(16, 129, 16)), "depth": [1, 2, 3, 4], "mlp_ratio": [1.0, 2.0, 4.0],
             "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "norm": ["softmax", "double"],
             "batch_size": [32, 64, 128], "expand": [1, 2, 4], "weight_decay": [0.0, 0.01, 0.1],
             "patch_size": [1, 2, 4], "label_smoothing": [0.0, 0.1, 0.2]}
    settings = resolve_settings({"space": space})
    points = list(corner_points(settings.space))
    assert len(points) <= MAX_POINTS
    assert {p["mem_size"] for p in points} == {8, 1024}
    need = largest_need(settings, (8, 1, 10))
    assert need is not None
    assert (need.point["mem_size"], need.point["dim"], need.point["depth"]) == (1024, 128, 4)
    assert need.point["patch_size"] == 1  # the most tokens
