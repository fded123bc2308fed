"""What a user sees in optuna-dashboard: a real study (``explore study run``, checkpoints pruned to
the front), the real dashboard (``explore study dashboard``), and Chromium on its study page.

- every checkpoint card the dashboard lists downloads (HTTP 200) the bytes of the file in the
  artifact store, and no card is left for a removed checkpoint;
- the study page shows the objective names, the study note and the ``explore-front`` figure that
  a run publishes (``explore/run/board.py``).

``EXPLORE_SCREENSHOT=docs/dashboard.png`` also saves the study page as a PNG (the README's).
Needs playwright (the ``test`` extra) and Chromium at ``/usr/bin/chromium`` (Debian's
``chromium``; ``make install`` installs it where apt-get can, ``EXPLORE_CHROMIUM`` names another):
skipped without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browse_helpers import EXPLORE, clean_env, first_line

from tests.conftest import tiny_study_toml

CHROMIUM = Path(os.environ.get("EXPLORE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_ENV = "EXPLORE_SCREENSHOT"


def _missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set "
                "EXPLORE_CHROMIUM)")
    return None


pytestmark = [
    pytest.mark.slow,  # a 6-trial study, the dashboard and a browser: ~40 s on 2 cores
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]

CONFIG = tiny_study_toml('attention = ["external"]\nmem_size = [8, 16]\nheads = [1, 2, 4]',
                        study='warm_start = 0\nreplicates = 1\nsampler = "bruteforce"\nseed = 11',
                        train="epochs = 2")


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:PORT/
    study_id: int
    checkpoints: Path  # the artifact store's folder
    url: str  # the storage


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get_json(url: str) -> Any:
    status, body = _get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pytest.importorskip("optuna_dashboard")
    directory = tmp_path_factory.mktemp("board")
    (directory / "board.toml").write_text(CONFIG, encoding="utf-8")
    url = f"sqlite:///{directory / 'board.db'}"
    run = subprocess.run(
        [str(EXPLORE), "study", "run", "--name", "board", "--storage", url, "--config",
         "board.toml", "--trials", "6", "--keep-checkpoints", "pareto", "-q"],
        cwd=directory, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    proc = subprocess.Popen(
        [str(EXPLORE), "study", "dashboard", "--storage", url, "--port", "0"], cwd=directory,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        base = first_line(proc, timeout=60).removesuffix("dashboard/")
        summaries = _get_json(base + "api/studies")["study_summaries"]
        [study_id] = [s["study_id"] for s in summaries if s["study_name"] == "board"]
        yield Served(base, study_id, directory / "board-artifacts" / "checkpoints", url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_card_downloads_its_checkpoint(served: Served) -> None:
    """The dashboard lists exactly the checkpoints the store holds, each with its trial's
    ``trial-NNNN.pt`` name, and serves each one's bytes; pruned ones have no card."""
    detail = _get_json(served.base + f"api/studies/{served.study_id}")
    assert detail["objective_names"] == ["accuracy", "throughput"]
    trials = detail["trials"]
    assert len(trials) == 6
    named = {}  # artifact id -> the trial that names it (explore's own record)
    for t in trials:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        if "checkpoint_artifact" in attrs:
            named[attrs["checkpoint_artifact"]] = t["number"]
    kept = {p.name for p in served.checkpoints.iterdir()}
    assert kept and kept <= set(named)
    assert len(kept) < len(named)  # the run pruned checkpoints that left the front
    listed = {}
    for t in trials:
        for card in t["artifacts"]:
            assert card["filename"] == f"trial-{t['number']:04d}.pt"
            status, body = _get(served.base + f"artifacts/{served.study_id}/{t['trial_id']}/"
                                f"{card['artifact_id']}")
            assert status == 200, (t["number"], status, body[:300])
            assert body == (served.checkpoints / card["artifact_id"]).read_bytes()
            listed[card["artifact_id"]] = t["number"]
    assert listed == {i: named[i] for i in kept}  # a card for every file, none for the rest


def test_the_study_page_shows_names_note_and_figure(served: Served) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1200})
            page.goto(served.base + f"dashboard/studies/{served.study_id}",
                      wait_until="networkidle")
            # The objective names where the study page names objectives (the Pareto front's
            # axes, the history's y axis), not "Objective 0".
            for name in ("accuracy", "throughput"):
                expect(page.get_by_role("combobox").filter(has_text=name).first
                       ).to_be_visible(timeout=30_000)
            assert page.get_by_text("Objective 0").count() == 0
            # The front figure, drawn by plotly in the dashboard's user-defined plot slot.
            figure = page.locator('[id="user-defined-plot:explore-front"] .main-svg').first
            expect(figure).to_be_attached(timeout=30_000)
            expect(page.locator('[id="user-defined-plot:explore-front"]')).to_contain_text(
                "board: accuracy against throughput")
            # ... and the plausible front's hypervolume over the trials
            expect(page.locator('[id="user-defined-plot:explore-history"]')).to_contain_text(
                "hypervolume of the plausible front", timeout=30_000)
            shot = os.environ.get(SCREENSHOT_ENV)
            if shot:
                page.wait_for_timeout(1000)  # plotly's transitions end
                page.screenshot(path=shot, full_page=False)
                assert Path(shot).stat().st_size > 10_000
            # The note that board.py stores, on the study's Note page, from its Markdown.
            page.goto(served.base + f"dashboard/studies/{served.study_id}/note",
                      wait_until="networkidle")
            expect(page.get_by_role("heading", name="board: the plausible front", exact=False)
                   ).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Findings", exact=False).first).to_be_visible()
        finally:
            browser.close()
