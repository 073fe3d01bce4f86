"""Threaded, deterministic statistics of map voxels: mean, standard deviation, affine rescaling
and the linearly binned histogram behind negentropy.

numpy's ``std(dtype=float64)`` of a float32 map converts it to float64 chunk by chunk and runs
single-threaded (~20 ms for 2.8 M voxels, and a scan computes several per point).  Here the
voxels are split into fixed blocks of BLOCK values, each block is summed in float64 by one
thread, and the block sums are added in block order: the result does not depend on the number
of threads.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from meteor_cctbx import numba_threads  # noqa: F401  (before any kernel runs)

BLOCK = 1 << 16  # voxels per block of the parallel sums
MAX_HISTOGRAM_CELLS = 1 << 22  # bins x blocks of linear_histogram's partial histograms (32 MB)


def _flat(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values).ravel()


@numba.njit(parallel=True, cache=True)
def _block_moments(flat: np.ndarray, shift: float) -> np.ndarray:
    """Per block of BLOCK values: sum of (x - shift), sum of (x - shift)^2, min and max."""
    n_blocks = (flat.size + BLOCK - 1) // BLOCK
    moments = np.empty((n_blocks, 4))
    for block in numba.prange(n_blocks):
        total, squares = 0.0, 0.0
        lowest, highest = np.inf, -np.inf
        for i in range(block * BLOCK, min(flat.size, (block + 1) * BLOCK)):
            value = np.float64(flat[i])
            deviation = value - shift
            total += deviation
            squares += deviation * deviation
            lowest = min(lowest, value)
            highest = max(highest, value)
        moments[block, 0] = total
        moments[block, 1] = squares
        moments[block, 2] = lowest
        moments[block, 3] = highest
    return moments


def moments(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard deviation (population), min and max of ``values`` (float64 sums)."""
    flat = _flat(values)
    if flat.size == 0:
        raise ValueError("no values")
    shift = float(flat[0])  # summing deviations from one value keeps float64 precise
    blocks = _block_moments(flat, shift)
    total, squares = math.fsum(blocks[:, 0]), math.fsum(blocks[:, 1])
    mean_deviation = total / flat.size
    variance = max(squares / flat.size - mean_deviation * mean_deviation, 0.0)
    return (shift + mean_deviation, math.sqrt(variance), float(blocks[:, 2].min()),
            float(blocks[:, 3].max()))


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (population) of ``values``."""
    mean, std, _, _ = moments(values)
    return mean, std


@numba.njit(parallel=True, cache=True)
def _affine(values: np.ndarray, offset: np.float32, scale: np.float32,
            out: np.ndarray) -> None:
    for i in numba.prange(values.size):
        out[i] = (values[i] - offset) * scale


def affine(values: np.ndarray, offset: float, scale: float, add: float = 0.0,
           in_place: bool = False) -> np.ndarray:
    """float32 ``(values - offset) * scale + add``, threaded, in the shape of ``values``;
    written over ``values`` (a C-contiguous float32 array) when ``in_place``."""
    flat = _flat(values).astype(np.float32, copy=False)
    if in_place and not np.shares_memory(flat, values):
        raise ValueError("in-place rescaling needs a C-contiguous float32 array")
    out = flat if in_place else np.empty_like(flat)
    if scale == 0:
        out.fill(add)
    else:  # (v - offset) * scale + add == (v - (offset - add / scale)) * scale
        _affine(flat, np.float32(offset - add / scale), np.float32(scale), out)
    return out.reshape(np.shape(values))


@numba.njit(parallel=True, cache=True)
def _block_linear_histograms(flat: np.ndarray, lowest: np.float32, inverse_width: np.float32,
                             size: int, block_size: int) -> np.ndarray:
    n_blocks = (flat.size + block_size - 1) // block_size
    histograms = np.zeros((n_blocks, size))
    for block in numba.prange(n_blocks):
        # a local histogram per block: numba would take "+=" on the shared array for a
        # reduction across threads (and count every value once per thread)
        counts = np.zeros(size)
        for i in range(block * block_size, min(flat.size, (block + 1) * block_size)):
            position = (flat[i] - lowest) * inverse_width
            index = int(position)
            upper_share = np.float64(position - np.float32(index))
            counts[index] += 1.0 - upper_share
            counts[index + 1] += upper_share
        histograms[block] = counts
    return histograms


def linear_histogram(values: np.ndarray, lowest: float, bin_width: float,
                     highest: float | None = None) -> np.ndarray:
    """Linearly binned histogram: each value shares its unit weight between the two bin
    centres around it (bin j centred at lowest + j * bin_width; ``lowest`` <= every value;
    ``highest``, the largest value, when the caller has it already)."""
    flat = _flat(values).astype(np.float32, copy=False)
    inverse_width = np.float32(1.0 / bin_width)
    highest = float(flat.max()) if highest is None else highest
    size = int((np.float32(highest) - np.float32(lowest)) * inverse_width) + 2
    # longer blocks when there are many bins (a map with a far outlier), so that the block
    # histograms stay within MAX_HISTOGRAM_CELLS; the blocks depend on the data, not threads
    block_size = max(BLOCK, -(-flat.size * size // MAX_HISTOGRAM_CELLS))
    blocks = _block_linear_histograms(flat, np.float32(lowest), inverse_width, size, block_size)
    return blocks.sum(axis=0)  # numpy sums the blocks in order for each bin
