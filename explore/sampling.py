"""Samplers by name, seeded."""

from __future__ import annotations

import hashlib

import optuna

from explore.config import SAMPLERS, Settings

__all__ = ["SAMPLERS", "make_sampler", "sampler_seed"]


def sampler_seed(study_seed: int, n_existing: int, worker: int = 0) -> int:
    """A fresh study run is reproducible from its seed; a continuation (or another worker)
    gets a different stream, so it does not re-propose what the first run proposed."""
    digest = hashlib.sha256(f"{study_seed}:{n_existing}:{worker}".encode()).hexdigest()
    return int(digest[:8], 16)


def make_sampler(settings: Settings, seed: int) -> optuna.samplers.BaseSampler:
    name = settings.study.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "bruteforce":
        return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "grid":
        from studies.errors import UsageError

        if settings.space.is_conditional(settings.model):
            raise UsageError(
                "--sampler grid cannot skip mem_size/norm for self-attention trials: "
                "use --sampler bruteforce, which enumerates conditional spaces exactly"
            )
        return optuna.samplers.GridSampler(settings.space.grid(), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
