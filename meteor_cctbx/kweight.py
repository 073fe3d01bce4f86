"""k-weighting of difference structure factors and the choice of k by negentropy.

w = 1 / (1 + sigma_D^2/<sigma_D^2> + k |dF|^2/<|dF|^2>), normalised to mean 1, where dF is the
difference amplitude (derivative minus native) and sigma_D = sqrt(sigma_der^2 + sigma_nat^2).
k = 0 still down-weights reflections with large sigmas: it is not the same as no weighting.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from meteor_cctbx.grid import CellGrid
from meteor_cctbx.maximize import ScanPoint, ScanResult, maximize_scalar
from meteor_cctbx.negentropy import negentropy


def kweights(delta_f: np.ndarray, sigma_delta: np.ndarray, k: float) -> np.ndarray:
    """k-weights (mean 1) for difference amplitudes ``delta_f`` with errors ``sigma_delta``."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    delta_sq = np.abs(delta_f) ** 2
    sigma_sq = np.asarray(sigma_delta, dtype=np.float64) ** 2
    mean_sigma_sq = sigma_sq.mean()
    mean_delta_sq = delta_sq.mean()
    w = 1.0 / (1.0 + (sigma_sq / mean_sigma_sq if mean_sigma_sq > 0 else 0.0)
               + (k * delta_sq / mean_delta_sq if mean_delta_sq > 0 else 0.0))
    return w / w.mean()


def optimize_k(coefficients: np.ndarray, sigma_delta: np.ndarray, grid: CellGrid,
               k_max: float = 1.0, tolerance: float = 0.02,
               report: Callable[[ScanPoint], None] | None = None) -> ScanResult:
    """Scan k in [0, k_max] for the k-weighted difference map of highest negentropy.

    ``coefficients`` are the complex unweighted difference coefficients on ``grid``'s set.
    """
    def score(k: float) -> float:
        return negentropy(grid.to_map(coefficients * kweights(coefficients, sigma_delta, k)))

    return maximize_scalar(score, 0.0, k_max, name="k_parameter", n_coarse=11,
                           tolerance=tolerance, report=report)
