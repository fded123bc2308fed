"""Checkpoints: exact round trip, safe loading, clear errors, atomic writes."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import pytest
import torch

from extattn import CheckpointError, ModelConfig, create_model, load_checkpoint, save_checkpoint
from extattn.checkpoint import FORMAT, FORMAT_VERSION

CONFIG = ModelConfig(image_size=8, patch_size=2, dim=16, heads=2, mem_size=8, expand=2, depth=2,
                     dropout=0.1, norm="softmax")
METADATA = {"trial": 3, "accuracy": 0.9375, "seed": None, "ok": True,
            "history": [{"epoch": 1, "val_acc": 0.5}], "device": "cpu"}


def trained_like_model(config: ModelConfig = CONFIG):
    """A model whose weights are far from the init (so a lost tensor would show)."""
    torch.manual_seed(0)
    model = create_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.train()  # saved from training mode, as the trainer would


def images(config: ModelConfig = CONFIG) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, config.in_chans, config.image_size, config.image_size, generator=gen)


@pytest.mark.parametrize("attention", ["external", "self"])
def test_round_trip_gives_identical_outputs_config_and_metadata(
    tmp_path: Path, attention: str
) -> None:
    config = CONFIG.replace(attention=attention)
    model = trained_like_model(config)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config, METADATA)

    loaded, loaded_config, metadata = load_checkpoint(path)
    assert loaded_config == config
    assert metadata == METADATA
    assert not loaded.training, "a loaded model is ready for inference"
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images(config)), model(images(config)), rtol=0, atol=0)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def test_save_accepts_str_paths_creates_directories_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "model.pt"
    save_checkpoint(str(path), trained_like_model(), CONFIG)
    assert load_checkpoint(str(path))[2] == {}  # no metadata → empty dict
    other = CONFIG.replace(mem_size=4)
    save_checkpoint(path, create_model(other), other, {"v": 2})
    _, config, metadata = load_checkpoint(path)
    assert (config, metadata) == (other, {"v": 2})


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, trained_like_model(), CONFIG, METADATA)
    save_checkpoint(path, trained_like_model(), CONFIG, METADATA)
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]

    # A write that fails half-way (metadata that cannot be pickled) leaves the previous file
    # intact and loadable, and removes its temp file.
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, create_model(CONFIG), CONFIG, {"bad": lambda: None})
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert load_checkpoint(path)[2] == METADATA


def test_missing_path_raises_checkpoint_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)  # a directory is not a checkpoint file either


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _plain_dict(path: Path) -> None:
    torch.save({"state_dict": create_model(CONFIG).state_dict(), "config": CONFIG.to_dict()}, path)


def _truncated(path: Path) -> None:
    save_checkpoint(path, create_model(CONFIG), CONFIG)
    path.write_bytes(path.read_bytes()[:1000])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _tensor(path: Path) -> None:
    torch.save(torch.zeros(3), path)


@pytest.mark.parametrize("write", [_random_bytes, _plain_dict, _truncated, _empty, _tensor])
def test_file_that_is_not_a_checkpoint_raises_checkpoint_error_naming_it(
    tmp_path: Path, write
) -> None:
    path = tmp_path / "not-a-checkpoint.pt"
    write(path)
    with pytest.raises(CheckpointError, match="is not an extattn checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)  # callers may catch ValueError for bad input


def test_newer_format_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 1, "config": {},
                "state_dict": {}, "metadata": {}}, path)
    with pytest.raises(CheckpointError, match="newer extattn .*upgrade") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class _Exploit:
    """Unpickling this would create a file: loading must never run code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_loading_never_runs_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": CONFIG.to_dict(),
                "state_dict": {}, "metadata": {"x": _Exploit(marker)}}, path)
    with pytest.raises(CheckpointError, match="is not an extattn checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def _body(**changes) -> dict:
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": CONFIG.to_dict(),
            "state_dict": create_model(CONFIG).state_dict(), "metadata": {}}
    blob.update(changes)
    return {k: v for k, v in blob.items() if v is not None}


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (_body(config={**CONFIG.to_dict(), "coef": 4}), "unknown model setting.*coef"),
        (_body(config={**CONFIG.to_dict(), "heads": 3}), r"heads \(3\) must divide"),
        (_body(config=7), "not a valid"),
        (_body(state_dict=None), "state_dict"),
        (_body(state_dict={}), "Missing key"),
        (_body(config=CONFIG.replace(dim=32).to_dict()), "size mismatch"),
    ],
    ids=["unknown-setting", "invalid-config", "config-not-a-dict", "no-weights", "empty-weights",
         "weights-of-another-shape"],
)
def test_damaged_checkpoint_body_raises_checkpoint_error_naming_it(
    tmp_path: Path, blob: dict, match: str
) -> None:
    path = tmp_path / "damaged.pt"
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert f"{path} is not a valid extattn checkpoint" in str(info.value)
