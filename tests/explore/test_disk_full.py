"""A full disk mid-run: one line naming where ("no space left on device at PATH", or "file too
large at PATH" over ``ulimit -f``), exit code 1, no trial left RUNNING, and everything stored
before byte-identical.

Two real mechanisms: a tiny tmpfs (needs root and ``mount``; skipped otherwise, saying why), and
the process's file size limit (``RLIMIT_FSIZE``, EFBIG), which works everywhere.

Where the artifact folder is full, the trial is marked FAIL with the line as its reason. Where
the study database itself is full, the run marks its trial FAIL if the database still takes that
write; if not, the trial stays RUNNING and the next run with room finds its process dead, fails
it and re-queues it (``recover_orphans``). Which one happens depends on which write meets the
full disk: the database test accepts both and checks the recovery when it is needed.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import EXPLORE, TINY_MEASURE, MadeStudy, clean_env
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
    _one_line(proc, f"no space left on device at {db}")
    stored = _read_copy(db, tmp_path / "read")
    same_trials(trials, stored)
    same_files(files, file_bytes(fs / "explore-artifacts"))
    left = [key for key, t in stored.items() if t[0] == TrialState.RUNNING]
    if left:  # the trial's end could not be written: the next run with room recovers it
        subprocess.run(["mount", "-o", f"remount,size={16 * 1024 * 1024}", str(fs)], check=True)
        again = _explore(fs, *CONTINUE)
        assert again.returncode == 0, again.stderr
        assert not running(url)
        after = trials_of(url)
        for key in left:
            assert after[key][0] == TrialState.FAIL
            assert "died while running it; re-queued" in after[key][3]["fail_reason"]
        same_trials(trials, after)
        same_files(files, file_bytes(fs / "explore-artifacts"))


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


def test_a_checkpoint_write_names_its_file(tiny_fs: Callable[[int], Path]) -> None:
    import torch

    from extattn.checkpoint import atomic_torch_save

    fs = tiny_fs(16 * 1024)
    with pytest.raises(OSError) as caught:
        atomic_torch_save({"x": torch.zeros(100_000)}, fs / "c.pt")
    assert caught.value.errno == 28 and caught.value.filename == str(fs / "c.pt")
    assert list(fs.iterdir()) == []  # no temp file left
