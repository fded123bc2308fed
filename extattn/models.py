"""The attention classifier and a small registry of named presets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from extattn.config import ModelConfig
from extattn.layers import Mlp, MultiHeadExternalAttention, PatchEmbed, SelfAttention

__all__ = ["AttentionClassifier", "Block", "create_model", "list_models", "register_model"]


class Block(nn.Module):
    """Pre-norm transformer block with a swappable attention kind."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.norm1 = nn.LayerNorm(c.dim)
        self.attn: nn.Module
        if c.attention == "external":
            self.attn = MultiHeadExternalAttention(
                c.dim, c.heads, c.mem_size, norm=c.norm, expand=c.expand, proj_drop=c.dropout
            )
        else:
            self.attn = SelfAttention(c.dim, c.heads, expand=c.expand, proj_drop=c.dropout)
        self.norm2 = nn.LayerNorm(c.dim)
        self.mlp = Mlp(c.dim, int(c.dim * c.mlp_ratio), drop=c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class AttentionClassifier(nn.Module):
    """Patch embedding, learned positions, ``depth`` blocks, LayerNorm, mean pool, linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.image_size, c.patch_size, c.in_chans, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_tokens, c.dim))
        self.blocks = nn.Sequential(*(Block(c) for _ in range(c.depth)))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed  # (B, N, C)
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=1))  # (B, num_classes)


_PRESETS: dict[str, ModelConfig] = {}


def register_model(name: str, config: ModelConfig) -> None:
    """Register a named preset for :func:`create_model`."""
    _PRESETS[name] = config


def list_models() -> dict[str, ModelConfig]:
    """The registered presets, by name."""
    return dict(_PRESETS)


def create_model(config: ModelConfig | str, **overrides: Any) -> AttentionClassifier:
    """Build a classifier from a config or a preset name, with optional field overrides.

    >>> create_model("ea-digits", mem_size=32).config.mem_size
    32
    """
    if isinstance(config, str):
        if config not in _PRESETS:
            raise ValueError(
                f"unknown model {config!r}; registered: {', '.join(sorted(_PRESETS))}"
            )
        config = _PRESETS[config]
    if overrides:
        config = config.replace(**overrides)
    return AttentionClassifier(config)


register_model("ea-digits", ModelConfig())
register_model("ea-digits-softmax", ModelConfig(norm="softmax"))
register_model("sa-digits", ModelConfig(attention="self"))
register_model(
    "ea-cifar",
    ModelConfig(image_size=32, in_chans=3, num_classes=10, patch_size=4, dim=192, depth=6,
                heads=8, mem_size=64, expand=4, mlp_ratio=4.0, dropout=0.1),
)
register_model(
    "sa-cifar",
    ModelConfig(image_size=32, in_chans=3, num_classes=10, patch_size=4, dim=192, depth=6,
                heads=6, attention="self", mlp_ratio=4.0, dropout=0.1),
)
