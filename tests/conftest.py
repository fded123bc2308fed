"""Shared fixtures: tiny study settings, the CLI runner, and one real study made by a subprocess.

Nothing here imports torch at module level: the ``studies`` tests must stay torch-free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

# Small enough that a trial takes about a second on 2 busy CPU cores; one thread because other
# work on the machine slows multi-threaded matmuls far more than single-threaded ones.
TINY_MODEL = "[model]\ndim = 16\ndepth = 1\n"
# The [measure] table every tiny test study uses: quick, measured once, single-threaded unless
# a test asks for another ``threads`` (0: the cores shared among the workers).
TINY_MEASURE_TEMPLATE = """\
[measure]
batch_size = 64
warmup = 1
min_iters = 3
min_time = 0.05
retries = 0  # a noisy tiny measurement is not taken again in tests (see test_fastpath)
threads = {threads}
"""
TINY_MEASURE = TINY_MEASURE_TEMPLATE.format(threads=1)
TINY_SPACE = "mem_size = [8, 16]\nheads = [1, 2]"
EXPLORE = Path(sys.executable).with_name("explore")
OPTUNA = Path(sys.executable).with_name("optuna")
STORAGE_ENV = ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")


def write_tiny_config(directory: Path, space: str = TINY_SPACE, name: str | None = None,
                      threads: int = 1) -> Path:
    """Write ``tiny.toml`` (tiny model, quick measurement on ``threads`` threads, the given
    ``[space]`` body)."""
    text = (f"{TINY_MODEL}\n{TINY_MEASURE_TEMPLATE.format(threads=threads)}\n"
            f"[space]\n{space}\n")
    if name is not None:
        text = f'[study]\nname = "{name}"\n\n' + text
    path = directory / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def tiny_study_toml(space: str, study: str = "warm_start = 0", train: str = "epochs = 1",
                    data: str | None = None) -> str:
    """A whole settings file for a tiny study: ``[study]`` lines, ``[data]`` lines if any, the
    tiny model, ``[train]`` lines, the quick measurement and the ``[space]`` body."""
    data_table = "" if data is None else f"[data]\n{data}\n\n"
    return (f"[study]\n{study}\n\n{data_table}{TINY_MODEL}\n[train]\n{train}\n\n"
            f"{TINY_MEASURE}\n[space]\n{space}\n")


def run_replicated_study(directory: Path, name: str, data: str | None = None) -> str:
    """``explore study run`` of a tiny study in ``directory``: 4 trials of one epoch, mem_size
    8 and 16 trained twice each (``--replicates 2``), no checkpoints kept, ``data`` the
    ``[data]`` lines if any. Returns the storage URL (``NAME.db``)."""
    (directory / f"{name}.toml").write_text(tiny_study_toml(
        "mem_size = [8, 16]\nheads = [1]", study="trials = 4\nwarm_start = 0\nreplicates = 2",
        data=data), encoding="utf-8")
    url = f"sqlite:///{directory / f'{name}.db'}"
    proc = run_explore(directory, "study", "run", "--name", name, "--storage", url, "-c",
                       f"{name}.toml", "--keep-checkpoints", "none", "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return url


def assert_retrained(url: str, name: str, trials: Iterable[Any], directory: Path) -> None:
    """Retraining each of ``trials`` as ``study models`` does (weights into ``directory``)
    reproduces its stored accuracy exactly."""
    from explore.run.export_models import _Retrainer
    from explore.search.racing import record_of
    from studies.catalog import open_catalog

    with open_catalog(url) as catalog:
        retrain = _Retrainer(catalog.study(name), "cpu")
    for t in trials:
        assert retrain(record_of(t), directory / f"t{t.number}.pt", print)[
            "retrained_accuracy"] == t.values[0]


def run_explore(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``explore ARGS`` in a real subprocess in ``cwd``, without the caller's storage overrides;
    stdout and stderr captured as text."""
    return subprocess.run([str(EXPLORE), *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def spawned(cwd: Path, env: dict[str, str], to_files: bool = False
            ) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``start(*args)`` runs ``explore ARGS`` in the background in ``cwd``, stdout and stderr
    piped. With ``to_files`` they go to ``cwd/LOG-I.out`` and ``cwd/LOG-I.err`` instead
    (``start(*args, log=LOG)``; I numbers the processes started; ``proc.stderr_path`` is the
    ``.err`` file): for runs that print more than a pipe holds before the test reads it.
    Whatever is still running when the block ends is killed, and every process is reaped."""
    started: list[subprocess.Popen[str]] = []
    files: list[IO[str]] = []

    def start(*args: str, log: str = "run") -> subprocess.Popen[str]:
        stem = cwd / f"{log}-{len(started)}"
        if to_files:
            files.extend((open(f"{stem}.out", "w"), open(f"{stem}.err", "w")))
        out, err = files[-2:] if to_files else (subprocess.PIPE, subprocess.PIPE)
        proc = subprocess.Popen([str(EXPLORE), *args], cwd=cwd, env=env, text=True,
                                stdout=out, stderr=err)
        if to_files:
            proc.stderr_path = Path(f"{stem}.err")  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        for f in files:
            f.close()


def kill_when(workers: Sequence[subprocess.Popen[str]], running: Callable[[], Iterable[Any]],
              ready: Callable[[Any], bool], timeout: float = 180) -> Any:
    """Poll ``running()`` (the RUNNING trials) until one satisfies ``ready`` and was taken by one
    of ``workers`` (its ``worker`` user attr names the pid); SIGKILL that worker and return the
    trial. Fails when a worker ends first or nothing is ready in time."""
    by_pid = {p.pid: p for p in workers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in running():
            pid = (t.user_attrs.get("worker") or {}).get("pid")
            if pid in by_pid and ready(t):
                os.kill(pid, signal.SIGKILL)
                assert by_pid[pid].wait(timeout=30) == -signal.SIGKILL
                return t
        ended = [p for p in workers if p.poll() is not None]
        assert not ended, f"a worker ended before the kill: {ended[0].communicate()}"
        time.sleep(0.05)
    raise AssertionError("no running trial became ready to be killed in time")


def epochs_done(trial: Any) -> int:
    """Epochs a (running) trial has recorded in its ``history`` user attr."""
    return len(trial.user_attrs.get("history") or [])


def clean_env() -> dict[str, str]:
    """The environment for subprocesses, without storage overrides from the caller's shell."""
    return {k: v for k, v in os.environ.items() if k not in STORAGE_ENV}


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """explore's cache (data splits) in the test session's own directory, for every test and
    every subprocess they start: tests never read or fill a developer's ~/.cache."""
    os.environ["EXPLORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("explore-cache"))


@pytest.fixture(autouse=True)
def _no_storage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test never writes to the database a developer's shell points at."""
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory (the default ``explore.db`` goes here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config() -> Callable[..., Path]:
    return write_tiny_config


@pytest.fixture
def cli() -> Callable[..., Any]:
    """``cli("study", "run", …)`` runs the Typer app in-process; stdout and stderr separate."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train single-threaded (faster and steadier on a busy 2-core machine); restore after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class MadeStudy:
    """A study made by a real ``explore study run`` subprocess. Tests must not change it."""

    directory: Path
    db: Path
    url: str
    name: str
    args: tuple[str, ...]  # the command's arguments after ``explore``
    trials: int
    epochs: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="session")
def made_study(tmp_path_factory: pytest.TempPathFactory) -> MadeStudy:
    """4 trials of 2 epochs on digits, default storage (``explore.db`` in the cwd)."""
    directory = tmp_path_factory.mktemp("made")
    write_tiny_config(directory)
    args = ("study", "run", "--name", "made", "--config", "tiny.toml", "--epochs", "2",
            "--trials", "4", "--seed", "3")
    started = time.perf_counter()
    proc = subprocess.run([str(EXPLORE), *args], cwd=directory, env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    db = directory / "explore.db"
    return MadeStudy(directory, db, f"sqlite:///{db}", "made", args, 4, 2, proc.returncode,
                     proc.stdout, proc.stderr, seconds)


def dashboard_get(app: Any, path: str) -> tuple[str, bytes]:
    """One GET through optuna-dashboard's WSGI app, as a browser would send it."""
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body
