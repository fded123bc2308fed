"""``[data] split = "replicate"``: replicate r > 0 validates on its own stratified hold-out, the
same one for every configuration's replicate r (paired), and retraining finds it again."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
import torch

from explore.config import resolve_settings
from explore.engine.data import load_dataset
from explore.plan import plan_trial, split_seed
from explore.search.objective import Objective
from studies.errors import UsageError
from tests.conftest import assert_retrained, run_replicated_study


def test_split_seed_is_the_study_seed_unless_asked_and_shared_across_configurations() -> None:
    assert split_seed(7, 3, "fixed") == 7 and split_seed(7, 0, "replicate") == 7
    seeds = {split_seed(7, r, "replicate") for r in range(1, 50)}
    assert len(seeds) == 49 and 7 not in seeds
    assert split_seed(7, 2, "replicate") == split_seed(7, 2, "replicate")
    assert split_seed(8, 2, "replicate") != split_seed(7, 2, "replicate")


def test_a_replicate_validates_on_its_own_stratified_hold_out(tmp_path: Path) -> None:
    settings = resolve_settings({"data": {"split": "replicate"}, "study": {"seed": 3}})
    data = load_dataset(settings.data, seed=3)
    objective = Objective(settings, data, torch.device("cpu"), tmp_path, threading.Event())
    c, h, _ = data.image_shape
    shape = (h, c, data.num_classes)
    first = plan_trial({"mem_size": 8}, settings, shape, 0)
    later = plan_trial({"mem_size": 8}, settings, shape, 1)
    other = plan_trial({"mem_size": 32, "norm": "softmax"}, settings, shape, 1)
    assert objective.data_for(first) is data  # replicate 0 keeps the study's split
    mine = objective.data_for(later)
    assert objective.data_for(other) is mine  # replicate 1 of another configuration: paired
    assert not torch.equal(mine.eval_y, data.eval_y)
    third = objective.data_for(plan_trial({"mem_size": 8}, settings, shape, 2))
    assert not torch.equal(third.eval_y, mine.eval_y)
    # as many images, split another way, each class in the same share (within rounding)
    assert len(mine.eval_y) == len(data.eval_y) and len(mine.train_y) == len(data.train_y)
    counts = torch.bincount(mine.eval_y) - torch.bincount(data.eval_y)
    assert int(counts.abs().max()) <= 1
    fixed = Objective(resolve_settings({"study": {"seed": 3}}), data, torch.device("cpu"),
                      tmp_path, threading.Event())
    assert fixed.data_for(later) is data


@pytest.mark.parametrize("data, says", [
    ({"split": "sometimes"}, "split must be 'fixed' or 'replicate'"),
    ({"split": "replicate", "eval_split": "test"}, "with eval_split = 'test' there is none"),
])
def test_bad_split_settings_are_refused(data: dict[str, str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        resolve_settings({"data": data})


@pytest.mark.slow
def test_a_replicate_split_study_retrains_to_the_stored_accuracy(tmp_path: Path) -> None:
    url = run_replicated_study(tmp_path, "s", data='split = "replicate"')
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert sorted(t.user_attrs["replicate"] for t in trials) == [0, 0, 1, 1]
    assert_retrained(url, "s", trials, tmp_path)  # replicate 1 only on its own hold-out
