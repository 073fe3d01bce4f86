"""Resolution shells of equal reflection count, for statistics of reflection data by shell."""
from __future__ import annotations

import numpy as np


def shell_index(d_spacings: np.ndarray, n_shells: int) -> np.ndarray:
    """The shell of each reflection (0 = lowest resolution) among ``n_shells`` of equal count
    by d-spacing (A); ties keep their order."""
    rank = np.argsort(np.argsort(-np.asarray(d_spacings), kind="stable"), kind="stable")
    return np.minimum(rank * n_shells // max(rank.size, 1), n_shells - 1)


def shell_averages(d_spacings: np.ndarray, values: np.ndarray, n_shells: int) -> np.ndarray:
    """The mean of ``values`` in each of the ``n_shells`` shells (``shell_index``), from low to
    high resolution (0 for an empty shell)."""
    index = shell_index(d_spacings, n_shells)
    return np.bincount(index, weights=values, minlength=n_shells) / \
        np.maximum(np.bincount(index, minlength=n_shells), 1)


def shell_means(d_spacings: np.ndarray, values: np.ndarray, n_shells: int) -> np.ndarray:
    """Per reflection, the mean of ``values`` over its resolution shell."""
    return shell_averages(d_spacings, values, n_shells)[shell_index(d_spacings, n_shells)]
