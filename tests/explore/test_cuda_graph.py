"""``[measure] cuda_graph``: what holds without a GPU (the GPU side is in tests/gpu).

On CUDA the throughput is timed as CUDA graph replays; on the CPU the option changes nothing;
every measurement records which it was, and a study created before the option goes on timing
eager forwards (its trials' figures stay comparable).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import torch

from explore.config import MeasureSettings, Settings
from explore.engine.measure import Throughput, measure_throughput
from explore.run.opening import ATTR_SETTINGS, RunRequest, open_study
from extattn import ModelConfig, create_model
from tests.conftest import write_tiny_config

QUICK = MeasureSettings(batch_size=8, warmup=1, min_iters=3, min_time=0.0, retries=0, threads=1)


def test_the_default_is_on_and_the_cpu_times_eager_forwards() -> None:
    assert MeasureSettings().cuda_graph is True
    model = create_model(ModelConfig(dim=16, depth=1, heads=1, mem_size=8))
    result = measure_throughput(model, (1, 8, 8), torch.device("cpu"), QUICK)
    assert result.graph is False
    assert result.to_dict()["graph"] is False
    assert result.median > 0


def test_graph_min_time_applies_to_graph_replays_only() -> None:
    import time

    import pytest

    from studies.errors import UsageError

    assert MeasureSettings().graph_min_time == 0.1
    model = create_model(ModelConfig(dim=16, depth=1, heads=1, mem_size=8))
    settings = MeasureSettings(batch_size=8, warmup=1, min_iters=3, min_time=0.3,
                               graph_min_time=0.0, retries=0, threads=1)
    started = time.perf_counter()
    result = measure_throughput(model, (1, 8, 8), torch.device("cpu"), settings)
    assert result.graph is False
    assert time.perf_counter() - started >= 0.3  # eager forwards: min_time, whatever else
    with pytest.raises(ValueError, match="graph_min_time"):
        MeasureSettings(graph_min_time=-1.0)
    with pytest.raises(UsageError, match="graph_min_time must be a number"):
        Settings.from_dict({"measure": {"graph_min_time": "short"}})


def test_measurements_stored_before_the_field_read_as_eager() -> None:
    old = {"median": 1000.0, "min": 900.0, "max": 1100.0, "spread": 0.05, "iters": 30,
           "batch": 256, "threads": 2, "device": "cpu", "attempts": 1, "noisy": False}
    assert Throughput.from_dict(old).graph is False
    assert Throughput.from_dict({**old, "graph": True}).graph is True


def _request(tmp_path: Path, explicit: dict | None = None) -> RunRequest:
    return RunRequest(name="old", storage=f"sqlite:///{tmp_path / 'explore.db'}",
                      config_file=write_tiny_config(tmp_path), device="cpu",
                      explicit=explicit or {}, handle_signals=False)


def test_a_study_from_before_the_option_goes_on_timing_eager_forwards(tmp_path: Path) -> None:
    created = open_study(_request(tmp_path))
    assert created.settings.measure.cuda_graph is True  # a new study: graphs
    stored = created.study.user_attrs[ATTR_SETTINGS]
    del stored["measure"]["cuda_graph"]  # as an earlier explore stored its settings
    created.study.set_user_attr(ATTR_SETTINGS, stored)

    continued = open_study(_request(tmp_path))

    assert continued.settings.measure.cuda_graph is False
    assert Settings.from_dict(stored).measure.cuda_graph is True  # the default, for new ones
    # Asking for graphs explicitly is a conflict with what the study measured, not a silent mix.
    try:
        open_study(_request(tmp_path, {"measure": {"cuda_graph": True}}))
    except Exception as exc:  # UsageError: one line naming the key
        assert "measure.cuda_graph" in str(exc)
    else:
        raise AssertionError("a study that timed eager forwards accepted cuda_graph = true")
    study = optuna.load_study(study_name="old", storage=f"sqlite:///{tmp_path / 'explore.db'}")
    assert "cuda_graph" not in study.user_attrs[ATTR_SETTINGS]["measure"]  # nothing rewritten


def _settings(train: dict | None = None, space: dict | None = None) -> Settings:
    from explore.config import resolve_settings

    return resolve_settings({"train": train or {}, "space": space or {}})


def test_training_with_torch_compiles_cuda_graphs_is_refused_on_cuda_only() -> None:
    from explore.run.opening import check_compile
    from studies.errors import UsageError

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    bad = _settings({"compile": True, "compile_mode": "reduce-overhead"})
    try:
        check_compile(cuda, bad)
    except UsageError as exc:
        assert "reduce-overhead" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("reduce-overhead training on CUDA was accepted")
    check_compile(cpu, bad)  # on the CPU it compiles as default does
    check_compile(cuda, _settings({"compile": True}))  # default mode: fine
    check_compile(cuda, _settings({"compile": False, "compile_mode": "reduce-overhead"}))
    searched = _settings({"compile": True},
                         {"compile_mode": ["default", "reduce-overhead"]})
    try:
        check_compile(cuda, searched)
    except UsageError:
        pass
    else:
        raise AssertionError("a space searching reduce-overhead on CUDA was accepted")
    check_compile(cuda, _settings({"compile_mode": "reduce-overhead"},
                                  {"compile": [False]}))
