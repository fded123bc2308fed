"""Attention layers and the small building blocks of the classifier.

External attention (Guo et al. 2021, arXiv 2105.02358) replaces the N×N self-attention map by an
N×S map against two learnable memories shared by all samples: ``A = Norm(F M_kᵀ)``,
``F_out = A M_v``. Its cost is O(d·S·N) instead of O(d·N²).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NORMS",
    "ExternalAttention",
    "MultiHeadExternalAttention",
    "SelfAttention",
    "Mlp",
    "PatchEmbed",
    "double_normalize",
]

NORMS = ("softmax", "double")
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
        lean: Compute double normalization without materializing the L1-normalized map: the
            softmax map is multiplied by ``M_v`` and the L1 denominator is applied to the much
            smaller (N×head_dim) result. Same math, one pass over the N×S map fewer. Used when
            the attention dropout is inactive.
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
        if heads < 1 or expand < 1:
            raise ValueError(f"heads and expand must be >= 1; got heads={heads}, expand={expand}")
        inner = dim * expand
        if inner % heads:
            raise ValueError(
                f"heads ({heads}) must divide dim*expand ({dim}*{expand}={inner}): "
                "choose heads among the divisors of that width"
            )
        self.heads = heads
        self.head_dim = inner // heads
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
        q = self.query(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        logits = self.mem_k(q)  # (B, H, N, S)
        dropout_active = self.training and self.attn_drop.p > 0
        if self.norm == "double" and self.lean and not dropout_active:
            attn = logits.softmax(dim=2)  # softmax over tokens N
            # L1 over S applied after M_v: (A / r) M_v == (A M_v) / r, with r = sum_S A.
            out = self.mem_v(attn) / (L1_EPS + attn.sum(dim=-1, keepdim=True))  # (B, H, N, hd)
        else:
            if self.norm == "double":
                attn = double_normalize(logits, token_dim=2)
            else:
                attn = logits.softmax(dim=-1)  # softmax over memory slots S
            out = self.mem_v(self.attn_drop(attn))  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(B, N, self.heads * self.head_dim)  # (B, N, H*hd)
        return self.proj_drop(self.proj(out))


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
        inner = dim * expand
        if heads < 1 or inner % heads:
            raise ValueError(
                f"heads ({heads}) must divide dim*expand ({dim}*{expand}={inner}): "
                "choose heads among the divisors of that width"
            )
        self.heads = heads
        self.head_dim = inner // heads
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
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W)
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, dim)
