"""Rich tables shared by the commands that show trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from studies.replicates import ConfiguredFront

__all__ = ["confident_table", "design", "front_table", "honest_line", "status_of"]


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def front_table(rows: Sequence[dict[str, Any]], title: str = "Pareto front",
                pareto: set[int] | None = None) -> Table:
    """Trials sorted by throughput: trial, attention, S, heads, norm, other params, values.

    Args:
        rows: ``{"number", "params", "values": [accuracy, throughput], "user_attrs"}``.
        title: Table title.
        pareto: When given, add a ``pareto`` column marking these trial numbers.
    """
    others = sorted({k for r in rows for k in r["params"]} - {"attention", "mem_size", "heads",
                                                               "norm"})
    table = Table(title=title)
    columns = ["trial", "attention", "S", "heads", "norm", *others, "accuracy", "img/s", "params"]
    if pareto is not None:
        columns.append("pareto")
    for col in columns:
        table.add_column(col, justify="left" if col in ("attention", "norm") else "right")
    for r in sorted(rows, key=lambda r: r["values"][1]):
        p = r["params"]
        attention = p.get("attention", r.get("user_attrs", {}).get("model_config", {})
                          .get("attention", "external"))
        ea = attention == "external"
        cells = [str(r["number"]), attention,
                 str(p.get("mem_size", "-")) if ea else "-",
                 str(p.get("heads", "-")),
                 str(p.get("norm", "-")) if ea else "-",
                 *[f"{p[k]:.4g}" if isinstance(p.get(k), float) else str(p.get(k, "-"))
                   for k in others],
                 f"{r['values'][0]:.4f}", f"{r['values'][1]:,.0f}",
                 _fmt_int(r.get("user_attrs", {}).get("params_count"))]
        if pareto is not None:
            cells.append("*" if r["number"] in pareto else "")
        table.add_row(*cells)
    return table


def design(config: dict[str, Any]) -> str:
    """``S32/h4/double`` (EA) or ``SA/h4``: the searched design in a few characters."""
    if config.get("attention", "external") == "self":
        return f"SA/h{config.get('heads', '-')}"
    return f"S{config.get('mem_size', '-')}/h{config.get('heads', '-')}/{config.get('norm', '-')}"


def _interval(mean: float, low: float | None, high: float | None, spec: str) -> str:
    if low is None or high is None:
        return f"{format(mean, spec)} (±?)"
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def status_of(front: ConfiguredFront, key: str) -> str:
    """plausible (P(front) >= 0.5), dominated (confidently), or undecided."""
    return front.status(key)


def confident_table(front: ConfiguredFront, keys: Sequence[str], title: str) -> Table:
    """Configurations by mean throughput: design, other params, runs, accuracy and img/s with
    their 95% intervals, P(Pareto-optimal) and status."""
    configs = front.ordered(keys)
    others = sorted({k for c in configs for k in c.params}
                    - {"attention", "mem_size", "heads", "norm"})
    table = Table(title=title)
    level = f"{front.front.noise.confidence:.0%}"
    for col in ("design", *others, "runs", "trials", f"accuracy % [{level}]",
                f"img/s [{level}]", "P(front)", "status"):
        table.add_column(col, justify="left" if col in ("design", "status", "trials")
                         else "right")
    for c in configs:
        e = front.estimate(c.key)
        trials = ",".join(str(n) for n in e.trials)
        table.add_row(
            design(c.model_config),
            *[f"{c.params[k]:.4g}" if isinstance(c.params.get(k), float)
              else str(c.params.get(k, "-")) for k in others],
            str(e.n), trials if len(trials) <= 16 else trials[:15] + "…",
            _interval(100 * e.accuracy.mean, _pct(e.accuracy.low), _pct(e.accuracy.high), ".2f"),
            _interval(e.throughput.mean, e.throughput.low, e.throughput.high, ",.0f"),
            f"{front.front.probability[c.key]:.2f}", status_of(front, c.key))
    return table


def honest_line(front: ConfiguredFront) -> str:
    """One line on what the study can and cannot tell apart."""
    noisy = front.front
    n = len(front.configs)
    if not n:
        return "no completed configuration yet"
    if not noisy.noise.known:
        return (f"{n} configuration(s), one run each: the seed noise is unknown, so no "
                "interval can be given and the front above is the observed one (not yet "
                "distinguishable from noise)")
    sd = noisy.noise.accuracy_sd or 0.0
    spread = math.expm1(noisy.noise.log_throughput_sd or 0.0)
    tied = _tied(front)
    told = (f"the {len(noisy.plausible)} plausible configurations cannot be told apart in "
            "accuracy (their intervals overlap)" if tied else
            f"the {len(noisy.plausible)} plausible configurations differ beyond the noise")
    return (f"{n} configurations, {front.replicates} runs; seed noise ±{100 * sd:.1f} accuracy "
            f"points and ±{100 * spread:.0f}% img/s per run (pooled, df {noisy.noise.df}); "
            f"{len(noisy.dominated)} confidently dominated, "
            f"{n - len(noisy.dominated) - len(noisy.plausible)} undecided; {told}")


def _tied(front: ConfiguredFront) -> bool:
    ests = [front.estimate(k) for k in front.front.plausible]
    for i, a in enumerate(ests):
        for b in ests[i + 1:]:
            if None in (a.accuracy.low, b.accuracy.low, a.accuracy.high, b.accuracy.high):
                return True
            assert a.accuracy.low is not None and b.accuracy.high is not None
            assert a.accuracy.high is not None and b.accuracy.low is not None
            if a.accuracy.low <= b.accuracy.high and b.accuracy.low <= a.accuracy.high:
                return True
    return False
