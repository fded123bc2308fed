"""Attention layers and the small building blocks of the classifier.

External attention (Guo et al. 2021, arXiv 2105.02358) replaces the N×N self-attention map by an
N×S map against two learnable memories shared by all samples: ``A = Norm(F M_kᵀ)``,
``F_out = A M_v``. Its cost is O(d·S·N) instead of O(d·N²).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from extattn.config import NORMS, head_width

__all__ = [
    "NORMS",
    "ExternalAttention",
    "MultiHeadExternalAttention",
    "SelfAttention",
    "Mlp",
    "PatchEmbed",
    "double_normalize",
]

# The paper's L1 step divides by (eps + sum over memory slots); the official code uses 1e-9.
L1_EPS = 1e-9


def double_normalize(logits: torch.Tensor, token_dim: int = -2) -> torch.Tensor:
    """The paper's double normalization of attention logits ``(..., N, S)``.

    Softmax over the token axis N (each memory slot distributes attention over the tokens), then
    L1 over the memory axis S (each token's row sums to one).
    """
    attn = logits.softmax(dim=token_dim)
    return attn / (L1_EPS + attn.sum(dim=-1, keepdim=True))


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")


def _check_mem_size(mem_size: int) -> None:
    if not isinstance(mem_size, int) or mem_size < 1:
        raise ValueError(f"mem_size (memory slots S) must be an integer >= 1; got {mem_size!r}")


class ExternalAttention(nn.Module):
    """Single-head external attention, the paper's Algorithm 1.

    Args:
        dim: Channel width d of the tokens.
        mem_size: Number of memory slots S.
        norm: ``"double"`` (softmax over tokens, then L1 over memory) or ``"softmax"`` (softmax
            over memory only, as in self-attention).
    """

    def __init__(self, dim: int, mem_size: int, norm: str = "double") -> None:
        super().__init__()
        _check_norm(norm)
        _check_mem_size(mem_size)
        self.norm = norm
        self.query = nn.Linear(dim, dim)
        self.mem_k = nn.Linear(dim, mem_size, bias=False)  # M_k: the keys memory
        self.mem_v = nn.Linear(mem_size, dim, bias=False)  # M_v: the values memory
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, C)
        logits = self.mem_k(self.query(x))  # (B, N, S)
        if self.norm == "double":
            attn = double_normalize(logits, token_dim=1)
        else:
            attn = logits.softmax(dim=-1)
        return self.proj(self.mem_v(attn))  # (B, N, C)


class MultiHeadExternalAttention(nn.Module):
    """Multi-head external attention (the paper's EAMLP form).

    The query is widened to ``dim * expand`` and split into ``heads``; every head uses the same
    memories ``mem_k`` (head_dim→S) and ``mem_v`` (S→head_dim); the heads are concatenated and
    projected back to ``dim``.

    Args:
        dim: Channel width of the tokens.
        heads: Number of heads; must divide ``dim * expand``.
        mem_size: Number of memory slots S.
        norm: ``"double"`` or ``"softmax"``, applied per head.
        expand: Query widening factor (the official code's ``coef``, 4 there).
        attn_drop: Dropout on the attention map.
        proj_drop: Dropout after the output projection.
        lean: The fast path (same math, same parameters). Tokens stay in ``(B, N, H, ·)``
            layout, so splitting and merging heads are views, not copies, and double
            normalization never materializes the L1-normalized map: the softmax map is
            multiplied by ``M_v`` and the L1 denominator is applied to the much smaller
            (N×head_dim) result, in one autograd function with a hand-written backward (one
            pass over the N×S map fewer each way). Used when the attention dropout is inactive;
            ``lean=False`` is the plain reference path in ``(B, H, N, S)`` layout.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mem_size: int,
        norm: str = "double",
        expand: int = 1,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        lean: bool = True,
    ) -> None:
        super().__init__()
        _check_norm(norm)
        _check_mem_size(mem_size)
        self.heads = heads
        self.head_dim = head_width(dim, expand, heads)
        inner = dim * expand
        self.norm = norm
        self.lean = lean
        self.query = nn.Linear(dim, inner)
        self.mem_k = nn.Linear(self.head_dim, mem_size, bias=False)
        self.mem_v = nn.Linear(mem_size, self.head_dim, bias=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        inner = self.heads * self.head_dim
        dropout_active = self.training and self.attn_drop.p > 0
        if self.lean and not dropout_active:
            q = self.query(x).view(B, N, self.heads, self.head_dim)  # (B, N, H, hd)
            logits = self.mem_k(q)  # (B, N, H, S)
            if self.norm == "double":
                out = _DoubleNormValues.apply(logits, self.mem_v.weight)  # (B, N, H, hd)
            else:
                out = self.mem_v(logits.softmax(dim=-1))  # softmax over memory slots S
            return self.proj_drop(self.proj(out.reshape(B, N, inner)))  # (B, N, C)
        q = self.query(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        logits = self.mem_k(q)  # (B, H, N, S)
        if self.norm == "double":
            attn = double_normalize(logits, token_dim=2)
        else:
            attn = logits.softmax(dim=-1)  # softmax over memory slots S
        out = self.mem_v(self.attn_drop(attn))  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(B, N, inner)  # (B, N, H*hd)
        return self.proj_drop(self.proj(out))


class _DoubleNormValues(torch.autograd.Function):
    """``double_normalize(logits, token_dim=1) @ M_vᵀ`` without the L1-normalized map.

    With ``A = softmax_N(logits)`` and ``r = eps + Σ_S A``: ``(A / r) M_vᵀ == (A M_vᵀ) / r``, so
    the division touches the N×head_dim result instead of the N×S map. The backward is written
    out so that A's two uses (``M_v`` and ``r``) cost one pass instead of autograd's separate
    gradient buffers and their sum.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, mem_v: torch.Tensor) -> torch.Tensor:
        # logits: (B, N, H, S); mem_v: (hd, S)
        attn = logits.softmax(dim=1)  # softmax over tokens N
        r = attn.sum(dim=-1, keepdim=True).add_(L1_EPS)  # (B, N, H, 1)
        out = F.linear(attn, mem_v).div_(r)  # (B, N, H, hd)
        ctx.save_for_backward(attn, mem_v, r, out)
        ctx.logits_dtype = logits.dtype  # bf16 under CUDA autocast, where attn is fp32
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        attn, mem_v, r, out = ctx.saved_tensors
        grad_u = grad / r  # d/d(A M_vᵀ)
        grad_r = (grad_u * out).sum(dim=-1, keepdim=True).neg_()  # d/dr of u / r = -out / r
        grad_logits = grad_mem_v = None
        if ctx.needs_input_grad[0]:
            grad_attn = torch.matmul(grad_u, mem_v.to(grad_u.dtype)).add_(grad_r)  # (B, N, H, S)
            grad_logits = torch._softmax_backward_data(grad_attn, attn, 1, attn.dtype)
            grad_logits = grad_logits.to(ctx.logits_dtype)
        if ctx.needs_input_grad[1]:
            # Σ over B, N, H of grad_uᵀ A: (hd, S)
            grad_mem_v = grad_u.reshape(-1, grad_u.shape[-1]).t().mm(
                attn.reshape(-1, attn.shape[-1]).to(grad_u.dtype)).to(mem_v.dtype)
        return grad_logits, grad_mem_v


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention, the O(N²) baseline.

    Same call signature as :class:`MultiHeadExternalAttention` (tokens in, tokens out), so a
    model can swap attention kinds.

    Args:
        dim: Channel width of the tokens.
        heads: Number of heads; must divide ``dim * expand``.
        expand: Widening factor of the query/key/value projections.
        attn_drop: Dropout on the attention map (training only).
        proj_drop: Dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        expand: int = 1,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_width(dim, expand, heads)
        inner = dim * expand
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, self.head_dim)  # (B, N, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B, H, N, hd)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(B, N, self.heads * self.head_dim)  # (B, N, H*hd)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """Two-layer GELU MLP of a transformer block."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens with one strided convolution."""

    def __init__(self, image_size: int, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size ({patch_size}) must divide image_size ({image_size})"
            )
        self.num_tokens = (image_size // patch_size) ** 2
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A convolution whose stride is its kernel is one linear map per patch: run it as a
        # matmul over the flattened patches (on CPU several times faster than the convolution
        # for small patches, same weights and FLOPs).
        B, C, H, W = x.shape
        p = self.patch_size
        patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C·p·p)
        weight = self.proj.weight.reshape(self.proj.out_channels, C * p * p)  # (dim, C·p·p)
        return F.linear(patches, weight, self.proj.bias)  # (B, N, dim)
