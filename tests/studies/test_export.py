"""``explore study export``: every trial to JSON and CSV, and both read back to the same records."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import optuna
import pytest
from browse_helpers import Studies, load

from studies.errors import StudyNotFound, UsageError
from studies.export import csv_text, export_study, flatten, load_export, unflatten


@pytest.mark.parametrize("name", ["grid", "easa"])
def test_json_export_holds_every_trial_as_optuna_has_it(studies: Studies, tmp_path: Path,
                                                        name: str) -> None:
    out = tmp_path / "trials.json"
    result = export_study(studies.url, name, out)
    study = load(studies, name)
    data = json.loads(out.read_text())
    assert result.trials == len(study.trials) == len(data["trials"])
    assert data["study"] == name
    assert data["metric_names"] == ["accuracy", "throughput"]
    assert data["user_attrs"]["explore_settings"] == study.user_attrs["explore_settings"]
    best = {t.number for t in study.best_trials}
    for record, t in zip(data["trials"], study.trials, strict=True):
        assert record["number"] == t.number
        assert record["state"] == t.state.name
        assert record["params"] == t.params
        assert record["user_attrs"] == t.user_attrs
        assert record["values"] == {"accuracy": t.values[0], "throughput": t.values[1]}
        assert record["datetime_start"] == t.datetime_start.isoformat()
        assert record["duration"] == pytest.approx(t.duration.total_seconds())
        assert record["pareto"] == (t.number in best)


def test_csv_and_json_exports_read_back_to_the_same_records(studies: Studies,
                                                            tmp_path: Path) -> None:
    export_study(studies.url, "easa", tmp_path / "t.json")
    export_study(studies.url, "easa", tmp_path / "t.csv")
    from_json = load_export(tmp_path / "t.json")
    from_csv = load_export(tmp_path / "t.csv")
    assert from_csv == from_json
    with (tmp_path / "t.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert header[:3] == ["number", "state", "pareto"]
    assert "values.accuracy" in header and "user_attrs.throughput.median" in header
    assert "params.heads" in header and "user_attrs.history" in header


def test_csv_cells_are_unambiguous(tmp_path: Path) -> None:
    """Strings that look like JSON, empty strings, None, inf, lists and empty dicts survive."""
    records = [
        {"number": 0, "state": "COMPLETE", "values": {"a": 1.5, "b": math.inf},
         "params": {"s": "12", "t": "true", "e": "", "n": None, "x": "plain"},
         "user_attrs": {"list": [1, {"k": "v"}], "empty": {}, "flag": False}},
        {"number": 1, "state": "PRUNED", "values": None, "params": {}, "user_attrs": {}},
    ]
    path = tmp_path / "r.csv"
    path.write_text(csv_text(records), encoding="utf-8")
    assert load_export(path) == records


def test_flatten_and_unflatten_are_inverse() -> None:
    record = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": {}, "f": None}
    flat = flatten(record)
    assert flat == {"a.b.c": 1, "a.d": [1, 2], "e": {}, "f": None}
    assert unflatten(flat) == record


def test_export_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.json or \.csv"):
        export_study(studies.url, "grid", tmp_path / "t.txt")
    with pytest.raises(UsageError, match="does not exist"):
        export_study(studies.url, "grid", tmp_path / "missing" / "t.csv")
    with pytest.raises(StudyNotFound):
        export_study(studies.url, "nope", tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


def test_export_of_a_study_with_failed_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"] * 2)
    study.set_metric_names(["accuracy", "throughput"])
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "OOM"}))
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0]))
    export_study(storage, "s", tmp_path / "s.csv")
    export_study(storage, "s", tmp_path / "s.json")
    records = load_export(tmp_path / "s.csv")
    assert records == load_export(tmp_path / "s.json")
    assert records[0]["state"] == "FAIL" and records[0]["values"] is None
    assert records[0]["user_attrs"] == {"fail_reason": "OOM"}
    assert records[1]["values"] == {"accuracy": 0.5, "throughput": 10.0}
