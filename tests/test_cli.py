"""The ``explore`` command line: output, exit codes and what other tools see of its studies.

The shared study is made by a real ``explore study run`` subprocess (see ``conftest.py``); the
other commands run in-process through Typer's CliRunner, with stdout and stderr kept apart.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

OPTUNA = Path(sys.executable).with_name("optuna")
TRIAL_LINE = re.compile(r"^\[(\d+)/(\d+)\] trial (\d+) (\w+) ")


def load(made: Any) -> optuna.Study:
    return optuna.load_study(study_name=made.name, storage=made.url)


def fingerprint(made: Any) -> dict[str, Any]:
    """Everything a run could change: the study as Optuna reads it, every table's rows, and
    the database file itself."""
    study = load(made)
    con = sqlite3.connect(made.db)
    try:
        dump = list(con.iterdump())
    finally:
        con.close()
    stat = made.db.stat()
    return {
        "study_attrs": study.user_attrs,
        "trials": [(t.number, t.state, t.params, t.values, t.user_attrs) for t in study.trials],
        "dump": dump,
        "sha256": hashlib.sha256(made.db.read_bytes()).hexdigest(),
        "mtime_ns": stat.st_mtime_ns,
    }


def is_duplicate(t: optuna.trial.FrozenTrial) -> bool:
    return t.user_attrs.get("duplicate_of") is not None


@pytest.mark.slow
def test_subprocess_run_prints_the_front_and_one_line_per_trial(made_study: Any) -> None:
    assert made_study.returncode == 0, made_study.stderr
    study = load(made_study)
    out = made_study.stdout
    assert "Pareto front of made" in out
    assert f"{made_study.trials}/{made_study.trials} trials finished" in out
    assert f"database: {made_study.db}" in out
    assert f"dashboard: explore study dashboard --storage {made_study.url}" in out
    assert "Traceback" not in made_study.stderr
    # Not a terminal: a start line, the warm start's line, then one plain line per finished
    # trial, in order.
    start, warm, *lines = made_study.stderr.splitlines()
    assert start == f"study made in {made_study.db}: 0/{made_study.trials} trials finished"
    assert warm.startswith("warm start: probed the throughput of 4 configurations in "), warm
    queued = [line for line in lines if line.startswith("racing: queued run ")]
    lines = [line for line in lines if line not in queued]  # racing (the default) says so
    later = [t for t in study.trials if t.user_attrs["replicate"] > 0]
    assert len(queued) >= len(later)
    for line, t in zip(lines, study.trials, strict=True):
        assert (f" run {t.user_attrs['replicate'] + 1} " in line) == (
            t.user_attrs["replicate"] > 0), line
    matches = [TRIAL_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m[3]) for m in matches if m] == [t.number for t in study.trials]
    assert all(m[4] == "COMPLETE" and m[2] == str(made_study.trials) for m in matches if m)
    counts = [int(m[1]) for m in matches if m]
    assert counts == sorted(counts) and counts[-1] == made_study.trials
    best = {t.number for t in study.best_trials}
    for line, t in zip(lines, study.trials, strict=True):
        if t.number in best:  # on the final front, so on the front when it finished
            assert "*front*" in line, line
        assert ("(same as trial" in line) == is_duplicate(t), line


@pytest.mark.slow
def test_rerunning_the_same_command_only_prints_the_front(
        made_study: Any, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(made_study.directory)
    before = fingerprint(made_study)
    result = cli(*made_study.args)
    assert result.exit_code == 0, result.output
    assert "Pareto front of made" in result.stdout
    assert f"{made_study.trials}/{made_study.trials} trials finished (0 this run" in result.stdout
    assert result.stderr == ""
    after = fingerprint(made_study)
    assert after["trials"] == before["trials"] and after["dump"] == before["dump"]


@pytest.mark.slow
def test_json_summary_has_the_front(
        made_study: Any, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(made_study.directory)
    result = cli("study", "run", "--name", "made", "-f", "json")  # stored settings, default db
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    study = load(made_study)
    assert summary["study"] == "made"
    assert summary["storage"] == made_study.url
    assert (summary["finished"], summary["target"], summary["new_trials"]) == (
        made_study.trials, made_study.trials, 0)
    assert summary["states"] == {"COMPLETE": len(study.trials)}
    best = {t.number: t for t in study.best_trials if not is_duplicate(t)}
    assert {row["number"] for row in summary["front"]} == set(best)
    for row in summary["front"]:
        t = best[row["number"]]
        assert row["values"] == {"accuracy": t.values[0], "throughput": t.values[1]}
        assert row["params"] == t.params
        assert row["params_count"] == t.user_attrs["params_count"]
    throughputs = [row["values"]["throughput"] for row in summary["front"]]
    assert throughputs == sorted(throughputs)


@pytest.mark.slow
@pytest.mark.parametrize(("option", "value", "setting", "stored", "asked"), [
    ("--epochs", "3", "train.epochs", "2", "3"),
    ("--sampler", "random", "study.sampler", "'tpe'", "'random'"),
    ("--seed", "4", "study.seed", "3", "4"),
], ids=["epochs", "sampler", "seed"])
def test_a_conflicting_setting_is_refused_and_changes_nothing(
        made_study: Any, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        option: str, value: str, setting: str, stored: str, asked: str) -> None:
    monkeypatch.chdir(made_study.directory)
    before = fingerprint(made_study)
    result = cli("study", "run", "--name", "made", option, value)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and f"has {stored}" in lines[0] and f"asks for {asked}" in lines[0]
    assert "Traceback" not in result.output
    assert fingerprint(made_study) == before


@pytest.mark.slow
def test_optuna_api_and_cli_read_the_study(made_study: Any) -> None:
    study = load(made_study)
    assert study.metric_names == ["accuracy", "throughput"]
    best = {t.number: t for t in study.best_trials}
    assert best
    proc = subprocess.run(
        [str(OPTUNA), "best-trials", "--study-name", made_study.name, "--storage",
         made_study.url, "-f", "json"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {row["number"] for row in rows} == set(best)
    for row in rows:
        t = best[row["number"]]
        assert row["values"] == {"accuracy": t.values[0], "throughput": t.values[1]}
        assert row["params"] == t.params
        assert row["state"] == "COMPLETE"


@pytest.mark.slow
def test_quiet_prints_only_the_summary(
        workdir: Path, cli: Callable[..., Any], tiny_config: Callable[..., Path]) -> None:
    tiny_config(workdir)
    result = cli("study", "run", "--name", "hush", "--config", "tiny.toml", "--epochs", "1",
                 "--trials", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "Pareto front of hush" in result.stdout
    assert "2/2 trials finished (" in result.stdout
    assert not re.search(r"^\[\d+/\d+\] trial", result.stdout, re.M)


def test_bad_input_exits_2_and_creates_nothing(workdir: Path, cli: Callable[..., Any]) -> None:
    for args in (("-f", "yaml"), ("--epochs", "0"), ("--sampler", "annealing"),
                 ("--name", "bad name")):
        result = cli("study", "run", "--trials", "1", *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith("error:"), (args, result.stderr)
        assert "Traceback" not in result.output
    assert list(workdir.iterdir()) == []
