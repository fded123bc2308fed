"""The C allocator policy of explore's processes: large tensors reuse freed memory.

glibc serves an allocation of 32 MiB or more (its largest mmap threshold) with a fresh ``mmap``
and returns it to the system on ``free``. PyTorch's CPU allocator asks the C allocator for every
tensor, so a model whose activations pass that size (external attention at N = 4096 tokens,
batch 8, dim 256: 32 MiB per activation) page-faults and zero-fills every activation of every
forward pass. That, not the attention's math, made EA's forward time grow 6-7x from N = 1024 to
4096 on this project's CPU machines (docs/performance.md). Serving every allocation from the heap
and never trimming it makes the second pass reuse the first pass's memory: the growth drops to
about 4x, as the O(N) math predicts.

The cost: a process keeps its peak memory until it exits (what PyTorch's CUDA caching allocator
does on the GPU anyway). ``EXPLORE_ALLOCATOR=system`` keeps the C library's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ENV", "POLICIES", "configure", "current"]

ENV = "EXPLORE_ALLOCATOR"
POLICIES = ("heap", "system")

# mallopt(3) parameters of glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # bytes of free heap top before glibc trims it (an int: the most)

_applied: str | None = None


def _mallopt() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]  # int mallopt(int param, int value)
    fn.restype = ctypes.c_int
    return fn


def configure(policy: str | None = None) -> str:
    """Apply ``policy`` (default: ``$EXPLORE_ALLOCATOR`` or ``"heap"``) to this process, once;
    returns the policy in force: ``"heap"``, ``"system"``, or ``"system"`` where the C library
    is not glibc (nothing to change there)."""
    global _applied
    wanted = (policy or os.environ.get(ENV) or "heap").strip().lower()
    if wanted not in POLICIES:
        raise ValueError(f"{ENV}={wanted!r} is not one of {', '.join(POLICIES)}")
    if _applied is not None:
        return _applied
    if wanted == "heap":
        mallopt = _mallopt()
        # mallopt returns 1 on success. M_MMAP_MAX = 0: no allocation is served by mmap.
        if mallopt is not None and mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER) == 1 \
                and mallopt(_M_MMAP_MAX, 0) == 1:
            _applied = "heap"
            return _applied
    _applied = "system"
    return _applied


def current() -> str:
    """The policy this process runs under (``"system"`` until :func:`configure` ran)."""
    return _applied or "system"
