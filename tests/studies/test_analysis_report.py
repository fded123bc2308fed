"""The findings (double vs softmax, S, heads, EA vs SA) with confidence, and the report.

Studies with a known truth are simulated: configurations of a grid, each run K times; replicate r
of every configuration shares a seed offset (the paired design) and adds its own noise. They are
analysed as TrialRecords and, for the report, written into real SQLite studies with Optuna.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from browse_helpers import Studies, load
from optuna.distributions import CategoricalDistribution

from studies.analysis import RESOLVE, analyze, finding_lines
from studies.catalog import TrialRecord, open_catalog
from studies.errors import StudyNotFound, UsageError
from studies.replicates import configured_front
from studies.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MINUS = "\u2212"
FRACTION = re.compile(r"(?<![\d.,])0\.\d{4}")  # an accuracy as a bare fraction: 0.9512
NUMBER = r"([\u2212+]?\d+\.\d+)"
SEARCHED = ("attention", "mem_size", "heads", "norm")


# ---- simulated studies with a known truth ----------------------------------------------------


@dataclass(frozen=True)
class Run:
    model_config: dict[str, Any]
    replicate: int
    accuracy: float
    throughput: float

    @property
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_config.items() if k in SEARCHED}

    @property
    def configuration(self) -> str:
        return "/".join(f"{k}={v}" for k, v in sorted(self.params.items()))


def grid(**space: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]


def simulate(configs: Sequence[dict[str, Any]], truth: Callable[[dict[str, Any]],
                                                                tuple[float, float]],
             reps: int, seed: int, noise: float = 0.005, seed_sd: float = 0.01,
             speed_noise: float = 0.05) -> list[Run]:
    """``reps`` runs of each configuration: accuracy = truth + the replicate's seed offset
    (shared by all configurations) + own noise (sd ``noise``: 0.005 = 0.5 points); throughput =
    truth × lognormal noise."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, seed_sd, reps)
    runs = []
    for r in range(reps):
        for c in configs:
            config = {"attention": "external", "heads": 2, "mem_size": 16, "norm": "double",
                      "dim": 16, **c}
            acc, speed = truth(config)
            runs.append(Run(config, r, float(acc + offsets[r] + rng.normal(0.0, noise)),
                            float(speed * math.exp(rng.normal(0.0, speed_noise)))))
    return runs


def _attrs(run: Run) -> dict[str, Any]:
    return {"configuration": run.configuration, "replicate": run.replicate,
            "model_config": run.model_config, "params_count": 1000 + run.model_config["mem_size"],
            "flops_per_image": 20_000 + 10 * run.model_config["mem_size"]}


def records(runs: Sequence[Run]) -> list[TrialRecord]:
    return [TrialRecord(i, "COMPLETE", (r.accuracy, r.throughput), r.params, _attrs(r), None,
                        None) for i, r in enumerate(runs)]


def sqlite_study(path: Path, name: str, runs: Sequence[Run], replicates: int) -> str:
    """A real Optuna study in a SQLite file holding ``runs`` as COMPLETE trials."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=name,
                                directions=["maximize", "maximize"])
    study.set_metric_names(["accuracy", "throughput"])
    space = {k: sorted({r.params[k] for r in runs if k in r.params}) for k in SEARCHED}
    space = {k: v for k, v in space.items() if v}
    study.set_user_attr("explore_settings", {
        "study": {"sampler": "grid", "seed": 3, "confidence": 0.95, "replicates": replicates},
        "data": {"dataset": "digits"}, "train": {"epochs": 5}, "space": space})
    distributions = {k: CategoricalDistribution(v) for k, v in space.items()}
    for r in runs:
        study.add_trial(optuna.trial.create_trial(
            params=r.params, distributions={k: distributions[k] for k in r.params},
            values=[r.accuracy, r.throughput], user_attrs=_attrs(r)))
    return url


def norm_truth(effect: float) -> Callable[[dict[str, Any]], tuple[float, float]]:
    """double is ``effect`` more accurate than softmax; accuracy flat in S; img/s ∝ 1/S."""
    def truth(c: dict[str, Any]) -> tuple[float, float]:
        acc = 0.90 + 0.002 * c["heads"] + (effect if c["norm"] == "double" else 0.0)
        return acc, 64_000 / c["mem_size"] / c["heads"] ** 0.5
    return truth


NORM_GRID = grid(mem_size=[8, 16, 32, 64], heads=[1, 2], norm=["softmax", "double"])


def _numbers(text: str) -> list[float]:
    return [float(x.replace(MINUS, "-")) for x in re.findall(NUMBER, text)]


# ---- the questions ---------------------------------------------------------------------------


def test_double_truly_better_is_claimed_with_an_interval_excluding_zero() -> None:
    runs = simulate(NORM_GRID, norm_truth(0.01), reps=4, seed=1)
    findings = analyze(records(runs))
    q = findings.norm
    assert findings.noise_known and (findings.configs, findings.runs) == (16, 64)
    acc = q.accuracy
    assert acc is not None and acc.low is not None and acc.high is not None
    assert (acc.pairs, acc.differences) == (8, 32)
    assert 0 < acc.low < 0.01 < acc.high  # excludes 0, covers the truth
    assert acc.p_better is not None and acc.p_better > 0.99
    assert acc.scope == "measured" and acc.df == 48  # the pooled seed noise: 16 x (4 - 1)
    assert q.verdict.startswith("double is ") and (
        "points more accurate than softmax over the 8 pairs measured [" in q.verdict)
    mean, low, high = _numbers(q.verdict.replace("the 8 pairs", "the pairs"))
    assert (mean, low, high) == pytest.approx((100 * acc.mean, 100 * acc.low, 100 * acc.high),
                                              abs=0.051)
    # Throughput: double and softmax are equally fast here, and the ratio says so.
    assert q.throughput.startswith("no throughput difference detectable between double and "
                                   "softmax over the 8 pairs measured: \u00d7[")
    # The space's interval (t over the 8 pairs) is a detail, and wider.
    space = q.accuracy_space
    assert space is not None and space.scope == "space" and space.df == 7
    assert any(d.startswith("over the space's pairs, of which these 8 are a sample")
               for d in q.details)
    speed = q.speed
    assert speed is not None and speed.ratio_low is not None and speed.ratio_high is not None
    assert speed.ratio_low < 1 < speed.ratio_high
    assert f"P(double is more accurate than softmax) = {acc.p_better:.2f}" in q.details
    assert any(d.startswith("power: the smallest difference this study could detect")
               for d in q.details)
    assert finding_lines(records(runs))[0] == (f"Double normalization vs softmax: {q.verdict}; "
                                               f"{q.throughput}")


def test_a_tie_says_no_difference_and_how_many_seeds_would_resolve_02_points() -> None:
    runs = simulate(NORM_GRID, norm_truth(0.0), reps=4, seed=2)
    q = analyze(records(runs)).norm
    acc = q.accuracy
    assert acc is not None and acc.low is not None and acc.high is not None
    assert acc.low < 0 < acc.high
    assert q.verdict.startswith("no difference detectable between double and softmax over the "
                                "8 pairs measured: [")
    low, high, power = _numbers(q.verdict.replace("the 8 pairs", "the pairs"))
    assert low < 0 < high
    assert acc.detectable is not None
    assert power == pytest.approx(100 * acc.detectable, abs=0.051)
    seeds = acc.seeds_needed(RESOLVE)
    assert seeds is not None and seeds > 4  # 0.2 points is below what 4 seeds can resolve
    assert f"resolving 0.2 points would need {seeds} seeds per pair (this study has 4)" in (
        q.details)
    assert "more accurate" not in q.line


def test_one_run_each_claims_nothing_even_with_a_large_effect() -> None:
    runs = simulate(NORM_GRID, norm_truth(0.03), reps=1, seed=3)
    findings = analyze(records(runs))
    assert not findings.noise_known
    for q in findings.questions[:3]:
        assert "the seed noise is unknown (every configuration has one run)" in q.verdict
        assert "nothing claimed" in q.verdict and not q.throughput
        assert not re.search(r"more accurate|rises|falls|as fast", q.verdict)
    assert findings.norm.accuracy is not None
    observed = findings.norm.accuracy.mean
    assert f"observed double \u2212 softmax: +{100 * observed:.1f} points" in findings.norm.verdict
    assert all("nothing claimed" in line or "cannot" in line
               for line in finding_lines(records(runs)))


def _s_truth(slope: float, bend: float = 0.0) -> Callable[[dict[str, Any]],
                                                          tuple[float, float]]:
    """Accuracy ``slope`` per doubling of S (8 to 64) plus a non-monotonic bend without any
    linear part (+, -, -, +: high at both ends); img/s ∝ 1/S."""
    def truth(c: dict[str, Any]) -> tuple[float, float]:
        step = round(math.log2(c["mem_size"] / 8))
        return (0.9 + slope * step + bend * (1, -1, -1, 1)[step], 64_000 / c["mem_size"])
    return truth


def test_a_trend_over_s_is_claimed_only_when_its_interval_excludes_zero() -> None:
    configs = grid(mem_size=[8, 16, 32, 64], heads=[1, 2, 4])
    rising = analyze(records(simulate(configs, _s_truth(0.005), reps=3, seed=4))).mem_size
    e = rising.accuracy
    assert e is not None and e.low is not None and e.low > 0
    assert rising.verdict.startswith("accuracy rises ") and (
        "per doubling of S in the 3 groups measured [" in rising.verdict)
    assert rising.throughput.startswith("throughput changes \u00d70.5")
    speed = rising.speed
    assert speed is not None and speed.ratio_low is not None and speed.ratio_high is not None
    assert speed.ratio_low < 0.5 < speed.ratio_high or speed.ratio == pytest.approx(0.5, rel=0.02)
    assert [lv.value for lv in rising.levels] == [8, 16, 32, 64]
    assert [(lv.configs, lv.runs) for lv in rising.levels] == [(3, 9)] * 4
    flat = analyze(records(simulate(configs, _s_truth(0.0, bend=0.003), reps=3,
                                    seed=5))).mem_size
    f = flat.accuracy
    assert f is not None and f.low is not None and f.high is not None and f.low < 0 < f.high
    assert flat.verdict.startswith("no trend detectable over S in the 3 groups measured: [")
    means = [lv.accuracy.mean for lv in flat.levels]  # the table is not monotonic
    assert means != sorted(means) and means != sorted(means, reverse=True)
    # 12 single runs with a non-monotonic table: no trend is claimed at all.
    few = analyze(records(simulate(configs, _s_truth(0.0, bend=0.003), reps=1, seed=6)))
    assert "nothing claimed" in few.mem_size.verdict and "falls" not in few.mem_size.verdict


def test_heads_with_one_value_and_configurations_without_pairs() -> None:
    runs = simulate(grid(mem_size=[8, 16], norm=["softmax", "double"]), norm_truth(0.0), 2, 7)
    findings = analyze(records(runs))
    assert findings.heads.verdict == "only heads = 2 was tried: no effect of heads can be read"
    assert findings.attention.verdict.startswith("only external-attention configurations "
                                                 "completed: external and self-attention cannot")
    unpaired = [r for r in runs if (r.model_config["mem_size"], r.model_config["norm"])
                in ((8, "double"), (16, "softmax"))]
    q = analyze(records(unpaired)).norm
    assert q.verdict.startswith("no pairs: no two configurations differ only in double vs "
                                "softmax") and q.accuracy is None


EASA_CONFIGS = [*grid(attention=["external"], mem_size=[8, 16], heads=[1, 2, 4]),
                *grid(attention=["self"], heads=[1, 2, 4])]


def easa_truth(c: dict[str, Any]) -> tuple[float, float]:
    """SA is 1 point more accurate; EA twice as fast."""
    ea = c["attention"] == "external"
    return 0.92 - (0.01 if ea else 0.0), (4000.0 if ea else 2000.0) * c["heads"] ** -0.5


def test_ea_vs_sa_pairs_ignore_s_and_norm_and_give_the_speed_ratio() -> None:
    findings = analyze(records(simulate(EASA_CONFIGS, easa_truth, reps=3, seed=8)))
    q = findings.attention
    assert q.accuracy is not None and q.accuracy.pairs == 3  # one per heads value
    assert q.verdict.startswith("SA is ") and (
        "points more accurate than EA over the 3 pairs measured [" in q.verdict)
    assert q.throughput.startswith("EA is ") and (
        "x as fast as SA over the 3 pairs measured [" in q.throughput)
    assert q.speed is not None and q.speed.ratio_low is not None and q.speed.ratio_high is not None
    assert q.speed.ratio_low < 2.0 < q.speed.ratio_high
    assert [(k.kind, k.configs, k.runs) for k in findings.kinds] == [("external", 6, 18),
                                                                     ("self", 3, 9)]


# ---- the report ------------------------------------------------------------------------------


def _section(text: str, start: str, end: str | None) -> str:
    return text[text.index(start):text.index(end) if end else None]


def test_report_front_is_the_plausible_one_with_intervals_in_percent(tmp_path: Path) -> None:
    runs = simulate(NORM_GRID, norm_truth(0.01), reps=4, seed=1)
    url = sqlite_study(tmp_path / "s.db", "paired", runs, replicates=4)
    text = write_report(url, "paired", tmp_path / "paired.md").read_text()
    front = configured_front(records(runs), 0.95, seed=3)
    section = _section(text, "## Pareto front over configurations", "### Optuna's observed")
    assert "16 configurations, 64 runs (4 per configuration)" in section
    rows = [line for line in section.splitlines() if line.startswith("| S")]
    assert len(rows) == len(front.front.plausible) > 0
    for c in front.ordered(front.front.plausible):
        e = front.estimate(c.key)
        assert e.accuracy.low is not None and e.accuracy.high is not None
        cells = (f"| {100 * e.accuracy.mean:.2f}% [{100 * e.accuracy.low:.2f}%, "
                 f"{100 * e.accuracy.high:.2f}%] | {e.throughput.mean:,.0f} [")
        assert cells in section
        assert f"| {front.front.probability[c.key]:.2f} |" in section
    undecided = 16 - len(front.front.plausible) - len(front.front.dominated)
    assert (f"{len(front.front.dominated)} confidently dominated (P(front) <= 0.05) and "
            f"{undecided} undecided") in section
    observed = _section(text, "### Optuna's observed front (study.best_trials), single runs",
                        "## Hypervolume history")
    for t in load_url(url, "paired").best_trials:
        assert f"| {t.number} | S{t.params['mem_size']}/h{t.params['heads']}/" in observed
        assert f"{100 * t.values[0]:.2f}%" in observed
    findings = _section(text, "## Findings", None)
    assert "Double is " in findings and (
        "points more accurate than softmax over the 8 pairs measured [" in findings)
    assert "P(double is more accurate than softmax) = " in findings
    for part in (section, observed, findings):
        assert not FRACTION.search(part), FRACTION.search(part)
    for r in runs:
        assert f"{r.accuracy:.4f}" not in text


def load_url(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def test_report_of_single_runs_says_the_noise_is_unknown(tmp_path: Path) -> None:
    runs = simulate(NORM_GRID, norm_truth(0.03), reps=1, seed=3)
    url = sqlite_study(tmp_path / "s.db", "single", runs, replicates=1)
    text = write_report(url, "single", tmp_path / "single.md").read_text()
    section = _section(text, "## Pareto front over configurations", "### Optuna's observed")
    assert ("Every configuration has one run: the seed noise is unknown, so no interval can be "
            "given and the front below is the observed one") in section
    assert "P(front)" not in section and "[" not in section.split("|", 1)[1]
    findings = _section(text, "## Findings", None)
    assert "nothing below is claimed" in findings
    assert not re.search(r"more accurate than|rises \d|falls \d|as fast as", findings)
    assert "interval |" not in findings  # no effect table
    for part in (section, findings):
        assert not FRACTION.search(part)


def test_html_report_states_the_speed_ratio_with_its_interval(tmp_path: Path) -> None:
    runs = simulate(EASA_CONFIGS, easa_truth, reps=3, seed=8)
    url = sqlite_study(tmp_path / "s.db", "easa", runs, replicates=3)
    out = write_report(url, "easa", tmp_path / "easa.html")
    text = out.read_text()
    q = analyze(records(runs)).attention
    assert f"<p>{html.escape(q.verdict[:1].upper() + q.verdict[1:])}.</p>" in text
    assert f"<p>{html.escape(q.throughput[:1].upper() + q.throughput[1:])}.</p>" in text
    assert "<td>img/s EA/SA</td>" in text and "<td>accuracy EA \u2212 SA</td>" in text
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 1  # no history: one image
    assert set(tmp_path.iterdir()) == {tmp_path / "s.db", out}  # images embedded, none beside


# ---- the report of real studies made by `explore study run` ----------------------------------


def _trials(studies: Studies, name: str) -> list[TrialRecord]:
    with open_catalog(studies.url) as catalog:
        return catalog.trials(catalog.study(name))


def _by_config(trials: Sequence[TrialRecord]) -> dict[tuple[Any, ...], dict[int, float]]:
    """(S, heads, norm) -> replicate index -> accuracy, straight from the trials."""
    out: dict[tuple[Any, ...], dict[int, float]] = {}
    for t in trials:
        if t.state == "COMPLETE" and t.values and not t.is_duplicate:
            key = (t.params["mem_size"], t.params["heads"], t.params["norm"])
            out.setdefault(key, {}).setdefault(t.user_attrs.get("replicate", 0), t.values[0])
    return out


def test_grid_study_pairs_every_configuration(studies: Studies) -> None:
    # The study's replicate policy is the default one: the numbers are read from its trials.
    trials = _trials(studies, "grid")
    findings = analyze(trials)
    runs = _by_config(trials)
    assert (findings.configs, findings.runs) == (len(runs), sum(map(len, runs.values())))
    assert findings.noise_known == any(len(r) > 1 for r in runs.values())
    units = []
    for (s, h, norm), a in runs.items():
        b = runs.get((s, h, "softmax"))
        if norm == "double" and b:
            shared = sorted(set(a) & set(b))
            units.append((statistics.fmean(a[i] - b[i] for i in shared) if shared
                          else statistics.fmean(a.values()) - statistics.fmean(b.values()),
                          statistics.fmean(a.values()) - statistics.fmean(b.values())))
    acc = findings.norm.accuracy
    assert acc is not None and acc.pairs == len(units) > 0
    # With the noise known the verdict is over the measured pairs (differences of the sides'
    # means over all their runs); the space's estimate pairs shared seeds.
    space = findings.norm.accuracy_space if findings.noise_known else acc
    assert space is not None and space.scope == "space"
    assert space.mean == pytest.approx(statistics.fmean(u for u, _ in units))
    if findings.noise_known:
        assert acc.scope == "measured"
        assert acc.mean == pytest.approx(statistics.fmean(m for _, m in units))
    assert ("nothing claimed" in findings.norm.verdict) == (not findings.noise_known)
    assert {lv.value for lv in findings.mem_size.levels} <= {8, 16}
    assert findings.attention.accuracy is None
    assert "only external-attention configurations completed" in findings.attention.verdict


def test_markdown_report(studies: Studies, tmp_path: Path) -> None:
    out = write_report(studies.url, "grid", tmp_path / "grid.md")
    text = out.read_text()
    for heading in ("# Study grid", "## Summary", "## Pareto front over configurations",
                    "### Optuna's observed front (study.best_trials), single runs",
                    "## Hypervolume history", "## Findings",
                    "### Double normalization vs softmax", "### Memory size S", "### Heads",
                    "### External vs self-attention"):
        assert heading in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / image).read_bytes()[:8] == PNG_MAGIC
    assert "grid-front.png" in text and "grid-history.png" in text
    for t in load(studies, "grid").best_trials:
        assert f"| {t.number} | S{t.params['mem_size']}/h{t.params['heads']}/" in text
        assert f"{100 * t.values[0]:.2f}%" in text and f"{t.values[0]:.4f}" not in text
    if analyze(_trials(studies, "grid")).noise_known:
        assert "| P(front) |" in text
    else:
        assert "the seed noise is unknown" in text and "observed double \u2212 softmax" in text
    for part in (_section(text, "## Pareto front over", "## Hypervolume history"),
                 _section(text, "## Findings", None)):
        assert not FRACTION.search(part)


def test_html_report_is_self_contained(studies: Studies, tmp_path: Path) -> None:
    out = write_report(studies.url, "easa", tmp_path / "easa.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 2
    assert all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    assert "<h2>Findings</h2>" in text and "<h3>External vs self-attention</h3>" in text
    assert list(tmp_path.iterdir()) == [out]


def test_report_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.md or \.html"):
        write_report(studies.url, "grid", tmp_path / "r.pdf")
    with pytest.raises(StudyNotFound):
        write_report(studies.url, "nope", tmp_path / "r.md")
    assert list(tmp_path.iterdir()) == []
