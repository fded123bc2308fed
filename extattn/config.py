"""The model's configuration: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["ATTENTIONS", "ModelConfig", "head_width"]

ATTENTIONS = ("external", "self")
NORMS = ("softmax", "double")  # softmax only, or the paper's double normalization


def head_width(dim: int, expand: int, heads: int) -> int:
    """The width of one head, ``dim * expand / heads``; a ValueError a user can act on when
    ``heads`` does not divide that width (the one check of config and layers alike)."""
    if heads < 1 or expand < 1:
        raise ValueError(f"heads and expand must be >= 1; got heads={heads}, expand={expand}")
    inner = dim * expand
    if inner % heads:
        raise ValueError(f"heads ({heads}) must divide dim*expand ({dim}*{expand}={inner}): "
                         "choose heads among the divisors of that width")
    return inner // heads


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an :class:`~extattn.models.AttentionClassifier`.

    The defaults are the small digits model that the default search explores.
    """

    image_size: int = 8  # input height = width, pixels
    in_chans: int = 1  # input channels (1 grey, 3 RGB)
    num_classes: int = 10  # size of the classification head
    patch_size: int = 2  # side of a square patch; (image_size / patch_size)² tokens
    dim: int = 64  # token width d
    depth: int = 2  # number of pre-norm transformer blocks
    heads: int = 4  # attention heads; must divide dim * expand
    mem_size: int = 64  # external memory slots S (ignored by self-attention)
    norm: str = "double"  # "double" (paper) or "softmax" (ignored by self-attention)
    attention: str = "external"  # "external" or "self"
    expand: int = 1  # query widening of multi-head EA (the official code's coef)
    mlp_ratio: float = 2.0  # MLP hidden width = dim * mlp_ratio
    dropout: float = 0.0  # dropout after attention/MLP projections

    def __post_init__(self) -> None:
        positive = ("image_size", "in_chans", "num_classes", "patch_size", "dim", "depth",
                    "heads", "mem_size", "expand")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTIONS)}; got {self.attention!r}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm must be {' or '.join(map(repr, NORMS))}; got {self.norm!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size ({self.patch_size}) must divide image_size ({self.image_size})"
            )
        head_width(self.dim, self.expand, self.heads)
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0; got {self.mlp_ratio!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")

    @property
    def num_tokens(self) -> int:
        """Tokens per image, N."""
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
