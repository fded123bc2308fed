"""One configuration, no study: ``explore model bench`` and ``explore model train``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from explore.config import MODEL_KEYS, Settings, TrainSettings, resolve_settings
from explore.engine.data import load_dataset
from explore.engine.device import configure_allocator, resolve_device, resolve_precision
from explore.engine.locks import MachineLock
from explore.engine.measure import measure_throughput
from explore.engine.train import EpochResult, compile_for_inference, compile_for_trial, train_model
from explore.plan import plan_trial
from explore.run.opening import check_compile, check_memory
from extattn import count_flops, count_params, create_model, save_checkpoint
from studies.errors import UsageError

__all__ = ["bench_model", "train_one"]


Explicit = dict[str, dict[str, Any]]


def _settings(explicit: Explicit, params: dict[str, Any]) -> Settings:
    """The settings with ``--set`` values merged in: type-checked and validated as a settings
    file's are (a string where a number or true/false belongs is refused, not trained). The
    values land in ``[model]``/``[train]``, so the plan takes them from the settings and a
    trial's params stay empty (no search space)."""
    for section, values in explicit.items():  # the command's own options, named as such
        for key, value in values.items():
            try:
                resolve_settings({section: {key: value}, "space": {}})
            except UsageError as exc:
                raise UsageError(f"--{key.replace('_', '-')} {value}: {exc}") from None
    train_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(params) - set(MODEL_KEYS) - train_fields)
    if unknown:
        raise UsageError(f"unknown model/training field(s): {', '.join(unknown)}")
    merged = {**explicit, "space": {}}
    for section, fields in (("model", set(MODEL_KEYS)), ("train", train_fields)):
        sets = {k: v for k, v in params.items() if k in fields}
        if sets:
            merged[section] = {**explicit.get(section, {}), **sets}
    try:
        settings = resolve_settings(merged)
    except UsageError as exc:
        raise UsageError(f"--set: {exc}") from None
    return settings


def bench_model(explicit: dict[str, dict[str, Any]], params: dict[str, Any],
                device: str = "auto", threads: int = 0) -> dict[str, Any]:
    """Throughput, FLOPs and parameters of one configuration (no training)."""
    from explore.engine.data import dataset_shape

    if threads < 0:
        raise UsageError(f"--threads {threads}: give 0 (torch's default) or a positive count")
    settings = _settings(explicit, params)
    configure_allocator()  # as in a study's trials, so that the figure is comparable
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    image_size, in_chans, num_classes = dataset_shape(settings.data)
    try:
        plan = plan_trial({}, settings, (image_size, in_chans, num_classes or 10))
    except ValueError as exc:
        raise UsageError(f"impossible configuration: {exc}") from exc
    torch.manual_seed(plan.seed)
    model = create_model(plan.model).to(dev)
    shape = (in_chans, image_size, image_size)
    net: torch.nn.Module = model
    compile_seconds: float | None = None
    if plan.train.compile:  # measured as a compiled study's trials are: compiled beforehand
        net, compile_seconds = compile_for_inference(model, shape, settings.measure.batch_size,
                                                     dev, plan.train.compile_mode,
                                                     plan.train.precision)
    with MachineLock().exclusive():  # not while a study on this machine trains an epoch
        stats = measure_throughput(net, shape, dev, settings.measure, plan.train.precision)
    out = {"model": plan.model.to_dict(), "precision": resolve_precision(dev, plan.train.precision),
           "params_count": count_params(model),
           "flops_per_image": count_flops(model, shape), "throughput": stats.to_dict()}
    if compile_seconds is not None:
        out["compile_seconds"] = round(compile_seconds, 3)
    return out


def train_one(explicit: dict[str, dict[str, Any]], params: dict[str, Any], device: str = "auto",
              out: Path | None = None, on_epoch: Any = None) -> dict[str, Any]:
    """Train one configuration exactly as a study trial would; optionally save a checkpoint."""
    if out is not None:  # before the training, not after it
        if out.is_dir():
            raise UsageError(f"--out {out} is a directory: give a file name, e.g. {out}/model.pt")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    settings = _settings(explicit, params)
    configure_allocator()
    dev = resolve_device(device)
    check_compile(dev, settings)
    check_memory(settings, dev)
    data = load_dataset(settings.data, seed=settings.study.seed, device=dev)
    c, h, _ = data.image_shape
    try:
        plan = plan_trial({}, settings, (h, c, data.num_classes))
    except ValueError as exc:
        raise UsageError(f"impossible configuration: {exc}") from exc
    torch.manual_seed(plan.seed)
    model = create_model(plan.model).to(dev)
    net: torch.nn.Module = model
    compile_seconds: float | None = None
    if plan.train.compile:
        net, compile_seconds = compile_for_trial(model, data, plan.train,
                                                 settings.measure.batch_size)
    lock = MachineLock()  # as a trial: the measurement alone, epochs beside other runs' epochs
    with lock.exclusive():
        throughput = measure_throughput(net, data.image_shape, dev, settings.measure,
                                        plan.train.precision)

    def epoch_done(record: EpochResult, history: list[EpochResult]) -> None:
        if on_epoch is not None:
            on_epoch(record)

    result = train_model(model, data, plan.train, plan.seed, augment=settings.data.augment,
                         on_epoch=epoch_done, net=net, epoch_guard=lock.shared)
    summary = {"model": plan.model.to_dict(), "train": dataclasses.asdict(plan.train),
               "seed": plan.seed, "precision": resolve_precision(dev, plan.train.precision),
               "accuracy": result.accuracy,
               "throughput": throughput.median, "train_seconds": round(result.train_seconds, 3),
               "history": [r.to_dict() for r in result.history]}
    if compile_seconds is not None:
        summary["compile_seconds"] = round(compile_seconds, 3)
    if result.graphed:
        summary["train_graph_seconds"] = round(result.graph_seconds, 3)
    if out is not None:
        save_checkpoint(out, model, plan.model, {k: v for k, v in summary.items()
                                                 if k != "history"})
        summary["checkpoint"] = str(out)
    return summary
