"""``--compile``: torch.compile'd trials, with every graph compiled before anything is timed.

Real inductor compilation (C++ code generated and built by the machine's compiler) of a tiny
model: slow the first time on a fresh machine, then served from inductor's cache.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from torch._dynamo.utils import counters

from explore.config import DataSettings, MeasureSettings, Settings, TrainSettings
from explore.engine.data import Dataset, load_dataset
from explore.engine.measure import measure_throughput
from explore.engine.train import compile_for_trial, train_model
from explore.plan import experiment_key, plan_trial
from extattn import ModelConfig, create_model
from extattn.checkpoint import load_checkpoint
from tests.conftest import EXPLORE, clean_env, write_tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = ModelConfig(dim=16, depth=1, heads=2, mem_size=8)


@pytest.fixture(scope="module")
def small() -> Dataset:
    """200 training images (batches of 64 and a last one of 8), 360 to evaluate."""
    return load_dataset(DataSettings(max_train=200), seed=0)


def frames_compiled() -> int:
    return sum(counters["frames"].values()) + sum(counters["stats"].values())


def test_compiled_graphs_are_all_built_before_timing(small: Dataset) -> None:
    torch.manual_seed(0)
    model = create_model(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    settings = TrainSettings(epochs=3, compile=True)
    torch._dynamo.reset()
    counters.clear()
    net, seconds = compile_for_trial(model, small, settings, measure_batch=32)
    assert seconds > 0
    assert counters["stats"]["unique_graphs"] >= 2  # inference and training at least
    # Compiling changed nothing the trial depends on: weights, gradients, random state.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)

    compiled_so_far = frames_compiled()
    throughput = measure_throughput(net, (1, 8, 8), torch.device("cpu"),
                                    MeasureSettings(batch_size=32, warmup=1, min_iters=3,
                                                    min_time=0.0, retries=0))
    result = train_model(model, small, settings, seed=0, net=net)
    # Measuring, training (both batch sizes) and evaluating compiled nothing new.
    assert frames_compiled() == compiled_so_far, dict(counters["stats"])
    assert throughput.median > 0 and len(result.history) == 3
    assert result.history[-1].loss < result.history[0].loss  # it learns
    # The compiled module trained the model's own parameters.
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_compiled_training_matches_eager(small: Dataset) -> None:
    settings = TrainSettings(epochs=2)
    torch.manual_seed(0)
    eager = train_model(create_model(TINY), small, settings, seed=0)
    torch.manual_seed(0)
    model = create_model(TINY)
    net, _ = compile_for_trial(model, small, TrainSettings(epochs=2, compile=True), 32)
    compiled = train_model(model, small, settings, seed=0, net=net)
    # Same data order and initialization; only the kernels' rounding differs.
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=0.02)
    assert abs(eager.accuracy - compiled.accuracy) <= 0.05


def test_eager_keys_are_unchanged_and_compiled_ones_differ() -> None:
    settings = Settings()
    shape = (8, 1, 10)
    eager = plan_trial({}, settings, shape)
    # The key of an eager trial is the one it had before the option existed.
    train = {k: v for k, v in eager.train.__dict__.items() if not k.startswith("compile")}
    assert eager.key == experiment_key(eager.model.to_dict(), train, settings)
    on = Settings.from_dict({"train": {"compile": True}})
    assert plan_trial({}, on, shape).key != eager.key
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        TrainSettings(compile_mode="fast")


def test_a_compiled_study(tmp_path: Path) -> None:
    write_tiny_config(tmp_path, space="mem_size = [8]\nheads = [2]")
    proc = subprocess.run(
        [str(EXPLORE), "study", "run", "--config", "tiny.toml", "--trials", "1", "--epochs", "1",
         "--compile", "--warm-start", "0", "--keep-checkpoints", "pareto", "-q"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path}/explore.db")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["compile_seconds"] > 0
    assert study.user_attrs["explore_settings"]["train"]["compile"] is True
    # The kept checkpoint holds the model's own weights (no torch.compile wrapper in the keys).
    (path,) = list(tmp_path.rglob(trial.user_attrs["checkpoint_artifact"]))
    model, config, _ = load_checkpoint(path)
    assert config.mem_size == 8 and config.heads == 2
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


def test_model_bench_and_train_compile(tmp_path: Path) -> None:
    def explore(*args: str) -> dict:
        proc = subprocess.run([str(EXPLORE), "model", *args, "--set", "dim=16", "--set",
                               "depth=1", "-f", "json"], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "CUDA runtime" not in proc.stderr  # torch's toolchain warning is kept quiet
        return json.loads(proc.stdout)

    bench = explore("bench", "--compile", "--threads", "1")
    assert bench["compile_seconds"] > 0 and bench["throughput"]["median"] > 0
    assert "compile_seconds" not in explore("bench", "--threads", "1")
    trained = explore("train", "--compile", "--epochs", "1")
    assert trained["compile_seconds"] > 0 and trained["train"]["compile"] is True
    assert len(trained["history"]) == 1
