"""Training on device-resident digits: it learns, it is reproducible, it resumes exactly, and a
non-finite loss stops it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from explore.config import DataSettings, TrainSettings
from explore.engine.data import Dataset, load_dataset
from explore.engine.train import EpochResult, NonFiniteLoss, TrainResult, train_model
from explore.engine.trainstate import pack_tensors, unpack_tensors
from extattn import ModelConfig, create_model
from extattn.checkpoint import atomic_torch_save

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 1234
TINY = ModelConfig(dim=16, depth=1, heads=2, mem_size=8, dropout=0.1)  # dropout: RNG matters


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DataSettings(), seed=0)


def build(config: ModelConfig = TINY, seed: int = SEED) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(config)


def curve(result: TrainResult) -> list[tuple[int, float, float]]:
    """The history without wall-clock times."""
    return [(r.epoch, r.accuracy, r.loss) for r in result.history]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_a_small_model_learns_digits(digits: Dataset) -> None:
    settings = TrainSettings(epochs=8)  # the default training settings otherwise
    result = train_model(build(ModelConfig(dim=64, depth=1, heads=2, mem_size=16)), digits,
                         settings, SEED)
    assert [r.epoch for r in result.history] == list(range(1, 9))
    assert result.accuracy == result.history[-1].accuracy
    assert result.accuracy >= 0.8, curve(result)  # chance is 0.1
    assert result.history[-1].loss < result.history[0].loss
    assert result.train_seconds > 0 and result.resumed_from == 0


def test_the_same_seed_gives_the_same_training(digits: Dataset) -> None:
    settings = TrainSettings(epochs=2)
    runs = []
    for _ in range(2):
        model = build()
        runs.append((model, train_model(model, digits, settings, SEED, augment=True)))
    (model_a, a), (model_b, b) = runs
    assert curve(a) == curve(b)
    assert_same_weights(model_a, model_b)
    other = train_model(build(), digits, settings, SEED + 1, augment=True)
    assert curve(other) != curve(a)  # the seed drives batch order, augmentation and dropout


class Interruption(Exception):
    pass


@pytest.mark.parametrize("state_interval", [0.0, 3600.0], ids=["saved-each-epoch", "not-yet-saved"])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_resuming_after_an_interruption_matches_an_uninterrupted_run(
        digits: Dataset, tmp_path: Path, stop_after: int, state_interval: float) -> None:
    """Whether or not the interrupted epoch's state was already saved ([train]
    state_interval), the state of that epoch is what the next attempt starts from."""
    settings = TrainSettings(epochs=4, state_interval=state_interval)
    state = tmp_path / "state.pt"
    straight_model = build()
    straight = train_model(straight_model, digits, settings, SEED, augment=True)

    seen: list[int] = []

    def interrupt(record: EpochResult, history: list[EpochResult]) -> None:
        seen.append(record.epoch)
        if record.epoch == stop_after:
            assert record.saved == (state_interval == 0)
            raise Interruption  # like a signal: the state of this epoch is saved on the way out

    with pytest.raises(Interruption):
        train_model(build(), digits, settings, SEED, augment=True, on_epoch=interrupt,
                    state_path=state)
    assert seen == list(range(1, stop_after + 1)) and state.is_file()

    torch.manual_seed(999)  # another process: the global RNG is wherever it is
    torch.rand(100)
    resumed_model = build(seed=7)  # its initial weights must not matter either
    resumed = train_model(resumed_model, digits, settings, SEED, augment=True,
                          on_epoch=lambda record, history: seen.append(record.epoch),
                          state_path=state)
    assert resumed.resumed_from == stop_after
    assert seen == [*range(1, stop_after + 1), *range(stop_after + 1, 5)]
    assert resumed.accuracy == straight.accuracy
    assert curve(resumed) == curve(straight)
    assert_same_weights(resumed_model, straight_model)


def saved_epoch(path: Path) -> int | None:
    """The epoch of the training state at ``path`` (None: no state)."""
    if not path.is_file():
        return None
    return int(unpack_tensors(torch.load(path, weights_only=True)["packed"])["epoch"])


@pytest.mark.parametrize(("state_interval", "saved"), [
    (0.0, [1, 2, 3, 4, 5]),  # after every epoch
    (3600.0, [2, 5]),  # only the epochs asked for (pruning rungs) and the last
], ids=["every-epoch", "interval-not-reached"])
def test_the_state_is_saved_by_state_interval_rungs_and_the_last_epoch(
        digits: Dataset, tmp_path: Path, state_interval: float, saved: list[int]) -> None:
    state = tmp_path / "state.pt"
    seen: list[tuple[int, bool, int | None]] = []  # (epoch, record.saved, epoch on disk)
    settings = TrainSettings(epochs=5, state_interval=state_interval)
    result = train_model(build(), digits, settings, SEED, state_path=state, save_at={2},
                         on_epoch=lambda record, history: seen.append(
                             (record.epoch, record.saved, saved_epoch(state))))
    assert [epoch for epoch, was_saved, _ in seen if was_saved] == saved
    on_disk = None
    for epoch, was_saved, disk in seen:  # the file always holds the latest saved epoch
        on_disk = epoch if was_saved else on_disk
        assert disk == on_disk, seen
    straight = train_model(build(), digits, TrainSettings(epochs=5), SEED)
    assert curve(result) == curve(straight)  # how often it saves changes nothing trained


def test_a_state_saved_every_second_goes_by_the_clock(digits: Dataset, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default interval (1 s) an epoch's state is saved once a second has passed
    since the last save. The clock here moves only when an epoch starts, by 0.6 s."""
    import explore.engine.train as train_module
    now = [0.0]

    @contextmanager
    def epoch_guard() -> Iterator[None]:
        now[0] += 0.6
        yield

    monkeypatch.setattr(train_module.time, "perf_counter", lambda: now[0])
    seen: list[int] = []
    train_model(build(), digits, TrainSettings(epochs=5), SEED, state_path=tmp_path / "s.pt",
                epoch_guard=epoch_guard,
                on_epoch=lambda record, history: seen.append(record.epoch) if record.saved
                else None)
    assert TrainSettings().state_interval == 1.0
    assert seen == [2, 4, 5]  # 1.2 s after the start, 1.2 s after that save, the last epoch


def test_state_interval_is_not_part_of_the_key_and_may_change_on_continue() -> None:
    from explore.config import MUTABLE_KEYS, Settings, conflicts
    from explore.plan import experiment_key

    settings = Settings()
    model = {"dim": 16}
    keys = {experiment_key(model, {"epochs": 2, "state_interval": v}, settings)
            for v in (0.0, 1.0, 60.0)}
    assert keys == {experiment_key(model, {"epochs": 2}, settings)}  # keys from before stay
    assert "train.state_interval" in MUTABLE_KEYS
    assert conflicts(settings, {"train": {"state_interval": 5.0}}) == []
    assert conflicts(settings, {"train": {"epochs": 5}})  # what is trained still conflicts


def nan_output(model: nn.Module) -> nn.Module:
    model.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    return model


def test_a_state_is_packed_and_unpacks_exactly(digits: Dataset) -> None:
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model(digits.train_x[:8]).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": torch.get_rng_state(), "none": None, "pair": (1, [2.5, "x"])}
    packed = pack_tensors(state)
    tensors = list(packed["buffers"].values())
    assert len(tensors) <= 3  # one buffer per dtype instead of ~100 tensors
    restored = unpack_tensors(packed)
    assert restored["none"] is None and restored["pair"] == (1, [2.5, "x"])
    assert torch.equal(restored["rng"], state["rng"])
    assert_same_weights(_with(restored["model"]), _with(state["model"]))
    assert restored["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    for i, moments in state["optimizer"]["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(restored["optimizer"]["state"][i][name], value,
                                       rtol=0, atol=0)


def _with(weights: dict[str, torch.Tensor]) -> nn.Module:
    model = build()
    model.load_state_dict(weights)
    return model


def test_a_state_saved_by_the_previous_version_still_resumes(digits: Dataset,
                                                             tmp_path: Path) -> None:
    """States written before packing (version 1: tensors as torch.save writes them) resume."""
    settings = TrainSettings(epochs=3)
    straight_model = build()
    straight = train_model(straight_model, digits, settings, SEED)
    state = tmp_path / "state.pt"

    def stop(record: EpochResult, history: list[EpochResult]) -> None:
        if record.epoch == 2:
            raise Interruption

    with pytest.raises(Interruption):
        train_model(build(), digits, settings, SEED, on_epoch=stop, state_path=state)
    saved = torch.load(state, weights_only=True)
    assert saved["version"] == 2
    atomic_torch_save({**unpack_tensors(saved["packed"]), "version": 1}, state)
    resumed_model = build(seed=7)
    resumed = train_model(resumed_model, digits, settings, SEED, state_path=state)
    assert resumed.resumed_from == 2
    assert curve(resumed) == curve(straight)
    assert_same_weights(resumed_model, straight_model)


@pytest.mark.parametrize(("make", "settings"), [
    (build, TrainSettings(epochs=2, lr=1e30)),
    (lambda: nan_output(build()), TrainSettings(epochs=2)),
], ids=["huge-lr", "nan-forward"])
def test_a_non_finite_loss_raises(digits: Dataset, tmp_path: Path,
                                  make: Callable[[], nn.Module], settings: TrainSettings) -> None:
    epochs: list[int] = []
    state = tmp_path / "state.pt"
    with pytest.raises(NonFiniteLoss, match="epoch 1"):
        train_model(make(), digits, settings, SEED, state_path=state,
                    on_epoch=lambda record, history: epochs.append(record.epoch))
    assert epochs == [] and not state.exists()  # nothing of the failed epoch is kept
