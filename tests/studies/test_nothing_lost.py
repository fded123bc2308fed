"""Nothing a user stored is lost by ``study copy`` and ``study delete`` of the copy: every trial
of every study and every artifact file keep their bytes, compared before and after, and what a
copy brought keeps the source's bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from browse_helpers import EXPLORE, Studies, clean_env

from tests.stored import file_bytes, same_files, same_trials, trials_of


def _explore(studies: Studies, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXPLORE), *args], cwd=studies.directory, env=clean_env(),
                          capture_output=True, text=True, timeout=120)


def test_copy_and_deleting_the_copy_keep_every_trial_and_byte(studies_copy: Studies,
                                                             tmp_path: Path) -> None:
    url, artifacts = studies_copy.url, studies_copy.checkpoints.parent
    trials, files = trials_of(url), file_bytes(artifacts)
    assert trials and files

    # within one storage (the copy shares the checkpoint files), then into another database
    shared = _explore(studies_copy, "study", "copy", "easa", "--to-storage", url,
                      "--to-name", "easa2", "--storage", url)
    assert shared.returncode == 0, shared.stderr
    target = tmp_path / "other.db"
    other = _explore(studies_copy, "study", "copy", "grid", "--to-storage", str(target),
                     "--storage", url)
    assert other.returncode == 0, other.stderr
    same_trials(trials, trials_of(url))
    same_files(files, file_bytes(artifacts))
    copied = file_bytes(tmp_path / "other-artifacts")
    assert copied and all(files[name] == data for name, data in copied.items())

    gone = _explore(studies_copy, "study", "delete", "easa2", "--yes", "--storage", url)
    assert gone.returncode == 0, gone.stderr
    same_trials(trials, trials_of(url))  # the source's trials, untouched
    same_files(files, file_bytes(artifacts))  # the files the source still uses, byte for byte
