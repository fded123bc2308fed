"""The allocator policy: large tensors reuse freed memory instead of page-faulting fresh pages.

Each check runs in a fresh interpreter, because the policy is process-wide and applies once.
Page faults (``getrusage``'s minor faults) are counted, not timed: a fresh ``mmap`` of 64 MiB
faults ~16k pages every time it is touched; reused heap memory faults none.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocator policy changes glibc's malloc only")

FAULTS = """
import json, resource, sys
import torch
from explore.engine import allocator
policy = allocator.configure(sys.argv[1])
for _ in range(10):  # 64 MiB, then freed: the heap settles within the first few (8 here)
    x = torch.ones(16 * 2**20)
    del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = torch.ones(16 * 2**20)
    del x
print(json.dumps({"policy": policy,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(policy: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", FAULTS, policy], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True)
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@glibc_only
def test_heap_policy_reuses_freed_large_tensors_and_system_does_not() -> None:
    heap, system = _faults("heap"), _faults("system")
    assert heap["policy"] == "heap" and system["policy"] == "system"
    pages = 10 * 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert int(system["faults"]) >= pages // 2, system  # a fresh mmap per tensor
    assert int(heap["faults"]) < pages // 20, heap  # the same heap memory, again and again


def test_an_unknown_policy_is_refused() -> None:
    code = "from explore.engine import allocator; allocator.configure('jemalloc')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode != 0
    assert "EXPLORE_ALLOCATOR='jemalloc' is not one of heap, system" in proc.stderr


def test_a_bad_environment_value_is_one_line_and_creates_no_study(tmp_path: Path) -> None:
    env = {**os.environ, "EXPLORE_ALLOCATOR": "tcmalloc"}
    env.pop("EXPLORE_STORAGE", None)
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "study", "run", "--trials", "1"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode in (1, 2)
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "EXPLORE_ALLOCATOR='tcmalloc'" in proc.stderr and "heap or system" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # no database, no artifacts


@glibc_only
@pytest.mark.slow
def test_trials_record_the_policy_they_ran_under(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(
        '[study]\ntrials = 1\n[train]\nepochs = 1\n[measure]\nmin_time = 0.05\nmin_iters = 2\n'
        'warmup = 1\n[space]\nmem_size = [8]\nheads = [1]\nnorm = ["softmax"]\n')
    env = {k: v for k, v in os.environ.items() if k not in ("EXPLORE_STORAGE", "EXPLORE_ALLOCATOR")}
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "study", "run", "--name", "a",
                           "--config", "tiny.toml", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "explore.db") as db:
        [(value,)] = db.execute("SELECT value_json FROM trial_user_attributes "
                                "WHERE key = 'versions'").fetchall()
    assert json.loads(value)["allocator"] == "heap"
