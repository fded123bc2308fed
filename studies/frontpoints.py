"""What a plot of accuracy against throughput shows, before any drawing library is involved.

Two views of a study share one drawing (:mod:`studies.frontpng` draws it with matplotlib,
:mod:`studies.fronthtml` with plotly):

- the front over *configurations* (``explore study plot``, ``configured_png``,
  ``front_figure``): each configuration one point at its mean accuracy and geometric-mean
  throughput, its 95% interval as error bars on both axes, throughput on a log axis. The plausible
  front (P(Pareto-optimal) >= 0.5) is filled and joined, undecided configurations are hollow, the
  confidently dominated grey. While no configuration has two runs the noise is unknown: no bars,
  and the subtitle and the legend say so. Each run (trial) is a faint dot behind its
  configuration when there are replicates.
- the observed front over single trials (``front_png``, Optuna's ``best_trials``): the
  Pareto-optimal trials filled and joined, the others grey.

In both, colour is the variant (double-normalized EA, softmax EA, self-attention), the marker the
attention kind (circle external, triangle self), and a red ring marks a throughput measurement
flagged noisy (spread > 10%). Labels (``#5 S32/h8/double``: the first trial, the design, ``×3``
runs) go on the front and on at most :data:`MAX_OTHER_LABELS` others, each where it stays inside
the axes and overlaps no other label; one that finds no room is left out and the subtitle says
how many. Throughput and hypervolume axes print thousands separators.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from studies.catalog import Front
from studies.record import ATTR_THROUGHPUT, StudyMeta, TrialRecord, design
from studies.replicates import ConfiguredFront, configured_front, front_settings, front_tolerance

__all__ = ["COLORS", "GREY", "MAX_OTHER_LABELS", "NOISY", "NOISY_SPREAD", "STUDY_COLORS",
           "VARIANT_NAMES", "LegendKey", "Point", "Run", "View", "axis_limits", "compare_title",
           "compare_views", "config", "configured_of", "configured_view", "is_noisy", "kind_keys",
           "label", "labelled", "legend_keys", "log_throughput", "note_keys", "observed_view",
           "plottable", "study_colors", "trial_label", "variant"]

GREY = "#b3b3b3"
NOISY = "#d62728"
COLORS = {"double": "#1f77b4", "softmax": "#ff7f0e", "self": "#2ca02c", "other": "#9467bd"}
VARIANT_NAMES = {"double": "EA, double normalization", "softmax": "EA, softmax",
                 "self": "self-attention", "other": "EA, other normalization"}
STUDY_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                "#17becf"]
MAX_OTHER_LABELS = 3  # labels beyond the front: the most promising of the others
NOISY_SPREAD = 0.10  # a measurement's spread above this is noisy (as explore.engine.measure)
_NOISY_TEXT = f"noisy throughput (spread > {NOISY_SPREAD:.0%})"


# ---- what a point is ---------------------------------------------------------------------------


def config(t: TrialRecord) -> dict[str, Any]:
    """The trial's model config (stored user attr) overlaid with its searched params."""
    stored = t.user_attrs.get("model_config")
    return {**(stored if isinstance(stored, dict) else {}), **t.params}


def variant(t: TrialRecord) -> tuple[str, str]:
    """``(attention kind, colour key)``: ("external", "double"), ("self", "self"), …"""
    cfg = config(t)
    kind = str(cfg.get("attention", "external"))
    if kind == "self":
        return "self", "self"
    norm = str(cfg.get("norm", ""))
    return kind, norm if norm in COLORS else "other"


def label(t: TrialRecord) -> str:
    """The design in a few characters: ``S64/h4/double``, ``SA/h4``."""
    return design(config(t))


def trial_label(t: TrialRecord) -> str:
    """``#5 S32/h8/double``: the trial number and its design."""
    return f"#{t.number} {label(t)}"


def is_noisy(t: TrialRecord) -> bool:
    """Whether the trial's throughput measurement was flagged noisy (or spread above 10%)."""
    figure = t.user_attrs.get(ATTR_THROUGHPUT)
    if not isinstance(figure, dict):
        return False
    if "noisy" in figure:
        return bool(figure["noisy"])
    spread = figure.get("spread")
    return isinstance(spread, (int, float)) and spread > NOISY_SPREAD


def plottable(t: TrialRecord) -> bool:
    """COMPLETE with a finite accuracy and a positive finite throughput."""
    return (t.state == "COMPLETE" and t.values is not None and len(t.values) >= 2
            and math.isfinite(t.values[0]) and math.isfinite(t.values[1]) and t.values[1] > 0)


@dataclass(frozen=True)
class Point:
    """One marker: a configuration (its means) or a trial."""

    key: str
    label: str
    status: str  # front, undecided or dominated
    kind: str  # attention kind: external, self
    color: str  # colour key of COLORS
    x: float  # throughput
    y: float  # accuracy
    x_interval: tuple[float, float] | None
    y_interval: tuple[float, float] | None
    noisy: bool
    rank: float  # lower: more worth a label among the non-front points
    hover: str


@dataclass(frozen=True)
class Run:
    """One replicate drawn faintly behind its configuration."""

    x: float
    y: float
    hover: str


@dataclass(frozen=True)
class View:
    """Everything one study contributes to a plot."""

    name: str
    points: list[Point]
    runs: list[Run]  # empty when every configuration has one run (they would coincide)
    observed: bool  # single trials (True) or configurations
    known: bool  # intervals exist (the noise is known)
    subtitle: str
    hypervolume: float | None = None  # of the front (configuration means), accuracy × img/s
    confidence: float = 0.95  # level of the intervals

    @property
    def front(self) -> list[Point]:
        return sorted((p for p in self.points if p.status == "front"), key=lambda p: p.x)


def _params_text(params: dict[str, Any]) -> str:
    return "<br>".join(f"{k}={v}" for k, v in sorted(params.items()))


def _hover(t: TrialRecord, read: float | None = None) -> str:
    """A trial's hover text; ``read``: its throughput as the noise-aware front reads it, when
    that is not the measured figure (timed against the reference)."""
    assert t.values is not None
    noisy = "<br>throughput flagged noisy" if is_noisy(t) else ""
    speed = f"{t.values[1]:,.0f} img/s"
    if read is not None and read != t.values[1]:
        speed = f"{read:,.0f} img/s against the reference ({t.values[1]:,.0f} measured)"
    return (f"trial {t.number}: {label(t)}<br>accuracy {t.values[0]:.4f}<br>"
            f"{speed}{noisy}<br>{_params_text(t.params)}")


def _dominators(values: Sequence[tuple[float, float]]) -> list[int]:
    """How many points beat each point in both objectives (0 on the front)."""
    return [sum(1 for b in values if b[0] >= a[0] and b[1] >= a[1] and b != a) for a in values]


def observed_view(front: Front) -> View:
    """Optuna's observed front: each plottable trial a point, no intervals."""
    trials = [t for t in front.trials if plottable(t)]
    values = [(t.values[0], t.values[1]) for t in trials if t.values is not None]
    beaten = _dominators(values)
    points = []
    for t, (acc, thr), n in zip(trials, values, beaten, strict=True):
        kind, color = variant(t)
        points.append(Point(str(t.number), trial_label(t),
                            "front" if t.number in front.pareto else "dominated", kind, color,
                            thr, acc, None, None, is_noisy(t),
                            n - acc,  # the least beaten first; then the most accurate
                            _hover(t)))
    subtitle = (f"{len(front.pareto)} Pareto-optimal of {len(trials)} trials, each a single run "
                "(Optuna's observed front)")
    return View(front.study.name, points, [], True, False, subtitle)


def _interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


def _status(cf: ConfiguredFront, key: str) -> str:
    if key in cf.front.plausible:
        return "front"
    return "dominated" if key in cf.front.dominated else "undecided"


def _config_hover(cf: ConfiguredFront, key: str, text: str) -> str:
    e = cf.estimate(key)
    level = f"{cf.front.noise.confidence:.0%}"
    acc = f"accuracy {e.accuracy.mean:.4f}"
    thr = f"{e.throughput.mean:,.0f} img/s"
    if e.accuracy.low is not None and e.accuracy.high is not None:
        acc += f" [{e.accuracy.low:.4f}, {e.accuracy.high:.4f}] ({level})"
    if e.throughput.low is not None and e.throughput.high is not None:
        thr += f" [{e.throughput.low:,.0f}, {e.throughput.high:,.0f}]"
    status = {"front": "plausible front", "undecided": "undecided",
              "dominated": "confidently dominated"}[_status(cf, key)]
    c = cf.config(key)
    runs = ", ".join(f"#{t.number}" for t in c.trials)
    return (f"{text}<br>{e.n} run(s): trials {runs}<br>{acc}<br>{thr}<br>"
            f"P(Pareto-optimal) {cf.front.probability[key]:.2f}: {status}<br>"
            f"{_params_text(c.params)}")


def _noise_text(cf: ConfiguredFront) -> str:
    noise = cf.front.noise
    if not noise.known:
        return ("one run per configuration: the noise is unknown, so no error bars "
                "(means are single runs)")
    sd = noise.accuracy_sd or 0.0
    spread = math.expm1(noise.log_throughput_sd or 0.0)
    return (f"bars: {noise.confidence:.0%} intervals of the means; noise per run, pooled over "
            f"{noise.df} df: accuracy sd {sd:.3f}, img/s ±{spread:.0%}")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def configured_view(cf: ConfiguredFront, name: str) -> View:
    """Each configuration a point at its means with intervals; its runs behind it when any
    configuration has replicates."""
    points = []
    runs: list[Run] = []
    replicated = cf.replicates > len(cf.configs)
    for c in cf.configs:
        e = cf.estimate(c.key)
        first = c.trials[0]
        kind, color = variant(first)
        text = trial_label(first) + (f" ×{e.n}" if e.n > 1 else "")
        points.append(Point(
            c.key, text, _status(cf, c.key), kind, color, e.throughput.mean, e.accuracy.mean,
            _interval(e.throughput.low, e.throughput.high),
            _interval(e.accuracy.low, e.accuracy.high),
            2 * sum(is_noisy(t) for t in c.trials) > len(c.trials),
            1.0 - cf.front.probability[c.key], _config_hover(cf, c.key, text)))
        if replicated:  # each run where the front reads it (against the reference, if any)
            runs += [Run(throughput, t.values[0], _hover(t, throughput))
                     for t, throughput in zip(c.trials, c.throughputs, strict=True)
                     if t.values is not None]
    plausible = len(cf.front.plausible)
    subtitle = (f"{plausible} plausible of {_plural(len(cf.configs), 'configuration')}, "
                f"{_plural(cf.replicates, 'run')}\n{_noise_text(cf)}")
    return View(name, points, runs, False, cf.front.noise.known, subtitle,
                cf.front.hypervolume, cf.front.noise.confidence)


def _as_record(t: Any) -> TrialRecord:
    """A :class:`TrialRecord` from itself or from an Optuna ``FrozenTrial``."""
    if isinstance(t, TrialRecord):
        return t
    state = getattr(t.state, "name", str(t.state))
    values = tuple(t.values) if state == "COMPLETE" and t.values else None
    return TrialRecord(t.number, state, values, dict(t.params), dict(t.user_attrs),
                       t.datetime_start, t.datetime_complete, getattr(t, "_trial_id", -1))


def configured_of(trials: Iterable[Any], meta: StudyMeta | None, confidence: float | None,
                  configured: ConfiguredFront | None) -> ConfiguredFront:
    """``configured``, or else the front over configurations of the plottable ``trials`` at
    ``confidence`` (the study's stored level and seed when ``None``)."""
    if configured is not None:
        return configured
    settings = meta.settings if meta is not None else None
    level, seed = front_settings(settings)
    usable = [r for r in (_as_record(t) for t in trials) if plottable(r)]
    return configured_front(usable, level if confidence is None else confidence, seed,
                            tolerance=front_tolerance(settings))


def _view_of(front: Front, configured: ConfiguredFront | None = None) -> View:
    cf = configured_of(front.trials, front.study, None, configured)
    return configured_view(cf, front.study.name)


def labelled(view: View, others: int = MAX_OTHER_LABELS) -> list[Point]:
    """The front (slow to fast), then the ``others`` most promising of the rest."""
    rest = sorted((p for p in view.points if p.status == "undecided"
                   or (view.observed and p.status == "dominated")), key=lambda p: p.rank)
    return view.front + rest[:others]



# ---- the axes' ranges --------------------------------------------------------------------------


def _extent(values: Iterable[float], empty: tuple[float, float]) -> tuple[float, float]:
    got = list(values)
    return (min(got), max(got)) if got else empty


def axis_limits(views: Sequence[View]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) ranges covering every point, interval and run."""
    xs: list[float] = []
    ys: list[float] = []
    for v in views:
        for p in v.points:
            xs += [p.x, *(p.x_interval or ())]
            ys += [p.y, *(p.y_interval or ())]
        xs += [r.x for r in v.runs]
        ys += [r.y for r in v.runs]
    return _extent((x for x in xs if x > 0), (1.0, 10.0)), _extent(ys, (0.0, 1.0))


def log_throughput(views: Sequence[View]) -> bool:
    """Throughput on a log axis: over configurations (intervals are multiplicative), or where
    the trials span more than 10x."""
    (x_lo, x_hi), _ = axis_limits(views)
    return not all(v.observed for v in views) or x_hi / x_lo > 10


# ---- the legend --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegendKey:
    """One legend entry, drawn alike by matplotlib and plotly."""

    text: str
    marker: str = "o"  # "o", "^" or "" (text only)
    face: str = "#666666"
    edge: str = "black"
    size: float = 7.0
    line: bool = False  # the joining line
    bar: bool = False  # an error bar instead of a marker


def _status_keys(views: Sequence[View], colors: Sequence[str | None]) -> list[LegendKey]:
    statuses = {p.status for v in views for p in v.points}
    observed = all(v.observed for v in views)
    keys = []
    if colors[0] is None:
        keys.append(LegendKey("Pareto-optimal trials, joined" if observed else
                              "plausible front (P(Pareto-optimal) ≥ 0.5), joined",
                              face="#444444", edge="#444444", line=True))
    else:  # one entry per study in a comparison
        for v, color in zip(views, colors, strict=True):
            hv = f", HV {v.hypervolume:,.0f}" if v.hypervolume is not None else ""
            keys.append(LegendKey(f"{v.name}: plausible front{hv}", face=color or "#444444",
                                  edge=color or "#444444", line=True))
    if "undecided" in statuses:
        keys.append(LegendKey("undecided", face="white", edge="#444444"))
    if "dominated" in statuses:
        keys.append(LegendKey("dominated trials" if observed else
                              f"confidently dominated (P ≤ {1 - views[0].confidence:.0%})",
                              face=GREY, edge=GREY, size=5.0))
    return keys


def kind_keys(views: Sequence[View], per_study: bool) -> list[LegendKey]:
    """Colours of the variants (one study) or the markers of the attention kinds (several)."""
    points = [p for v in views for p in v.points]
    if not per_study:
        return [LegendKey(VARIANT_NAMES[key], "^" if key == "self" else "o", COLORS[key],
                          COLORS[key])
                for key in sorted({p.color for p in points}, key=list(COLORS).index)]
    if any(p.kind == "self" for p in points):
        return [LegendKey("external attention", face="white", edge="#444444"),
                LegendKey("self-attention", "^", face="white", edge="#444444")]
    return []


def note_keys(views: Sequence[View]) -> list[LegendKey]:
    """Noisy rings, faint runs, error bars or their absence."""
    observed = all(v.observed for v in views)
    keys = []
    if any(p.noisy for v in views for p in v.points):
        keys.append(LegendKey(_NOISY_TEXT if observed else _NOISY_TEXT + " in most runs",
                              face="none", edge=NOISY, size=10.0))
    if any(v.runs for v in views):
        keys.append(LegendKey("single runs (replicates)", face="#555555", edge="#555555",
                              size=3.5))
    if any(v.known for v in views):
        keys.append(LegendKey(f"{views[0].confidence:.0%} interval of the mean",
                              edge="#333333", bar=True))
    elif not observed:
        keys.append(LegendKey("one run each: noise unknown, no bars", marker=""))
    return keys


def legend_keys(views: Sequence[View], colors: Sequence[str | None]) -> list[LegendKey]:
    """The statuses (or the studies), the variants (or the kinds), then the notes."""
    return (_status_keys(views, colors) + kind_keys(views, colors[0] is not None)
            + note_keys(views))


# ---- several studies ---------------------------------------------------------------------------


def compare_title(fronts: Sequence[Front]) -> str:
    names = ", ".join(f"'{f.study.name}'" for f in fronts)
    return f"Fronts of {len(fronts)} studies: {names}"


def compare_views(fronts: Sequence[Front], configured: Sequence[ConfiguredFront] | None
                  ) -> list[View]:
    """Each study's view over configurations (``configured``: their fronts, if computed)."""
    if configured is None:
        return [_view_of(f) for f in fronts]
    return [_view_of(f, c) for f, c in zip(fronts, configured, strict=True)]


def study_colors(count: int) -> list[str | None]:
    """The colours of ``count`` compared studies, in turn."""
    return [STUDY_COLORS[i % len(STUDY_COLORS)] for i in range(count)]
