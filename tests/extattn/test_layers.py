"""Attention layers against references written from the paper's formulas (float64, einsum)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from extattn import (
    NORMS,
    ExternalAttention,
    MultiHeadExternalAttention,
    PatchEmbed,
    SelfAttention,
    double_normalize,
)

TOL = {"rtol": 1e-10, "atol": 1e-10}
L1_EPS = 1e-9  # the paper's (and the official code's) eps of the L1 step


# --- references: the paper's formulas, written independently of extattn -----------------------


def ref_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def ref_norm(logits: torch.Tensor, norm: str, token_dim: int) -> torch.Tensor:
    """``logits (..., N, S)``: "double" = softmax over N, then L1 over S; "softmax" = over S."""
    if norm == "double":
        a = ref_softmax(logits, dim=token_dim)
        return a / (L1_EPS + a.sum(dim=-1, keepdim=True))
    return ref_softmax(logits, dim=-1)


def ref_external_attention(m: ExternalAttention, x: torch.Tensor) -> torch.Tensor:
    """Single head: ``A = Norm(Q M_kᵀ)``, ``out = proj(A M_v)`` with ``Q = query(x)``."""
    q = torch.einsum("bnc,dc->bnd", x, m.query.weight) + m.query.bias  # (B, N, C)
    logits = torch.einsum("bnd,sd->bns", q, m.mem_k.weight)  # (B, N, S)
    attn = ref_norm(logits, m.norm, token_dim=1)
    out = torch.einsum("bns,ds->bnd", attn, m.mem_v.weight)  # (B, N, C)
    return torch.einsum("bnd,cd->bnc", out, m.proj.weight) + m.proj.bias


def ref_multi_head_external_attention(
    m: MultiHeadExternalAttention, x: torch.Tensor
) -> torch.Tensor:
    """EAMLP: widen, split heads, the same M_k/M_v for every head, concat, project."""
    B, N, _ = x.shape
    q = torch.einsum("bnc,ic->bni", x, m.query.weight) + m.query.bias  # (B, N, H*hd)
    q = q.reshape(B, N, m.heads, -1)  # (B, N, H, hd)
    logits = torch.einsum("bnhd,sd->bhns", q, m.mem_k.weight)  # (B, H, N, S)
    attn = ref_norm(logits, m.norm, token_dim=2)
    out = torch.einsum("bhns,ds->bnhd", attn, m.mem_v.weight).reshape(B, N, -1)  # (B, N, H*hd)
    return torch.einsum("bni,ci->bnc", out, m.proj.weight) + m.proj.bias


def ref_self_attention(m: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q Kᵀ / √d_head) V per head, concat, project."""
    B, N, _ = x.shape
    qkv = torch.einsum("bnc,oc->bno", x, m.qkv.weight) + m.qkv.bias  # (B, N, 3*H*hd)
    q, k, v = qkv.reshape(B, N, 3, m.heads, -1).unbind(2)  # 3 × (B, N, H, hd)
    scores = torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    out = torch.einsum("bhnm,bmhd->bnhd", ref_softmax(scores, dim=-1), v).reshape(B, N, -1)
    return torch.einsum("bni,ci->bnc", out, m.proj.weight) + m.proj.bias


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """float64 copy with weights large enough that the softmaxes are far from uniform."""
    module = module.double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 1.5 / math.sqrt(fan_in))
    return module


def rand_tokens(B: int, N: int, C: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, C, generator=gen, dtype=torch.float64)


# --- matches the paper -------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(
    ("B", "N", "dim", "mem_size"), [(2, 7, 8, 5), (3, 16, 12, 64), (1, 1, 4, 3)]
)
def test_single_head_matches_reference(norm: str, B: int, N: int, dim: int, mem_size: int) -> None:
    m = randomized(ExternalAttention(dim, mem_size, norm=norm))
    x = rand_tokens(B, N, dim)
    torch.testing.assert_close(m(x), ref_external_attention(m, x), **TOL)


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(
    ("B", "N", "dim", "heads", "expand", "mem_size"),
    [
        (2, 9, 8, 1, 1, 5),
        (2, 16, 8, 4, 1, 64),
        (3, 5, 6, 3, 4, 7),
        (1, 33, 16, 8, 4, 16),
        (2, 1, 4, 2, 1, 3),
    ],
)
def test_multi_head_matches_reference(
    norm: str, lean: bool, B: int, N: int, dim: int, heads: int, expand: int, mem_size: int
) -> None:
    m = randomized(
        MultiHeadExternalAttention(dim, heads, mem_size, norm=norm, expand=expand, lean=lean)
    )
    x = rand_tokens(B, N, dim)
    torch.testing.assert_close(m(x), ref_multi_head_external_attention(m, x), **TOL)


def test_lean_and_plain_agree_in_float32_and_share_weights() -> None:
    torch.manual_seed(0)
    plain = MultiHeadExternalAttention(32, 4, 16, norm="double", expand=4, lean=False).eval()
    lean = MultiHeadExternalAttention(32, 4, 16, norm="double", expand=4, lean=True).eval()
    lean.load_state_dict(plain.state_dict())  # the lean path changes no parameters
    x = torch.randn(2, 50, 32)
    torch.testing.assert_close(lean(x), plain(x), rtol=1e-5, atol=1e-6)


def test_attention_dropout_is_applied_in_training_and_off_in_eval() -> None:
    m = randomized(MultiHeadExternalAttention(8, 2, 6, norm="double", attn_drop=0.5, lean=True))
    x = rand_tokens(2, 10, 8)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    b = m(x)
    assert not torch.allclose(a, b), "attention dropout must be active in training mode"
    m.eval()
    torch.testing.assert_close(m(x), ref_multi_head_external_attention(m, x), **TOL)


@pytest.mark.parametrize(
    ("B", "N", "dim", "heads", "expand"), [(2, 7, 8, 2, 1), (1, 20, 12, 3, 2), (2, 64, 16, 1, 1)]
)
def test_self_attention_matches_reference(
    B: int, N: int, dim: int, heads: int, expand: int
) -> None:
    m = randomized(SelfAttention(dim, heads, expand=expand))
    x = rand_tokens(B, N, dim)
    torch.testing.assert_close(m(x), ref_self_attention(m, x), **TOL)


# --- normalization properties ------------------------------------------------------------------


def captured_attention_map(m: MultiHeadExternalAttention, x: torch.Tensor) -> torch.Tensor:
    """The normalized map as the module feeds it to M_v (plain path: the map itself)."""
    assert not m.lean or m.norm == "softmax"
    seen: list[torch.Tensor] = []
    handle = m.mem_v.register_forward_pre_hook(lambda _mod, args: seen.append(args[0]))
    try:
        m(x)
    finally:
        handle.remove()
    return seen[0]  # (B, H, N, S)


@pytest.mark.parametrize("norm", NORMS)
def test_attention_rows_sum_to_one_over_memory(norm: str) -> None:
    m = randomized(MultiHeadExternalAttention(8, 2, 16, norm=norm, lean=False))
    x = rand_tokens(3, 40, 8)
    attn = captured_attention_map(m, x)
    assert attn.shape == (3, 2, 40, 16)
    assert (attn >= 0).all()
    # L1's eps shifts the sum by ~eps / (sum over S of the token softmax) ≈ 1e-9 * N / S
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(3, 2, 40, dtype=torch.float64),
                               rtol=0, atol=1e-7)


def test_double_normalize_is_softmax_over_tokens_then_l1_over_memory() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 30, 8, generator=gen, dtype=torch.float64) * 3  # (B, H, N, S)
    attn = double_normalize(logits, token_dim=2)
    torch.testing.assert_close(attn, ref_norm(logits, "double", token_dim=2), **TOL)
    # Rows sum to r / (1e-9 + r), r = the row's softmax mass: 1 up to eps / r, and never above.
    row = attn.sum(-1)
    assert (row <= 1).all()
    torch.testing.assert_close(row, torch.ones_like(row), rtol=0, atol=1e-6)
    # Its default token axis is the one before the memory axis.
    torch.testing.assert_close(double_normalize(logits), attn, rtol=0, atol=0)
    # Softmax over S instead of N would also give rows summing to one, but not this map.
    assert not torch.allclose(attn, logits.softmax(dim=-1))


def test_double_normalize_l1_eps_is_the_papers() -> None:
    # One memory slot (S = 1): each token's row sum is its softmax weight p over the tokens, so
    # the L1 step gives p / (1e-9 + p): 1 for a dominant token, 1/2 for p = 1e-9, and 0 (not
    # NaN) for a token with no weight at all.
    logits = torch.tensor([0.0, math.log(1e-9), -1e300], dtype=torch.float64).view(1, 3, 1)
    attn = double_normalize(logits, token_dim=1)[0, :, 0]
    p = ref_softmax(logits, dim=1)[0, :, 0]
    torch.testing.assert_close(attn, p / (L1_EPS + p), rtol=1e-12, atol=0)
    assert attn[0] == pytest.approx(1.0, abs=1e-8)
    assert attn[1] == pytest.approx(0.5, rel=1e-6)
    assert attn[2] == 0.0


def _outputs_with_token_changed(m: nn.Module, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = rand_tokens(2, 12, 8)
    y = x.clone()
    y[:, j] = rand_tokens(2, 1, 8, seed=7)[:, 0]
    return m(x), m(y)


@pytest.mark.parametrize(
    "make",
    [
        lambda norm: ExternalAttention(8, 6, norm=norm),
        lambda norm: MultiHeadExternalAttention(8, 2, 6, norm=norm, expand=2, lean=False),
        lambda norm: MultiHeadExternalAttention(8, 2, 6, norm=norm, expand=2, lean=True),
    ],
    ids=["single-head", "multi-head-plain", "multi-head-lean"],
)
def test_token_independence_holds_for_softmax_only(make) -> None:
    j = 5
    others = [i for i in range(12) if i != j]

    a, b = _outputs_with_token_changed(randomized(make("softmax")), j)
    torch.testing.assert_close(a[:, others], b[:, others], rtol=0, atol=1e-12)
    assert (a[:, j] - b[:, j]).abs().max() > 1e-3  # the changed token's own output changes

    a, b = _outputs_with_token_changed(randomized(make("double")), j)
    # The softmax over N couples the tokens: every other token's output moves.
    moved = (a[:, others] - b[:, others]).abs().amax(dim=-1)  # (B, N-1)
    assert (moved > 1e-6).all(), moved


# --- validation and the small blocks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ExternalAttention(8, 0), "mem_size"),
        (lambda: ExternalAttention(8, 4, norm="l2"), "norm must be one of softmax, double"),
        (lambda: MultiHeadExternalAttention(8, 3, 4), r"heads \(3\) must divide dim\*expand"),
        (lambda: MultiHeadExternalAttention(8, 2, -1), "mem_size"),
        (lambda: MultiHeadExternalAttention(8, 2, 4, norm="softmax2"), "norm"),
        (lambda: MultiHeadExternalAttention(8, 2, 4, expand=0), "expand must be >= 1"),
        (lambda: SelfAttention(8, 3), r"heads \(3\) must divide"),
        (lambda: PatchEmbed(9, 2, 1, 8), r"patch_size \(2\) must divide image_size \(9\)"),
    ],
)
def test_layer_arguments_are_validated(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_patch_embed_makes_one_token_per_patch_in_row_major_order() -> None:
    pe = PatchEmbed(image_size=8, patch_size=4, in_chans=1, dim=1)
    with torch.no_grad():
        pe.proj.weight.fill_(1.0)
        pe.proj.bias.zero_()
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, :4, 4:] = 1.0  # top-right patch
    tokens = pe(img)
    assert pe.num_tokens == 4
    assert tokens.shape == (1, 4, 1)
    torch.testing.assert_close(tokens[0, :, 0], torch.tensor([0.0, 16.0, 0.0, 0.0]))
