"""Total-variation (TV) denoising of a unit-cell map (scikit-image, Chambolle) and the choice of
its weight by negentropy.

The TV weight is in map units (e/A^3 for data scaled to the model), as in meteor-maps: larger
weights give smoother maps.  A crystal map is periodic: by default the Chambolle iteration runs
with wrap-around finite differences, so voxels on the cell faces are treated like every other
voxel (scikit-image's solver treats the faces as the edges of an image, which meteor-maps
inherits).  The denoised map is rescaled to the input map's mean and standard deviation.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from skimage.restoration import denoise_tv_chambolle

from meteor_cctbx.maximize import ScanPoint, ScanResult, maximize_scalar
from meteor_cctbx.negentropy import negentropy

# numba's OpenMP threading layer, which it picks once cctbx has loaded libgomp, gave wrong
# results for the kernels below with two threads (a 0.4 difference after two iterations);
# its own workqueue layer is correct.  tests/test_tv.py checks both facts stay true.
numba.config.THREADING_LAYER = "workqueue"


@dataclass(frozen=True)
class TvSettings:
    """How the Chambolle solver runs.

    ``periodic`` maps run exactly ``max_iterations``; non-periodic ones go to scikit-image,
    which also stops when the relative energy change falls below ``tolerance``.
    """

    max_iterations: int = 50
    tolerance: float = 0.0
    periodic: bool = True


def denoise(real_map: np.ndarray, weight: float, settings: TvSettings = TvSettings()
            ) -> np.ndarray:
    """TV-denoised copy (float32) of ``real_map``, rescaled to its mean and standard deviation.

    ``weight`` <= 0 returns the map unchanged.  Periodic maps go through
    ``chambolle_periodic``; others through scikit-image's ``denoise_tv_chambolle``.
    """
    real_map = np.asarray(real_map, dtype=np.float32)
    if weight <= 0:
        return real_map
    if settings.periodic:
        denoised = chambolle_periodic(real_map, weight, settings.max_iterations)
    else:
        denoised = denoise_tv_chambolle(real_map, weight=weight, eps=settings.tolerance,
                                        max_num_iter=settings.max_iterations)
    return rescale_like(np.ascontiguousarray(denoised, dtype=np.float32), real_map)


@numba.njit(parallel=True, cache=True)
def _primal_update(image: np.ndarray, dual: np.ndarray, out: np.ndarray) -> None:
    """out = image - div(dual), periodic backward differences (in place)."""
    nx, ny, nz = image.shape
    for i in numba.prange(nx):
        i_before = i - 1 if i > 0 else nx - 1
        for j in range(ny):
            j_before = j - 1 if j > 0 else ny - 1
            row = image[i, j]
            result = out[i, j]
            p0 = dual[0, i, j]
            p0_before = dual[0, i_before, j]
            p1 = dual[1, i, j]
            p1_before = dual[1, i, j_before]
            p2 = dual[2, i, j]
            result[0] = (row[0] - p0[0] + p0_before[0] - p1[0] + p1_before[0]
                         - p2[0] + p2[nz - 1])
            for k in range(1, nz):
                result[k] = (row[k] - p0[k] + p0_before[k] - p1[k] + p1_before[k]
                             - p2[k] + p2[k - 1])


@numba.njit(parallel=True, cache=True)
def _dual_update(out: np.ndarray, dual: np.ndarray, tau: np.float32,
                 tau_over_weight: np.float32) -> None:
    """dual = (dual - tau grad(out)) / (1 + tau/weight |grad(out)|), periodic forward
    differences (in place)."""
    nx, ny, nz = out.shape
    one = np.float32(1.0)
    for i in numba.prange(nx):
        i_after = i + 1 if i < nx - 1 else 0
        for j in range(ny):
            j_after = j + 1 if j < ny - 1 else 0
            row = out[i, j]
            row_x = out[i_after, j]
            row_y = out[i, j_after]
            p0 = dual[0, i, j]
            p1 = dual[1, i, j]
            p2 = dual[2, i, j]
            for k in range(nz):
                k_after = k + 1 if k < nz - 1 else 0
                centre = row[k]
                gx = row_x[k] - centre
                gy = row_y[k] - centre
                gz = row[k_after] - centre
                scale = one / (one + tau_over_weight * np.sqrt(gx * gx + gy * gy + gz * gz))
                p0[k] = (p0[k] - tau * gx) * scale
                p1[k] = (p1[k] - tau * gy) * scale
                p2[k] = (p2[k] - tau * gz) * scale


def chambolle_periodic(image: np.ndarray, weight: float, n_iterations: int) -> np.ndarray:
    """Chambolle's projection algorithm for isotropic TV denoising of a periodic 3-D map.

    The iteration of scikit-image's ``denoise_tv_chambolle`` (same step tau = 1/6, same dual
    update, same returned iterate), with finite differences that wrap around the cell instead
    of stopping at its faces, run for exactly ``n_iterations`` so that the result is a smooth
    function of ``weight``.  Each iteration is two fused, threaded passes over float32 arrays
    (numba), several times faster than the same iteration as numpy array expressions; the
    result does not depend on the number of threads.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"periodic TV needs a 3-D map, got {image.ndim} dimensions")
    dual = np.zeros((3,) + image.shape, dtype=np.float32)
    out = image.copy()
    tau = np.float32(1.0 / 6.0)
    tau_over_weight = np.float32(1.0 / (6.0 * weight))
    for iteration in range(n_iterations):
        if iteration > 0:
            _primal_update(image, dual, out)
        _dual_update(out, dual, tau, tau_over_weight)
    return out


def rescale_like(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` shifted and scaled to the mean and standard deviation of ``reference``."""
    std = values.std(dtype=np.float64)
    target_std = reference.std(dtype=np.float64)
    target_mean = reference.mean(dtype=np.float64)
    if std == 0:
        return np.full_like(values, target_mean)
    scale = target_std / std
    return ((values - values.mean(dtype=np.float64)) * scale + target_mean).astype(np.float32)


@dataclass
class TvOptimum:
    """The scan over TV weights and the denoised map at the best weight."""

    scan: ScanResult
    weight: float
    negentropy: float
    denoised_map: np.ndarray


def optimize_tv_weight(real_map: np.ndarray, lower: float, upper: float,
                       settings: TvSettings = TvSettings(), tolerance: float = 0.1,
                       n_coarse: int = 7,
                       report: Callable[[ScanPoint], None] | None = None) -> TvOptimum:
    """Find the TV weight in [lower, upper] (map units) maximising the denoised map's negentropy.

    A log-scale bracketed search (``tolerance`` in log10 units); weight 0 (no denoising) is
    scored too.  The best denoised map is kept, so it is never recomputed.
    """
    best: dict = {}
    lock = threading.Lock()

    def score(weight: float) -> float:
        denoised = denoise(real_map, weight, settings)
        value = negentropy(denoised)
        with lock:
            if not best or value > best["score"]:
                best.update(score=value, weight=weight, map=denoised)
        return value

    scan = maximize_scalar(score, lower, upper, name="tv_weight", n_coarse=n_coarse,
                           log_scale=True, tolerance=tolerance, extra_points=(0.0,),
                           report=report)
    return TvOptimum(scan=scan, weight=best["weight"], negentropy=best["score"],
                     denoised_map=best["map"])
