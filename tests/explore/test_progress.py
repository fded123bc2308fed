"""What a run prints per trial names the design, including what the study fixed rather than
searched (a ``[space]`` list of one value is a setting, not a trial param)."""

from __future__ import annotations

import datetime as dt

from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from explore.run.progress import describe_params, trial_line
from studies.catalog import Front
from studies.record import StudyMeta, TrialStats
from studies.report import _summary


def _trial(params: dict[str, object], attention: str) -> object:
    return create_trial(
        state=TrialState.COMPLETE, values=[0.9, 1000.0], params=params,
        distributions={k: CategoricalDistribution([v]) for k, v in params.items()},
        user_attrs={"model_config": {"attention": attention, "heads": 2, "mem_size": 8}})


def test_a_fixed_attention_kind_is_shown_from_the_model_config() -> None:
    sa = _trial({"heads": 2}, "self")
    ea = _trial({"heads": 2, "mem_size": 8}, "external")
    assert "COMPLETE SA h=2 " in trial_line(sa, [sa], 1, 4)  # type: ignore[arg-type]
    assert "COMPLETE EA S=8 h=2 " in trial_line(ea, [ea], 1, 4)  # type: ignore[arg-type]
    assert describe_params({"heads": 4}) == "EA h=4"  # nothing stored: external, as before


def test_the_report_lists_one_value_lists_as_fixed_not_searched() -> None:
    space = {"attention": ["external"], "mem_size": [8, 16], "heads": [2]}
    meta = StudyMeta(1, "s", ("maximize", "maximize"), ("accuracy", "throughput"),
                     {"explore_settings": {"space": space}})
    stats = TrialStats({"COMPLETE": 1}, dt.datetime(2026, 12, 3), dt.datetime(2026, 12, 3))
    blocks = _summary(meta, stats, Front(meta, [], set()), "sqlite:///x.db")
    text = " ".join(str(getattr(b, "items", getattr(b, "text", ""))) for b in blocks)
    assert "searched: mem_size = [8, 16]" in text
    assert "fixed: attention = 'external'; heads = 2" in text
    assert "searched: attention" not in text
