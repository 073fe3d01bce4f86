"""Map-quality measures used by tests and benchmarks: correlation of two maps (over the cell or
near given atoms) and the share of a map's variance near given atoms (where a difference
signal is expected)."""
from __future__ import annotations

import numpy as np
from cctbx import maptbx, miller
from cctbx.array_family import flex

from meteor_cctbx.grid import CellGrid


def map_correlation(coefficients_a: miller.array, coefficients_b: miller.array,
                    sampling: float = 3.0) -> float:
    """Correlation of the unit-cell maps of two sets of map coefficients (common reflections)."""
    a, b = coefficients_a.common_sets(coefficients_b)
    grid = CellGrid.for_set(a, sampling=sampling)
    map_a = grid.to_map(a.data().as_numpy_array())
    map_b = grid.to_map(b.data().as_numpy_array())
    return float(np.corrcoef(map_a.ravel(), map_b.ravel())[0, 1])


def voxels_near(miller_set: miller.set, grid: CellGrid, sites_cart, radius: float
                ) -> np.ndarray:
    """Flat indices of the grid's voxels within ``radius`` A of any symmetry copy of the sites
    (Cartesian, A)."""
    unit_cell = miller_set.unit_cell()
    sites_frac = unit_cell.fractionalize(flex.vec3_double(sites_cart))
    copies = flex.vec3_double()
    for operation in miller_set.space_group().all_ops():
        copies.extend(flex.vec3_double([operation * site for site in sites_frac]))
    inside = maptbx.grid_indices_around_sites(
        unit_cell=unit_cell, fft_n_real=grid.n_real, fft_m_real=grid.n_real,
        sites_cart=unit_cell.orthogonalize(copies),
        site_radii=flex.double(copies.size(), radius))
    return np.unique(np.array(inside, dtype=np.int64))


def variance_fraction_near(coefficients: miller.array, sites_cart, radius: float = 4.0,
                           sampling: float = 3.0) -> float:
    """Fraction of the map's sum of squares within ``radius`` A of any symmetry copy of the
    sites (Cartesian, A): how much of a difference map sits where the signal is expected."""
    grid = CellGrid.for_set(coefficients, sampling=sampling)
    values = grid.to_map(coefficients.data().as_numpy_array()).astype(np.float64)
    squares = values.ravel() ** 2
    return float(squares[voxels_near(coefficients, grid, sites_cart, radius)].sum() /
                 squares.sum())


def map_correlation_near(coefficients_a: miller.array, coefficients_b: miller.array,
                         sites_cart, radius: float = 3.0, sampling: float = 3.0) -> float:
    """Correlation of the maps of two sets of map coefficients (common reflections) over the
    voxels within ``radius`` A of the sites (Cartesian, A; all symmetry copies)."""
    a, b = coefficients_a.common_sets(coefficients_b)
    grid = CellGrid.for_set(a, sampling=sampling)
    near = voxels_near(a, grid, sites_cart, radius)
    map_a = grid.to_map(a.data().as_numpy_array()).ravel()[near]
    map_b = grid.to_map(b.data().as_numpy_array()).ravel()[near]
    return float(np.corrcoef(map_a, map_b)[0, 1])
