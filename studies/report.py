"""``explore study report``: a findings report in Markdown or HTML.

The report holds the study's settings and counts; the noise-aware front over configurations (the
plausible ones with runs, 95% intervals and P(front), or, while every configuration has one run,
the observed front said to be so); Optuna's observed per-trial front (``study.best_trials``,
table and plot) as a secondary view; the hypervolume history; and the answers
:mod:`studies.analysis` gives to the paper's questions, each with its interval and power.
Accuracy is in percent throughout, differences in points. A Markdown report refers to PNG files
written beside it (``NAME-front.png``, ``NAME-history.png``); an HTML report embeds them and is
one self-contained file.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import tempfile
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Protocol

from studies.analysis import REPLICATE_HINT, RESOLVE, Findings, Question, analyze
from studies.catalog import Front, open_catalog, read_front
from studies.confidence import Estimate
from studies.errors import ExploreError
from studies.outfile import check_out
from studies.pareto import hypervolume_2d
from studies.record import (
    ATTR_FLOPS,
    ATTR_MODEL_CONFIG,
    ATTR_PARAMS_COUNT,
    StudyMeta,
    TrialRecord,
    TrialStats,
    design,
)
from studies.replicates import ConfiguredFront, front_settings, study_front
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


class _Format(Protocol):
    """How one output format writes each kind of block: one string, or ``None`` for nothing."""

    def heading(self, b: Heading) -> str: ...
    def para(self, b: Para) -> str: ...
    def bullets(self, b: Bullets) -> str: ...
    def table(self, b: Table) -> str: ...
    def image(self, b: Image) -> str | None: ...


def _render(blocks: list[Block], fmt: _Format) -> list[str]:
    """Each block written by ``fmt``, in order."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            text: str | None = fmt.heading(b)
        elif isinstance(b, Para):
            text = fmt.para(b)
        elif isinstance(b, Bullets):
            text = fmt.bullets(b)
        elif isinstance(b, Table):
            text = fmt.table(b)
        else:
            text = fmt.image(b)
        if text is not None:
            out.append(text)
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class _Markdown:
    images: dict[str, str]  # key → relative file name

    def heading(self, b: Heading) -> str:
        return f"{'#' * b.level} {b.text}\n"

    def para(self, b: Para) -> str:
        return f"{b.text}\n"

    def bullets(self, b: Bullets) -> str:
        return "\n".join(f"- {item}" for item in b.items) + "\n"

    def table(self, b: Table) -> str:
        return "\n".join(["| " + " | ".join(_md_cell(h) for h in b.headers) + " |",
                          "|" + "|".join("---" for _ in b.headers) + "|",
                          *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows),
                          ""])

    def image(self, b: Image) -> str | None:
        return f"![{b.alt}]({self.images[b.key]})\n" if b.key in self.images else None


def to_markdown(blocks: list[Block], images: dict[str, str]) -> str:
    """``images``: key → relative file name."""
    return "\n".join(_render(blocks, _Markdown(images)))


_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;
padding:.2rem .5rem;text-align:right}th{background:#f3f3f3}img{max-width:100%}"""


@dataclass(frozen=True)
class _Html:
    images: dict[str, bytes]  # key → PNG bytes, embedded as data URLs

    def heading(self, b: Heading) -> str:
        return f"<h{b.level}>{escape(b.text)}</h{b.level}>"

    def para(self, b: Para) -> str:
        return f"<p>{escape(b.text)}</p>"

    def bullets(self, b: Bullets) -> str:
        return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in b.items) + "</ul>"

    def table(self, b: Table) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in b.headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                       for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def image(self, b: Image) -> str | None:
        if b.key not in self.images:
            return None
        data = base64.b64encode(self.images[b.key]).decode("ascii")
        return f"<img alt='{escape(b.alt)}' src='data:image/png;base64,{data}'>"


def to_html(blocks: list[Block], images: dict[str, bytes], title: str) -> str:
    """``images``: key → PNG bytes, embedded as data URLs."""
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>")
    return "\n".join([head, *_render(blocks, _Html(images)), "</body></html>\n"])


# ---- the content -----------------------------------------------------------------------------

SEARCHED = ("attention", "mem_size", "heads", "norm")  # shown as the design (S32/h4/double)


def _pct(est: Estimate) -> str:
    """An accuracy (a fraction) in percent, with its interval when known."""
    if est.low is None or est.high is None:
        return f"{100 * est.mean:.2f}%"
    return f"{100 * est.mean:.2f}% [{100 * est.low:.2f}%, {100 * est.high:.2f}%]"


def _rate(est: Estimate) -> str:
    """img/s, with its interval when known."""
    if est.low is None or est.high is None:
        return f"{est.mean:,.0f}"
    return f"{est.mean:,.0f} [{est.low:,.0f}, {est.high:,.0f}]"


def _n(count: int, word: str) -> str:
    """``3 configurations``, ``1 configuration``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _others(params: list[dict[str, Any]]) -> list[str]:
    return sorted({k for p in params for k in p} - set(SEARCHED))


def _config(t: TrialRecord) -> dict[str, Any]:
    """The trial's stored model config overlaid with its searched params."""
    stored = t.user_attrs.get(ATTR_MODEL_CONFIG)
    return {**(stored if isinstance(stored, dict) else {}), **t.params}


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _confident_table(cf: ConfiguredFront) -> Table:
    """The plausible configurations by mean throughput, with intervals when the noise is known."""
    configs = cf.ordered(cf.front.plausible)
    others = _others([c.params for c in configs])
    known = cf.front.noise.known
    level = f"{cf.front.noise.confidence:.0%}"
    values = ([f"accuracy [{level}]", f"img/s [{level}]", "P(front)"] if known
              else ["accuracy", "img/s"])
    rows = []
    for c in configs:
        e = cf.estimate(c.key)
        cells = [_pct(e.accuracy), _rate(e.throughput)]
        if known:
            cells.append(f"{cf.front.probability[c.key]:.2f}")
        first = c.trials[0].user_attrs
        rows.append([design(c.model_config), *[_param(c.params.get(k, "-")) for k in others],
                     str(e.n), ",".join(str(n) for n in e.trials), *cells,
                     _count(first.get(ATTR_PARAMS_COUNT)), _count(first.get(ATTR_FLOPS))])
    return Table(["design", *others, "runs", "trials", *values, "params", "FLOPs/image"], rows)


def _noise_line(cf: ConfiguredFront) -> str:
    noise = cf.front.noise
    assert noise.accuracy_sd is not None and noise.log_throughput_sd is not None
    return (f"Seed noise, pooled over all configurations: ±{100 * noise.accuracy_sd:.2f} "
            f"accuracy points and ±{100 * math.expm1(noise.log_throughput_sd):.0f}% img/s per "
            f"run (df {noise.df}).")


def _front_blocks(cf: ConfiguredFront) -> list[Block]:
    """The noise-aware front: the plausible configurations, and what is decided about the rest."""
    noisy = cf.front
    n = len(cf.configs)
    if not n:
        return [Heading(2, "Pareto front over configurations"),
                Para("No COMPLETE trial has both an accuracy and a throughput.")]
    counts = sorted(len(c.trials) for c in cf.configs)
    spread = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
    blocks: list[Block] = [
        Heading(2, "Pareto front over configurations"),
        Para(f"{_n(n, 'configuration')}, {_n(cf.replicates, 'run')} ({spread} per "
             "configuration). A run is one training and one throughput measurement; replicate r "
             "of every configuration shares its seed."),
    ]
    if not noisy.noise.known:
        blocks += [
            Para(f"Every configuration has one run: the seed noise is unknown, so no interval "
                 "can be given and the front below is the observed one (the configurations no "
                 "other beats in both accuracy and img/s). It cannot yet be told apart from "
                 f"noise; {REPLICATE_HINT}."),
            _confident_table(cf),
        ]
        return blocks
    undecided = n - len(noisy.plausible) - len(noisy.dominated)
    level = f"{noisy.noise.confidence:.0%}"
    blocks += [
        Para(f"The plausible front: {_n(len(noisy.plausible), 'configuration')} with "
             "P(Pareto-optimal) >= 0.5, by throughput. Accuracy is the mean of a "
             f"configuration's runs, img/s their geometric mean, each with its {level} interval; "
             "P(front) is the probability that the configuration is Pareto-optimal given the "
             "noise"
             + (f", counting accuracies within {100 * noisy.tolerance:g} points as ties that the "
                "faster design wins ([study] accuracy_tolerance)" if noisy.tolerance else "")
             + ". " + _noise_line(cf)),
        _confident_table(cf),
        Para(f"Of the other {_n(n - len(noisy.plausible), 'configuration')}, "
             f"{len(noisy.dominated)} confidently dominated (P(front) <= "
             f"{1 - noisy.noise.confidence:.2f}) and {undecided} undecided (neither plausible nor "
             "confidently dominated)."
             + (f" Hypervolume of the plausible front: {noisy.hypervolume:,.1f} "
                f"[{noisy.hypervolume_low:,.1f}, {noisy.hypervolume_high:,.1f}] (accuracy as a "
                "fraction × img/s above (0, 0))."
                if noisy.hypervolume_low is not None and noisy.hypervolume_high is not None
                else "")),
    ]
    return blocks


def _observed_blocks(front: Front) -> list[Block]:
    """Optuna's per-trial front, kept as the secondary, observed view."""
    trials = sorted(front.front, key=lambda t: t.values[1] if t.values else 0.0)
    others = _others([t.params for t in trials])
    values = [t.values for t in trials if t.values]
    rows = []
    for t in trials:
        assert t.values is not None
        rows.append([str(t.number), design(_config(t)),
                     *[_param(t.params.get(k, "-")) for k in others],
                     f"{100 * t.values[0]:.2f}%", f"{t.values[1]:,.0f}"])
    return [
        Heading(3, "Optuna's observed front (study.best_trials), single runs"),
        Para(f"{len(front.pareto)} of {len(front.trials)} COMPLETE trials that no other single "
             "run beats in both accuracy and img/s (hypervolume "
             f"{hypervolume_2d([(v[0], v[1]) for v in values]):,.1f}). Each is one run: a "
             "lucky seed or a quiet moment can put a trial here."),
        Table(["trial", "design", *others, "accuracy", "img/s"], rows),
        Image("front", "accuracy against throughput, every run; Optuna's observed front "
              "connected, dominated runs in grey"),
    ]


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
    # a list of one value is a setting, not a search (explore.space)
    fixed = {k: v for k, v in space.items() if isinstance(v, list) and len(v) == 1}
    searched = {k: v for k, v in space.items() if k not in fixed}
    items = [
        f"storage: {where}",
        f"dataset: {data.get('dataset', '?')} (accuracy on the {data.get('eval_split', 'val')} "
        f"split after {train.get('epochs', '?')} epochs)",
        f"sampler: {study.get('sampler', '?')}, seed {study.get('seed', '?')}, "
        f"budget {study.get('trials', '?')} finished trials, replicates "
        f"{study.get('replicates', 1)}",
        "searched: " + ("; ".join(f"{k} = {v}" for k, v in searched.items()) or "nothing"),
        *(["fixed: " + "; ".join(f"{k} = {v[0]!r}" for k, v in fixed.items())] if fixed else []),
        f"trials: {sum(stats.states.values())} ({states})",
        "throughput measured on: " + (", ".join(devices) or "unknown"),
    ]
    noisy = [t.number for t in front.front if t.user_attrs.get("throughput", {}).get("noisy")]
    if noisy:
        items.append(f"noisy throughput (spread > 10%) on front trials {noisy}: their img/s "
                     "may be off by more than the differences between them")
    return [Heading(2, "Summary"), Bullets(items)]


def _effect_rows(q: Question) -> list[list[str]]:
    """The effect table's rows: accuracy in points, throughput as a ratio."""
    rows = []
    per = " per doubling" if q.kind == "trend" else ""
    acc, speed = q.accuracy, q.speed
    if acc is not None and acc.low is not None and acc.high is not None:
        assert acc.detectable is not None and acc.p_better is not None
        name = (f"accuracy {q.a} − {q.b}" if q.kind == "paired"
                else f"accuracy per doubling of {q.a}")
        rows.append([name, _minus(f"{100 * acc.mean:+.2f} pts"),
                     _minus(f"[{100 * acc.low:+.2f}, {100 * acc.high:+.2f}]"),
                     f"{acc.p_better:.2f}", f"±{100 * acc.detectable:.2f} pts{per}",
                     str(acc.pairs), str(acc.differences)])
    if speed is not None and speed.low is not None and speed.high is not None:
        assert speed.detectable is not None and speed.p_better is not None
        name = f"img/s {q.a}/{q.b}" if q.kind == "paired" else f"img/s per doubling of {q.a}"
        rows.append([name, f"×{math.exp(speed.mean):.3f}",
                     f"[×{math.exp(speed.low):.3f}, ×{math.exp(speed.high):.3f}]",
                     f"{speed.p_better:.2f}", f"×{math.exp(speed.detectable):.3f}{per}",
                     str(speed.pairs), str(speed.differences)])
    return rows


def _question_blocks(q: Question, f: Findings, paper: str = "") -> list[Block]:
    """One question: its verdict, the throughput sentence, details, and its tables (intervals
    only where the noise is known: otherwise nothing is claimed, not even in a table)."""
    blocks: list[Block] = [Heading(3, q.title), Para(_sentence(q.verdict))]
    if q.throughput:
        blocks.append(Para(_sentence(q.throughput)))
    if q.details:
        blocks.append(Bullets(q.details))
    rows = _effect_rows(q) if f.noise_known else []
    level = f"{f.confidence:.0%}"
    if rows:
        units = "pairs" if q.kind == "paired" else "groups"
        better = "P(a better)" if q.kind == "paired" else "P(rises)"
        blocks.append(Table(["effect", "estimate", f"{level} interval", better,
                             "80% power for", units, "paired runs"], rows))
    if q.levels:
        tag = f" [{level}]" if f.noise_known else ""
        blocks.append(Table(
            [q.a, "configurations", "runs", f"accuracy{tag}", f"img/s{tag}"],
            [[f"{lv.value:g}", str(lv.configs), str(lv.runs), _pct(lv.accuracy),
              _rate(lv.throughput)] for lv in q.levels]))
    if paper:
        blocks.append(Para(paper))
    return blocks


def _findings(f: Findings) -> list[Block]:
    level = f"{f.confidence:.0%}"
    intro = (f"From {_n(f.configs, 'configuration')} and {_n(f.runs, 'run')}"
             + (f" ({f.duplicates} repeats of an evaluated experiment left out)"
                if f.duplicates else "")
             + ". Each question compares configurations equal in everything else, replicate r "
               "of both sides sharing its seed (a paired design). With several pairs the "
               f"{level} interval is a t interval over the pairs' mean differences, with one "
               "pair over its paired runs; S and heads are slopes per doubling within groups of "
               "configurations equal except that factor. A difference or a trend is claimed only "
               "when its interval excludes 0. Accuracy differences are in percentage points, "
               f"throughput as ratios; the power is what the study could detect with 80% power, "
               f"and the seeds that would resolve {100 * RESOLVE:.1f} points.")
    blocks: list[Block] = [Heading(2, "Findings"), Para(intro)]
    if not f.noise_known:
        blocks.append(Para("Every configuration has one run, so the seed noise is unknown: no "
                           "interval can be given and nothing below is claimed; the numbers are "
                           f"what was observed. {REPLICATE_HINT[:1].upper()}{REPLICATE_HINT[1:]}."))
    blocks += _question_blocks(
        f.norm, f,
        "For scale: the paper's author reports differences of 0.1-0.3 points between double "
        "normalization and softmax.")
    blocks += _question_blocks(f.mem_size, f)
    blocks += _question_blocks(f.heads, f)
    blocks += _question_blocks(f.attention, f)
    if f.kinds:
        tag = f" [{level}]" if f.noise_known else ""
        blocks.append(Table(
            ["attention", "configurations", "runs",
             "on the plausible front" if f.noise_known else "on the observed front",
             f"best accuracy{tag}", f"fastest img/s{tag}"],
            [[k.kind, str(k.configs), str(k.runs), str(k.plausible), _pct(k.best_accuracy),
              _rate(k.fastest)] for k in f.kinds]))
    return blocks


def _history_blocks(snapshots: list[Any]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Hypervolume history")]
    if not snapshots:
        return [*blocks, Para("No Pareto snapshots were recorded for this study.")]
    blocks.append(Para(
        f"{len(snapshots)} snapshots of Optuna's observed front, one each time a finished trial "
        "changed it. Hypervolume is the area dominated by the front in accuracy (as a fraction) "
        "× images/s above the reference point (0, 0)."))
    shown = snapshots if len(snapshots) <= 25 else snapshots[:5] + snapshots[-20:]
    blocks.append(Table(
        ["snapshot", "finished trials", "time (UTC)", "hypervolume", "front size"],
        [[str(s.number), str(s.n_finished), s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
          f"{s.hypervolume:,.1f}", str(s.front_size)] for s in shown]))
    blocks.append(Image("history", "hypervolume against finished trials and time"))
    return blocks


def build_report(meta: StudyMeta, stats: TrialStats, front: Front, trials: list[TrialRecord],
                 snapshots: list[Any], where: str) -> list[Block]:
    confidence, _ = front_settings(meta.settings)
    cf = study_front(trials, meta.settings)  # the probabilities `study pareto` prints
    blocks: list[Block] = [
        Heading(1, f"Study {meta.name}: accuracy against throughput"),
        Para(f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by explore."),
    ]
    blocks += _summary(meta, stats, front, where)
    blocks += _front_blocks(cf)
    blocks += _observed_blocks(front)
    blocks += _history_blocks(snapshots)
    blocks += _findings(analyze(trials, confidence, cf))
    return blocks


def write_report(storage: str | None, name: str, out: Path) -> Path:
    """Write the report of study ``name`` to ``out`` (``.md`` or ``.html``)."""
    from studies.frontpng import front_png
    from studies.history import read_snapshots
    from studies.historyplot import history_png

    suffix = check_out(out, (".md", ".html"))
    spec = parse_storage(storage)
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)
        if not meta.is_explore:
            raise ExploreError(
                f"study {name!r} was not made by explore (objectives "
                f"{', '.join(meta.objective_names)}): the report asks about accuracy and "
                "throughput; `explore study show`, `pareto --observed` and `export` work on it")
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
