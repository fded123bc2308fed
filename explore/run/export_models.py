"""``explore study models``: one loadable checkpoint per plausible configuration (its most
accurate replicate; with ``--observed`` per trial of Optuna's observed front), plus index.json.

Checkpoints come from the study's artifact store, where ``explore study run`` keeps the weights
of front trials (``--keep-checkpoints pareto``, the default) or of all trials. When a front
trial's checkpoint is not there (the run used ``--keep-checkpoints none``, the files were lost, or
the study was copied without them), it is retrained from its stored settings, params and seed,
exactly as the trial was trained: on CPU this reproduces the trial's weights and accuracy (the
index records both accuracies). ``--no-retrain`` turns that into an error instead.

Duplicates (trials that repeated an evaluated configuration) share the original's checkpoint:
each experiment is written once, and the index lists the trial numbers that repeat it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies.catalog import open_catalog, read_configured, read_front
from studies.dashboard import checkpoint_filename, is_placeholder
from studies.errors import ExploreError, UsageError
from studies.record import ATTR_CHECKPOINT, Catalog, StudyMeta, TrialRecord
from studies.replicates import replicate_of
from studies.storage import mask_url, parse_storage

__all__ = ["ModelsResult", "export_models"]

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class ModelsResult:
    index: dict[str, Any]
    index_path: Path


def _checkpoint_file(store_dir: Path, t: TrialRecord) -> Path | None:
    artifact_id = t.user_attrs.get(ATTR_CHECKPOINT)
    if not isinstance(artifact_id, str) or "/" in artifact_id or artifact_id.startswith("."):
        return None
    path = store_dir / artifact_id
    return path if path.is_file() and not is_placeholder(path) else None


def _stored_checkpoint(store_dir: Path, t: TrialRecord) -> tuple[Path | None, str]:
    """The trial's stored checkpoint when it loads; otherwise None and why not."""
    from extattn import CheckpointError, load_checkpoint

    path = _checkpoint_file(store_dir, t)
    if path is None:
        return None, f"no checkpoint in {store_dir} (the run kept none, or it was removed)"
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        return None, f"stored checkpoint is damaged: {exc}"
    return path, ""


class _Retrainer:
    """Loads the study's data once and retrains trials like the objective trains them."""

    def __init__(self, meta: StudyMeta, device: str) -> None:
        from explore.config import Settings

        self.study = meta.name
        self.settings = Settings.from_dict(meta.settings)
        self.device_name = device
        self._data: Any = None

    def __call__(self, t: TrialRecord, target: Path, note: Callable[[str], None]
                 ) -> dict[str, Any]:
        import torch

        from explore.engine.data import load_dataset
        from explore.engine.device import resolve_device
        from explore.engine.train import train_model
        from explore.plan import plan_trial, split_seed
        from extattn import create_model, save_checkpoint

        device = resolve_device(self.device_name)
        if self._data is None:
            self._data = load_dataset(self.settings.data, seed=self.settings.study.seed,
                                      device=device)
        c, h, _ = self._data.image_shape
        plan = plan_trial(t.params, self.settings, (h, c, self._data.num_classes),
                          replicate_of(t))
        seed = split_seed(self.settings.study.seed, plan.replicate, self.settings.data.split)
        data = self._data if seed == self.settings.study.seed else load_dataset(
            self.settings.data, seed=seed, device=device)  # the replicate's own hold-out
        if plan.key != t.user_attrs.get("config_key", plan.key):
            note(f"trial {t.number}: its configuration no longer maps to the same experiment "
                 "(the code changed?); the retrained weights may differ")
        threads = (t.user_attrs.get("throughput") or {}).get("threads")
        before = torch.get_num_threads()
        if isinstance(threads, int) and threads > 0 and device.type == "cpu":
            torch.set_num_threads(threads)  # as the trial ran: same reduction order
        try:
            torch.manual_seed(plan.seed)
            model = create_model(plan.model).to(device)
            result = train_model(model, data, plan.train, plan.seed,
                                 augment=self.settings.data.augment)
        finally:
            torch.set_num_threads(before)
        stored = t.values[0] if t.values else None
        save_checkpoint(target, model, plan.model, {
            "study": self.study, "trial": t.number, "params": t.params, "seed": plan.seed,
            "train": dataclasses.asdict(plan.train), "config_key": plan.key, "retrained": True,
            "accuracy": result.accuracy})
        if stored is not None and abs(result.accuracy - stored) > 1e-9:
            note(f"trial {t.number}: retrained accuracy {result.accuracy:.4f} differs from the "
                 f"stored {stored:.4f} (another device, thread count or code version)")
        return {"retrained_accuracy": result.accuracy}


def _observed(catalog: Catalog, meta: StudyMeta
              ) -> tuple[dict[int, TrialRecord], dict[int, dict[str, Any]]]:
    """Optuna's observed front, each experiment once (a duplicate names its original)."""
    front = read_front(catalog, meta).front
    originals = {t.number: t for t in front if not t.is_duplicate}
    wanted = {int(t.user_attrs["duplicate_of"]) for t in front if t.is_duplicate}
    missing = sorted(wanted - set(originals))
    if missing:
        for t in catalog.trials(meta, states=("COMPLETE",)):
            if t.number in missing:
                originals[t.number] = t
    extra: dict[int, dict[str, Any]] = {}
    for t in front:
        if t.is_duplicate:
            extra.setdefault(int(t.user_attrs["duplicate_of"]), {"repeated_by": []})[
                "repeated_by"].append(t.number)
    return originals, extra


def _plausible(catalog: Catalog, meta: StudyMeta
               ) -> tuple[dict[int, TrialRecord], dict[int, dict[str, Any]]]:
    """The plausible configurations' most accurate replicates, with their estimates."""
    configured = read_configured(catalog, meta)
    chosen: dict[int, TrialRecord] = {}
    extra: dict[int, dict[str, Any]] = {}
    for c in configured.ordered(configured.front.plausible):
        t = configured.best_replicate(c.key)
        row = configured.row(c)
        chosen[t.number] = t
        extra[t.number] = {"configuration": c.key, "replicate": replicate_of(t),
                           "replicates": row["replicates"], "estimate": {
                               "accuracy": row["accuracy"], "throughput": row["throughput"],
                               "probability_pareto": row["probability_pareto"]}}
    return chosen, extra


def export_models(storage: str | None, name: str, out_dir: Path, *, retrain: bool = True,
                  device: str = "cpu", on_note: Callable[[str], None] | None = None,
                  observed: bool = False) -> ModelsResult:
    """Write a checkpoint per plausible configuration of study ``name`` (its most accurate
    replicate; ``observed``: per trial of Optuna's observed front) into ``out_dir`` and an
    ``index.json`` describing them (trial, params, values, file, where it came from)."""
    note = on_note or (lambda message: None)
    spec = parse_storage(storage)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: give a directory")
    with open_catalog(spec) as catalog:
        meta = catalog.study(name)
        if not meta.is_explore or not meta.settings:
            raise ExploreError(f"study {name!r} was not created by explore study run: its "
                               "trials have no models")
        originals, extra = (_observed if observed else _plausible)(catalog, meta)
        if not originals:
            raise ExploreError(f"study {name!r} has no COMPLETE trials yet")

    store_dir = spec.artifact_dir() / "checkpoints"
    retrainer: _Retrainer | None = None
    names = meta.objective_names
    models: list[dict[str, Any]] = []
    problems: list[str] = []  # one line per checkpoint that could not be exported
    made_dir = not out_dir.exists()  # made only once a file goes in; gone again if none did
    try:
        for number, t in (sorted(originals.items()) if observed else originals.items()):
            target = out_dir / checkpoint_filename(number)  # as the dashboard names it
            source, why = _stored_checkpoint(store_dir, t)
            entry: dict[str, Any] = {}
            if source is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                origin = "artifact"
            elif not retrain:
                problems.append(f"trial {number}: {why}: drop --no-retrain to retrain it from "
                                "its stored config and seed"
                                + (" (or delete the damaged file)" if "damaged" in why else ""))
                continue
            else:
                note(f"trial {number}: {why}; retraining it from its config and seed")
                out_dir.mkdir(parents=True, exist_ok=True)
                retrainer = retrainer or _Retrainer(meta, device)
                entry = retrainer(t, target, note)
                origin = "retrained"
            assert t.values is not None
            models.append({
                "trial": number, "file": target.name, "source": origin,
                **({"repeated_by": []} if observed else {}), **extra.get(number, {}),
                "params": t.params, "values": dict(zip(names, t.values, strict=True)),
                "model_config": t.user_attrs.get("model_config"),
                "seed": t.user_attrs.get("seed"), "params_count": t.user_attrs.get("params_count"),
                "flops_per_image": t.user_attrs.get("flops_per_image"), **entry,
            })
        index = {"study": name, "storage": mask_url(spec.url), "metric_names": names,
                 "front": "observed" if observed else "plausible",
                 "data": meta.settings.get("data"), "models": models}
        index_path = out_dir / INDEX_NAME
        if models:
            index_path.write_text(json.dumps(index, indent=2, default=str) + "\n",
                                  encoding="utf-8")
    finally:
        if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
    if problems:  # a partial export: what could be written is there, and the failure says so
        kept = (f"the other {len(models)} checkpoint(s) and {INDEX_NAME} are in {out_dir}"
                if models else f"nothing was written to {out_dir}")
        raise ExploreError("\n".join([*problems, kept]))
    return ModelsResult(index, index_path)
