"""Resource guards: refuse, before allocating, work that needs more memory than there is."""
from __future__ import annotations

import os
from pathlib import Path

from libtbx.utils import Sorry

GIB = 1024 ** 3


def available_memory() -> int:
    """Bytes of memory this process can still use: MemAvailable of /proc/meminfo, capped by
    a cgroup (container) limit; physical memory where /proc is absent."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: no guard
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            available = min(available, int(text))
    return available


def check_memory(needed_bytes: float, what: str, fix: str) -> None:
    """Sorry when ``needed_bytes`` (an estimate of the peak) exceed the available memory."""
    available = available_memory()
    if needed_bytes > available:
        raise Sorry(f"{what} would need about {needed_bytes / GIB:.1f} GiB of memory, more than "
                    f"the {available / GIB:.1f} GiB available: {fix}.")


def cell_grid_points(unit_cell, d_min: float, sampling: float) -> float:
    """Approximate number of grid points of a unit-cell map with spacing d_min/sampling (A)."""
    return unit_cell.volume() * (sampling / d_min) ** 3


def check_cell_map_memory(unit_cell, d_min: float, sampling: float, bytes_per_point: float,
                          what: str, fix: str) -> None:
    """Sorry when the maps of a unit-cell grid at d_min/sampling would not fit in memory."""
    check_memory(cell_grid_points(unit_cell, d_min, sampling) * bytes_per_point, what, fix)
