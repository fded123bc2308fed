"""``[train] cuda_graph``: the training step on the graphs' buffers, with the capture's warm-up
undone, trains exactly what the eager loop trains. What holds without a GPU; capturing and
replaying are in tests/gpu."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from explore.config import DataSettings, Settings, TrainSettings
from explore.engine.data import Dataset, load_dataset
from explore.engine.stepgraphs import StepGraphs
from explore.engine.train import EpochResult, TrainResult, train_model
from explore.plan import experiment_key
from extattn import ModelConfig, create_model

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 1234
TINY = ModelConfig(dim=16, depth=1, heads=2, mem_size=8, dropout=0.1)  # dropout: RNG matters


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DataSettings(max_train=300), seed=0)


def build(seed: int = SEED) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(TINY)


def curve(result: TrainResult) -> list[tuple[int, float, float]]:
    return [(r.epoch, r.accuracy, r.loss) for r in result.history]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("augment", [False, True])
def test_steps_on_the_graphs_buffers_train_exactly_as_eager_steps(digits: Dataset,
                                                                  augment: bool) -> None:
    settings = TrainSettings(epochs=3, batch_size=64)  # 300 = 4 × 64 + 44: two batch sizes
    eager_model, graph_model = build(), build()
    eager = train_model(eager_model, digits, settings, SEED, augment=augment, step_graphs=False)
    graphed = train_model(graph_model, digits, settings, SEED, augment=augment,
                          step_graphs=True)
    assert curve(graphed) == curve(eager)
    assert_same_weights(graph_model, eager_model)
    assert graphed.graph_seconds > 0 and eager.graph_seconds == 0
    assert graphed.graphed is False  # nothing is captured on the CPU
    assert curve(eager)[-1][2] < curve(eager)[0][2]  # and it did train


class _WithUnused(nn.Module):
    """A model with a parameter no loss reaches: eager AdamW never touches it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = build()
        self.unused = nn.Parameter(torch.ones(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_a_parameter_without_gradients_is_left_alone_as_in_eager_steps(digits: Dataset) -> None:
    settings = TrainSettings(epochs=2, batch_size=64, weight_decay=0.5)
    models = {}
    for graphed in (False, True):
        models[graphed] = _WithUnused()
        train_model(models[graphed], digits, settings, SEED, step_graphs=graphed)
    assert_same_weights(models[True], models[False])
    assert models[True].unused.grad is None
    assert torch.equal(models[True].unused.detach(), torch.ones(3, 3))  # no weight decay


def test_the_warm_up_steps_are_undone(digits: Dataset) -> None:
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    # A state as after some training: the warm-up must give these values back, not zeros.
    model(digits.train_x[:8]).sum().backward()
    optimizer.step()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    rng = torch.get_rng_state()
    calls: list[int] = []

    def step(x: torch.Tensor, y: torch.Tensor, loss_sum: torch.Tensor) -> None:
        calls.append(len(x))
        optimizer.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()

    graphs = StepGraphs(step, model, optimizer, [16, 5], digits.train_x, digits.train_y,
                        capture=False)
    assert sorted(set(calls)) == [5, 16] and len(calls) >= 4  # it warmed up on both sizes
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)
    for p, state in optimizer.state.items():
        for key, value in state.items():
            torch.testing.assert_close(value, moments[id(p)][key], rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), rng)
    # The warm-up made the gradient buffers the graphs use, zeroed.
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    assert graphs.loss_sum.item() == 0.0
    group_lrs = [g["lr"] for g in optimizer.param_groups]
    assert group_lrs == [0.05] and optimizer.param_groups[0]["capturable"] is False

    def fill(x: torch.Tensor, y: torch.Tensor) -> None:
        x.copy_(digits.train_x[16:32])
        y.copy_(digits.train_y[16:32])

    graphs.run(fill, 16)  # a step: the buffers hold the batch, the weights move
    assert calls[-1] == 16 and graphs.loss_sum.item() > 0
    assert not torch.equal(model.state_dict()["head.weight"], weights["head.weight"])


def test_graphed_training_resumes_into_eager_training_and_back(digits: Dataset,
                                                               tmp_path: Path) -> None:
    settings = TrainSettings(epochs=4, batch_size=64)
    straight_model = build()
    straight = train_model(straight_model, digits, settings, SEED, augment=True)

    class Stop(Exception):
        pass

    def stop_at(epoch: int):
        def on_epoch(record: EpochResult, history: list[EpochResult]) -> None:
            if record.epoch == epoch:
                raise Stop
        return on_epoch

    state = tmp_path / "state.pt"
    with pytest.raises(Stop):  # graphed, stopped after epoch 1
        train_model(build(), digits, settings, SEED, augment=True, state_path=state,
                    on_epoch=stop_at(1), step_graphs=True)
    with pytest.raises(Stop):  # eager from there, stopped after epoch 3
        train_model(build(), digits, settings, SEED, augment=True, state_path=state,
                    on_epoch=stop_at(3), step_graphs=False)
    model = build(seed=7)
    resumed = train_model(model, digits, settings, SEED, augment=True, state_path=state,
                          step_graphs=True)  # graphed to the end
    assert resumed.resumed_from == 3
    assert curve(resumed) == curve(straight)
    assert_same_weights(model, straight_model)


def test_a_finished_state_needs_no_graphs(digits: Dataset, tmp_path: Path) -> None:
    settings = TrainSettings(epochs=1, batch_size=64)
    state = tmp_path / "state.pt"
    train_model(build(), digits, settings, SEED, state_path=state, step_graphs=True)
    again = train_model(build(), digits, settings, SEED, state_path=state, step_graphs=True)
    assert again.resumed_from == 1 and again.graph_seconds == 0


def test_cuda_graph_is_on_by_default_ignored_on_the_cpu_and_not_part_of_the_key(
        digits: Dataset) -> None:
    assert TrainSettings().cuda_graph is True
    result = train_model(build(), digits, TrainSettings(epochs=1), SEED)
    assert result.graphed is False and result.graph_seconds == 0  # the CPU trains eagerly
    settings = Settings()
    model = {"dim": 16}
    train_on = {"epochs": 1, "cuda_graph": True}
    train_off = {"epochs": 1, "cuda_graph": False}
    # How a step runs is not what is trained: trials with either are the same experiment,
    # and keys stored before the setting existed stay valid.
    assert experiment_key(model, train_on, settings) == experiment_key(model, train_off, settings)
    assert experiment_key(model, train_on, settings) == experiment_key(model, {"epochs": 1},
                                                                       settings)
