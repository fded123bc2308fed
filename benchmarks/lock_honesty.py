"""Does the machine lock keep throughput figures honest while other workers train?

Workers on one machine train under the lock's shared side (one epoch at a time, as
``explore/train.py`` does through ``epoch_guard``) and a throughput measurement takes it
exclusively (as ``explore/objective.py`` does). This script measures one model's inference
throughput (the default digits model, one thread, the default ``[measure]`` settings):

- ``solo``: nothing else of ours running (the trainers stopped with SIGSTOP);
- ``busy, lock``: while ``--trainers`` processes train, the measurement holding the lock
  exclusively (the trainers pause after their current epoch);
- ``busy, no lock``: while they train, no lock (``MachineLock(enabled=False)``: what a
  measurement would see without it).

The three conditions are interleaved ``--repeats`` times so that other load on the machine hits
them alike; each figure is the median over repeats of the measurement's median images/s, and each
ratio the median of the per-repeat ratios to that repeat's solo figure. Also reported: how long
the exclusive lock took to get (at most one training epoch), and the CPU seconds the trainers
used per second of each measurement (from ``/proc``; 0 with the lock, more than a core without),
which, unlike images/s, the machine's other load cannot disturb. Usage::

    python benchmarks/lock_honesty.py                 # 2 trainers, 5 repeats
    python benchmarks/lock_honesty.py --quick --json  # what tests/distributed/test_lock.py runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def train_forever(lock_dir: Path, ready: Path) -> None:
    """A trainer: the default model on digits, epochs under the lock's shared side, until
    killed; ``ready`` is created after the first epoch."""
    import torch

    from explore.config import DataSettings, TrainSettings
    from explore.engine.data import load_dataset
    from explore.engine.locks import MachineLock
    from explore.engine.train import train_model
    from extattn import ModelConfig, create_model

    torch.set_num_threads(1)
    data = load_dataset(DataSettings(), seed=0)
    c, h, _ = data.image_shape
    model = create_model(ModelConfig(image_size=h, in_chans=c, num_classes=data.num_classes))

    def epoch_done(record: Any, history: list[Any]) -> None:
        ready.touch()

    train_model(model, data, TrainSettings(epochs=100_000), seed=0, on_epoch=epoch_done,
                epoch_guard=MachineLock(lock_dir).shared)


def trainer_cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) the trainer processes have used so far (Linux ``/proc``)."""
    ticks = 0
    for p in procs:
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def run(trainers: int, repeats: int, quick: bool) -> dict[str, Any]:
    import torch

    from explore.config import MeasureSettings
    from explore.engine.locks import MachineLock
    from explore.engine.measure import measure_throughput
    from extattn import ModelConfig, create_model

    torch.set_num_threads(1)  # as every worker of `--workers auto` on a CPU machine
    settings = MeasureSettings(min_time=0.3) if quick else MeasureSettings()
    model = create_model(ModelConfig(image_size=8, in_chans=1, num_classes=10))
    shape = (1, 8, 8)
    device = torch.device("cpu")

    def measure(lock: MachineLock) -> tuple[float, float, float]:
        """(images/s, seconds waited for the lock, trainers' CPU share while measuring)."""
        asked = time.perf_counter()
        with lock.exclusive():
            started = time.perf_counter()
            cpu_before = trainer_cpu_seconds(procs)
            figure = measure_throughput(model, shape, device, settings).median
            cpu_used = trainer_cpu_seconds(procs) - cpu_before
            elapsed = time.perf_counter() - started
        return figure, started - asked, cpu_used / elapsed

    lock_dir = Path(tempfile.mkdtemp(prefix="explore-lock-"))
    with_lock, without_lock = MachineLock(lock_dir), MachineLock(lock_dir, enabled=False)
    ready = [lock_dir / f"ready-{i}" for i in range(trainers)]
    procs = [subprocess.Popen([sys.executable, __file__, "--trainer", str(lock_dir), str(r)])
             for r in ready]
    solo: list[float] = []
    busy_lock: list[float] = []
    busy_free: list[float] = []
    waits: list[float] = []
    share_lock: list[float] = []
    share_free: list[float] = []
    try:
        deadline = time.monotonic() + 300
        while not all(r.exists() for r in ready):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("a trainer did not start")
            time.sleep(0.1)
        for _ in range(repeats):
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            try:
                solo.append(measure(without_lock)[0])
            finally:
                for p in procs:
                    p.send_signal(signal.SIGCONT)
            time.sleep(0.3)  # let the trainers get going again
            figure, waited, share = measure(with_lock)
            busy_lock.append(figure)
            waits.append(waited)
            share_lock.append(share)
            time.sleep(0.3)
            figure, _, share = measure(without_lock)
            busy_free.append(figure)
            share_free.append(share)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for path in lock_dir.iterdir():
            path.unlink()
        lock_dir.rmdir()

    def ratios(figures: list[float]) -> list[float]:
        return [round(f / s, 3) for f, s in zip(figures, solo, strict=True)]

    return {
        "trainers": trainers, "repeats": repeats, "threads": 1,
        "measure": {"batch_size": settings.batch_size, "min_time": settings.min_time},
        "solo": round(statistics.median(solo)), "busy_lock": round(statistics.median(busy_lock)),
        "busy_no_lock": round(statistics.median(busy_free)),
        "lock_vs_solo": statistics.median(ratios(busy_lock)),
        "no_lock_vs_solo": statistics.median(ratios(busy_free)),
        "ratios": {"busy_lock": ratios(busy_lock), "busy_no_lock": ratios(busy_free)},
        "trainer_cpu_share": {"busy_lock": [round(v, 3) for v in share_lock],
                              "busy_no_lock": [round(v, 3) for v in share_free]},
        "lock_wait_s_median": round(statistics.median(waits), 3),
        "lock_wait_s_max": round(max(waits), 3),
        "samples": {"solo": [round(v) for v in solo], "busy_lock": [round(v) for v in busy_lock],
                    "busy_no_lock": [round(v) for v in busy_free]},
        "cpus": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__, "machine": platform.machine(),
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--trainer":
        train_forever(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=2, help="training processes (1-2)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per condition")
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.trainers, args.repeats, args.quick)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['trainers']} trainer(s), {result['repeats']} repeats, 1 thread, "
          f"load average {result['load_avg']}")
    print(f"  solo            {result['solo']:>8} img/s")
    print(f"  busy, lock      {result['busy_lock']:>8} img/s  "
          f"({result['lock_vs_solo']:.0%} of solo; lock waited "
          f"{result['lock_wait_s_median']} s median, {result['lock_wait_s_max']} s max)")
    print(f"  busy, no lock   {result['busy_no_lock']:>8} img/s  "
          f"({result['no_lock_vs_solo']:.0%} of solo)")
    shares = result["trainer_cpu_share"]
    print(f"  CPU the trainers used while a measurement ran, per second of it: "
          f"lock {statistics.median(shares['busy_lock']):.2f}, "
          f"no lock {statistics.median(shares['busy_no_lock']):.2f}")


if __name__ == "__main__":
    main()
