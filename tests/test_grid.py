"""Map coefficients <-> unit-cell grid: agreement with cctbx's FFT and exact round trips."""
import numpy as np
import pytest
from cctbx import crystal, maptbx, miller
from cctbx.development import random_structure

from meteor_cctbx.grid import CellGrid


def f_calc(space_group: str, cell, d_min: float = 2.5) -> miller.array:
    symmetry = crystal.symmetry(unit_cell=cell, space_group_symbol=space_group)
    structure = random_structure.xray_structure(
        space_group_info=symmetry.space_group_info(), unit_cell=symmetry.unit_cell(),
        elements=["C", "N", "O", "S"] * 5, random_u_iso=True)
    return structure.structure_factors(d_min=d_min, algorithm="direct").f_calc()


CASES = [("P 1", (20, 22, 25, 80, 95, 100)), ("P 21 21 21", (20, 24, 26, 90, 90, 90)),
         ("C 1 2 1", (30, 20, 24, 90, 105, 90)), ("P 61 2 2", (22, 22, 40, 90, 90, 120)),
         ("I 41/a", (30, 30, 20, 90, 90, 90))]


@pytest.mark.parametrize("space_group, cell", CASES)
def test_map_matches_cctbx_fft(space_group, cell):
    coefficients = f_calc(space_group, cell)
    grid = CellGrid.for_set(coefficients, sampling=3)
    ours = grid.to_map(coefficients.data().as_numpy_array())
    gridding = maptbx.crystal_gridding(unit_cell=coefficients.unit_cell(),
                                       space_group_info=coefficients.space_group_info(),
                                       pre_determined_n_real=grid.n_real)
    reference = coefficients.fft_map(crystal_gridding=gridding)
    reference.apply_volume_scaling()
    expected = reference.real_map_unpadded().as_numpy_array()
    assert ours.dtype == np.float32
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("space_group, cell", CASES)
def test_round_trip_is_exact(space_group, cell):
    coefficients = f_calc(space_group, cell)
    grid = CellGrid.for_set(coefficients, sampling=2.5)
    data = coefficients.data().as_numpy_array()
    back = grid.to_coefficients(grid.to_map(data))
    assert np.abs(back - data).max() < 1e-5 * np.abs(data).max()


def test_non_symmetric_map_is_projected_onto_symmetric_coefficients():
    coefficients = f_calc("P 21 21 21", (20, 24, 26, 90, 90, 90))
    grid = CellGrid.for_set(coefficients, sampling=3)
    symmetric = grid.to_map(coefficients.data().as_numpy_array())
    noise = np.random.default_rng(0).normal(size=symmetric.shape).astype(np.float32)
    projected = grid.to_coefficients(symmetric + noise)
    again = grid.to_coefficients(grid.to_map(projected))
    assert np.allclose(projected, again, atol=1e-5 * np.abs(projected).max())


def test_anomalous_set_is_refused():
    coefficients = f_calc("P 1", (20, 22, 25, 90, 90, 90)).generate_bijvoet_mates()
    with pytest.raises(ValueError):
        CellGrid.for_set(coefficients)
