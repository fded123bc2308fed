"""The search space: which model/training fields are searched, and how a trial samples them.

``[space]`` entries: a list is a categorical choice, ``{low, high, log, step}`` a numeric range, a
scalar a fixed setting. A list of one value is a fixed setting too (``SearchSpace.single``): a
trial's params are exactly what is searched, so optuna-dashboard's slice and contour plots get no
one-value columns; the value reaches every trial's model or training settings as a scalar's
does (the experiment key is the one it had as a param), and the stored space keeps the list.
``mem_size`` and ``norm`` only exist for external attention: when a trial
picks ``attention = "self"`` they are not sampled, so self-attention trials never split into
duplicates that differ only in settings they do not use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from extattn.config import NORMS
from studies.errors import UsageError

# Training settings that change how training runs, not what it trains (same results, same
# experiment key): a search over them would only answer its trials from the duplicate cache.
HOW_NOT_WHAT = ("cuda_graph", "state_interval")

if TYPE_CHECKING:
    import optuna

__all__ = ["EA_ONLY", "HOW_NOT_WHAT", "ParamSpec", "SearchSpace", "parse_space"]

EA_ONLY = frozenset({"mem_size", "norm"})  # fields that only external attention uses
_RANGE_KEYS = frozenset({"low", "high", "log", "step"})
Locate = Callable[[str, str | None], str]


@dataclass(frozen=True)
class ParamSpec:
    """One searched field: categorical ``choices``, or an int/float range."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    is_int: bool = False

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    @property
    def discrete(self) -> bool:
        """A list, or a linear range with a step: finitely many values."""
        return self.categorical or (self.step is not None and not self.log)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.categorical:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> list[Any]:
        """The choices; for a range, its grid if it has one, else its end points."""
        if self.categorical:
            return list(self.choices)
        if self.step is not None and not self.log:
            # Like Optuna, the grid stops at the last step <= high (1e-9: float rounding).
            n = math.floor((self.high - self.low) / self.step + 1e-9) + 1
            grid = [self.low + i * self.step for i in range(n)]
            return [int(v) for v in grid] if self.is_int else grid
        return [int(self.low), int(self.high)] if self.is_int else [self.low, self.high]

    def to_dict(self) -> Any:
        if self.categorical:
            return list(self.choices)
        out: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        if self.is_int:
            out = {k: int(v) if k in ("low", "high", "step") else v for k, v in out.items()}
        return out


@dataclass(frozen=True)
class SearchSpace:
    """The searched fields, in sampling order (``attention`` first), and the ``[space]`` lists
    of one value: not searched (the settings hold them), but kept to be stored as written."""

    params: tuple[ParamSpec, ...]
    single: tuple[tuple[str, Any], ...] = ()  # (name, value) of the lists of one value

    @classmethod
    def default(cls) -> SearchSpace:
        return cls((
            ParamSpec("mem_size", choices=(8, 16, 32, 64, 128)),
            ParamSpec("heads", choices=(1, 2, 4, 8)),
            ParamSpec("norm", choices=NORMS),
        ), single=(("attention", "external"),))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """As written in ``[space]``: the lists of one value too (stored studies read alike)."""
        return {**{name: [value] for name, value in self.single},
                **{p.name: p.to_dict() for p in self.params}}

    @property
    def discrete(self) -> bool:
        """Every searched field has finitely many values (the space can be enumerated)."""
        return all(p.discrete for p in self.params)

    def is_conditional(self, fixed: dict[str, Any]) -> bool:
        """Whether some trials skip EA-only fields (self-attention among the choices)."""
        spec = self.get("attention")
        kinds = spec.values() if spec else [fixed.get("attention", "external")]
        return "self" in kinds and any(n in EA_ONLY for n in self.names)

    def suggest(self, trial: optuna.Trial, fixed: dict[str, Any]) -> dict[str, Any]:
        """Sample this trial's params; EA-only fields are skipped for self-attention."""
        params: dict[str, Any] = {}
        attention = fixed.get("attention", "external")
        for spec in self.params:
            if spec.name in EA_ONLY and attention != "external":
                continue
            params[spec.name] = spec.suggest(trial)
            if spec.name == "attention":
                attention = params["attention"]
        return params

    def combinations(self, fixed: dict[str, Any], limit: int = 20000) -> Iterator[dict[str, Any]]:
        """Every distinct point (ranges by their grid or end points), conditionals collapsed."""
        seen: set[tuple[tuple[str, Any], ...]] = set()
        pools = [p.values() for p in self.params]
        for count, values in enumerate(itertools.product(*pools)):
            if count >= limit:
                return
            point = dict(zip(self.names, values, strict=True))
            if point.get("attention", fixed.get("attention", "external")) != "external":
                point = {k: v for k, v in point.items() if k not in EA_ONLY}
            key = tuple(sorted(point.items()))
            if key not in seen:
                seen.add(key)
                yield point

    def grid(self) -> dict[str, list[Any]]:
        """Optuna GridSampler's search space (categorical or stepped fields only)."""
        out = {}
        for p in self.params:
            if not p.discrete:
                raise UsageError(
                    f"--sampler grid needs every searched field to be a list or a range with "
                    f"a step; [space] {p.name} is a continuous range: use tpe, gp or random"
                )
            out[p.name] = p.values()
        return out


def parse_space(
    raw: dict[str, Any], field_types: dict[str, type], locate: Locate
) -> tuple[SearchSpace, dict[str, Any]]:
    """Parse a ``[space]`` table. Returns the space and the fixed settings (scalars and lists
    of one value).

    Args:
        raw: The table.
        field_types: Searchable field name → its type (int, float, str, bool).
        locate: Gives a ``file:line: `` prefix for a (section, key).
    """
    specs: list[ParamSpec] = []
    fixed: dict[str, Any] = {}
    single: list[tuple[str, Any]] = []
    for name, value in raw.items():
        where = f"{locate('space', name)}[space] {name}"
        if name in HOW_NOT_WHAT:
            raise UsageError(f"{where}: changes how training runs, not what it trains "
                             f"(the same results): set it in [train]")
        if name not in field_types:
            raise UsageError(
                f"{where}: not a searchable field; known: {', '.join(sorted(field_types))}"
            )
        tp = field_types[name]
        if isinstance(value, list):
            if not value:
                raise UsageError(f"{where}: empty list of choices: give at least one value")
            choices = tuple(_check_value(where, v, tp) for v in value)
            if len(set(choices)) != len(choices):
                raise UsageError(f"{where}: repeated choices {list(value)}: list each once")
            if len(choices) == 1:  # one value: a setting, not a param
                fixed[name] = choices[0]
                single.append((name, choices[0]))
            else:
                specs.append(ParamSpec(name, choices=choices))
        elif isinstance(value, dict):
            specs.append(_parse_range(where, name, value, tp))
        else:
            fixed[name] = _check_value(where, value, tp)
    specs.sort(key=lambda s: s.name != "attention")  # attention decides what else applies
    return SearchSpace(tuple(specs), tuple(single)), fixed


def _check_value(where: str, value: Any, tp: type) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: values must be finite numbers; got {value!r}")
    if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
        kind = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}[tp]
        raise UsageError(f"{where}: values must be {kind}; got {value!r}")
    return value


def _parse_range(where: str, name: str, value: dict[str, Any], tp: type) -> ParamSpec:
    unknown = sorted(set(value) - _RANGE_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown range key(s) {', '.join(unknown)}; use low, high, "
                         "log, step")
    if tp not in (int, float):
        raise UsageError(f"{where}: a range needs a numeric field; give a list of choices")
    if "low" not in value or "high" not in value:
        raise UsageError(f"{where}: a range needs both low and high")
    low = _check_value(where, value["low"], tp)
    high = _check_value(where, value["high"], tp)
    log = value.get("log", False)
    step = value.get("step")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log must be true or false")
    if low > high:
        raise UsageError(f"{where}: low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0")
    if step is not None:
        step = _check_value(where, step, tp)
        if step <= 0:
            raise UsageError(f"{where}: step must be > 0")
        if log:
            raise UsageError(f"{where}: step and log cannot be combined")
    return ParamSpec(name, low=float(low), high=float(high), log=log,
                     step=None if step is None else float(step), is_int=tp is int)
