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

import numpy as np
from skimage.restoration import denoise_tv_chambolle

from meteor_cctbx.maximize import ScanPoint, ScanResult, maximize_scalar
from meteor_cctbx.negentropy import negentropy


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


def _backward_divergence_subtract(out: np.ndarray, p: np.ndarray, axis: int) -> None:
    """out -= p - roll(p, 1, axis), in place (periodic backward difference of p)."""
    out -= p
    moved_out, moved_p = np.moveaxis(out, axis, 0), np.moveaxis(p, axis, 0)
    moved_out[1:] += moved_p[:-1]
    moved_out[0] += moved_p[-1]


def _forward_difference(values: np.ndarray, axis: int, out: np.ndarray) -> None:
    """out = roll(values, -1, axis) - values, in place (periodic forward difference)."""
    moved_values, moved_out = np.moveaxis(values, axis, 0), np.moveaxis(out, axis, 0)
    np.subtract(moved_values[1:], moved_values[:-1], out=moved_out[:-1])
    np.subtract(moved_values[0], moved_values[-1], out=moved_out[-1])


def chambolle_periodic(image: np.ndarray, weight: float, n_iterations: int) -> np.ndarray:
    """Chambolle's projection algorithm for isotropic TV denoising with periodic boundaries.

    The iteration of scikit-image's ``denoise_tv_chambolle`` (same step tau = 1/(2 ndim), same
    dual update, same returned iterate), with finite differences that wrap around the cell
    instead of stopping at the faces, run for exactly ``n_iterations`` so that the result is a
    smooth function of ``weight``.  float32 throughout, all updates in place.
    """
    image = np.asarray(image, dtype=np.float32)
    ndim = image.ndim
    tau = np.float32(1.0 / (2.0 * ndim))
    dual = np.zeros((ndim,) + image.shape, dtype=np.float32)
    gradient = np.empty_like(dual)
    out = image.copy()
    norm = np.empty_like(image)
    square = np.empty_like(image)
    for iteration in range(n_iterations):
        if iteration > 0:
            np.copyto(out, image)
            for axis in range(ndim):
                _backward_divergence_subtract(out, dual[axis], axis)
        for axis in range(ndim):
            _forward_difference(out, axis, gradient[axis])
        np.multiply(gradient[0], gradient[0], out=norm)
        for axis in range(1, ndim):
            np.multiply(gradient[axis], gradient[axis], out=square)
            norm += square
        np.sqrt(norm, out=norm)
        norm *= tau / np.float32(weight)
        norm += 1
        gradient *= tau
        dual -= gradient
        dual /= norm
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
                       settings: TvSettings = TvSettings(), tolerance: float = 0.05,
                       n_coarse: int = 9,
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
