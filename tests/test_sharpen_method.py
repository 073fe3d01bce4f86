"""sharpen_method: a given B multiplies every term by exp(B d*^2/4) (checked against cctbx's
FFT of the scaled structure factors), b_iso reaches the target Wilson B, the diagnostics
measure the B applied, and the step's run-record entries."""
from __future__ import annotations

import io

import numpy as np
import pytest
from cctbx.array_family import flex
from iotbx.map_model_manager import map_model_manager as MapModelManager
from libtbx.utils import Sorry

from meteor_cctbx import sharpen
from meteor_cctbx.sharpen_inputs import SharpenInputs
from meteor_cctbx.sharpen_method import diagnose, sharpen_by_method, sharpening_form
from meteor_cctbx.synthetic import random_protein_like
from helpers import map_manager_of, map_on_grid, sharpen_params

D_MIN = 3.0
GRID = (24, 24, 30)


@pytest.fixture(scope="module")
def f_calc():
    structure = random_protein_like("P1", (30, 30, 36, 90, 90, 90), b_iso=40.0, seed=3)
    return structure.structure_factors(d_min=D_MIN).f_calc()


def run_step(f_calc, *settings, method="b_factor"):
    params = sharpen_params("sharpening.k_sharpen=0", "sharpening.noise_weight=none",
                            *settings)
    mm = map_manager_of(map_on_grid(f_calc, GRID), f_calc.crystal_symmetry())
    inputs = SharpenInputs(MapModelManager(map_manager=mm))
    d_min = D_MIN * params.sharpening.d_min_ratio
    b_before = sharpen.wilson_b(mm.map_as_fourier_coefficients(d_min=d_min), D_MIN)
    log = io.StringIO()
    result = sharpen_by_method(method, inputs, params, D_MIN, d_min, b_before, 1, log)
    return mm, result, b_before, d_min, log.getvalue()


def test_a_given_b_scales_every_term_by_exp_b_s2_over_4(f_calc):
    _, result, _, _, log = run_step(f_calc, "sharpening.b_sharpen=30")
    factors = flex.exp(30.0 * f_calc.d_star_sq().data() / 4.0)
    expected = map_on_grid(f_calc.customized_copy(data=f_calc.data() * factors), GRID)
    values = result.map.map_data().as_numpy_array()
    assert np.max(np.abs(values - expected)) < 1e-4 * np.std(expected)
    entry = result.record["b_factor"]
    assert entry["b_sharpen"] == 30 and entry["choice"] == "given b_sharpen"
    assert entry["scan"] is None and entry["score"] is None and "local" not in result.record
    assert "Chosen b_sharpen: 30.0 A^2 (given b_sharpen)" in log


def test_b_iso_reaches_the_target_overall_b_and_diagnostics_measure_it(f_calc):
    mm, result, b_before, d_min, _ = run_step(f_calc, "sharpening.b_iso=10")
    assert result.b_factor.b_sharpen == pytest.approx(b_before - 10)
    assert result.record["b_factor"]["wilson_b_before"] == pytest.approx(b_before)
    log = io.StringIO()
    found = diagnose(mm, result, D_MIN, d_min, b_before, 1, log)
    assert found.wilson_b_after == pytest.approx(10, abs=1.0)
    assert found.scale.effective_b == pytest.approx(b_before - 10, abs=1.0)
    assert found.wilson_b_d_min == D_MIN and found.wilson_b_before == b_before
    assert found.as_record()["effective_b"] == found.scale.effective_b
    assert f"Effective B applied: {found.scale.effective_b:.1f} A^2" in log.getvalue()


def test_the_searched_b_is_the_best_of_its_scan_and_logged_point_by_point(f_calc):
    _, result, _, _, log = run_step(f_calc, "sharpening.score=kurtosis",
                                    "sharpening.search.n_steps=5")
    points = result.b_factor.scan.points
    assert result.b_factor.b_sharpen == max(points, key=lambda p: p.score).parameter
    assert log.count("kurtosis = ") == len(points)
    assert result.record["b_factor"]["score"] == "kurtosis"


def test_sharpening_form_cuts_at_the_resolution_unless_d_cut_is_given():
    assert sharpening_form(sharpen_params(), 2.5, 2.0).d_cut == 2.5
    form = sharpening_form(sharpen_params("sharpening.d_cut=3.1",
                                          "sharpening.b_blur_hires=50"), 2.5, 2.0)
    assert (form.d_cut, form.d_min, form.b_blur_hires, form.k_sharpen) == (3.1, 2.0, 50, 10)


def test_local_d_max_below_the_fitted_resolution_is_one_sorry(f_calc):
    with pytest.raises(Sorry, match=r"local_d_max \(2.5 A\) must be above the resolution"):
        run_step(f_calc, "sharpening.b_sharpen=10", "sharpening.local=True",
                 "sharpening.local_d_max=2.5")
