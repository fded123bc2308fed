"""A study explore did not make (one objective, other metric names): every browsing command
either works on it or says in one line what it is and what works on it; none writes to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from cli import app


def _tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="plain", storage=f"sqlite:///{tmp_path / 'p.db'}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    return tmp_path / "p.db"


@pytest.mark.parametrize("args, code, says", [
    (["report", "plain", "--out", "r.md"], 1, "not made by explore"),
    (["pareto", "plain"], 1, "not made by explore"),
    (["plot", "plain", "--out", "p.png"], 1, "only explore studies"),
    (["models", "plain", "--out", "m"], 1, "not created by explore"),
    (["history", "plain"], 0, None),
    (["show", "plain"], 0, None),
    (["pareto", "plain", "--observed"], 0, None),
    (["export", "plain", "--out", "e.csv"], 0, None),
    (["list"], 0, None),
])
def test_browsing_a_foreign_study_never_writes(plain: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               args: list[str], code: int,
                                               says: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    before = (_tables(plain), plain.read_bytes())
    result = CliRunner().invoke(app, ["study", *args, "--storage", f"sqlite:///{plain}"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if says is not None:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr
    assert (_tables(plain), plain.read_bytes()) == before
    assert not (tmp_path / "p-snapshots.db").exists()
