"""Scaling amplitudes to a reference |F| (usually |F_model|): scalar, isotropic, anisotropic.

Scale model applied to the data: F_scaled = k * exp(-h^T beta h) * F, where beta is the
symmetric reciprocal-space tensor (beta = 2 pi^2 U*), constrained by the space group's
symmetry; isotropic: exp(-B s^2 / 4) with s = 1/d; scalar: k alone.  The fit is a linear least
squares fit of ln(F_ref / F) followed by a least-squares refinement on the amplitudes
themselves, so strong reflections dominate as they do in a map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
from cctbx import adptbx, miller
from cctbx.array_family import flex
from libtbx.utils import Sorry

SCALING_MODES = ("anisotropic", "isotropic", "scalar", "none")


@dataclass
class ScaleFit:
    """A fitted scale model and how well the scaled data match the reference."""

    mode: str
    k: float
    b_cart: tuple[float, float, float, float, float, float]  # A^2, (B11 B22 B33 B12 B13 B23)
    b_iso: float  # A^2, isotropic equivalent (trace / 3)
    r_before: float  # sum|F_ref - F| / sum F_ref before scaling
    r_after: float
    n_reflections: int
    _design_coefficients: np.ndarray  # beta in the order (h^2, k^2, l^2, 2hk, 2hl, 2kl)

    def factors(self, miller_set: miller.set) -> np.ndarray:
        """Multiplicative scale factor for every reflection of ``miller_set``."""
        if self.mode == "none":
            return np.ones(miller_set.size())
        quadratic = _quadratic_terms(miller_set)
        return self.k * np.exp(-quadratic @ self._design_coefficients)

    def apply(self, array: miller.array) -> miller.array:
        """Scaled copy of an amplitude array (sigmas scaled by the same factors)."""
        factors = self.factors(array)
        data = flex.double(array.data().as_numpy_array() * factors)
        sigmas = None if array.sigmas() is None else \
            flex.double(array.sigmas().as_numpy_array() * factors)
        return array.customized_copy(data=data, sigmas=sigmas)

    def as_dict(self) -> dict:
        return {"mode": self.mode, "k": self.k, "b_cart": list(self.b_cart),
                "b_iso": self.b_iso, "r_before": self.r_before, "r_after": self.r_after,
                "n_reflections": self.n_reflections}


def _quadratic_terms(miller_set: miller.set) -> np.ndarray:
    hkl = np.array(miller_set.indices(), dtype=np.float64).reshape(-1, 3)
    h, k, l = hkl.T
    return np.stack([h * h, k * k, l * l, 2 * h * k, 2 * h * l, 2 * k * l], axis=1)


def _basis(miller_set: miller.set, mode: str) -> np.ndarray:
    """Columns mapping the free parameters to beta's six components (6 x n_free)."""
    if mode == "scalar":
        return np.zeros((6, 0))
    if mode == "isotropic":
        # exp(-B s^2/4): s^2 = h^T G* h, so beta = B/4 * G*  (G* the reciprocal metric)
        g = miller_set.unit_cell().reciprocal_metrical_matrix()  # (a*a*, b*b*, c*c*, a*b*, ...)
        return np.array([[g[0], g[1], g[2], g[3], g[4], g[5]]]).T / 4.0
    constraints = miller_set.space_group().adp_constraints()
    n_free = constraints.n_independent_params()
    return np.array(constraints.gradient_sum_matrix()).reshape(n_free, 6).T


def fit_scale(array: miller.array, reference: miller.array, mode: str) -> ScaleFit:
    """Fit the scale model that brings amplitudes ``array`` onto amplitudes ``reference``.

    Only reflections present in both with positive amplitudes enter the fit.
    """
    if mode not in SCALING_MODES:
        raise Sorry(f"Unknown scaling.mode={mode}: choose one of {' '.join(SCALING_MODES)}.")
    data, ref = array.common_sets(reference)
    f, f_ref = data.data().as_numpy_array(), np.abs(ref.data().as_numpy_array())
    good = (f > 0) & (f_ref > 0)
    if good.sum() < 10:
        raise Sorry("Fewer than 10 reflections with positive amplitudes to fit the scale: "
                    "check that the data and the reference (model or phases) overlap.")
    f, f_ref = f[good], f_ref[good]
    r_before = float(np.abs(f_ref - f).sum() / f_ref.sum())
    if mode == "none":
        return ScaleFit("none", 1.0, (0.0,) * 6, 0.0, r_before, r_before, int(good.sum()),
                        np.zeros(6))
    basis = _basis(data, mode)
    design = _quadratic_terms(data.select(flex.bool(good))) @ basis  # n x n_free
    # linear start: ln(F_ref/F) = ln k - design @ p, weighted by F so weak data count less
    weights = np.sqrt(f / f.mean())
    lhs = np.column_stack([np.ones(len(f)), -design]) * weights[:, None]
    start, *_ = np.linalg.lstsq(lhs, np.log(f_ref / f) * weights, rcond=None)
    norm = f_ref.mean()

    def residuals(params: np.ndarray) -> np.ndarray:
        return (np.exp(params[0] - design @ params[1:]) * f - f_ref) / norm

    refined = scipy.optimize.least_squares(residuals, start, method="lm", xtol=1e-10)
    params = refined.x
    beta = basis @ params[1:]
    k = float(np.exp(params[0]))
    scaled = k * np.exp(-design @ params[1:]) * f
    b_cart = _beta_as_b_cart(beta, data.unit_cell())
    return ScaleFit(mode, k, b_cart, float(np.mean(b_cart[:3])), r_before,
                    float(np.abs(f_ref - scaled).sum() / f_ref.sum()), int(good.sum()), beta)


def _beta_as_b_cart(beta: np.ndarray, unit_cell) -> tuple:
    """beta (in the h^2, k^2, l^2, 2hk, 2hl, 2kl convention) as a Cartesian B tensor, A^2."""
    u_star = tuple(float(b) / (2 * np.pi ** 2) for b in beta)
    return tuple(float(b) for b in adptbx.u_as_b(adptbx.u_star_as_u_cart(unit_cell, u_star)))
