"""meteor.extrapolate: the extrapolation formula and its variants exactly, the extrapolated map
against the true minor state, the blind occupancy estimators on differences with a known
occupancy, the weak-signal refusal, and the program's outputs."""
import json

import numpy as np
import pytest

from meteor_cctbx.diffmap import complex_array
from meteor_cctbx.extrapolate import (OccupancyNotEstimated, compute_extrapolation,
                                      difference_gain)
from meteor_cctbx.family import make_case, source_small, write_case
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.map_metrics import map_correlation_near
from meteor_cctbx.model_phases import load_model, model_structure_factors
from meteor_cctbx.occupancy import estimate_occupancy
from meteor_cctbx.phil import default_params
from meteor_cctbx.programs.extrapolate import Program

from helpers import assert_one_line_sorry, mtz_arrays, run_program


@pytest.fixture(scope="module")
def source():
    return source_small()


@pytest.fixture(scope="module")
def case(source, tmp_path_factory):
    """The small family's compact case at occupancy 0.4, written as files, with F_model."""
    case = make_case(source, "compact", 0.4, 1.0)
    directory = tmp_path_factory.mktemp("extrapolate_case")
    paths = write_case(case, directory)
    model = load_model(paths["model"], case.native.crystal_symmetry())
    case.f_model = model_structure_factors(model, case.native).f_model
    case.paths = paths
    return case


def settings(**values):
    params = default_params("extrapolate")
    for key, value in values.items():
        setattr(params.extrapolate, key, value)
    return params


def test_raw_extrapolation_is_the_coquelle_formula_with_propagated_sigmas(case):
    q = 0.4
    result = compute_extrapolation(case.derivative, case.native, case.f_model,
                                   settings(difference="raw", occupancy=q,
                                            negative_amplitudes="drop"))
    pair = result.pair
    f_nat = pair.native.data().as_numpy_array()
    f_der = pair.derivative.data().as_numpy_array()
    expected = f_nat + (f_der - f_nat) / q
    kept = expected >= 0
    assert result.n_negative == int((~kept).sum()) > 0
    assert result.f_extr.size() == int(kept.sum())
    assert np.allclose(result.f_extr.data().as_numpy_array(), expected[kept], rtol=1e-10)
    n = 1 / q
    sigma = np.hypot((1 - n) * pair.native.sigmas().as_numpy_array(),
                     n * pair.derivative.sigmas().as_numpy_array())
    assert np.allclose(result.f_extr.sigmas().as_numpy_array(), sigma[kept])
    # FWT counts the extrapolated part twice; DELFWT is F_extr - F_model, on model phases
    phases = pair.unit_phases[kept]
    fwt = result.map_coefficients.data().as_numpy_array()
    assert np.allclose(fwt, (f_nat[kept] + 2 * (expected[kept] - f_nat[kept])) * phases)
    f_model = case.f_model.common_sets(pair.derivative)[0].data().as_numpy_array()[kept]
    assert np.allclose(result.delta_coefficients.data().as_numpy_array(),
                       expected[kept] * phases - f_model)


@pytest.mark.parametrize("negative", ["fcalc", "zero"])
def test_negative_amplitudes_are_replaced(case, negative):
    result = compute_extrapolation(case.derivative, case.native, case.f_model,
                                   settings(difference="raw", occupancy=0.4,
                                            negative_amplitudes=negative))
    pair = result.pair
    f_nat = pair.native.data().as_numpy_array()
    expected = f_nat + (pair.derivative.data().as_numpy_array() - f_nat) / 0.4
    negative_ones = expected < 0
    assert result.f_extr.size() == pair.derivative.size()
    values = result.f_extr.data().as_numpy_array()
    replacement = np.abs(case.f_model.common_sets(pair.derivative)[0].data().as_numpy_array()) \
        if negative == "fcalc" else 0.0
    assert np.allclose(values[negative_ones], np.broadcast_to(replacement, values.shape)
                       [negative_ones])
    assert np.allclose(values[~negative_ones], expected[~negative_ones])


def test_fcalc_formula_extrapolates_from_the_model(case):
    result = compute_extrapolation(case.derivative, case.native, case.f_model,
                                   settings(difference="raw", occupancy=0.5, formula="fcalc",
                                            negative_amplitudes="drop"))
    pair = result.pair
    f_model = case.f_model.common_sets(pair.derivative)[0].data().as_numpy_array()
    extrapolated = f_model + pair.delta_f * pair.unit_phases / 0.5
    kept = (extrapolated * np.conj(pair.unit_phases)).real >= 0
    assert np.allclose(result.f_extr.data().as_numpy_array(), np.abs(extrapolated[kept]))


def test_denoised_extrapolation_shows_the_minor_state(case):
    """At the true occupancy the extrapolated map is closer to the pure minor state near the
    ligand than the native map and than the raw-difference extrapolation."""
    denoised = compute_extrapolation(case.derivative, case.native, case.f_model,
                                     settings(occupancy=case.occupancy))
    raw = compute_extrapolation(case.derivative, case.native, case.f_model,
                                settings(occupancy=case.occupancy, difference="raw"))
    pair = denoised.pair
    native_map = complex_array(pair.native, pair.native.data().as_numpy_array() *
                               pair.unit_phases)

    def cc(coefficients):
        return map_correlation_near(coefficients, case.true_minor, case.signal_sites, 3.0)

    assert denoised.difference_gain > 1  # TV rescaling lifted the denoised difference
    assert cc(denoised.map_coefficients) > cc(native_map) + 0.1
    assert cc(denoised.map_coefficients) > cc(raw.map_coefficients) + 0.02


def test_difference_gain_of_a_scaled_map():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(12, 12, 12)).astype(np.float32)
    assert difference_gain(2.5 * raw, raw, 3.0) == pytest.approx(2.5)
    assert difference_gain(-raw, raw, 3.0) == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def ideal(source):
    """Maps in which the theory behind the estimators holds: the difference is half the true
    change F_minor - F_nat, times q, and the phases are the true native's."""
    native = source.true_structure_factors("native")
    minor = source.true_structure_factors("compact")
    grid = CellGrid.for_set(native, sampling=3)
    return native, minor, grid


@pytest.mark.parametrize("q", [0.25, 0.6])
def test_appear_recovers_the_occupancy_of_an_ideal_difference(ideal, q):
    native, minor, grid = ideal
    f_nat = native.data().as_numpy_array()
    difference = 0.5 * q * (minor.data().as_numpy_array() - f_nat)
    estimate = estimate_occupancy(f_nat, f_nat, difference, grid, method="appear",
                                  n_bootstrap=30)
    appear = estimate.chosen
    assert appear.estimate == pytest.approx(q, rel=0.15)
    assert appear.interval[0] <= appear.estimate <= appear.interval[1]
    # the compact change removes no model atom: vanish withholds rather than inventing one
    assert estimate.estimators["vanish"].estimate is None
    assert "too little" in estimate.estimators["vanish"].warning
    assert estimate.estimators["combined"].estimate == pytest.approx(appear.estimate)
    # linear in the difference, and reproducible
    again = estimate_occupancy(f_nat, f_nat, 2 * difference, grid, method="appear",
                               n_bootstrap=30)
    assert again.chosen.point == pytest.approx(2 * appear.point, rel=1e-4)
    same = estimate_occupancy(f_nat, f_nat, difference, grid, method="appear", n_bootstrap=30)
    assert same.chosen.interval == appear.interval


def test_vanish_recovers_the_occupancy_of_removed_atoms(source):
    """Minor state = native without the ligand (the 'native-only' atoms leave)."""
    with_ligand = source.true_structure_factors("compact")
    without = source.true_structure_factors("native")
    grid = CellGrid.for_set(with_ligand, sampling=3)
    f_nat = with_ligand.data().as_numpy_array()
    difference = 0.5 * 0.5 * (without.data().as_numpy_array() - f_nat)
    estimate = estimate_occupancy(f_nat, f_nat, difference, grid, method="vanish",
                                  n_bootstrap=30)
    assert estimate.chosen.estimate == pytest.approx(0.5, rel=0.15)


def test_noise_only_difference_is_refused_not_estimated(case):
    """Derivative = native with fresh noise: no number comes out, and the message says why and
    what to do."""
    rng = np.random.default_rng(1)
    native = case.native
    sigmas = native.sigmas().as_numpy_array()
    noisy = native.customized_copy(data=native.data() + native.sigmas() *
                                   type(native.data())(rng.normal(size=sigmas.size)))
    with pytest.raises(OccupancyNotEstimated) as error:
        compute_extrapolation(noisy, native, case.f_model, settings())
    assert "extrapolate.occupancy=" in str(error.value)
    assert error.value.estimate.chosen.estimate is None


@pytest.fixture(scope="module")
def program_run(case, tmp_path_factory):
    import contextlib
    import io
    import os

    from meteor_cctbx.command_line import run_as_command

    out = tmp_path_factory.mktemp("extrapolate_run")
    cwd = os.getcwd()
    os.chdir(out)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            status = run_as_command(Program, [str(case.paths[k]) for k in
                                              ("derivative", "native", "model")] +
                                    ["extrapolate.n_bootstrap=20"])
    finally:
        os.chdir(cwd)
    assert status == 0, buffer.getvalue()[-3000:]
    return out, buffer.getvalue()


def test_program_outputs(program_run):
    out, log = program_run
    arrays = mtz_arrays(out / "meteor_extrapolate.mtz")
    assert set(arrays) == {"FEXTR,SIGFEXTR", "FWT,PHWT", "DELFWT,PHDELWT"}
    assert arrays["FEXTR,SIGFEXTR"].sigmas() is not None
    record = json.loads((out / "meteor_extrapolate.json").read_text())
    occupancy = record["result"]["occupancy"]
    assert occupancy["method"] == "combined"
    low, high = occupancy["interval"]
    assert 0 < low <= occupancy["estimate"] <= high <= 1
    for name in ("vanish", "appear", "combined"):
        curve = occupancy["estimators"][name]["curve"]
        assert len(curve["occupancy"]) == len(curve["value"]) > 10
    assert record["program"] == "meteor.extrapolate"
    assert (out / "meteor_extrapolate.png").stat().st_size > 1000
    assert "Occupancy estimators" in log and "N = " in log


def test_program_refuses_to_overwrite(program_run, case, capsys, monkeypatch):
    out, _ = program_run
    monkeypatch.chdir(out)
    before = (out / "meteor_extrapolate.json").read_bytes()
    status, _, err = run_program(Program, [case.paths["derivative"], case.paths["native"],
                                           case.paths["model"], "extrapolate.occupancy=0.5"],
                                 capsys)
    assert_one_line_sorry(status, err, "overwrite")
    assert (out / "meteor_extrapolate.json").read_bytes() == before


def test_given_occupancy_and_show_defaults(case, in_tmp, capsys):
    status, out, _ = run_program(Program, ["--show-defaults"], capsys)
    assert status == 0
    for key in ("difference = *diffmap phaseboost raw", "occupancy = Auto",
                "negative_amplitudes = *fcalc zero drop", "formula = *fobs fcalc",
                "prefix = meteor_extrapolate", "tv_weights_to_scan"):
        assert key in out, key
    status, _, err = run_program(Program, [case.paths["derivative"], case.paths["native"],
                                           case.paths["model"], "extrapolate.occupancy=0.5",
                                           "output.prefix=given", "extrapolate.difference=raw"],
                                 capsys)
    assert status == 0, err
    record = json.loads((in_tmp / "given.json").read_text())
    assert record["result"]["occupancy"] == {"estimate": 0.5, "interval": None,
                                             "method": "given"}
