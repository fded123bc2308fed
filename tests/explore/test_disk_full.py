"""A full disk mid-run: one line naming where ("no space left on device at PATH", or "file too
large at PATH" over ``ulimit -f``), exit code 1, no trial left RUNNING, and everything stored
before byte-identical.

Two real mechanisms: a tiny tmpfs (needs root and ``mount``; skipped otherwise, saying why), and
the process's file size limit (``RLIMIT_FSIZE``, EFBIG), which works everywhere.

Where the artifact folder is full, the trial is marked FAIL with the line as its reason. Where
the study database itself is full, the run marks its trial FAIL if the database still takes that
write; if not, the trial stays RUNNING and the next run with room finds its process dead, fails
it and re-queues it (``recover_orphans``). Which one happens depends on which write meets the
full disk: the database test accepts both (the line says which) and checks the recovery; a
database filled while a trial trains always leaves it RUNNING. With ``--workers 2`` the command's
one line is the workers' own cause.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import EXPLORE, TINY_MEASURE, MadeStudy, clean_env, tiny_study_toml
from tests.stored import file_bytes, running, same_files, same_trials, trials_of

pytestmark = pytest.mark.slow

BIG = """\
[study]
warm_start = 0
replicates = 1

[model]
dim = 192  # a training state of ~5 MB: over the 1 MiB file size limit, unlike the database
depth = 2

[train]
epochs = 1

""" + TINY_MEASURE + """
[space]
mem_size = [8, 16]
"""


def _explore(cwd: Path, *args: str, env: dict[str, str] | None = None,
             preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXPLORE), *args], cwd=cwd, env={**clean_env(), **(env or {})},
                          capture_output=True, text=True, timeout=300, preexec_fn=preexec)


def _one_line(proc: subprocess.CompletedProcess[str], start: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {start}"), lines[0]
    return lines[0]


def _on_disk(size: int) -> int:
    return -(-size // 4096) * 4096


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``tiny_fs(bytes)``: a tmpfs of that size, unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: the tmpfs cases need one")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(point)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root needed): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(point)], check=False)  # still busy: detach


def _copy_made(made: MadeStudy, target: Path) -> Path:
    assert made.returncode == 0, made.stderr
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made.db, target / "explore.db")
    shutil.copyfile(made.directory / "tiny.toml", target / "tiny.toml")
    shutil.copytree(made.directory / "explore-artifacts", target / "explore-artifacts")
    return target


CONTINUE = ("study", "run", "--name", "made", "--config", "tiny.toml", "--trials", "6", "-q")
UNMARKED = " could not be marked failed: the next run with room re-queues it)"


def test_a_new_study_on_a_full_disk_leaves_nothing(tiny_fs: Callable[[int], Path],
                                                   tmp_path: Path) -> None:
    fs = tiny_fs(64 * 1024)
    (tmp_path / "tiny.toml").write_text("[model]\ndim = 16\ndepth = 1\n", encoding="utf-8")
    proc = _explore(tmp_path, "study", "run", "--name", "d", "--config", "tiny.toml",
                    "--trials", "1", "--storage", str(fs / "s.db"))
    _one_line(proc, f"no space left on device at {fs / 's.db'}")
    assert list(fs.iterdir()) == []  # the database it began is gone again


def test_full_artifacts_fail_the_trial_and_keep_everything(
        made_study: MadeStudy, tiny_fs: Callable[[int], Path], tmp_path: Path) -> None:
    work = _copy_made(made_study, tmp_path / "w")
    art = work / "explore-artifacts"
    used = sum(_on_disk(p.stat().st_size) for p in art.rglob("*") if p.is_file())
    fs = tiny_fs(used + 8192)  # what is stored, and not one more training state
    shutil.copytree(art, fs / "art")
    url = f"sqlite:///{work / 'explore.db'}"
    trials, files = trials_of(url), file_bytes(fs / "art")

    proc = _explore(work, *CONTINUE, env={"EXPLORE_ARTIFACTS": str(fs / "art")})
    line = _one_line(proc, f"no space left on device at {fs / 'art'}")
    assert not running(url)
    after = trials_of(url)
    same_trials(trials, after)
    [failed] = [t for key, t in after.items()
                if key not in trials and t[0] != TrialState.WAITING]
    assert failed[0] == TrialState.FAIL and failed[3]["fail_reason"] == line[len("error: "):]
    same_files(files, file_bytes(fs / "art"))


def _read_copy(db: Path, scratch: Path) -> Any:
    """``trials_of`` a copy: reading a WAL database needs room for its index, and there is
    none on the full disk."""
    scratch.mkdir(exist_ok=True)
    for end in ("", "-wal"):
        if Path(f"{db}{end}").exists():
            shutil.copyfile(f"{db}{end}", scratch / f"read.db{end}")
    try:
        return trials_of(f"sqlite:///{scratch / 'read.db'}")
    finally:
        for p in scratch.iterdir():
            p.unlink()


def test_a_full_study_database_is_named_and_the_next_run_recovers_the_trial(
        made_study: MadeStudy, tiny_fs: Callable[[int], Path], tmp_path: Path) -> None:
    work = _copy_made(made_study, tmp_path / "w")
    size = (work / "explore.db").stat().st_size
    fs = tiny_fs(_on_disk(size) + 96 * 1024)  # room to begin a trial, not to end it
    db = fs / "explore.db"
    shutil.copyfile(work / "explore.db", db)
    shutil.copyfile(work / "tiny.toml", fs / "tiny.toml")
    shutil.copytree(work / "explore-artifacts", fs / "explore-artifacts")
    url = f"sqlite:///{db}"
    trials, files = trials_of(f"sqlite:///{work / 'explore.db'}"), file_bytes(
        fs / "explore-artifacts")

    proc = _explore(fs, *CONTINUE)
    line = _one_line(proc, f"no space left on device at {db}")
    stored = _read_copy(db, tmp_path / "read")
    same_trials(trials, stored)
    same_files(files, file_bytes(fs / "explore-artifacts"))
    left = [key for key, t in stored.items() if t[0] == TrialState.RUNNING]
    # The line says so exactly when the trial's end could not be written.
    assert line.endswith(UNMARKED) == bool(left), line
    # The next run with room recovers what was left running, and finishes the budget.
    subprocess.run(["mount", "-o", f"remount,size={16 * 1024 * 1024}", str(fs)], check=True)
    _recovered(fs, url, left, trials)
    same_files(files, file_bytes(fs / "explore-artifacts"))


def _recovered(cwd: Path, url: str, left: list[tuple[str, int]],
               before: dict[tuple[str, int], tuple[Any, ...]]) -> None:
    """``explore study run`` again: it fails and re-queues the trials ``left`` running (their
    process is dead) and finishes the budget; nothing stored before changes."""
    again = _explore(cwd, *CONTINUE)
    assert again.returncode == 0, again.stderr
    assert not running(url)
    after = trials_of(url)
    for key in left:
        assert after[key][0] == TrialState.FAIL
        assert "died while running it; re-queued" in after[key][3]["fail_reason"]
        retry = [t for t in after.values() if t[3].get("retried_trial") == key[1]]
        assert [t[0] for t in retry] == [TrialState.COMPLETE]
    same_trials(before, after)
    study = optuna.load_study(study_name="made", storage=url)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 6


LONG = tiny_study_toml("mem_size = [8, 16]", study="warm_start = 0\nreplicates = 1",
                       train="epochs = 20\nstate_interval = 0.0  # history after every epoch")


def _history_written(db: Path) -> bool:
    """Whether a RUNNING trial has recorded an epoch (read with plain SQL: no writes)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        try:
            return con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a USING (trial_id) "
                "WHERE t.state = 'RUNNING' AND a.key = 'history'").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False  # the study's tables are still being made


def _fill(folder: Path) -> None:
    """Take every free block of ``folder``'s file system."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_study_database_filled_mid_trial_names_the_trial_left_for_the_next_run(
        tiny_fs: Callable[[int], Path], tmp_path: Path) -> None:
    """The disk under the database fills while a trial trains: no write reaches the database,
    so the trial stays RUNNING and the one line says the next run re-queues it, which it does
    once there is room."""
    fs = tiny_fs(16 * 1024 * 1024)
    (fs / "tiny.toml").write_text(LONG, encoding="utf-8")
    db = fs / "explore.db"
    url = f"sqlite:///{db}"
    env = {**clean_env(), "EXPLORE_ARTIFACTS": str(tmp_path / "art")}  # room for the states
    args = ("study", "run", "--name", "made", "--config", "tiny.toml", "--trials", "1", "-q")
    proc = subprocess.Popen([str(EXPLORE), *args], cwd=fs, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (db.exists() and _history_written(db)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch recorded in time"
            time.sleep(0.1)
        _fill(fs)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    line = _one_line(done, f"no space left on device at {db}")
    assert line.endswith("(trial 0" + UNMARKED), line
    (fs / "filler").unlink()
    left = [key for key, t in _read_copy(db, tmp_path / "read").items()
            if t[0] == TrialState.RUNNING]
    assert left == [("made", 0)]
    again = _explore(fs, *args, env={"EXPLORE_ARTIFACTS": str(tmp_path / "art")})
    assert again.returncode == 0, again.stderr
    after = trials_of(url)
    assert after[("made", 0)][0] == TrialState.FAIL
    assert "died while running it; re-queued" in after[("made", 0)][3]["fail_reason"]
    assert [t[0] for t in after.values() if t[3].get("retried_trial") == 0] == [
        TrialState.COMPLETE]
    assert not running(url)


def _limit_files_to_1_mib() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))


def test_over_the_file_size_limit_says_file_too_large(tmp_path: Path) -> None:
    (tmp_path / "big.toml").write_text(BIG, encoding="utf-8")
    first = _explore(tmp_path, "study", "run", "--name", "b", "-c", "big.toml", "--trials", "1",
                     "-q")
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path / 'explore.db'}"
    art = tmp_path / "explore-artifacts"
    trials, files = trials_of(url), file_bytes(art)
    assert any(len(b) > 1 << 20 for b in files.values())  # stored before: read, not written

    proc = _explore(tmp_path, "study", "run", "--name", "b", "-c", "big.toml", "--trials", "3",
                    "-q", preexec=_limit_files_to_1_mib)
    line = _one_line(proc, f"file too large at {art}")
    assert "ulimit -f" in line
    assert not running(url)
    after = trials_of(url)
    same_trials(trials, after)
    assert [t[3]["fail_reason"] for k, t in after.items() if k not in trials
            and t[0] != TrialState.WAITING] == [line[len("error: "):]]
    same_files(files, file_bytes(art))
    study = optuna.load_study(study_name="b", storage=url)  # plain Optuna still reads it
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]


@pytest.mark.parametrize("limit", ["tmpfs", "ulimit"])
def test_a_worker_on_a_full_disk_is_named_by_the_parent(
        limit: str, tiny_fs: Callable[[int], Path], tmp_path: Path) -> None:
    """``--workers 2``: the workers' training states meet a full disk (a 1 MiB tmpfs) or the
    file size limit; the command's one line is the workers' own cause, not their exit codes."""
    (tmp_path / "big.toml").write_text(BIG, encoding="utf-8")
    env, preexec, start = {}, None, "file too large at "
    if limit == "tmpfs":
        art = tiny_fs(1 << 20) / "art"
        env, start = {"EXPLORE_ARTIFACTS": str(art)}, f"no space left on device at {art}"
    else:
        art, preexec = tmp_path / "explore-artifacts", _limit_files_to_1_mib
        start += str(art)
    proc = _explore(tmp_path, "study", "run", "--name", "w", "-c", "big.toml", "--trials", "2",
                    "--workers", "2", "-q", env=env, preexec=preexec)
    line = _one_line(proc, start)
    assert "exit codes" not in line
    url = f"sqlite:///{tmp_path / 'explore.db'}"
    assert not running(url)
    failed = [t for t in trials_of(url).values()
              if t[0] == TrialState.FAIL and "fail_reason" in t[3]]
    assert failed and all(t[3]["fail_reason"].split(":")[0] in line for t in failed)


def test_a_checkpoint_write_names_its_file(tiny_fs: Callable[[int], Path]) -> None:
    import torch

    from extattn.checkpoint import atomic_torch_save

    fs = tiny_fs(16 * 1024)
    with pytest.raises(OSError) as caught:
        atomic_torch_save({"x": torch.zeros(100_000)}, fs / "c.pt")
    assert caught.value.errno == 28 and caught.value.filename == str(fs / "c.pt")
    assert list(fs.iterdir()) == []  # no temp file left
