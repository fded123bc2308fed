"""The questions the paper raises, answered from a study's trials (pure Python, no numpy).

- Double normalization vs plain softmax: trials paired by equal everything-but-``norm``; the mean
  accuracy difference, how many pairs favour each, and the throughput ratio.
- Memory size S and heads: per value, trials, mean and best accuracy, median throughput; and the
  Spearman rank correlation of the value with accuracy and with throughput.
- External vs self-attention (when both were searched): paired by equal settings other than the
  attention kind and its own fields (S, norm); plus per-kind summaries.

Only COMPLETE trials count, each experiment once (a duplicate repeats another trial's values).
Every finding carries a plain verdict, which says so when the data are too few to conclude.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from studies.record import TrialRecord

__all__ = ["FactorEffect", "Findings", "LevelStats", "Observation", "PairedEffect", "analyze",
           "observations", "spearman"]

MIN_PAIRS = 3  # fewer pairs than this: report the numbers, conclude nothing
MIN_TRIALS_TREND = 5  # fewer trials than this: no trend is claimed
CLEAR_RHO = 0.3  # |Spearman ρ| below this: "no clear trend"


@dataclass(frozen=True)
class Observation:
    number: int
    config: dict[str, Any]  # stored model config overlaid with the searched params
    accuracy: float
    throughput: float

    @property
    def attention(self) -> str:
        return str(self.config.get("attention", "external"))


def observations(trials: Iterable[TrialRecord]) -> list[Observation]:
    """COMPLETE trials with both values, duplicates of another trial left out."""
    out = []
    for t in trials:
        if t.state != "COMPLETE" or t.values is None or len(t.values) < 2 or t.is_duplicate:
            continue
        stored = t.user_attrs.get("model_config")
        config = {**(stored if isinstance(stored, dict) else {}), **t.params}
        out.append(Observation(t.number, config, float(t.values[0]), float(t.values[1])))
    return out


def _key(config: dict[str, Any], drop: Iterable[str]) -> tuple[tuple[str, str], ...]:
    skip = set(drop)
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in skip))


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


@dataclass(frozen=True)
class PairedEffect:
    """``a`` against ``b`` over pairs of trials equal in every other setting."""

    question: str
    a: str
    b: str
    pairs: int
    mean_accuracy_diff: float | None  # mean of (accuracy a − accuracy b), in accuracy units
    min_accuracy_diff: float | None
    max_accuracy_diff: float | None
    a_better: int  # pairs where a is more accurate
    b_better: int
    throughput_ratio: float | None  # geometric mean of throughput a / throughput b
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def paired(obs: Sequence[Observation], factor: str, a: Any, b: Any, question: str,
           ignore: Iterable[str] = (), a_name: str | None = None, b_name: str | None = None
           ) -> PairedEffect:
    """Pair cells of equal settings (except ``factor`` and ``ignore``) where ``factor`` is
    ``a`` in one and ``b`` in the other; repeated configurations are averaged within a cell."""
    a_name, b_name = a_name or str(a), b_name or str(b)
    cells: dict[tuple[Any, ...], dict[str, list[Observation]]] = {}
    for o in obs:
        value = o.config.get(factor)
        if value not in (a, b):
            continue
        side = "a" if value == a else "b"
        cells.setdefault(_key(o.config, {factor, *ignore}), {}).setdefault(side, []).append(o)
    diffs: list[float] = []
    ratios: list[float] = []
    for cell in cells.values():
        if "a" in cell and "b" in cell:
            acc_a = statistics.fmean(o.accuracy for o in cell["a"])
            acc_b = statistics.fmean(o.accuracy for o in cell["b"])
            diffs.append(acc_a - acc_b)
            tp_a = _geomean([o.throughput for o in cell["a"]])
            tp_b = _geomean([o.throughput for o in cell["b"]])
            ratios.append(tp_a / tp_b)
    n = len(diffs)
    a_better = sum(d > 0 for d in diffs)
    b_better = sum(d < 0 for d in diffs)
    mean = statistics.fmean(diffs) if diffs else None
    ratio = _geomean(ratios) if ratios else None
    if n == 0:
        verdict = (f"no pairs: no two trials differ only in {a_name} vs {b_name}, so the data "
                   "cannot answer this")
    else:
        assert mean is not None and ratio is not None
        numbers = (f"{a_name} minus {b_name}: {100 * mean:+.2f} accuracy points on average "
                   f"({a_better} of {n} pairs favour {a_name}, {b_better} favour {b_name}); "
                   f"throughput ratio {a_name}/{b_name} ×{ratio:.2f}")
        if n < MIN_PAIRS:
            verdict = f"only {n} pair(s), too few to conclude. {numbers}"
        elif a_better == n or b_better == n:
            winner = a_name if a_better == n else b_name
            verdict = f"{winner} was more accurate in every one of {n} pairs. {numbers}"
        elif min(diffs) < 0 < max(diffs):
            verdict = f"mixed: neither is consistently more accurate over {n} pairs. {numbers}"
        else:
            verdict = numbers
    return PairedEffect(question, a_name, b_name, n, mean, min(diffs, default=None),
                        max(diffs, default=None), a_better, b_better, ratio, verdict)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ties share their average rank
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (None when either side is constant or n < 2)."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


@dataclass(frozen=True)
class LevelStats:
    value: Any
    trials: int
    mean_accuracy: float
    best_accuracy: float
    median_throughput: float


@dataclass(frozen=True)
class FactorEffect:
    """How one numeric setting relates to accuracy and throughput (marginal over the rest)."""

    factor: str
    label: str
    trials: int
    levels: list[LevelStats]
    rho_accuracy: float | None
    rho_throughput: float | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "levels": [lv.__dict__ for lv in self.levels]}


def _trend(label: str, metric: str, rho: float | None) -> str:
    if rho is None:
        return f"{metric} does not vary with {label} here"
    if abs(rho) < CLEAR_RHO:
        return f"no clear trend of {metric} with {label} (ρ = {rho:+.2f})"
    way = "rises" if rho > 0 else "falls"
    return f"{metric} {way} with {label} (Spearman ρ = {rho:+.2f})"


def factor_effect(obs: Sequence[Observation], factor: str, label: str) -> FactorEffect | None:
    """Per-value statistics and rank correlations; None when no trial has ``factor``."""
    have = [o for o in obs if isinstance(o.config.get(factor), (int, float))]
    if not have:
        return None
    by_value: dict[Any, list[Observation]] = {}
    for o in have:
        by_value.setdefault(o.config[factor], []).append(o)
    levels = [LevelStats(v, len(group), statistics.fmean(o.accuracy for o in group),
                         max(o.accuracy for o in group),
                         statistics.median(o.throughput for o in group))
              for v, group in sorted(by_value.items())]
    xs = [float(o.config[factor]) for o in have]
    rho_acc = spearman(xs, [o.accuracy for o in have])
    rho_tp = spearman(xs, [o.throughput for o in have])
    if len(levels) < 2:
        verdict = (f"only one value of {label} ({levels[0].value}) among the completed trials: "
                   "no effect can be read")
    elif len(have) < MIN_TRIALS_TREND:
        verdict = (f"only {len(have)} trials, too few to conclude how {label} affects accuracy "
                   "or throughput")
    else:
        verdict = (f"over {len(have)} trials (marginal over the other searched settings): "
                   f"{_trend(label, 'accuracy', rho_acc)}; "
                   f"{_trend(label, 'throughput', rho_tp)}")
    return FactorEffect(factor, label, len(have), levels, rho_acc, rho_tp, verdict)


@dataclass(frozen=True)
class KindStats:
    kind: str
    trials: int
    on_front: int
    best_accuracy: float
    mean_accuracy: float
    median_throughput: float


@dataclass
class Findings:
    trials_used: int
    duplicates_skipped: int
    norm: PairedEffect | None = None
    norm_note: str = ""
    mem_size: FactorEffect | None = None
    heads: FactorEffect | None = None
    attention: PairedEffect | None = None
    attention_note: str = ""
    kinds: list[KindStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials_used": self.trials_used, "duplicates_skipped": self.duplicates_skipped,
            "norm": self.norm.to_dict() if self.norm else None, "norm_note": self.norm_note,
            "mem_size": self.mem_size.to_dict() if self.mem_size else None,
            "heads": self.heads.to_dict() if self.heads else None,
            "attention": self.attention.to_dict() if self.attention else None,
            "attention_note": self.attention_note,
            "kinds": [k.__dict__ for k in self.kinds],
        }


def analyze(trials: Sequence[TrialRecord], front: set[int]) -> Findings:
    """All findings for one study's trials (``front``: numbers of the Pareto-optimal ones)."""
    obs = observations(trials)
    duplicates = sum(1 for t in trials if t.state == "COMPLETE" and t.is_duplicate)
    findings = Findings(len(obs), duplicates)
    ea = [o for o in obs if o.attention == "external"]
    norms = {o.config.get("norm") for o in ea}
    if {"double", "softmax"} <= norms:
        findings.norm = paired(ea, "norm", "double", "softmax",
                               "double normalization vs softmax", a_name="double",
                               b_name="softmax")
    elif ea:
        fixed = ", ".join(sorted(str(n) for n in norms))
        findings.norm_note = (f"only {fixed} normalization was tried: the data cannot compare "
                              "double normalization with softmax")
    else:
        findings.norm_note = "no external-attention trial completed"
    findings.mem_size = factor_effect(ea, "mem_size", "S (memory size)")
    findings.heads = factor_effect(obs, "heads", "heads")
    kinds = {o.attention for o in obs}
    for kind in sorted(kinds):
        group = [o for o in obs if o.attention == kind]
        findings.kinds.append(KindStats(
            kind, len(group), sum(o.number in front for o in group),
            max(o.accuracy for o in group), statistics.fmean(o.accuracy for o in group),
            statistics.median(o.throughput for o in group)))
    if {"external", "self"} <= kinds:
        findings.attention = paired(obs, "attention", "external", "self",
                                    "external vs self-attention", ignore=("mem_size", "norm"),
                                    a_name="EA", b_name="SA")
    else:
        only = ", ".join(sorted(kinds)) or "none"
        findings.attention_note = (f"only {only} attention was searched: external and "
                                   "self-attention cannot be compared from this study")
    return findings
