"""extattn: external attention (Guo et al. 2021) as a small, framework-free PyTorch library."""

from extattn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from extattn.config import ATTENTIONS, ModelConfig
from extattn.flops import count_flops, count_params
from extattn.layers import (
    NORMS,
    ExternalAttention,
    Mlp,
    MultiHeadExternalAttention,
    PatchEmbed,
    SelfAttention,
    double_normalize,
)
from extattn.models import AttentionClassifier, Block, create_model, list_models, register_model


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("explore")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "ATTENTIONS",
    "NORMS",
    "AttentionClassifier",
    "Block",
    "CheckpointError",
    "ExternalAttention",
    "Mlp",
    "ModelConfig",
    "MultiHeadExternalAttention",
    "PatchEmbed",
    "SelfAttention",
    "count_flops",
    "count_params",
    "create_model",
    "double_normalize",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
    "__version__",
]
