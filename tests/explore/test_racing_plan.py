"""Racing's plan on hand-built trials (no training): who gets the next replicate, in which order."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from explore.config import resolve_settings
from explore.search.racing import front_of, plan
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
