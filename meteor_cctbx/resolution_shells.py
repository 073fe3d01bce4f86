"""Resolution shells of equal reflection count, for statistics of reflection data by shell, and
sigmas held to the spread of the data they describe."""
from __future__ import annotations

import numpy as np

SPREAD_SHELLS = 20  # shells of sigmas_within_spread (equal counts, at least 100 reflections each)


def shell_index(d_spacings: np.ndarray, n_shells: int) -> np.ndarray:
    """The shell of each reflection (0 = lowest resolution) among ``n_shells`` of equal count
    by d-spacing (A); ties keep their order."""
    rank = np.argsort(np.argsort(-np.asarray(d_spacings), kind="stable"), kind="stable")
    return np.minimum(rank * n_shells // max(rank.size, 1), n_shells - 1)


def shell_averages(index: np.ndarray, values: np.ndarray, n_shells: int) -> np.ndarray:
    """The mean of ``values`` in each shell of ``index`` (``shell_index``), from low to high
    resolution (0 for an empty shell)."""
    return np.bincount(index, weights=values, minlength=n_shells) / \
        np.maximum(np.bincount(index, minlength=n_shells), 1)


def shell_means(d_spacings: np.ndarray, values: np.ndarray, n_shells: int) -> np.ndarray:
    """Per reflection, the mean of ``values`` over its resolution shell."""
    index = shell_index(d_spacings, n_shells)
    return shell_averages(index, values, n_shells)[index]


def sigmas_within_spread(sigmas: np.ndarray, values: np.ndarray, d_spacings: np.ndarray,
                         n_shells: int = SPREAD_SHELLS) -> tuple[np.ndarray, np.ndarray]:
    """``sigmas``, times sqrt(<values^2> / <sigmas^2>) in each resolution shell (``n_shells``
    of equal counts, fewer when a shell would hold under 100 reflections) where ``values``
    (zero-mean data whose noise ``sigmas`` state, e.g. |F_der| - |F_nat|) spread less than
    their sigmas say: noise alone cannot spread more than the data do.  Weak amplitudes, whose
    folded noise |F + e| is smaller than their sigma, and errors stated too large both do
    that.  Never lower than the noise where a shell holds signal (<values^2> includes it).
    Returns the sigmas and each shell's ratio <values^2> / <sigmas^2>, low resolution first."""
    n_shells = max(1, min(n_shells, d_spacings.size // 100))
    index = shell_index(d_spacings, n_shells)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    stated = shell_averages(index, sigmas ** 2, n_shells)
    spread = shell_averages(index, np.asarray(values, dtype=np.float64) ** 2, n_shells)
    ratios = np.divide(spread, stated, out=np.full(n_shells, np.inf), where=stated > 0)
    return sigmas * np.sqrt(np.minimum(ratios, 1.0))[index], ratios


def lowered_shells_note(ratios: np.ndarray) -> str | None:
    """What ``sigmas_within_spread`` did, for a log line ("lowered to the rms of ... in 12 of
    20 resolution shells ..."); None where it lowered nothing."""
    lowered = ratios < 1
    if not lowered.any():
        return None
    return (f"lowered to the rms of |F_der| - |F_nat| in {lowered.sum()} of {ratios.size} "
            f"resolution shells (down to x{np.sqrt(ratios.min()):.2f}): the differences "
            "spread less than their sigmas")
