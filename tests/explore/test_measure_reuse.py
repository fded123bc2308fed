"""``[measure] reuse``: an architecture measured once on a machine is not measured again.

Trials that differ only in how they train (learning rate, epochs, ...) run the same network at
inference, so a later one takes the first clean (not noisy) figure measured under the same
measurement key and records where it came from; a trial whose key differs (another model,
precision, compile, thread count, measurement settings) measures its own. Studies created
before the option go on measuring every trial.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution

from explore.config import DataSettings, Settings, resolve_settings
from explore.engine.data import load_dataset
from explore.plan import plan_trial
from explore.run.opening import ATTR_SETTINGS, RunRequest, open_study
from explore.search.objective import Objective, WorkerContext
from explore.search.reuse import find_measured
from studies.record import ATTR_MEASURE_KEY, ATTR_MEASURED_BY
from tests.conftest import EXPLORE, clean_env, write_tiny_config

# Four learning rates of each of two architectures. The measurement is steadier than the tiny
# one (10 blocks of 20 ms), so that a figure is seldom flagged noisy and reuse is seen; the
# rule itself is checked whatever the noise. One seed each: every trial is replicate 0, and
# replicates (racing) measure anew by design (tests/explore/test_racing.py).
CONFIG = """\
[study]
replicates = 1

[model]
dim = 16
depth = 1

[measure]
batch_size = 64
warmup = 2
min_iters = 10
min_time = 0.2
retries = 0
threads = 1
{extra}
[space]
mem_size = [8, 16]
lr = [0.001, 0.002, 0.004, 0.008]
"""


def _run(directory: Path, *extra: str) -> tuple[optuna.Study, dict[str, Any]]:
    """The study after a real ``explore study run``, and the run's JSON summary."""
    proc = subprocess.run(
        [str(EXPLORE), "study", "run", "--name", "r", "--config", "tiny.toml", "--trials", "8",
         "--epochs", "1", "--sampler", "grid", "--no-prune", "--keep-checkpoints", "none",
         "--seed", "3", "-f", "json", *extra],
        cwd=directory, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{directory / 'explore.db'}")
    return study, json.loads(proc.stdout)


def _config(directory: Path, extra: str = "") -> None:
    (directory / "tiny.toml").write_text(CONFIG.format(extra=extra), encoding="utf-8")


def _expected_source(trials: list[optuna.trial.FrozenTrial], t: optuna.trial.FrozenTrial
                     ) -> int | None:
    """The rule: the first earlier trial of the same key that measured a clean figure."""
    for u in trials:
        if u.number >= t.number:
            return None
        if (u.user_attrs[ATTR_MEASURE_KEY] == t.user_attrs[ATTR_MEASURE_KEY]
                and ATTR_MEASURED_BY not in u.user_attrs
                and not u.user_attrs["throughput"]["noisy"]):
            return u.number
    return None


@pytest.mark.slow
def test_a_trial_of_an_architecture_measured_here_takes_its_figure(tmp_path: Path) -> None:
    _config(tmp_path)
    study, summary = _run(tmp_path)
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                    key=lambda t: t.number)
    assert len(trials) == 8
    by_model = {}
    for t in trials:
        by_model.setdefault(t.params["mem_size"], set()).add(t.user_attrs[ATTR_MEASURE_KEY])
    # One key per architecture (the learning rate is not in it), different architectures apart.
    assert [len(keys) for keys in by_model.values()] == [1, 1]
    assert by_model[8] != by_model[16]
    reused = 0
    for t in trials:
        source = _expected_source(trials, t)
        assert t.user_attrs.get(ATTR_MEASURED_BY) == source, (t.number, source)
        if source is not None:
            reused += 1
            measured = study.trials[source].user_attrs["throughput"]
            assert t.user_attrs["throughput"] == measured  # the very figure, not a new one
            assert t.values[1] == measured["median"]
    # A clean figure of an architecture with later trials: they reused it. (A clean figure
    # that is its architecture's last trial, after noisy ones, has nobody to reuse it.)
    clean = [t for t in trials if ATTR_MEASURED_BY not in t.user_attrs
             and not t.user_attrs["throughput"]["noisy"]
             and any(u.number > t.number
                     and u.user_attrs[ATTR_MEASURE_KEY] == t.user_attrs[ATTR_MEASURE_KEY]
                     for u in trials)]
    if clean:
        assert reused >= 1
    assert summary["reused_throughput_trials"] == reused  # and the run says how many
    again = subprocess.run([str(EXPLORE), "study", "run", "--name", "r"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    line = ("trials whose throughput came from an earlier trial of the same architecture "
            f"([measure] reuse): {reused}")
    assert (line in again.stdout) == (reused > 0), again.stdout


@pytest.mark.slow
def test_reuse_off_measures_every_trial(tmp_path: Path) -> None:
    _config(tmp_path, extra="reuse = false\n")
    study, summary = _run(tmp_path)
    assert summary["reused_throughput_trials"] == 0
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 8
    assert not [t.number for t in trials if ATTR_MEASURED_BY in t.user_attrs]
    # Fresh measurements: no two trials carry the same figure down to the last digit.
    assert len({json.dumps(t.user_attrs["throughput"], sort_keys=True) for t in trials}) == 8


def _objective(settings: Settings, measure_threads: int = 1) -> Objective:
    data = load_dataset(DataSettings(), seed=0)
    return Objective(settings, data, torch.device("cpu"), Path("."), threading.Event(),
                     worker=WorkerContext(measure_threads=measure_threads))


def _key(objective: Objective, **params: Any) -> str:
    plan = plan_trial(params, objective.settings, objective.data_shape)
    return objective.measure_key(plan)


def test_the_measure_key_holds_what_inference_depends_on_and_nothing_else() -> None:
    base = resolve_settings({"model": {"dim": 16, "depth": 1}})
    objective = _objective(base)
    key = _key(objective, mem_size=8)
    # How a trial trains is not in it.
    assert _key(objective, mem_size=8, lr=0.05, epochs=3, weight_decay=0.0) == key
    assert _key(objective, mem_size=8, state_interval=0.0, cuda_graph=False) == key
    # What inference runs, and how it is timed, is.
    assert _key(objective, mem_size=16) != key
    assert _key(objective, mem_size=8, precision="bf16") != key
    assert _key(objective, mem_size=8, compile=True) != key
    assert _objective(base, measure_threads=2).measure_key(
        plan_trial({"mem_size": 8}, base, objective.data_shape)) != key
    longer = dataclasses.replace(base, measure=dataclasses.replace(base.measure, min_time=1.0))
    assert _key(_objective(longer), mem_size=8) != key
    # How often a disturbed figure is retaken, or whether it is reused, is not.
    again = dataclasses.replace(base, measure=dataclasses.replace(base.measure, retries=0,
                                                                  reuse=False))
    assert _key(_objective(again), mem_size=8) == key


def test_only_a_clean_measured_figure_is_taken(tmp_path: Path) -> None:
    """Noisy figures and figures that were themselves taken are skipped; the first clean
    measured one wins, whatever its trial's state."""
    study = optuna.create_study(directions=["maximize", "maximize"],
                                storage=f"sqlite:///{tmp_path / 'k.db'}")
    figure = {"median": 100.0, "noisy": False}

    def add(state: optuna.trial.TrialState, key: str, **attrs: Any) -> None:
        study.add_trial(optuna.trial.create_trial(
            state=state, values=[0.5, 1.0] if state == optuna.trial.TrialState.COMPLETE
            else None, params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
            user_attrs={ATTR_MEASURE_KEY: key, **attrs}))

    fail, complete = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE
    add(complete, "other", throughput=figure)  # 0: another key
    add(complete, "k", throughput={**figure, "noisy": True})  # 1: noisy
    add(complete, "k", throughput=figure, **{ATTR_MEASURED_BY: 0})  # 2: itself taken
    add(fail, "k")  # 3: failed before measuring
    add(fail, "k", throughput={**figure, "median": 7.0})  # 4: measured, failed later: clean
    add(complete, "k", throughput={**figure, "median": 9.0})  # 5: clean, but later
    trial = study.ask()

    found = find_measured(trial, "k")
    assert found is not None and found.number == 4
    assert find_measured(trial, "none such") is None


def test_a_study_from_before_the_option_goes_on_measuring_every_trial(tmp_path: Path) -> None:
    request = RunRequest(name="old", storage=f"sqlite:///{tmp_path / 'explore.db'}",
                         config_file=write_tiny_config(tmp_path), device="cpu", explicit={},
                         handle_signals=False)
    created = open_study(request)
    assert created.settings.measure.reuse is True  # a new study reuses
    stored = created.study.user_attrs[ATTR_SETTINGS]
    del stored["measure"]["reuse"]  # as an earlier explore stored its settings
    created.study.set_user_attr(ATTR_SETTINGS, stored)
    assert open_study(request).settings.measure.reuse is False
