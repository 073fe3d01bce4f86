"""Negentropy: zero for Gaussian noise, invariant to scale and shift, and the same argmax as
scipy's Vasicek estimator along a family of real denoised maps."""
import math

import numpy as np
import pytest
import scipy.stats

from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.tv import denoise


def test_gaussian_noise_has_zero_negentropy():
    values = np.random.default_rng(0).normal(size=500_000).astype(np.float32)
    assert abs(negentropy(values)) < 2e-3


def test_heavy_tails_and_sparsity_raise_negentropy():
    rng = np.random.default_rng(1)
    gaussian = rng.normal(size=200_000)
    laplace = rng.laplace(size=200_000)
    sparse = gaussian * 0.1 + (rng.random(200_000) < 0.02) * 5
    assert negentropy(laplace) > 0.05
    assert negentropy(sparse) > negentropy(laplace)


@pytest.mark.parametrize("scale, shift", [(3.5, 0.0), (1e-3, 10.0), (-2.0, -1.0)])
def test_invariant_to_scale_and_shift(scale, shift):
    values = np.random.default_rng(2).standard_t(4, size=300_000).astype(np.float32)
    assert negentropy(values * scale + shift) == pytest.approx(negentropy(values), abs=2e-3)


def test_constant_map_and_bad_values():
    assert negentropy(np.ones(100)) == math.inf
    with pytest.raises(ValueError):
        negentropy(np.array([1.0, np.nan, 2.0]))


def test_argmax_agrees_with_scipy_vasicek_on_denoised_maps(example):
    """Along the TV-weight family of a real difference map, both estimators peak together."""
    from meteor_cctbx.diffmap import scale_pair
    from meteor_cctbx.grid import CellGrid
    from meteor_cctbx.model_phases import model_structure_factors, load_model

    pair = example.pair
    model = load_model(example.dir / "model.pdb", pair.native.crystal_symmetry())
    phases = model_structure_factors(model, pair.native).f_model
    scaled = scale_pair(pair.derivative, pair.native, phases, "anisotropic")
    grid = CellGrid.for_set(scaled.derivative, sampling=3)
    raw_map = grid.to_map(scaled.delta_f * scaled.unit_phases)
    weights = np.geomspace(0.003, 0.5, 12)
    ours, vasicek = [], []
    for weight in weights:
        values = denoise(raw_map, weight).ravel()
        ours.append(negentropy(values))
        vasicek.append(0.5 * np.log(2 * np.pi * np.e * values.var())
                       - scipy.stats.differential_entropy(values))
    assert int(np.argmax(ours)) == int(np.argmax(vasicek))
    assert 0 < int(np.argmax(ours)) < len(weights) - 1  # an interior optimum
