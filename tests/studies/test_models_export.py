"""``explore study models``: checkpoints of the front that load and reproduce the accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browse_helpers import Studies, load

from explore.run.export_models import export_models
from studies.errors import ExploreError, StudyNotFound

pytestmark = pytest.mark.slow


def val_accuracy(studies: Studies, name: str, path: Path) -> float:
    """Accuracy of a checkpoint on the study's evaluation split, loaded as the run loaded it."""
    from explore.config import Settings
    from explore.engine.data import load_dataset
    from explore.engine.train import evaluate
    from extattn import load_checkpoint

    settings = Settings.from_dict(load(studies, name).user_attrs["explore_settings"])
    data = load_dataset(settings.data, seed=settings.study.seed)
    model, _, _ = load_checkpoint(path)
    return evaluate(model, data.eval_x, data.eval_y)


def test_front_checkpoints_load_and_reproduce_accuracy(studies: Studies, tmp_path: Path) -> None:
    result = export_models(studies.url, "grid", tmp_path / "models")
    best = load(studies, "grid").best_trials
    index = json.loads(result.index_path.read_text())
    assert index == result.index
    assert [m["trial"] for m in index["models"]] == [t.number for t in best]
    for entry, t in zip(index["models"], best, strict=True):
        assert entry["source"] == "artifact"
        assert entry["params"] == t.params
        assert entry["values"] == {"accuracy": t.values[0], "throughput": t.values[1]}
        assert entry["model_config"] == t.user_attrs["model_config"]
        assert val_accuracy(studies, "grid", tmp_path / "models" / entry["file"]) == \
            t.values[0]


def test_missing_checkpoints_are_retrained_to_the_same_accuracy(studies_copy: Studies,
                                                                tmp_path: Path) -> None:
    for path in studies_copy.checkpoints.iterdir():
        path.unlink()
    notes: list[str] = []
    with pytest.raises(ExploreError, match="drop --no-retrain"):
        export_models(studies_copy.url, "easa", tmp_path / "none", retrain=False)
    result = export_models(studies_copy.url, "easa", tmp_path / "models", on_note=notes.append)
    best = load(studies_copy, "easa").best_trials
    assert [m["trial"] for m in result.index["models"]] == [t.number for t in best]
    for entry, t in zip(result.index["models"], best, strict=True):
        assert entry["source"] == "retrained"
        assert entry["retrained_accuracy"] == t.values[0]
        assert val_accuracy(studies_copy, "easa", tmp_path / "models" / entry["file"]) == \
            t.values[0]
    assert all("retraining" in n for n in notes), notes


def test_models_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(StudyNotFound):
        export_models(studies.url, "nope", tmp_path / "m")
    assert not (tmp_path / "m").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExploreError, match="is a file"):
        export_models(studies.url, "grid", tmp_path / "file")
