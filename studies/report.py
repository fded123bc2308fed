"""``explore study report``: a findings report in Markdown or HTML.

The report holds the study's settings and counts, the Pareto front (table and plot), the
hypervolume history, and the answers :mod:`studies.analysis` gives to the paper's questions. A
Markdown report refers to PNG files written beside it (``NAME-front.png``,
``NAME-history.png``); an HTML report embeds them and is one self-contained file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies.analysis import (
    MIN_PAIRS,
    MIN_TRIALS_TREND,
    FactorEffect,
    Findings,
    PairedEffect,
    analyze,
)
from studies.catalog import Front, open_catalog, read_front
from studies.errors import ExploreError
from studies.pareto import hypervolume_2d
from studies.record import StudyMeta, TrialStats
from studies.storage import parse_storage

__all__ = ["write_report"]


# ---- a tiny document model, rendered to Markdown or HTML -------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    key: str  # "front" or "history"
    alt: str


Block = Heading | Para | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], images: dict[str, str]) -> str:
    """``images``: key → relative file name."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(f"{b.text}\n")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items) + "\n")
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join("---" for _ in b.headers) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows)
            out.append("")
        elif b.key in images:
            out.append(f"![{b.alt}]({images[b.key]})\n")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;
padding:.2rem .5rem;text-align:right}th{background:#f3f3f3}img{max-width:100%}"""


def to_html(blocks: list[Block], images: dict[str, bytes], title: str) -> str:
    """``images``: key → PNG bytes, embedded as data URLs."""
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                           for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.key in images:
            data = base64.b64encode(images[b.key]).decode("ascii")
            out.append(f"<img alt='{e(b.alt)}' src='data:image/png;base64,{data}'>")
    out.append("</body></html>\n")
    return "\n".join(out)


# ---- the content -----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _config(t: Any) -> dict[str, Any]:
    stored = t.user_attrs.get("model_config")
    return {**(stored if isinstance(stored, dict) else {}), **t.params}


def _front_table(front: Front) -> Table:
    others = sorted({k for t in front.front for k in t.params}
                    - {"attention", "mem_size", "heads", "norm"})
    headers = ["trial", "attention", "S", "heads", "norm", *others, "accuracy", "img/s",
               "params", "FLOPs/image"]
    rows = []
    for t in sorted(front.front, key=lambda t: t.values[1] if t.values else 0.0):
        cfg = _config(t)
        ea = cfg.get("attention", "external") == "external"
        assert t.values is not None
        rows.append([str(t.number), str(cfg.get("attention", "external")),
                     str(cfg.get("mem_size", "-")) if ea else "-", str(cfg.get("heads", "-")),
                     str(cfg.get("norm", "-")) if ea else "-",
                     *[str(t.params.get(k, "-")) for k in others],
                     f"{t.values[0]:.4f}", f"{t.values[1]:,.0f}",
                     f"{t.user_attrs.get('params_count', 0):,}",
                     f"{t.user_attrs.get('flops_per_image', 0):,}"])
    return Table(headers, rows)


def _summary(meta: StudyMeta, stats: TrialStats, front: Front, where: str) -> list[Block]:
    s = meta.settings
    data, train, study = s.get("data", {}), s.get("train", {}), s.get("study", {})
    states = ", ".join(f"{n} {k.lower()}" for k, n in sorted(stats.states.items())) or "none"
    devices = sorted({f"{t.user_attrs.get('device_name', '?')} "
                      f"({t.user_attrs.get('throughput', {}).get('threads', '?')} threads"
                      + (", CUDA graph replays" if t.user_attrs.get("throughput", {}).get("graph")
                         else "") + ")"
                      for t in front.trials if t.user_attrs.get("device_name")})
    space = s.get("space", {})
    items = [
        f"storage: {where}",
        f"dataset: {data.get('dataset', '?')} (accuracy on the {data.get('eval_split', 'val')} "
        f"split after {train.get('epochs', '?')} epochs)",
        f"sampler: {study.get('sampler', '?')}, seed {study.get('seed', '?')}, "
        f"budget {study.get('trials', '?')} finished trials",
        "searched: " + ("; ".join(f"{k} = {v}" for k, v in space.items()) or "nothing"),
        f"trials: {sum(stats.states.values())} ({states})",
        "throughput measured on: " + (", ".join(devices) or "unknown"),
    ]
    noisy = [t.number for t in front.front if t.user_attrs.get("throughput", {}).get("noisy")]
    if noisy:
        items.append(f"noisy throughput (spread > 10%) on front trials {noisy}: their img/s "
                     "may be off by more than the differences between them")
    return [Heading(2, "Summary"), Bullets(items)]


def _paired_blocks(title: str, effect: PairedEffect | None, note: str, paper: str = ""
                   ) -> list[Block]:
    blocks: list[Block] = [Heading(3, title)]
    if effect is None:
        blocks.append(Para(note))
        return blocks
    blocks.append(Para(effect.verdict[0].upper() + effect.verdict[1:] + "."))
    if effect.pairs:
        blocks.append(Table(
            ["pairs", f"mean accuracy {effect.a} − {effect.b}", "smallest", "largest",
             f"{effect.a} better", f"{effect.b} better", f"throughput {effect.a}/{effect.b}"],
            [[str(effect.pairs), _points(effect.mean_accuracy_diff),
              _points(effect.min_accuracy_diff), _points(effect.max_accuracy_diff),
              str(effect.a_better), str(effect.b_better),
              f"×{effect.throughput_ratio:.2f}" if effect.throughput_ratio else "-"]]))
    if paper:
        blocks.append(Para(paper))
    return blocks


def _points(diff: float | None) -> str:
    return "-" if diff is None else f"{100 * diff:+.2f} pts"


def _factor_blocks(title: str, effect: FactorEffect | None, missing: str) -> list[Block]:
    blocks: list[Block] = [Heading(3, title)]
    if effect is None:
        return [*blocks, Para(missing)]
    blocks.append(Para(effect.verdict[0].upper() + effect.verdict[1:] + "."))
    blocks.append(Table(
        [effect.label, "trials", "mean accuracy", "best accuracy", "median img/s"],
        [[str(lv.value), str(lv.trials), _pct(lv.mean_accuracy), _pct(lv.best_accuracy),
          f"{lv.median_throughput:,.0f}"] for lv in effect.levels]))
    return blocks


def _findings(f: Findings) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Findings"),
        Para(f"From {f.trials_used} COMPLETE trials"
             + (f" ({f.duplicates_skipped} repeats of an evaluated configuration left out)"
                if f.duplicates_skipped else "")
             + f". A conclusion needs at least {MIN_PAIRS} pairs or {MIN_TRIALS_TREND} trials; "
               "below that the numbers are "
               "shown but nothing is concluded. Accuracy differences are in percentage points."),
    ]
    blocks += _paired_blocks(
        "Double normalization vs softmax", f.norm, f.norm_note,
        "For scale: the paper's author reports differences of 0.1-0.3 points between double "
        "normalization and softmax; a difference below the pairs' spread is not a finding.")
    blocks += _factor_blocks("Memory size S", f.mem_size,
                             "No external-attention trial completed: nothing to say about S.")
    blocks += _factor_blocks("Heads", f.heads, "No trial records its number of heads.")
    blocks += _paired_blocks("External vs self-attention", f.attention, f.attention_note)
    if f.kinds:
        blocks.append(Table(
            ["attention", "trials", "on the front", "best accuracy", "mean accuracy",
             "median img/s"],
            [[k.kind, str(k.trials), str(k.on_front), _pct(k.best_accuracy),
              _pct(k.mean_accuracy), f"{k.median_throughput:,.0f}"] for k in f.kinds]))
    return blocks


def _history_blocks(snapshots: list[Any]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Hypervolume history")]
    if not snapshots:
        return [*blocks, Para("No Pareto snapshots were recorded for this study.")]
    blocks.append(Para(
        f"{len(snapshots)} snapshots, one each time a finished trial changed the front. "
        "Hypervolume is the area dominated by the front in accuracy × images/s above the "
        "reference point (0, 0)."))
    shown = snapshots if len(snapshots) <= 25 else snapshots[:5] + snapshots[-20:]
    blocks.append(Table(
        ["snapshot", "finished trials", "time (UTC)", "hypervolume", "front size"],
        [[str(s.number), str(s.n_finished), s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
          f"{s.hypervolume:,.1f}", str(s.front_size)] for s in shown]))
    blocks.append(Image("history", "hypervolume against finished trials and time"))
    return blocks


def build_report(meta: StudyMeta, stats: TrialStats, front: Front, trials: list[Any],
                 snapshots: list[Any], where: str) -> list[Block]:
    blocks: list[Block] = [
        Heading(1, f"Study {meta.name}: accuracy against throughput"),
        Para(f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by explore."),
    ]
    blocks += _summary(meta, stats, front, where)
    values = [t.values for t in front.front if t.values]
    blocks += [
        Heading(2, "Pareto front"),
        Para(f"{len(front.pareto)} Pareto-optimal of {len(front.trials)} COMPLETE trials "
             f"(hypervolume {hypervolume_2d([(v[0], v[1]) for v in values]):,.1f} in accuracy "
             "× img/s above (0, 0)). No listed trial is beaten by another in both accuracy and "
             "throughput."),
        _front_table(front),
        Image("front", "accuracy against throughput; the front connected, dominated in grey"),
    ]
    blocks += _history_blocks(snapshots)
    blocks += _findings(analyze(trials, front.pareto))
    return blocks


def write_report(storage: str | None, name: str, out: Path) -> Path:
    """Write the report of study ``name`` to ``out`` (``.md`` or ``.html``)."""
    from studies.history import read_snapshots
    from studies.plots import check_out, front_png, history_png

    suffix = check_out(out, (".md", ".html"))
    spec = parse_storage(storage)
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)
        front = read_front(catalog, meta, include_dominated=True)
        trials = catalog.trials(meta)
        stats = catalog.stats().get(meta.study_id, TrialStats({}, None, None))
    if not front.trials:
        raise ExploreError(f"study {name!r} has no COMPLETE trials yet: nothing to report")
    snapshots = read_snapshots(spec, name)
    blocks = build_report(meta, stats, front, trials, snapshots, spec.display)
    from studies.history import History

    with tempfile.TemporaryDirectory() as tmp:
        pngs = {"front": front_png(front, Path(tmp) / "front.png")}
        if snapshots:
            pngs["history"] = history_png(History(name, snapshots), Path(tmp) / "history.png")
        try:
            if suffix == ".md":
                names = {}
                for key, path in pngs.items():
                    target = out.with_name(f"{out.stem}-{key}.png")
                    target.write_bytes(path.read_bytes())
                    names[key] = target.name
                text = to_markdown(blocks, names)
            else:
                text = to_html(blocks, {k: p.read_bytes() for k, p in pngs.items()},
                               f"Study {name}")
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ExploreError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
