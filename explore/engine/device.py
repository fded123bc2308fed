"""Where a trial runs: the device, its threads, its numerics and its allocator.

Nothing here touches CUDA at import time; every function takes the device it is about.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from explore.engine import allocator
from studies.errors import UsageError

__all__ = ["autocast", "configure_allocator", "device_name", "free_memory", "native_bf16",
           "resolve_device", "resolve_precision", "synchronize", "torch_threads", "usable_cpus"]


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"``: what ``[train] precision`` means on ``device`` (``auto``: bf16
    on CUDA, fp32 elsewhere)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto", cache: bool = True
             ) -> torch.autocast:
    """bf16 autocast where ``precision`` resolves to bf16; a disabled context for fp32.
    ``cache=False`` inside CUDA graph captures (weights are cast in the graph, every replay)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=resolve_precision(device, precision) == "bf16",
                          cache_enabled=cache)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware: a CUDA device with bf16,
    or a CPU with AVX512-BF16 or AMX (x86) or the BF16 extension (Arm). Elsewhere bf16 is
    emulated and trains slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = {word for line in f if line.lower().startswith(("flags", "features"))
                     for word in line.split(":", 1)[-1].split()}
    except OSError:  # not Linux: ask oneDNN (true on any AVX-512 CPU, native or not)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads (0: as they are), then restore them."""
    before = torch.get_num_threads()
    if count <= 0 or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:K")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
    return torch.device(device)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (taskset, a Slurm allocation, a
    container's cpuset), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def configure_allocator() -> str:
    """Apply the C allocator policy (explore/allocator.py) before any tensor is made."""
    try:
        return allocator.configure()
    except ValueError as exc:
        raise UsageError(f"{exc}: unset it or set it to heap or system") from None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def free_memory(device: torch.device) -> tuple[int, str]:
    """Bytes free where ``device``'s tensors live, and a sentence template saying whose (``{}``:
    the amount): the device's free memory on CUDA, the available RAM (psutil, else
    ``/proc/meminfo``) elsewhere."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"the device {device} has {{}} free"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "this machine has {} free (RAM)"
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine has {} free (RAM)"
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages) * os.sysconf("SC_PAGE_SIZE"), "this machine has {} free (RAM)"
