"""meteor.extrapolate: the extrapolation formula and its variants exactly, the extrapolated map
against the true minor state, the blind occupancy estimators on differences with a known
occupancy, the weak-signal refusal, and the program's outputs."""
import json

import numpy as np
import pytest
from cctbx.array_family import flex

from meteor_cctbx.diffmap import complex_array
from meteor_cctbx.extrapolate import (LOW_FIGURE_OF_MERIT, OccupancyNotEstimated,
                                      compute_extrapolation, difference_gain)
from meteor_cctbx.family import make_case, source_small, with_sigmas_scaled, write_case
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.map_metrics import map_correlation_near
from meteor_cctbx.model_phases import load_model, model_structure_factors
from meteor_cctbx.occupancy import APPEAR_BLUR_B, estimate_occupancy
from meteor_cctbx.phil import default_params
from meteor_cctbx.programs.extrapolate import Program

from helpers import assert_one_line_sorry, mtz_arrays, run_program


@pytest.fixture(scope="module")
def source():
    return source_small()


def written_case(source, directory, noise_scale: float):
    """The small family's compact case at occupancy 0.4, written as files, with F_model."""
    case = make_case(source, "compact", 0.4, noise_scale)
    paths = write_case(case, directory)
    model = load_model(paths["model"], case.native.crystal_symmetry())
    case.f_model = model_structure_factors(model, case.native).f_model
    case.paths = paths
    return case


@pytest.fixture(scope="module")
def case(source, tmp_path_factory):
    return written_case(source, tmp_path_factory.mktemp("extrapolate_case"), 1.0)


@pytest.fixture(scope="module")
def noisy_case(source, tmp_path_factory):
    """The same at three times the real noise, where denoising matters most."""
    return written_case(source, tmp_path_factory.mktemp("extrapolate_noisy"), 3.0)


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


def test_denoised_extrapolation_shows_the_minor_state(noisy_case):
    """At the true occupancy the extrapolated map is closer to the pure minor state near the
    ligand than the native map and than the raw-difference extrapolation."""
    case = noisy_case
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


def separated_sites(n: int, cell: float, min_distance: float, rng) -> np.ndarray:
    """``n`` random fractional sites in a cubic P1 cell, at least ``min_distance`` A apart."""
    sites = []
    while len(sites) < n:
        site = rng.uniform(size=3)
        if all(np.linalg.norm(((site - other + 0.5) % 1 - 0.5) * cell) >= min_distance
               for other in sites):
            sites.append(site)
    return np.array(sites)


@pytest.fixture(scope="module")
def ideal():
    """Structure factors of 'native' (120 oxygens, B 15 A^2, >= 3.2 A apart, P1 cube of 30 A)
    and of 'minor' states with 12 oxygens removed or 12 added, at 2 A; the model is the
    native itself, so the theory behind the estimators holds."""
    from cctbx import crystal, xray

    rng = np.random.default_rng(3)
    sites = separated_sites(144, 30.0, 3.2, rng)
    symmetry = crystal.symmetry(unit_cell=(30, 30, 30, 90, 90, 90), space_group_symbol="P 1")

    def structure(fractional, b_values=None):
        b_values = [15.0] * len(fractional) if b_values is None else b_values
        return xray.structure(crystal_symmetry=symmetry, scatterers=flex.xray_scatterer(
            [xray.scatterer("O", tuple(site), b=b) for site, b in zip(fractional, b_values)]))

    miller_set = structure(sites).build_miller_set(anomalous_flag=False, d_min=2.0)

    def f(fractional, b_values=None):
        return structure(fractional, b_values).structure_factors(
            d_min=2.0, algorithm="direct").f_calc().common_sets(miller_set)[0]

    native = f(sites[:132])
    states = {"added": f(sites), "removed": f(sites[:120]),
              # 12 atoms leave and 12 arrive less ordered (B 30 A^2): a conformational change
              # whose new state reads low against the median atom
              "moved": f(np.vstack([sites[:120], sites[132:]]), [15.0] * 120 + [30.0] * 12)}
    return native, states, CellGrid.for_set(native, sampling=3)


def ideal_difference(native, minor, q: float) -> np.ndarray:
    """Half the true change times q: what a projection on the true native phases carries."""
    return 0.5 * q * (minor.data().as_numpy_array() - native.data().as_numpy_array())


@pytest.mark.parametrize("q", [0.25, 0.6])
def test_appear_recovers_the_occupancy_of_added_atoms(ideal, q):
    native, states, grid = ideal
    f_nat = native.data().as_numpy_array()
    difference = ideal_difference(native, states["added"], q)
    estimate = estimate_occupancy(f_nat, f_nat, difference, grid, n_bootstrap=30)
    appear = estimate.estimators["appear"]
    assert appear.estimate == pytest.approx(q, rel=0.15)
    assert appear.interval[0] <= appear.estimate <= appear.interval[1]
    # no model atom leaves: vanish withholds rather than inventing a number, and the
    # default (combined) rests on appear alone
    assert estimate.estimators["vanish"].estimate is None
    assert "too little" in estimate.estimators["vanish"].warning
    assert estimate.chosen.estimate == pytest.approx(appear.estimate)
    # linear in the difference, and reproducible
    again = estimate_occupancy(f_nat, f_nat, 2 * difference, grid, n_bootstrap=30)
    assert again.estimators["appear"].point == pytest.approx(2 * appear.point, rel=1e-4)
    same = estimate_occupancy(f_nat, f_nat, difference, grid, n_bootstrap=30)
    assert same.estimators["appear"].interval == appear.interval


def test_vanish_recovers_the_occupancy_of_removed_atoms(ideal):
    native, states, grid = ideal
    f_nat = native.data().as_numpy_array()
    difference = ideal_difference(native, states["removed"], 0.5)
    estimate = estimate_occupancy(f_nat, f_nat, difference, grid, method="vanish",
                                  n_bootstrap=30)
    assert estimate.chosen.estimate == pytest.approx(0.5, rel=0.15)
    assert estimate.estimators["appear"].estimate is None


def test_combined_takes_vanish_where_the_new_state_is_less_ordered(ideal):
    """Atoms that leave read against their own native density (vanish: the true q); atoms
    that arrive at B 30 read against the median atom at B 15 (appear: low). The default takes
    vanish, and its interval spans both criteria's (measured: vanish 0.488, appear 0.320; the
    previous inverse-variance mean would have read about 0.36)."""
    native, states, grid = ideal
    f_nat = native.data().as_numpy_array()
    estimate = estimate_occupancy(f_nat, f_nat, ideal_difference(native, states["moved"], 0.5),
                                  grid, n_bootstrap=30)
    vanish, appear = estimate.estimators["vanish"], estimate.estimators["appear"]
    assert vanish.estimate == pytest.approx(0.5, rel=0.15)
    assert appear.estimate < 0.85 * vanish.estimate
    assert estimate.method == "combined"
    assert estimate.chosen.estimate == pytest.approx(vanish.estimate)
    assert estimate.chosen.interval[0] <= min(vanish.interval[0], appear.interval[0])
    assert estimate.chosen.interval[1] >= max(vanish.interval[1], appear.interval[1])


def test_blurred_appear_reads_less_ordered_arrivals_closer_to_their_occupancy(ideal):
    """12 atoms arrive at B 30 A^2, the median atom is at B 15 (q = 0.5): appear reads them
    low on the maps themselves and less low on maps blurred by appear_blur_b (the
    default); atoms arriving as ordered as the median ('added') stay within 15 % of q."""
    native, states, grid = ideal
    f_nat = native.data().as_numpy_array()
    moved = ideal_difference(native, states["moved"], 0.5)

    def appear(difference, **blur):
        estimate = estimate_occupancy(f_nat, f_nat, difference, grid, n_bootstrap=30, **blur)
        return estimate.estimators["appear"], estimate.settings["appear_blur_b"]

    sharp, b_sharp = appear(moved, appear_blur_b=0.0)
    blurred, b_default = appear(moved)
    assert b_sharp == 0 and b_default == APPEAR_BLUR_B > 0
    # measured: 0.320 -> 0.351 (heights of B 30 against B 15 atoms, at 2 A: 0.64 -> 0.70)
    assert blurred.estimate > sharp.estimate + 0.02
    assert blurred.interval[0] > sharp.interval[1]
    added, _ = appear(ideal_difference(native, states["added"], 0.5))
    assert added.estimate == pytest.approx(0.5, rel=0.15)


def test_estimators_read_peaks_on_their_own_grid(case):
    """The occupancy is read on a d_min/peak_sampling grid whatever grid the TV stage used:
    the estimate and its interval do not move with map.sampling, and a coarser peak grid
    (whose points miss the tops of sharp peaks) reads a different one."""
    def estimate(**values):
        params = settings(n_bootstrap=20)
        for key, value in values.items():
            scope, name = key.split("__")
            setattr(getattr(params, scope), name, value)
        result = compute_extrapolation(case.derivative, case.native, case.f_model, params)
        return result.occupancy_estimate.chosen

    default = estimate()
    assert default.estimate is not None
    finer_tv = estimate(map__sampling=3)
    assert (finer_tv.estimate, finer_tv.interval) == (default.estimate, default.interval)
    assert estimate(extrapolate__peak_sampling=2).estimate != default.estimate


def test_sigmas_stated_too_large_do_not_raise_the_noise_cut(case):
    """The same pair with both data sets' sigmas stated 1.5 times too large: the estimators'
    noise (cut and redrawn errors) is held to the spread of |F_der| - |F_nat|, so their
    noise cut rises less than 1.5 times (measured 1.34: shells that hold signal keep their
    stated sigmas), and the record says in how many shells the sigmas were lowered (13 of
    20; none with the honest sigmas).  A cut raised with the sigmas withholds weak estimates
    or keeps only the peaks the noise lifted most."""
    import io

    logs = {}

    def run(factor):
        stated = with_sigmas_scaled(case, factor)
        logs[factor] = io.StringIO()
        result = compute_extrapolation(stated.derivative, stated.native, case.f_model,
                                       settings(n_bootstrap=20), log=logs[factor])
        return result.occupancy_estimate

    honest, overstated = run(1.0), run(1.5)
    assert "sigma_delta lowered" in logs[1.5].getvalue()
    assert "sigma_delta lowered" not in logs[1.0].getvalue()
    assert honest.settings["sigma_difference_lowered_shells"] == 0
    assert overstated.settings["sigma_difference_lowered_shells"] >= \
        0.5 * overstated.settings["sigma_difference_shells"]
    assert honest.settings["noise_cut"] < overstated.settings["noise_cut"] < \
        1.4 * honest.settings["noise_cut"]


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


def test_poor_model_phases_are_flagged_as_reading_low(case):
    """The small family's compact q0.4 case from a phasing model three times as wrong (shake
    0.9 A, mean figure of merit 0.31 against 0.82): the estimate falls (measured 0.63 ->
    0.48) and the log says that it reads low and why; the good model's run does not."""
    import io

    from meteor_cctbx.model_phases import model_from_pdb_text

    def run(pair_case, f_model):
        log = io.StringIO()
        result = compute_extrapolation(pair_case.derivative, pair_case.native, f_model,
                                       settings(n_bootstrap=20), log=log)
        return result.occupancy_estimate, log.getvalue()

    good, good_log = run(case, case.f_model)
    poor_source = source_small(shake_rms=0.9)
    poor_case = make_case(poor_source, "compact", 0.4, 1.0)
    poor, poor_log = run(poor_case, model_structure_factors(
        model_from_pdb_text(poor_source.phasing_model_pdb), poor_case.native).f_model)
    assert good.settings["mean_figure_of_merit"] > LOW_FIGURE_OF_MERIT > \
        poor.settings["mean_figure_of_merit"]
    assert poor.chosen.estimate < good.chosen.estimate - 0.08
    assert "mean figure of merit" in poor_log and "read low" in poor_log
    assert "mean figure of merit" not in good_log


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


def test_zero_occupancy_is_refused_without_output(case, in_tmp, capsys):
    status, _, err = run_program(Program, [case.paths["derivative"], case.paths["native"],
                                           case.paths["model"], "extrapolate.occupancy=0",
                                           "extrapolate.difference=raw"], capsys)
    assert_one_line_sorry(status, err, "extrapolate.occupancy")
    assert not list(in_tmp.iterdir())
