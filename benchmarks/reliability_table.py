"""The reliability table of docs/reliability.md: every class of "nothing lost, every error names
its cause", with how many test cases cover it and how many pass.

Test ids are mapped to classes by the patterns below (``fnmatch`` on pytest node ids), so the
table follows the tests: a new case in ``tests/test_bad_input.py`` with a matching id counts at
once. ``--collect-only`` counts the cases without running them (pass column ``-``).

    python benchmarks/reliability_table.py               # run the mapped tests (~10 min, 2 cores)
    python benchmarks/reliability_table.py --collect-only
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BAD = "tests/test_bad_input.py::test_bad_input_is_one_line_and_changes_nothing"

# (category, class, node-id patterns)
CLASSES: list[tuple[str, str, tuple[str, ...]]] = [
    ("data loss", "copy shares checkpoints", (
        "tests/studies/test_transfer.py::test_a_copy_in_the_same_storage_never_loses_*",
        "tests/studies/test_transfer.py::test_pruning_a_continued_copy_keeps_*",
        "tests/studies/test_nothing_lost.py::*")),
    ("data loss", "torn journal", ("tests/explore/test_journal_torn.py::*",)),
    ("data loss", "disk full", ("tests/explore/test_disk_full.py::*",
                                "tests/studies/test_diskfull.py::*")),
    ("refuse before anything is stored", "non-finite/negative values", tuple(
        f"{BAD}[{i}]" for i in ("lr-nan", "space-inf", "state-interval-negative",
                                "trials-negative", "epochs-zero", "trials-zero",
                                "max-failures-zero", "warm-start-negative-names-the-option",
                                "mem-size-zero", "max-replicates-zero", "confidence-1.5"))),
    ("refuse before anything is stored", "memory estimate", (
        f"{BAD}[memory-estimate-*]", "tests/explore/test_memory.py::*")),
    ("refuse before anything is stored", "--timeout", (
        f"{BAD}[timeout-negative]", f"{BAD}[timeout-nan]")),
    ("refuse before anything is stored", "--workers bound", (f"{BAD}[workers-a-billion]",)),
    ("refuse before anything is stored", "whole config file validated", tuple(
        f"{BAD}[{i}]" for i in ("toml-syntax", "unknown-key", "unknown-section", "wrong-type",
                                "empty-space", "low-above-high", "heads-above-dim",
                                "patch-not-dividing", "bad-file-value-under-an-option",
                                "space-searches-how-not-what", "space-searches-state-interval")
    ) + ("tests/test_cli.py::test_a_conflicting_setting_is_refused_and_changes_nothing",
         "tests/test_cli.py::test_bad_input_exits_2_and_creates_nothing")),
    ("refuse before anything is stored", '--storage ""', (
        f"{BAD}[storage-empty]", f"{BAD}[list-storage-empty]")),
    ("refuse before anything is stored", "foreign SQLite database", (
        f"{BAD}[foreign-sqlite-*]", f"{BAD}[not-sqlite]", f"{BAD}[not-made-by-explore]",
        f"{BAD}[other-directions]")),
    ("refuse before anything is stored", "browsing never writes / foreign single-objective", (
        "tests/studies/test_foreign_study.py::*",)),
    ("one-line errors", "option vs file blame", (
        f"{BAD}[option-error-names-the-option]", f"{BAD}[bad-file-value-under-an-option]",
        f"{BAD}[warm-start-negative-names-the-option]", f"{BAD}[set-*]")),
    ("one-line errors", "config path dir/dev-zero/non-UTF-8", (
        f"{BAD}[config-is-a-directory]", f"{BAD}[config-dev-zero]", f"{BAD}[config-not-utf8]",
        f"{BAD}[no-config]")),
    ("one-line errors", "bare exception names", (
        "tests/explore/test_faults.py::test_an_exception_inside_a_trial_fails_only_that_trial",
        "tests/test_bad_input.py::test_debug_shows_the_traceback")),
    ("one-line errors", "--devices", (f"{BAD}[devices-without-cuda]",
                                      f"{BAD}[cuda-without-cuda]")),
    ("one-line errors", "mysql:// driver hint", (f"{BAD}[mysql-without-driver]",)),
    ("one-line errors", "corrupt checkpoint", (
        "tests/studies/test_models_export.py::test_a_damaged_checkpoint_*",
        "tests/studies/test_models_export.py::test_models_errors")),
    ("one-line errors", "Ctrl-C hint with --storage", (
        "tests/explore/test_resume.py::test_a_signal_stops_after_the_epoch_and_the_run_continues",
        "tests/explore/test_resume.py::test_a_second_sigint_*")),
    ("one-line errors", "typed option values", tuple(
        f"{BAD}[{i}]" for i in ("seed-abc", "trials-many", "timeout-soon", "unknown-option",
                                "unknown-command", "model-list-yaml", "show-csv",
                                "replicates-sometimes", "unknown-format", "keep-unknown")) + (
        "tests/test_bad_input.py::test_a_real_process_prints_one_line*",)),
]


def collect() -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], cwd=REPO, capture_output=True,
                          text=True)
    return [line.strip() for line in proc.stdout.splitlines() if "::" in line]


def _matches(node: str, pattern: str) -> bool:
    """``pattern`` matches the test, and its ``[…]`` part (when given) the parameter id."""
    base, _, param = pattern.partition("[")
    node_base, _, node_param = node.partition("[")
    if not fnmatch.fnmatchcase(node_base, base):
        return False
    return not param or fnmatch.fnmatchcase(node_param.rstrip("]"), param.rstrip("]"))


def matches(ids: list[str]) -> dict[str, list[str]]:
    return {name: sorted({i for i in ids if any(_matches(i, p) for p in patterns)})
            for _, name, patterns in CLASSES}


def run(ids: list[str]) -> set[str]:
    """Run ``ids``; the ids that passed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *ids], cwd=REPO, capture_output=True)
        passed = set()
        for case in ET.parse(report).getroot().iter("testcase"):
            if not any(child.tag in ("failure", "error", "skipped") for child in case):
                path = case.get("classname", "").replace(".", "/")
                passed.add(f"{path}.py::{case.get('name')}")
        return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect-only", action="store_true", help="count, do not run")
    args = parser.parse_args()
    found = matches(collect())
    everything = sorted({i for ids in found.values() for i in ids})
    passed = None if args.collect_only else run(everything)
    print("| category | class | cases | pass |")
    print("| --- | --- | --- | --- |")
    for category, name, _ in CLASSES:
        ids = found[name]
        ok = "-" if passed is None else str(sum(i in passed for i in ids))
        print(f"| {category} | {name} | {len(ids)} | {ok} |")
    total = "-" if passed is None else str(len(passed & set(everything)))
    print(f"| all | (distinct cases) | {len(everything)} | {total} |")


if __name__ == "__main__":
    main()
