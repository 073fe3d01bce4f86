"""Import order: matplotlib / scipy.stats / scipy.ndimage / kiwisolver imported before cctbx
used to kill Python with SIGSEGV (two libstdc++ copies, docs/import_order.md).  Each order
runs in its own interpreter, since the crash depends on what the process loaded first."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "meteor_cctbx_libstdcxx.pth"
FIRST_IMPORTS = ("matplotlib.pyplot", "scipy.stats", "scipy.ndimage", "kiwisolver")
# After the early import: cctbx itself, then meteor_cctbx, then real iostream formatting work.
THEN = ("import cctbx.uctbx, meteor_cctbx; "
        "print(cctbx.uctbx.unit_cell((10, 20, 30, 90, 90, 90)).volume())")


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_every_order_is_safe_with_the_startup_hook(first, tmp_path):
    """The start-up hook that pip installs into site-packages, processed as site.py does at
    start-up (addsitedir), makes the crashing orders work."""
    shutil.copy(HOOK, tmp_path / HOOK.name)
    result = run_python(f"import site; site.addsitedir({str(tmp_path)!r}); import {first}; "
                        f"{THEN}")
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split()[-1] == "6000.0"


def test_without_the_hook_the_crash_order_is_refused_not_a_segfault():
    """Wherever the hook is missing (an editable install, a checkout on PYTHONPATH), the
    crashing order ends in an ImportError that says what to do, not in SIGSEGV; where pip
    installed the hook, it simply works."""
    result = run_python("import matplotlib.pyplot; import meteor_cctbx")
    installed = any((Path(d) / HOOK.name).exists() for d in site.getsitepackages())
    if installed:
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
        assert "import meteor_cctbx first" in result.stderr
        assert "meteor_cctbx_libstdcxx.pth" in result.stderr


def test_setup_installs_the_hook(tmp_path):
    """setup.py's build step puts the hook and its module at the top of the installed tree
    (what a wheel, and so pip install ., copies into site-packages)."""
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
                            str(tmp_path / "lib")], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-2000:]
    assert (tmp_path / "lib" / HOOK.name).read_text() == HOOK.read_text()
    assert (tmp_path / "lib" / "_meteor_cctbx_libstdcxx.py").exists()
