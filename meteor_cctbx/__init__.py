"""meteor_cctbx: map-enhancement tools for weak signals, built on cctbx.

Conventions used throughout the package:
  * difference maps are derivative minus native;
  * reflection data are amplitudes |F| (intensities are converted with French-Wilson);
  * lengths are in Angstrom, B-factors in Angstrom^2, phases in degrees at the boundaries;
  * real-space maps are float32 numpy arrays indexed [x, y, z] over the whole unit cell (or box).
"""
__version__ = "0.1.0"

# cctbx-base bundles a newer libstdc++ than the system's, and loading the system's first (as
# matplotlib, scipy.stats or scipy.ndimage do) makes cctbx segfault on import.  The start-up
# hook meteor_cctbx_libstdcxx.pth that pip installs loads cctbx-base's copy first, so any
# import order is safe; without the hook, refuse with the reason instead of crashing
# (docs/import_order.md).
try:
    from _meteor_cctbx_libstdcxx import late_load_problem
except ImportError:  # a checkout on PYTHONPATH without the top-level module
    pass
else:
    _problem = late_load_problem()
    if _problem:
        raise ImportError(_problem)
import boost_adaptbx.boost.python  # noqa: E402,F401
