"""Choosing denoising parameters by validation against held-out reflections.

A seeded random ``FreeSet`` of the difference coefficients (10 % by default) is left out: the
map of the other, working reflections is denoised, and the denoised map's Fourier coefficients
at the free reflections are compared with the measured free ones.  Those coefficients never
entered the map, so their noise is independent of the prediction, and the score

    CC_free = sum_free m Re(conj(P) D) / sqrt(sum_free m |P|^2 . sum_free m |D|^2)

(m: multiplicity of each reflection in the unit cell, P predicted, D measured) estimates, up to
a factor that does not depend on the parameter, the correlation of the prediction with the
true difference: E[Re(conj(P) D)] = Re(conj(P) D_true).  It is scale-free, like the map
correlation it stands for.  This is the hold-out ("noise2self") principle of cross-validation
applied to Fourier coefficients; unlike negentropy it does not keep rising as the map is
flattened into a few blobs.

Its noise is estimated by a bootstrap over the free reflections: the standard error of one
score, or (paired) of the difference between two scan points' scores.  A choice whose scores
differ by less than that is not determined by the data, and a simpler rule decides instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cctbx import miller

from meteor_cctbx.grid import CellGrid


@dataclass(frozen=True)
class FreeSet:
    """Which reflections of a set are held out (``free``), and their multiplicities."""

    free: np.ndarray            # bool, one per reflection of the set
    multiplicities: np.ndarray  # float, one per free reflection
    fraction: float
    seed: int

    @classmethod
    def draw(cls, miller_set: miller.set, fraction: float = 0.1, seed: int = 0) -> "FreeSet":
        """A random ``fraction`` of the reflections of ``miller_set`` (seeded: the same set and
        seed always give the same free set)."""
        if not 0 < fraction < 1:
            raise ValueError(f"free fraction must be between 0 and 1, got {fraction}")
        free = np.random.default_rng(seed).random(miller_set.size()) < fraction
        if free.sum() < 2 or (~free).sum() < 2:
            raise ValueError(f"{miller_set.size()} reflections are too few to hold out "
                             f"{fraction:.0%} for validation")
        multiplicities = miller_set.multiplicities().data().as_numpy_array()[free]
        return cls(free, multiplicities.astype(np.float64), fraction, seed)

    @property
    def n_free(self) -> int:
        return int(self.free.sum())

    def working(self, coefficients: np.ndarray) -> np.ndarray:
        """``coefficients`` with the free reflections set to zero."""
        return np.where(self.free, 0, coefficients)


def free_correlation(predicted: np.ndarray, measured: np.ndarray, weights: np.ndarray) -> float:
    """Weighted correlation of complex coefficients (see the module docstring); 0 when the
    prediction is zero."""
    norm = np.sqrt((weights * np.abs(predicted) ** 2).sum() *
                   (weights * np.abs(measured) ** 2).sum())
    if norm == 0:
        return 0.0
    return float((weights * (np.conj(predicted) * measured).real).sum() / norm)


@dataclass
class FreeScorer:
    """Scores denoised working maps against the measured free coefficients ``target`` and
    keeps every prediction, for the bootstrap estimate of the scores' noise."""

    grid: CellGrid
    free_set: FreeSet
    target: np.ndarray  # measured coefficients on the grid's set (only the free ones are used)
    n_bootstrap: int = 200
    predictions: dict[float, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.free_target = np.asarray(self.target)[self.free_set.free]

    def working_map(self, coefficients: np.ndarray) -> np.ndarray:
        """Map of ``coefficients`` without the free reflections."""
        return self.grid.to_map(self.free_set.working(coefficients))

    def score(self, parameter: float, denoised_working_map: np.ndarray) -> float:
        """CC_free of a denoised working map, recorded under ``parameter``."""
        predicted = self.grid.to_coefficients(denoised_working_map)[self.free_set.free]
        self.predictions[parameter] = predicted
        return free_correlation(predicted, self.free_target, self.free_set.multiplicities)

    def difference_error(self, a: float, b: float | None = None) -> float:
        """Bootstrap standard error of CC_free(a) - CC_free(b) (paired over free
        reflections), or of CC_free(a) itself when ``b`` is None."""
        rng = np.random.default_rng([self.free_set.seed, 99])
        n = self.free_set.n_free
        weights = self.free_set.multiplicities
        differences = np.empty(self.n_bootstrap)
        for i in range(self.n_bootstrap):  # resamples of the free reflections, not voxels
            counts = np.bincount(rng.integers(0, n, n), minlength=n) * weights
            differences[i] = free_correlation(self.predictions[a], self.free_target, counts)
            if b is not None:
                differences[i] -= free_correlation(self.predictions[b], self.free_target,
                                                   counts)
        return float(differences.std())
