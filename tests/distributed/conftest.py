"""Server fixtures for the distributed tests: a fresh database per test, dropped afterwards.

The servers default to the local ones and can be pointed elsewhere with environment variables:

- ``EXPLORE_TEST_POSTGRES`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``): the
  user must be allowed to ``CREATE DATABASE``; each test gets ``explore_test_<random>``.
- ``EXPLORE_TEST_MYSQL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``): likewise.
- ``EXPLORE_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``): the server; each test claims an
  empty database index other than the given one (Optuna's Redis journal has no key prefix here)
  and deletes its keys afterwards.

A server that is not reachable skips its tests with the reason ("PostgreSQL not reachable at …");
``-ra`` (in pyproject's addopts) lists every skip and its reason in the summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_MEASURE, spawned

ENV_POSTGRES = "EXPLORE_TEST_POSTGRES"
ENV_MYSQL = "EXPLORE_TEST_MYSQL"
ENV_REDIS = "EXPLORE_TEST_REDIS"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT_S = 3
REDIS_CLAIM_KEY = "explore-test-claim"  # marks a Redis database index as taken by a test
EXPLORE = Path(sys.executable).with_name("explore")
REPO = Path(__file__).resolve().parents[2]
STORAGE_ENV = ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")

# A trial takes about a second on 2 busy cores: a tiny model, a quick single-threaded measurement
# and a space of 8 configurations (so workers also exercise the duplicate answers).
TINY_TOML = """\
[model]
dim = 16
depth = 1

""" + TINY_MEASURE + """
[space]
mem_size = [8, 16]
heads = [1, 2]
norm = ["softmax", "double"]
"""


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for ``explore`` subprocesses: no storage overrides from the caller's
    shell, the repository importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in STORAGE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture
def subprocess_env_factory() -> Callable[..., dict[str, str]]:
    """:func:`subprocess_env` for test modules (which cannot import this conftest)."""
    return subprocess_env


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML, encoding="utf-8")
    return path


def _sql_database(base: str, what: str, quote: Callable[[str], str]) -> Iterator[str]:
    """Create ``explore_test_<random>`` on the server of ``base``; yield its URL; drop it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from studies.storage import mask_url

    url = make_url(base)
    admin = create_engine(url, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    name = f"explore_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as con:
            con.execute(text(f"CREATE DATABASE {quote(name)}"))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"{what} not reachable at {mask_url(base)} (or cannot CREATE DATABASE): "
                    f"{_first_line(exc)}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE IF EXISTS {quote(name)}"
        if url.get_backend_name() == "postgresql":
            drop += " WITH (FORCE)"  # connections of killed workers may linger a moment
        with admin.connect() as con:
            con.execute(text(drop))
        admin.dispose()


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards)."""
    yield from _sql_database(os.environ.get(ENV_POSTGRES, DEFAULT_POSTGRES), "PostgreSQL",
                             lambda n: f'"{n}"')


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MySQL/MariaDB database for this test (dropped afterwards)."""
    yield from _sql_database(os.environ.get(ENV_MYSQL, DEFAULT_MYSQL), "MySQL/MariaDB",
                             lambda n: f"`{n}`")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``redis://…/K`` for an empty database index K claimed for this test; its keys are
    deleted afterwards."""
    from urllib.parse import urlsplit, urlunsplit

    from studies.storage import mask_url

    base = os.environ.get(ENV_REDIS, DEFAULT_REDIS)
    try:
        import redis

        parts = urlsplit(base)
        given = int(parts.path.strip("/") or 0)
        probe = redis.Redis.from_url(base, socket_connect_timeout=CONNECT_TIMEOUT_S)
        count = int(probe.config_get("databases").get("databases") or 16)
        probe.close()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {mask_url(base)}: {_first_line(exc)}")
    token = uuid.uuid4().hex
    for index in [i for i in range(count - 1, -1, -1) if i != given]:
        url = urlunsplit(parts._replace(path=f"/{index}"))
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        if client.set(REDIS_CLAIM_KEY, token, nx=True) and client.dbsize() == 1:
            break
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            client.delete(REDIS_CLAIM_KEY)  # ours, but the index holds other keys: leave it
        client.close()
    else:
        pytest.skip(f"Redis at {mask_url(base)}: no empty database index to claim")
    try:
        yield url
    finally:
        for key in client.scan_iter(count=1000):
            client.delete(key)
        client.close()


@pytest.fixture(params=[
    "sqlite",
    "journal",
    pytest.param("postgresql", marks=pytest.mark.db),
    pytest.param("mysql", marks=pytest.mark.db),
    pytest.param("redis", marks=pytest.mark.db),
])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One storage of each kind explore supports, fresh for this test."""
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return str(request.getfixturevalue(f"{kind}_url"))


RunExplore = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_explore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunExplore:
    """``run_explore(*args)``: ``explore ARGS`` in a subprocess in ``tmp_path``; stdout and
    stderr captured. The test runs in ``tmp_path`` too, so that both see the same artifact
    directory (``./explore-artifacts`` for server storages, with Redis's snapshots.db)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(EXPLORE), *map(str, args)], cwd=tmp_path,
                              env=subprocess_env(), capture_output=True, text=True,
                              timeout=timeout)

    return run


StartWorker = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartWorker]:
    """``start_worker(name, url, index=0, workers=1)``: an ``explore study worker`` process in
    ``tmp_path`` (the test runs there too); any still running at the end are killed."""
    monkeypatch.chdir(tmp_path)
    with spawned(tmp_path, subprocess_env()) as spawn:

        def start(name: str, url: str, index: int = 0, workers: int = 1) -> subprocess.Popen[str]:
            return spawn("study", "worker", "--name", name, "--storage", url, "--device", "cpu",
                         "--worker-index", str(index), "--workers", str(workers), "--quiet")

        yield start
