"""A study measures every throughput with the same torch thread count, however many workers a
run uses: with ``[measure] threads = 0`` (cores / workers) a study begun by one worker on all
cores and continued with ``--workers 2`` keeps measuring on all cores, so its throughputs stay
comparable (training still uses one thread per worker)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from explore.config import Settings
from explore.engine.device import torch_threads, usable_cpus
from explore.run.runner import measure_threads
from tests.conftest import EXPLORE, clean_env, write_tiny_config


def _trial(threads: int, duplicate_of: int | None = None) -> optuna.trial.FrozenTrial:
    attrs: dict[str, object] = {"throughput": {"threads": threads}}
    if duplicate_of is not None:
        attrs["duplicate_of"] = duplicate_of
    return create_trial(values=[0.5, 1000.0], params={"x": 1},
                        distributions={"x": IntDistribution(0, 9)}, user_attrs=attrs)


def test_the_first_measured_trial_sets_the_count() -> None:
    study = optuna.create_study(directions=["maximize", "maximize"])
    assert measure_threads(Settings(), study) == 0  # new study: the process's own count
    study.add_trial(_trial(1, duplicate_of=7))  # a duplicate copies another trial's figure
    study.add_trial(_trial(1))
    study.add_trial(_trial(2))
    assert measure_threads(Settings(), study) == 1
    assert measure_threads(Settings.from_dict({"measure": {"threads": 3}}), study) == 3
    other = optuna.create_study(directions=["maximize", "maximize"])
    other.add_trial(_trial(10_000))  # measured on a bigger machine: at most this one's CPUs
    assert measure_threads(Settings(), other) == usable_cpus()


def test_torch_threads_restores_the_count() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before


@pytest.mark.slow
@pytest.mark.skipif(usable_cpus() < 2, reason="needs 2 CPUs: one worker per core must differ "
                                               "from one worker on all cores")
def test_a_study_continued_with_more_workers_measures_as_it_began(tmp_path: Path) -> None:
    write_tiny_config(tmp_path, space="mem_size = [8, 16, 32]\nheads = [1, 2]", threads=0)

    def run(trials: int, workers: str) -> None:
        proc = subprocess.run([str(EXPLORE), "study", "run", "--name", "t", "--config",
                               "tiny.toml", "--epochs", "1", "--trials", str(trials),
                               "--workers", workers, "--warm-start", "0", "-f", "json"],
                              cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["finished"] == trials

    run(1, "1")
    run(4, "2")
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'explore.db'}")
    measured = [t.user_attrs["throughput"]["threads"] for t in study.trials
                if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(measured) == 4
    assert set(measured) == {usable_cpus()}
