"""Bad input: exit code 1 or 2, one line on stderr naming the problem, no traceback, and no change
to any database.

Every case runs in a copy of one arena directory that holds an explore study (``explore.db``,
copied from the session's real study), databases of an older and a newer Optuna schema, a study made
by Optuna alone, a file that is not a database, a directory named like a database and an empty
data directory. Before and after each command the test reads every file of the arena: existing
files must keep their bytes and no file may appear. The table runs in-process (Typer's CliRunner,
stdout and stderr apart); the cases where the process itself matters (a download without network,
``--debug``, logging from Optuna) run as real subprocesses.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest

EXPLORE = Path(sys.executable).with_name("explore")
STORAGE_ENV = ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")
OLD_REVISION = "v3.0.0.d"  # an Optuna 3.0 schema: Optuna 5 refuses it until upgraded
NEW_REVISION = "v9.0.0.a"  # a schema from a future Optuna


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int  # the exit code
    words: tuple[str, ...]  # what the message must say (case-insensitive)
    toml: str | None = None  # written to bad.toml (pass it with --config bad.toml)


def case(*args: str, code: int = 2, says: tuple[str, ...], toml: str | None = None,
         id: str) -> Any:
    return pytest.param(Case(args, code, says, toml), id=id)


RUN = ("study", "run", "--trials", "1")
CASES = [
    # Studies that are not there.
    case("study", "worker", "--name", "nope", code=1, says=("no study named 'nope'",),
         id="worker-no-study"),
    case("study", "show", "nope", code=1, says=("no study named 'nope'",), id="show-no-study"),
    case("study", "pareto", "nope", code=1, says=("no study named 'nope'",),
         id="pareto-no-study"),
    case("study", "export", "nope", "--out", "nope.csv", code=1, says=("no study named 'nope'",),
         id="export-no-study"),
    case("study", "show", "made", "--storage", "missing.db", code=1,
         says=("no study database", "missing.db"), id="show-no-database"),
    # Storage URLs and files.
    case(*RUN, "--storage", "foo://u:pw@host/x", says=("unknown storage scheme 'foo'",),
         id="unknown-scheme"),
    case(*RUN, "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/x",
         says=("cannot open", "127.0.0.1"), id="unreachable-server"),
    case(*RUN, "--storage", "adir.db", says=("is a directory",), id="directory"),
    case(*RUN, "--storage", "sqlite:///adir.db", says=("is a directory",), id="directory-url"),
    case(*RUN, "--storage", "ro/new.db", says=("not writable",), id="not-writable"),
    case(*RUN, "--storage", "notdb.db", says=("not an SQLite database",), id="not-sqlite"),
    case(*RUN, "--storage", "old.db", says=("optuna storage upgrade",), id="old-schema"),
    case(*RUN, "--storage", "new.db", says=("newer Optuna", "pip install -U optuna"),
         id="newer-schema"),
    case(*RUN, "--storage", "foreign.db", "--name", "foreign", says=("not created by explore",),
         id="not-made-by-explore"),
    case(*RUN, "--storage", "foreign.db", "--name", "mimic", says=("other objectives",),
         id="other-directions"),
    # Settings files.
    case(*RUN, "--config", "nothere.toml", says=("config file not found",), id="no-config"),
    case(*RUN, "--config", "bad.toml", says=("TOML syntax error", "line 3"),
         toml="[train]\nepochs = 2\n[space\nheads = [1]\n", id="toml-syntax"),
    case(*RUN, "--config", "bad.toml", says=("bad.toml:3", "unknown key [train] foo"),
         toml="[train]\nepochs = 2\nfoo = 1\n", id="unknown-key"),
    case(*RUN, "--config", "bad.toml", says=("unknown section [trian]",),
         toml="[trian]\nepochs = 2\n", id="unknown-section"),
    case(*RUN, "--config", "bad.toml", says=("bad.toml:2", "[train] epochs", "integer"),
         toml='[train]\nepochs = "six"\n', id="wrong-type"),
    case(*RUN, "--config", "bad.toml", says=("[space] mem_size", "empty"),
         toml="[space]\nmem_size = []\n", id="empty-space"),
    case(*RUN, "--config", "bad.toml", says=("[space] lr", "greater than high"),
         toml="[space]\nlr = {low = 0.1, high = 0.01}\n", id="low-above-high"),
    case(*RUN, "--config", "bad.toml", says=("mem_size = 0", "never possible"),
         toml="[space]\nmem_size = [0, 8]\n", id="mem-size-zero"),
    case(*RUN, "--config", "bad.toml", says=("heads = 32", "never possible"),
         toml="[model]\ndim = 16\n\n[space]\nheads = [32]\n", id="heads-above-dim"),
    case(*RUN, "--config", "bad.toml", says=("patch_size = 3", "image_size"),
         toml="[space]\npatch_size = [3]\n", id="patch-not-dividing"),
    # Options.
    case(*RUN, "--epochs", "0", says=("[train] epochs must be >= 1",), id="epochs-zero"),
    case("study", "run", "--trials", "0", says=("[study] trials must be >= 1",), id="trials-zero"),
    case(*RUN, "--trials", "-3", says=("trials must be >= 1",), id="trials-negative"),
    case(*RUN, "--dataset", "foo", says=("unknown dataset 'foo'",), id="unknown-dataset"),
    case(*RUN, "--sampler", "annealing", says=("unknown sampler 'annealing'",),
         id="unknown-sampler"),
    case(*RUN, "--dataset", "mnist", "--data-dir", "empty", says=("mnist", "not found"),
         id="missing-dataset-files"),
    case(*RUN, "--device", "tpu", says=("unknown device 'tpu'",), id="unknown-device"),
    case(*RUN, "--device", "cuda", says=("CUDA is not available",), id="cuda-without-cuda"),
    case(*RUN, "--max-failures", "0", says=("--max-failures",), id="max-failures-zero"),
    case(*RUN, "--keep-checkpoints", "some", says=("--keep-checkpoints",), id="keep-unknown"),
    case(*RUN, "-f", "yaml", says=("'yaml' is not one of",), id="unknown-format"),
    # Values that can never work: refused before anything is stored.
    case(*RUN, "--timeout", "-5", says=("--timeout -5", ">= 0"), id="timeout-negative"),
    case(*RUN, "--timeout", "nan", says=("--timeout nan",), id="timeout-nan"),
    case(*RUN, "--workers", "1000000000", says=("--workers 1000000000", "at most"),
         id="workers-a-billion"),
    case(*RUN, "--storage", "", says=("--storage is empty",), id="storage-empty"),
    case("model", "train", "--out", "adir", says=("--out adir is a directory",),
         id="train-out-is-a-directory"),
    case("model", "train", "--out", "nowhere/m.pt", says=("nowhere", "does not exist"),
         id="train-out-in-a-missing-directory"),
    case(*RUN, "--devices", "cuda:0", says=("--devices cuda:0", "CUDA"),
         id="devices-without-cuda"),
    case("study", "list", "--storage", "", says=("--storage is empty",), id="list-storage-empty"),
    case(*RUN, "--storage", "mysql://root@127.0.0.1/test", says=("mysql+pymysql://",),
         id="mysql-without-driver"),
    case(*RUN, "--config", "bad.toml", toml="[train]\nlr = nan\n",
         says=("bad.toml:2", "[train] lr", "finite"), id="lr-nan"),
    case(*RUN, "--config", "bad.toml", toml="[space]\nlr = [0.001, inf]\n",
         says=("bad.toml:2", "[space] lr", "finite"), id="space-inf"),
    case(*RUN, "--epochs", "1", "--config", "bad.toml", toml='[train]\nepochs = "three"\n',
         says=("bad.toml:2", "[train] epochs"), id="bad-file-value-under-an-option"),
    case(*RUN, "--precision", "fp16", "--config", "bad.toml", toml="[train]\nepochs = 2\n",
         says=("--precision fp16", "precision"), id="option-error-names-the-option"),
    case(*RUN, "--warm-start", "-1", "--config", "bad.toml", toml="[train]\nepochs = 2\n",
         says=("--warm-start -1",), id="warm-start-negative-names-the-option"),
    case(*RUN, "--config", "adir", says=("adir is a directory",), id="config-is-a-directory"),
    case(*RUN, "--config", "/dev/zero", says=("not a regular file",), id="config-dev-zero"),
    case(*RUN, "--config", "latin1.toml", says=("latin1.toml", "not UTF-8"),
         id="config-not-utf8"),
    case(*RUN, "--storage", "sqlite:///app.db", says=("another application's", "customers"),
         id="foreign-sqlite-run"),
    case("study", "copy", "made", "--to-storage", "sqlite:///app.db",
         says=("another application's",), id="foreign-sqlite-copy"),
    # Values a typed option cannot take, unknown options and commands: one line, not a panel.
    case(*RUN, "--seed", "abc", says=("--seed", "valid integer", "--help"), id="seed-abc"),
    case("study", "run", "--trials", "many", says=("--trials",), id="trials-many"),
    case(*RUN, "--timeout", "soon", says=("--timeout",), id="timeout-soon"),
    case(*RUN, "--bogus", says=("no such option: --bogus",), id="unknown-option"),
    case("study", "frobnicate", says=("no such command 'frobnicate'",), id="unknown-command"),
    case("model", "list", "-f", "yaml", says=("'yaml' is not one of",), id="model-list-yaml"),
    case("study", "show", "x", "-f", "csv", says=("'csv' is not one of",), id="show-csv"),
    case(*RUN, "--replicates", "sometimes", says=("replicates", '"race"'),
         id="replicates-sometimes"),
    case(*RUN, "--config", "bad.toml", toml="[study]\nmax_replicates = 0\n",
         says=("max_replicates",), id="max-replicates-zero"),
    case(*RUN, "--config", "bad.toml", toml="[study]\nconfidence = 1.5\n",
         says=("confidence",), id="confidence-1.5"),
    case(*RUN, "--config", "bad.toml", toml="[study]\naccuracy_tolerance = -0.5\n",
         says=("bad.toml", "accuracy_tolerance", "between 0 and 100"), id="tolerance-negative"),
    case(*RUN, "--config", "bad.toml", toml="[study]\naccuracy_tolerance = nan\n",
         says=("bad.toml", "accuracy_tolerance"), id="tolerance-nan"),
    case(*RUN, "--config", "bad.toml", toml="[space]\ncuda_graph = [true, false]\n",
         says=("bad.toml:2", "[space] cuda_graph", "how training runs", "[train]"),
         id="space-searches-how-not-what"),
    case(*RUN, "--config", "bad.toml", toml="[space]\nstate_interval = [0.0, 5.0]\n",
         says=("bad.toml:2", "[space] state_interval", "how training runs", "[train]"),
         id="space-searches-state-interval"),
    case(*RUN, "--config", "bad.toml", toml="[train]\nstate_interval = -1.0\n",
         says=("state_interval must be a number of seconds >= 0", "-1.0"),
         id="state-interval-negative"),
    # One configuration's --set values are checked as a settings file's.
    case("model", "train", "--set", "epochs=abc",
         says=("--set", "[train] epochs must be an integer", "'abc'"), id="set-epochs-string"),
    case("model", "train", "--set", "cuda_graph=maybe",
         says=("--set", "[train] cuda_graph must be true or false"), id="set-bool-string"),
    case("model", "bench", "--set", "dim=wide", says=("--set", "[model] dim must be an integer"),
         id="set-dim-string"),
    case("model", "train", "--set", "width=3", says=("unknown model/training field", "width"),
         id="set-unknown-field"),
    # A configuration that needs more memory than is free: refused before anything is stored.
    case(*RUN, "--config", "bad.toml", toml="[space]\nmem_size = [8, 1073741824]\n",
         says=("mem_size 1073741824 needs about", "GiB for", "free (RAM)", "lower mem_size"),
         id="memory-estimate-run"),
    # Values that only a library deep inside would refuse, with its own exception's name.
    case(*RUN, "--seed", "-5", says=("--seed -5", "seed must be between 0 and"),
         id="seed-negative"),
    case("model", "train", "--seed", "4294967296", says=("--seed", "between 0 and 4294967295"),
         id="model-seed-too-large"),
    case("model", "bench", "--threads", "-3", says=("--threads -3", "positive count"),
         id="bench-threads-negative"),
    case("model", "train", "--set", "mem_size=1073741824",
         says=("mem_size 1073741824 needs about", "free (RAM)"), id="memory-estimate-train"),
]


def _optuna_study(url: str, name: str, directions: list[str], metric_names: list[str],
                  attrs: dict[str, Any] | None = None) -> None:
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions)
    study.set_metric_names(metric_names)
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    study.add_trial(optuna.trial.create_trial(params={"x": 1.0}, values=[1.0, 2.0],
                                              distributions={"x": optuna.distributions
                                                             .FloatDistribution(0, 2)}))
    storage.engine.dispose()  # closed: no connection (or WAL file) outlives the set-up


@pytest.fixture(scope="module")
def arena_template(made_study: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert made_study.returncode == 0, made_study.stderr
    root = tmp_path_factory.mktemp("arena")
    shutil.copyfile(made_study.db, root / "explore.db")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # An older schema: a study written by Optuna, its schema revision set back as Optuna 3.0
    # left it (what a database from an old installation looks like to Optuna 5); a newer one:
    # a revision this Optuna does not know.
    _optuna_study(f"sqlite:///{root / 'old.db'}", "old", ["maximize", "maximize"], ["a", "b"])
    _optuna_study(f"sqlite:///{root / 'new.db'}", "new", ["maximize", "maximize"], ["a", "b"])
    for name, revision in (("old.db", OLD_REVISION), ("new.db", NEW_REVISION)):
        con = sqlite3.connect(root / name)
        with con:
            con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        con.close()
    # Made by Optuna alone: another objective pair, and one that mimics explore's settings
    # attr but minimizes.
    made = optuna.storages.RDBStorage(f"sqlite:///{root / 'explore.db'}")
    settings = optuna.load_study(study_name="made", storage=made).user_attrs
    made.engine.dispose()
    foreign = f"sqlite:///{root / 'foreign.db'}"
    _optuna_study(foreign, "foreign", ["minimize", "maximize"], ["loss", "speed"])
    _optuna_study(foreign, "mimic", ["minimize", "maximize"], ["loss", "speed"],
                  {"explore_settings": settings["explore_settings"]})
    (root / "notdb.db").write_text("not a database\n", encoding="utf-8")
    app = sqlite3.connect(root / "app.db")  # another application's database
    with app:
        app.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        app.execute("INSERT INTO customers VALUES (1, 'ada')")
    app.close()
    (root / "adir.db").mkdir()
    (root / "adir").mkdir()
    (root / "latin1.toml").write_bytes("[study]\n# caf\xe9\ntrials = 2\n".encode("latin-1"))
    (root / "empty").mkdir()
    (root / "ro").mkdir()
    assert not list(root.glob("*-wal")) and not list(root.glob("*-shm"))
    return root


@pytest.fixture
def arena(arena_template: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh copy of the arena as the current directory."""
    root = tmp_path / "arena"
    shutil.copytree(arena_template, root)
    (root / "ro").chmod(0o555)
    monkeypatch.chdir(root)
    yield root
    (root / "ro").chmod(0o755)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def check_unchanged(before: dict[str, bytes], after: dict[str, bytes],
                    may_appear: tuple[str, ...] = ()) -> None:
    """Existing files keep their bytes; nothing appears but ``may_appear`` paths and, while a
    connection is open (in-process runs), an empty WAL and its index next to a database."""
    changed = [name for name in before if after.get(name) != before[name]]
    open_wal = {f"{name}{end}" for name in before for end in ("-wal", "-shm")}
    appeared = [name for name in after if name not in before and not name.startswith(may_appear)
                and not (name in open_wal and not (name.endswith("-wal") and after[name]))]
    assert not changed, f"changed or removed: {changed}"
    assert not appeared, f"new files: {appeared}"


def check_message(code: int, stderr: str, expected: Case) -> None:
    lines = stderr.strip().splitlines()
    assert code == expected.code, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for word in expected.words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_and_changes_nothing(
        bad: Case, arena: Path, cli: Callable[..., Any]) -> None:
    if "ro/new.db" in bad.args and os.access(arena / "ro", os.W_OK):
        pytest.skip("running as root: a read-only directory is still writable")
    if bad.toml is not None:
        (arena / "bad.toml").write_text(bad.toml, encoding="utf-8")
    before = files(arena)
    result = cli(*bad.args)
    check_message(result.exit_code, result.stderr, bad)
    assert result.stdout == ""
    check_unchanged(before, files(arena))


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in STORAGE_ENV}
    return subprocess.run([str(EXPLORE), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [p for p in CASES if p.id in (
    "show-no-study", "old-schema", "unreachable-server", "seed-abc", "unknown-command")],
    ids=lambda c: " ".join(c.args[:2]))
def test_a_real_process_prints_one_line(bad: Case, arena: Path) -> None:
    """What Optuna or the drivers might log goes to the real stderr: still one line."""
    if bad.toml is not None:
        (arena / "bad.toml").write_text(bad.toml, encoding="utf-8")
    before = files(arena)
    proc = run(list(bad.args), arena)
    check_message(proc.returncode, proc.stderr, bad)
    assert proc.stdout == ""
    check_unchanged(before, files(arena))


@pytest.mark.slow
def test_download_without_network_fails_fast_and_cleanly(arena: Path) -> None:
    before = files(arena)
    proc = run(["study", "run", "--trials", "1", "--dataset", "mnist", "--download",
                "--data-dir", "dl"], arena, timeout=90)
    check_message(proc.returncode, proc.stderr,
                  Case((), 2, ("could not download mnist", "dl")))
    check_unchanged(before, files(arena), may_appear=("dl",))


def test_debug_shows_the_traceback(arena: Path) -> None:
    proc = run(["--debug", "study", "show", "nope"], arena, timeout=60)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "no study named 'nope'" in proc.stderr
