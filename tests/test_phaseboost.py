"""meteor.phaseboost: retrieved derivative phases move toward the truth, the map beats
diffmap's, and each stopping rule ends the loop in a case built for it."""
import json

import numpy as np
import pytest

from meteor_cctbx.diffmap import compute_diffmap
from meteor_cctbx.phaseboost import (STOP_CONVERGED, STOP_MAX_ITERATIONS, STOP_NEGENTROPY,
                                     across_phase_component, check_reproducibility,
                                     compute_phaseboost, mean_phase_change)
from meteor_cctbx.phil import default_params
from meteor_cctbx.programs.phaseboost import Program
from meteor_cctbx.resolution_shells import sigmas_within_spread
from meteor_cctbx.map_metrics import map_correlation
from meteor_cctbx.synthetic import true_structure_factors

from helpers import mtz_arrays, run_program


@pytest.fixture(scope="module")
def boosted(example, example_f_model):
    return compute_phaseboost(example.pair.derivative, example.pair.native, example_f_model)


def weighted_phase_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean |phase difference| in degrees, weighted by the true amplitudes."""
    weights = np.abs(truth)
    return float((weights * np.degrees(np.abs(np.angle(estimate * np.conj(truth))))).sum()
                 / weights.sum())


def test_retrieved_phases_are_closer_to_the_truth(example, boosted):
    retrieved = boosted.derivative_coefficients
    truth = true_structure_factors(example.pair.derivative_structure, retrieved)
    assert truth.indices().all_eq(retrieved.indices())
    true_values = truth.data().as_numpy_array()
    native_phased = np.abs(retrieved.data().as_numpy_array()) * boosted.pair.unit_phases
    before = weighted_phase_error(native_phased, true_values)
    after = weighted_phase_error(retrieved.data().as_numpy_array(), true_values)
    # measured: 14.79 -> 14.43 deg; a loop that left the phases alone would give no drop
    assert after < before - 0.3 and after < 14.55, (before, after)
    # measured derivative amplitudes are kept
    assert np.allclose(np.abs(retrieved.data().as_numpy_array()),
                       boosted.pair.derivative.data().as_numpy_array())


def test_map_beats_diffmap_on_the_same_inputs(example, example_f_model, boosted):
    diffmap = compute_diffmap(example.pair.derivative, example.pair.native, example_f_model)
    truth = example.pair.true_difference
    boosted_cc = map_correlation(boosted.map_coefficients, truth)
    diffmap_cc = map_correlation(diffmap.map_coefficients, truth)
    assert boosted_cc > diffmap_cc + 0.02 and boosted_cc > 0.955, (boosted_cc, diffmap_cc)
    # measured: 0.965 against diffmap's 0.944


def run_loop(example, example_f_model, **settings):
    params = default_params("phaseboost")
    params.kweight.mode = params.tv.mode = "none"
    for name, value in settings.items():
        setattr(params.phaseboost, name, value)
    return compute_phaseboost(example.pair.derivative, example.pair.native, example_f_model,
                              params)


def test_stops_when_phases_converge(example, example_f_model):
    result = run_loop(example, example_f_model, convergence_tolerance=90.0)
    assert result.stop_reason == STOP_CONVERGED and len(result.iterations) == 1


def test_stops_at_max_iterations(example, example_f_model):
    result = run_loop(example, example_f_model, convergence_tolerance=0.0, max_iterations=2)
    assert result.stop_reason == STOP_MAX_ITERATIONS and len(result.iterations) == 2


def test_stops_when_negentropy_decreases(example, example_f_model):
    result = run_loop(example, example_f_model, convergence_tolerance=0.0, max_iterations=60,
                      tv_criterion="negentropy")
    assert result.stop_reason == STOP_NEGENTROPY
    negentropies = [i.negentropy for i in result.iterations]
    assert negentropies == sorted(negentropies)  # only increasing steps were kept


def test_mean_phase_change_wraps_around():
    a = np.exp(1j * np.radians([179.0, -179.0, 10.0]))
    b = np.exp(1j * np.radians([-179.0, 179.0, 10.0]))
    assert mean_phase_change(a, b) == pytest.approx(4.0 / 3.0)


def test_program_writes_retrieved_derivative_and_iterations(example, in_tmp, capsys):
    args = [example.dir / "derivative.mtz", example.dir / "native.mtz",
            example.dir / "model.pdb", "phaseboost.max_iterations=3", "kweight.mode=fixed",
            "tv.mode=fixed"]
    status, out, err = run_program(Program, args, capsys)
    assert status == 0, err
    assert "iteration   1:" in out
    arrays = mtz_arrays(in_tmp / "meteor_phaseboost.mtz")
    assert set(arrays) == {"DELFWT,PHDELWT", "DF,PHIDF", "SIGDF", "DF_RAW,PHIDF_RAW",
                           "F_DERIV,PHI_DERIV"}
    record = json.loads((in_tmp / "meteor_phaseboost.json").read_text())
    iterations = record["result"]["iterations"]
    assert 1 <= len(iterations) <= 3
    assert {"tv_weight", "negentropy", "phase_change", "seconds"} <= set(iterations[0])
    assert record["parameters"]["phaseboost.tv_weights_to_scan"] == [0.001, 0.01, 0.1]
    check = record["result"]["reproducibility"]
    assert check["threshold"] == 0.15 and check["reproducible"] == (check["correlation"] >= 0.15)
    assert check["final_map"] == ("retrieved" if check["reproducible"] else "initial")
    fission = check["fission_sigma"]
    assert 1 <= fission["n_shells"] <= 20 and 0 <= fission["lowered_shells"] <= \
        fission["n_shells"] and 0 < fission["smallest_ratio"] <= 1
    assert "Reproducibility check:" in out and "correlation of the halves' phase changes" in out
    assert (in_tmp / "meteor_phaseboost.png").exists()


def test_final_weight_is_the_initial_maps_in_map_units(example, example_f_model):
    """The retrieved map is denoised at the initial map's TV weight in map units (within its
    tie, in map units), not at the same multiple of its own rms: a retrieved difference with
    the initial one's noise and twice its signal is not smoothed twice as hard (with
    final_weight_scale=1; Auto's lowering is tested below)."""
    from libtbx.utils import null_out

    from meteor_cctbx.diffmap import enhance, scale_and_grid, tv_grid_sampling
    from meteor_cctbx.phaseboost import enhance_as_initial

    params = default_params("phaseboost")
    params.phaseboost.final_weight_scale = 1.0
    pair, grid = scale_and_grid(example.pair.derivative, example.pair.native,
                                example_f_model, params, null_out(),
                                tv_grid_sampling(params))
    initial = pair.delta_f * pair.unit_phases
    first = enhance(initial, pair.sigma_delta, grid, params, null_out())
    initial_rms = first.tv_weight / first.tv_relative_weight
    true = example.pair.true_difference.common_set(pair.derivative).data().as_numpy_array()
    stronger = initial + true  # more signal, the same noise: a larger rms
    final = enhance_as_initial(first, stronger, pair.sigma_delta, grid, params, null_out())
    lowest, highest = first.criteria["tv_tied_range"]
    assert lowest * initial_rms * 0.999 <= final.tv_weight <= highest * initial_rms * 1.001
    stronger_rms = final.tv_weight / final.tv_relative_weight
    assert stronger_rms > 1.2 * initial_rms  # the same relative weight would be that larger


def test_auto_loop_weight_scale_is_lighter_only_for_a_clear_change(example, example_f_model,
                                                                 boosted):
    from meteor_cctbx.phaseboost import STRONG_SIGNAL_LOOP_SCALE, auto_loop_weight_scale

    assert auto_loop_weight_scale(0.2, 0.01) == STRONG_SIGNAL_LOOP_SCALE < 1
    assert auto_loop_weight_scale(0.1, 0.01) == STRONG_SIGNAL_LOOP_SCALE  # 10 SE: clear
    assert auto_loop_weight_scale(0.05, 0.01) == 1.0  # near the noise floor
    assert auto_loop_weight_scale(None, None) == auto_loop_weight_scale(0.2, 0.0) == 1.0
    # the example's change is clear (CC_free ~17 SE): Auto takes 0.75 of the validated weight
    assert boosted.metadata["loop_weight_scale"] == STRONG_SIGNAL_LOOP_SCALE
    params = default_params("phaseboost")
    params.phaseboost.loop_weight_scale = 1.0
    params.phaseboost.max_iterations = 1
    explicit = compute_phaseboost(example.pair.derivative, example.pair.native,
                                  example_f_model, params)
    assert explicit.metadata["loop_weight_scale"] == 1.0
    assert boosted.metadata["loop_tv_weights"][0] == pytest.approx(
        STRONG_SIGNAL_LOOP_SCALE * explicit.metadata["loop_tv_weights"][0], rel=1e-6)


def test_initial_map_is_diffmaps_and_the_loop_runs_on_its_own_finer_grid(example,
                                                                       example_f_model,
                                                                       boosted):
    """The initial (and final) maps are on meteor.diffmap's d_min/2 grid with diffmap's very
    choice; the loop runs on a d_min/3 grid at that weight times the ratio of the spacings."""
    from meteor_cctbx.grid import CellGrid
    from meteor_cctbx.parameter_choice import rms

    diffmap = compute_diffmap(example.pair.derivative, example.pair.native, example_f_model)
    assert boosted.grid.n_real == diffmap.grid.n_real
    assert [(p.parameter, p.score) for p in boosted.tv_scan.points] == \
        [(p.parameter, p.score) for p in diffmap.tv_scan.points]
    record = boosted.metadata
    assert record["map_sampling"] == 2 and record["loop_sampling"] == 3
    loop_grid = CellGrid.for_set(boosted.pair.derivative, sampling=3)
    assert tuple(record["loop_grid"]) == loop_grid.n_real
    assert np.prod(loop_grid.n_real) > 2 * np.prod(boosted.grid.n_real)
    expected = (diffmap.metadata["tv_weight_relative"] * 3 / 2 * record["loop_weight_scale"]
                * rms(loop_grid.to_map(boosted.pair.raw_difference)))
    assert record["loop_tv_weights"][0] == pytest.approx(expected, rel=1e-6)
    # one grid for everything when both samplings agree
    params = default_params("phaseboost")
    params.map.sampling, params.phaseboost.max_iterations = 3.0, 2
    single = compute_phaseboost(example.pair.derivative, example.pair.native,
                                example_f_model, params)
    assert tuple(single.metadata["loop_grid"]) == single.grid.n_real == loop_grid.n_real


def test_auto_final_weight_scale_lowers_only_a_weight_that_is_small_against_the_rms():
    from libtbx import Auto

    from meteor_cctbx.phaseboost import (FINAL_WEIGHT_FLOOR, FINAL_WEIGHT_REFERENCE,
                                         final_weight_scale)

    assert final_weight_scale(Auto, FINAL_WEIGHT_REFERENCE)[0] == 1.0
    assert final_weight_scale(Auto, 1.3)[0] == 1.0
    below = [final_weight_scale(Auto, r)[0] for r in (0.69, 0.65, 0.62, 0.5, 0.2)]
    assert 1.0 > below[0] > below[1] > below[2] > FINAL_WEIGHT_FLOOR
    assert below[3] == below[4] == FINAL_WEIGHT_FLOOR
    assert final_weight_scale(0.8, 1.3)[0] == final_weight_scale(0.8, 0.2)[0] == 0.8


@pytest.fixture(scope="module")
def small_source():
    from meteor_cctbx import family
    from meteor_cctbx.model_phases import model_from_pdb_text

    source = family.source_small(d_min=2.0)
    return source, model_from_pdb_text(source.phasing_model_pdb)


def small_case(small_source, change: str, occupancy: float, noise: float,
               cell_change: float = 0.0):
    """A case of the small synthetic family (source_small at 2.0 A) and F_model of its phasing
    model on the case's native reflections."""
    from meteor_cctbx import family
    from meteor_cctbx.model_phases import model_structure_factors

    source, model = small_source
    case = family.make_case(source, change, occupancy, noise, cell_change=cell_change)
    return case, model_structure_factors(model, case.native).f_model


def test_a_change_that_dominates_the_map_gets_a_lighter_final_weight(small_source):
    """A non-isomorphous pair (cell edges 1 % longer: a widespread difference), spread change
    at q = 0.4: the retrieved map's weight is a small multiple of its rms, Auto lowers it, and
    the map is closer to the truth than at the initial map's weight."""
    import io

    from meteor_cctbx.phaseboost import FINAL_WEIGHT_REFERENCE

    case, f_model = small_case(small_source, "spread", 0.4, 1.0, cell_change=1.0)
    log = io.StringIO()
    auto = compute_phaseboost(case.derivative, case.native, f_model, log=log)
    params = default_params("phaseboost")
    params.phaseboost.final_weight_scale = 1.0
    initial = compute_phaseboost(case.derivative, case.native, f_model, params)
    scale = auto.metadata["criteria"]["final_weight_scale"]
    assert initial.metadata["criteria"]["final_weight_scale"] == 1.0
    assert initial.metadata["tv_weight_relative"] < FINAL_WEIGHT_REFERENCE and scale < 1
    assert auto.tv_weight == pytest.approx(scale * initial.tv_weight, rel=1e-9)
    assert "a change that dominates the map" in log.getvalue()
    truth = case.true_difference
    # measured: 0.787 against 0.758
    assert map_correlation(auto.map_coefficients, truth) > \
        map_correlation(initial.map_coefficients, truth) + 0.015


def test_phaseboost_recovers_the_phases_of_a_swung_loop(small_source):
    """The family's 'loop' change (a six-residue loop swung by 3-6 A with the ligand, a kind
    of change no default was chosen on), q = 0.4: the model phases are wrong where the loop
    went, and the loop's retrieved phases bring the map closer to the truth than diffmap's."""
    case, f_model = small_case(small_source, "loop", 0.4, 1.0)
    boosted = compute_phaseboost(case.derivative, case.native, f_model)
    plain = compute_diffmap(case.derivative, case.native, f_model)
    assert boosted.metadata["reproducibility"]["reproducible"]
    truth = case.true_difference
    # measured: 0.906 against 0.857
    assert map_correlation(boosted.map_coefficients, truth) > \
        map_correlation(plain.map_coefficients, truth) + 0.03


def test_across_phase_component_is_the_part_a_phase_change_adds():
    rng = np.random.default_rng(0)
    phases = np.exp(1j * rng.uniform(-np.pi, np.pi, 50))
    amplitudes = rng.uniform(0.5, 2, 50)
    assert np.allclose(across_phase_component(amplitudes * phases, phases), 0)
    assert np.allclose(across_phase_component(1j * amplitudes * phases, phases),
                       1j * amplitudes * phases)
    turned = amplitudes * phases * np.exp(0.3j)
    assert np.allclose(across_phase_component(turned, phases),
                       1j * amplitudes * np.sin(0.3) * phases)


def test_reproducibility_check_tells_a_phase_change_in_the_data_from_one_made_by_noise():
    """Two fake loops on the halves |F_der| +- z: one retrieves a phase change that the data
    carry (the same in both halves), one a phase change that follows the noise."""
    rng = np.random.default_rng(1)
    native = rng.normal(size=3000) + 1j * rng.normal(size=3000)
    phases = np.exp(1j * np.angle(native))
    amplitudes = 1.1 * np.abs(native)
    sigmas = np.full(native.size, 0.05)
    shift = np.exp(1j * rng.normal(scale=0.3, size=native.size))

    def in_the_data(halved):
        return halved * phases * shift

    def made_by_noise(halved):
        return halved * phases * np.exp(0.05j * (halved - amplitudes) / sigmas)

    carried = check_reproducibility(amplitudes, native, sigmas, None, in_the_data, 0.15, 0)
    noise = check_reproducibility(amplitudes, native, sigmas, np.full(native.size, 0.8),
                                  made_by_noise, 0.15, 0)
    assert carried.correlation > 0.95 and carried.reproducible
    assert noise.correlation < -0.9 and not noise.reproducible
    again = check_reproducibility(amplitudes, native, sigmas, None, in_the_data, 0.15, 0)
    assert again.correlation == carried.correlation  # seeded
    assert carried.as_dict()["final_map"] == "retrieved"
    assert noise.as_dict()["final_map"] == "initial"


def test_sigmas_stated_too_large_do_not_anti_correlate_the_halves():
    """|F_der| = truth + noise of sd s, sigmas stated as 1.5 s, and a loop whose phase change
    follows the amplitudes' noise: z drawn at the stated sigmas makes the halves' noises
    anti-correlated (cov = s^2 - (1.5 s)^2, about -0.38), z held to the differences' spread
    leaves them independent, as with honest sigmas."""
    rng = np.random.default_rng(2)
    native = rng.normal(size=4000) + 1j * rng.normal(size=4000)
    truth = np.abs(native)
    phases = np.exp(1j * np.angle(native))
    s = 0.05
    measured = truth + rng.normal(size=truth.size) * s
    d = rng.uniform(2, 20, truth.size)

    def made_by_noise(halved):
        return halved * phases * np.exp(0.05j * (halved - truth) / s)

    def correlation(sigmas):
        return check_reproducibility(measured, native, sigmas, None, made_by_noise, 0.15,
                                     0).correlation

    stated = np.full(truth.size, 1.5 * s)
    held, ratios = sigmas_within_spread(stated, measured - truth, d)
    assert np.all(ratios < 1)
    assert correlation(stated) < -0.3
    assert abs(correlation(held)) < 0.08
    assert abs(correlation(held) - correlation(np.full(truth.size, s))) < 0.05


def test_a_phase_change_within_the_noise_leaves_the_initial_map(small_source):
    """A change near the noise floor (compact, q = 0.05, noise x2): the two halves' phase
    changes do not correlate, and the final map is diffmap's, which is closer to the truth
    than the map of the loop's phase change (measured 0.083 against 0.058)."""
    import io

    case, f_model = small_case(small_source, "compact", 0.05, 2.0)
    log = io.StringIO()
    checked = compute_phaseboost(case.derivative, case.native, f_model, log=log)
    params = default_params("phaseboost")
    params.phaseboost.reproducibility_check = False
    unchecked = compute_phaseboost(case.derivative, case.native, f_model, params)
    diffmap = compute_diffmap(case.derivative, case.native, f_model)
    check = checked.metadata["reproducibility"]
    assert check["correlation"] < 0.1 and check["final_map"] == "initial"
    assert "NOT reproducible" in log.getvalue()
    assert unchecked.metadata["reproducibility"] is None
    assert np.array_equal(checked.map_coefficients.data().as_numpy_array(),
                          diffmap.map_coefficients.data().as_numpy_array())
    # the loop still ran: its derivative phases are the unchecked run's
    assert np.array_equal(checked.derivative_coefficients.data().as_numpy_array(),
                          unchecked.derivative_coefficients.data().as_numpy_array())
    truth = case.true_difference
    assert map_correlation(checked.map_coefficients, truth) > \
        map_correlation(unchecked.map_coefficients, truth) + 0.015
    # re-chosen after the loop (final_parameters=retrieved): the fallback is diffmap's choice
    params = default_params("phaseboost")
    params.phaseboost.final_parameters = "retrieved"
    retrieved = compute_phaseboost(case.derivative, case.native, f_model, params)
    assert retrieved.metadata["reproducibility"]["final_map"] == "initial"
    assert np.array_equal(retrieved.map_coefficients.data().as_numpy_array(),
                          diffmap.map_coefficients.data().as_numpy_array())


def test_a_clear_phase_change_is_reproducible_and_kept(small_source):
    """A clear change (compact, q = 0.4, noise x1): the halves agree (measured 0.98) and the
    final map, of the retrieved difference, beats diffmap's (0.968 against 0.936)."""
    case, f_model = small_case(small_source, "compact", 0.4, 1.0)
    boosted = compute_phaseboost(case.derivative, case.native, f_model)
    diffmap = compute_diffmap(case.derivative, case.native, f_model)
    check = boosted.metadata["reproducibility"]
    assert check["correlation"] > 0.8 and check["final_map"] == "retrieved"
    truth = case.true_difference
    assert map_correlation(boosted.map_coefficients, truth) > \
        map_correlation(diffmap.map_coefficients, truth) + 0.02


def test_reproducibility_check_is_skipped_without_sigmas(example, example_f_model):
    import io

    params = default_params("phaseboost")
    params.phaseboost.max_iterations = 2
    params.kweight.mode = "none"  # k-weighting needs the sigmas too
    log = io.StringIO()
    result = compute_phaseboost(example.pair.derivative.customized_copy(sigmas=None),
                                example.pair.native, example_f_model, params, log)
    assert result.metadata["reproducibility"] is None
    assert "Reproducibility check skipped: the data have no sigmas." in log.getvalue()
