"""Load cctbx-base's own libstdc++ before any other C++ library, whatever the import order.

cctbx-base's wheels carry a newer libstdc++ (``cctbx_base.libs/libstdc++-<hash>.so.6.0.34``,
GCC 15) than the system's (6.0.30 on Debian 12), which the C++ extensions of scipy,
matplotlib (kiwisolver, contourpy) and others link against.  The two copies share their
``std::locale::id`` facet ids: these are STB_GNU_UNIQUE symbols, bound process-wide to the
copy loaded first.  When the older system copy is first, the newer copy's locale numbers its
extra facets into slots the older one already gave away, so the first iostream number
formatting in cctbx (boost_python_meta_ext's platform_info) calls a codecvt facet as a
num_put and Python dies with SIGSEGV.  Loaded first, the newer copy's ids serve both and
nothing breaks.  docs/import_order.md has the diagnosis and a cctbx-base-only reproduction.

``preload()`` runs at interpreter start-up from ``meteor_cctbx_libstdcxx.pth``, which
setup.py installs into site-packages; it uses only os, sys and _ctypes and never imports cctbx.
``late_load_problem()`` lets ``import meteor_cctbx`` refuse with a message, rather than
crash, where the hook was not installed.
"""
from __future__ import annotations

import os
import sys

_VENDORED_DIR = "cctbx_base.libs"
_SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


def _version(file_name: str) -> tuple[int, ...]:
    """(6, 0, 34) from 'libstdc++-4d2bbaad.so.6.0.34' or 'libstdc++.so.6.0.30'; () if none."""
    tail = file_name.rsplit(".so.", 1)[-1] if ".so." in file_name else ""
    parts = tail.split(".")
    return tuple(int(p) for p in parts) if parts and all(p.isdigit() for p in parts) else ()


def vendored_libstdcxx() -> str | None:
    """Path of cctbx-base's bundled libstdc++ on sys.path, or None (no cctbx-base wheel)."""
    for entry in sys.path:
        directory = os.path.join(entry or ".", _VENDORED_DIR)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.startswith("libstdc++") and ".so" in name:
                return os.path.join(directory, name)
    return None


def system_libstdcxx_version() -> tuple[int, ...]:
    """Version of the libstdc++.so.6 in the standard library directories, () if not found."""
    for directory in _SYSTEM_DIRS:
        path = os.path.join(directory, "libstdc++.so.6")
        if os.path.exists(path):
            return _version(os.path.realpath(path))
    return ()


def _loaded_libstdcxx() -> list[str]:
    """Paths of the libstdc++ copies mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libstdc++" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def preload() -> None:
    """Load the bundled libstdc++ now, when it is newer than the system's (never raises)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        vendored = vendored_libstdcxx()
        if vendored is None or _version(vendored) < system_libstdcxx_version():
            return
        import _ctypes  # ctypes' C core: a third of the start-up cost of ctypes itself

        _ctypes.dlopen(vendored, os.RTLD_NOW | os.RTLD_LOCAL)
    except Exception:  # a start-up hook must never stop Python from starting
        return


def late_load_problem() -> str | None:
    """Why importing cctbx now would crash, or None: an older libstdc++ than the bundled one
    is already loaded and the bundled one is not."""
    vendored = vendored_libstdcxx()
    if vendored is None:
        return None
    loaded = _loaded_libstdcxx()
    if any(_VENDORED_DIR in path for path in loaded):
        return None
    older = [p for p in loaded if _version(os.path.realpath(p)) < _version(vendored)]
    if not older:
        return None
    return (f"{older[0]} (an older libstdc++ than cctbx-base's {os.path.basename(vendored)}) "
            f"was loaded by a module imported before meteor_cctbx (matplotlib, scipy.stats, "
            f"scipy.ndimage, ...), and cctbx would crash on it: import meteor_cctbx first, or "
            f"reinstall meteor_cctbx with pip so that its start-up hook "
            f"meteor_cctbx_libstdcxx.pth makes every import order safe.")
