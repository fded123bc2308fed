"""``explore study export``: every trial to JSON or CSV, and the CSV flattening all commands use.

The JSON file holds the study (name, objectives, stored settings) and its trials in the record
form of :func:`studies.catalog.trial_json`. The CSV file has one row per trial; nested dicts are
flattened with dotted column names (``values.accuracy``, ``params.heads``,
``user_attrs.throughput.median``), lists are JSON text, and a cell is JSON whenever plain text
would be ambiguous, so :func:`load_export` reads either file back to the same records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from studies.catalog import open_catalog, read_front
from studies.errors import ExploreError, UsageError
from studies.record import trial_json

__all__ = ["ExportResult", "export_study", "flatten", "load_export", "unflatten", "write_csv"]

FIRST_COLUMNS = ("number", "state", "pareto")


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; an empty dict stays one cell (``{}``)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def unflatten(row: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _cell(value: Any) -> str:
    """Plain text for strings, JSON for the rest (``null`` for None); a string that would read
    back as something else (``"12"``, ``"true"``, ``""``) is written JSON-quoted."""
    if value is None:
        return "null"  # an empty cell means "no such key" in this row
    if isinstance(value, str):
        if value == "":
            return '""'
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # Infinity / NaN, which json.loads reads back
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


def _read_cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def columns_for(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order: number, state, pareto, values, times, then params and user attrs sorted."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    names = list(seen)

    def rank(name: str) -> tuple[int, str]:
        if name in FIRST_COLUMNS:
            return FIRST_COLUMNS.index(name), ""
        for i, prefix in enumerate(("values", "datetime_", "duration", "params.",
                                    "user_attrs.")):
            if name.startswith(prefix):
                return 10 + i, name if prefix in ("params.", "user_attrs.") else ""
        return 5, ""  # other records (list, history, compare) keep their own order

    return sorted(names, key=lambda n: (rank(n), names.index(n)))


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> None:
    """Flattened records as CSV with a header of the union of their columns."""
    rows = [flatten(r) for r in records]
    columns = columns_for(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) if c in row else "" for c in columns])


def csv_text(records: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    write_csv(records, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    trials: int


def export_study(storage: str | None, name: str, out: Path) -> ExportResult:
    """Write every trial of study ``name`` to ``out`` (``.json`` or ``.csv``, by suffix)."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("json", "csv"):
        raise UsageError(f"--out {out}: give a .json or .csv file")
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"directory {out.parent} does not exist")
    with open_catalog(storage) as catalog:
        meta = catalog.study(name)
        trials = catalog.trials(meta)
        front = read_front(catalog, meta, include_dominated=False).pareto
    names = meta.objective_names
    records = [trial_json(t, names, pareto=t.number in front) for t in trials]
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            if fmt == "json":
                json.dump({"study": meta.name, "directions": list(meta.directions),
                           "metric_names": names, "user_attrs": meta.user_attrs,
                           "trials": records}, f, indent=1, default=str)
                f.write("\n")
            else:
                write_csv(records, f)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExploreError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return ExportResult(out, fmt, len(records))


def load_export(path: Path) -> list[dict[str, Any]]:
    """The trial records of a file written by :func:`export_study` (JSON or CSV)."""
    if path.suffix.lower() == ".json":
        return list(json.loads(path.read_text(encoding="utf-8"))["trials"])
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return [unflatten({c: _read_cell(v) for c, v in zip(header, row, strict=True)
                           if v != ""})
                for row in reader]
