"""Choosing denoising parameters by validation against held-out reflections.

A seeded random ``FreeSet`` of the difference coefficients is left out, in K disjoint folds
(3 of 10 % by default): for each fold the map of the other, working reflections is denoised,
and the denoised map's Fourier coefficients at that fold's reflections are compared with the
measured ones; the folds are pooled into one score.  Those coefficients never
entered the map, so their noise is independent of the prediction, and the score

    CC_free = sum_free m Re(conj(P) D) / sqrt(sum_free m |P|^2 . sum_free m |D|^2)

(m: multiplicity of each reflection in the unit cell, P predicted, D measured) estimates, up to
a factor that does not depend on the parameter, the correlation of the prediction with the
true difference: E[Re(conj(P) D)] = Re(conj(P) D_true).  It is scale-free, like the map
correlation it stands for.  This is the hold-out ("noise2self") principle of cross-validation
applied to Fourier coefficients; unlike negentropy it does not keep rising as the map is
flattened into a few blobs.

One 10 % fold was too noisy on weak changes (free-set seeds moved the chosen map's CC with
the truth from 0.24 to 0.75 on one case of the benchmark family); pooling three folds cuts
the variance at three denoisings per scan point.  Its noise is estimated by a bootstrap over
the free reflections: the standard error of one
score, or (paired) of the difference between two scan points' scores.  A choice whose scores
differ by less than that is not determined by the data, and a simpler rule decides instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np
from cctbx import miller

from meteor_cctbx.grid import CellGrid


@dataclass(frozen=True)
class FreeSet:
    """Which reflections of a set are held out, in ``n_folds`` disjoint folds of ``fraction``
    each (``fold``: the fold of each reflection, -1 for those never held out), and the
    multiplicities of the held-out (``free``) ones."""

    fold: np.ndarray            # int, one per reflection of the set
    multiplicities: np.ndarray  # float, one per free reflection
    fraction: float
    seed: int
    n_folds: int = 1

    @classmethod
    def draw(cls, miller_set: miller.set, fraction: float = 0.1, seed: int = 0,
             n_folds: int = 1) -> "FreeSet":
        """``n_folds`` disjoint random folds of ``fraction`` of the reflections of
        ``miller_set`` each (seeded: the same set and seed always give the same folds; the
        first fold does not depend on ``n_folds``)."""
        if not 0 < fraction < 1:
            raise ValueError(f"free fraction must be between 0 and 1, got {fraction}")
        if n_folds < 1 or n_folds * fraction >= 1:
            raise ValueError(f"{n_folds} folds of {fraction:.0%} do not fit in the data: "
                             f"folds x fraction must stay below 1")
        uniform = np.random.default_rng(seed).random(miller_set.size())
        fold = np.floor(uniform / fraction).astype(np.int64)
        fold[fold >= n_folds] = -1
        counts = np.bincount(fold[fold >= 0], minlength=n_folds)
        if counts.min() < 2 or (fold < 0).sum() < 2:
            raise ValueError(f"{miller_set.size()} reflections are too few to hold out "
                             f"{n_folds} x {fraction:.0%} for validation")
        multiplicities = miller_set.multiplicities().data().as_numpy_array()[fold >= 0]
        return cls(fold, multiplicities.astype(np.float64), fraction, seed, n_folds)

    @property
    def free(self) -> np.ndarray:
        """Bool, one per reflection: held out in some fold."""
        return self.fold >= 0

    @property
    def n_free(self) -> int:
        return int(self.free.sum())

    def working(self, coefficients: np.ndarray, fold: int | None = None) -> np.ndarray:
        """``coefficients`` with the reflections of ``fold`` (of every fold when None) set to
        zero."""
        held_out = self.free if fold is None else self.fold == fold
        return np.where(held_out, 0, coefficients)


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
    predictions: dict[Hashable, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.free_target = np.asarray(self.target)[self.free_set.free]

    def working_maps(self, coefficients: np.ndarray) -> list[np.ndarray]:
        """One map of ``coefficients`` per fold, each without that fold's reflections."""
        return [self.grid.to_map(self.free_set.working(coefficients, fold))
                for fold in range(self.free_set.n_folds)]

    def score(self, parameter: Hashable, denoised_working_maps: Sequence[np.ndarray]) -> float:
        """CC_free pooled over the folds: each fold's free reflections predicted by the
        denoised map that left them out (``denoised_working_maps``, in fold order); recorded
        under ``parameter``."""
        fold = self.free_set.fold[self.free_set.free]
        predicted = np.zeros(fold.size, complex)
        for number, denoised in enumerate(denoised_working_maps):
            in_fold = fold == number
            predicted[in_fold] = self.grid.to_coefficients(denoised)[self.free_set.fold == number]
        self.predictions[parameter] = predicted
        return free_correlation(predicted, self.free_target, self.free_set.multiplicities)

    def difference_error(self, a: Hashable, b: Hashable | None = None) -> float:
        """Bootstrap standard error of CC_free(a) - CC_free(b) (paired over free
        reflections), or of CC_free(a) itself when ``b`` is None."""
        return self.difference_errors(a, [b])[0]

    def difference_errors(self, a: Hashable, others: Sequence[Hashable | None]) -> list[float]:
        """difference_error(a, b) for every b of ``others``, from one set of resamples (the
        same resamples every call: the seed fixes them)."""
        rng = np.random.default_rng([self.free_set.seed, 99])
        n = self.free_set.n_free
        weights = self.free_set.multiplicities
        differences = np.empty((len(others), self.n_bootstrap))
        for i in range(self.n_bootstrap):  # resamples of the free reflections, not voxels
            counts = np.bincount(rng.integers(0, n, n), minlength=n) * weights
            score_a = free_correlation(self.predictions[a], self.free_target, counts)
            for j, b in enumerate(others):
                differences[j, i] = score_a - (0.0 if b is None else free_correlation(
                    self.predictions[b], self.free_target, counts))
        return [float(row.std()) for row in differences]
