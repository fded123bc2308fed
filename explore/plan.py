"""A trial's params → the experiment they describe: model config, training settings, identity.

Pure settings code (no Optuna): the objective, the warm start, ``model train``, ``study models``
and the budget all map params the same way, so equal params are always the same experiment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from explore.config import Settings, TrainSettings
from explore.space import HOW_NOT_WHAT
from extattn import ModelConfig

__all__ = ["TrialPlan", "experiment_key", "plan_trial", "replicate_seed", "split_seed"]


@dataclass(frozen=True)
class TrialPlan:
    """Everything a trial's params decide, and the identity of that experiment."""

    model: ModelConfig
    train: TrainSettings
    key: str  # hash of the whole experiment: equal keys are the same experiment
    seed: int  # derived from the key (and the replicate), never from the trial number
    replicate: int = 0  # which training run of the configuration this is (0: the first)
    config: str = ""  # the configuration's key, shared by its replicates ("": same as key)

    @property
    def config_key(self) -> str:
        """The configuration's identity: the same for all of its replicates."""
        return self.config or self.key


def experiment_key(model: dict[str, Any], train: dict[str, Any], settings: Settings) -> str:
    if not train.get("compile"):  # eager is the reference: keys from before the option stay
        train = {k: v for k, v in train.items() if k not in ("compile", "compile_mode")}
    if train.get("precision") == "auto":  # likewise: keys from before the option stay
        train = {k: v for k, v in train.items() if k != "precision"}
    train = {k: v for k, v in train.items() if k not in HOW_NOT_WHAT}  # how it runs, not what
    data = dataclasses.asdict(settings.data)
    for machine_specific in ("data_dir", "download"):
        data.pop(machine_specific)
    if data.get("split") == "fixed":  # keys from before the option stay
        data.pop("split")
    blob = json.dumps({"model": model, "train": train, "data": data,
                       "seed": settings.study.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def replicate_seed(config_key: str, replicate: int) -> int:
    """The training seed of replicate ``replicate`` of a configuration.

    Replicate 0 keeps the seed a configuration always had (studies from before replicates read
    as one replicate each); later ones hash the configuration with the index.
    """
    if replicate == 0:
        return int(config_key[:8], 16)
    digest = hashlib.sha256(f"{config_key}:replicate:{replicate}".encode()).hexdigest()
    return int(digest[:8], 16)


def split_seed(study_seed: int, replicate: int, split: str) -> int:
    """The seed of replicate ``replicate``'s validation hold-out (``[data] split``): the study
    seed for "fixed" and for replicate 0; otherwise one per replicate index, shared by every
    configuration (replicate r of two configurations sees the same split: paired)."""
    if split == "fixed" or replicate == 0:
        return study_seed
    digest = hashlib.sha256(f"{study_seed}:split:{replicate}".encode()).hexdigest()
    return int(digest[:8], 16)


def plan_trial(params: dict[str, Any], settings: Settings, data_shape: tuple[int, int, int],
               replicate: int = 0) -> TrialPlan:
    """Apply ``params`` to the fixed settings; ``replicate`` says which training run it is.

    Raises:
        ValueError: the combination is impossible (e.g. heads not dividing dim*expand).
    """
    image_size, in_chans, num_classes = data_shape
    model_fields = {**settings.model, "image_size": image_size, "in_chans": in_chans,
                    "num_classes": num_classes}
    train_fields = dataclasses.asdict(settings.train)
    for name, value in params.items():
        if name in train_fields:
            train_fields[name] = value
        else:
            model_fields[name] = value
    model = ModelConfig(**model_fields)
    train = TrainSettings(**train_fields)
    if model.attention == "self":  # unused fields must not make equal SA models differ
        model = model.replace(mem_size=ModelConfig.mem_size, norm=ModelConfig.norm)
    config = experiment_key(model.to_dict(), dataclasses.asdict(train), settings)
    # Replicate r of a configuration is its own experiment (the duplicate cache must not
    # answer it from replicate 0), with its own key; replicate 0's key is the configuration's.
    key = config if replicate == 0 else hashlib.sha256(
        f"{config}:replicate:{replicate}".encode()).hexdigest()
    return TrialPlan(model=model, train=train, key=key, seed=replicate_seed(config, replicate),
                     replicate=replicate, config=config)
