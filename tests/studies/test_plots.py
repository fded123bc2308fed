"""Plots (PNG and HTML), the snapshot history, and the comparison of studies."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from browse_helpers import Studies, load

from studies.catalog import TrialRecord, pareto_front
from studies.compare import compare_studies
from studies.errors import ExploreError, StudyNotFound, UsageError
from studies.history import study_history
from studies.pareto import hypervolume_2d
from studies.plots import label, plot_study, variant
from studies.snapshots import SnapshotStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_png_plot_of_a_study(studies: Studies, tmp_path: Path) -> None:
    out = plot_study(studies.url, "easa", tmp_path / "front.png")
    assert is_png(out)


def test_html_plot_has_the_front_and_the_labels(studies: Studies, tmp_path: Path) -> None:
    out = plot_study(studies.url, "grid", tmp_path / "front.html")
    text = out.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>") and "plotly" in text
    assert text.rstrip().endswith("</html>")
    assert "Pareto front" in text and "dominated" in text
    front = pareto_front(studies.url, "grid")
    for t in front.trials:  # plotly's JSON writes "/" as \u002f
        assert label(t).replace("/", "\\u002f") in text


def test_html_without_plotly_is_a_clear_error(studies: Studies, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ExploreError, match=r"plotly.*pip install 'explore\[plotly\]'"):
        plot_study(studies.url, "grid", tmp_path / "front.html")
    assert not (tmp_path / "front.html").exists()


def test_plot_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.png or \.html"):
        plot_study(studies.url, "grid", tmp_path / "front.svg")
    with pytest.raises(StudyNotFound):
        plot_study(studies.url, "nope", tmp_path / "front.png")


def test_labels_and_variants() -> None:
    def trial(params: dict[str, object], config: dict[str, object]) -> TrialRecord:
        return TrialRecord(0, "COMPLETE", (0.5, 100.0), params, {"model_config": config},
                           None, None)

    ea = trial({"mem_size": 64, "heads": 4}, {"norm": "double", "attention": "external"})
    sa = trial({"attention": "self", "heads": 2}, {"mem_size": 64, "norm": "double"})
    assert label(ea) == "S64/h4/double" and variant(ea) == ("external", "double")
    assert label(sa) == "SA/h2" and variant(sa) == ("self", "self")


def test_history_matches_the_snapshot_table(studies: Studies, tmp_path: Path) -> None:
    history = study_history(studies.url, "grid", plot=tmp_path / "hv.png")
    stored = SnapshotStore.from_url(studies.url).history("grid")
    assert history.snapshots == stored and stored
    assert is_png(tmp_path / "hv.png")
    last = history.to_records()[-1]
    front = {t.number for t in load(studies, "grid").best_trials}
    assert {m["number"] for m in last["members"]} == front
    assert last["hypervolume"] == pytest.approx(
        hypervolume_2d([(m["accuracy"], m["throughput"]) for m in last["members"]]))
    numbers = [r["n_finished"] for r in history.to_records()]
    assert numbers == sorted(numbers)


def test_history_of_a_missing_study_creates_nothing(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(StudyNotFound):
        study_history(studies.url, "nope", plot=tmp_path / "hv.png")
    assert not (tmp_path / "hv.png").exists()


def test_compare_uses_one_reference_for_all(studies: Studies, tmp_path: Path) -> None:
    result = compare_studies(studies.url, ["grid", "easa"], tmp_path / "both.png")
    assert is_png(tmp_path / "both.png")
    fronts = {n: load(studies, n).best_trials for n in ("grid", "easa")}
    scale = max(t.values[1] for n in fronts for t in load(studies, n).trials)
    assert result.throughput_scale == scale
    for row in result.rows:
        front = fronts[row.name]
        assert row.front_size == len(front)
        assert row.hypervolume == pytest.approx(
            hypervolume_2d([(t.values[0], t.values[1] / scale) for t in front]))
        assert 0 < row.hypervolume <= 1
        assert row.best_accuracy == max(t.values[0] for t in front)
        assert row.best_throughput == max(t.values[1] for t in front)
    assert result.notes == []  # same dataset, same device
    records = result.to_records()
    assert [r["study"] for r in records] == ["grid", "easa"]
    assert all(r["reference"] == [0.0, 0.0] for r in records)


def test_compare_html_and_errors(studies: Studies, tmp_path: Path) -> None:
    compare_studies(studies.url, ["easa", "grid"], tmp_path / "both.html")
    assert "plotly" in (tmp_path / "both.html").read_text()
    with pytest.raises(UsageError, match="at least two"):
        compare_studies(studies.url, ["grid"])
    with pytest.raises(UsageError, match="once"):
        compare_studies(studies.url, ["grid", "grid"])
    with pytest.raises(StudyNotFound):
        compare_studies(studies.url, ["grid", "nope"])
