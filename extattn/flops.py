"""Parameter and FLOP counts."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ["count_flops", "count_params"]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


# torch's counter knows the CUDA attention kernels but not the CPU flash kernel that
# scaled_dot_product_attention dispatches to on CPU; without this, SA's QKᵀ and AV are missed.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int = 2) -> int:
    """Forward FLOPs per image (a multiply-add counts 2), via ``torch.utils.flop_counter``.

    Counts every matmul, including both attention kinds' attention products (EA's ``F M_kᵀ`` and
    ``A M_v``; SA's ``QKᵀ`` and ``AV`` inside scaled-dot-product attention). Element-wise ops
    (softmax, norms, GELU) are not counted, as is usual.

    Args:
        model: The model; it is run once in eval mode on zeros.
        input_shape: One image's shape, e.g. ``(1, 8, 8)``.
        batch: Images per counting pass; the total is divided by it.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros((batch, *input_shape), device=device)
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // batch
