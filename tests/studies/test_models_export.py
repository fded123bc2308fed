"""``explore study models``: checkpoints of the front that load and reproduce the accuracy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    result = export_models(studies.url, "grid", tmp_path / "models", observed=True)
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
        export_models(studies_copy.url, "easa", tmp_path / "none", retrain=False, observed=True)
    result = export_models(studies_copy.url, "easa", tmp_path / "models", on_note=notes.append,
                           observed=True)
    best = load(studies_copy, "easa").best_trials
    assert [m["trial"] for m in result.index["models"]] == [t.number for t in best]
    for entry, t in zip(result.index["models"], best, strict=True):
        assert entry["source"] == "retrained"
        assert entry["retrained_accuracy"] == t.values[0]
        assert val_accuracy(studies_copy, "easa", tmp_path / "models" / entry["file"]) == \
            t.values[0]
    assert all("retraining" in n for n in notes), notes


def test_plausible_front_exports_each_configurations_best_replicate(studies: Studies,
                                                                   tmp_path: Path) -> None:
    from explore.search.racing import record_of
    from studies.replicates import study_front

    study = load(studies, "grid")
    front = study_front([record_of(t) for t in study.trials], study.user_attrs["explore_settings"])
    result = export_models(studies.url, "grid", tmp_path / "models")
    models = result.index["models"]
    assert result.index["front"] == "plausible"
    assert {m["configuration"] for m in models} == set(front.front.plausible)
    for m in models:
        best = front.best_replicate(m["configuration"])
        assert m["trial"] == best.number and m["values"]["accuracy"] == best.values[0]
        assert m["replicates"] == len(front.config(m["configuration"]).trials)
        assert m["source"] == "artifact"  # the run kept the plausible front's best replicates
        assert val_accuracy(studies, "grid", tmp_path / "models" / m["file"]) == best.values[0]


def test_a_later_replicate_is_retrained_with_its_own_seed(tmp_path: Path) -> None:
    """Replicate r > 0 trains with the seed of (configuration, r): retraining it must use that
    seed, or the weights are another replicate's."""
    import optuna

    from tests.conftest import assert_retrained, run_replicated_study

    url = run_replicated_study(tmp_path, "r")
    trials = optuna.load_study(study_name="r", storage=url).trials
    later = [t for t in trials if t.user_attrs["replicate"] == 1]
    assert len(later) == 2
    assert_retrained(url, "r", later, tmp_path)  # whether or not a front exports them
    by_number = {t.number: t for t in trials}
    for observed in (False, True):
        result = export_models(url, "r", tmp_path / f"m{observed}", observed=observed)
        for m in result.index["models"]:
            t = by_number[m["trial"]]
            assert m["source"] == "retrained" and m["retrained_accuracy"] == t.values[0]
            assert m["seed"] == t.user_attrs["seed"]


def test_models_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(StudyNotFound):
        export_models(studies.url, "nope", tmp_path / "m")
    assert not (tmp_path / "m").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExploreError, match="is a file"):
        export_models(studies.url, "grid", tmp_path / "file")


def _models(studies: Studies, name: str, *args: str) -> Any:
    import subprocess

    from browse_helpers import EXPLORE, clean_env

    return subprocess.run([str(EXPLORE), "study", "models", name, "--storage", studies.url,
                           "--observed", *args], cwd=studies.directory, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_a_damaged_checkpoint_is_one_line_naming_trial_and_file(
        studies: Studies, studies_copy: Studies, tmp_path: Path) -> None:
    """A truncated or garbage checkpoint in the store: one line per bad file naming the trial,
    the file and what to do; exit code 1 for the partial export; no empty output folder; the
    store itself unchanged."""
    from tests.stored import file_bytes

    # The study whose observed front kept more checkpoints (how many depends on the run's
    # noise; the 8-trial grid study has had 1 to 4): two or more are needed for a partial export.
    fronts = {name: [t for t in load(studies_copy, name).best_trials
                     if t.user_attrs.get("duplicate_of") is None] for name in ("grid", "easa")}
    name = max(fronts, key=lambda n: len(fronts[n]))
    if len(fronts[name]) < 2:  # one design beat all: a twin of it (equal values, both optimal)
        _add_twin(studies_copy, name, fronts[name][0])
        fronts[name] = [t for t in load(studies_copy, name).best_trials
                        if t.user_attrs.get("duplicate_of") is None]
    stored = {t.number: studies_copy.checkpoints / t.user_attrs["checkpoint_artifact"]
              for t in fronts[name]}
    assert len(stored) >= 2, {n: len(f) for n, f in fronts.items()}
    kept = {number: path.read_bytes() for number, path in stored.items()}
    first, *rest = sorted(stored)
    whole = kept[first]
    stored[first].write_bytes(whole[:len(whole) // 2])  # truncated
    for number in rest:
        stored[number].write_bytes(b"garbage, not a checkpoint\n")
    store = file_bytes(studies_copy.checkpoints)

    out = tmp_path / "none"
    proc = _models(studies_copy, name, "--out", str(out), "--no-retrain")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(lines) == len(stored) + 1, proc.stderr
    for line, number in zip(lines, sorted(stored), strict=False):
        assert f"trial {number}: stored checkpoint is damaged: {stored[number]}" in line, line
        assert "drop --no-retrain" in line and "delete the damaged file" in line
    assert lines[-1] == f"nothing was written to {out}"
    assert not out.exists()  # no empty folder left behind
    assert file_bytes(studies_copy.checkpoints) == store

    for number in rest:  # only the truncated one stays bad: a partial export
        stored[number].write_bytes(kept[number])
    store = file_bytes(studies_copy.checkpoints)
    partial = tmp_path / "partial"
    proc = _models(studies_copy, name, "--out", str(partial), "--no-retrain")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: trial {first}: "), proc.stderr
    index = json.loads((partial / "index.json").read_text())
    assert [m["trial"] for m in index["models"]] == rest
    assert sorted(p.name for p in partial.iterdir()) == sorted(
        [m["file"] for m in index["models"]] + ["index.json"])
    assert file_bytes(studies_copy.checkpoints) == store

    retrained = tmp_path / "retrained"  # without --no-retrain: retrained, said once
    proc = _models(studies_copy, name, "--out", str(retrained), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if f"trial {first}" in line]
    assert len(notes) == 1 and "damaged" in notes[0] and "retraining" in notes[0], proc.stderr
    sources = {m["trial"]: m["source"] for m in json.loads(proc.stdout)["models"]}
    assert sources == {first: "retrained", **dict.fromkeys(rest, "artifact")}
    assert file_bytes(studies_copy.checkpoints) == store  # export reads the store, never writes


def _add_twin(studies: Studies, name: str, trial: Any) -> None:
    """A finished trial equal to ``trial`` (params, values, user attrs) with its own copy of the
    checkpoint, added through Optuna: two trials of equal values are both on the observed
    front."""
    import uuid

    import optuna

    artifact = str(uuid.uuid4())
    source = studies.checkpoints / trial.user_attrs["checkpoint_artifact"]
    (studies.checkpoints / artifact).write_bytes(source.read_bytes())
    load(studies, name).add_trial(optuna.trial.create_trial(
        params=trial.params, distributions=trial.distributions, values=trial.values,
        user_attrs={**trial.user_attrs, "checkpoint_artifact": artifact}))
