"""Search settings: TOML files and CLI options → validated, frozen dataclasses.

A study's settings are resolved once (defaults < TOML file < CLI options), stored in the study's
user attrs, and read back when the study continues. On a continuing study, an explicit setting
that differs from the stored one is an error naming it, except the few that may change between
runs (:data:`MUTABLE_KEYS`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explore.space import HOW_NOT_WHAT, SearchSpace, parse_space
from extattn import ModelConfig
from studies.errors import UsageError

__all__ = [
    "DATA_DERIVED",
    "MUTABLE_KEYS",
    "RUN_OPTIONS",
    "DataSettings",
    "MeasureSettings",
    "Settings",
    "StudySettings",
    "TrainSettings",
    "explicit_settings",
    "load_toml",
    "resolve_settings",
]

SAMPLERS = ("tpe", "nsga2", "nsga3", "random", "grid", "gp", "bruteforce")
# ModelConfig fields that come from the dataset, never from the user.
DATA_DERIVED = ("image_size", "in_chans", "num_classes")
# `explore study run`'s options that set a settings field: option (its Python name) -> section
# and key. An option given overrides the TOML file; its errors name the option (opening.py).
RUN_OPTIONS = {
    "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir"),
    "download": ("data", "download"), "trials": ("study", "trials"),
    "epochs": ("train", "epochs"), "sampler": ("study", "sampler"), "seed": ("study", "seed"),
    "prune": ("study", "prune"), "dedup": ("study", "dedup"),
    "warm_start": ("study", "warm_start"), "compile": ("train", "compile"),
    "precision": ("train", "precision"), "replicates": ("study", "replicates"),
}


def explicit_settings(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings sections the given options set (``None``: not given), by
    :data:`RUN_OPTIONS`."""
    explicit: dict[str, dict[str, Any]] = {}
    for option, value in options.items():
        if value is not None:
            section, key = RUN_OPTIONS[option]
            explicit.setdefault(section, {})[key] = value
    return explicit


# Settings that may differ between runs of one study without being a conflict.
MUTABLE_KEYS = frozenset({"study.trials", "study.max_replicates", "data.data_dir",
                          "data.download", "measure.threads", "measure.retries",
                          "study.warm_start", "train.state_interval"})


@dataclass(frozen=True)
class StudySettings:
    trials: int = 20  # total finished (COMPLETE + PRUNED) trials the study aims for
    sampler: str = "tpe"  # one of SAMPLERS
    seed: int = 0  # seeds the sampler and, with the configuration, every trial's training
    prune: bool = False  # multi-objective early stopping (MO-ASHA) at geometric epochs
    prune_eta: int = 3  # rungs at epochs 1, η, η², …; the top 1/η at a rung continue
    prune_min_trials: int = 4  # no pruning at a rung until this many trials reached it
    dedup: bool = True  # answer an already evaluated configuration from the study (free)
    warm_start: int = 3  # a new study trains the N fastest configurations first (0: off)
    # Training runs per configuration: "race" (the default) gives a new configuration one run
    # and more (doubling, up to max_replicates) while it is not confidently dominated; an
    # integer K trains every configuration K times (a designed experiment; 1: each once, as
    # before replicates). docs/replicates.md.
    replicates: str | int = "race"
    max_replicates: int = 4  # racing: the most runs one configuration gets
    confidence: float = 0.95  # of every interval, and of "confidently dominated"
    # Points of accuracy within which a faster configuration counts as at least as accurate
    # (it dominates the slower one): ties go to speed. 0: Pareto's strict rule, under which
    # designs whose accuracies truly tie can never be told apart (docs/replicates.md).
    accuracy_tolerance: float = 0.5

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1; got {self.trials}")
        if not 0 <= self.seed < 2**32:  # numpy's and scikit-learn's seeds are 32-bit unsigned
            raise ValueError(f"seed must be between 0 and {2**32 - 1}; got {self.seed}")
        if self.replicates != "race" and not (
                isinstance(self.replicates, int) and not isinstance(self.replicates, bool)
                and 1 <= self.replicates <= 100):
            raise ValueError(f'replicates must be "race" or an integer from 1 to 100; '
                             f"got {self.replicates!r}")
        if not 1 <= self.max_replicates <= 100:
            raise ValueError(f"max_replicates must be between 1 and 100; "
                             f"got {self.max_replicates}")
        if not (isinstance(self.accuracy_tolerance, (int, float))
                and not isinstance(self.accuracy_tolerance, bool)
                and 0.0 <= self.accuracy_tolerance <= 100.0):  # also refuses nan
            raise ValueError(f"accuracy_tolerance must be between 0 and 100 (points of "
                             f"accuracy; 0.5 for half a point); got {self.accuracy_tolerance}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be at least 0.5 and below 1 (0.95 for 95%); "
                             f"got {self.confidence}")
        if not 0 <= self.warm_start <= 64:
            raise ValueError(f"warm_start must be between 0 and 64; got {self.warm_start}")
        if self.prune_eta < 2 or self.prune_min_trials < 1:
            raise ValueError("prune_eta must be >= 2 and prune_min_trials >= 1")
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )


@dataclass(frozen=True)
class DataSettings:
    dataset: str = "digits"  # a name of explore.engine.data.DATASETS, or imagefolder:PATH
    data_dir: str = "data"  # where torchvision datasets live (or are downloaded to)
    download: bool = False  # allow torchvision to download missing files
    val_fraction: float = 0.2  # held-out share of the training split (stratified, by seed)
    eval_split: str = "val"  # "val" (held out of train) or "test" (the official test split)
    augment: bool = False  # random crop with padding + horizontal flip, on tensors
    image_size: int = 0  # resize imagefolder images to this side (0: 32)
    max_train: int = 0  # use at most this many training images (0: all)
    # The validation hold-out: "fixed" (one, chosen by the study seed) or "replicate" (replicate
    # r > 0 holds out another one, the same for every configuration's replicate r: a paired
    # design over splits as well as seeds; replicate 0 keeps the study's split).
    split: str = "fixed"

    def __post_init__(self) -> None:
        if self.split not in ("fixed", "replicate"):
            raise ValueError(f"split must be 'fixed' or 'replicate'; got {self.split!r}")
        if self.split == "replicate" and self.eval_split == "test":
            raise ValueError("split = 'replicate' draws another validation hold-out per "
                             "replicate; with eval_split = 'test' there is none: use one of "
                             "the two")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        if self.eval_split not in ("val", "test"):
            raise ValueError(f"eval_split must be 'val' or 'test'; got {self.eval_split!r}")
        if self.image_size < 0 or self.max_train < 0:
            raise ValueError("image_size and max_train must be >= 0")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 12  # passes over the training split
    batch_size: int = 64  # training batch
    lr: float = 1e-2  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 1.0  # max gradient norm (0: off)
    compile: bool = False  # torch.compile the model (compile time kept out of both objectives)
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead, max-autotune
    # Numerics of training, evaluation and the throughput measurement: auto (bf16 autocast on
    # CUDA, fp32 on CPU), fp32, or bf16 (autocast on any device; on CPUs with native bf16,
    # avx512_bf16 or AMX, 1.4-2x faster training at equal accuracy, docs/performance.md).
    precision: str = "auto"
    # On CUDA, run each training step (forward, backward, clipping, AdamW) as one replay of a
    # captured CUDA graph: the same math without launching its kernels one by one from Python.
    # Ignored on the CPU and for --compile'd models; a step that cannot be captured runs eagerly.
    cuda_graph: bool = True
    # Seconds of training between two saved training states (0: after every epoch). A state is
    # also saved after the last epoch, at every pruning rung, and whenever training stops early
    # (a signal, a pruning decision), so a kill -9 loses at most this much training. Epochs of
    # a few milliseconds (CUDA graph replays of a small dataset) would otherwise spend about as
    # long saving their state and writing their history as training (docs/performance.md).
    state_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; "
                             f"got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}; "
                             f"got {self.compile_mode!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay, warmup_epochs and grad_clip must be >= 0")
        if not 0 <= self.state_interval < math.inf:
            raise ValueError(f"state_interval must be a number of seconds >= 0; "
                             f"got {self.state_interval}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class MeasureSettings:
    batch_size: int = 256  # images per timed inference batch
    warmup: int = 5  # untimed iterations first
    min_iters: int = 10  # timed iterations, at least
    min_time: float = 0.5  # timed seconds, at least
    threads: int = 0  # torch threads per process (0: cores / workers); recorded per trial
    retries: int = 2  # a disturbed measurement (spread > 20%) is taken again this often at most
    # On CUDA, time the forward captured as one CUDA graph (replayed), so that the figure is the
    # GPU's and not the host's kernel-launch rate; where capture fails, eager (recorded per
    # trial as throughput.graph). Ignored on the CPU.
    cuda_graph: bool = True
    # Timed seconds, at least, of a measurement replaying a CUDA graph (at most min_time): the
    # replays' rate is stable to 0.2% (docs/performance.md), so they need far less time than
    # eager timing, which would otherwise be most of a GPU trial's cost.
    graph_min_time: float = 0.1
    # A model measured once is not measured again on this machine: a later trial of the same
    # architecture (same model, precision, compile, measurement settings, threads, device and
    # host; only training settings differ, which inference does not see) takes the throughput
    # of the first such trial whose figure was not flagged noisy, and records which
    # (``throughput_from``). Saves the measurement (and the exclusive machine lock) and gives
    # equal architectures equal throughputs.
    reuse: bool = True
    # Time a fixed reference model (the study's fixed [model] settings, library defaults for the
    # searched fields, at the data's image shape) in alternation with each trial's model, and
    # compare designs by the ratio of their speeds: the machine's own speed, which moves
    # ±20–25% between processes on a shared virtual machine, drops out of it. Costs the
    # reference's blocks (about as long again as the model's) per measurement; not used for
    # CUDA graph replays, stable without it.
    reference: bool = True

    def __post_init__(self) -> None:
        if (self.batch_size < 1 or self.warmup < 0 or self.min_iters < 1 or self.min_time < 0
                or self.graph_min_time < 0):
            raise ValueError("measure: batch_size and min_iters must be >= 1, warmup, min_time "
                             "and graph_min_time >= 0")
        if not 0 <= self.retries <= 10:
            raise ValueError(f"measure: retries must be between 0 and 10; got {self.retries}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0; got {self.threads}")


MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in DATA_DERIVED)
_SECTION_TYPES: dict[str, type] = {
    "study": StudySettings,
    "data": DataSettings,
    "train": TrainSettings,
    "measure": MeasureSettings,
}


def searchable_fields() -> dict[str, type]:
    """Fields ``[space]`` may search: the model's (but those set by the data) and training's
    (but ``HOW_NOT_WHAT``)."""
    model = typing.get_type_hints(ModelConfig)
    train = typing.get_type_hints(TrainSettings)
    return {**{k: model[k] for k in MODEL_KEYS},
            **{k: t for k, t in train.items() if k not in HOW_NOT_WHAT}}


def _default_model_fixed() -> dict[str, Any]:
    defaults = ModelConfig()
    return {k: getattr(defaults, k) for k in MODEL_KEYS}


@dataclass(frozen=True)
class Settings:
    """Everything a study needs to run its trials identically in any process."""

    study: StudySettings = field(default_factory=StudySettings)
    data: DataSettings = field(default_factory=DataSettings)
    model: dict[str, Any] = field(default_factory=_default_model_fixed)  # fixed model fields
    train: TrainSettings = field(default_factory=TrainSettings)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    space: SearchSpace = field(default_factory=SearchSpace.default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": dataclasses.asdict(self.study),
            "data": dataclasses.asdict(self.data),
            "model": dict(self.model),
            "train": dataclasses.asdict(self.train),
            "measure": dataclasses.asdict(self.measure),
            "space": self.space.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        return resolve_settings(data, base=None)

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` (the space as one entry per searched name)."""
        out: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check a TOML/JSON value against a dataclass field type; ints are accepted as floats."""
    if isinstance(tp, types.UnionType):  # its own __post_init__ says what it takes
        if isinstance(value, bool) or not isinstance(value, tp):
            names = " or ".join(_type_name(t) for t in tp.__args__)
            raise UsageError(f"{where} must be {names}; got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number; got {value!r}")
    if tp is int and isinstance(value, bool):
        raise UsageError(f"{where} must be {_type_name(tp)}; got {value!r}")
    if not isinstance(value, tp):
        raise UsageError(f"{where} must be {_type_name(tp)}; got {value!r}")
    return value


def _build_section(name: str, cls: type, values: dict[str, Any], base: Any, locate: Any) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = dataclasses.asdict(base) if base is not None else {}
    for key, value in values.items():
        if key not in known:
            raise UsageError(
                f"{locate(name, key)}unknown key [{name}] {key}; known: {', '.join(known)}"
            )
        kwargs[key] = _coerce(f"{locate(name, key)}[{name}] {key}", value, hints[key])
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UsageError(f"{locate(name, None)}[{name}] {exc}") from exc


def resolve_settings(
    explicit: dict[str, dict[str, Any]],
    base: Settings | None = None,
    source: TomlSource | None = None,
) -> Settings:
    """Merge ``explicit`` settings (by section) over ``base`` (or the defaults) and validate.

    Raises:
        UsageError: unknown section or key, wrong type, invalid value or search space; the
            message names the key (and the file line when ``source`` is given).
    """
    locate = source.locate if source is not None else (lambda section, key: "")
    base = base or Settings()
    unknown = sorted(set(explicit) - {"study", "data", "model", "train", "measure", "space"})
    if unknown:
        raise UsageError(
            f"{locate(unknown[0], None)}unknown section [{unknown[0]}]; "
            "known: study, data, model, train, measure, space"
        )
    sections = {
        name: _build_section(name, cls, explicit.get(name, {}), getattr(base, name), locate)
        for name, cls in _SECTION_TYPES.items()
    }
    model = dict(base.model)
    hints = typing.get_type_hints(ModelConfig)
    for key, value in explicit.get("model", {}).items():
        if key not in MODEL_KEYS:
            extra = " (set by the dataset)" if key in DATA_DERIVED else ""
            raise UsageError(
                f"{locate('model', key)}unknown key [model] {key}{extra}; "
                f"known: {', '.join(MODEL_KEYS)}"
            )
        model[key] = _coerce(f"{locate('model', key)}[model] {key}", value, hints[key])
    if "space" in explicit:
        space, fixed = parse_space(explicit["space"], searchable_fields(), locate)
        for key, value in fixed.items():  # scalars in [space] are fixed settings
            if key in MODEL_KEYS:
                model[key] = value
            else:
                try:
                    sections["train"] = dataclasses.replace(sections["train"], **{key: value})
                except ValueError as exc:
                    raise UsageError(f"{locate('space', key)}[space] {key}: {exc}") from exc
    else:
        space = base.space
    return Settings(model=model, space=space, **sections)


class TomlSource:
    """A parsed TOML file that can say on which line a key was written."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def locate(self, section: str, key: str | None) -> str:
        current = ""
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if stripped.startswith("[") and not stripped.startswith("[["):
                current = stripped.split("#", 1)[0].strip().strip("[]").strip()
                if key is None and current == section:
                    return f"{self.path}:{number}: "
            elif key is not None and current == section:
                name = stripped.split("=", 1)[0].strip().strip('"')
                if name == key and "=" in stripped:
                    return f"{self.path}:{number}: "
        return f"{self.path}: "


def load_toml(path: str | Path) -> tuple[dict[str, dict[str, Any]], TomlSource]:
    """Read a settings file; syntax errors name the line."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--config {path} is a directory: give a TOML file")
    if not path.exists():
        raise UsageError(f"config file not found: {path}")
    if not path.is_file():
        raise UsageError(f"--config {path} is not a regular file (a device or a pipe?): give a "
                         "TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8 "
                         "TOML") from None
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax error: {exc}") from exc
    source = TomlSource(path, text)
    for section, values in data.items():
        if not isinstance(values, dict):
            raise UsageError(
                f"{source.locate(section, None)}{section} must be a [section] table; "
                "put settings under [study], [data], [model], [train], [measure] or [space]"
            )
    return data, source


def conflicts(stored: Settings, explicit: dict[str, dict[str, Any]]) -> list[str]:
    """Explicit settings that differ from the stored ones, as ``key: stored → asked`` lines."""
    asked = resolve_settings(explicit, base=stored).flat()
    have = stored.flat()
    out = []
    for key in sorted(set(asked) | set(have)):
        if key in MUTABLE_KEYS:
            continue
        if asked.get(key) != have.get(key):
            out.append(
                f"{key}: the study has {have.get(key)!r}, this run asks for {asked.get(key)!r}"
            )
    return out
