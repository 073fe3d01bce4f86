"""The solvent fraction of a map: one definition, used and reported by every program.

Solvent fraction = the fraction of the map's volume outside the molecular envelope.  The
envelope is Phenix's low-resolution molecular mask (cctbx's
``segment_and_split_map.get_overall_mask``), computed here with the same formula on threaded
float32 FFTs: the squared deviation of the map from its mean, low-passed to ``resolution`` (A)
and averaged over a sphere of radius 2 x ``resolution``, is above 5 % of its highest value
inside the envelope (or above the level that leaves ``solvent_content`` outside, when that is
given).  meteor.sharpen masks and reports with it at the map's resolution; meteor.local_scale
reports it at the resolution of MTZ input, else at 3 voxels (the resolution of a map sampled
at d_min/3, as cctbx and meteor.diffmap write them), so that the two programs give the same
number for the same map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from libtbx.utils import Sorry

from meteor_cctbx.grid import fft_workers

DEFINITION = ("volume outside the molecular envelope (Phenix's low-resolution mask of high "
              "local variance)")
THRESHOLD_OF_MAX = 0.05


@dataclass
class MolecularEnvelope:
    """The envelope (True inside the molecule, on the map's grid) and the solvent fraction
    (0-1) it implies, at ``resolution`` (A)."""

    mask: np.ndarray
    solvent_fraction: float
    resolution: float

    def describe(self) -> str:
        return (f"solvent fraction {self.solvent_fraction:.2f}: {DEFINITION} at "
                f"{self.resolution:.2f} A")


def local_variance(values: np.ndarray, unit_cell, resolution: float) -> np.ndarray:
    """(x - <x>)^2 low-passed to ``resolution`` (A, F000 left out) and averaged over a sphere
    of radius 2 x ``resolution``, on the (periodic) grid of ``values`` spanning ``unit_cell``;
    up to a constant factor, as cctbx's get_overall_mask computes it."""
    values = np.asarray(values, dtype=np.float32)
    squared = np.square(values - np.float32(values.mean(dtype=np.float64)))
    spectrum = scipy.fft.rfftn(squared, workers=fft_workers())
    del squared
    n = values.shape
    h = np.fft.fftfreq(n[0], 1.0 / n[0]).astype(np.float32)[:, None, None]
    k = np.fft.fftfreq(n[1], 1.0 / n[1]).astype(np.float32)[None, :, None]
    l = np.fft.rfftfreq(n[2], 1.0 / n[2]).astype(np.float32)[None, None, :]
    g = np.asarray(unit_cell.reciprocal_metrical_matrix(), dtype=np.float32)
    s_sq = (g[0] * h * h + g[1] * k * k + g[2] * l * l
            + 2 * (g[3] * h * k + g[4] * h * l + g[5] * k * l))  # |s|^2 = 1/d^2
    w = np.float32(2 * np.pi * 2 * resolution) * np.sqrt(s_sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        sphere = 3 * (np.sin(w) - w * np.cos(w)) / w ** 3
    sphere[(s_sq > np.float32(1 / resolution ** 2)) | (s_sq == 0)] = 0
    spectrum *= sphere
    return scipy.fft.irfftn(spectrum, s=n, workers=fft_workers())


def molecular_envelope(map_data, crystal_symmetry, resolution: float,
                       solvent_content: float | None = None) -> MolecularEnvelope:
    """The molecular envelope of ``map_data`` (a flex grid or numpy array covering
    ``crystal_symmetry``'s cell or box, periodic) at ``resolution`` (A): see the module."""
    values = map_data.as_numpy_array() if hasattr(map_data, "as_numpy_array") else map_data
    variance = local_variance(values, crystal_symmetry.unit_cell(), resolution)
    if solvent_content is not None:
        threshold = np.quantile(variance, solvent_content)
    else:
        threshold = THRESHOLD_OF_MAX * variance.max()
    mask = variance >= threshold
    fraction = float(1.0 - mask.mean())
    if not variance.max() > 0 or not 0.0 < fraction < 1.0:
        raise Sorry("Could not find the molecule in the map to estimate its solvent "
                    "content: give solvent_content=<fraction of the map that is solvent>.")
    return MolecularEnvelope(mask, fraction, float(resolution))


def envelope_resolution(pixel_sizes, resolution: float | None = None) -> float:
    """``resolution`` (A) when known, else 3 voxels: that of a map sampled at d_min/3."""
    return float(resolution) if resolution else 3.0 * float(max(pixel_sizes))
