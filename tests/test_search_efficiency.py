"""The search-efficiency benchmark's scoring (issue 7's goal is read off it) and one short real run.

``benchmarks/search_efficiency.py`` decides the default sampler and whether the ≤ 1/3 goal is
met, so its hypervolume, its curves over wall time, the time a curve first reaches baseline A's
final value and the mapping of configuration names to CLI flags are checked here against
independent computations; the slow test runs baseline A and explore's default for real.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # as when the script runs: `_scoring`
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


se = _load("search_efficiency")
sc = sys.modules["_scoring"]  # the scoring module the script itself imported


def _grid_hypervolume(points: list[tuple[float, float]], steps: int = 400) -> float:
    """Brute force: the share of a fine grid over [0, 1]² dominated by some point."""
    covered = 0
    for i in range(steps):
        for j in range(steps):
            x, y = (i + 0.5) / steps, (j + 0.5) / steps
            covered += any(a >= x and t >= y for a, t in points)
    return covered / steps**2


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.random(), rng.random()) for _ in range(rng.randint(1, 8))]
    assert sc.hypervolume(points) == pytest.approx(_grid_hypervolume(points), abs=6e-3)


def test_hypervolume_of_known_fronts() -> None:
    assert sc.hypervolume([]) == 0.0
    assert sc.hypervolume([(0.5, 1.0)]) == pytest.approx(0.5)
    # a dominated point adds nothing; two front points add their union
    assert sc.hypervolume([(0.9, 0.5), (0.5, 1.0), (0.4, 0.4)]) == pytest.approx(
        0.9 * 0.5 + 0.5 * 0.5)


def _run(config: str, points: list[list[object]], seed: int = 0) -> object:
    return sc.Run(config=config, seed=seed, budget=10.0, db="unused", points=points)


ARCH_FAST = {"mem_size": 8, "heads": 1, "norm": "double"}
ARCH_SLOW = {"mem_size": 128, "heads": 8, "norm": "softmax"}


def test_curve_counts_a_trial_from_the_second_it_finished() -> None:
    run = _run("x", [[3.0, 0.9, 500.0, ARCH_SLOW], [6.5, 0.8, 1000.0, ARCH_FAST]])
    grid = [float(t) for t in range(11)]
    values = sc.curve(run, 1000.0, grid)
    assert values[:3] == [0.0, 0.0, 0.0]
    assert values[3] == pytest.approx(0.9 * 0.5)  # only the first trial
    assert values[6] == pytest.approx(0.9 * 0.5)  # the second finishes at 6.5 s
    assert values[7] == pytest.approx(0.9 * 0.5 + 0.8 * 0.5)
    assert sc.first_reach(values, grid, 0.85) == 7.0
    assert sc.first_reach(values, grid, 0.99) is None


def test_curve_with_remeasured_throughput_ignores_the_trials_own_figure() -> None:
    """HV*: every architecture scored by its re-measured throughput, so a lucky measurement
    during the run earns nothing."""
    run = _run("x", [[1.0, 0.9, 9999.0, ARCH_SLOW]])
    remeasured = {json.dumps(ARCH_SLOW, sort_keys=True): 250.0}
    assert sc.curve(run, 1000.0, [0.0, 1.0], remeasured) == [0.0, pytest.approx(0.9 * 0.25)]


def test_analyze_times_each_configuration_to_baseline_as_final_mean() -> None:
    runs = [
        _run(sc.BASELINE_A, [[9.0, 0.8, 1000.0, ARCH_FAST]], seed=0),
        _run(sc.BASELINE_A, [[5.0, 0.6, 1000.0, ARCH_FAST]], seed=1),
        _run("tpe+dedup+warm", [[2.0, 0.75, 1000.0, ARCH_FAST]], seed=0),
        _run("tpe+dedup+warm", [[4.0, 0.65, 1000.0, ARCH_FAST]], seed=1),
        _run("random", [[1.0, 0.1, 1000.0, ARCH_FAST]], seed=0),
    ]
    rows, grid, info = sc.analyze(runs, None)
    assert info["target"] == pytest.approx(0.7)  # mean of A's final values 0.8 and 0.6
    by = {r.config: r for r in rows}
    # explore's mean curve: 0.375 at 2 s, 0.7 at 4 s (mean of 0.75 and 0.65)
    assert by["tpe+dedup+warm"].reach == 4.0
    assert by["tpe+dedup+warm"].reached == 1  # only seed 0's own curve passes 0.7
    assert by[sc.BASELINE_A].reach == 9.0
    assert by["random"].reach is None and by["random"].reached == 0
    assert grid[-1] == 10.0


def test_configuration_names_map_to_the_cli_flags(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    cmd = se.command("gp+prune+dedup+warm", 3, 60.0, tmp_path / "run.db", toml)
    assert cmd[cmd.index("--sampler") + 1] == "gp"
    assert cmd[cmd.index("--seed") + 1] == "3"
    assert cmd[cmd.index("--timeout") + 1] == "60.0"
    assert "--prune" in cmd and "--dedup" in cmd
    assert cmd[cmd.index("--warm-start") + 1] == "3"
    plain = se.command("nsga2", 0, 60.0, tmp_path / "run.db", toml)
    assert "--no-prune" in plain and "--no-dedup" in plain
    assert plain[plain.index("--warm-start") + 1] == "0"
    baseline_b = se.command(se.BASELINE_B, 0, 60.0, tmp_path / "run.db", toml)
    assert baseline_b[baseline_b.index("--sampler") + 1] == "random"
    assert "--no-prune" in baseline_b and "--no-dedup" in baseline_b
    a = se.command(sc.BASELINE_A, 1, 60.0, tmp_path / "run.db", toml)
    assert "--baseline-a" in a and "explore" not in Path(a[0]).name
    with_min = se.command("tpe+prune+min2", 0, 60.0, tmp_path / "run.db", toml)
    assert "prune_min_trials = 2" in Path(with_min[with_min.index("--config") + 1]).read_text()
    for bad in ("tpe+fast", "cmaes", "tpe+min2+min3"):
        with pytest.raises(ValueError):
            se.parse_config(bad)
    assert set(se.all_configs()) >= {f"{s}{o}" for s in se.SAMPLERS
                                     for o in ("", "+prune", "+dedup", "+prune+dedup")}


def test_saved_runs_reload_and_keep_each_architectures_best_remeasure(tmp_path: Path) -> None:
    key = json.dumps(ARCH_FAST, sort_keys=True)
    for name, value in (("a", 900.0), ("b", 1100.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "runs.json").write_text(json.dumps({
            "meta": {"date": name}, "remeasured": {key: value},
            "runs": [{"config": "tpe", "seed": 0, "budget": 10.0, "db": "x",
                      "points": [[1.0, 0.9, 1000.0, ARCH_FAST]]}]}))
    runs, throughput, meta = sc.load_runs([tmp_path / "a", tmp_path / "b"])
    assert len(runs) == 2 and throughput == {key: 1100.0}
    assert meta["date"] == "a, b"


@pytest.mark.slow
def test_a_short_real_benchmark_runs_baseline_a_and_explore(tmp_path: Path) -> None:
    """Both sides for real, side by side, killed at the budget: baseline A's plain Optuna
    script (NSGA-II, a DataLoader loop) and explore's default; their trials are read back
    from the SQLite files with the time they finished."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--budget", "30",
         "--seeds", "1", "--configs", sc.BASELINE_A, "tpe+dedup+warm", "--out", str(out),
         "--png", str(tmp_path / "plot.png"), "--no-remeasure"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((out / "runs.json").read_text())
    runs = {r["config"]: r for r in saved["runs"]}
    assert set(runs) == {sc.BASELINE_A, "tpe+dedup+warm"}
    for run in runs.values():
        assert run["points"], f"{run['config']}: no trial finished in 30 s: {run['stderr_tail']}"
        for seconds, accuracy, throughput, arch in run["points"]:
            assert 0 < seconds <= 30 and 0 < accuracy <= 1 and throughput > 0
            assert set(arch) == {"mem_size", "heads", "norm"}
    # baseline A is a plain Optuna study: NSGA-II's trials, no explore attributes
    with sqlite3.connect(Path(runs[sc.BASELINE_A]["db"])) as con:
        keys = {k for (k,) in con.execute("SELECT key FROM trial_user_attributes")}
    assert not keys
    # explore's first trial is the warm start's fastest anchor
    with sqlite3.connect(Path(runs["tpe+dedup+warm"]["db"])) as con:
        ranks = [v for (v,) in con.execute(
            "SELECT a.value_json FROM trial_user_attributes a JOIN trials t "
            "ON a.trial_id = t.trial_id WHERE a.key = 'warm_start_rank' AND t.number = 0")]
    assert ranks == ["1"]
    assert "| A optuna-nsga2 |" in proc.stdout and (tmp_path / "plot.png").stat().st_size > 0
