"""Settings from TOML files and CLI options: defaults, overrides, errors, storage round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import explore
from explore.config import (
    DATA_DERIVED,
    MUTABLE_KEYS,
    Settings,
    conflicts,
    load_toml,
    resolve_settings,
)
from explore.run.opening import RunRequest, _explicit_settings, check_space
from explore.space import ParamSpec, SearchSpace
from extattn import ModelConfig
from studies.errors import UsageError

EXAMPLES = Path(explore.__file__).parent / "examples"


def write(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, line: int) -> str:
    """The message of the usage error that reading the settings file ``path`` raises, which
    must begin with ``path:line: ``."""
    with pytest.raises(UsageError) as info:
        from_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    return message


def spec(space: SearchSpace, name: str) -> ParamSpec:
    found = space.get(name)
    assert found is not None, f"{name} is not searched"
    return found


def from_file(path: Path) -> Settings:
    data, source = load_toml(path)
    return resolve_settings(data, source=source)


def test_defaults() -> None:
    settings = resolve_settings({})
    assert settings == Settings()
    assert (settings.study.trials, settings.study.sampler, settings.study.seed) == (20, "tpe", 0)
    assert settings.data.dataset == "digits" and settings.data.eval_split == "val"
    assert not settings.data.download and not settings.data.augment
    assert settings.train.epochs == 12 and settings.measure.batch_size == 256
    assert settings.space == SearchSpace.default()
    # The fixed model settings are ModelConfig's defaults, without what the dataset decides.
    assert not set(DATA_DERIVED) & set(settings.model)
    assert settings.model["dim"] == ModelConfig().dim
    assert settings.model["patch_size"] == ModelConfig().patch_size


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, """
[study]
trials = 7
sampler = "random"

[data]
dataset = "cifar10"
augment = true
val_fraction = 0.1

[model]
dim = 32
mlp_ratio = 3  # an integer is fine for a float

[train]
epochs = 2
lr = 0.003

[measure]
threads = 1

[space]
heads = [1, 2]
mem_size = {low = 8, high = 64, log = true}
""")
    settings = from_file(path)
    assert settings.study.trials == 7 and settings.study.sampler == "random"
    assert settings.data.dataset == "cifar10" and settings.data.augment
    assert settings.data.val_fraction == 0.1
    assert settings.model["dim"] == 32
    assert settings.model["mlp_ratio"] == 3.0 and isinstance(settings.model["mlp_ratio"], float)
    assert settings.train.epochs == 2 and settings.train.lr == 0.003
    assert settings.train.batch_size == 64  # untouched defaults stay
    assert settings.measure.threads == 1
    assert settings.space.names == ["heads", "mem_size"]
    assert settings.space.get("mem_size") == ParamSpec("mem_size", low=8, high=64, log=True,
                                                       is_int=True)


def test_cli_options_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[study]
name = "from-file"
trials = 7
seed = 3

[train]
epochs = 5
batch_size = 32
""")
    cli: dict[str, dict[str, Any]] = {
        "study": {"trials": 2}, "train": {"epochs": 1}, "data": {"download": True}}
    request = RunRequest(config_file=path, explicit=cli)
    explicit, source, name, storage = _explicit_settings(request)
    assert name == "from-file" and storage is None
    settings = resolve_settings(explicit, source=source)
    assert settings.study.trials == 2 and settings.train.epochs == 1  # the CLI wins
    assert settings.study.seed == 3 and settings.train.batch_size == 32  # the file's stay
    assert settings.data.download

    # Explicit settings over a resolved base (how a continuing study applies its options).
    again = resolve_settings({"train": {"lr": 0.5}}, base=settings)
    assert again.train.lr == 0.5 and again.train.epochs == 1 and again.study.seed == 3


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[study]\ntrials = 3\nsampler = "tpe\n')
    with pytest.raises(UsageError) as info:
        load_toml(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message


def test_missing_file_and_top_level_values(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config file not found"):
        load_toml(tmp_path / "nope.toml")
    path = write(tmp_path, "trials = 3\n")
    with pytest.raises(UsageError, match=r"trials must be a \[section\] table"):
        load_toml(path)


def test_unknown_section_names_it_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[study]\ntrials = 3\n\n[training]\nepochs = 2\n")
    assert "unknown section [training]" in refusal(path, line=4)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("[study]\ntrials = 3\n\n[train]\nepochs = 2\nepoch = 3\n", 6, "unknown key [train] epoch"),
        ("[data]\ndataset = 'digits'\nsize = 8\n", 3, "unknown key [data] size"),
        # A comment after the section header must not lose the line.
        ("[train]  # how to train\nlr = 0.1\nrate = 2\n", 3, "unknown key [train] rate"),
        ("[model]\ndim = 32\nwidth = 2\n", 3, "unknown key [model] width"),
        ("[space]\nheads = [1, 2]\nbogus = [1]\n", 3, "[space] bogus: not a searchable field"),
        ("[model]\nimage_size = 16\n", 2, "unknown key [model] image_size (set by the dataset)"),
        ("[model]\nnum_classes = 3\n", 2, "(set by the dataset)"),
        ("[model]\nin_chans = 3\n", 2, "(set by the dataset)"),
    ],
)
def test_unknown_key_names_it_and_its_line(tmp_path: Path, text: str, line: int,
                                           expected: str) -> None:
    assert expected in refusal(write(tmp_path, text), line)


@pytest.mark.parametrize(
    ("section", "assignment", "expected"),
    [
        ("train", 'epochs = "ten"', "[train] epochs must be an integer; got 'ten'"),
        ("study", "trials = 1.5", "[study] trials must be an integer; got 1.5"),
        ("study", "seed = true", "[study] seed must be an integer; got True"),
        ("data", 'download = "yes"', "[data] download must be true or false; got 'yes'"),
        ("data", "augment = 1", "[data] augment must be true or false; got 1"),
        ("data", "dataset = 10", "[data] dataset must be a string; got 10"),
        ("train", "lr = true", "[train] lr must be a number; got True"),
        ("train", 'lr = "0.1"', "[train] lr must be a number; got '0.1'"),
        ("model", 'dim = "64"', "[model] dim must be an integer; got '64'"),
        ("model", "dim = 64.0", "[model] dim must be an integer; got 64.0"),
        ("measure", "threads = [1]", "[measure] threads must be an integer; got [1]"),
    ],
)
def test_wrong_types_name_the_key_and_line(tmp_path: Path, section: str, assignment: str,
                                           expected: str) -> None:
    path = write(tmp_path, f"[{section}]\n# a comment\n{assignment}\n")
    assert expected in refusal(path, line=3)


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        ({"train": {"epochs": 0}}, "epochs must be >= 1; got 0"),
        ({"study": {"trials": 0}}, "trials must be >= 1; got 0"),
        ({"study": {"sampler": "annealing"}}, "unknown sampler 'annealing'"),
        ({"data": {"val_fraction": 1.5}}, "val_fraction must be in (0, 1); got 1.5"),
        ({"data": {"val_fraction": 0}}, "val_fraction must be in (0, 1); got 0.0"),
        ({"data": {"eval_split": "train"}}, "eval_split must be 'val' or 'test'"),
        ({"data": {"max_train": -1}}, "max_train must be >= 0"),
        ({"train": {"batch_size": 0}}, "batch_size must be >= 1"),
        ({"train": {"lr": 0}}, "lr must be > 0"),
        ({"train": {"label_smoothing": 1.0}}, "label_smoothing must be in [0, 1)"),
        ({"measure": {"threads": -1}}, "threads must be >= 0"),
        ({"measure": {"min_iters": 0}}, "min_iters must be >= 1"),
        # A scalar in [space] is a fixed setting and is validated like one.
        ({"space": {"epochs": 0}}, "[space] epochs: epochs must be >= 1; got 0"),
    ],
)
def test_invalid_values_are_usage_errors(explicit: dict[str, Any], expected: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_settings(explicit)
    message = str(info.value)
    assert expected in message
    (section,) = explicit
    assert f"[{section}]" in message


def test_invalid_value_points_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[study]\nseed = 1\n\n[train]\nepochs = 0\n")
    with pytest.raises(UsageError, match=r"settings\.toml:4: \[train\] epochs must be >= 1"):
        from_file(path)


def test_unknown_section_in_explicit_settings() -> None:
    with pytest.raises(UsageError, match=r"unknown section \[optim\]"):
        resolve_settings({"optim": {"lr": 0.1}})


def ranged_settings() -> Settings:
    return resolve_settings({
        "study": {"trials": 9, "sampler": "nsga2", "seed": 4},
        "data": {"dataset": "mnist", "max_train": 500, "eval_split": "test"},
        "model": {"dim": 48, "depth": 1, "dropout": 0.1},
        "train": {"epochs": 2, "lr": 0.002},
        "measure": {"threads": 1, "min_time": 0.1},
        "space": {"attention": ["external", "self"], "heads": [2, 4],
                  "mem_size": {"low": 8, "high": 64, "log": True},
                  "depth": {"low": 1, "high": 3, "step": 1},
                  "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                  "dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
                  "norm": "softmax"},
    })


def test_round_trip_through_a_dict_and_json() -> None:
    for settings in (Settings(), ranged_settings()):
        stored = json.loads(json.dumps(settings.to_dict()))  # as in the study's user attrs
        again = Settings.from_dict(stored)
        assert again == settings
        assert again.to_dict() == settings.to_dict()
    settings = ranged_settings()
    assert settings.model["norm"] == "softmax"  # the [space] scalar
    assert settings.space.names[0] == "attention"
    assert settings.flat()["space.mem_size"] == {"low": 8, "high": 64, "log": True}


def test_from_dict_rejects_bad_stored_settings() -> None:
    stored = Settings().to_dict()
    stored["train"]["epochs"] = 0
    with pytest.raises(UsageError, match="epochs"):
        Settings.from_dict(stored)


def test_conflicts_name_the_key_and_both_values() -> None:
    stored = ranged_settings()
    assert conflicts(stored, {}) == []
    assert conflicts(stored, {"train": {"epochs": 2}, "study": {"seed": 4}}) == []
    (problem,) = conflicts(stored, {"train": {"epochs": 5}})
    assert problem == "train.epochs: the study has 2, this run asks for 5"
    problems = conflicts(stored, {"study": {"sampler": "tpe"}, "model": {"dim": 64}})
    assert problems == ["model.dim: the study has 48, this run asks for 64",
                        "study.sampler: the study has 'nsga2', this run asks for 'tpe'"]
    # An explicit [space] replaces the stored one: only the searched field that changed differs.
    space = {**stored.space.to_dict(), "heads": [2, 4, 8], "norm": "softmax"}
    assert conflicts(stored, {"space": {**space, "heads": [2, 4]}}) == []
    assert conflicts(stored, {"space": space}) == [
        "space.heads: the study has [2, 4], this run asks for [2, 4, 8]"]


def test_conflicts_ignore_the_mutable_keys() -> None:
    stored = ranged_settings()
    changes: dict[str, dict[str, Any]] = {
        "study": {"trials": 50}, "data": {"data_dir": "/elsewhere", "download": True},
        "measure": {"threads": 8}}
    assert {f"{s}.{k}" for s, keys in changes.items() for k in keys} <= MUTABLE_KEYS
    assert conflicts(stored, changes) == []
    # Mutable keys are still applied to the resolved settings.
    applied = resolve_settings(changes, base=stored)
    assert applied.study.trials == 50 and applied.measure.threads == 8
    assert applied.data.data_dir == "/elsewhere" and applied.data.download


@pytest.mark.parametrize("name", ["digits.toml", "cifar10-gpu.toml", "ea-vs-sa.toml"])
def test_examples_parse_and_pass_the_space_check(name: str) -> None:
    path = EXAMPLES / name
    explicit, source, _, _ = _explicit_settings(RunRequest(config_file=path))
    settings = resolve_settings(explicit, source=source)
    check_space(settings)
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_digits_example_is_the_default_search() -> None:
    assert from_file(EXAMPLES / "digits.toml") == Settings()


def test_cifar10_example_is_a_gpu_search() -> None:
    settings = from_file(EXAMPLES / "cifar10-gpu.toml")
    assert settings.data.dataset == "cifar10" and settings.data.eval_split == "test"
    assert settings.data.augment and not settings.data.download
    assert settings.model["patch_size"] == 4 and settings.model["depth"] == 6
    assert settings.model["expand"] == 4 and 128 <= settings.model["dim"] <= 256
    assert 20 <= settings.train.epochs <= 50
    assert set(settings.space.names) == {"mem_size", "heads", "norm"}


def test_ea_vs_sa_example_compares_attention_kinds() -> None:
    settings = from_file(EXAMPLES / "ea-vs-sa.toml")
    assert settings.data.dataset == "digits"
    assert spec(settings.space, "attention").choices == ("external", "self")
    assert {"mem_size", "heads", "norm"} <= set(settings.space.names)
    points = list(settings.space.combinations(settings.model))
    mem, heads, norm = (len(spec(settings.space, n).choices) for n in ("mem_size", "heads", "norm"))
    assert len(points) == mem * heads * norm + heads


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.study = settings.study  # type: ignore[misc]
