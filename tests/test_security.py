"""Security: passwords in storage URLs are never shown or stored, study names never reach a path
unchecked, checkpoints and training states are loaded with ``weights_only=True``, and artifact
paths stay inside the artifact directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

EXPLORE = Path(sys.executable).with_name("explore")
STORAGE_ENV = ("EXPLORE_STORAGE", "EXPLORE_ARTIFACTS", "OPTUNA_STORAGE")
SECRET_URLS = {
    "postgres": ("postgresql+psycopg://u:s3cr3t-pg@127.0.0.1:1/x", "s3cr3t-pg"),
    "mysql": ("mysql+pymysql://root:hunter2@127.0.0.1:1/x", "hunter2"),
    "redis": ("redis://:r3dis-pw@127.0.0.1:1/0", "r3dis-pw"),
}
COMMANDS = {
    "run": ("study", "run", "--trials", "1"),
    "worker": ("study", "worker", "--name", "x"),
    "list": ("study", "list"),
    "show": ("study", "show", "x"),
    "pareto": ("study", "pareto", "x"),
    "export": ("study", "export", "x", "--out", "x.csv"),
    "delete": ("study", "delete", "x", "--yes"),
}


def env_without_storage() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in STORAGE_ENV}


# ---- passwords ----


@pytest.mark.parametrize("url_name", sorted(SECRET_URLS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("via", ["option", "env"])
def test_a_password_never_appears_in_output(
        command: str, url_name: str, via: str, workdir: Path, cli: Callable[..., Any],
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, secret = SECRET_URLS[url_name]
    args = COMMANDS[command]
    if via == "env":
        monkeypatch.setenv("EXPLORE_STORAGE", url)
    else:
        args = (*args, "--storage", url)
    result = cli(*args)
    logged = capfd.readouterr()  # what loggers wrote past the runner's streams
    assert result.exit_code in (1, 2), result.output
    text = result.stdout + result.stderr + logged.out + logged.err
    assert secret not in text
    assert list(workdir.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("url_name", ["postgres", "mysql"])
def test_a_password_never_appears_even_with_debug(url_name: str, tmp_path: Path) -> None:
    url, secret = SECRET_URLS[url_name]
    for args in (["--debug", "study", "show", "x", "--storage", url],
                 ["--debug", "study", "run", "--trials", "1", "--storage", url]):
        proc = subprocess.run([str(EXPLORE), *args], cwd=tmp_path, env=env_without_storage(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert "Traceback" in proc.stderr
        assert secret not in proc.stdout + proc.stderr


def test_a_run_stores_and_prints_no_password(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """A whole run against a password-protected server URL (the server is played by an SQLite
    file): the password is in no output, stored setting, user attr, database row or file."""
    import explore.run.opening
    from studies.storage import open_storage, parse_storage

    local = parse_storage(str(workdir / "server.db"))

    def server(spec: Any, **kwargs: Any) -> Any:
        assert spec.url == url  # the runner connects with the real URL…
        return open_storage(local, **kwargs)  # …which this test serves from a file

    monkeypatch.setattr(explore.run.opening, "open_storage", server)
    url, secret = "postgresql+psycopg://explorer:pa55-w0rd@db.example:5432/studies", "pa55-w0rd"
    tiny_config(workdir)
    result = cli("study", "run", "--name", "guarded", "--storage", url, "--config", "tiny.toml",
                 "--trials", "1", "--epochs", "1")
    logged = capfd.readouterr()
    assert result.exit_code == 0, result.output
    assert "explorer:***@db.example" in result.stdout
    assert secret not in result.stdout + result.stderr + logged.out + logged.err

    study = optuna.load_study(study_name="guarded", storage=f"sqlite:///{workdir / 'server.db'}")
    assert secret not in repr(study.user_attrs)
    assert all(secret not in repr(t.user_attrs) for t in study.trials)
    con = sqlite3.connect(workdir / "server.db")
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert secret not in dump
    for path in workdir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# ---- study names ----

BAD_NAMES = ["../x", "a/b", "..", "/abs", "a\\b", ".hidden", "x" * 101, "x y", "name\n", ""]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_study_name_with_path_characters_is_refused_before_any_path(
        name: str, command: str, workdir: Path, cli: Callable[..., Any]) -> None:
    result = cli("study", command, "--name", name, *(("--trials", "1") if command == "run" else ()))
    assert result.exit_code == 2, result.output
    assert "invalid study name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(workdir.iterdir()) == []


def test_a_study_name_from_a_settings_file_is_checked_too(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path]) -> None:
    tiny_config(workdir, name="../../outside")
    result = cli("study", "run", "--config", "tiny.toml", "--trials", "1")
    assert result.exit_code == 2, result.output
    assert "invalid study name '../../outside'" in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["tiny.toml"]


def test_a_hundred_character_name_is_accepted(workdir: Path) -> None:
    from explore.run.opening import validate_name

    assert validate_name("a" * 100) == "a" * 100


# ---- unpickling ----


class Payload:
    """Unpickling this (without ``weights_only``) creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _malicious(path: Path, marker: Path, wrap: Callable[[Any], Any] = lambda p: p) -> Path:
    import torch

    torch.save(wrap(Payload(marker)), path)
    return path


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Without ``weights_only`` the file would run code: the tests below mean something."""
    import torch

    marker = tmp_path / "pwned"
    torch.load(_malicious(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("wrap", [lambda p: p,
                                  lambda p: {"format": "extattn-checkpoint", "config": p}],
                         ids=["bare", "inside-a-checkpoint"])
def test_a_malicious_checkpoint_is_refused_and_never_runs(
        wrap: Callable[[Any], Any], tmp_path: Path) -> None:
    from extattn import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "evil.pt", marker, wrap)
    with pytest.raises(CheckpointError, match="not an extattn checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_malicious_training_state_is_never_run_and_training_starts_over(
        tmp_path: Path, one_thread: None) -> None:
    import torch

    from explore.config import DataSettings, TrainSettings
    from explore.engine.data import load_dataset
    from explore.engine.train import train_model
    from explore.engine.trainstate import peek_state
    from extattn import ModelConfig, create_model

    marker = tmp_path / "pwned"
    state = _malicious(tmp_path / "state.pt", marker,
                       lambda p: {"version": 1, "epoch": 1, "extra": p})
    assert peek_state(state) is None
    data = load_dataset(DataSettings(max_train=300), seed=0)
    settings = TrainSettings(epochs=1, batch_size=64)
    config = ModelConfig(dim=16, depth=1, heads=2, mem_size=8)

    def train(state_path: Path | None) -> Any:
        torch.manual_seed(5)
        return train_model(create_model(config), data, settings, seed=5, state_path=state_path)

    resumed = train(state)
    assert not marker.exists()
    assert resumed.resumed_from == 0
    assert resumed.accuracy == train(None).accuracy


# ---- artifact paths ----


def test_a_run_writes_only_the_database_and_inside_its_artifact_directory(
        made_study: Any) -> None:
    assert made_study.returncode == 0, made_study.stderr
    root = made_study.directory.resolve()
    artifacts = (root / "explore-artifacts").resolve()
    own = {"explore.db", "explore.db-wal", "explore.db-shm", "tiny.toml"}
    for path in root.rglob("*"):
        if path.is_symlink():
            pytest.fail(f"a link in the study directory: {path}")
        if path.is_file() and path.name not in own:
            assert path.resolve().is_relative_to(artifacts), path
    study = optuna.load_study(study_name=made_study.name, storage=made_study.url)
    ids = {t.number: t.user_attrs["checkpoint_artifact"] for t in study.trials
           if "checkpoint_artifact" in t.user_attrs}
    assert ids, "the run kept no checkpoint"
    for artifact_id in ids.values():
        assert str(uuid.UUID(artifact_id)) == artifact_id  # built from an id, never a name
    stored = {p.name for p in (artifacts / "checkpoints").iterdir()}
    assert stored <= set(ids.values())
    for t in study.best_trials:  # --keep-checkpoints pareto: the front's are kept
        if t.user_attrs.get("duplicate_of") is None:
            assert ids[t.number] in stored


def test_delete_never_follows_a_crafted_artifact_id(
        made_study: Any, tmp_path: Path, cli: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A user attr is data anyone with database access can write: a path in it is ignored."""
    assert made_study.returncode == 0, made_study.stderr
    home = tmp_path / "home"
    shutil.copytree(made_study.directory, home)
    victims = [home / "victim.txt", home / "explore-artifacts" / "victim.txt"]  # ../.., ..
    for victim in victims:
        victim.write_text("keep me", encoding="utf-8")
    con = sqlite3.connect(home / "explore.db")
    with con:
        ids = [row[0] for row in con.execute(
            "SELECT trial_user_attribute_id FROM trial_user_attributes "
            "WHERE key = 'checkpoint_artifact' ORDER BY trial_user_attribute_id")]
        for row, crafted in zip(ids, ('"../../victim.txt"', '"../victim.txt"'), strict=False):
            con.execute("UPDATE trial_user_attributes SET value_json = ? "
                        "WHERE trial_user_attribute_id = ?", (crafted, row))
    con.close()
    assert len(ids) >= 2
    monkeypatch.chdir(home)
    result = cli("study", "delete", made_study.name, "--yes")
    assert result.exit_code == 0, result.output
    for victim in victims:
        assert victim.read_text(encoding="utf-8") == "keep me"
