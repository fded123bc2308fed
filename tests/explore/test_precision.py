"""``[train] precision`` (``--precision``): auto (bf16 autocast on CUDA, fp32 on CPU), fp32, or
bf16 on any device: training, evaluation and the throughput measurement run in it, each trial
records it, and it is part of an experiment's identity (but for ``auto``, whose keys are those
from before the option)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from explore.config import DataSettings, MeasureSettings, Settings, TrainSettings
from explore.engine.data import Dataset, load_dataset
from explore.engine.device import autocast, resolve_precision
from explore.engine.measure import measure_throughput
from explore.engine.train import evaluate, train_model
from explore.plan import experiment_key, plan_trial
from extattn import ModelConfig, create_model
from tests.conftest import EXPLORE, clean_env, write_tiny_config

CPU = torch.device("cpu")
TINY = ModelConfig(dim=16, depth=1, heads=2, mem_size=8)
QUICK = MeasureSettings(batch_size=16, warmup=1, min_iters=2, min_time=0.0, retries=0)


@pytest.fixture(scope="module")
def small() -> Dataset:
    return load_dataset(DataSettings(max_train=200), seed=0)


def test_auto_is_bf16_on_cuda_and_fp32_elsewhere() -> None:
    assert resolve_precision(CPU, "auto") == "fp32"
    assert resolve_precision(torch.device("cuda"), "auto") == "bf16"
    assert resolve_precision(CPU, "bf16") == "bf16"
    assert resolve_precision(torch.device("cuda"), "fp32") == "fp32"
    with autocast(CPU, "bf16"):
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast(CPU, "auto"):
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        TrainSettings(precision="fp16")


def test_auto_keeps_the_keys_from_before_the_option_and_the_others_differ() -> None:
    shape = (8, 1, 10)
    auto = plan_trial({}, Settings(), shape)
    before = {k: v for k, v in auto.train.__dict__.items()
              if k != "precision" and not k.startswith("compile")}
    assert auto.key == experiment_key(auto.model.to_dict(), before, Settings())
    keys = {p: plan_trial({}, Settings.from_dict({"train": {"precision": p}}), shape).key
            for p in ("fp32", "bf16")}
    assert len({auto.key, *keys.values()}) == 3
    searched = plan_trial({"precision": "bf16"}, Settings(), shape)
    assert searched.train.precision == "bf16" and searched.key == keys["bf16"]


class _AutocastProbe(nn.Module):
    """Records whether CPU autocast was on in each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bool] = set()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.is_autocast_enabled("cpu"))
        return x.flatten(1) * self.scale


@pytest.mark.parametrize(("precision", "autocast_on"),
                         [("auto", False), ("fp32", False), ("bf16", True)])
def test_the_throughput_is_measured_in_the_trials_precision(precision: str,
                                                            autocast_on: bool) -> None:
    probe = _AutocastProbe()
    measure_throughput(probe, (1, 8, 8), CPU, QUICK, precision)
    assert probe.seen == {autocast_on}


@pytest.mark.usefixtures("one_thread")
def test_bf16_training_runs_its_matmuls_in_bf16_with_fp32_weights(small: Dataset) -> None:
    results = {}
    for precision in ("fp32", "bf16", "bf16"):
        torch.manual_seed(0)
        model = create_model(TINY)
        seen: set[torch.dtype] = set()
        model.blocks[0].attn.query.register_forward_hook(
            lambda m, i, out, seen=seen: seen.add(out.dtype))
        result = train_model(model, small, TrainSettings(epochs=2, precision=precision), seed=0)
        assert seen == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert all(p.dtype == torch.float32 for p in model.parameters())
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert torch.isfinite(weights).all()
        if precision in results:  # bf16 on the CPU is as reproducible from the seed as fp32
            assert torch.equal(results[precision][0], weights)
            assert results[precision][1] == [h.accuracy for h in result.history]
        results[precision] = (weights, [h.accuracy for h in result.history])
        if precision == "bf16":
            assert evaluate(model, small.eval_x, small.eval_y, "bf16") == result.accuracy
    assert not torch.equal(results["fp32"][0], results["bf16"][0])  # other numerics


@pytest.mark.slow
def test_a_study_in_bf16_and_one_that_searches_the_precision(tmp_path: Path) -> None:
    write_tiny_config(tmp_path, space='mem_size = [8]\nheads = [2]')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(EXPLORE), "study", "run", "--config", "tiny.toml",
                               "--epochs", "1", "-q", *args], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=300)

    proc = run("--name", "b", "--trials", "1", "--precision", "bf16")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path / 'explore.db'}")
    [trial] = study.trials
    assert trial.user_attrs["precision"] == "bf16"
    assert study.user_attrs["explore_settings"]["train"]["precision"] == "bf16"

    refused = run("--name", "b", "--trials", "2", "--precision", "fp32")
    assert refused.returncode == 2
    assert "train.precision: the study has 'bf16', this run asks for 'fp32'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(study.get_trials()) == 1  # nothing ran

    write_tiny_config(tmp_path, space='mem_size = [8]\nheads = [2]\nprecision = ["fp32", "bf16"]')
    proc = run("--name", "s", "--trials", "2", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    searched = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'explore.db'}")
    done = [t for t in searched.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["precision"] for t in done) == ["bf16", "fp32"]
    assert all(t.user_attrs["precision"] == t.params["precision"] for t in done)
    assert json.loads(proc.stdout)["finished"] == 2


def test_model_bench_reports_its_precision(cli) -> None:
    result = cli("model", "bench", "--precision", "bf16", "--set", "dim=16", "--set", "depth=1",
                 "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["precision"] == "bf16"
    bad = cli("model", "bench", "--precision", "fp16")
    assert bad.exit_code == 2
    assert "precision must be one of auto, fp32, bf16" in bad.stderr
