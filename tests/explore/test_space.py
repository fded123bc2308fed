"""``[space]``: parsing, sampling in a real Optuna study, counting, and the runner's check."""

from __future__ import annotations

import re
from typing import Any

import optuna
import pytest

from explore.config import resolve_settings, searchable_fields
from explore.run.opening import check_space
from explore.space import EA_ONLY, ParamSpec, SearchSpace, parse_space
from studies.errors import UsageError

FIELDS = searchable_fields()


def no_line(section: str, key: str | None) -> str:
    return ""


def spec(space: SearchSpace, name: str) -> ParamSpec:
    found = space.get(name)
    assert found is not None, f"{name} is not searched"
    return found


def parse(raw: dict[str, Any]) -> tuple[SearchSpace, dict[str, Any]]:
    return parse_space(raw, FIELDS, no_line)


def test_lists_are_categorical_choices_with_attention_first() -> None:
    space, fixed = parse({"heads": [1, 2], "norm": ["softmax", "double"],
                          "attention": ["external", "self"], "mlp_ratio": [1, 2.5]})
    assert fixed == {}
    assert space.names == ["attention", "heads", "norm", "mlp_ratio"]
    assert spec(space, "heads") == ParamSpec("heads", choices=(1, 2))
    assert spec(space, "norm").choices == ("softmax", "double")
    # Integers are accepted for float fields, and stored as floats.
    mlp = spec(space, "mlp_ratio").choices
    assert mlp == (1.0, 2.5) and all(type(v) is float for v in mlp)


def test_ranges_for_int_and_float_fields() -> None:
    space, _ = parse({"mem_size": {"low": 8, "high": 128, "log": True},
                      "depth": {"low": 1, "high": 4, "step": 1},
                      "lr": {"low": 1e-4, "high": 1e-1, "log": True},
                      "dropout": {"low": 0, "high": 0.2, "step": 0.1}})
    mem, depth, lr, dropout = (spec(space, n) for n in ("mem_size", "depth", "lr", "dropout"))
    assert not mem.categorical and mem.is_int and mem.log and (mem.low, mem.high) == (8, 128)
    assert depth.is_int and depth.step == 1 and depth.values() == [1, 2, 3, 4]
    assert not lr.is_int and lr.log and lr.step is None and lr.values() == [1e-4, 1e-1]
    assert not dropout.is_int and dropout.values() == pytest.approx([0.0, 0.1, 0.2])
    assert space.to_dict()["depth"] == {"low": 1, "high": 4, "log": False, "step": 1}


def test_stepped_grid_stops_at_high() -> None:
    """Optuna never samples past ``high``; the grid (used by check_space, grid) must not either."""
    heads = ParamSpec("heads", low=1, high=8, step=4, is_int=True)
    assert heads.values() == [1, 5]
    lr = ParamSpec("lr", low=0.1, high=0.35, step=0.1)
    assert lr.values() == pytest.approx([0.1, 0.2, 0.3])


def test_scalars_become_fixed_settings() -> None:
    space, fixed = parse({"heads": [2, 4], "dim": 32, "norm": "softmax", "epochs": 3, "lr": 1})
    assert space.names == ["heads"]
    assert fixed == {"dim": 32, "norm": "softmax", "epochs": 3, "lr": 1.0}
    settings = resolve_settings({"space": {"heads": [2, 4], "dim": 32, "epochs": 3}})
    assert settings.model["dim"] == 32 and settings.train.epochs == 3
    assert settings.space.names == ["heads"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"heads": []}, "empty list"),
        ({"heads": [2, 4, 2]}, "repeated choices"),
        ({"mlp_ratio": [2, 2.0]}, "repeated choices"),
        ({"mem_size": {"low": 64, "high": 8}}, "low (64) is greater than high (8)"),
        ({"lr": {"low": 0, "high": 0.1, "log": True}}, "log range needs low > 0"),
        ({"mem_size": {"low": -8, "high": 8, "log": True}}, "log range needs low > 0"),
        ({"depth": {"low": 1, "high": 4, "step": 0}}, "step must be > 0"),
        ({"dropout": {"low": 0.0, "high": 0.2, "step": -0.1}}, "step must be > 0"),
        ({"depth": {"low": 1, "high": 4, "step": 1, "log": True}}, "cannot be combined"),
        ({"depth": {"low": 1, "high": 4, "stride": 2}}, "unknown range key(s) stride"),
        ({"depth": {"low": 1}}, "needs both low and high"),
        ({"norm": {"low": 1, "high": 2}}, "needs a numeric field"),
        ({"depth": {"low": 1, "high": 4, "log": "yes"}}, "log must be true or false"),
        ({"image_size": [8, 16]}, "not a searchable field"),
        ({"num_classes": 10}, "not a searchable field"),
        ({"colour": ["red"]}, "not a searchable field"),
        ({"heads": [1, 2.5]}, "values must be integers; got 2.5"),
        ({"heads": [True, 2]}, "values must be integers; got True"),
        ({"heads": ["4"]}, "values must be integers; got '4'"),
        ({"norm": ["double", 1]}, "values must be strings; got 1"),
        ({"lr": ["fast"]}, "values must be numbers; got 'fast'"),
        ({"dim": 64.0}, "values must be integers; got 64.0"),
        ({"mem_size": {"low": 8.5, "high": 16}}, "values must be integers; got 8.5"),
        ({"depth": {"low": 1, "high": 4, "step": 1.5}}, "values must be integers; got 1.5"),
    ],
)
def test_space_errors_name_the_field(raw: dict[str, Any], expected: str) -> None:
    (name,) = raw
    with pytest.raises(UsageError) as info:
        parse(raw)
    message = str(info.value)
    assert f"[space] {name}" in message
    assert expected in message


def test_space_errors_carry_the_location() -> None:
    def locate(section: str, key: str | None) -> str:
        return f"conf.toml:{7 if key == 'heads' else 1}: "

    with pytest.raises(UsageError, match=r"^conf\.toml:7: \[space\] heads: empty list"):
        parse_space({"mem_size": [8], "heads": []}, FIELDS, locate)


def ask_many(space: SearchSpace, n: int, fixed: dict[str, Any] | None = None
             ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` trials of a real in-memory study: (what suggest returned, what the trial holds)."""
    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial, fixed or {})
        out.append((params, dict(trial.params)))
        study.tell(trial, [0.5, 1.0])
    return out


def test_default_space_samples_every_field() -> None:
    space = SearchSpace.default()  # attention is the model's default, "external": not searched
    assert space.names == ["mem_size", "heads", "norm"]
    assert spec(space, "mem_size").choices == (8, 16, 32, 64, 128)
    assert spec(space, "heads").choices == (1, 2, 4, 8)
    trials = ask_many(space, 20)
    for params, stored in trials:
        assert params == stored
        assert set(params) == {"mem_size", "heads", "norm"}
        assert params["mem_size"] in (8, 16, 32, 64, 128) and params["heads"] in (1, 2, 4, 8)
    assert {p["norm"] for p, _ in trials} == {"softmax", "double"}


def test_self_attention_trials_have_no_ea_only_params() -> None:
    space, _ = parse({"attention": ["external", "self"], "mem_size": [8, 16, 32],
                      "heads": [1, 2], "norm": ["softmax", "double"]})
    trials = ask_many(space, 60)
    kinds = {p["attention"] for p, _ in trials}
    assert kinds == {"external", "self"}
    for params, stored in trials:
        assert params == stored  # nothing was suggested that suggest() did not return
        if params["attention"] == "self":
            assert set(stored) == {"attention", "heads"}
        else:
            assert set(stored) == {"attention", "mem_size", "heads", "norm"}


def test_fixed_self_attention_skips_ea_only_params() -> None:
    space, _ = parse({"mem_size": [8, 16], "heads": [1, 2]})
    for params, stored in ask_many(space, 10, fixed={"attention": "self"}):
        assert set(params) == set(stored) == {"heads"}
    assert list(space.combinations({"attention": "self"})) == [{"heads": 1}, {"heads": 2}]


def test_combinations_collapse_self_attention_duplicates() -> None:
    space, _ = parse({"attention": ["external", "self"], "mem_size": [8, 16], "heads": [1, 2],
                      "norm": ["softmax", "double"]})
    points = list(space.combinations({}))
    assert len(points) == 2 * 2 * 2 + 2
    sa = [p for p in points if p["attention"] == "self"]
    assert sorted(p["heads"] for p in sa) == [1, 2]
    assert all(not EA_ONLY & set(p) for p in sa)
    assert space.is_conditional({})
    external_only, _ = parse({"mem_size": [8, 16], "heads": [1, 2]})
    assert len(list(external_only.combinations({}))) == 4
    assert not external_only.is_conditional({})


def test_combinations_respects_the_limit() -> None:
    space, _ = parse({"mem_size": list(range(1, 101)), "heads": list(range(1, 101))})
    assert len(list(space.combinations({}, limit=50))) == 50


def test_grid_rejects_continuous_ranges() -> None:
    space, _ = parse({"heads": [1, 2], "depth": {"low": 1, "high": 3, "step": 1}})
    assert space.grid() == {"heads": [1, 2], "depth": [1, 2, 3]}
    continuous, _ = parse({"lr": {"low": 1e-3, "high": 1e-1, "log": True}})
    with pytest.raises(UsageError, match=r"\[space\] lr is a continuous range"):
        continuous.grid()


@pytest.mark.parametrize(
    ("space", "field", "value", "reason"),
    [
        ({"heads": [3]}, "heads", "3", "must divide dim*expand"),
        ({"heads": [3, 4]}, "heads", "3", "must divide dim*expand"),
        ({"mem_size": [0]}, "mem_size", "0", "mem_size must be an integer >= 1"),
        ({"mem_size": [0, 8], "heads": [1, 2]}, "mem_size", "0", ">= 1"),
        ({"patch_size": [3]}, "patch_size", "3", "must divide image_size (8)"),
        ({"patch_size": [2, 3]}, "patch_size", "3", "must divide image_size (8)"),
    ],
)
def test_check_space_rejects_values_that_are_never_possible(
    space: dict[str, Any], field: str, value: str, reason: str
) -> None:
    settings = resolve_settings({"space": space})
    with pytest.raises(UsageError) as info:
        check_space(settings)
    message = str(info.value)
    assert re.search(rf"\[space\] {field} = \W*{value}\W* is never possible", message), message
    assert reason in message


def test_check_space_accepts_values_possible_in_some_combination() -> None:
    # heads = 3 fails with dim 64 but works with dim 48; heads = 4 works with both.
    check_space(resolve_settings({"space": {"heads": [3, 4], "dim": [48, 64]}}))
    check_space(resolve_settings({"space": {"heads": [3], "dim": 48}}))  # dim fixed to 48
    check_space(resolve_settings({}))  # the default space
    check_space(resolve_settings({"space": {"attention": ["external", "self"],
                                            "mem_size": [8, 16], "heads": [1, 2]}}))
    # patch 4 divides CIFAR's 32 but not digits' 8.
    check_space(resolve_settings({"data": {"dataset": "cifar10"}, "space": {"patch_size": [4]}}))
