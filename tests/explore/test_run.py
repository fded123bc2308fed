"""``explore study run`` end to end on digits: what a study holds after a real search.

Every study here is made through the CLI (a real subprocess for the shared study, Typer's
CliRunner for the others) on a temporary SQLite file, and read back with Optuna's own API and
our snapshot tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from studies.snapshots import SnapshotStore

pytestmark = pytest.mark.slow

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIAL_ATTRS = ("params_count", "flops_per_image", "throughput", "train_seconds", "history",
               "device", "versions", "seed", "config_key", "model_config")


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


def front_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """The non-dominated COMPLETE trials (both objectives maximized), by brute force."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return {t.number for t in done if not any(dominates(u.values, t.values) for u in done)}


def area(points: Sequence[tuple[float, float]]) -> float:
    """Hypervolume of a 2-D maximization front against (0, 0)."""
    total, covered = 0.0, 0.0
    for acc, thr in sorted(points, key=lambda p: (-p[0], -p[1])):
        if thr > covered:
            total += acc * (thr - covered)
            covered = thr
    return total


def is_duplicate(t: FrozenTrial) -> bool:
    """A repeat of an evaluated configuration, answered from the study (costs no budget)."""
    return t.user_attrs.get("duplicate_of") is not None


def experiments(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that were really trained (COMPLETE or PRUNED, not duplicates)."""
    return [t for t in study.get_trials(states=FINISHED) if not is_duplicate(t)]


def assert_snapshots_follow_every_trial(url: str, name: str) -> None:
    """Replay the finished trials in order: whenever the front of the trials so far changes,
    the next snapshot holds exactly that front (and the budget count then); no other snapshot
    exists; the last one is ``study.best_trials``."""
    study = load(url, name)
    finished = sorted(study.get_trials(states=FINISHED),
                      key=lambda t: (t.datetime_complete, t.number))
    by_number = {t.number: t for t in finished}
    store = SnapshotStore.from_url(url)
    try:
        snaps = store.history(name)
    finally:
        store.engine.dispose()
    assert snaps, "no Pareto snapshot was recorded"
    assert [s.number for s in snaps] == list(range(len(snaps)))
    for snap in snaps:
        assert snap.reference == (0.0, 0.0)
        for number, accuracy, throughput in snap.members:
            assert (accuracy, throughput) == tuple(by_number[number].values)
        assert snap.hypervolume == pytest.approx(area([m[1:] for m in snap.members]))
    current: set[int] = set()
    consumed = 0
    for k in range(1, len(finished) + 1):
        expected = front_numbers(finished[:k])
        if expected == current:
            continue
        assert consumed < len(snaps), f"no snapshot after trial {finished[k - 1].number}"
        snap = snaps[consumed]
        assert {m[0] for m in snap.members} == expected, f"after trial {finished[k - 1].number}"
        assert snap.n_finished == sum(1 for t in finished[:k] if not is_duplicate(t))
        current, consumed = expected, consumed + 1
    assert consumed == len(snaps), f"unexpected snapshots: {snaps[consumed:]}"
    assert current == {t.number for t in study.best_trials}


def run_json(cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    result = cli("study", "run", *args, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---- the shared study made by a real subprocess (read only) ----


def test_study_has_two_maximized_named_objectives(made_study: Any) -> None:
    assert made_study.returncode == 0, made_study.stderr
    study = load(made_study.url, made_study.name)
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
    assert study.metric_names == ["accuracy", "throughput"]
    settings = study.user_attrs["explore_settings"]
    assert settings["train"]["epochs"] == made_study.epochs
    assert settings["study"]["trials"] == made_study.trials
    assert settings["study"]["seed"] == 3
    assert settings["measure"]["min_iters"] == 3
    assert settings["space"] == {"mem_size": [8, 16], "heads": [1, 2]}


def test_trials_complete_with_their_records(made_study: Any) -> None:
    study = load(made_study.url, made_study.name)
    trials = study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    # --trials counts trained experiments; repeats of one are answered for free.
    assert len(experiments(study)) == made_study.trials
    for t in experiments(study):
        attrs = t.user_attrs
        assert set(TRIAL_ATTRS) <= set(attrs), sorted(set(TRIAL_ATTRS) - set(attrs))
        # The params are exactly the searched names; fixed settings live in the study.
        assert set(t.params) == {"mem_size", "heads"}
        assert attrs["model_config"]["mem_size"] == t.params["mem_size"]
        assert attrs["model_config"]["heads"] == t.params["heads"]
        assert attrs["model_config"]["dim"] == 16
        assert attrs["params_count"] > 0 and attrs["flops_per_image"] > 0
        accuracy, throughput = t.values
        assert 0.0 <= accuracy <= 1.0
        assert math.isfinite(throughput) and throughput > 0
        stats = attrs["throughput"]
        assert stats["median"] == throughput
        for key in ("median", "min", "max"):
            assert math.isfinite(stats[key]) and stats[key] > 0
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert math.isfinite(stats["spread"]) and stats["spread"] >= 0
        assert stats["batch"] == 64 and stats["iters"] >= 3 and stats["threads"] == 1
        history = attrs["history"]
        assert [h["epoch"] for h in history] == list(range(1, made_study.epochs + 1))
        assert history[-1]["accuracy"] == accuracy
        assert all(math.isfinite(h["loss"]) for h in history)
        assert attrs["train_seconds"] > 0
        assert attrs["device"] == "cpu"
        assert {"torch", "optuna", "python"} <= set(attrs["versions"])
        assert attrs["versions"]["optuna"] == optuna.__version__
        # Seeded from the configuration, not from the trial number.
        assert attrs["seed"] == int(attrs["config_key"][:8], 16)


def test_repeated_configurations_are_answered_from_the_study(made_study: Any) -> None:
    study = load(made_study.url, made_study.name)
    trained = {(tuple(sorted(t.params.items())), t.user_attrs["replicate"]): t
               for t in experiments(study)}
    assert len(trained) == len(experiments(study))  # no replicate was trained twice
    keys = {t.user_attrs["config_key"] for t in trained.values()}
    assert len(keys) == len(trained)  # other params, other experiment
    for t in study.trials:
        if not is_duplicate(t):
            continue
        original = study.trials[t.user_attrs["duplicate_of"]]
        assert not is_duplicate(original) and original.number < t.number
        assert original.params == t.params and original.values == t.values
        assert t.user_attrs["config_key"] == original.user_attrs["config_key"]
        assert t.user_attrs["throughput"] == original.user_attrs["throughput"]


def test_snapshots_equal_the_front_after_every_trial(made_study: Any) -> None:
    assert_snapshots_follow_every_trial(made_study.url, made_study.name)


# ---- studies of their own (CliRunner) ----


def test_rerun_does_nothing_and_a_larger_budget_continues(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path]) -> None:
    tiny_config(workdir)
    url = f"sqlite:///{workdir / 'explore.db'}"
    args = ("--name", "grow", "--config", "tiny.toml", "--epochs", "1", "--trials", "2")
    first = run_json(cli, *args)
    study = load(url, "grow")
    assert (first["finished"], first["target"]) == (2, 2)
    assert len(experiments(study)) == 2 and first["new_trials"] == len(study.trials)
    before = [(t.number, t.state, t.values, t.user_attrs) for t in study.trials]

    again = run_json(cli, *args)  # the same command: nothing to do but show the front
    assert (again["finished"], again["new_trials"], again["stopped"]) == (2, 0, "budget reached")
    study = load(url, "grow")
    assert [(t.number, t.state, t.values, t.user_attrs) for t in study.trials] == before
    assert {r["number"] for r in again["front"]} == {
        t.number for t in study.best_trials if not is_duplicate(t)}

    grown = run_json(cli, *args[:-1], "3")  # --trials is the total, not "3 more"
    study = load(url, "grow")
    assert (grown["finished"], grown["target"], grown["stopped"]) == (3, 3, "budget reached")
    assert len(experiments(study)) == 3
    assert grown["new_trials"] == len(study.trials) - len(before)
    assert [t.number for t in study.trials] == list(range(len(study.trials)))
    assert [(t.number, t.state, t.values, t.user_attrs)
            for t in study.trials[:len(before)]] == before
    assert study.user_attrs["explore_settings"]["study"]["trials"] == 3
    assert_snapshots_follow_every_trial(url, "grow")


def test_name_alone_continues_with_the_stored_settings(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path]) -> None:
    tiny_config(workdir)
    # --timeout 0 creates the study and stops before its first trial, like an interruption.
    created = run_json(cli, "--name", "later", "--config", "tiny.toml", "--epochs", "1",
                       "--trials", "2", "--timeout", "0")
    assert (created["finished"], created["new_trials"], created["stopped"]) == (0, 0, "timeout")

    continued = run_json(cli, "--name", "later")
    assert (continued["finished"], continued["target"]) == (2, 2)
    study = load(f"sqlite:///{workdir / 'explore.db'}", "later")
    assert len(experiments(study)) == 2
    for t in experiments(study):  # the stored settings, not the defaults (12 epochs, batch 256)
        assert len(t.user_attrs["history"]) == 1
        assert t.user_attrs["throughput"]["batch"] == 64
        assert t.user_attrs["model_config"]["dim"] == 16
        assert set(t.params) == {"mem_size", "heads"}


@pytest.mark.parametrize(("sampler", "space", "configs"), [
    ("grid", 'mem_size = [8, 16]\nnorm = ["softmax", "double"]',
     [{"mem_size": s, "norm": n} for s in (8, 16) for n in ("softmax", "double")]),
    # Self-attention trials skip mem_size and norm: 2 EA configurations + 1 SA configuration
    # (mem_size, a list of one value, is a setting: no param).
    ("bruteforce", 'attention = ["external", "self"]\nmem_size = [8]\nnorm = ["softmax", "double"]',
     [{"attention": "external", "norm": "softmax"},
      {"attention": "external", "norm": "double"},
      {"attention": "self"}]),
], ids=["grid", "bruteforce"])
def test_finite_space_stops_when_exhausted(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path],
        sampler: str, space: str, configs: list[dict[str, Any]]) -> None:
    tiny_config(workdir, space=space)
    summary = run_json(cli, "--name", sampler, "--config", "tiny.toml", "--epochs", "1",
                       "--trials", "20", "--sampler", sampler, "--replicates", "1")
    assert summary["stopped"] == "search space exhausted"
    assert summary["finished"] == len(configs)
    study = load(f"sqlite:///{workdir / 'explore.db'}", sampler)
    assert all(t.state == TrialState.COMPLETE and not is_duplicate(t) for t in study.trials)
    seen = sorted((t.params for t in study.trials), key=lambda p: sorted(p.items()))
    assert seen == sorted(configs, key=lambda p: sorted(p.items()))  # each exactly once
    for t in study.trials:
        if t.params.get("attention") == "self":
            assert t.user_attrs["model_config"]["attention"] == "self"
            assert "mem_size" not in t.params and "norm" not in t.params
    assert_snapshots_follow_every_trial(f"sqlite:///{workdir / 'explore.db'}", sampler)
