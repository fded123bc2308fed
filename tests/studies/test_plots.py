"""Plots (PNG and HTML), the snapshot history, and the comparison of studies.

The pictures are checked as a user would look at them, from matplotlib's and plotly's figure
objects: labels inside the axes and apart, on the front and a few others only, error bars where
there are replicates, noisy throughput marked, the history running to the current count.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from browse_helpers import Studies, load
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from replicated import Plan, make_study

from studies.catalog import Front, TrialRecord, pareto_front
from studies.compare import compare_studies
from studies.errors import ExploreError, StudyNotFound, UsageError
from studies.fronthtml import compare_plotly, front_figure
from studies.frontpng import compare_figure, front_matplotlib, observed_matplotlib
from studies.frontpoints import (
    COLORS,
    MAX_OTHER_LABELS,
    NOISY,
    STUDY_COLORS,
    is_noisy,
    label,
    variant,
)
from studies.history import History, study_history
from studies.historyplot import history_figure
from studies.pareto import hypervolume_2d
from studies.plots import plot_study
from studies.record import StudyMeta
from studies.replicates import ConfiguredFront, configured_front, study_front
from studies.snapshots import Snapshot, SnapshotStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZES = (12, 40, 200)


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


# ---- studies with replicates -------------------------------------------------------------------


def records(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord(t.number, t.state.name, tuple(t.values) if t.values else None,
                        dict(t.params), dict(t.user_attrs), t.datetime_start,
                        t.datetime_complete, t._trial_id) for t in study.trials]


def in_memory(trials: int) -> optuna.Study:
    """A racing-like study of ``trials`` replicates in memory (200: two widths, 88 designs)."""
    return make_study(None, f"r{trials}", Plan(trials, seed=trials,
                                               dims=(32, 64) if trials > 100 else (64,)))


def observed_front(study: optuna.Study) -> Front:
    meta = StudyMeta(0, study.study_name, ("maximize", "maximize"), ("accuracy", "throughput"),
                     dict(study.user_attrs))
    return Front(meta, records(study), {t.number for t in study.best_trials})


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite file: ``r12``, ``r40`` (then 3 PRUNED trials; confident snapshots after every
    trial) and ``vs`` (4 epochs instead of 12), made as the runner records them."""
    url = f"sqlite:///{tmp_path_factory.mktemp('replicated') / 'replicated.db'}"
    make_study(url, "r12", Plan(12, seed=12))
    make_study(url, "r40", Plan(40, seed=40, pruned=3, confident_every=1))
    make_study(url, "vs", Plan(30, seed=3, epochs=4))
    yield url


# ---- what the figure objects show --------------------------------------------------------------


def labels_of(fig: Figure) -> list[Any]:
    return [t for t in fig.axes[0].texts if t.get_gid() == "point-label"]


def label_numbers(fig: Figure) -> list[int]:
    """The trial number each label starts with (``#5 S32/h8/double``)."""
    out = []
    for text in labels_of(fig):
        found = re.match(r"#(\d+) ", text.get_text())
        assert found, text.get_text()
        out.append(int(found.group(1)))
    return out


def assert_labels_readable(fig: Figure) -> None:
    """Every label box inside the axes, no two overlapping."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = fig.axes[0].get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in labels_of(fig)]
    assert boxes
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, box
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, box
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def bar_counts(fig: Figure) -> tuple[int, int]:
    """(points with x error bars, points with y error bars) over every error-bar container."""
    xs = ys = 0
    for c in fig.axes[0].containers:
        if isinstance(c, ErrorbarContainer):
            _, _, collections = c.lines
            assert c.has_xerr and c.has_yerr and len(collections) == 2
            xs += len(collections[0].get_segments())
            ys += len(collections[1].get_segments())
    return xs, ys


def rings(fig: Figure) -> int:
    """Points ringed in the noisy colour."""
    count = 0
    for coll in fig.axes[0].collections:
        edges = np.asarray(coll.get_edgecolor())
        hollow = not len(np.asarray(coll.get_facecolor()))
        if len(edges) and to_hex(tuple(edges[0])) == NOISY and hollow:
            count += len(np.asarray(coll.get_offsets()))
    return count


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def first_trials(cf: ConfiguredFront, keys: list[str]) -> set[int]:
    return {cf.config(k).trials[0].number for k in keys}


@pytest.mark.parametrize("trials", SIZES)
def test_front_over_configurations_is_readable(trials: int) -> None:
    study = in_memory(trials)
    fig = front_matplotlib(study.trials, None)  # FrozenTrials as the runner has them
    cf = configured_front(records(study), 0.95, 0)
    assert_labels_readable(fig)
    numbers = label_numbers(fig)
    assert len(numbers) == len(set(numbers))
    front = first_trials(cf, cf.front.plausible)
    assert front <= set(numbers)  # the whole plausible front is labelled
    others = set(numbers) - front
    assert len(others) <= MAX_OTHER_LABELS
    # ... and the others are undecided, never confidently dominated
    assert not others & first_trials(cf, cf.front.dominated)
    assert cf.front.noise.known  # replicates exist: every configuration has its bars
    assert bar_counts(fig) == (len(cf.configs), len(cf.configs))
    noisy = [c for c in cf.configs if 2 * sum(map(is_noisy, c.trials)) > len(c.trials)]
    assert rings(fig) == len(noisy)
    legend = legend_texts(fig)
    assert "95% interval of the mean" in legend and "single runs (replicates)" in legend
    if noisy:
        assert any(t.startswith("noisy throughput") for t in legend)
    assert fig.axes[0].get_xscale() == "log"


@pytest.mark.parametrize("trials", SIZES)
def test_observed_front_labels_the_front_and_a_few_others(trials: int) -> None:
    study = in_memory(trials)
    fig = observed_matplotlib(observed_front(study))
    assert_labels_readable(fig)
    numbers = set(label_numbers(fig))
    front = {t.number for t in study.best_trials}
    assert front <= numbers and len(numbers - front) <= MAX_OTHER_LABELS
    assert bar_counts(fig) == (0, 0)  # single trials have no intervals
    assert rings(fig) == sum(1 for t in records(study) if is_noisy(t))
    formatter = fig.axes[0].xaxis.get_major_formatter()
    assert formatter(12000.0, 0) == "12,000"  # thousands separators


def test_single_runs_have_no_bars_and_say_so() -> None:
    study = make_study(None, "single", Plan(10, seed=5, max_replicates=1))
    fig = front_matplotlib(study.trials, None)
    assert bar_counts(fig) == (0, 0)
    assert "noise is unknown" in fig.axes[0].get_title(loc="left")
    legend = legend_texts(fig)
    assert "one run each: noise unknown, no bars" in legend
    assert "single runs (replicates)" not in legend  # they would coincide with the points
    assert_labels_readable(fig)


def test_front_figure_explains_every_marker(replicated: str) -> None:
    front = pareto_front(replicated, "r40", include_dominated=True)
    fig = front_figure(front.trials, front.study)
    cf = study_front(front.trials, front.study.settings)
    legend = {t.name for t in fig.data if t.showlegend is not False}
    drawn = [t for t in fig.data if t.mode == "markers+text"]
    for trace in drawn:  # one trace per status, each explained by a legend entry
        assert any(entry.startswith(trace.name) for entry in legend), (trace.name, legend)
        assert trace.error_x.array is not None and trace.error_y.array is not None
    assert sum(len(t.x) for t in drawn) == len(cf.configs)
    variants = {variant(c.trials[0])[1] for c in cf.configs}
    explained = {k for k, text in {"double": "EA, double normalization", "softmax": "EA, softmax",
                                   "self": "self-attention"}.items() if text in legend}
    assert variants <= explained
    colours = {c for t in drawn if t.name == "plausible front" for c in t.marker.color}
    assert colours <= {COLORS[k] for k in explained}
    assert "r40" in fig.layout.title.text and "95% intervals" in fig.layout.title.text


def test_front_figure_without_plotly_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ExploreError, match=r"plotly.*pip install 'explore\[plotly\]'"):
        front_figure(in_memory(12).trials)
    with pytest.raises(ImportError):  # what a caller treating plotly as optional catches
        front_figure(in_memory(12).trials)


@pytest.mark.slow
def test_plot_study_png_and_html_with_replicates(replicated: str, tmp_path: Path) -> None:
    assert is_png(plot_study(replicated, "r40", tmp_path / "front.png"))
    assert is_png(plot_study(replicated, "r40", tmp_path / "observed.png", observed=True))
    text = plot_study(replicated, "r40", tmp_path / "front.html").read_text()
    assert text.lstrip().lower().startswith("<!doctype html>") and "arrayminus" in text
    assert "confidently dominated" in text and "noisy throughput" in text


# ---- history -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_history_runs_to_the_finished_count(replicated: str, tmp_path: Path) -> None:
    history = study_history(replicated, "r40", plot=tmp_path / "hv.png")
    assert is_png(tmp_path / "hv.png") and history.plot == tmp_path / "hv.png"
    assert history.finished == 43  # 40 COMPLETE, 3 PRUNED after the last snapshot
    assert history.snapshots[-1].n_finished <= 40 and len(history.confident) == 40
    fig = history_figure(history)
    by_trials = fig.axes[0]
    lines = {line.get_gid(): line for line in by_trials.lines if line.get_gid()}
    assert xs(lines["observed-hypervolume"])[-1] == 43
    assert xs(lines["plausible-hypervolume"])[-1] == 43
    ys = np.asarray(lines["observed-hypervolume"].get_ydata())
    assert ys[-1] == history.snapshots[-1].hypervolume
    lo, hi = by_trials.get_xlim()
    assert all(float(t).is_integer() for t in by_trials.get_xticks() if lo <= t <= hi)
    assert by_trials.yaxis.get_major_formatter()(26069.7, 0) == "26,070"


def xs(line: Any) -> list[float]:
    return [float(v) for v in np.asarray(line.get_xdata())]


def snapshot(number: int, finished: int, when: dt.datetime, hypervolume: float) -> Snapshot:
    return Snapshot(number, finished, when, hypervolume, (0.0, 0.0), ((number, 0.9, 100.0),))


@pytest.mark.parametrize(("seconds", "unit", "end"), [(50, "seconds", 50.0),
                                                       (1800, "minutes", 30.0),
                                                       (7 * 3600, "hours", 7.0)])
def test_history_time_axis_unit_fits_the_run(seconds: int, unit: str, end: float) -> None:
    t0 = dt.datetime(2026, 12, 1, 12, 0, 0)
    history = History("s", [snapshot(0, 1, t0, 10.0), snapshot(1, 4, t0 + dt.timedelta(
        seconds=seconds / 2), 20.0)], finished=9,
        last_activity=t0 + dt.timedelta(seconds=seconds))
    by_trials, by_time = history_figure(history).axes
    assert by_time.get_xlabel() == f"{unit} since the first snapshot"
    line = next(x for x in by_time.lines if x.get_gid() == "observed-hypervolume")
    assert xs(line)[-1] == pytest.approx(end)
    assert xs(next(x for x in by_trials.lines if x.get_gid() == "observed-hypervolume"))[-1] == 9
    assert by_trials.get_xlabel() == "finished trials (now 9)"


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
    assert history.finished == 8


def test_history_of_a_missing_study_creates_nothing(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(StudyNotFound):
        study_history(studies.url, "nope", plot=tmp_path / "hv.png")
    assert not (tmp_path / "hv.png").exists()


# ---- compare -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_names_both_hypervolumes_and_the_differences(replicated: str,
                                                             tmp_path: Path) -> None:
    result = compare_studies(replicated, ["r40", "vs"], tmp_path / "both.png")
    assert is_png(tmp_path / "both.png")
    assert any("train.epochs: r40 12, vs 4" in n for n in result.notes), result.notes
    snapshots = SnapshotStore.from_url(replicated)
    for row, cf in zip(result.rows, result.configured, strict=True):
        # the observed front's hypervolume in the convention history and the report use
        assert row.hypervolume_img_s == pytest.approx(
            snapshots.history(row.name)[-1].hypervolume)
        assert row.hypervolume == pytest.approx(row.hypervolume_img_s / result.throughput_scale)
        assert row.plausible_hypervolume_img_s == cf.front.hypervolume
        low, high = row.plausible_interval
        assert low is not None and high is not None and low <= high
    records_ = result.to_records()
    assert all(r["hypervolume_unit"] == "accuracy × img/s" for r in records_)
    fig = compare_figure(result.fronts, result.configured)
    assert fig.get_suptitle() == "Fronts of 2 studies: 'r40', 'vs'"
    legend = legend_texts(fig)
    for row in result.rows:
        assert f"{row.name}: plausible front, HV {row.plausible_hypervolume_img_s:,.0f}" in legend
    assert_labels_readable(fig)


@pytest.mark.slow
def test_compare_html_gives_each_study_its_colour(replicated: str, tmp_path: Path) -> None:
    result = compare_studies(replicated, ["r40", "vs"], tmp_path / "both.html")
    assert "plotly" in (tmp_path / "both.html").read_text()
    fig = compare_plotly(result.fronts, result.configured)
    assert fig.layout.title.text.startswith("Fronts of 2 studies: 'r40', 'vs'")
    for name, colour in zip(("r40", "vs"), STUDY_COLORS, strict=False):
        dominated = [t for t in fig.data if t.name == f"{name}: confidently dominated"]
        assert dominated and dominated[0].marker.color == colour


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
        assert row.hypervolume_img_s == pytest.approx(
            SnapshotStore.from_url(studies.url).history(row.name)[-1].hypervolume)
        assert row.best_accuracy == max(t.values[0] for t in front)
        assert row.best_throughput == max(t.values[1] for t in front)
        configurations = {t.user_attrs.get("configuration") for t in load(studies, row.name).trials}
        assert row.configurations == len(configurations)
    # same dataset, device and settings; only the spaces differ
    assert len(result.notes) == 1 and "different spaces" in result.notes[0]
    records_ = result.to_records()
    assert [r["study"] for r in records_] == ["grid", "easa"]
    assert all(r["reference"] == [0.0, 0.0] for r in records_)


def test_compare_html_and_errors(studies: Studies, tmp_path: Path) -> None:
    compare_studies(studies.url, ["easa", "grid"], tmp_path / "both.html")
    assert "plotly" in (tmp_path / "both.html").read_text()
    with pytest.raises(UsageError, match="at least two"):
        compare_studies(studies.url, ["grid"])
    with pytest.raises(UsageError, match="once"):
        compare_studies(studies.url, ["grid", "grid"])
    with pytest.raises(StudyNotFound):
        compare_studies(studies.url, ["grid", "nope"])


# ---- the real studies of explore study run -------------------------------------------------------


def test_png_plot_of_a_study(studies: Studies, tmp_path: Path) -> None:
    out = plot_study(studies.url, "easa", tmp_path / "front.png")
    assert is_png(out)


def test_html_plot_has_the_front_and_the_labels(studies: Studies, tmp_path: Path) -> None:
    out = plot_study(studies.url, "grid", tmp_path / "front.html")
    text = out.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>") and "plotly" in text
    assert text.rstrip().endswith("</html>")
    assert "plausible front (P(Pareto-optimal)" in text
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


@pytest.mark.parametrize("trials", SIZES)
def test_front_figure_labels_do_not_overlap(trials: int) -> None:
    """The dashboard's figure: plotly lays text out in the browser, so the labels are placed on
    an estimate of the axes; on it no two label boxes overlap, all stay inside, the front comes
    first, and a label left out is still in the point's hover text."""
    study = in_memory(trials)
    fig = front_figure(study.trials, None)
    cf = configured_front(records(study), 0.95, 0)
    drawn = [t for t in fig.data if t.mode == "markers+text"]
    shown = [(text, side) for t in drawn for text, side in zip(t.text, t.textposition,
                                                               strict=True) if text]
    assert 0 < len(shown) <= len(cf.front.plausible) + MAX_OTHER_LABELS
    assert len({text for text, _ in shown}) == len(shown)
    hovers = " ".join(h for t in drawn for h in t.hovertext)
    for t in drawn:
        for text, hover in zip(t.text, t.hovertext, strict=True):
            if not text:
                continue
            assert text.split(" ", 1)[1].split(" ×")[0] in hover  # the design, also on hover
    assert hovers
    ticks = list(fig.layout.xaxis.tickvals)  # round values chosen to fit (below)
    assert len(ticks) >= 2 and ticks == sorted(ticks)


@pytest.mark.parametrize("lo,hi", [(14_000, 62_000), (900, 120_000), (30_000, 31_000),
                                   (100, 1e7), (2_000, 9_000), (55_000, 80_000)])
def test_log_ticks_are_round_inside_and_apart(lo: float, hi: float) -> None:
    import itertools
    import math

    from studies.labels import PLOTLY_AREA, PLOTLY_CHAR, log_ticks

    ticks = log_ticks(lo, hi)
    assert all(lo <= t <= hi for t in ticks) and len(ticks) >= 2
    if ticks == [lo, hi]:
        return  # no two round values inside: the ends
    for t in ticks:  # m x 10^e, m in 1..9
        e = math.floor(math.log10(t) + 1e-9)
        assert abs(t / 10 ** e - round(t / 10 ** e)) < 1e-9
    gaps = [math.log(b / a) / math.log(hi / lo) * PLOTLY_AREA[0]
            for a, b in itertools.pairwise(ticks)]
    widest = max(len(f"{t:,.0f}") for t in ticks) * PLOTLY_CHAR[0]
    powers = all(abs(math.log10(t) - round(math.log10(t))) < 1e-9 for t in ticks)
    assert powers or all(g >= widest for g in gaps)  # labels apart, or nothing sparser exists


def test_plotly_places_never_overlap_and_stay_inside() -> None:
    """Brute force over crowded layouts: many points on top of each other get one label per
    free side at most, and every placed box is inside the axes and apart from the others."""
    from studies.frontpoints import Point
    from studies.labels import PLOTLY_AREA, PLOTLY_CHAR, SIDES, plotly_places

    def point(i: int, x: float, y: float) -> Point:
        return Point(key=f"c{i}", label=f"#{i} S32/h4/double", status="front", kind="external",
                     color="double", x=x, y=y, x_interval=None, y_interval=None, noisy=False,
                     rank=float(i), hover=f"#{i}")

    rng = np.random.default_rng(7)
    for crowd in (1, 5, 30):
        pts = [point(i, float(rng.uniform(1e4, 1.2e4)), float(rng.uniform(0.90, 0.91)))
               for i in range(crowd)]
        limits = ((1e4, 1e5), (0.8, 1.0))
        places = plotly_places(pts, limits, log_x=True)
        assert pts[0].key in places  # the most wanted label always gets a side
        assert len(places) <= len(SIDES) * 2 or crowd == 1
        boxes = []
        for p in pts:
            if p.key not in places:
                continue
            fx = (np.log(p.x) - np.log(1e4)) / (np.log(1e5) - np.log(1e4)) * PLOTLY_AREA[0]
            fy = (p.y - 0.8) / 0.2 * PLOTLY_AREA[1]
            dx, dy = SIDES[places[p.key]]
            w, h = PLOTLY_CHAR[0] * len(p.label), PLOTLY_CHAR[1]
            x0, y0 = fx - w / 2 + dx * (w / 2 + 6), fy - h / 2 + dy * (h / 2 + 5)
            boxes.append((x0, y0, x0 + w, y0 + h))
        for i, a in enumerate(boxes):
            assert a[0] >= 0 and a[1] >= 0 and a[2] <= PLOTLY_AREA[0] and a[3] <= PLOTLY_AREA[1]
            for b in boxes[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
