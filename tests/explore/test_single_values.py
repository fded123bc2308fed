"""A ``[space]`` list of one value is a setting, not a param: optuna-dashboard's slice and contour
plots get no one-value columns, and the trials are the experiments they were as a param."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.conftest import TINY_MEASURE

pytestmark = pytest.mark.slow  # two real studies (6 trials): ~30 s on 2 cores

CONFIG = """\
[study]
warm_start = 0
replicates = 1
sampler = "bruteforce"
seed = 5

[model]
dim = 16
depth = 1

[train]
epochs = 1

""" + TINY_MEASURE + """
[space]
{space}
"""


def _run(cli: Callable[..., Any], directory: Path, name: str, space: str,
         *extra: str) -> optuna.Study:
    (directory / f"{name}.toml").write_text(CONFIG.format(space=space), encoding="utf-8")
    url = f"sqlite:///{directory / 'explore.db'}"
    result = cli("study", "run", "--name", name, "--config", f"{name}.toml", "--storage", url,
                 "--trials", "10", "-f", "json", *extra)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stopped"] == "search space exhausted"
    return optuna.load_study(study_name=name, storage=url)


def test_a_list_of_one_value_is_no_param_and_keeps_its_experiments(
        workdir: Path, cli: Callable[..., Any]) -> None:
    from explore.run.export_models import export_models

    fixed = _run(cli, workdir, "fixed", "mem_size = [8]\nheads = [1, 2]",
                 "--keep-checkpoints", "none")
    searched = _run(cli, workdir, "searched", "mem_size = [8, 16]\nheads = [1, 2]")
    assert [set(t.params) for t in fixed.trials] == [{"heads"}, {"heads"}]
    assert sorted(t.params["heads"] for t in fixed.trials) == [1, 2]
    # The stored settings hold the value: as written in [space], and in the model settings.
    settings = fixed.user_attrs["explore_settings"]
    assert settings["space"]["mem_size"] == [8] and settings["model"]["mem_size"] == 8
    twins = {(t.params["mem_size"], t.params["heads"]): t for t in searched.trials}
    assert len(twins) == 4
    for t in fixed.trials:
        twin = twins[(8, t.params["heads"])]
        assert t.user_attrs["model_config"]["mem_size"] == 8  # trained with the value
        assert t.user_attrs["params_count"] == twin.user_attrs["params_count"] != \
            twins[(16, t.params["heads"])].user_attrs["params_count"]
        for key in ("config_key", "configuration", "seed"):  # the same experiment
            assert t.user_attrs[key] == twin.user_attrs[key], key
        assert t.values[0] == twin.values[0]  # same seed, data and model: same accuracy (CPU)
    # `study models` retrains a trial from its params and the stored settings: the value is
    # there too (the run kept no checkpoints).
    index = export_models(f"sqlite:///{workdir / 'explore.db'}", "fixed", workdir / "models",
                          observed=True).index
    assert index["models"] and all(m["source"] == "retrained" for m in index["models"])
    for m in index["models"]:
        assert m["model_config"]["mem_size"] == 8
        assert m["retrained_accuracy"] == m["values"]["accuracy"]
