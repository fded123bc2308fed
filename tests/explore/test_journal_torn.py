"""A journal file cut off mid-record (a crash or a full disk mid-write) is never destroyed by
continuing: browsing leaves it as it is; a run keeps a backup of the whole file, cuts it back to
its last complete record, says so, and continues; plain Optuna reads the result."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tests.conftest import run_explore, tiny_study_toml
from tests.stored import same_trials, trials_of

CONFIG = tiny_study_toml("mem_size = [8, 16, 32]", study="warm_start = 0\nreplicates = 1")


def _explore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_explore(tmp_path, *args, timeout=300)


def _optuna(path: Path) -> optuna.Study:
    return optuna.load_study(study_name="j",
                             storage=JournalStorage(JournalFileBackend(str(path))))


@pytest.mark.slow
def test_a_torn_journal_is_backed_up_cut_back_and_continued(tmp_path: Path) -> None:
    (tmp_path / "j.toml").write_text(CONFIG, encoding="utf-8")
    journal = tmp_path / "j.log"
    first = _explore(tmp_path, "study", "run", "--name", "j", "--storage", f"journal:{journal}",
                     "-c", "j.toml", "--trials", "2", "-q")
    assert first.returncode == 0, first.stderr
    whole = journal.read_bytes()
    torn = whole[:-40]  # the last record loses its end
    journal.write_bytes(torn)
    reading = tmp_path / "reading.log"  # read from a copy: the journal itself stays untouched
    reading.write_bytes(torn)
    finished = {k: t for k, t in trials_of(JournalStorage(JournalFileBackend(str(reading))))
                .items() if t[0].is_finished()}
    assert finished

    shown = _explore(tmp_path, "study", "show", "j", "--storage", f"journal:{journal}")
    assert shown.returncode == 0, shown.stderr
    assert journal.read_bytes() == torn  # browsing never writes

    again = _explore(tmp_path, "study", "run", "--name", "j", "--storage", f"journal:{journal}",
                     "-c", "j.toml", "--trials", "3", "-q")
    assert again.returncode == 0, again.stderr
    [backup] = tmp_path.glob("j.log.torn-*")
    assert backup.read_bytes() == torn  # the whole file, as it was found
    assert f"kept the whole file as {backup}" in again.stderr
    assert journal.read_bytes().startswith(torn[:torn.rfind(b"\n") + 1])
    same_trials(finished, trials_of(_optuna(journal)._storage))  # every finished trial kept
    study = _optuna(journal)  # plain Optuna reads every record
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3


def test_a_whole_journal_is_left_alone(tmp_path: Path) -> None:
    from studies.storage import repair_torn_journal

    journal = tmp_path / "ok.log"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 1}\n')
    lock = JournalFileBackend(str(journal))._lock
    assert repair_torn_journal(journal, lock) is None
    assert journal.read_bytes() == b'{"op_code": 0}\n{"op_code": 1}\n'
    journal.write_bytes(b'{"op_code": 0}\n{"op_co')
    backup = repair_torn_journal(journal, lock)
    assert backup is not None and backup.read_bytes() == b'{"op_code": 0}\n{"op_co'
    assert journal.read_bytes() == b'{"op_code": 0}\n'
    assert not list(tmp_path.glob("*.lock"))  # the journal's lock was released
