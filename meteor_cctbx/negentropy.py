"""Negentropy: the map-quality score maximised to choose k-weights, TV weights and sharpening.

J = ½·ln(2πe·σ²) − H, where H is the differential entropy of the voxel values and σ² their
variance.  J ≥ 0, equals 0 for Gaussian noise, grows as the value distribution departs from a
Gaussian (sparse, peaky signal), and does not change when the map is scaled or shifted.
"""
from __future__ import annotations

import math

import numpy as np

from meteor_cctbx import voxel_statistics

GAUSSIAN_ENTROPY_UNIT = 0.5 * math.log(2.0 * math.pi * math.e)  # entropy of N(0, 1), nats


def standardized_entropy(values: np.ndarray) -> float:
    """Differential entropy (nats) of ``values`` scaled to unit standard deviation.

    A plug-in estimator on a linearly binned histogram (each value shares its weight between the
    two nearest bin centres) with Scott's bin width, 3.49 n^(-1/3) in units of sigma.  Linear
    binning makes the estimate a continuous function of the values, so scans over a parameter
    give smooth curves; it costs O(n) with no sort (~10x faster than scipy's Vasicek estimator
    on a map, whose argmax it reproduces: tests/test_negentropy.py).  -inf for a constant map.
    """
    flat = np.asarray(values).ravel()
    n = flat.size
    if n < 2:
        raise ValueError("negentropy needs at least two values")
    _, std, lowest, highest = voxel_statistics.moments(flat)
    if not math.isfinite(std):
        raise ValueError("map contains NaN or infinite values")
    if std == 0.0:
        return -math.inf
    bin_width = 3.49 * n ** (-1.0 / 3.0)  # in units of sigma
    counts = voxel_statistics.linear_histogram(flat, lowest, std * bin_width, highest)
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum() + math.log(bin_width))


def negentropy(values: np.ndarray) -> float:
    """Negentropy J (nats) of the distribution of ``values`` (any shape; e.g. a map grid)."""
    return GAUSSIAN_ENTROPY_UNIT - standardized_entropy(values)
