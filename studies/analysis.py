"""The questions the paper raises, answered over configurations and their replicates, with
confidence (pure Python apart from the front's draws; no torch).

- Double normalization vs plain softmax, and external vs self-attention: configurations paired by
  equal everything-else (for EA vs SA also ignoring S and norm, which self-attention has not);
  the paired effect of :func:`studies.effects.paired_effect` (replicate r of both sides shares its
  seed), on accuracy in points and on throughput as a ratio, each with its interval.
- Memory size S and heads: the change per doubling (:func:`studies.effects.trend`) within groups
  of configurations equal except that factor, and per value the mean over those configurations.

A difference or a trend is claimed only when its interval excludes 0. Every question also states
the power of the study: the smallest effect it could detect, and how many seeds per pair would
resolve 0.2 points (the paper's scale). While every configuration has one run the seed noise is
unknown: nothing is claimed, the observed numbers are shown as such (a t interval over single-run
pairs could be formed, but its seed part cannot be told from the pairs' real differences and no
power can be given; the report waits for replicates).

Only COMPLETE trials count, each experiment once (see :mod:`studies.replicates`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from studies.confidence import Estimate, NoiseModel
from studies.effects import (
    Effect,
    Noise,
    Trend,
    measured_effect,
    measured_trend,
    paired_effect,
    trend,
)
from studies.record import TrialRecord
from studies.replicates import (
    Configuration,
    ConfiguredFront,
    configured_front,
    replicate_of,
)
from studies.verdicts import trend_verdict, verdict

__all__ = ["RESOLVE", "Findings", "KindStats", "Level", "Question", "analyze", "finding_lines"]

RESOLVE = 0.002  # the accuracy difference the power line sizes seeds for: 0.2 points
UNKNOWN = ("the seed noise is unknown (every configuration has one run): no interval, nothing "
           "claimed")
REPLICATE_HINT = ("replicates (`[study] replicates = 2` or `\"race\"`) would measure the seed "
                  "noise")

Key = tuple[tuple[str, str], ...]
Runs = dict[int, float]  # replicate index -> value


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One value of a numeric factor over the configurations that have it (in a usable group).

    Attributes:
        value: the factor's value (S = 32).
        configs: configurations with this value.
        runs: their replicates in all.
        accuracy: mean over those configurations of their mean accuracy, with its interval.
        throughput: the same for img/s (geometric means).
    """

    value: float
    configs: int
    runs: int
    accuracy: Estimate
    throughput: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "configs": self.configs, "runs": self.runs,
                "accuracy": self.accuracy.to_dict(), "throughput": self.throughput.to_dict()}


@dataclass(frozen=True)
class Question:
    """One of the paper's questions and what the study can say about it.

    Attributes:
        title: "Double normalization vs softmax".
        verdict: the accuracy sentence, phrased from the interval ("double is 0.4 points more
            accurate than softmax [0.1, 0.7]"), or why nothing can be said.
        throughput: the throughput sentence (a ratio with its interval); "" when none.
        details: further sentences: the probability that one is better, the power.
        kind: "paired" (a vs b: ``accuracy``/``throughput`` are a minus b) or "trend" (per
            doubling of the factor).
        a: side a of a paired question ("double"), or the factor of a trend ("S").
        b: side b ("softmax"); "" for a trend.
        accuracy: the accuracy effect the verdict is phrased from (accuracy units: 0.004 =
            0.4 points): over the measured pairs (groups) with the pooled seed noise
            (``scope="measured"``), or, while the noise is unknown, the observed one. None when
            the study has no pair (or group) to compute it from.
        speed: the throughput effect (a log-ratio), the same way.
        levels: per value of the factor (trends only).
        accuracy_space: the accuracy effect over the space's pairs (groups), the measured ones
            a sample of them (``scope="space"``, df = pairs - 1); None while the noise is
            unknown.
    """

    title: str
    verdict: str
    throughput: str = ""
    details: list[str] = field(default_factory=list)
    kind: str = "paired"
    a: str = ""
    b: str = ""
    accuracy: Effect | None = None
    speed: Effect | None = None
    levels: list[Level] = field(default_factory=list)
    accuracy_space: Effect | None = None

    @property
    def line(self) -> str:
        """The finding in one line: title, verdict and the throughput sentence."""
        text = f"{self.title}: {self.verdict}"
        return f"{text}; {self.throughput}" if self.throughput else text

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "verdict": self.verdict, "throughput": self.throughput,
                "details": list(self.details), "kind": self.kind, "a": self.a, "b": self.b,
                "accuracy": self.accuracy.to_dict() if self.accuracy else None,
                "speed": self.speed.to_dict() if self.speed else None,
                "levels": [lv.to_dict() for lv in self.levels],
                "accuracy_space": self.accuracy_space.to_dict() if self.accuracy_space else None}


@dataclass(frozen=True)
class KindStats:
    """Configurations of one attention kind."""

    kind: str
    configs: int
    runs: int
    plausible: int  # on the plausible front (P(front) >= 0.5)
    best_accuracy: Estimate  # the most accurate configuration's mean accuracy
    fastest: Estimate  # the fastest configuration's geometric-mean img/s

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "configs": self.configs, "runs": self.runs,
                "plausible": self.plausible, "best_accuracy": self.best_accuracy.to_dict(),
                "fastest": self.fastest.to_dict()}


@dataclass(frozen=True)
class Findings:
    """The answers for one study.

    Attributes:
        configs: configurations with at least one COMPLETE run.
        runs: their runs (replicates), repeats of an evaluated experiment left out.
        duplicates: COMPLETE trials left out as repeats.
        noise_known: whether some configuration has 2+ runs (else nothing is claimed).
        confidence: level of every interval.
        norm, mem_size, heads, attention: the four questions.
        kinds: per attention kind.
    """

    configs: int
    runs: int
    duplicates: int
    noise_known: bool
    confidence: float
    norm: Question
    mem_size: Question
    heads: Question
    attention: Question
    kinds: list[KindStats]

    @property
    def questions(self) -> list[Question]:
        return [self.norm, self.mem_size, self.heads, self.attention]

    def to_dict(self) -> dict[str, Any]:
        return {"configs": self.configs, "runs": self.runs, "duplicates": self.duplicates,
                "noise_known": self.noise_known, "confidence": self.confidence,
                "norm": self.norm.to_dict(), "mem_size": self.mem_size.to_dict(),
                "heads": self.heads.to_dict(), "attention": self.attention.to_dict(),
                "kinds": [k.to_dict() for k in self.kinds]}


# ---- grouping configurations into pairs and groups -------------------------------------------


def _attention(c: Configuration) -> str:
    return str(c.model_config.get("attention", "external"))


def _key(config: dict[str, Any], drop: Iterable[str]) -> Key:
    skip = set(drop)
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in skip))


def _runs(configs: Sequence[Configuration], objective: int) -> Runs:
    """Replicate index -> value. Configurations that fall in one cell (EA of several S against
    one SA) are averaged per index: arithmetic for accuracy, geometric for throughput."""
    by_index: dict[int, list[float]] = {}
    for c in configs:
        for t, throughput in zip(c.trials, c.throughputs, strict=True):
            assert t.values is not None
            value = float(t.values[0]) if objective == 0 else throughput  # as the front reads it
            by_index.setdefault(replicate_of(t), []).append(value)
    if objective == 0:
        return {i: math.fsum(v) / len(v) for i, v in by_index.items()}
    return {i: math.exp(math.fsum(math.log(x) for x in v) / len(v))
            for i, v in by_index.items()}


def _pairs(configs: Sequence[Configuration], factor: str, a: Any, b: Any,
           ignore: Iterable[str] = ()) -> list[tuple[list[Configuration], list[Configuration]]]:
    """Cells of configurations equal except ``factor`` (and ``ignore``) with both sides."""
    cells: dict[Key, tuple[list[Configuration], list[Configuration]]] = {}
    for c in configs:
        value = c.model_config.get(factor)
        if value in (a, b):
            cell = cells.setdefault(_key(c.model_config, {factor, *ignore}), ([], []))
            cell[0 if value == a else 1].append(c)
    return [cell for cell in cells.values() if cell[0] and cell[1]]


def _level(c: Configuration, factor: str) -> float | None:
    """The configuration's value of a numeric factor (> 0), or None."""
    value = c.model_config.get(factor)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _groups(configs: Sequence[Configuration], factor: str
            ) -> list[dict[float, list[Configuration]]]:
    """Groups of configurations equal except ``factor``, by value, with 2+ values."""
    groups: dict[Key, dict[float, list[Configuration]]] = {}
    for c in configs:
        value = _level(c, factor)
        if value is not None:
            group = groups.setdefault(_key(c.model_config, {factor}), {})
            group.setdefault(value, []).append(c)
    return [g for g in groups.values() if len(g) >= 2]


# ---- sentences -------------------------------------------------------------------------------


def _num(points: float) -> str:
    """A number of points (or percent) with the decimals its size needs, minus as U+2212."""
    text = f"{points:.1f}" if abs(points) >= 0.95 else f"{points:.2f}"
    if len(text) > 3 and text.endswith("0") and abs(points) < 0.95:
        text = text[:-1]  # 0.20 -> 0.2, but 0.15 stays
    return text.replace("-", "\u2212")


def _signed(points: float) -> str:
    return ("+" if points >= 0 else "") + _num(points)


def _seeds_now(e: Effect) -> str:
    now = e.differences / e.pairs
    return f"{now:.0f}" if now == int(now) else f"{now:.1f}"


def _power(e: Effect, unit: str, per: str, units: str) -> list[str]:
    """What the study could detect, and the seeds (or pairs) that would resolve RESOLVE.

    Args:
        e: the effect.
        unit: "points" or "points per doubling".
        per: what seeds are counted per: "pair" or "configuration".
        units: what the interval is over: "pairs" or "groups".
    """
    if e.detectable is None:
        return [f"power: unknown until there is an interval (2+ {units}, or one with 2+ runs "
                "sharing seeds on each side)"]
    out = [f"power: the smallest difference this study could detect (80% power, "
           f"{e.confidence:.0%} interval) is \u00b1{_num(100 * e.detectable)} {unit}"]
    target = f"{_num(100 * RESOLVE)} {unit}"
    seeds = e.seeds_needed(RESOLVE)
    if seeds is not None:
        plural = "s" if seeds > 1 else ""
        out.append(f"resolving {target} would need {seeds} seed{plural} per {per} (this study "
                   f"has {_seeds_now(e)})")
    elif e.within_var is None:
        out.append(f"the seeds per {per} that would resolve {target} are unknown: no {per} has "
                   "two runs with shared seeds")
    else:
        m = max(2, round(e.differences / e.pairs))
        more = f"more seeds alone cannot resolve {target}: the effect differs between {units}"
        needed = e.pairs_needed(RESOLVE, seeds=m)
        out.append(more + (f"; about {needed} {units} of {m} seeds each would resolve it"
                           if needed is not None else ""))
    return out


def _p_better(e: Effect, a: str, b: str, what: str) -> str:
    assert e.p_better is not None
    return f"P({a} {what} than {b}) = {e.p_better:.2f}"


def _observed_pair(acc: Effect, speed: Effect, a: str, b: str) -> str:
    ratio = math.exp(speed.mean)
    return (f"{UNKNOWN}; observed {a} \u2212 {b}: {_signed(100 * acc.mean)} points, img/s "
            f"\u00d7{ratio:.2f}, over {acc.pairs} pair(s)")


# ---- the questions ---------------------------------------------------------------------------


def _noises(noise: NoiseModel) -> tuple[Noise, Noise] | None:
    """The pooled seed noise of accuracy and of log throughput, when known."""
    if not noise.known or noise.accuracy_sd is None or noise.log_throughput_sd is None:
        return None
    df = noise.df if noise.source == "pooled" else math.inf
    return Noise(noise.accuracy_sd, df), Noise(noise.log_throughput_sd, df)


def _space_line(e: Effect, unit: str, units: str) -> list[str]:
    """The interval that generalises beyond the measured pairs (groups), as one detail."""
    if e.low is None or e.high is None or e.pairs < 2:
        return []
    return [f"over the space's {units}, of which these {e.pairs} are a sample (the effect may "
            f"differ between {units}; t over {e.pairs} {units}): "
            f"[{_signed(100 * e.low)}, {_signed(100 * e.high)}] {unit}"]


def _compare(configs: Sequence[Configuration], title: str, factor: str,
             sides: tuple[Any, Any, str, str], noise: NoiseModel, confidence: float,
             ignore: Iterable[str] = ()) -> Question:
    a, b, a_name, b_name = sides
    cells = _pairs(configs, factor, a, b, ignore)
    if not cells:
        return Question(title, f"no pairs: no two configurations differ only in {a_name} vs "
                        f"{b_name}, so the study cannot answer this", a=a_name, b=b_name)
    acc_data = {i: (_runs(x, 0), _runs(y, 0)) for i, (x, y) in enumerate(cells)}
    speed_data = {i: (_runs(x, 1), _runs(y, 1)) for i, (x, y) in enumerate(cells)}
    space = paired_effect(acc_data, confidence)
    noises = _noises(noise)
    if noises is None:
        speed = paired_effect(speed_data, confidence, log=True)
        return Question(title, _observed_pair(space, speed, a_name, b_name), a=a_name,
                        b=b_name, accuracy=space, speed=speed)
    acc = measured_effect(acc_data, noises[0], confidence)
    speed = measured_effect(speed_data, noises[1], confidence, log=True)
    details = [_p_better(acc, a_name, b_name, "is more accurate"),
               _p_better(speed, a_name, b_name, "is faster")]
    details += _power(acc, "points", "pair", "pairs")
    details += _space_line(space, "points", "pairs")
    return Question(title, verdict(acc, a_name, b_name), verdict(speed, a_name, b_name),
                    details, "paired", a_name, b_name, acc, speed, accuracy_space=space)


def _levels(groups: Sequence[dict[float, list[Configuration]]], confidence: float,
            noises: tuple[Noise, Noise] | None) -> tuple[Trend, Trend, list[Level]]:
    """Both trends over the groups (over exactly these groups when the noise is known) and the
    levels they share."""
    acc_data = {i: {v: _runs(cs, 0) for v, cs in g.items()} for i, g in enumerate(groups)}
    speed_data = {i: {v: _runs(cs, 1) for v, cs in g.items()} for i, g in enumerate(groups)}
    if noises is None:
        acc = trend(acc_data, confidence)
        speed = trend(speed_data, confidence, log=True)
    else:
        acc = measured_trend(acc_data, noises[0], confidence)
        speed = measured_trend(speed_data, noises[1], confidence, log=True)
    levels = []
    for x, y in zip(acc.levels, speed.levels, strict=True):
        here = [c for g in groups for c in g.get(x.value, [])]
        levels.append(Level(x.value, len(here), sum(len(c.trials) for c in here), x.estimate,
                            y.estimate))
    return acc, speed, levels


def _slope(configs: Sequence[Configuration], title: str, factor: str, label: str,
           noise: NoiseModel, confidence: float) -> Question:
    values = sorted({v for c in configs if (v := _level(c, factor)) is not None})
    if not values:
        return Question(title, f"no configuration records {label}: nothing to say about it",
                        kind="trend", a=label)
    if len(values) == 1:
        return Question(title, f"only {label} = {values[0]:g} was tried: no effect of {label} "
                        "can be read", kind="trend", a=label)
    groups = _groups(configs, factor)
    if not groups:
        return Question(title, f"no two configurations differ only in {label}: the study "
                        "cannot separate its effect from the other settings", kind="trend",
                        a=label)
    noises = _noises(noise)
    acc, speed, levels = _levels(groups, confidence, noises)
    e, s = acc.per_doubling, speed.per_doubling
    if noises is None:
        text = (f"{UNKNOWN}; observed per doubling of {label}: {_signed(100 * e.mean)} points, "
                f"img/s \u00d7{math.exp(s.mean):.2f}, over {e.pairs} group(s)")
        return Question(title, text, kind="trend", a=label, accuracy=e, speed=s, levels=levels)
    details = []
    if e.p_better is not None:
        details.append(f"P(accuracy rises with {label}) = {e.p_better:.2f}")
    details += _power(e, "points per doubling", "configuration", "groups")
    space = trend({i: {v: _runs(cs, 0) for v, cs in g.items()} for i, g in enumerate(groups)},
                  confidence).per_doubling
    details += _space_line(space, "points per doubling", "groups")
    # Without an accuracy interval there is none for throughput either: one sentence says so.
    speed_text = trend_verdict(speed, label) if e.known else ""
    return Question(title, trend_verdict(acc, label), speed_text, details, "trend", label, "",
                    e, s, levels, accuracy_space=space)


def _kinds(front: ConfiguredFront) -> list[KindStats]:
    out = []
    for kind in sorted({_attention(c) for c in front.configs}):
        group = [c for c in front.configs if _attention(c) == kind]
        ests = [front.estimate(c.key) for c in group]
        out.append(KindStats(
            kind, len(group), sum(e.n for e in ests),
            sum(c.key in front.front.plausible for c in group),
            max((e.accuracy for e in ests), key=lambda x: x.mean),
            max((e.throughput for e in ests), key=lambda x: x.mean)))
    return out


def _attention_question(configs: Sequence[Configuration], noise: NoiseModel,
                        confidence: float) -> Question:
    title = "External vs self-attention"
    kinds = {_attention(c) for c in configs}
    if {"external", "self"} <= kinds:
        return _compare(configs, title, "attention", ("external", "self", "EA", "SA"),
                        noise, confidence, ignore=("mem_size", "norm"))
    only = ", ".join(sorted(kinds)) or "no"
    return Question(title, f"only {only}-attention configurations completed: external and "
                    "self-attention cannot be compared from this study", a="EA", b="SA")


def _norm_question(configs: Sequence[Configuration], noise: NoiseModel,
                   confidence: float) -> Question:
    title = "Double normalization vs softmax"
    ea = [c for c in configs if _attention(c) == "external"]
    norms = {str(c.model_config.get("norm")) for c in ea}
    if not ea:
        return Question(title, "no external-attention configuration completed",
                        a="double", b="softmax")
    if not {"double", "softmax"} <= norms:
        return Question(title, f"only {', '.join(sorted(norms))} normalization was tried: the "
                        "study cannot compare double normalization with softmax",
                        a="double", b="softmax")
    return _compare(ea, title, "norm", ("double", "softmax", "double", "softmax"), noise,
                    confidence)


def analyze(trials: Sequence[TrialRecord], confidence: float = 0.95,
            front: ConfiguredFront | None = None) -> Findings:
    """All findings for one study's trials.

    Args:
        trials: the study's trials (any state; only COMPLETE non-duplicates count).
        confidence: level of every interval (the study's ``[study] confidence``).
        front: the noise-aware front of the same trials, when the caller has it already
            (:func:`studies.replicates.configured_front`); computed otherwise.
    """
    front = front or configured_front(trials, confidence)
    configs = front.configs
    noise = front.front.noise
    ea = [c for c in configs if _attention(c) == "external"]
    return Findings(
        configs=len(configs), runs=front.replicates,
        duplicates=sum(1 for t in trials if t.state == "COMPLETE" and t.is_duplicate),
        noise_known=noise.known, confidence=confidence,
        norm=_norm_question(configs, noise, confidence),
        mem_size=_slope(ea, "Memory size S", "mem_size", "S", noise, confidence),
        heads=_slope(configs, "Heads", "heads", "heads", noise, confidence),
        attention=_attention_question(configs, noise, confidence),
        kinds=_kinds(front))


def finding_lines(trials: Sequence[TrialRecord], confidence: float = 0.95) -> list[str]:
    """The findings as short plain lines, one per question (for a study note)."""
    return [q.line for q in analyze(trials, confidence).questions]
