"""Open a study for ``explore study run`` / ``study worker``: validate everything, then create it
or check that it can be continued as asked.

Every check runs before anything is written: a bad name, option, space or dataset leaves no
study and no database behind. A new study stores its settings (user attr ``explore_settings``);
a continuation compares the explicit options with them. Two processes creating the same study
at once end with one study: the loser continues the winner's.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from explore.config import Settings, conflicts, load_toml, resolve_settings
from explore.engine.data import Dataset, dataset_shape, load_dataset
from explore.engine.device import (
    configure_allocator,
    free_memory,
    resolve_device,
    resolve_precision,
)
from explore.memory import check_fits, largest_need
from explore.plan import plan_trial
from explore.search import warmstart
from explore.search.budget import count_finished
from explore.search.sampling import make_sampler
from explore.space import EA_ONLY
from studies.diskfull import disk_full, naming_full_disk
from studies.errors import StudyNotFound, UsageError
from studies.internals import study_id
from studies.record import ATTR_CREATED_BY, ATTR_SETTINGS, ATTR_VERSION
from studies.replicates import ConfiguredFront
from studies.storage import (
    Heartbeat,
    StorageSpec,
    enable_wal,
    open_storage,
    parse_storage,
    refuse_foreign_sqlite,
)

__all__ = ["METRIC_NAMES", "OpenedStudy", "RunRequest", "RunSummary", "check_compile",
           "check_memory", "check_space", "open_study", "validate_name"]

METRIC_NAMES = ["accuracy", "throughput"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KEEP_CHOICES = ("pareto", "all", "none")
CREATE_RACE_S = 5.0  # how long a new study may lack its settings (another process creating it)


@dataclass
class RunRequest:
    """One invocation's options (CLI or Python)."""

    name: str | None = None
    storage: str | None = None
    config_file: Path | None = None
    explicit: dict[str, dict[str, Any]] = field(default_factory=dict)  # CLI settings by section
    timeout: float | None = None  # stop starting trials after this many seconds
    device: str = "auto"
    max_failures: int = 5  # stop after this many consecutive failed trials
    keep_checkpoints: str = "pareto"
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    worker: int = 0  # index among this machine's workers (seeds, threads)
    workers: int = 1  # how many workers share this machine
    handle_signals: bool = True
    # The machine lock (every explore process of this user on this machine: no throughput is
    # measured while another one trains) is taken by every run; False only with workers=1 and
    # nothing else of explore on the machine to wait for (benchmarks isolating one run).
    shared_lock: bool = True
    join_only: bool = False  # `study worker`: the study must exist; never create it
    queued_only: bool = False  # run only queued trials, never the sampler's (`study confirm`)


@dataclass
class RunSummary:
    study_name: str
    where: str
    storage_url: str  # masked
    target: int
    finished: int
    states: dict[str, int]
    front: list[FrozenTrial]  # the Pareto-optimal trials, each experiment once
    new_trials: int
    elapsed: float
    stopped: str  # why the loop ended
    exit_code: int = 0
    noisy_trials: list[int] = field(default_factory=list)
    reused_throughputs: int = 0  # trials that took an earlier trial's figure ([measure] reuse)
    lock_wait_s: float = 0.0  # the study's measurements waited this long for the machine lock
    confident: ConfiguredFront | None = None  # the noise-aware front over configurations

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study_name, "storage": self.storage_url, "target": self.target,
            "finished": self.finished, "states": self.states, "new_trials": self.new_trials,
            "elapsed_seconds": round(self.elapsed, 2), "stopped": self.stopped,
            "noisy_throughput_trials": self.noisy_trials,
            "reused_throughput_trials": self.reused_throughputs,
            "measure_lock_wait_s": round(self.lock_wait_s, 3),
            "front": [front_row(t) for t in sorted(self.front, key=lambda t: t.values[1])],
            **({} if self.confident is None else {"confident_front": confident_dict(
                self.confident)}),
        }


def confident_dict(front: ConfiguredFront) -> dict[str, Any]:
    """The noise-aware front as JSON: noise, hypervolume, the plausible configurations."""
    return front.to_dict()


def front_row(t: FrozenTrial) -> dict[str, Any]:
    return {"number": t.number, "params": t.params,
            "values": dict(zip(METRIC_NAMES, t.values, strict=True)),
            "params_count": t.user_attrs.get("params_count")}


def validate_name(name: str) -> str:
    # fullmatch, not match: "$" also matches before a final newline.
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid study name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _explicit_settings(request: RunRequest) -> tuple[dict[str, dict[str, Any]], Any, str | None,
                                                     str | None]:
    """TOML file then CLI options, by section; ``[study] name/storage`` are taken out."""
    explicit: dict[str, dict[str, Any]] = {}
    source = None
    if request.config_file is not None:
        data, source = load_toml(request.config_file)
        explicit = {k: dict(v) for k, v in data.items()}
    study = explicit.setdefault("study", {})
    name = study.pop("name", None)
    storage = study.pop("storage", None)
    if source is not None:  # the whole file is valid, even where an option overrides it
        resolve_settings({k: v for k, v in explicit.items() if v}, source=source)
    for section, values in request.explicit.items():
        for key, value in values.items():  # an option's error names the option
            try:
                resolve_settings({section: {key: value}})
            except UsageError as exc:
                raise UsageError(f"--{key.replace('_', '-')} {value}: {exc}") from None
        explicit.setdefault(section, {}).update(values)
    return {k: v for k, v in explicit.items() if v}, source, name, storage


def check_compile(device: torch.device, settings: Settings) -> None:
    """``compile_mode = "reduce-overhead"`` (torch.compile's CUDA graphs) cannot train on CUDA.

    On an H200 (torch 2.11) every such trial failed in its first steps with "accessing tensor
    output of CUDAGraphs that has been overwritten by a subsequent run", with or without
    ``torch.compiler.cudagraph_mark_step_begin()`` before each step: refused before anything
    starts. The throughput is timed as CUDA graph replays anyway (``[measure] cuda_graph``).
    On the CPU the mode compiles as ``default`` does.

    Raises:
        UsageError: the study (or ``model train``) would train with that mode on a GPU.
    """
    if device.type != "cuda":
        return
    modes = {settings.train.compile_mode}
    compiled = {settings.train.compile}
    for param in settings.space.params:
        if param.name == "compile_mode":
            modes = set(param.choices)
        elif param.name == "compile":
            compiled = set(param.choices)
    if True in compiled and "reduce-overhead" in modes:
        raise UsageError("compile_mode reduce-overhead cannot train on CUDA (torch.compile's CUDA "
                         "graphs fail in training here): use compile_mode = \"default\"; the "
                         "throughput is already timed as CUDA graph replays")


def check_space(settings: Settings) -> None:
    """Every searched value must be usable in some configuration (on this dataset)."""
    image_size, in_chans, num_classes = dataset_shape(settings.data)
    shape = (image_size, in_chans, num_classes or 2)
    errors: dict[tuple[str, str], str] = {}
    usable: set[tuple[str, str]] = set()
    for point in settings.space.combinations(settings.model):
        try:
            plan_trial(point, settings, shape)
        except ValueError as exc:
            for name, value in _with_single(settings, point).items():
                errors.setdefault((name, repr(value)), str(exc))
            continue
        usable.update((name, repr(v)) for name, v in _with_single(settings, point).items())
    if not usable and errors:
        # Blame the field the error message talks about (e.g. "heads (3) must divide …").
        blamed = [item for item, message in errors.items() if item[0] in message.split(" ")[0]]
        name, value = (blamed or list(errors))[0]
        raise UsageError(f"[space] {name} = {value} is never possible: {errors[(name, value)]}")
    for (name, value), message in errors.items():
        if (name, value) not in usable:
            raise UsageError(f"[space] {name} = {value} is never possible: {message}")


def _with_single(settings: Settings, point: dict[str, Any]) -> dict[str, Any]:
    """A point with the ``[space]`` lists of one value that apply to it (never searched, but
    written in ``[space]``: an impossible one is named as a searched value would be)."""
    attention = point.get("attention", settings.model.get("attention", "external"))
    single = {k: v for k, v in settings.space.single if attention == "external" or
              k not in EA_ONLY}
    return {**single, **point}


def check_memory(settings: Settings, device: torch.device) -> None:
    """The space's largest configuration must fit in the memory free here (RAM, or the CUDA
    device's): refused before anything is stored, with the estimate and the limit.

    Raises:
        UsageError: it needs more than is free (see :mod:`explore.memory`).
    """
    image_size, in_chans, num_classes = dataset_shape(settings.data)
    half = (resolve_precision(device, settings.train.precision) == "bf16"
            and "precision" not in settings.space.names)  # bf16 activations: 2 bytes each
    need = largest_need(settings, (image_size, in_chans, num_classes or 10), 2 if half else 4)
    if need is None:
        return
    free, where = free_memory(device)
    refusal = check_fits(need, free, where)
    if refusal is not None:
        raise UsageError(refusal)


def _new_study(explicit: dict[str, dict[str, Any]], source: Any, device: torch.device
               ) -> tuple[Settings, Dataset]:
    """Validate a new study's settings and load its data (on the CPU) before anything is
    written, so that a bad space or missing dataset files leave no study or database behind."""
    settings = resolve_settings(explicit, source=source)
    check_space(settings)
    check_memory(settings, device)
    make_sampler(settings, seed=0)  # a sampler that cannot search this space is refused now
    return settings, load_dataset(settings.data, seed=settings.study.seed)


def _open_or_create(spec: StorageSpec, request: RunRequest, name: str,
                    explicit: dict[str, dict[str, Any]], source: Any, device: torch.device
                    ) -> tuple[optuna.Study, Settings, bool, Any, Dataset | None]:
    heartbeat = request.heartbeat if spec.is_rdb else None
    if spec.kind == "sqlite" and spec.path is not None and spec.path.is_file():
        refuse_foreign_sqlite(spec.path)
    if spec.path is not None and (not spec.path.exists() or spec.path.stat().st_size == 0):
        settings, data = _new_study(explicit, source, device)  # before the file exists
        fresh = not spec.path.exists()
        try:
            storage = open_storage(spec, heartbeat=heartbeat)
            created = _create(storage, name, settings)
        except Exception as exc:
            if fresh and disk_full(exc) is not None:  # the empty database this run began
                for end in ("", "-wal", "-shm", "-journal"):
                    Path(f"{spec.path}{end}").unlink(missing_ok=True)
            raise
        if created is not None:
            return created, settings, True, storage, data
        study = optuna.load_study(study_name=name, storage=storage)  # another process won
        return _continue(study, spec, name, explicit, source, storage)
    storage = open_storage(spec, heartbeat=heartbeat)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        settings, data = _new_study(explicit, source, device)
        created = _create(storage, name, settings)
        if created is not None:
            return created, settings, True, storage, data
        study = optuna.load_study(study_name=name, storage=storage)  # another process won
    return _continue(study, spec, name, explicit, source, storage)


def _continue(study: optuna.Study, spec: StorageSpec, name: str,
              explicit: dict[str, dict[str, Any]], source: Any, storage: Any
              ) -> tuple[optuna.Study, Settings, bool, Any, Dataset | None]:
    """Check that an existing study can be continued with the explicit settings."""
    stored = _stored_settings(study)
    if stored is None:
        raise UsageError(f"study {name!r} in {spec.display} was not created by explore "
                         "(no stored settings): choose another --name")
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE] * 2 or (
            study.metric_names not in (None, METRIC_NAMES)):
        raise UsageError(f"study {name!r} has other objectives than maximize accuracy and "
                         "throughput: choose another --name")
    stored = _as_run_before(stored)
    settings = Settings.from_dict(stored)
    # Validate the explicit settings on their own first, so errors name the bad key.
    resolve_settings(explicit, base=settings, source=source)
    problems = conflicts(settings, explicit)
    if problems:
        raise UsageError(f"study {name!r} exists with other settings: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                         + "; use another --name, or drop the option to continue")
    return study, resolve_settings(explicit, base=settings), False, storage, None


# Settings added after studies were first stored whose new default behaves differently, with
# the value a study stored before them ran with: a continued study keeps doing what it did.
_AS_BEFORE_ADDED: dict[tuple[str, str], Any] = {
    ("measure", "cuda_graph"): False,  # eager forwards were timed before CUDA graph replays
    ("measure", "reuse"): False,  # every trial measured its own throughput before
    ("study", "replicates"): 1,  # every configuration was trained once before racing
    ("study", "accuracy_tolerance"): 0.0,  # fronts were strict Pareto fronts before
}


def _as_run_before(stored: dict[str, Any]) -> dict[str, Any]:
    """Stored settings with every key added since (``_AS_BEFORE_ADDED``) set as the study ran."""
    out = dict(stored)
    for (section, key), value in _AS_BEFORE_ADDED.items():
        values = out.get(section)
        if isinstance(values, dict) and key not in values:
            out[section] = {**values, key: value}
    return out


def _stored_settings(study: optuna.Study) -> dict[str, Any] | None:
    """The study's settings; a study another process created a moment ago, still without
    trials, gets them within milliseconds, so it is given a few seconds."""
    deadline = time.monotonic() + CREATE_RACE_S
    while True:
        stored: dict[str, Any] | None = study.user_attrs.get(ATTR_SETTINGS)
        if stored is not None or time.monotonic() > deadline or study.get_trials(deepcopy=False):
            return stored
        time.sleep(0.1)


def _create(storage: Any, name: str, settings: Settings) -> optuna.Study | None:
    """Create the study; ``None`` when another process created it first (then continue it)."""
    from extattn import __version__

    try:
        study = optuna.create_study(study_name=name, storage=storage,
                                    directions=["maximize", "maximize"])
    except optuna.exceptions.DuplicatedStudyError:
        return None
    try:
        study.set_metric_names(METRIC_NAMES)
        study.set_user_attr(ATTR_SETTINGS, settings.to_dict())
        study.set_user_attr(ATTR_VERSION, __version__)
        study.set_user_attr(ATTR_CREATED_BY, "explore")
        warmstart.mark_pending(study, settings)
    except Exception:  # e.g. a full disk: no half-made study stays behind
        try:
            storage.delete_study(study_id(study))
        except Exception:
            pass  # a study without settings: later runs refuse it as not explore's
        raise
    return study


@dataclass
class OpenedStudy:
    study: optuna.Study
    settings: Settings
    spec: StorageSpec
    storage: Any
    name: str
    device: torch.device
    started: float
    data: Dataset | None = None  # a new study's data, loaded (on the CPU) to validate it

    def summary(self) -> RunSummary:
        return RunSummary(self.name, self.spec.display, _masked(self.spec),
                          self.settings.study.trials, count_finished(self.study), {}, [], 0, 0.0,
                          "budget reached")


def open_study(request: RunRequest) -> OpenedStudy:
    """Validate everything, then create the study or check it can be continued as asked."""
    started = time.monotonic()
    if request.timeout is not None and not (math.isfinite(request.timeout)
                                            and request.timeout >= 0):
        raise UsageError(f"--timeout {request.timeout}: give the seconds after which no new "
                         "trial starts, a number >= 0")
    explicit, source, file_name, file_storage = _explicit_settings(request)
    spec = parse_storage(request.storage if request.storage is not None else file_storage)
    device = resolve_device(request.device)
    if request.max_failures < 1:
        raise UsageError("--max-failures must be >= 1")
    if request.keep_checkpoints not in KEEP_CHOICES:
        raise UsageError(f"--keep-checkpoints must be one of {', '.join(KEEP_CHOICES)}")
    configure_allocator()
    dataset_name = explicit.get("data", {}).get("dataset", "digits")
    given = request.name if request.name is not None else file_name  # "" is a bad name
    name = validate_name(given if given is not None else _default_name(dataset_name))
    # Check the explicit settings before touching any storage: bad input changes nothing.
    check_compile(device, resolve_settings(explicit, source=source))

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if request.join_only:
        try:
            optuna.load_study(study_name=name, storage=open_storage(spec, create=False))
        except KeyError:
            raise StudyNotFound(f"no study named {name!r} in {spec.display}: create it with "
                                "explore study run") from None
    with naming_full_disk(spec.display, spec.artifact_dir()):
        study, settings, created, storage, data = _open_or_create(spec, request, name,
                                                                  explicit, source, device)
        check_compile(device, settings)  # as continued: with the stored settings
        if not created:
            check_memory(settings, device)  # as stored, on this machine
        enable_wal(spec)  # the study is ours and this run writes to it
        target = settings.study.trials
        if not created and target != study.user_attrs[ATTR_SETTINGS]["study"]["trials"]:
            study.set_user_attr(ATTR_SETTINGS, settings.to_dict())  # the budget grew or shrank
    return OpenedStudy(study, settings, spec, storage, name, device, started, data)


def _default_name(dataset: str) -> str:
    base = Path(dataset.removeprefix("imagefolder:")).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:100] or "study"


def _masked(spec: StorageSpec) -> str:
    from studies.storage import mask_url

    return mask_url(spec.url)


