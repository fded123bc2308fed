"""``explore study run --workers N``: several worker processes on this machine share one study.

The parent validates and creates the study, then starts ``explore study worker`` processes (each
with its own sampler seed, thread share or GPU) and shows one combined progress view by reading
the storage. Workers claim trials against the study's budget atomically (see
:func:`explore.search.budget.slot_is_free`), so together they finish exactly the budget.
Ctrl-C reaches every worker (same process group); each stops after its current epoch with its
state saved. The workers' stderr passes through the parent, which says a failed worker's own
one-line error (a full disk: where) as its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from types import FrameType

import optuna
import torch
from optuna.trial import TrialState

from explore.engine.device import resolve_device, usable_cpus
from explore.run.opening import OpenedStudy, RunRequest, RunSummary, open_study
from explore.run.progress import Reporter
from explore.run.runner import finish_summary, release_queued
from explore.search.budget import FINISHED, count_finished
from studies.errors import ExploreError, UsageError
from studies.storage import ENV_STORAGE

__all__ = ["parse_workers", "run_parallel"]

SQLITE_WORKERS_WARN = 4
PER_CORE = 4  # at most this many CPU workers per usable core (more only slow each other down)
PER_DEVICE = 8  # at most this many workers per listed device
POLL_S = 0.5
RELAY_JOIN_S = 5.0
ERROR_PREFIX = "error: "  # how cli.guarded begins a command's one-line error
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes, where a worker's stderr forces them


def parse_workers(workers: str, devices: str | None) -> tuple[int, list[str | None]]:
    """How many workers, and the device each one sees (None: the run's --device)."""
    if devices:
        listed = [d.strip() for d in devices.split(",") if d.strip()]
        if not listed:
            raise UsageError("--devices needs a comma-separated list such as cuda:0,cuda:1")
        per = 1 if workers in ("auto", "1") else int(workers) if workers.isdigit() else 0
        if per < 1:
            raise UsageError("--workers must be 'auto' or an integer >= 1")
        if per > PER_DEVICE:
            raise UsageError(f"--workers {workers} with --devices: at most {PER_DEVICE} workers "
                             "per device; give fewer")
        return len(listed) * per, [d for d in listed for _ in range(per)]
    if workers == "auto":
        n = torch.cuda.device_count() if torch.cuda.is_available() else usable_cpus()
        if torch.cuda.is_available():
            return n, [f"cuda:{i}" for i in range(n)]
        return n, [None] * n
    if not workers.isdigit() or int(workers) < 1:
        raise UsageError(f"--workers must be 'auto' or an integer >= 1; got {workers!r}")
    limit = PER_CORE * usable_cpus()
    if int(workers) > limit:
        raise UsageError(f"--workers {workers}: this machine has {usable_cpus()} usable core(s), "
                         f"so at most {limit} workers ({PER_CORE} per core); give fewer, or "
                         "start `explore study worker` on other machines")
    return int(workers), [None] * int(workers)


def _worker_command(opened: OpenedStudy, request: RunRequest, index: int, count: int,
                    device: str | None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env[ENV_STORAGE] = opened.spec.url  # not on the command line, where `ps` would show it
    worker_device = request.device
    if device is not None and device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1] if ":" in device else "0"
        worker_device = "cuda:0"  # the worker sees only its GPU
    elif device is not None:
        worker_device = device
    cmd = [sys.executable, "-m", "cli", "study", "worker", "--name", opened.name,
           "--device", worker_device, "--worker-index", str(index), "--workers", str(count),
           "--max-failures", str(request.max_failures),
           "--keep-checkpoints", request.keep_checkpoints, "--quiet"]
    if request.timeout is not None:
        cmd += ["--timeout", str(request.timeout)]
    return cmd, env


def run_parallel(request: RunRequest, reporter: Reporter, workers: str,
                 devices: str | None = None) -> RunSummary:
    count, device_list = parse_workers(workers, devices)
    for listed in dict.fromkeys(d for d in device_list if d is not None):
        try:  # before the study exists: a device that is not here is refused
            resolve_device(listed)
        except UsageError as exc:
            raise UsageError(f"--devices {devices}: {exc}") from None
    opened = open_study(replace(request, workers=count))
    summary = opened.summary()
    if summary.finished >= summary.target:
        release_queued(opened.study, opened.settings, reporter.message)
        return finish_summary(opened, summary)
    if opened.spec.kind == "sqlite" and count > SQLITE_WORKERS_WARN:
        reporter.message(f"note: {count} workers on SQLite serialize their writes; for more than "
                         f"{SQLITE_WORKERS_WARN}, use journal:FILE.log or a database server")
    procs = []
    errors: list[str] = []  # the workers' one-line errors, in the order they came
    readers = []
    for index, device in enumerate(device_list):
        cmd, env = _worker_command(opened, request, index, count, device)
        procs.append(subprocess.Popen(cmd, env=env, cwd=os.getcwd(), stderr=subprocess.PIPE,
                                      text=True, errors="replace"))
        readers.append(threading.Thread(target=_relay, args=(procs[-1], errors), daemon=True))
        readers[-1].start()

    received: dict[str, int] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        received["signal"] = signum
        for p in procs:  # Ctrl-C reached them already; SIGTERM (e.g. from a scheduler) did not
            if p.poll() is None and signum == signal.SIGTERM:
                p.send_signal(signal.SIGTERM)
        reporter.message("stopping workers after their current epoch; continue with: "
                         f"explore study run --name {opened.name} --storage {summary.storage_url}")

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    seen: set[int] = {t.number for t in opened.study.get_trials(deepcopy=False, states=FINISHED)}
    reporter.start(opened.name, opened.spec.display, summary.finished, summary.target)
    try:
        while True:
            done = all(p.poll() is not None for p in procs)
            _report_new(opened.study, seen, reporter, summary)
            if done:
                break
            time.sleep(POLL_S)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        reporter.close()
    for reader in readers:
        reader.join(timeout=RELAY_JOIN_S)  # a worker's last line arrives after its exit
    codes = [p.returncode for p in procs]
    if "signal" in received:
        summary.stopped = "interrupted"
        summary.exit_code = 130 if received["signal"] == signal.SIGINT else 143
    elif any(c not in (0, 130, 143) for c in codes):
        raise _failure(codes, errors)
    summary.stopped = summary.stopped if "signal" in received else "budget reached"
    release_queued(opened.study, opened.settings, reporter.message)  # as each worker did
    return finish_summary(opened, summary)


def _relay(proc: subprocess.Popen[str], errors: list[str]) -> None:
    """Pass a worker's stderr on as it comes, except its one-line error (``error: ...``): that
    is kept for the parent's own error line, so that the cause is said once, by the command the
    user ran."""
    assert proc.stderr is not None
    for line in proc.stderr:
        plain = _ANSI.sub("", line).rstrip("\n")
        if plain.startswith(ERROR_PREFIX):
            errors.append(plain[len(ERROR_PREFIX):].strip())
        else:
            sys.stderr.write(line)
            sys.stderr.flush()


def _failure(codes: list[int], errors: list[str]) -> ExploreError:
    """The parent's error for failed workers: the first worker's own line (a full disk names
    where), the others' when they differ; the exit codes only when no worker said why."""
    causes = list(dict.fromkeys(errors))
    if not causes:
        return ExploreError(f"worker(s) failed with exit codes {codes}; see their messages above")
    text = "; also: ".join(causes)
    failed = sum(1 for c in codes if c not in (0, 130, 143))
    if failed > 1:
        text += f" ({failed} of {len(codes)} workers failed)"
    return ExploreError(text)


def _report_new(study: optuna.Study, seen: set[int], reporter: Reporter,
                summary: RunSummary) -> None:
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL))
    fresh = [t for t in trials if t.number not in seen]
    if not fresh:
        return
    front = study.best_trials
    finished = count_finished(study)
    for t in sorted(fresh, key=lambda t: t.number):
        seen.add(t.number)
        summary.new_trials += 1
        reporter.trial_end(t, front, finished, summary.target)
