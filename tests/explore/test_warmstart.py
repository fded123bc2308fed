"""Warm start: a new study probes every configuration's throughput and trains the fastest first.

Real ``explore study run`` subprocesses on real SQLite files; the probe's record and the trials
are read back with Optuna.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from explore.run.opening import RunRequest, open_study
from explore.run.recovery import WorkerIdentity
from explore.search.warmstart import (
    ATTR_ANCHOR,
    ATTR_WARM,
    WAIT_LIMIT_S,
    lapsed,
    pending,
    prober,
    release,
    take_turn,
)
from tests.conftest import EXPLORE, clean_env, write_tiny_config

SPACE = "mem_size = [8, 16, 32]\nheads = [1, 2]"  # 6 configurations


def run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXPLORE), "study", "run", "--name", "w", "--config", "tiny.toml",
                           "--epochs", "1", "--keep-checkpoints", "none", "-q", *args],
                          cwd=directory, env=clean_env(), capture_output=True, text=True,
                          timeout=300)


def load(directory: Path) -> optuna.Study:
    return optuna.load_study(study_name="w", storage=f"sqlite:///{directory / 'explore.db'}")


def ranked(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Warm-start rank → the params of the trial that carried it."""
    return {t.user_attrs[ATTR_ANCHOR]: t.params for t in study.trials
            if ATTR_ANCHOR in t.user_attrs}


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("warm")
    write_tiny_config(directory, space=SPACE)
    proc = run(directory, "--trials", "3", "--warm-start", "2", "--sampler", "random")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return directory


def test_the_fastest_probed_configurations_train_first(warm: Path) -> None:
    study = load(warm)
    record = study.user_attrs[ATTR_WARM]
    assert record["state"] == "done"
    assert record["probed"] == 6  # every configuration of the finite space, once
    probes = record["probes"]
    assert len(probes) == 6
    assert sorted((p["params"]["mem_size"], p["params"]["heads"]) for p in probes) == [
        (s, h) for s in (8, 16, 32) for h in (1, 2)]
    rates = [p["img_s"] for p in probes]
    assert rates == sorted(rates, reverse=True) and all(r > 0 for r in rates)
    assert [a["params"] for a in record["anchors"]] == [p["params"] for p in probes[:2]]
    # The first two trials are the anchors, in rank order; the third is the sampler's.
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.user_attrs.get(ATTR_ANCHOR) for t in trials] == [1, 2, None]
    assert ranked(study) == {1: probes[0]["params"], 2: probes[1]["params"]}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_continuing_does_not_probe_again(warm: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(warm, tmp_path / "c")
    directory = tmp_path / "c"
    before = load(directory).user_attrs[ATTR_WARM]
    proc = run(directory, "--trials", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(directory)
    assert study.user_attrs[ATTR_WARM] == before
    assert len(study.trials) == 4
    assert study.trials[3].user_attrs.get(ATTR_ANCHOR) is None


def test_a_probe_cut_short_and_run_again_enqueues_nothing_twice(warm: Path,
                                                                   tmp_path: Path) -> None:
    import shutil

    shutil.copytree(warm, tmp_path / "p")
    directory = tmp_path / "p"
    study = load(directory)
    study.set_user_attr(ATTR_WARM, {"state": "pending"})  # as if killed before it finished
    proc = run(directory, "--trials", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(directory)
    assert study.user_attrs[ATTR_WARM]["state"] == "done"
    # each experiment once (racing, the default, adds replicates of the same params)
    keys = [json.dumps([t.params, t.user_attrs.get("replicate", 0)], sort_keys=True)
            for t in study.trials]
    assert len(keys) == len(set(keys)) == 4  # the anchors were trained already: not again


def test_a_probe_run_again_enqueues_no_more_than_the_budget_has_left(warm: Path,
                                                                     tmp_path: Path) -> None:
    """Anchors beyond the remaining budget would stay WAITING for ever (the run stops first)."""
    import shutil

    shutil.copytree(warm, tmp_path / "p")
    directory = tmp_path / "p"
    study = load(directory)
    study.set_user_attr(ATTR_WARM, {"state": "pending"})
    proc = run(directory, "--trials", "4", "--warm-start", "6")  # 3 finished: one slot left
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(directory)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.WAITING) == 0, states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    record = study.user_attrs[ATTR_WARM]
    assert len(record["anchors"]) == 1  # the fastest configuration not yet trained
    trained_before = {json.dumps(t.params, sort_keys=True) for t in load(warm).trials}
    assert json.dumps(record["anchors"][0]["params"], sort_keys=True) not in trained_before


def test_the_screen_narrows_the_field_before_the_full_probe(tmp_path: Path) -> None:
    """Every model is screened at a quarter of the batch; the 3 × warm_start leading ones are
    probed again at the trial's batch, and the anchor is the fastest of those."""
    write_tiny_config(tmp_path, space=SPACE)
    proc = run(tmp_path, "--trials", "1", "--warm-start", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = load(tmp_path).user_attrs[ATTR_WARM]
    assert record["probed"] == 6
    assert (record["batch_size"], record["screen_batch_size"]) == (64, 16)  # tiny.toml: 64
    probes, screened = record["probes"], record["screened"]
    assert len(probes) == 3 and len(screened) == 3
    params = [json.dumps(p["params"], sort_keys=True) for p in probes + screened]
    assert len(set(params)) == 6
    for group in (probes, screened):
        rates = [p["img_s"] for p in group]
        assert rates == sorted(rates, reverse=True) and all(r > 0 for r in rates)
    assert record["anchors"] == [probes[0]]


def test_off_and_grid_samplers_do_not_probe(tmp_path: Path) -> None:
    for sub, extra in (("off", ("--warm-start", "0")), ("grid", ("--sampler", "grid"))):
        directory = tmp_path / sub
        directory.mkdir()
        write_tiny_config(directory, space=SPACE)
        proc = run(directory, "--trials", "1", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        study = load(directory)
        assert ATTR_WARM not in study.user_attrs
        assert not ranked(study)


def test_a_continuous_space_probes_each_model_once(tmp_path: Path) -> None:
    write_tiny_config(tmp_path, space="heads = [1, 2]\nlr = {low = 0.001, high = 0.01, log = true}")
    proc = run(tmp_path, "--trials", "1", "--warm-start", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = load(tmp_path).user_attrs[ATTR_WARM]
    # 64 random points of (heads, lr): only two models; lr does not change the throughput.
    assert record["probed"] == 2
    assert {p["params"]["heads"] for p in record["probes"]} == {1, 2}
    [anchor] = record["anchors"]
    assert ranked(load(tmp_path)) == {1: anchor["params"]}


def test_an_impossible_warm_start_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    write_tiny_config(tmp_path, space=SPACE)
    proc = run(tmp_path, "--trials", "1", "--warm-start", "65")
    assert proc.returncode in (1, 2)
    assert "warm_start must be between 0 and 64" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "explore.db").exists()


def test_study_show_summarizes_the_probe(warm: Path) -> None:
    proc = subprocess.run([str(EXPLORE), "study", "show", "w"], cwd=warm, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = load(warm).user_attrs[ATTR_WARM]
    first = " ".join(f"{k}={v}" for k, v in record["anchors"][0]["params"].items())
    line = next(x for x in proc.stdout.splitlines() if x.startswith("warm start:"))
    assert line.startswith("warm start: probed 6 configurations in "), line
    assert f"trained first: {first}; " in line
    assert "explore_warm_start" not in proc.stdout  # summarized, not dumped


# ---- one probe, however many workers start ----


# 15 configurations, measured at a batch of 2048: a probe of a few seconds, long enough for
# workers started together to find it under way (each of them probed, before claims).
WIDE = "mem_size = [8, 16, 32, 64, 128]\nheads = [1, 2, 4]"


def create(directory: Path, trials: int) -> str:
    """A new study as ``explore study run`` creates it (its warm start pending); nothing run."""
    url = f"sqlite:///{directory / 'explore.db'}"
    write_tiny_config(directory, space=WIDE)
    open_study(RunRequest(name="w", storage=url, config_file=directory / "tiny.toml",
                          device="cpu", explicit={
                              "study": {"trials": trials, "warm_start": 2, "sampler": "random"},
                              "measure": {"batch_size": 2048}, "train": {"epochs": 1}}))
    return url


def worker(directory: Path, url: str) -> subprocess.Popen[str]:
    """``explore study worker`` as a user starts one per machine: each is worker 0 of its own."""
    return subprocess.Popen([str(EXPLORE), "study", "worker", "--name", "w", "--storage", url,
                             "--device", "cpu", "--keep-checkpoints", "none"],
                            cwd=directory, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_workers_that_start_together_probe_once(tmp_path: Path) -> None:
    """Three worker commands join a new study at once: one probes, the others wait for its
    anchors; nothing is probed twice and no anchor is queued twice."""
    url = create(tmp_path, trials=4)
    procs = [worker(tmp_path, url) for _ in range(3)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    probed = [p.pid for p, err in zip(procs, errs, strict=True)
              if "warm start: probed the throughput of 15 configurations" in err]
    assert len(probed) == 1, errs
    study = load(tmp_path)
    record = study.user_attrs[ATTR_WARM]
    assert record["state"] == "done"
    assert record["by"] == {"host": socket.gethostname(), "pid": probed[0]}
    assert [t.user_attrs.get(ATTR_ANCHOR) for t in study.trials].count(1) == 1
    assert ranked(study) == {1: record["anchors"][0]["params"],
                             2: record["anchors"][1]["params"]}
    # each experiment once (racing, the default, adds replicates of the same params)
    keys = [json.dumps([t.params, t.user_attrs.get("replicate", 0)], sort_keys=True)
            for t in study.trials]
    assert len(keys) == len(set(keys)) == 4, keys  # no anchor left WAITING past the budget
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    for err in errs:  # a worker that found the probe under way said whose it waited for
        if "warm start: waiting" in err:
            assert f"warm start: waiting for the throughput probe of worker " \
                   f"{socket.gethostname()}:{probed[0]}" in err


def test_a_probe_whose_worker_died_is_taken_over_at_once(tmp_path: Path) -> None:
    """A worker killed while probing leaves its claim; on this host the next run sees the
    process is gone and probes itself, instead of waiting for a probe that never ends."""
    url = create(tmp_path, trials=2)
    gone = subprocess.Popen(["true"])
    gone.wait()
    claim = {"state": "probing", "since": time.time(),
             "by": {"host": socket.gethostname(), "pid": gone.pid, "started": None,
                    "beat": time.time()}}
    optuna.load_study(study_name="w", storage=url).set_user_attr(ATTR_WARM, claim)
    show = subprocess.run([str(EXPLORE), "study", "show", "w", "--storage", url], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert (f"warm start: being probed by worker {socket.gethostname()}:{gone.pid} "
            "(if it died, the next run probes)") in show.stdout
    proc = worker(tmp_path, url)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "warm start: waiting" not in err
    record = load(tmp_path).user_attrs[ATTR_WARM]
    assert record["state"] == "done" and record["by"]["pid"] == proc.pid
    assert sorted(ranked(load(tmp_path))) == [1, 2]


def test_a_claim_lapses_when_its_process_is_gone_or_another_hosts_claim_is_old() -> None:
    me = WorkerIdentity.current()
    alive_here = {"state": "probing", "since": 0.0, "by": me.to_attr()}
    assert not lapsed(alive_here, me)  # alive: however long it takes
    assert prober(alive_here) == me
    elsewhere = {"state": "probing", "since": time.time(),
                 "by": {"host": f"{me.host}-elsewhere", "pid": 1, "started": None}}
    assert not lapsed(elsewhere, me)  # another host's process cannot be seen: trusted a while
    elsewhere["since"] = time.time() - WAIT_LIMIT_S - 1
    assert lapsed(elsewhere, me)
    assert prober({"state": "pending"}) is None
    assert lapsed({"state": "probing"}, me)  # a claim that names nobody


def test_creating_a_study_with_timeout_0_leaves_the_probe_to_the_first_worker(
        tmp_path: Path) -> None:
    """``study run --timeout 0`` creates the study (the many-machines recipe) on a machine that
    may not be a worker's: it probes nothing, and the first worker probes on its own device."""
    write_tiny_config(tmp_path, space=SPACE)
    proc = subprocess.run([str(EXPLORE), "study", "run", "--name", "w", "--config", "tiny.toml",
                           "--epochs", "1", "--trials", "2", "--warm-start", "1", "--timeout",
                           "0"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "warm start" not in proc.stderr
    study = load(tmp_path)
    assert study.user_attrs[ATTR_WARM] == {"state": "pending"} and not study.trials
    joined = worker(tmp_path, f"sqlite:///{tmp_path / 'explore.db'}")
    _, err = joined.communicate(timeout=300)
    assert joined.returncode == 0, err
    assert "warm start: probed the throughput of 6 configurations" in err
    record = load(tmp_path).user_attrs[ATTR_WARM]
    assert record["state"] == "done" and record["by"]["pid"] == joined.pid
    assert sorted(ranked(load(tmp_path))) == [1]


def test_a_claim_is_given_back_when_the_probe_raises_and_its_own_claim_is_no_wait(
        tmp_path: Path) -> None:
    """A process whose probe raised (Ctrl-C in a notebook, an error) gives its claim back;
    and a claim it left on itself does not make it wait for itself."""
    url = create(tmp_path, trials=2)
    study = optuna.load_study(study_name="w", storage=url)
    me, said = WorkerIdentity.current(), []
    assert take_turn(study, me, True, said.append)
    assert prober(study.user_attrs[ATTR_WARM]) == me and pending(study)
    assert take_turn(study, me, True, said.append)  # its own claim: no wait for a live prober
    assert not said  # a wait would have said whose probe it waits for
    release(study, me)
    assert study.user_attrs[ATTR_WARM] == {"state": "pending"}
    other = WorkerIdentity(me.host, os.getppid(), None)  # alive: the claim is not taken
    study.set_user_attr(ATTR_WARM, {"state": "probing", "by": other.to_attr(), "since": 0.0})
    release(study, me)  # not its claim: left alone
    assert prober(study.user_attrs[ATTR_WARM]) == other
    study.set_user_attr(ATTR_WARM, {"state": "done", "probed": 0})
    assert not take_turn(study, me, True, said.append) and not pending(study)
