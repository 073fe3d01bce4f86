"""Let a command-line process reuse the memory of the large maps it frees.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB) with fresh
pages from the kernel and returns them when the array is freed, so each map of more than ~8 M
float32 voxels that a scan allocates (a denoised working map, a TV dual field, an FFT buffer)
is page-faulted afresh, one fault per 4 kB page.  On the 11.5 M-voxel cell of
benchmarks/bench_speed.py part B that was 16-24 s of system time in a 75-95 s run.
``keep_freed_memory`` asks glibc to serve them from its heap instead and to keep what is freed
for the next allocation (``mallopt``: no mmap, no trimming), which is what a process that
allocates the same few map sizes over and over wants.  Peak memory is unchanged (the memory is
taken anyway; it is only not handed back between allocations).  It is called by the console
entry points (the process is ours), not by the library: a program that embeds meteor_cctbx
keeps its own allocator settings.  Elsewhere than on glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2 ** 31 - 1  # the largest mallopt takes (an int): trim almost never


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, whose malloc ``mallopt`` tunes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Tune glibc's malloc of this process as described above; True when it was done."""
    if not on_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                         TRIM_THRESHOLD_BYTES))
