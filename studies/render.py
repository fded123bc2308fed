"""Rich tables shared by the commands that show trials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

__all__ = ["front_table"]


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
