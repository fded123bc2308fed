"""How much memory a configuration needs, estimated before anything is stored or trained.

A ``mem_size`` of a million passes every other check and fails only in training, after the
study has been created with FAIL trials. The estimate is plain arithmetic over the model's config
(no torch), checked against the memory this machine (RAM) or device (CUDA) has free:

- parameters: counted exactly as :mod:`extattn` builds them (a test checks against
  ``count_params``); training holds 4 copies (weights, gradients, AdamW's two moments);
- activations saved for backward, per image: about ``N * (4*dim + 3*inner + 2*hidden)`` per block
  for the token-wise tensors plus one attention map of ``heads * N * S`` (``N * N`` for
  self-attention) per block, and two more maps live at the peak (the logits before the softmax,
  the map's gradient). Measured with torch's saved-tensor hooks this is within a few percent for
  external attention (a test checks the agreement);
- inference (the throughput measurement) at its own batch: the weights and two maps.

A space is checked at its corners: every numeric field at its smallest and largest value, every
categorical choice, at most :data:`MAX_POINTS` combinations, so a large space costs milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from extattn.config import ModelConfig

__all__ = ["MAX_POINTS", "Need", "check_fits", "estimate", "largest_need", "param_count"]

MAX_POINTS = 4096
GIB = 1 << 30


def param_count(c: ModelConfig) -> int:
    """The parameters of ``AttentionClassifier(c)``, counted from its config."""
    inner, hidden = c.dim * c.expand, int(c.dim * c.mlp_ratio)
    head_dim = inner // c.heads
    if c.attention == "external":
        attn = (c.dim * inner + inner) + 2 * head_dim * c.mem_size + (inner * c.dim + c.dim)
    else:
        attn = (c.dim * 3 * inner + 3 * inner) + (inner * c.dim + c.dim)
    block = 4 * c.dim + attn + (c.dim * hidden + hidden) + (hidden * c.dim + c.dim)
    embed = c.in_chans * c.patch_size ** 2 * c.dim + c.dim + c.num_tokens * c.dim
    return embed + c.depth * block + 2 * c.dim + (c.dim * c.num_classes + c.num_classes)


def _attention_map(c: ModelConfig) -> int:
    """Elements of one block's attention map for one image."""
    n = c.num_tokens
    return c.heads * n * (c.mem_size if c.attention == "external" else n)


def saved_per_image(c: ModelConfig) -> int:
    """Elements saved for backward per image (the token-wise tensors and one map per block)."""
    n, inner, hidden = c.num_tokens, c.dim * c.expand, int(c.dim * c.mlp_ratio)
    return c.depth * (n * (4 * c.dim + 3 * inner + 2 * hidden) + _attention_map(c))


@dataclass(frozen=True)
class Need:
    """What one configuration needs at its peak, and when."""

    bytes: int
    batch: int
    what: str  # "training batch" or "measurement batch" (the [measure] batch_size)
    point: dict[str, Any]  # the searched values of the configuration (empty: the fixed one)
    model: ModelConfig
    maps: bool  # the attention maps are most of it (mem_size, heads, tokens)


def estimate(c: ModelConfig, train_batch: int, measure_batch: int, act_bytes: int = 4,
             point: dict[str, Any] | None = None) -> Need:
    """The larger of training's and the throughput measurement's peak, in bytes."""
    params = param_count(c)
    peak_map = 2 * _attention_map(c)
    maps = (c.depth + 2) * _attention_map(c)
    train = 4 * 4 * params + act_bytes * train_batch * (
        saved_per_image(c) + peak_map + c.in_chans * c.image_size ** 2)
    infer = 4 * params + act_bytes * measure_batch * (
        peak_map + 4 * c.num_tokens * max(c.dim * c.expand, int(c.dim * c.mlp_ratio)))
    if infer > train:
        return Need(infer, measure_batch, "measurement batch", dict(point or {}), c,
                    2 * act_bytes * measure_batch * peak_map > infer)
    return Need(train, train_batch, "training batch", dict(point or {}), c,
                2 * act_bytes * train_batch * maps > train)


def _corners(values: list[Any]) -> list[Any]:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or len(values) <= 2:
        return values
    return [min(numbers), max(numbers)]


def corner_points(space: Any) -> Iterator[dict[str, Any]]:
    """At most :data:`MAX_POINTS` points of ``space`` (a :class:`~explore.space.SearchSpace`):
    numeric fields at their ends, categorical fields at every choice."""
    names = [p.name for p in space.params]
    pools = [_corners(p.values()) for p in space.params]
    for values in itertools.islice(itertools.product(*pools), MAX_POINTS):
        yield dict(zip(names, values, strict=True))


def largest_need(settings: Any, data_shape: tuple[int, int, int], act_bytes: int = 4
                 ) -> Need | None:
    """The configuration of ``settings``' space that needs the most memory (None: no point of
    the space is a possible model, which :func:`~explore.run.opening.check_space` reports)."""
    from explore.plan import plan_trial

    worst: Need | None = None
    for point in corner_points(settings.space):
        try:
            plan = plan_trial(point, settings, data_shape)
        except ValueError:
            continue
        need = estimate(plan.model, plan.train.batch_size, settings.measure.batch_size,
                        act_bytes, point)
        if worst is None or need.bytes > worst.bytes:
            worst = need
    return worst


def check_fits(need: Need, free_bytes: int, where: str) -> str | None:
    """The refusal, one line, when ``need`` exceeds ``free_bytes``; None when it fits.

    ``where`` says whose memory it is, ``{}`` standing for the amount ("this machine has {}
    free (RAM)", from :func:`~explore.engine.device.free_memory`)."""
    if need.bytes <= free_bytes:
        return None
    c = need.model
    shown = ", ".join(f"{k} {v}" for k, v in need.point.items()) or (
        f"mem_size {c.mem_size}" if c.attention == "external" and need.maps else f"dim {c.dim}")
    sizes = "mem_size (or heads)" if need.maps else "dim or depth"
    knob = "batch_size" if need.what == "training batch" else "[measure] batch_size"
    return (f"{shown} needs about {need.bytes / GIB:.1f} GiB for {need.what} {need.batch}; "
            f"{where.format(f'{free_bytes / GIB:.1f} GiB')}: lower {sizes} or {knob}")
