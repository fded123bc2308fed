"""The repeatability benchmark: its definitions on made-up studies, and one tiny real run whose
every table is printed and whose ratios follow from the counts printed beside them.

Its figures are not asserted: whether racing meets the issue's goals is read off a full-scale
run on a quiet machine, never here.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE, TrialRecord
from tests.conftest import clean_env, write_tiny_config

REPO = Path(__file__).resolve().parent.parent

TABLES = ("## runs", "## contradictions", "## 95% intervals", "## sharpness", "## decisions",
          "## double vs softmax", "## plausible fronts' overlap", "## what racing saves",
          "## the default demo")


def _load() -> ModuleType:
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))  # as when the script runs: `_common`
    spec = importlib.util.spec_from_file_location("repeatability",
                                                  REPO / "benchmarks" / "repeatability.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


rp = _load()


def _study(name: str, runs: list[tuple[str, int, float, float]], seed: int = 0) -> Any:
    """A study of ``(heads, replicate, accuracy, throughput)`` runs, in trial order. The
    configuration keys carry the study's name, as real keys carry the study seed."""
    records = [TrialRecord(number=i, state="COMPLETE", values=(acc, thr),
                           params={"heads": heads},
                           user_attrs={ATTR_CONFIGURATION: f"{name}-{heads}",
                                       ATTR_REPLICATE: r},
                           datetime_start=None, datetime_complete=None)
               for i, (heads, r, acc, thr) in enumerate(runs)]
    run = rp.Run(name, "race", "race", seed, len(runs), f"{name}.db")
    return rp.Study(run, records, 0.95, seed)


def _replicated(name: str, designs: dict[str, tuple[float, float]], k: int,
                jitter: float = 0.002) -> Any:
    """Every design ``k`` times, replicate by replicate, with a little alternating noise."""
    runs = []
    for r in range(k):
        sign = 1 if r % 2 == 0 else -1
        for heads, (acc, thr) in designs.items():
            runs.append((heads, r, acc + sign * jitter, thr * (1 + sign * jitter)))
    return _study(name, runs)


def test_budgets_double_from_the_default_and_end_at_the_total() -> None:
    assert rp.budgets(120, 20) == [10, 20, 40, 80, 120]
    assert rp.budgets(20, 20) == [10, 20]
    assert rp.budgets(8, 6) == [3, 6, 8]
    assert rp.budgets(4, 6) == [3, 4]


def test_single_seed_front_members_are_claims_and_the_rest_denials() -> None:
    # Run a names "1" best; run b finds "2" better in both objectives: a's claim is contradicted.
    a = _study("a", [("1", 0, 0.95, 1000.0), ("2", 0, 0.90, 900.0), ("4", 0, 0.80, 800.0)])
    b = _study("b", [("1", 0, 0.90, 900.0), ("2", 0, 0.95, 1000.0), ("8", 0, 0.99, 100.0)])
    # a claims "1" (checkable, b dominates it); b claims "2" (a dominates it) and "8" (a never
    # ran it: not checkable). Matched by params although every key differs.
    assert rp.contradictions([a, b]) == (3, 2, 2)


def test_replicated_runs_that_agree_contradict_nothing_and_overlap() -> None:
    designs = {"1": (0.95, 1000.0), "2": (0.80, 500.0), "4": (0.70, 300.0), "8": (0.99, 100.0)}
    a, b = _replicated("a", designs, 3), _replicated("b", designs, 3)
    claims, checkable, contradicted = rp.contradictions([a, b])
    assert claims == checkable > 0 and contradicted == 0
    assert rp.interval_overlap([a, b], "accuracy") == (4, 4)
    assert rp.interval_overlap([a, b], "throughput") == (4, 4)
    front = a.front()
    assert front.dominated == {'{"heads": "2"}', '{"heads": "4"}'}
    assert front.plausible == {'{"heads": "1"}', '{"heads": "8"}'}


def test_runs_to_match_is_where_racing_settles_on_the_reference() -> None:
    designs = {"1": (0.95, 1000.0), "2": (0.80, 500.0), "4": (0.70, 300.0), "8": (0.99, 100.0)}
    reference = _replicated("fixed", designs, 3)
    racing = _replicated("race", designs, 3)
    n, (front, held, overlap) = rp.runs_to_match(racing, reference)
    final = reference.front()
    assert n > len(designs)  # with one run each the noise is unknown: nothing matches yet
    for m in range(n, len(racing.trained) + 1):  # it matches from n on ...
        f = racing.front(m)
        assert f.known and len(f.dominated & final.dominated) >= 0.9 * len(final.dominated)
        assert not f.plausible & final.dominated and not final.plausible & f.dominated
        assert rp.sure(final) <= f.plausible and rp.sure(f) <= final.plausible
    assert (held, overlap, True) == rp.matches(racing.front(n), final)
    assert front.dominated == racing.front(n).dominated
    before = racing.front(n - 1)  # ... and not at n - 1
    held_before, _, claims_before = rp.matches(before, final)
    assert not before.known or held_before < 0.9 or not claims_before


def test_fronts_agree_on_claims_not_on_names() -> None:
    # Two designs tie in accuracy and speed: a run that names one of them plausible and leaves the
    # other undecided agrees with a run that names the other; calling a claimed member dominated
    # does not.
    tied = {"1": (0.95, 1000.0), "2": (0.95, 1000.0), "4": (0.70, 300.0)}
    a, b = _replicated("a", tied, 3), _replicated("b", tied, 3)
    fa, fb = a.front(), b.front()
    assert rp.matches(fa, fb)[2] and rp.matches(fb, fa)[2]
    named_other = rp.Front(fa.configs, dict(fa.probability), fa.estimates,
                           {'{"heads": "2"}'}, set(fa.dominated), True)
    fb_one = rp.Front(fb.configs, dict(fb.probability), fb.estimates,
                      {'{"heads": "1"}'}, set(fb.dominated), True)
    assert rp.jaccard(named_other.plausible, fb_one.plausible) == 0.0
    assert rp.matches(named_other, fb_one)[2]  # different names, no claim contradicted
    contradicting = rp.Front(fa.configs, {**fa.probability, '{"heads": "1"}': 0.99},
                             fa.estimates, {'{"heads": "1"}'}, set(fa.dominated), True)
    denying = rp.Front(fb.configs, {**fb.probability, '{"heads": "1"}': 0.01}, fb.estimates,
                       {'{"heads": "2"}'}, {*fb.dominated, '{"heads": "1"}'}, True)
    assert not rp.matches(contradicting, denying)[2] and not rp.matches(denying, contradicting)[2]


def _rows(out: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading``."""
    lines = out[out.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start + 2:]:  # past the header and the separator
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    return table


def _pct(text: str) -> float:
    return float(text.rstrip("%")) / 100.0


def _seconds(text: str) -> float:
    return float(text.removesuffix(" s"))


def _check_counts(out: str) -> None:
    runs = {r[0]: r for r in _rows(out, "## runs")}
    assert set(runs) == {"race-s1", "single-s1", "race-s2", "single-s2", "fixed2-s1",
                         "race-long-s1"}
    assert runs["fixed2-s1"][3:6] == ["8", "8", "4"]  # 2 runs of each of the 4 configurations
    assert all(int(r[4]) <= int(r[3]) for r in runs.values())
    for row in _rows(out, "## contradictions"):
        claims, checkable, contradicted = map(int, row[1:4])
        assert contradicted <= checkable <= claims
        if checkable:
            assert _pct(row[4]) == pytest.approx(contradicted / checkable, abs=6e-4)
    for row in _rows(out, "## 95% intervals"):
        shared, overlapping = int(row[1]), int(row[2])
        assert overlapping <= shared
        if shared:
            assert _pct(row[3]) == pytest.approx(overlapping / shared, abs=6e-4)
            assert row[5] == ("PASS" if overlapping / shared >= 0.9 else "FAIL")
    for row in _rows(out, "## decisions"):
        configs, dominated = int(row[1]), int(row[2])
        assert _pct(row[3]) == pytest.approx(dominated / configs, abs=6e-4)
        assert configs == int(runs[row[0]][5])
    for row in _rows(out, "## plausible fronts' overlap"):
        shared, union = int(row[4]), int(row[5])
        assert float(row[6]) == pytest.approx(shared / union, abs=0.006)
    saving = _rows(out, "## what racing saves")
    assert saving[0][1] == "8"
    if saving[0][4].isdigit():
        assert saving[0][7] == "yes"  # matched: the fronts agree on every claim
        assert float(saving[0][9]) == pytest.approx(int(saving[0][4]) / 8, abs=0.006)
        assert saving[0][11] == ("PASS" if int(saving[0][4]) / 8 <= 0.5 else "FAIL")
    else:
        assert saving[0][11] == "FAIL"
    against_single = _rows(out, "| seed | single runs")
    assert [r[0] for r in against_single] == ["1", "2"]
    for row in against_single:
        assert int(row[3]) == int(row[2]) - int(row[1])
        racing, single = _seconds(row[7]), _seconds(row[6])  # each rounded to 0.1 s
        low, high = (racing - 0.05) / (single + 0.05), (racing + 0.05) / (single - 0.05)
        assert low - 0.005 <= float(row[8]) <= high + 0.005


@pytest.mark.slow
def test_a_tiny_run_prints_every_table_with_consistent_figures(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, space='norm = ["softmax", "double"]\nheads = [1, 2]')
    env = {**clean_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "repeatability.py"),
                           "--epochs", "1", "--trials", "6", "--fixed-k", "2", "--device", "cpu",
                           "--config", str(config), "--workdir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^machine: .+ cores.+torch", out, re.M)
    for heading in TABLES:
        assert heading in out, heading
    _check_counts(out)
    assert (tmp_path / "runs" / "runs.json").is_file()  # --workdir keeps the databases
    again = subprocess.run([sys.executable, str(REPO / "benchmarks" / "repeatability.py"),
                            "--analyze", str(tmp_path / "runs")], capture_output=True, text=True,
                           timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _rows(again.stdout, "## runs") == _rows(out, "## runs")
