"""The catalog reads Optuna's tables with SQL and must agree with Optuna's own API exactly."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from browse_helpers import Studies, load
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from studies.catalog import (
    TrialRecord,
    front_numbers,
    list_studies,
    open_catalog,
    pareto_front,
    show_study,
)
from studies.errors import ExploreError, StudyNotFound


def same_trial(ours: TrialRecord, theirs: optuna.trial.FrozenTrial) -> None:
    assert ours.number == theirs.number
    assert ours.state == theirs.state.name
    assert ours.params == theirs.params
    assert ours.user_attrs == theirs.user_attrs
    assert ours.datetime_start == theirs.datetime_start
    assert ours.datetime_complete == theirs.datetime_complete
    expected = tuple(theirs.values) if theirs.state == TrialState.COMPLETE else None
    assert ours.values == expected


@pytest.mark.parametrize("name", ["grid", "easa"])
def test_pareto_is_exactly_best_trials(studies: Studies, name: str) -> None:
    study = load(studies, name)
    front = pareto_front(studies.url, name)
    best = study.best_trials
    assert [t.number for t in front.trials] == [t.number for t in best]
    for ours, theirs in zip(front.trials, best, strict=True):
        same_trial(ours, theirs)


@pytest.mark.parametrize("name", ["grid", "easa"])
def test_pareto_all_adds_every_complete_trial_with_its_flag(studies: Studies, name: str) -> None:
    study = load(studies, name)
    front = pareto_front(studies.url, name, include_dominated=True)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in front.trials] == [t.number for t in complete]
    assert front.pareto == {t.number for t in study.best_trials}
    for ours, theirs in zip(front.trials, complete, strict=True):
        same_trial(ours, theirs)
    records = front.to_json(with_flag=True)
    assert {r["number"] for r in records if r["pareto"]} == front.pareto


def test_list_counts_fronts_and_bests(studies: Studies) -> None:
    rows = {r.name: r for r in list_studies(studies.url)}
    assert set(rows) == {"grid", "easa"}
    for name, row in rows.items():
        study = load(studies, name)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert row.states.get("COMPLETE") == len(complete)
        assert sum(row.states.values()) == len(study.trials)
        assert row.front_size == len(study.best_trials)
        assert row.best_accuracy == max(t.values[0] for t in complete)
        assert row.best_throughput == max(t.values[1] for t in complete)
        assert row.dataset == "digits"
        assert row.created == min(t.datetime_start for t in study.trials)
        assert row.last_activity == max(t.datetime_complete for t in study.trials)


def test_show_has_settings_counts_and_front(studies: Studies) -> None:
    detail = show_study(studies.url, "grid")
    study = load(studies, "grid")
    assert detail.study.settings == study.user_attrs["explore_settings"]
    assert detail.study.metric_names == ("accuracy", "throughput")
    assert detail.stats.states == {"COMPLETE": 8}
    assert [t.number for t in detail.front] == [t.number for t in study.best_trials]
    assert detail.problems == []
    data = detail.to_dict()
    assert data["metric_names"] == ["accuracy", "throughput"]
    assert set(data["front"][0]["values"]) == {"accuracy", "throughput"}


def test_unknown_study_names_the_ones_there_are(studies: Studies) -> None:
    with pytest.raises(StudyNotFound, match=r"no study named 'nope'.*easa, grid"):
        pareto_front(studies.url, "nope")


def test_missing_database_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(ExploreError, match="no study database"):
        list_studies(str(db))
    assert not db.exists()
    journal = tmp_path / "absent.log"
    with pytest.raises(ExploreError, match="no study journal"):
        list_studies(f"journal:{journal}")
    assert not journal.exists()


def test_empty_sqlite_file_has_no_studies(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    assert list_studies(str(db)) == []
    with pytest.raises(StudyNotFound, match="holds no studies"):
        show_study(str(db), "x")


def _synthetic(storage: str, name: str, directions: list[str], n: int, seed: int) -> None:
    """Random values with many ties and repeats, params of every distribution, some failures."""
    rng = random.Random(seed)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions)
    dists = {"c": CategoricalDistribution([None, True, "x", 3, 2.5]),
             "i": IntDistribution(1, 9, step=2), "l": IntDistribution(1, 1000, log=True),
             "f": FloatDistribution(1e-4, 1.0, log=True)}
    trials = []
    for _ in range(n):
        params = {"c": rng.choice([None, True, "x", 3, 2.5]), "i": rng.choice([1, 3, 5, 7, 9]),
                  "l": rng.randint(1, 1000), "f": 10 ** rng.uniform(-4, 0)}
        state = rng.choice([TrialState.COMPLETE] * 4 + [TrialState.FAIL, TrialState.PRUNED])
        values = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in directions]
        trials.append(create_trial(
            state=state, params=params, distributions=dists,
            values=values if state == TrialState.COMPLETE else None,
            user_attrs={"fail_reason": "boom"} if state == TrialState.FAIL else {}))
    study.add_trials(trials)


@pytest.mark.parametrize("directions", [["maximize", "maximize"], ["maximize", "minimize"],
                                        ["minimize", "maximize", "minimize"]])
def test_front_matches_optuna_with_ties_and_other_directions(tmp_path: Path,
                                                             directions: list[str]) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _synthetic(storage, "s", directions, 40, seed=len(directions) + directions.count("minimize"))
    study = optuna.load_study(study_name="s", storage=storage)
    front = pareto_front(storage, "s")
    assert [t.number for t in front.trials] == [t.number for t in study.best_trials]
    everything = pareto_front(storage, "s", include_dominated=True)
    for ours, theirs in zip(everything.trials, study.get_trials(states=(TrialState.COMPLETE,)),
                            strict=True):
        same_trial(ours, theirs)  # every distribution decoded back to its value


def test_journal_storage_reads_the_same_as_sql(studies: Studies, tmp_path: Path) -> None:
    journal = f"journal:{tmp_path / 'j.log'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    target = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    optuna.copy_study(from_study_name="grid", from_storage=studies.url, to_storage=target)
    sql = pareto_front(studies.url, "grid", include_dominated=True)
    api = pareto_front(journal, "grid", include_dominated=True)
    assert api.pareto == sql.pareto
    assert [(t.number, t.values, t.params, t.user_attrs) for t in api.trials] == [
        (t.number, t.values, t.params, t.user_attrs) for t in sql.trials]
    rows = list_studies(journal)
    assert [(r.name, r.front_size, r.states) for r in rows] == [
        ("grid", len(sql.pareto), {"COMPLETE": 8})]


def test_failures_are_shown_with_their_reasons(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _synthetic(storage, "s", ["maximize", "maximize"], 30, seed=1)
    detail = show_study(storage, "s")
    study = optuna.load_study(study_name="s", storage=storage)
    failed = [t.number for t in study.trials if t.state in (TrialState.FAIL, TrialState.PRUNED)]
    assert [t.number for t in detail.problems] == failed
    reasons = {f["number"]: f["reason"] for f in detail.to_dict()["failures"]}
    for t in study.trials:
        if t.state == TrialState.FAIL:
            assert reasons[t.number] == "boom"
        elif t.state == TrialState.PRUNED:
            assert reasons[t.number] == "no reason recorded"


def test_infinite_values_read_back(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"] * 2)
    study.add_trial(create_trial(values=[math.inf, 1.0]))
    study.add_trial(create_trial(values=[0.5, -math.inf]))
    front = pareto_front(storage, "s", include_dominated=True)
    assert [t.values for t in front.trials] == [(math.inf, 1.0), (0.5, -math.inf)]
    assert front.pareto == {t.number for t in study.best_trials}


def test_front_numbers_keeps_equal_points() -> None:
    points = [(0, (1.0, 1.0)), (1, (1.0, 1.0)), (2, (0.5, 2.0)), (3, (0.4, 1.5))]
    assert front_numbers(points, ["maximize", "maximize"]) == [0, 1, 2]


def test_catalog_never_writes_the_database(studies: Studies) -> None:
    before = studies.db.stat().st_mtime_ns
    with open_catalog(studies.url) as catalog:
        meta = catalog.study("grid")
        catalog.trials(meta)
    list_studies(studies.url)
    assert studies.db.stat().st_mtime_ns == before


def test_constrained_study_keeps_only_feasible_trials_like_optuna(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"] * 2)
    study.add_trial(create_trial(values=[2.0, 2.0], system_attrs={"constraints": [1.0]}))
    rng = random.Random(5)
    for _ in range(30):
        study.add_trial(create_trial(values=[rng.random(), rng.random()],
                                     system_attrs={"constraints": [rng.uniform(-1, 1)]}))
    best = {t.number for t in study.best_trials}
    assert pareto_front(storage, "s").pareto == best
    assert best != set(front_numbers([(t.number, tuple(t.values)) for t in study.trials],
                                     ["maximize", "maximize"]))  # constraints mattered
    assert list_studies(storage)[0].front_size == len(best)
