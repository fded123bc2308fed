"""Real studies for the browsing tests, made once per session by ``explore study run``.

Two studies share one SQLite file:

- ``grid``: external attention, S ∈ {8, 16} × heads ∈ {1, 2} × norm ∈ {softmax, double}, grid
  sampler: all 8 configurations, so double/softmax pairs exist for every (S, heads);
- ``easa``: external vs self-attention × heads ∈ {1, 2}, brute force: 4 configurations, 2 EA/SA
  pairs.

Both keep the checkpoints of their Pareto-optimal trials (the default). Tests that change a study
work on a copy (:func:`copy_studies`). ``tests/test_cli_browse.py`` imports this module too, so
the studies are built once for both.
"""

from __future__ import annotations

import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from tests.conftest import EXPLORE, clean_env, tiny_study_toml

STUDY_TABLE = 'sampler = "{sampler}"\nseed = 7'  # the [study] table's body
SPACES = {
    "grid": 'mem_size = [8, 16]\nheads = [1, 2]\nnorm = ["softmax", "double"]\n',
    "easa": 'attention = ["external", "self"]\nmem_size = [8]\nheads = [1, 2]\n',
}
TRIALS = {"grid": 8, "easa": 4}
# Grid sampling cannot skip S and norm for self-attention trials; brute force can.
SAMPLERS = {"grid": "grid", "easa": "bruteforce"}


@dataclass(frozen=True)
class Studies:
    directory: Path
    db: Path
    url: str
    names: tuple[str, ...]
    seconds: float

    @property
    def checkpoints(self) -> Path:
        """The artifact store the runner used (next to the database)."""
        return self.directory / f"{self.db.stem}-artifacts" / "checkpoints"


def load(studies: Studies, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=studies.url)


_made: dict[Path, Studies] = {}


def make_studies(base: Path) -> Studies:
    """Build (once per ``base``) both studies with real ``explore study run`` subprocesses."""
    if base in _made:
        return _made[base]
    directory = base / "browse"
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name, space in SPACES.items():
        config = directory / f"{name}.toml"
        text = tiny_study_toml(space, study=STUDY_TABLE.format(sampler=SAMPLERS[name]),
                               train="epochs = 2")
        config.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [str(EXPLORE), "study", "run", "--name", name, "--config", config.name,
             "--trials", str(TRIALS[name]), "--storage", "studies.db", "--quiet"],
            cwd=directory, env=clean_env(), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"explore study run {name} failed:\n{proc.stdout}\n{proc.stderr}")
    db = directory / "studies.db"
    made = Studies(directory, db, f"sqlite:///{db}", tuple(SPACES),
                   time.perf_counter() - started)
    _made[base] = made
    return made


def copy_studies(studies: Studies, target: Path) -> Studies:
    """A private copy (database, WAL files and artifacts) that a test may change."""
    shutil.copytree(studies.directory, target)
    db = target / studies.db.name
    return Studies(target, db, f"sqlite:///{db}", studies.names, 0.0)


def first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line a server process prints (its URL), or fail with its stderr."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"no URL printed; stderr: {proc.stderr.read() if proc.stderr else ''}")
