"""Racing's plan on hand-built trials (no training): who gets the next replicate, in which order."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from explore.config import resolve_settings
from explore.search.racing import EXHAUSTED_CAP, front_of, plan
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE


def _run(number: int, config: str, replicate: int, acc: float, rate: float) -> FrozenTrial:
    trial = create_trial(
        state=TrialState.COMPLETE, values=[acc, rate], params={"c": config},
        distributions={"c": CategoricalDistribution(["a", "b", "c", "d"])},
        user_attrs={ATTR_CONFIGURATION: config, ATTR_REPLICATE: replicate})
    trial.number = number
    return trial


def test_every_survivor_gets_its_next_run_before_any_gets_a_further_one() -> None:
    """a and b have two runs each (the noise is known), c and d one: the one-run
    configurations come first even where a front member has a higher P(front); within one
    count, the likelier front member first."""
    trials = [_run(0, "a", 0, 0.950, 30_000), _run(1, "a", 1, 0.952, 31_000),
              _run(2, "b", 0, 0.940, 40_000), _run(3, "b", 1, 0.944, 39_000),
              _run(4, "c", 0, 0.945, 35_000), _run(5, "d", 0, 0.930, 36_000)]
    settings = resolve_settings({"study": {"trials": 40, "max_replicates": 4}})
    front = front_of(trials, settings)
    assert front.front.noise.known
    asked = plan(trials, settings)
    order = [(w.configuration, w.replicate) for w in asked]
    ones = [(c, r) for c, r in order if c in ("c", "d")]
    assert ones and order[:len(ones)] == ones  # the one-run configurations lead
    assert all(r == 1 for _, r in ones)  # each one's second run
    p = front.front.probability
    leading = [c for c, _ in ones]
    assert leading == sorted(leading, key=lambda c: -p[c])
    # a replicate index is asked for once per configuration
    assert len(order) == len(set(order))
    # nothing confidently dominated is asked for
    assert not {c for c, _ in order} & set(front.front.dominated)


def test_fixed_k_asks_for_every_missing_replicate() -> None:
    trials = [_run(0, "a", 0, 0.95, 30_000), _run(1, "b", 0, 0.94, 40_000),
              _run(2, "b", 1, 0.94, 40_000)]
    settings = resolve_settings({"study": {"trials": 40, "replicates": 3}})
    asked = sorted((w.configuration, w.replicate) for w in plan(trials, settings))
    assert asked == [("a", 1), ("a", 2), ("b", 2)]


def _clear_winner(runs_of_a: int) -> list[FrozenTrial]:
    """a beats b, c and d by far in both objectives; b, c and d have two runs each."""
    trials = [_run(i, "a", i, 0.960 + 0.002 * (i % 2), 50_000 + 500 * (i % 3))
              for i in range(runs_of_a)]
    for k, config in enumerate(("b", "c", "d")):
        for r in range(2):
            trials.append(_run(len(trials), config, r, 0.900 + 0.003 * r - 0.01 * k,
                               20_000 - 300 * r))
    return trials


def test_an_exhausted_space_spends_the_rest_sharpening_a_decided_front_up_to_its_cap() -> None:
    """Every place decided (a on the front with P >= 0.95, the rest dominated): while the
    search explores, a keeps its max_replicates runs; once the space is exhausted it earns one
    more at a time, up to EXHAUSTED_CAP x max_replicates, and the dominated ones never do."""
    settings = resolve_settings({"study": {"trials": 100, "max_replicates": 4}})
    trials = _clear_winner(4)
    front = front_of(trials, settings).front
    assert front.probability["a"] >= settings.study.confidence
    assert set(front.dominated) == {"b", "c", "d"}
    assert plan(trials, settings) == []  # exploring: a has its max_replicates
    asked = [(w.configuration, w.replicate) for w in plan(trials, settings, exhausted=True)]
    assert asked == [("a", 4)]
    capped = _clear_winner(EXHAUSTED_CAP * 4)
    assert plan(capped, settings, exhausted=True) == []
