"""Classifier, registry, ModelConfig validation and FLOP/parameter counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from extattn import (
    ATTENTIONS,
    AttentionClassifier,
    ModelConfig,
    MultiHeadExternalAttention,
    SelfAttention,
    count_flops,
    count_params,
    create_model,
    list_models,
)

# Small configs covering the knobs; each is run with both attention kinds.
CONFIGS = {
    "default": ModelConfig(),
    "softmax": ModelConfig(norm="softmax", depth=1),
    "expand4": ModelConfig(dim=16, heads=8, expand=4, mem_size=8, depth=1),
    "one-slot": ModelConfig(dim=16, heads=2, mem_size=1, depth=1),
    "one-token": ModelConfig(image_size=4, patch_size=4, dim=8, heads=2, mem_size=4, depth=1),
    "rgb-dropout": ModelConfig(image_size=16, in_chans=3, patch_size=4, dim=24, heads=3,
                               mem_size=16, depth=3, mlp_ratio=1.5, dropout=0.2, num_classes=5),
}


def image_batch(config: ModelConfig, batch: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    shape = (batch, config.in_chans, config.image_size, config.image_size)
    return torch.randn(shape, generator=gen)


def check_forward_backward(model: AttentionClassifier, config: ModelConfig) -> None:
    """Logits have the right shape, are finite, and every parameter gets a finite gradient."""
    torch.manual_seed(0)
    model.train()
    x = image_batch(config)
    logits = model(x)
    assert logits.shape == (3, config.num_classes)
    assert torch.isfinite(logits).all()
    labels = torch.arange(3) % config.num_classes
    torch.nn.functional.cross_entropy(logits, labels).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    # The signal reaches the input end of the network through every attention layer.
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    for i, block in enumerate(model.blocks):
        grads = [p.grad.abs().sum() for p in block.attn.parameters()]
        assert sum(grads) > 0, f"block {i}'s attention gets no gradient"


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_grid_forward_and_gradients(name: str, attention: str) -> None:
    config = CONFIGS[name].replace(attention=attention)
    model = create_model(config)
    kind = MultiHeadExternalAttention if attention == "external" else SelfAttention
    assert all(isinstance(block.attn, kind) for block in model.blocks)
    assert len(model.blocks) == config.depth
    check_forward_backward(model, config)


@pytest.mark.parametrize("name", sorted(list_models()))
def test_registry_models_build_run_and_train(name: str) -> None:
    config = list_models()[name]
    model = create_model(name)
    assert model.config == config
    check_forward_backward(model, config)


def test_registry_has_both_attention_kinds_and_create_model_overrides() -> None:
    presets = list_models()
    assert {c.attention for c in presets.values()} == set(ATTENTIONS)
    model = create_model("ea-digits", mem_size=32, norm="softmax")
    assert model.config == presets["ea-digits"].replace(mem_size=32, norm="softmax")
    assert model.blocks[0].attn.mem_k.out_features == 32
    assert model.blocks[0].attn.norm == "softmax"
    # list_models returns a copy: callers cannot alter the registry by accident.
    presets.clear()
    assert list_models()


def test_unknown_model_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'; registered: .*ea-digits"):
        create_model("nope")


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    config = CONFIGS["rgb-dropout"]
    model = create_model(config).eval()
    x = image_batch(config, batch=4)
    with torch.no_grad():
        full = model(x)
        torch.testing.assert_close(model(x), full, rtol=0, atol=0)  # dropout off in eval
        # An image's logits don't depend on the other images of the batch (EA's memories are
        # shared across samples, but the normalization is per image).
        torch.testing.assert_close(model(x[1:2]), full[1:2], rtol=1e-5, atol=1e-6)


# --- ModelConfig -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"heads": 3}, r"heads \(3\) must divide dim\*expand \(64\*1=64\)"),
        ({"dim": 10, "heads": 4, "expand": 1}, r"heads \(4\) must divide dim\*expand \(10\*1=10\)"),
        ({"mem_size": 0}, "mem_size must be an integer >= 1; got 0"),
        ({"mem_size": -8}, "mem_size must be an integer >= 1; got -8"),
        ({"mem_size": 16.0}, "mem_size must be an integer"),
        ({"depth": True}, "depth must be an integer"),
        ({"norm": "l1"}, "norm must be 'softmax' or 'double'; got 'l1'"),
        ({"attention": "linear"}, "attention must be one of external, self; got 'linear'"),
        ({"patch_size": 3}, r"patch_size \(3\) must divide image_size \(8\)"),
        ({"mlp_ratio": 0}, "mlp_ratio must be > 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_invalid_config_is_rejected_with_a_helpful_message(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**changes)
    with pytest.raises(ValueError, match=match):  # replace() validates too
        ModelConfig().replace(**changes)


def test_heads_may_divide_the_widened_query_only() -> None:
    # 8 heads do not divide dim 12, but they do divide the widened query (12 * 2 = 24).
    config = ModelConfig(dim=12, heads=8, expand=2)
    assert create_model(config).blocks[0].attn.head_dim == 3
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(dim=12, heads=8, expand=1)


def test_from_dict_rejects_unknown_keys_naming_them() -> None:
    data = {**ModelConfig().to_dict(), "memsize": 8, "coef": 4}
    with pytest.raises(ValueError, match="unknown model setting\\(s\\): coef, memsize; known: "):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("config", [*CONFIGS.values(), *list_models().values()])
def test_to_dict_from_dict_round_trip(config: ModelConfig) -> None:
    data = config.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert ModelConfig.from_dict(data) == config
    assert ModelConfig.from_dict(config.replace(mem_size=7).to_dict()).mem_size == 7


def test_config_is_frozen_and_counts_tokens() -> None:
    config = ModelConfig(image_size=32, patch_size=4)
    assert config.num_tokens == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mem_size = 8  # type: ignore[misc]


# --- FLOPs and parameters ----------------------------------------------------------------------


def attention_flops(attention: str, N: int, dim: int = 64, heads: int = 4, mem_size: int = 32,
                    expand: int = 1) -> int:
    layer = (MultiHeadExternalAttention(dim, heads, mem_size, expand=expand)
             if attention == "external" else SelfAttention(dim, heads, expand=expand))
    return count_flops(layer, (N, dim), batch=1)


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("expand", [1, 4])
def test_external_attention_flops_match_hand_count(expand: int, lean: bool) -> None:
    N, d, H, S = 49, 16, 4, 8
    inner = d * expand
    layer = MultiHeadExternalAttention(d, H, S, expand=expand, lean=lean)
    # query + proj: 2·N·d·inner each; F M_kᵀ and A M_v: 2·N·S·hd per head each
    expected = 2 * (2 * N * d * inner) + 2 * (2 * N * S * inner)
    assert count_flops(layer, (N, d), batch=3) == expected


def test_self_attention_flops_match_hand_count() -> None:
    N, d, H = 49, 16, 4
    # qkv: 2·N·d·3d; QKᵀ and AV: 2·N²·d each (summed over heads); proj: 2·N·d·d
    expected = 2 * N * d * 3 * d + 2 * (2 * N * N * d) + 2 * N * d * d
    assert count_flops(SelfAttention(d, H), (N, d), batch=2) == expected


def test_external_attention_flops_grow_linearly_in_tokens() -> None:
    for N in (16, 64, 256):
        assert attention_flops("external", 4 * N) == 4 * attention_flops("external", N)
    # Whole model: every term but the tiny head is linear in N (image side ×2 → N ×4).
    small = ModelConfig(image_size=16, patch_size=2, dim=64, heads=4, depth=1)  # N = 64
    big = small.replace(image_size=32)  # N = 256
    ratio = count_flops(create_model(big), (1, 32, 32)) / count_flops(create_model(small),
                                                                       (1, 16, 16))
    assert ratio == pytest.approx(4.0, abs=0.1)


def test_self_attention_flops_grow_faster_than_linear() -> None:
    ratios = [attention_flops("self", 4 * N) / attention_flops("self", N) for N in (16, 64, 256)]
    assert all(r > 4.5 for r in ratios), ratios
    assert ratios == sorted(ratios), "the quadratic term must take over as N grows"
    assert ratios[-1] > 11  # tends to 16 once N ≫ dim
    small = ModelConfig(image_size=16, patch_size=2, dim=64, heads=4, depth=1, attention="self")
    big = small.replace(image_size=32)
    ratio = count_flops(create_model(big), (1, 32, 32)) / count_flops(create_model(small),
                                                                       (1, 16, 16))
    assert ratio > 5.0


def test_count_flops_restores_training_mode() -> None:
    model = create_model("ea-digits").train()
    count_flops(model, (1, 8, 8))
    assert model.training


def test_count_params_matches_a_hand_count() -> None:
    c = ModelConfig(image_size=4, patch_size=2, in_chans=1, dim=8, depth=1, heads=2, mem_size=4,
                    mlp_ratio=2.0, num_classes=3)
    N, d, hd, S, hidden = 4, 8, 4, 4, 16
    expected = (
        (1 * 2 * 2 * d + d)  # patch conv
        + N * d  # positions
        + 2 * d  # norm1
        + (d * d + d) + hd * S + S * hd + (d * d + d)  # EA: query, M_k, M_v, proj
        + 2 * d  # norm2
        + (d * hidden + hidden) + (hidden * d + d)  # MLP
        + 2 * d  # final norm
        + (d * 3 + 3)  # head
    )
    assert expected == 603
    model = create_model(c)
    assert count_params(model) == expected
    assert count_params(model, trainable_only=True) == expected
    model.pos_embed.requires_grad_(False)
    assert count_params(model, trainable_only=True) == expected - N * d
    assert count_params(model) == expected
    # Self-attention: one fused qkv projection instead of query + two memories.
    sa = create_model(c.replace(attention="self"))
    assert count_params(sa) == expected - (d * d + d) - 2 * hd * S + (d * 3 * d + 3 * d)
