"""Browsing never pays the torch import: checked in a fresh interpreter running ``cli.app``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from browse_helpers import Studies, clean_env

SCRIPT = """
import json, sys
from cli import app
results = {}
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="explore")
    except SystemExit as exc:
        key = " ".join(args[:2] + [a for a in args if a == "--observed"])
        results[key] = [exc.code, "torch" in sys.modules]
sys.stderr.write("RESULT " + json.dumps(results) + "\\n")
"""


@pytest.mark.slow
def test_browsing_commands_do_not_import_torch(studies: Studies, tmp_path: Path) -> None:
    url = studies.url
    commands = [
        ["study", "list", "--storage", url],
        ["study", "pareto", "grid", "--storage", url, "-f", "json"],
        ["study", "pareto", "grid", "--observed", "--storage", url, "-f", "json"],
        ["study", "show", "grid", "--storage", url],
        ["study", "history", "grid", "--storage", url],
        ["study", "export", "grid", "--storage", url, "--out", str(tmp_path / "t.csv")],
        ["study", "plot", "grid", "--storage", url, "--out", str(tmp_path / "p.png")],
        ["study", "compare", "grid", "easa", "--storage", url],
        ["study", "copy", "easa", "--storage", url, "--to-storage", str(tmp_path / "c.db")],
        ["study", "delete", "easa", "--storage", str(tmp_path / "c.db"), "--yes"],
    ]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands)],
                          capture_output=True, text=True, env=clean_env(), timeout=120,
                          cwd=tmp_path)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("RESULT "))
    results = json.loads(line.removeprefix("RESULT "))
    assert len(results) == len(commands), proc.stderr
    for command, (code, torch_loaded) in results.items():
        assert code == 0, (command, proc.stderr)
        assert not torch_loaded, f"explore {command} imported torch"
