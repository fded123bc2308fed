"""The sentences of a finding: one per effect, claiming a difference or a trend only when its
interval excludes 0, and saying what it is about (the measured pairs, or the space's).

Numbers get the decimals their size needs; minus signs are U+2212. Accuracy effects are shown in
points (x100), throughput effects as ratios ("1.12x as fast").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from studies.effects import Effect, Trend

__all__ = ["trend_verdict", "verdict"]


def _decimals(values: Sequence[float]) -> int:
    """Enough decimals (1 to 3) to tell the values apart, or to show a lone value."""
    width = max(values) - min(values) or max(abs(v) for v in values)
    return 1 if width >= 0.2 else 2 if width >= 0.02 else 3


def _fmt(values: Sequence[float], signed: bool = False, decimals: int | None = None) -> list[str]:
    """Numbers with ``decimals`` (default: :func:`_decimals`), minus signs as U+2212."""
    d = _decimals(values) if decimals is None else decimals
    out = [f"{v:+.{d}f}" if signed else f"{v:.{d}f}" for v in values]
    return [s.replace("-", "\u2212") for s in out]


def _ratios(values: Sequence[float]) -> list[str]:
    """Ratios: at least two decimals (1.12x)."""
    return _fmt(values, decimals=max(2, _decimals(values)))


def _scale(unit: str) -> float:
    return 100.0 if unit == "points" else 1.0


def _too_few(effect: Effect, a: str, b: str, unit: str) -> str:
    if effect.log:
        shown = f"\u00d7{math.exp(effect.mean):.2f}"
    else:
        shown = f"{_fmt([effect.mean * _scale(unit)], signed=True)[0]} {unit}".rstrip()
    return (f"too few data: {a} vs {b} is {shown} from {effect.pairs} pair(s) and "
            f"{effect.differences} paired replicate(s), no interval (needs 2+ pairs or 2+ "
            "shared replicates)")


def _over(effect: Effect, noun: str, word: str = "over") -> str:
    """What a ``"measured"`` effect is about ("over the 3 pairs measured"); "" for the space."""
    if effect.scope != "measured":
        return ""
    if effect.pairs == 1:
        return f" {word} the one {noun} measured"
    return f" {word} the {effect.pairs} {noun}s measured"


def _speed_verdict(effect: Effect, a: str, b: str) -> str:
    assert effect.low is not None and effect.high is not None
    over = _over(effect, "pair")
    if effect.low > 0 or effect.high < 0:
        faster, slower, sign = (a, b, 1.0) if effect.low > 0 else (b, a, -1.0)
        ends = sorted(math.exp(sign * x) for x in (effect.low, effect.high))
        mean, low, high = _ratios([math.exp(sign * effect.mean), *ends])
        return f"{faster} is {mean}x as fast as {slower}{over} [{low}, {high}]"
    low, high = _ratios([math.exp(effect.low), math.exp(effect.high)])
    return (f"no throughput difference detectable between {a} and {b}{over}: "
            f"\u00d7[{low}, {high}]")


def verdict(effect: Effect, a: str, b: str, unit: str = "points") -> str:
    """One sentence on "a vs b" that claims a difference only when the interval excludes 0.

    Args:
        effect: from :func:`paired_effect` (a minus b).
        a: name of side a ("double").
        b: name of side b ("softmax").
        unit: "points" shows accuracy differences x100; any other unit shows them as they are.
            Ignored for a log (throughput) effect, which is shown as a ratio.
    """
    if effect.low is None or effect.high is None:
        return _too_few(effect, a, b, unit)
    if effect.log:
        return _speed_verdict(effect, a, b)
    k = _scale(unit)
    over = _over(effect, "pair")
    if effect.low > 0 or effect.high < 0:
        better, worse, sign = (a, b, k) if effect.low > 0 else (b, a, -k)
        ends = sorted(sign * x for x in (effect.low, effect.high))
        mean, low, high = _fmt([sign * effect.mean, *ends])
        return f"{better} is {mean} {unit} more accurate than {worse}{over} [{low}, {high}]"
    ends = [k * effect.low, k * effect.high]
    low, high = _fmt(ends, signed=True)
    text = f"no difference detectable between {a} and {b}{over}: [{low}, {high}] {unit}"
    if effect.detectable is not None:
        shown = _fmt([k * effect.detectable], decimals=_decimals(ends))[0]
        text += f" (80% power for \u00b1{shown} {unit})"
    return text


def trend_verdict(result: Trend, factor: str, unit: str = "points") -> str:
    """One sentence on the trend over ``factor``, claimed only when its interval excludes 0."""
    e = result.per_doubling
    if e.low is None or e.high is None:
        return (f"too few data for a trend over {factor}: {e.pairs} group(s), "
                f"{e.differences} per-replicate slope(s), no interval")
    over = _over(e, "group", "in")
    if e.log:
        mean, low, high = _ratios([math.exp(e.mean), math.exp(e.low), math.exp(e.high)])
        if e.low > 0 or e.high < 0:
            return (f"throughput changes \u00d7{mean} per doubling of {factor}{over} "
                    f"[{low}, {high}]")
        return (f"no throughput trend detectable over {factor}{over}: \u00d7[{low}, {high}] "
                "per doubling")
    k = _scale(unit)
    if e.low > 0 or e.high < 0:
        word = "rises" if e.low > 0 else "falls"
        s = 1.0 if e.low > 0 else -1.0
        mean, low, high = _fmt([s * k * e.mean, *sorted([s * k * e.low, s * k * e.high])])
        return f"accuracy {word} {mean} {unit} per doubling of {factor}{over} [{low}, {high}]"
    low, high = _fmt([k * e.low, k * e.high], signed=True)
    return f"no trend detectable over {factor}{over}: [{low}, {high}] {unit} per doubling"
