"""The C allocator settings that CPU inference needs (glibc on Linux).

With glibc's defaults a batch's activations (tens of MB each) are mapped fresh from the
kernel on every allocation and unmapped on every free, and each thread's arena hands
its freed memory back too, so the forward pass spends its time in page faults and in
the kernel. One arena that keeps what it frees, and blocks up to glibc's mapping
ceiling served from it, make those faults disappear (``scripts/forward_speed.py``
measures both; its figures are in docs/benchmarks.md, "The forward pass"; the CLI
applies this, so ``reidctl bench`` measures the forward pass with it).
Blocks above the ceiling (a large gallery matrix, a batch's 32 MB+ activations) are
still mapped and returned, which is why the CPU batch is kept under it
(:data:`reidctl.config.DEFAULT_BATCH`).
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "REIDCTL_ALLOCATOR"  # "system" leaves the C allocator as it is
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
TRIM_THRESHOLD = 512 << 20  # free memory kept at the heap's top before it is returned


def tune() -> bool:
    """Applies the settings to this process (call before worker threads start).

    Returns:
        True when applied; False off Linux, without glibc, or when ``REIDCTL_ALLOCATOR``
        is ``system``.
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "").lower() == "system":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
