"""The training benchmarks run end to end on the CPU (tiny settings) and print what they promise.
Their figures are not asserted: speed is judged from their output on a quiet machine, never here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_precision_compares_fp32_and_bf16_for_each_model() -> None:
    out = _run("precision.py", "--models", "default", "--epochs", "1", "--repeats", "1",
               "--images", "320")
    row = next(line for line in out.splitlines() if line.startswith("| default |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    fp32_infer, bf16_infer, infer_ratio = float(cells[2]), float(cells[3]), float(cells[4])
    fp32_train, bf16_train, train_ratio = float(cells[5]), float(cells[6]), float(cells[7])
    assert min(fp32_infer, bf16_infer, fp32_train, bf16_train) > 0
    assert infer_ratio == pytest.approx(bf16_infer / fp32_infer, abs=0.01)
    assert train_ratio == pytest.approx(bf16_train / fp32_train, abs=0.01)
    accuracies = [float(a) for a in cells[8].split(",")]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)


def test_precision_refuses_an_unknown_model() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "precision.py"),
                           "--models", "huge"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 2 and "--models huge" in proc.stderr


def test_train_speed_compares_explore_with_the_dataloader_loop() -> None:
    out = _run("train_speed.py", "--epochs", "1", "--repeats", "1", "--no-machine")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| (\d+) \|", out, re.M)}
    assert set(rows) == {"explore trainer", "DataLoader loop"}  # no CUDA-only rows on the CPU
    ratio = float(re.search(r"images/s trained: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert ratio == pytest.approx(int(rows["explore trainer"]) / int(rows["DataLoader loop"]),
                                  rel=0.01)


def test_epoch_bookkeeping_compares_saving_every_epoch_with_the_interval() -> None:
    out = _run("epoch_bookkeeping.py", "--models", "fast", "--repeats", "1", "--trials", "2",
               "--epochs", "3")
    rows = re.findall(r"^\| fast \| (each epoch|default \(1 s\)) \| ([\d.]+) s \| ([\d.]+) ms \| "
                      r"([\d.]+) ms \| ([\d.]+) \|$", out, re.M)
    assert [r[0] for r in rows] == ["each epoch", "default (1 s)"]
    (_, wall_each, _, other_each, acc_each), (_, wall_default, _, other_default, acc_default) = rows
    assert acc_each == acc_default  # the same trials, trained the same: only saving differs
    ratio = float(re.search(r"each epoch / default = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert ratio == pytest.approx(float(wall_each) / float(wall_default), rel=0.03)  # rounding
    assert float(other_each) > 0 and float(other_default) > 0


def test_throughput_reuse_runs_the_same_study_with_and_without_reuse() -> None:
    out = _run("throughput_reuse.py", "--trials", "3", "--repeats", "1", "--epochs", "1")
    rows = dict(re.findall(r"^\| (reuse off|reuse on \(default\)) \| [\d.]+ s \| ([\d/]+) of 3 \|",
                           out, re.M))
    assert set(rows) == {"reuse off", "reuse on (default)"}
    assert rows["reuse off"] == "3"  # without reuse every trial measures its own throughput
    assert 1 <= int(rows["reuse on (default)"]) <= 3  # the first of an architecture measures
    assert re.search(r"reuse off / on: [\d.]+$", out, re.M)


def test_racing_policy_simulates_racing_against_fixed_k() -> None:
    out = _run("racing_policy.py", "--seeds", "1")
    checkpoints = [20, 40, 60, 80, 120]  # the default budget, 40, 2/3 and 1/2 of 120, 120
    table: dict[str, list[list[str]]] = {}
    for search in ("race", "front-first", "fixed K = 3"):
        rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
                if line.startswith(f"| {search} |")]
        # A race that stops early (every configuration decided) has no rows past its end.
        assert [int(r[1]) for r in rows] == checkpoints[:len(rows)] and len(rows) >= 3, out
        explored = [float(r[2]) for r in rows]
        assert explored == sorted(explored) and explored[-1] == 40.0  # all 40 by the end
        table[search] = rows
    # Fixed K's own answer at its full budget is the reference: it holds all of it.
    assert table["fixed K = 3"][-1][-2:] == ["100%", "100%"], out
    needed = dict(re.findall(r"^- (race|front-first): (\d+|never); median ratio", out, re.M))
    assert set(needed) == {"race", "front-first"}, out
    assert all(n == "never" or 0 < int(n) <= 120 for n in needed.values())
    verdict = re.search(r"^goal: racing's median ratio <= 0.50: (PASS|FAIL)$", out, re.M)
    assert verdict and (verdict.group(1) == "PASS") == (needed["race"] != "never"
                                                        and int(needed["race"]) <= 60), out


def test_reference_pairing_reads_one_study_both_ways(tmp_path: Path) -> None:
    out = _run("reference_pairing.py", "--workdir", str(tmp_path), "--trials", "4",
               "--replicates", "2", "--epochs", "1")
    rows = {m.group(1): (float(m.group(2)), int(m.group(3)), int(m.group(4)))
            for m in re.finditer(r"^\| (measured images/s|the reference) \| ([\d.]+) \(df (\d+)\)"
                                 r" \| [\d.]+ \| (\d+) of \d+ \|", out, re.M)}
    assert set(rows) == {"measured images/s", "the reference"}, out
    # The same trials, pooled the same way: equal degrees of freedom (runs beyond the first).
    assert rows["measured images/s"][1] == rows["the reference"][1] >= 1
    share = float(re.search(r"with the reference / without: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # (the printed noise figures have three significant digits, the share two decimals)
    assert share == pytest.approx(rows["the reference"][0] / rows["measured images/s"][0],
                                  rel=0.02, abs=0.006)
    assert (tmp_path / "reference.db").exists()
