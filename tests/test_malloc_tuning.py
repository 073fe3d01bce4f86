"""The console entry points' malloc tuning: a freed large map's memory is reused, not
page-faulted afresh; the library alone leaves the allocator as it is."""
import subprocess
import sys

import pytest

from meteor_cctbx.malloc_tuning import on_glibc

PROBE = """
import contextlib, io, resource, sys
from meteor_cctbx.malloc_tuning import keep_freed_memory
import meteor_cctbx.diffmap  # the library, imported but not a console entry point
import numpy as np
try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _set_madvise_hugepage
_set_madvise_hugepage(False)  # count 4 kB pages, whatever the machine's huge-page setting
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
elif sys.argv[1] == "entry_point":
    from meteor_cctbx.command_line.diffmap import main
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--show-defaults"]) == 0
shape = (3, 200, 240, 240)   # a TV dual field of an 11.5 M-voxel map: 138 MB, above glibc's
                             # 32 MiB cap on its mmap threshold
np.ones(shape, np.float32)   # allocated, touched and freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
again = np.ones(shape, np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 3 * 200 * 240 * 240 * 4 // 4096

glibc_only = pytest.mark.skipif(not on_glibc(), reason="glibc's malloc only")


def page_faults_of_second_allocation(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                            text=True, check=True)
    return int(result.stdout.split()[-1])


def huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: then a fault maps 2 MB, not 4 kB."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as status:
            return "[always]" in status.read()
    except OSError:
        return False


@glibc_only
def test_freed_large_arrays_are_reused_without_page_faults():
    default = page_faults_of_second_allocation("default")
    tuned = page_faults_of_second_allocation("tuned")
    if not huge_pages_always():
        assert default > PAGES / 2  # fresh 4 kB pages for every allocation
    assert tuned < PAGES / 20 and 20 * tuned < default


@glibc_only
def test_console_entry_point_tunes_the_process():
    default = page_faults_of_second_allocation("default")
    assert 20 * page_faults_of_second_allocation("entry_point") < default
