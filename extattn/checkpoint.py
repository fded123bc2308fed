"""Checkpoints: weights + config + metadata in one file, written atomically, loaded safely."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from extattn.config import ModelConfig
from extattn.models import AttentionClassifier

__all__ = ["CheckpointError", "atomic_torch_save", "atomic_write", "load_checkpoint",
           "save_checkpoint"]

FORMAT = "extattn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is missing, unreadable, or not an extattn checkpoint."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temp file in ``path``'s directory, fsync, then rename over ``path``.

    A reader (or a crash) sees either the old file or the new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = _write_failure(exc)
        if full is not None:  # name the file: torch's own error says only "file write failed"
            raise OSError(full, os.strerror(full), str(path)) from exc
        raise


def _write_failure(exc: BaseException) -> int | None:
    """ENOSPC/EDQUOT/EFBIG when ``exc`` (or what it wraps) is a write that found no room."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return None if seen.filename else seen.errno  # named already: leave it as it is
        seen = seen.__cause__ or seen.__context__
    return None


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: ModelConfig,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write ``model``'s weights with its config and JSON-like ``metadata``.

    Metadata must hold only plain types (dict, list, str, int, float, bool, None) so that the
    file loads with ``weights_only=True``.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": config.to_dict(),
            "state_dict": state,
            "metadata": dict(metadata or {}),
        },
        path,
    )


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[AttentionClassifier, ModelConfig, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        The model (in eval mode), its config and the stored metadata.

    Raises:
        CheckpointError: the path is missing or is not an extattn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not ours"
        kind = exc.__class__.__name__
        raise CheckpointError(f"{path} is not an extattn checkpoint ({kind})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an extattn checkpoint (no '{FORMAT}' header)")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer extattn (format {blob['format_version']}); upgrade"
        )
    try:
        config = ModelConfig.from_dict(blob["config"])
        model = AttentionClassifier(config)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # header ok, body damaged
        raise CheckpointError(f"{path} is not a valid extattn checkpoint: {exc}") from exc
    model.eval()
    return model, config, blob.get("metadata", {})
