"""The findings (double vs softmax, S, heads, EA vs SA) and the report that states them."""

from __future__ import annotations

import base64
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from browse_helpers import Studies, load

from studies.analysis import (
    MIN_PAIRS,
    Observation,
    analyze,
    factor_effect,
    paired,
    spearman,
)
from studies.catalog import TrialRecord, open_catalog
from studies.errors import StudyNotFound, UsageError
from studies.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def obs(number: int, acc: float, thr: float, **config: Any) -> Observation:
    return Observation(number, {"attention": "external", **config}, acc, thr)


def test_pairs_are_formed_by_equal_other_settings() -> None:
    data = [
        obs(0, 0.90, 100, mem_size=8, heads=1, norm="double"),
        obs(1, 0.88, 200, mem_size=8, heads=1, norm="softmax"),
        obs(2, 0.80, 100, mem_size=16, heads=1, norm="double"),
        obs(3, 0.82, 50, mem_size=16, heads=1, norm="softmax"),
        obs(4, 0.70, 100, mem_size=32, heads=1, norm="double"),  # no partner
        obs(5, 0.86, 200, mem_size=8, heads=1, norm="softmax"),  # a repeat: averaged
    ]
    effect = paired(data, "norm", "double", "softmax", "q")
    assert effect.pairs == 2
    diffs = [0.90 - 0.87, 0.80 - 0.82]
    assert effect.mean_accuracy_diff == pytest.approx(statistics.fmean(diffs))
    assert (effect.a_better, effect.b_better) == (1, 1)
    assert effect.throughput_ratio == pytest.approx((0.5 * 2.0) ** 0.5)
    assert "too few to conclude" in effect.verdict


def test_enough_consistent_pairs_give_a_conclusion() -> None:
    data = []
    for i, s in enumerate((8, 16, 32, 64)):
        data += [obs(2 * i, 0.9, 100, mem_size=s, norm="double"),
                 obs(2 * i + 1, 0.8, 110, mem_size=s, norm="softmax")]
    effect = paired(data, "norm", "double", "softmax", "q")
    assert effect.pairs == 4 >= MIN_PAIRS
    assert effect.verdict.startswith("double was more accurate in every one of 4 pairs")
    assert "+10.00 accuracy points" in effect.verdict


def test_no_pairs_says_the_data_cannot_answer() -> None:
    data = [obs(0, 0.9, 1, mem_size=8, norm="double"), obs(1, 0.8, 1, mem_size=16,
                                                             norm="softmax")]
    effect = paired(data, "norm", "double", "softmax", "q")
    assert effect.pairs == 0 and "cannot answer" in effect.verdict


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)


def test_factor_effects_and_too_few() -> None:
    data = [obs(i, 0.5 + 0.01 * s, 1000 / s, mem_size=s) for i, s in enumerate([8, 16, 32, 64,
                                                                                 128, 8])]
    effect = factor_effect(data, "mem_size", "S")
    assert effect is not None
    assert [lv.value for lv in effect.levels] == [8, 16, 32, 64, 128]
    assert effect.levels[0].trials == 2
    assert effect.rho_accuracy == pytest.approx(1.0)
    assert effect.rho_throughput == pytest.approx(-1.0)
    assert "accuracy rises with S" in effect.verdict
    assert "throughput falls with S" in effect.verdict
    few = factor_effect(data[:3], "mem_size", "S")
    assert few is not None and "too few to conclude" in few.verdict
    one = factor_effect([obs(0, 0.5, 1, mem_size=8)] * 6, "mem_size", "S")
    assert one is not None and "only one value" in one.verdict


def _trials(studies: Studies, name: str) -> tuple[list[TrialRecord], set[int]]:
    with open_catalog(studies.url) as catalog:
        meta = catalog.study(name)
        trials = catalog.trials(meta)
    return trials, {t.number for t in load(studies, name).best_trials}


def test_grid_study_pairs_every_configuration(studies: Studies) -> None:
    trials, front = _trials(studies, "grid")
    findings = analyze(trials, front)
    assert findings.trials_used == 8
    assert findings.norm is not None and findings.norm.pairs == 4  # S × heads
    by_config = {(t.params["mem_size"], t.params["heads"], t.params["norm"]): t.values
                 for t in trials if t.values}
    diffs = [by_config[(s, h, "double")][0] - by_config[(s, h, "softmax")][0]
             for s in (8, 16) for h in (1, 2)]
    assert findings.norm.mean_accuracy_diff == pytest.approx(statistics.fmean(diffs))
    assert findings.mem_size is not None and findings.mem_size.trials == 8
    assert findings.heads is not None
    assert findings.attention is None and "only external" in findings.attention_note


def test_ea_vs_sa_study_has_too_few_pairs(studies: Studies) -> None:
    trials, front = _trials(studies, "easa")
    findings = analyze(trials, front)
    assert findings.attention is not None and findings.attention.pairs == 2
    assert "too few to conclude" in findings.attention.verdict
    assert [k.kind for k in findings.kinds] == ["external", "self"]
    assert findings.norm is None and "only double" in findings.norm_note


def test_markdown_report(studies: Studies, tmp_path: Path) -> None:
    out = write_report(studies.url, "grid", tmp_path / "grid.md")
    text = out.read_text()
    for heading in ("# Study grid", "## Summary", "## Pareto front", "## Hypervolume history",
                    "## Findings", "### Double normalization vs softmax", "### Memory size S",
                    "### Heads", "### External vs self-attention"):
        assert heading in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / image).read_bytes()[:8] == PNG_MAGIC
    assert "grid-front.png" in text and "grid-history.png" in text
    for t in load(studies, "grid").best_trials:
        assert f"| {t.number} | external |" in text
    assert "of 4 pairs favour double" in text


def test_html_report_is_self_contained(studies: Studies, tmp_path: Path) -> None:
    out = write_report(studies.url, "easa", tmp_path / "easa.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 2
    assert all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    assert "too few to conclude" in text
    assert list(tmp_path.iterdir()) == [out]


def test_report_errors(studies: Studies, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.md or \.html"):
        write_report(studies.url, "grid", tmp_path / "r.pdf")
    with pytest.raises(StudyNotFound):
        write_report(studies.url, "nope", tmp_path / "r.md")
    assert list(tmp_path.iterdir()) == []
