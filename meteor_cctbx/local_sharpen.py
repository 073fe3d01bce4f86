"""Local B-factor sharpening: a map of the local Wilson B, and each voxel sharpened by its own B.

Conventions as in meteor_cctbx.sharpen: B in Å², d in Å, d*² = 1/d² in Å⁻², a Fourier term
scaled by exp(B·d*²/4) (positive B sharpens).  Maps are float32 numpy arrays over one box of
the unit cell (periodic: the box is treated as wrapping, as the Fourier route does).

Local B.  The map is split into resolution bands (band-pass maps, one inverse FFT each).  The
local power of band k at x is the Gaussian-weighted mean of the band map squared around x (for
two half maps: of the product of their band maps, which carries no noise bias).  Where the
density falls off as exp(−B·d*²/4), ln(power) falls linearly in d*² with slope −B/2, so a
least-squares line through the bands from ``d_max`` to the resolution gives B(x) at every voxel
at once (numpy, no loop over voxels).

Local sharpening.  Each voxel gets b(x) = b_global + B(x) − B̃, B̃ the median of B(x) inside the
molecular mask: every region ends up with the overall B the global choice gives the map as a
whole.  The map sharpened by b(x) is interpolated linearly between maps sharpened by a ladder of
B values (one inverse FFT each, accumulated with tent weights; one map in memory at a time).
"""
from __future__ import annotations

# meteor_cctbx.sharpen (cctbx) before scipy: see the note there
from meteor_cctbx.sharpen import FourierMap

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.fft


@dataclass
class LocalB:
    """Local Wilson B (Å²) at every voxel, and the bands it was fitted over."""

    b_map: np.ndarray
    band_d_star_sq: np.ndarray
    radius: float


def gaussian_transfer(fourier: FourierMap, radius: float) -> np.ndarray:
    """Fourier transfer function (rfftn layout) of a normalised Gaussian of rms ``radius`` Å
    per direction: exp(−2π²·radius²·d*²)."""
    return np.exp(-2.0 * math.pi**2 * radius**2 * fourier.d_star_sq).astype(np.float32)


def band_centres(d_max: float, d_min: float, n_bands: int) -> np.ndarray:
    """|d*| (Å⁻¹) of ``n_bands`` band centres evenly spaced from 1/d_max to 1/d_min."""
    return np.linspace(1.0 / d_max, 1.0 / d_min, n_bands)


def local_b(maps: list[FourierMap], d_min: float, *, d_max: float = 5.0, n_bands: int = 6,
            band_width: float = 0.04, radius: float = 4.0) -> LocalB:
    """Local Wilson B of one map (``maps = [map]``) or of two half maps (their cross power).

    ``radius`` is the rms width (Å) of the Gaussian window.  The bands are Gaussians in |d*|
    (rms ``band_width`` Å⁻¹) centred evenly from 1/``d_max`` to 1/``d_min``: bands with sharp
    edges would ring far into real space and carry the power of strong regions into weak ones.
    The slope of ln(power) against the band centres' d*² is turned into B through the slope
    the same bands give for a spectrum exp(−B·d*²/2) on this grid (``slope_to_b``), which
    accounts for the number of terms growing with d* and for the bands' width.
    """
    if not d_max > d_min:
        raise ValueError(f"local B: d_max ({d_max:g} A) must be above d_min ({d_min:g} A)")
    reference = maps[0]
    centres = band_centres(d_max, d_min, n_bands)
    window = gaussian_transfer(reference, radius)
    d_star = np.sqrt(reference.d_star_sq)
    log_power = np.empty((n_bands, *reference.shape), dtype=np.float32)
    for k, centre in enumerate(centres):
        band = np.exp(-0.5 * ((d_star - centre) / band_width) ** 2).astype(np.float32)
        band_maps = [m.synthesize(band) for m in maps]
        product = band_maps[0] * band_maps[-1]
        power = scipy.fft.irfftn(scipy.fft.rfftn(product, workers=reference.workers) * window,
                                 s=reference.shape, workers=reference.workers)
        floor = max(float(np.abs(power).max()) * 1e-6, np.finfo(np.float32).tiny)
        log_power[k] = np.log(np.maximum(power, floor))
    regression = _slope_weights(centres)
    slope = np.tensordot(regression.astype(np.float32), log_power, axes=(0, 0))
    b_grid, slopes = _slope_of_b(d_star, centres, band_width, regression)
    b_map = np.interp(slope.ravel(), slopes[::-1], b_grid[::-1]).reshape(slope.shape)
    return LocalB(b_map=b_map.astype(np.float32), band_d_star_sq=centres**2, radius=radius)


def _slope_weights(centres: np.ndarray) -> np.ndarray:
    """Least-squares weights w with slope = Σ w_k y_k of y against centres² (d*²)."""
    s2 = centres**2
    centred = s2 - s2.mean()
    return centred / np.sum(centred**2)


def _slope_of_b(d_star: np.ndarray, centres: np.ndarray, band_width: float,
                regression: np.ndarray, b_grid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(B, slope of ln band power) for spectra |F|² ∝ exp(−B·d*²/2) on this grid's terms."""
    if b_grid is None:
        b_grid = np.arange(-100.0, 600.1, 5.0)
    top = centres[-1] + 4.0 * band_width
    counts, edges = np.histogram(d_star[(d_star > 0) & (d_star <= top)], bins=400,
                                 range=(0.0, top))
    s = 0.5 * (edges[1:] + edges[:-1])
    response = np.exp(-((s[None, :] - centres[:, None]) / band_width) ** 2) * counts
    spectrum = np.exp(-0.5 * b_grid[:, None] * s[None, :] ** 2)
    log_power = np.log(np.maximum(spectrum @ response.T, np.finfo(float).tiny))
    return b_grid, log_power @ regression


def sharpen_locally(fourier: FourierMap, b_of_voxel: np.ndarray,
                    factors_of_b: Callable[[float], np.ndarray], b_step: float = 10.0
                    ) -> np.ndarray:
    """The map sharpened at each voxel by ``b_of_voxel`` (Å²).

    ``factors_of_b(B)`` gives the Fourier factors of a global sharpening by B (e.g.
    ``lambda b: form.factors(fourier.d_star_sq, b)``); maps on a ladder of B spaced ``b_step``
    apart are blended with linear (tent) weights in B.
    """
    low = math.floor(float(b_of_voxel.min()) / b_step) * b_step
    high = math.ceil(float(b_of_voxel.max()) / b_step) * b_step
    ladder = np.arange(low, high + 0.5 * b_step, b_step)
    result = np.zeros(fourier.shape, dtype=np.float32)
    for b in ladder:
        weight = np.clip(1.0 - np.abs(b_of_voxel - b) / b_step, 0.0, 1.0)
        if weight.any():
            result += weight * fourier.synthesize(factors_of_b(float(b)))
    return result


def local_sharpening_b(b_map: np.ndarray, molecule_weight: np.ndarray, b_global: float,
                       b_min: float, b_max: float) -> np.ndarray:
    """b(x) = b_global + m(x)·(B(x) − B̃), clipped to [b_min, b_max].

    B̃ is the median of B(x) where the molecule weight m (0…1, a smoothed molecular mask) is
    above ½; in the solvent (m → 0), where B(x) means nothing, b(x) → b_global.
    """
    inside = molecule_weight > 0.5
    reference = float(np.median(b_map[inside] if inside.any() else b_map))
    return np.clip(b_global + molecule_weight * (b_map - reference), b_min, b_max).astype(
        np.float32)


@dataclass
class LocalSharpening:
    """A locally sharpened map, the local B map and the B applied at every voxel."""

    map_values: np.ndarray
    local_b: LocalB
    b_applied: np.ndarray
    molecule: np.ndarray

    def summary(self) -> dict:
        """Percentiles (5, 25, 50, 75, 95) of the local B and of the applied B in the molecule."""
        inside = self.molecule
        percentiles = (5, 25, 50, 75, 95)
        return {"percentiles": percentiles, "radius": self.local_b.radius,
                "local_b": np.percentile(self.local_b.b_map[inside], percentiles),
                "b_applied": np.percentile(self.b_applied[inside], percentiles)}


def sharpen_b_locally(fourier: FourierMap, factors_of_b: Callable[[float], np.ndarray],
                      maps_for_b: list[FourierMap], molecule: np.ndarray, b_global: float,
                      d_min: float, *, d_max: float, radius: float, b_min: float,
                      b_max: float) -> LocalSharpening:
    """Sharpen ``fourier``'s map voxel by voxel around the global choice ``b_global``.

    The local B comes from ``maps_for_b`` (the map, or two half maps) between ``d_max`` and
    ``d_min``; ``molecule`` is the molecular mask (bool), smoothed by the same window to weight
    the local departures from b_global.
    """
    estimate = local_b(maps_for_b, d_min, d_max=d_max, radius=radius)
    window = gaussian_transfer(fourier, radius)

    def smooth(values: np.ndarray) -> np.ndarray:
        return scipy.fft.irfftn(scipy.fft.rfftn(values, workers=fourier.workers) * window,
                                s=fourier.shape, workers=fourier.workers)

    weight = np.clip(smooth(molecule.astype(np.float32)), 0.0, 1.0)
    # average B over the molecule with the same window (normalised convolution): B values,
    # unlike band powers, average without strong regions swamping weak ones
    b_smooth = smooth(weight * estimate.b_map) / np.maximum(smooth(weight), 1e-3)
    b_applied = local_sharpening_b(b_smooth, weight, b_global, b_min, b_max)
    return LocalSharpening(map_values=sharpen_locally(fourier, b_applied, factors_of_b),
                           local_b=estimate, b_applied=b_applied, molecule=molecule)
