"""The browsing commands through the CLI: formats parsed back and checked against Optuna,
exit codes, and one-line errors. The real studies come from ``tests/studies/browse_helpers.py``
(built once per session, shared with the ``tests/studies`` tests)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).with_name("studies")))
from browse_helpers import Studies, copy_studies, load, make_studies  # noqa: E402

from cli import app  # noqa: E402

Run = Callable[..., Any]
pytestmark = pytest.mark.slow  # the real studies take 15-40 s to make, once per session


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    return make_studies(tmp_path_factory.getbasetemp())


@pytest.fixture
def run() -> Run:
    """``run("study", "list", …)`` in-process; ``input`` answers prompts."""
    runner = CliRunner()

    def invoke(*args: Any, input: str | None = None) -> Any:
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return str(result.stdout)


def one_line_error(result: Any, code: int, match: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_list_in_every_format(run: Run, studies: Studies) -> None:
    rows = json.loads(ok(run("study", "list", "--storage", studies.url, "-f", "json")))
    assert [r["name"] for r in rows] == ["easa", "grid"]
    for row in rows:
        study = load(studies, row["name"])
        assert row["trials"] == len(study.trials)
        assert row["front_size"] == len(study.best_trials)
        assert row["best_accuracy"] == max(t.values[0] for t in study.trials)
    table = list(csv.DictReader(io.StringIO(ok(run("study", "list", "--storage", studies.url,
                                                    "-f", "csv")))))
    assert [r["name"] for r in table] == ["easa", "grid"]
    assert [int(r["front_size"]) for r in table] == [r["front_size"] for r in rows]
    text = ok(run("study", "list", "--storage", studies.url))
    assert "grid" in text and "easa" in text and "best accuracy" in text


@pytest.mark.parametrize("name", ["grid", "easa"])
def test_pareto_json_is_best_trials_in_optuna_cli_form(run: Run, studies: Studies,
                                                       name: str) -> None:
    records = json.loads(ok(run("study", "pareto", name, "--observed", "--storage",
                                studies.url, "-f", "json")))
    best = load(studies, name).best_trials
    assert [r["number"] for r in records] == [t.number for t in best]
    for r, t in zip(records, best, strict=True):
        assert r["values"] == {"accuracy": t.values[0], "throughput": t.values[1]}
        assert r["params"] == t.params and r["user_attrs"] == t.user_attrs
        assert r["state"] == "COMPLETE" and "pareto" not in r


def test_pareto_all_csv_and_table(run: Run, studies: Studies) -> None:
    out = ok(run("study", "pareto", "grid", "--observed", "--all", "--storage", studies.url,
                 "-f", "csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    study = load(studies, "grid")
    best = {t.number for t in study.best_trials}
    assert len(rows) == len(study.trials)
    assert {int(r["number"]) for r in rows if r["pareto"] == "true"} == best
    assert {float(r["values.accuracy"]) for r in rows} == {t.values[0] for t in study.trials}
    table = ok(run("study", "pareto", "grid", "--observed", "--all", "--storage", studies.url))
    assert "pareto" in table and table.count("*") == len(best)
    assert "observed front" in table


def test_pareto_is_over_configurations_with_intervals(run: Run, studies: Studies) -> None:
    """The default front is the noise-aware one: one row per configuration, its replicates
    pooled, P(front) and the status; the same figures studies.replicates computes."""
    from explore.search.racing import record_of
    from studies.replicates import study_front

    study = load(studies, "grid")
    expected = study_front([record_of(t) for t in study.trials],
                           study.user_attrs["explore_settings"])
    every = json.loads(ok(run("study", "pareto", "grid", "--all", "--storage", studies.url,
                              "-f", "json")))
    assert sorted(r["configuration"] for r in every) == sorted(c.key for c in expected.configs)
    for r in every:
        assert r["status"] == expected.status(r["configuration"])
        assert r["probability_pareto"] == round(
            expected.front.probability[r["configuration"]], 4)
        assert r["replicates"] == len(r["trials"]) >= 1
    plausible = json.loads(ok(run("study", "pareto", "grid", "--storage", studies.url, "-f",
                                  "json")))
    assert {r["configuration"] for r in plausible} == set(expected.front.plausible)
    assert all(r["status"] == ("plausible" if r["probability_pareto"] >= 0.5 else
                               "most probable") for r in plausible)
    rows = list(csv.DictReader(io.StringIO(ok(run(
        "study", "pareto", "grid", "--all", "--storage", studies.url, "-f", "csv")))))
    assert len(rows) == len(every) and "accuracy.low" in rows[0] and "status" in rows[0]
    table = ok(run("study", "pareto", "grid", "--storage", studies.url))
    assert "plausible configurations" in table and "P(front)" in table
    assert "configuration" in table.splitlines()[-1]  # the honest line


def test_pareto_of_a_study_explore_did_not_make_points_to_observed(
        run: Run, tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'plain.db'}"
    plain = optuna.create_study(study_name="plain", storage=url)
    plain.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    one_line_error(run("study", "pareto", "plain", "--storage", url), 1,
                   "not made by explore")
    observed = ok(run("study", "pareto", "plain", "--observed", "--storage", url))
    assert "Observed Pareto front of plain" in observed and "value" in observed


def test_show_table_and_json(run: Run, studies: Studies) -> None:
    data = json.loads(ok(run("study", "show", "easa", "--storage", studies.url, "-f", "json")))
    study = load(studies, "easa")
    assert data["user_attrs"]["explore_settings"] == study.user_attrs["explore_settings"]
    assert data["states"] == {"COMPLETE": 4}
    assert [t["number"] for t in data["front"]] == [t.number for t in study.best_trials]
    assert set(data["noise_aware_front"]["noise"]) >= {"accuracy_sd", "df", "known"}
    text = ok(run("study", "show", "easa", "--storage", studies.url))
    assert "Pareto front" in text and "plausible" in text and "Stored settings" not in text
    assert "--settings" in text.splitlines()[-1]
    text = ok(run("study", "show", "easa", "--settings", "--storage", studies.url))
    assert "Stored settings" in text and "space.attention" in text
    assert text.index("Pareto front") < text.index("Stored settings")  # the answer first
    one_line_error(run("study", "show", "easa", "--storage", studies.url, "-f", "csv"), 2,
                   "'csv' is not one of")


def test_history_json_and_plot(run: Run, studies: Studies, tmp_path: Path) -> None:
    result = run("study", "history", "grid", "--storage", studies.url, "-f", "json", "--plot",
                 tmp_path / "hv.png")
    snaps = json.loads(ok(result))
    assert snaps and snaps[-1]["front_size"] == len(load(studies, "grid").best_trials)
    assert (tmp_path / "hv.png").read_bytes()[:4] == b"\x89PNG"
    assert f"plot: {tmp_path / 'hv.png'}" in result.stderr


def test_export_round_trip(run: Run, studies: Studies, tmp_path: Path) -> None:
    from studies.export import load_export

    for suffix in ("json", "csv"):
        result = run("study", "export", "grid", "--storage", studies.url, "--out",
                     tmp_path / f"t.{suffix}")
        assert ok(result) == "" and "wrote 8 trials" in result.stderr
    assert load_export(tmp_path / "t.csv") == load_export(tmp_path / "t.json")


def test_plot_and_compare(run: Run, studies: Studies, tmp_path: Path) -> None:
    ok(run("study", "plot", "easa", "--storage", studies.url, "--out", tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    result = run("study", "compare", "grid", "easa", "--storage", studies.url, "-f", "json",
                 "--out", tmp_path / "c.png")
    rows = json.loads(ok(result))
    assert [r["study"] for r in rows] == ["grid", "easa"]
    assert all(0 < r["hypervolume"] <= 1 for r in rows)
    assert len({r["throughput_scale"] for r in rows}) == 1
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    one_line_error(run("study", "plot", "easa", "--storage", studies.url, "--out",
                       tmp_path / "p.gif"), 2, ".png or .html")


def test_compare_notes_fronts_timed_as_cuda_graphs_and_eagerly(run: Run, studies: Studies,
                                                                tmp_path: Path) -> None:
    import sqlite3

    mine = copy_studies(studies, tmp_path / "mine")
    result = run("study", "compare", "grid", "easa", "--storage", mine.url, "-f", "json")
    assert "CUDA graph" not in result.stderr  # all eager (CPU): nothing to say
    front = load(mine, "easa").best_trials[0]
    # As if that trial had been measured on a GPU with [measure] cuda_graph (Optuna cannot
    # edit a finished trial's attrs, so the stored JSON is changed in place).
    with sqlite3.connect(mine.db) as con:
        (value,) = con.execute("SELECT value_json FROM trial_user_attributes WHERE trial_id = ? "
                               "AND key = 'throughput'", (front._trial_id,)).fetchone()
        con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND "
                    "key = 'throughput'", (json.dumps({**json.loads(value), "graph": True}),
                                           front._trial_id))
    result = run("study", "compare", "grid", "easa", "--storage", mine.url, "-f", "json")
    json.loads(ok(result))
    assert "timed both as CUDA graph replays and as eager forwards" in result.stderr
    ok(run("study", "report", "easa", "--storage", mine.url, "--out", tmp_path / "r.md"))
    assert "threads, CUDA graph replays)" in (tmp_path / "r.md").read_text()


def test_report(run: Run, studies: Studies, tmp_path: Path) -> None:
    result = run("study", "report", "grid", "--storage", studies.url, "--out",
                 tmp_path / "r.md")
    ok(result)
    assert "## Findings" in (tmp_path / "r.md").read_text()


def test_delete_asks_and_copy(run: Run, studies: Studies, tmp_path: Path) -> None:
    mine = copy_studies(studies, tmp_path / "mine")
    refused = run("study", "delete", "easa", "--storage", mine.url, input="n\n")
    assert refused.exit_code == 1 and "not deleted" in refused.stderr
    assert "Delete study 'easa'" in refused.stderr and "with 4 trials" in refused.stderr
    no_answer = run("study", "delete", "easa", "--storage", mine.url)  # end of input
    assert no_answer.exit_code == 1 and no_answer.stderr.strip().endswith("not deleted")
    assert "easa" in [s.study_name for s in optuna.get_all_study_summaries(mine.url)]
    result = run("study", "copy", "easa", "--storage", mine.url, "--to-storage",
                 tmp_path / "c.db", "--to-name", "kept")
    assert "copied easa to kept" in result.stderr and result.exit_code == 0
    result = run("study", "delete", "easa", "--storage", mine.url, input="y\n")
    assert result.exit_code == 0 and "deleted easa" in result.stderr
    assert [s.study_name for s in optuna.get_all_study_summaries(mine.url)] == ["grid"]
    ok(run("study", "delete", "kept", "--storage", tmp_path / "c.db", "--yes"))
    assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'c.db'}") == []


@pytest.mark.slow
def test_models(run: Run, studies: Studies, tmp_path: Path) -> None:
    index = json.loads(ok(run("study", "models", "easa", "--storage", studies.url, "--out",
                              tmp_path / "m", "-f", "json", "--observed")))
    assert [m["trial"] for m in index["models"]] == [t.number for t in
                                                     load(studies, "easa").best_trials]
    assert all((tmp_path / "m" / m["file"]).is_file() for m in index["models"])
    assert json.loads((tmp_path / "m" / "index.json").read_text()) == index
    plausible = json.loads(ok(run("study", "pareto", "easa", "--storage", studies.url, "-f",
                                  "json")))
    index = json.loads(ok(run("study", "models", "easa", "--storage", studies.url, "--out",
                              tmp_path / "p", "-f", "json")))
    assert sorted(m["configuration"] for m in index["models"]) == sorted(
        r["configuration"] for r in plausible)
    text = ok(run("study", "models", "easa", "--storage", studies.url, "--out", tmp_path / "t"))
    assert "run(s)" in text and "%" in text


@pytest.mark.parametrize("command", [
    ["show", "nope"], ["pareto", "nope"], ["history", "nope"], ["export", "nope", "--out",
                                                                "x.csv"],
    ["plot", "nope", "--out", "x.png"], ["compare", "grid", "nope"],
    ["report", "nope", "--out", "x.md"], ["delete", "nope", "--yes"], ["delete", "nope"],
    ["copy", "nope", "--to-storage", "c.db"], ["models", "nope", "--out", "m"],
])
def test_unknown_study_is_one_line_and_exit_1(run: Run, studies: Studies, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("study", *command, "--storage", studies.url)
    one_line_error(result, 1, "no study named 'nope'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["list"], ["show", "x"], ["pareto", "x"],
                                     ["history", "x"], ["dashboard"]])
def test_missing_database_is_not_created(run: Run, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("study", *command)  # the default storage: explore.db here
    one_line_error(result, 1, "no study database")
    assert list(tmp_path.iterdir()) == []


def test_bad_format_is_a_usage_error(run: Run, studies: Studies) -> None:
    one_line_error(run("study", "list", "--storage", studies.url, "-f", "yaml"), 2,
                   "'yaml' is not one of")
