"""Scaling recovers known scale factors and symmetry-constrained anisotropic B."""
import numpy as np
import pytest
from cctbx import adptbx, crystal
from cctbx.array_family import flex
from cctbx.development import random_structure
from libtbx.utils import Sorry

from meteor_cctbx.scaling import fit_scale


def reference_amplitudes(space_group: str, cell):
    symmetry = crystal.symmetry(unit_cell=cell, space_group_symbol=space_group)
    structure = random_structure.xray_structure(
        space_group_info=symmetry.space_group_info(), unit_cell=symmetry.unit_cell(),
        elements=["C", "N", "O"] * 10)
    return abs(structure.structure_factors(d_min=2.0, algorithm="fft").f_calc())


def distorted(amplitudes, k: float, b_cart):
    u_star = adptbx.u_cart_as_u_star(amplitudes.unit_cell(), adptbx.b_as_u(b_cart))
    factors = flex.exp(-2 * np.pi ** 2 * flex.double(
        [np.dot(h, np.dot(np.array([[u_star[0], u_star[3], u_star[4]],
                                    [u_star[3], u_star[1], u_star[5]],
                                    [u_star[4], u_star[5], u_star[2]]]), h))
         for h in amplitudes.indices()]))
    return amplitudes.customized_copy(data=amplitudes.data() * factors * k)


@pytest.mark.parametrize("space_group, cell, b_cart", [
    ("P 21 21 21", (30, 35, 40, 90, 90, 90), (8.0, -4.0, 2.0, 0, 0, 0)),
    ("P 1 21 1", (30, 35, 40, 90, 110, 90), (6.0, -3.0, 1.0, 0, 2.5, 0)),
])
def test_anisotropic_fit_recovers_inverse_distortion(space_group, cell, b_cart):
    reference = reference_amplitudes(space_group, cell)
    data = distorted(reference, 2.5, b_cart)
    fit = fit_scale(data, reference, "anisotropic")
    assert fit.k == pytest.approx(1 / 2.5, rel=1e-3)
    assert np.allclose(fit.b_cart, [-b for b in b_cart], atol=0.05)
    assert fit.r_after < 1e-3 < fit.r_before
    scaled = fit.apply(data)
    assert np.allclose(scaled.data().as_numpy_array(), reference.data().as_numpy_array(),
                       rtol=1e-3, atol=1e-3 * flex.max(reference.data()))


def test_isotropic_and_scalar_modes():
    reference = reference_amplitudes("P 21 21 21", (30, 35, 40, 90, 90, 90))
    data = distorted(reference, 0.3, (5.0, 5.0, 5.0, 0, 0, 0))
    iso = fit_scale(data, reference, "isotropic")
    assert iso.b_iso == pytest.approx(-5.0, abs=0.05)
    assert iso.k == pytest.approx(1 / 0.3, rel=1e-3)
    scalar = fit_scale(reference.customized_copy(data=reference.data() * 4), reference, "scalar")
    assert scalar.k == pytest.approx(0.25, rel=1e-6) and scalar.b_iso == 0
    none = fit_scale(data, reference, "none")
    assert np.array_equal(none.apply(data).data().as_numpy_array(),
                          data.data().as_numpy_array())


def test_orthorhombic_fit_keeps_symmetry_off_diagonals_zero():
    reference = reference_amplitudes("P 21 21 21", (30, 35, 40, 90, 90, 90))
    noisy = reference.customized_copy(data=reference.data() * flex.double(
        np.random.default_rng(0).uniform(0.8, 1.2, reference.size())))
    fit = fit_scale(noisy, reference, "anisotropic")
    assert np.allclose(fit.b_cart[3:], 0, atol=1e-8)


def test_bad_mode_and_no_overlap_are_sorry():
    reference = reference_amplitudes("P 21 21 21", (30, 35, 40, 90, 90, 90))
    with pytest.raises(Sorry):
        fit_scale(reference, reference, "bogus")
    low = reference.resolution_filter(d_min=4.0)
    high = reference.resolution_filter(d_max=3.0)
    with pytest.raises(Sorry):
        fit_scale(low, high, "anisotropic")
