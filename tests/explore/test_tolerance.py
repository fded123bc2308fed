"""``[study] accuracy_tolerance``: ties in accuracy go to the faster design, the same for the run
(racing) and every reader; studies stored before the setting keep Pareto's strict rule."""

from __future__ import annotations

import math
from pathlib import Path

import optuna

from explore.config import Settings, resolve_settings
from explore.run.opening import ATTR_SETTINGS, RunRequest, open_study
from explore.search import racing
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE
from studies.replicates import front_tolerance, study_front
from tests.conftest import write_tiny_config


def _request(tmp_path: Path, explicit: dict | None = None) -> RunRequest:
    return RunRequest(name="old", storage=f"sqlite:///{tmp_path / 'explore.db'}",
                      config_file=write_tiny_config(tmp_path), device="cpu",
                      explicit=explicit or {}, handle_signals=False)


def test_a_study_from_before_the_setting_keeps_the_strict_front(tmp_path: Path) -> None:
    created = open_study(_request(tmp_path))
    assert created.settings.study.accuracy_tolerance == 0.5  # a new study: half a point
    stored = created.study.user_attrs[ATTR_SETTINGS]
    assert front_tolerance(stored) == 0.005  # the readers see the same, as a fraction
    del stored["study"]["accuracy_tolerance"]  # as an earlier explore stored its settings
    created.study.set_user_attr(ATTR_SETTINGS, stored)

    continued = open_study(_request(tmp_path))

    assert continued.settings.study.accuracy_tolerance == 0.0
    assert front_tolerance(stored) == 0.0
    study = optuna.load_study(study_name="old", storage=f"sqlite:///{tmp_path / 'explore.db'}")
    assert "accuracy_tolerance" not in study.user_attrs[ATTR_SETTINGS]["study"]


def test_bad_stored_tolerances_read_as_strict() -> None:
    for value in (-1, "half", True, math.nan, 1e9, None):
        assert front_tolerance({"study": {"accuracy_tolerance": value}}) == 0.0
    assert front_tolerance(None) == 0.0 and front_tolerance({"study": 3}) == 0.0


def _tied_study(settings: Settings) -> optuna.Study:
    """Six configurations tied in accuracy (the same eight deviations each), 1x to 6x as fast."""
    study = optuna.create_study(directions=["maximize", "maximize"])
    dev = [0.003, -0.003, 0.002, -0.002, 0.004, -0.004, 0.0, 0.0]
    for c in range(6):
        for r, d in enumerate(dev):
            study.enqueue_trial({"mem_size": 8 * (c + 1)}, skip_if_exists=False)
            trial = study.ask()
            trial.suggest_categorical("mem_size", [8, 16, 24, 32, 40, 48])  # the queued one
            trial.set_user_attr(ATTR_CONFIGURATION, f"c{c}")
            trial.set_user_attr(ATTR_REPLICATE, r)
            study.tell(trial, [0.94 + d, 1000.0 * (c + 1) * math.exp(d)])
    study.set_user_attr(ATTR_SETTINGS, settings.to_dict())
    return study


def test_racing_and_readers_apply_the_same_tolerance() -> None:
    for points, dominated in ((0.0, 0), (0.5, 5)):
        settings = resolve_settings({"study": {"accuracy_tolerance": points}})
        study = _tied_study(settings)
        run = racing.front_of(study.trials, settings)
        read = study_front([racing.record_of(t) for t in study.trials],
                           study.user_attrs[ATTR_SETTINGS])
        assert run.front.probability == read.front.probability
        assert len(read.front.dominated) == dominated  # strict: ties keep P(front) near 1/6
        if points:
            assert read.front.plausible == ["c5"]  # the fastest of the tied designs


def _front_of(rows: list[tuple[str, int, float, float]], points: float = 0.5):
    settings = resolve_settings({"study": {"accuracy_tolerance": points}})
    study = optuna.create_study(directions=["maximize", "maximize"])
    for config, replicate, acc, rate in rows:
        trial = study.ask()
        trial.set_user_attr(ATTR_CONFIGURATION, config)
        trial.set_user_attr(ATTR_REPLICATE, replicate)
        study.tell(trial, [acc, rate])
    return racing.front_of(study.trials, settings)


def test_the_honest_line_says_what_the_front_can_claim() -> None:
    from studies.views import front_title, honest_line

    # One clear winner: faster and more accurate than the rest by far.
    clear = [(f"c{c}", r, 0.90 + (0.05 if c == 0 else 0.0) + d, 1000.0 * (4 if c == 0 else 1))
             for c in range(4) for r, d in enumerate((0.002, -0.002))]
    line = honest_line(_front_of(clear))
    assert "one configuration is plausibly on the front" in line
    assert "within 0.5 points count as ties" in line
    assert "within" not in honest_line(_front_of(clear, points=0.0)).split("per run")[1]
    # Noise far above the differences, one run for most: nobody reaches P(front) 0.5.
    vague = [("a", 0, 0.90, 700.0), ("a", 1, 0.98, 1400.0), ("b", 0, 0.93, 1010.0),
             ("c", 0, 0.95, 990.0), ("d", 0, 0.91, 1005.0), ("e", 0, 0.94, 995.0)]
    front = _front_of(vague, points=0.0)
    assert "no configuration is yet more likely on the front than not" in honest_line(front)
    assert front_title(front, "Pareto front").startswith(
        "Pareto front: no configuration has P(front) >= 0.5; the most probable")
    assert {front.status(k) for k in front.front.plausible} == {"most probable"}
    clear_front = _front_of(clear)
    assert front_title(clear_front, "F", "95% intervals") == (
        "F: the plausible configurations (P(front) >= 0.5, 95% intervals)")
    assert {clear_front.status(k) for k in clear_front.front.plausible} == {"plausible"}
