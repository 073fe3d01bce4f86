"""meteor_cctbx: map-enhancement tools for weak signals, built on cctbx.

Conventions used throughout the package:
  * difference maps are derivative minus native;
  * reflection data are amplitudes |F| (intensities are converted with French-Wilson);
  * lengths are in Angstrom, B-factors in Angstrom^2, phases in degrees at the boundaries;
  * real-space maps are float32 numpy arrays indexed [x, y, z] over the whole unit cell (or box).
"""
__version__ = "0.1.0"

# cctbx-base's boost_python extension segfaults on import when scipy.fft or scipy.special was
# imported first (seen with cctbx-base 2025.11 and scipy 1.17 wheels); loading it here, before
# any module of this package imports scipy, makes every import order safe.
import boost_adaptbx.boost.python  # noqa: E402,F401
