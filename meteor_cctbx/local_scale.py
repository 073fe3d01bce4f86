"""Local map scale, solvent confidence and scale-dependent map modification.

The local scale S of a map is the maximum of the map over a sphere around each voxel divided
by a full-scale reference level, clipped to [0, 1]: 1 where density is as strong as the best
part of the map, 0.5 for a part present at half strength (a proxy for occupancy).  A Gaussian
fitted to the solvent peak of the map's histogram gives each voxel a confidence that it is not
solvent; the optional modification changes partial scales (amplify, attenuate, sigmoid) only as
far as that confidence allows, so that solvent noise is not amplified.

Conventions: grids are float32 numpy arrays indexed like cctbx map_data (axis 0 = x, 2 = z);
lengths are in Å; a grid's geometry gives the Cartesian step (Å) of one voxel along each axis
and whether the grid is periodic (a crystallographic unit cell) or a box with edges.
"""
from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

import numpy as np
# cctbx's extensions must load before scipy's: the reverse order loads scipy's older bundled
# C++ runtime first, and importing cctbx afterwards crashes the interpreter.
from scitbx.array_family import flex
import scipy.fft  # noqa: E402 (after flex, see above)
import scipy.ndimage  # noqa: E402
import scipy.optimize  # noqa: E402
from libtbx.utils import Sorry, null_out

from meteor_cctbx.grid import fft_workers

#: Half width of the raised-cosine edge of the low-pass filter, relative to the cut-off
#: frequency: transmission 1 below 0.8/d, 0.5 at 1/d, 0 above 1.2/d.
LOWPASS_EDGE = 0.2
#: Default low-pass resolution: max(DEFAULT_LOWPASS, DEFAULT_LOWPASS_PIXELS x pixel size).
DEFAULT_LOWPASS = 8.0
DEFAULT_LOWPASS_PIXELS = 3.0
#: Probability that the kernel maximum of white noise exceeds the default reference quantile.
NOISE_EXCEEDANCE = 0.05
#: Each tile holds at least this many voxels above its reference quantile.
VOXELS_ABOVE_QUANTILE = 20
#: Histogram bins per solvent standard deviation in the solvent fit.
BINS_PER_SIGMA = 8
#: Largest number of voxels the solvent histogram is built from (a regular subsample).
SOLVENT_SAMPLE = 4_000_000
#: Voxels per block when the confidence curve is evaluated (bounds temporary memory).
INTERPOLATION_CHUNK = 1 << 20
MODES = ("none", "amplify", "attenuate", "sigmoid")
#: Program name written into the labels of output maps.
PROGRAM_NAME = "meteor.local_scale"


@dataclass(frozen=True)
class GridGeometry:
    """Voxel steps of a grid and whether it repeats periodically.

    ``steps[i]`` is the Cartesian vector (Å) from a voxel to its neighbour along array axis i.
    """

    steps: np.ndarray
    periodic: bool

    @property
    def pixel_sizes(self) -> np.ndarray:
        """Length (Å) of one voxel step along each axis."""
        return np.linalg.norm(self.steps, axis=1)

    @classmethod
    def orthogonal(cls, pixel_sizes, periodic: bool = False) -> "GridGeometry":
        """Geometry of a grid with orthogonal axes and the given voxel sizes (Å)."""
        return cls(np.diag(np.asarray(pixel_sizes, dtype=float) * np.ones(3)), periodic)

    @classmethod
    def from_map_manager(cls, mm) -> "GridGeometry":
        """Geometry of an iotbx map_manager's grid (its unit cell divided by its gridding)."""
        unit_cell = mm.unit_cell_crystal_symmetry().unit_cell()
        steps = np.array([unit_cell.orthogonalize(tuple(1.0 / n if j == i else 0.0
                                                        for j in range(3)))
                          for i, n in enumerate(mm.unit_cell_grid)])
        return cls(steps, bool(mm.wrapping()))


def map_manager_values(mm) -> np.ndarray:
    """The map of a map_manager as a float32 array (its origin is ignored)."""
    return mm.map_data().as_numpy_array().astype(np.float32)


def as_flex_grid(values: np.ndarray):
    """``values`` as a flex.double with a matching flex.grid (origin zero)."""
    data = flex.double(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    data.reshape(flex.grid(values.shape))
    return data


def map_manager_like(template, values: np.ndarray, label: str):
    """A copy of map_manager ``template`` (origin at zero) holding ``values``, with ``label``
    added in front of the template's labels."""
    mm = template.customized_copy(map_data=as_flex_grid(values), use_deep_copy_for_map_data=False)
    mm.set_program_name(PROGRAM_NAME)
    mm.add_label(label)
    return mm


def unit_cell_map_manager(values: np.ndarray, crystal_symmetry, label: str):
    """map_manager of ``values`` covering one whole unit cell of ``crystal_symmetry``."""
    from iotbx.map_manager import map_manager

    mm = map_manager(map_data=as_flex_grid(values), unit_cell_grid=values.shape,
                     unit_cell_crystal_symmetry=crystal_symmetry, wrapping=True)
    mm.set_program_name(PROGRAM_NAME)
    mm.add_label(label)
    return mm


# ----------------------------------------------------------------------------------------------
# Low-pass filter


def default_lowpass(geometry: GridGeometry) -> float:
    """Default low-pass resolution (Å): max(8 Å, 3 x the largest voxel size)."""
    return max(DEFAULT_LOWPASS, DEFAULT_LOWPASS_PIXELS * float(geometry.pixel_sizes.max()))


def finest_lowpass(geometry: GridGeometry) -> float:
    """Finest low-pass resolution (Å) whose filter edge stays below Nyquist on every axis."""
    return 2.0 * (1.0 + LOWPASS_EDGE) * float(geometry.pixel_sizes.max())


def lowpass(values: np.ndarray, geometry: GridGeometry, resolution: float,
            workers: int = 1) -> np.ndarray:
    """Low-pass ``values`` to ``resolution`` (Å) with a raised-cosine edge (float32 result).

    Periodic grids are filtered as they are; boxes are first padded by mirror images of
    themselves (one resolution wide) so that opposite faces do not leak into each other.
    """
    shape = np.array(values.shape)
    if geometry.periodic:
        padded, margins = values, np.zeros(3, dtype=int)
    else:
        margins = np.ceil(resolution / geometry.pixel_sizes).astype(int)
        full = [scipy.fft.next_fast_len(int(n + 2 * m), real=True)
                for n, m in zip(shape, margins)]
        widths = [(int(m), int(f - n - m)) for n, m, f in zip(shape, margins, full)]
        padded = np.pad(values, widths, mode="symmetric")
    coefficients = scipy.fft.rfftn(padded.astype(np.float32, copy=False), workers=workers)
    box = geometry.steps * np.array(padded.shape)[:, None]  # rows: edges of the box (Å)
    reciprocal = np.linalg.inv(box).T  # rows: reciprocal vectors (1/Å)
    metric = reciprocal @ reciprocal.T
    h = [np.fft.fftfreq(padded.shape[0], 1.0 / padded.shape[0]),
         np.fft.fftfreq(padded.shape[1], 1.0 / padded.shape[1]),
         np.arange(coefficients.shape[2], dtype=float)]
    cutoff = 1.0 / resolution
    low, high = cutoff * (1 - LOWPASS_EDGE), cutoff * (1 + LOWPASS_EDGE)
    h1, h2 = h[1][:, None], h[2][None, :]
    plane_part = metric[1, 1] * h1 ** 2 + metric[2, 2] * h2 ** 2 + 2 * metric[1, 2] * h1 * h2
    linear_part = 2 * (metric[0, 1] * h1 + metric[0, 2] * h2)
    for i, h0 in enumerate(h[0]):  # one plane at a time keeps memory at one plane of s^2
        s = np.sqrt(np.maximum(plane_part + h0 * linear_part + metric[0, 0] * h0 ** 2, 0))
        transmission = np.where(s <= low, 1.0,
                                0.5 * (1 + np.cos(np.pi * np.clip((s - low) / (high - low),
                                                                  0, 1))))
        coefficients[i] *= transmission.astype(np.float32)
    filtered = scipy.fft.irfftn(coefficients, s=padded.shape, workers=workers)
    crop = tuple(slice(int(m), int(m + n)) for m, n in zip(margins, shape))
    return np.ascontiguousarray(filtered[crop], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Maximum over a spherical kernel


def ball_footprint(radius: float, geometry: GridGeometry) -> np.ndarray:
    """Boolean footprint of the voxel offsets within ``radius`` (Å) of the centre voxel.

    The footprint has odd edges and is centred; for skewed (non-orthogonal) grids the ball
    is exact in Cartesian space.
    """
    inverse = np.linalg.inv(geometry.steps)
    half = np.floor(radius * np.linalg.norm(inverse, axis=0) + 1e-9).astype(int)
    offsets = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in half], indexing="ij"),
                       axis=-1)
    distance = np.linalg.norm(offsets @ geometry.steps, axis=-1)
    return distance <= radius * (1 + 1e-9)


@dataclass(frozen=True)
class _Run:
    """Offsets along axis 1 and the contiguous span [first, last] along axis 2 of one row."""

    offset1: int
    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def _footprint_planes(footprint: np.ndarray) -> dict[tuple[_Run, ...], list[int]]:
    """Group the axis-0 offsets of a convex footprint by the set of rows of their plane."""
    half = np.array(footprint.shape) // 2
    planes: dict[tuple[_Run, ...], list[int]] = defaultdict(list)
    for i in range(footprint.shape[0]):
        runs = []
        for j in range(footprint.shape[1]):
            inside = np.flatnonzero(footprint[i, j])
            if inside.size == 0:
                continue
            if inside[-1] - inside[0] + 1 != inside.size:
                raise ValueError("kernel footprint rows must be contiguous (convex kernel)")
            runs.append(_Run(int(j - half[1]), int(inside[0] - half[2]),
                             int(inside[-1] - half[2])))
        if runs:
            planes[tuple(runs)].append(int(i - half[0]))
    return planes


def kernel_maximum(values: np.ndarray, footprint: np.ndarray, periodic: bool,
                   workers: int = 1) -> np.ndarray:
    """Exact maximum of ``values`` over a convex ``footprint`` centred on every voxel.

    Equivalent to ``scipy.ndimage.maximum_filter(values, footprint=footprint, mode="wrap")``
    for periodic grids and, for boxes, to the maximum over the part of the footprint inside
    the box.  The footprint is decomposed into rows along the last axis: running maxima of
    each needed row length are built by doubling, rows are combined into one maximum per
    distinct plane of the footprint, and planes into the result, all as shifted-slice
    ``np.maximum`` calls over slabs of axis 0 that run in ``workers`` threads.
    """
    values = np.asarray(values, dtype=np.float32)
    half = [n // 2 for n in footprint.shape]
    widths = [(int(h), int(h)) for h in half]
    padded = (np.pad(values, widths, mode="wrap") if periodic else
              np.pad(values, widths, mode="constant", constant_values=-np.inf))
    planes = _footprint_planes(footprint)
    lengths = sorted({run.length for runs in planes for run in runs})
    n0, n1, n2 = values.shape
    result = np.empty_like(values)
    thickness = max(16, 2 * half[0])  # slabs of axis 0; thinner ones repeat more halo work

    def run_maxima(slab: np.ndarray) -> dict[int, np.ndarray]:
        """{length: array whose [..., k] is the maximum of slab[..., k:k + length]}."""
        maxima = {1: slab}
        power = 1
        while power * 2 <= lengths[-1]:
            previous = maxima[power]
            maxima[power * 2] = np.maximum(previous[..., :-power], previous[..., power:])
            power *= 2
        for length in lengths:
            if length not in maxima:
                base = 1 << (length.bit_length() - 1)
                span = slab.shape[2] - length + 1
                maxima[length] = np.maximum(maxima[base][..., :span],
                                            maxima[base][..., length - base:length - base + span])
        return maxima

    def process(start: int) -> None:
        stop = min(start + thickness, n0)
        slab = padded[start:stop + 2 * half[0]]
        maxima = run_maxima(slab)
        out = result[start:stop]
        out.fill(-np.inf)
        for runs, offsets0 in planes.items():
            rows = slice(min(offsets0) + half[0], max(offsets0) + half[0] + stop - start)
            plane = np.full((rows.stop - rows.start, n1, n2), -np.inf, dtype=np.float32)
            for run in runs:
                j = run.offset1 + half[1]
                k = run.first + half[2]
                np.maximum(plane, maxima[run.length][rows, j:j + n1, k:k + n2], out=plane)
            for offset0 in offsets0:
                first = offset0 + half[0] - rows.start
                np.maximum(out, plane[first:first + stop - start], out=out)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(process, range(0, n0, thickness)))
    return result


# ----------------------------------------------------------------------------------------------
# Local scale


def default_tau(kernel_voxels: int) -> float:
    """Quantile that the maximum of ``kernel_voxels`` white-noise values exceeds with
    probability NOISE_EXCEEDANCE."""
    return float((1.0 - NOISE_EXCEEDANCE) ** (1.0 / kernel_voxels))


def tile_edge(tau: float, kernel_diameter_voxels: int) -> int:
    """Edge (voxels) of cubic tiles big enough to hold VOXELS_ABOVE_QUANTILE voxels above
    the ``tau`` quantile, and at least two kernel diameters."""
    voxels = VOXELS_ABOVE_QUANTILE / max(1.0 - tau, 1e-12)
    return int(max(2 * kernel_diameter_voxels, math.ceil(voxels ** (1 / 3))))


@dataclass
class Reference:
    """The full-scale reference level and the tile it was found in."""

    level: float
    tau: float
    tile_edge: int
    tile_start: tuple[int, int, int]
    tile_stop: tuple[int, int, int]
    n_tiles: int


def reference_level(values: np.ndarray, tau: float, edge: int) -> Reference:
    """Highest ``tau`` quantile of ``values`` over a tiling of the grid into near-cubes of
    about ``edge`` voxels (a grid smaller than a tile along an axis is one tile along it)."""
    bounds = [np.linspace(0, n, max(1, n // edge) + 1).round().astype(int) for n in values.shape]
    tiles = [[(int(a), int(b)) for a, b in zip(axis[:-1], axis[1:])] for axis in bounds]
    best_level, best_tile = -np.inf, None
    for tile in itertools.product(*tiles):
        level = float(np.quantile(values[tuple(slice(a, b) for a, b in tile)], tau))
        if level > best_level:
            best_level, best_tile = level, tile
    return Reference(best_level, tau, edge, tuple(a for a, _ in best_tile),
                     tuple(b for _, b in best_tile), math.prod(len(axis) for axis in tiles))


def scale_from_local_maximum(local_maximum: np.ndarray, reference: float) -> np.ndarray:
    """S = clip(local maximum / reference, 0, 1) as float32."""
    if not reference > 0:
        raise Sorry(f"The full-scale reference level is {reference:.4g}, not positive: the "
                    f"map has no density above zero; check its sign and offset.")
    scale = local_maximum / np.float32(reference)
    return np.clip(scale, 0, 1, out=scale)


# ----------------------------------------------------------------------------------------------
# Solvent model and confidence


@dataclass
class SolventModel:
    """Gaussian model of the solvent peak of a map's histogram and the confidence curve.

    ``counts`` is the histogram of all (sampled) voxels at ``centres``; ``solvent`` the
    fitted Gaussian's share of it; ``confidence`` the probability that a voxel of that value
    is not solvent, made non-decreasing.
    """

    mean: float
    sigma: float
    peak_share: float  # share of the voxels under the solvent Gaussian (not the solvent fraction)
    centres: np.ndarray
    counts: np.ndarray
    solvent: np.ndarray
    confidence: np.ndarray
    sampled_voxels: int

    def confidence_of(self, values: np.ndarray, hedge: float = 1.0) -> np.ndarray:
        """Confidence (0-1, non-decreasing in value) of each of ``values`` (float32), from the
        curve raised to the power ``hedge``: linear between bin centres, the end values
        beyond them."""
        curve = (self.confidence ** hedge).astype(np.float32)
        slope = np.diff(curve, append=curve[-1])
        first = np.float32(self.centres[0])
        per_bin = np.float32(1.0 / (self.centres[1] - self.centres[0]))
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        confidence = np.empty(flat.shape, dtype=np.float32)
        for start in range(0, flat.size, INTERPOLATION_CHUNK):
            position = (flat[start:start + INTERPOLATION_CHUNK] - first) * per_bin
            np.clip(position, 0, curve.size - 1, out=position)
            index = position.astype(np.intp)
            position -= index
            position *= slope[index]
            position += curve[index]
            confidence[start:start + INTERPOLATION_CHUNK] = position
        return confidence.reshape(np.shape(values))

    def level_at_confidence(self, confidence: float) -> float:
        """Lowest value whose confidence reaches ``confidence``."""
        reached = np.flatnonzero(self.confidence >= confidence)
        return float(self.centres[reached[0]]) if reached.size else float(self.centres[-1])


def regular_sample(values: np.ndarray, size: int) -> np.ndarray:
    """Every k-th value of ``values`` (flattened), about ``size`` of them."""
    flat = values.ravel()
    return flat[:: max(1, flat.size // size)]


def _gaussian(x, amplitude, mean, sigma):
    return amplitude * np.exp(-0.5 * ((x - mean) / sigma) ** 2)


def fit_solvent(values: np.ndarray, solvent_voxels: np.ndarray | None = None) -> SolventModel:
    """Fit a Gaussian to the solvent peak of the histogram of ``values``.

    The mean and width come from ``values[solvent_voxels]`` when a boolean selection is
    given, else from all values: start at the histogram's mode, take the width from the
    values below it (solvent-dominated), then least-squares fit the bins up to one sigma
    above the mean.  The amplitude is then fitted to the histogram of all values below the
    mean, so the model counts all solvent voxels, marked or not.  The confidence of a value
    v is 1 - solvent(v) / histogram(v), 1 where the model expects under half a voxel per bin,
    and is made non-decreasing by taking at each value the minimum over all higher values.
    """
    everything = regular_sample(values, SOLVENT_SAMPLE)
    defined = (everything if solvent_voxels is None else
               regular_sample(values[solvent_voxels], SOLVENT_SAMPLE))
    if defined.size < 100:
        raise Sorry("Too few solvent voxels to fit the solvent model: the solvent-definition "
                    "mask marks almost nothing as solvent; check its polarity "
                    "(solvent.mask_marks).")
    mean, sigma = _initial_solvent_estimate(defined)
    for _ in range(2):
        width = sigma / BINS_PER_SIGMA
        edges = np.arange(mean - 6 * sigma, mean + 6 * sigma + width, width)
        counts, _ = np.histogram(defined, bins=edges)
        centres = 0.5 * (edges[1:] + edges[:-1])
        used = centres <= mean + sigma
        try:
            (_, mean, sigma), _ = scipy.optimize.curve_fit(
                _gaussian, centres[used], counts[used], p0=(counts.max(), mean, sigma),
                sigma=np.sqrt(counts[used] + 1.0))
        except RuntimeError as error:
            raise Sorry("The solvent peak of the map's histogram could not be fitted by a "
                        "Gaussian: the map may be masked or solvent-flattened; give an "
                        "unmasked map.") from error
        sigma = abs(float(sigma))
        if not sigma > 0:
            raise Sorry("The fitted solvent peak has no width: the map looks masked or "
                        "solvent-flattened; give an unmasked map.")
    width = sigma / BINS_PER_SIGMA
    low, high = float(everything.min()), float(everything.max())
    n_bins = int(min(100_000, max(10, math.ceil((high - low) / width))))
    counts, edges = np.histogram(everything, bins=n_bins, range=(low, high))
    centres = 0.5 * (edges[1:] + edges[:-1])
    shape = _gaussian(centres, 1.0, mean, sigma)
    below = centres <= mean
    amplitude = float(np.sum(counts[below] * shape[below]) / max(np.sum(shape[below] ** 2),
                                                                 1e-30))
    solvent = amplitude * shape
    smoothed = scipy.ndimage.gaussian_filter1d(counts.astype(float), 1.0, mode="constant")
    confidence = np.where(solvent < 0.5, 1.0,
                          1.0 - solvent / np.maximum(np.maximum(smoothed, solvent), 1e-30))
    confidence = np.minimum.accumulate(confidence[::-1])[::-1]
    fraction = min(1.0, float(solvent.sum() / max(counts.sum(), 1)))
    return SolventModel(float(mean), sigma, fraction, centres, counts, solvent, confidence,
                        int(everything.size))


def _initial_solvent_estimate(values: np.ndarray) -> tuple[float, float]:
    """Mode of the histogram and the width of the values below it (the solvent side)."""
    low, high = np.quantile(values, [0.001, 0.999])
    if not high > low:
        raise Sorry("The map is (nearly) constant: there is no density to scale.")
    counts, edges = np.histogram(values, bins=256, range=(low, high))
    smoothed = scipy.ndimage.gaussian_filter1d(counts.astype(float), 2.0)
    mode = float(0.5 * (edges[smoothed.argmax()] + edges[smoothed.argmax() + 1]))
    below = values[values < mode]
    # Of a Gaussian's values below its mean, the fraction 0.3173 lies below mean - sigma.
    sigma = mode - float(np.quantile(below, 0.3173)) if below.size else 0.0
    if not sigma > 0:
        raise Sorry("The solvent peak of the map's histogram has no width: the map looks "
                    "masked or solvent-flattened; give an unmasked map.")
    return mode, sigma


def solvent_voxels_from_mask(mask: np.ndarray, lowpassed: np.ndarray,
                             marks: str = "auto") -> tuple[np.ndarray, str]:
    """Boolean solvent selection from a solvent-definition mask of either polarity.

    Voxels above the mask's half height are "marked"; ``marks`` says whether they are
    solvent or molecule, or ``auto``: the side with the lower median low-passed density is
    solvent.  Returns the selection and what the marked voxels were taken to be.
    """
    low, high = float(mask.min()), float(mask.max())
    if not high > low:
        raise Sorry("The solvent-definition mask is constant: it marks no region; give a "
                    "mask that separates molecule from solvent.")
    marked = mask > 0.5 * (low + high)
    if marks == "auto":
        marks = ("solvent" if np.median(lowpassed[marked]) < np.median(lowpassed[~marked])
                 else "molecule")
    return (marked if marks == "solvent" else ~marked), marks


# ----------------------------------------------------------------------------------------------
# Modification


def scale_factor(scale: np.ndarray, mode: str, power: float, pivot: float,
                 scale_limit: float) -> np.ndarray:
    """Factor by which each voxel of scale S is multiplied, before confidence weighting.

    amplify: S^(1/power - 1); attenuate: S^(power - 1); sigmoid: T(S)/S where T maps
    [0, 1] onto itself through a sigmoid with slope ``power`` at its fixed point ``pivot``
    (T(S) = p (S/p)^power below p, 1 - (1-p) ((1-S)/(1-p))^power above).  Voxels with
    S <= scale_limit keep factor 1.
    """
    if mode not in MODES:
        raise ValueError(f"unknown modification mode {mode!r}; expected one of {MODES}")
    if mode == "none":
        return np.ones_like(scale, dtype=np.float32)
    # Voxels at or below the limit get factor 1 at the end; flooring S there keeps the powers
    # finite.
    s = np.maximum(scale, np.float32(max(scale_limit, 1e-30)), dtype=np.float32)
    if mode == "amplify":
        factor = np.power(s, np.float32(1.0 / power - 1.0))
    elif mode == "attenuate":
        factor = np.power(s, np.float32(power - 1.0))
    else:
        lower = pivot * np.power(s / np.float32(pivot), np.float32(power))
        upper = 1 - (1 - pivot) * np.power((1 - s) / np.float32(1 - pivot), np.float32(power))
        factor = np.where(s <= pivot, lower, upper).astype(np.float32, copy=False)
        factor /= s
    np.copyto(factor, np.float32(1), where=scale <= scale_limit)
    return factor


def modify_map(values: np.ndarray, scale: np.ndarray, confidence: np.ndarray, mode: str,
               power: float, pivot: float, scale_limit: float,
               exclude_solvent: bool) -> np.ndarray:
    """Multiply ``values`` by the scale factor weighted by the confidence c:
    out = values (1 + c (factor - 1)), times c when ``exclude_solvent``; clipped to the range
    of ``values``."""
    factor = scale_factor(scale, mode, power, pivot, scale_limit)
    factor -= 1
    factor *= confidence
    factor += 1
    if exclude_solvent:
        factor *= confidence
    out = values * factor
    return np.clip(out, values.min(), values.max(), out=out)


# ----------------------------------------------------------------------------------------------
# The whole estimate


@dataclass
class LocalScaleResult:
    """Scale, confidence and (optionally) modified map of one input, with detected levels."""

    scale: np.ndarray
    confidence: np.ndarray
    modified: np.ndarray | None
    solvent: SolventModel
    reference: Reference
    lowpass_resolution: float
    kernel_radius: float
    kernel_voxels: int
    mask_marks: str | None
    timings: dict[str, float] = field(default_factory=dict)

    @cached_property
    def levels(self) -> dict:
        """Every detected level and derived setting, for the run record."""
        confident = self.scale[self.confidence >= 0.5]
        return {
            "lowpass_resolution_A": self.lowpass_resolution,
            "kernel_radius_A": self.kernel_radius,
            "kernel_voxels": self.kernel_voxels,
            "tau": self.reference.tau,
            "tile_edge_voxels": self.reference.tile_edge,
            "tiles": self.reference.n_tiles,
            "reference_level": self.reference.level,
            "reference_tile_start": self.reference.tile_start,
            "reference_tile_stop": self.reference.tile_stop,
            "solvent_mean": self.solvent.mean,
            "solvent_sigma": self.solvent.sigma,
            "solvent_peak_share": self.solvent.peak_share,
            "solvent_voxels_sampled": self.solvent.sampled_voxels,
            "solvent_mask_marks": self.mask_marks,
            "confidence_0.5_level": self.solvent.level_at_confidence(0.5),
            "confidence_0.99_level": self.solvent.level_at_confidence(0.99),
            "confident_fraction": float(np.mean(self.confidence >= 0.5)),
            "scale_median_where_confident": (float(np.median(confident)) if confident.size
                                             else None),
        }


def check_settings(params, geometry: GridGeometry) -> None:
    """Raise Sorry naming the parameter if any setting in ``params`` is out of range."""
    lowpass_resolution = params.scale.lowpass
    if lowpass_resolution is not None and lowpass_resolution < finest_lowpass(geometry):
        raise Sorry(f"scale.lowpass={lowpass_resolution:g} A is finer than this grid can hold "
                    f"(voxels of {geometry.pixel_sizes.max():.3g} A): set it to at least "
                    f"{finest_lowpass(geometry):.3g} A.")
    radius = params.scale.kernel_radius
    if radius is not None and radius < geometry.pixel_sizes.min():
        raise Sorry(f"scale.kernel_radius={radius:g} A is smaller than one voxel "
                    f"({geometry.pixel_sizes.min():.3g} A): set it to a few voxels or leave "
                    f"it unset.")
    if params.scale.tau is not None and not 0 < params.scale.tau < 1:
        raise Sorry(f"scale.tau={params.scale.tau:g} is not a quantile strictly between 0 and "
                    f"1: set e.g. scale.tau=0.999 or leave it unset.")
    if params.solvent.hedge_confidence < 1:
        raise Sorry(f"solvent.hedge_confidence={params.solvent.hedge_confidence:g} is below "
                    f"1: use 1 (no hedging) or more.")
    if params.modify.power < 1:
        raise Sorry(f"modify.power={params.modify.power:g} is below 1: use a power >= 1 and "
                    f"choose the direction with modify.mode.")
    if not 0 < params.modify.pivot < 1:
        raise Sorry(f"modify.pivot={params.modify.pivot:g} is not strictly between 0 and 1: "
                    f"set a scale such as 0.5.")
    if not 0 <= params.modify.scale_limit < 1:
        raise Sorry(f"modify.scale_limit={params.modify.scale_limit:g} is not in [0, 1): "
                    f"set e.g. 0.05.")


def peak_memory(shape, params, geometry: GridGeometry) -> float:
    """Estimated peak memory (bytes) of ``estimate_local_scale`` on a grid of ``shape``: the
    kernel's offsets and distances, the padded map and its running maxima over one slab, and
    the maps kept (input, low-passed, scale, confidence, modified), all float32."""
    radius = params.scale.kernel_radius or (params.scale.lowpass
                                            or default_lowpass(geometry)) / 2
    half = np.floor(radius * np.linalg.norm(np.linalg.inv(geometry.steps), axis=0)) + 1
    kernel = float(np.prod(2 * half + 1)) * 7 * 8  # offsets (3 int64), distances, products
    padded = float(np.prod(np.asarray(shape) + 2 * half)) * 4
    slab = (max(16, 2 * half[0]) + 2 * half[0]) * (shape[1] + 2 * half[1]) * (
        shape[2] + 2 * half[2]) * 4 * (2 + np.log2(max(2 * half[2] + 1, 2)))
    return kernel + padded + slab + 6 * float(np.prod(shape)) * 4


def estimate_local_scale(values: np.ndarray, geometry: GridGeometry, params,
                         solvent_mask: np.ndarray | None = None, log: TextIO | None = None
                         ) -> LocalScaleResult:
    """Local scale, confidence and (when asked for) modified map of ``values``.

    ``params`` is the program's PHIL extract (scopes scale, solvent, modify and nproc; see
    ``meteor_cctbx.phil.default_params("local_scale")``); ``solvent_mask`` an optional
    solvent-definition mask on the same grid.  ``log`` (file-like, as every module's log;
    None: silent) receives one line per step.
    """
    check_settings(params, geometry)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 3:
        raise Sorry(f"The map has {values.ndim} dimensions, not 3.")
    if not np.isfinite(values).all():
        raise Sorry("The map contains NaN or infinite values: repair or recompute it.")
    workers = params.nproc or fft_workers()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def step(name: str, message: str) -> None:
        """Record the time since the previous step under ``name`` and log ``message``."""
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        print(f"  {message}: {now - clock:.2f} s", file=log or null_out())
        clock = now

    resolution = params.scale.lowpass or default_lowpass(geometry)
    lowpassed = lowpass(values, geometry, resolution, workers)
    step("lowpass", f"low-pass to {resolution:.2f} A")

    radius = params.scale.kernel_radius or resolution / 2
    footprint = ball_footprint(radius, geometry)
    kernel_voxels = int(footprint.sum())
    source = lowpassed if params.scale.source == "lowpass" else values
    local_maximum = kernel_maximum(source, footprint, geometry.periodic, workers)
    step("kernel_maximum", f"maximum over a {radius:.2f} A sphere ({kernel_voxels} voxels)")

    tau = params.scale.tau or default_tau(kernel_voxels)
    reference = reference_level(source, tau, tile_edge(tau, max(footprint.shape)))
    scale = scale_from_local_maximum(local_maximum, reference.level)
    del local_maximum
    step("reference", f"reference level {reference.level:.4g} (quantile {tau:.6f} over "
         f"{reference.n_tiles} tiles)")

    marks = None
    solvent_voxels = None
    if solvent_mask is not None:
        solvent_voxels, marks = solvent_voxels_from_mask(solvent_mask, lowpassed,
                                                         params.solvent.mask_marks)
    solvent = fit_solvent(lowpassed, solvent_voxels)
    confidence = solvent.confidence_of(lowpassed, params.solvent.hedge_confidence)
    del lowpassed
    step("solvent_model", f"solvent model mean {solvent.mean:.4g}, sigma "
         f"{solvent.sigma:.4g}, peak share {solvent.peak_share:.2f}")

    modified = None
    if params.modify.mode != "none" or params.solvent.exclude:
        modified = modify_map(values, scale, confidence, params.modify.mode,
                              params.modify.power, params.modify.pivot,
                              params.modify.scale_limit, params.solvent.exclude)
        step("modification", f"modification ({params.modify.mode}"
             f"{', solvent excluded' if params.solvent.exclude else ''})")
    return LocalScaleResult(scale, confidence, modified, solvent, reference, resolution,
                            radius, kernel_voxels, marks, timings)
