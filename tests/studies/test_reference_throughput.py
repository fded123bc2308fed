"""Throughput timed against a reference model (``[measure] reference``): the noise model compares
designs by their speed relative to the reference, at the study's mean machine speed.

Tested against brute force (the formula) and by simulation with a known truth: a machine whose
speed moves ±20% between processes (log sd 0.2, shared by the model and the reference timed in
alternation) and 3% of measurement noise of each. Measured with the seeds below: the adjusted
intervals cover the truth at the study's machine speed 95.3% of the time and are 4.8x narrower
than the measured images/s's.
"""

from __future__ import annotations

import math

import numpy as np

from studies.confidence import Replicate, estimate
from studies.confirm import FRESH_REPLICATE, confirmation
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE, ATTR_THROUGHPUT, TrialRecord
from studies.replicates import configurations, configured_front, machine_speed, replicates


def _trial(number: int, config: str, replicate: int, accuracy: float, measured: float,
           relative: float | None = None, reference: float | None = None) -> TrialRecord:
    throughput: dict[str, object] = {"median": measured, "spread": 0.05}
    if relative is not None:
        throughput |= {"relative": relative, "reference": reference}
    return TrialRecord(number, "COMPLETE", (accuracy, measured), {"c": config},
                       {ATTR_CONFIGURATION: config, ATTR_REPLICATE: replicate,
                        ATTR_THROUGHPUT: throughput}, None, None)


def test_adjusted_throughput_is_relative_times_the_mean_reference() -> None:
    trials = [_trial(0, "a", 0, 0.9, 1000.0, 2.0, 400.0),
              _trial(1, "a", 1, 0.9, 1500.0, 2.2, 700.0),
              _trial(2, "b", 0, 0.8, 300.0, 0.5, 550.0)]
    configs = configurations(trials)
    speed = (400.0 * 700.0 * 550.0) ** (1 / 3)  # the geometric mean, by hand
    assert math.isclose(machine_speed(trials) or 0.0, speed, rel_tol=1e-12)
    got = {(r.config, r.index): r.throughput for r in replicates(configs)}
    assert math.isclose(got["a", 0], 2.0 * speed, rel_tol=1e-12)
    assert math.isclose(got["a", 1], 2.2 * speed, rel_tol=1e-12)
    assert math.isclose(got["b", 0], 0.5 * speed, rel_tol=1e-12)
    assert [r.accuracy for r in replicates(configs)] == [0.9, 0.9, 0.8]


def test_a_study_not_all_timed_against_the_reference_keeps_the_measured_figures() -> None:
    # A study continued across the setting (or with a replay on a GPU): mixing ratios with
    # images/s would compare unlike figures, so every replicate keeps its measured one.
    for odd_one in ({}, {"relative": None, "reference": 400.0}, {"relative": 0.0},
                    {"relative": True, "reference": 400.0}, {"relative": math.nan}):
        trials = [_trial(0, "a", 0, 0.9, 1000.0, 2.0, 400.0),
                  _trial(1, "b", 0, 0.8, 300.0)]
        trials[1].user_attrs[ATTR_THROUGHPUT] |= odd_one
        configs = configurations(trials)
        assert machine_speed(trials) is None, odd_one
        assert [r.throughput for r in replicates(configs)] == [1000.0, 300.0]


def test_adjusted_intervals_cover_the_truth_at_the_studys_machine_speed() -> None:
    rng = np.random.default_rng(301)
    machine_sd, measure_sd, reference_rate = 0.2, 0.03, 2000.0
    covered = total = 0
    widths: dict[str, list[float]] = {"adjusted": [], "measured": []}
    for _ in range(600):
        log_rate = rng.uniform(math.log(300), math.log(5000), 20)
        trials, speeds, number = [], [], 0
        for c in range(20):
            for r in range(int(rng.integers(2, 4))):
                speed = float(np.exp(rng.normal(0, machine_sd)))  # this process's machine
                speeds.append(speed)
                model = math.exp(log_rate[c]) * speed * math.exp(rng.normal(0, measure_sd))
                ref = reference_rate * speed * math.exp(rng.normal(0, measure_sd))
                trials.append(_trial(number, f"c{c:02d}", r, 0.9, model, model / ref, ref))
                number += 1
        at_study_speed = math.exp(float(np.mean(np.log(speeds))))
        configs = configurations(trials)
        _, adjusted = estimate(replicates(configs))
        _, measured = estimate([Replicate(t.user_attrs[ATTR_CONFIGURATION],
                                          t.user_attrs[ATTR_REPLICATE], 0.9, t.values[1], 0)
                                for t in trials if t.values is not None])
        for e, m in zip(adjusted, measured, strict=True):
            assert e.throughput.low is not None and e.throughput.high is not None
            assert m.throughput.low is not None and m.throughput.high is not None
            truth = math.exp(log_rate[int(e.config[1:])]) * at_study_speed
            covered += e.throughput.low <= truth <= e.throughput.high
            total += 1
            widths["adjusted"].append(math.log(e.throughput.high / e.throughput.low))
            widths["measured"].append(math.log(m.throughput.high / m.throughput.low))
    assert 0.93 <= covered / total <= 0.97, covered / total
    assert np.mean(widths["measured"]) / np.mean(widths["adjusted"]) > 3.0


def test_confirm_reads_the_fresh_runs_on_the_searchs_scale() -> None:
    # The machine runs twice as fast during the confirmation as during the search: the measured
    # images/s double, the speeds relative to the reference do not. The search's optimism in
    # throughput is then about the designs (none here), not about the machine.
    rng = np.random.default_rng(7)
    true = {"a": 3000.0, "b": 1000.0}
    search, fresh, number = [], [], 0
    for speedup, runs, first, into in ((1.0, 3, 0, search), (2.0, 2, FRESH_REPLICATE, fresh)):
        for key, rate in true.items():
            for r in range(first, first + runs):
                machine = speedup * float(np.exp(rng.normal(0, 0.1)))
                ref = 2000.0 * machine * float(np.exp(rng.normal(0, 0.01)))
                model = rate * machine * float(np.exp(rng.normal(0, 0.01)))
                into.append(_trial(number, key, r, 0.9, model, model / ref, ref))
                number += 1
    front = configured_front(search)
    got = confirmation("s", front, ["a", "b"], fresh, 2)
    for row in got.rows:
        assert row.throughput is not None
        assert abs(row.throughput.difference) < 0.05, row  # a ratio within 5% of 1
    # Read without the reference (the measured figures), the machine's speed-up would be
    # called the search's pessimism: a ratio of about one half.
    bare = [_trial(t.number, str(t.user_attrs[ATTR_CONFIGURATION]),
                   int(t.user_attrs[ATTR_REPLICATE]), 0.9, float(t.values[1]))
            for t in (*search, *fresh) if t.values is not None]
    got = confirmation("s", configured_front(bare[:len(search)]), ["a", "b"],
                       bare[len(search):], 2)
    for row in got.rows:
        assert row.throughput is not None
        assert abs(row.throughput.difference - math.log(0.5)) < 0.25, row
