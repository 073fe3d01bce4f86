"""The validated choice of the TV weight and k (held-out reflections) against a brute-force
oracle on small realistic two-state cases (meteor_cctbx.family.source_small), and the
properties it rests on: scale-free scores, a deterministic free set, relative weights."""
import io

import iotbx.pdb  # noqa: F401  (cctbx first)
import numpy as np
import pytest
from cctbx import crystal
from libtbx.utils import Sorry

from meteor_cctbx import family, kweight, tv
from meteor_cctbx.diffmap import compute_diffmap, tv_settings
from meteor_cctbx.maximize import ScanPoint, ScanResult
from meteor_cctbx.model_phases import model_from_pdb_text, model_structure_factors
from meteor_cctbx.parameter_choice import (CLEAR_SIGNAL_Z, PEAK_FIT_HALF_WIDTH, SIGNAL_Z,
                                           cc_free_peak, choose_k)
from meteor_cctbx.phaseboost import compute_phaseboost
from meteor_cctbx.phil import default_params
from meteor_cctbx.validation import FreeScorer, FreeSet, free_correlation

from helpers import OracleCase

SCAN_STEP_DECADES = 0.1  # the TV search's final bracket (tolerance) in log10 units


@pytest.fixture(scope="module")
def source():
    return family.source_small(d_min=2.0)


@pytest.fixture(scope="module")
def phasing_model(source):
    return model_from_pdb_text(source.phasing_model_pdb)


@pytest.fixture(scope="module")
def spread(source, phasing_model):
    return OracleCase(source, phasing_model, "spread", 0.4, 1.0)


def negentropy_params(program="diffmap"):
    params = default_params(program)
    params.tv.criterion = params.kweight.criterion = "negentropy"
    return params


def test_validation_finds_the_oracle_weight_where_negentropy_over_smooths(spread):
    oracle_cc, oracle_weight = spread.oracle()
    negentropy = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model,
                                 negentropy_params())
    negentropy_weight = negentropy.metadata["tv_weight_relative"]
    # the constructed case: negentropy's maximum lies well past the oracle and costs CC
    assert np.log10(negentropy_weight / oracle_weight) > 0.1
    assert spread.cc(negentropy.final_map) < oracle_cc - 0.02
    # the validated default does not
    assert spread.cc(spread.default.final_map) > oracle_cc - 0.01
    raw = spread.default.raw_coefficients.data().as_numpy_array()
    assert spread.cc(spread.default.final_map) > spread.cc(spread.grid.to_map(raw)) + 0.15


@pytest.mark.parametrize("change,occupancy,noise", [("spread", 0.2, 2.0),
                                                    ("compact", 0.2, 2.0),
                                                    ("loop", 0.4, 1.0)])
def test_chosen_weight_within_one_scan_step_of_the_oracle(source, phasing_model, change,
                                                          occupancy, noise):
    case = OracleCase(source, phasing_model, change, occupancy, noise)
    oracle_cc, oracle_weight = case.oracle()
    chosen = case.default.metadata["tv_weight_relative"]
    assert abs(np.log10(chosen / oracle_weight)) <= SCAN_STEP_DECADES, (chosen, oracle_weight)
    assert case.cc(case.default.final_map) > oracle_cc - 0.02


def test_scan_records_both_criteria_and_the_choice(spread):
    scan = spread.default.tv_scan
    assert scan.name == "tv_weight_relative"
    assert all("negentropy" in p.others for p in scan.points)
    record = spread.default.metadata
    chosen = record["tv_weight_relative"]
    lowest, highest = record["criteria"]["tv_tied_range"]
    # the tie: every scan point inside the range is within reach of the best; the choice is the
    # full map's negentropy maximum between its ends (or the best point when nothing ties)
    assert lowest <= scan.best.parameter <= highest and lowest <= chosen <= highest
    refinement = record["criteria"]["tv_refinement_scan"]
    if highest > lowest:
        # negentropy's maximum, or on a clear change where negentropy still rises at the
        # heavier end, CC_free's peak
        taken = record["criteria"]["tv_best_cc_free_taken"]
        assert not taken or refinement["best_parameter"] == highest
        assert chosen == (cc_free_peak(scan, lowest, highest) if taken
                          else refinement["best_parameter"])
        assert all(lowest <= p["parameter"] <= highest for p in refinement["points"])
        assert refinement["best_score"] == max(p["score"] for p in refinement["points"])
    else:
        assert refinement is None and chosen == scan.best.parameter
    rms = float(spread.weighted_map().std())
    assert spread.default.tv_weight == pytest.approx(chosen * rms, rel=1e-6)
    criteria = {key: value for key, value in record["criteria"].items()
                if not key.startswith("tv_tied")
                and key not in ("tv_refinement_scan", "tv_best_cc_free_taken")}
    errors = [criteria.pop(f"{name}_cc_free_standard_error") for name in ("tv", "k")]
    assert criteria == {"kweight": "validation", "tv": "validation",
                        "tv_determined_by_data": True}
    # the bootstrap noise of CC_free (none for k when the best k is 0: nothing to compare)
    assert 0 < errors[0] < 0.1 and (errors[1] is None) == (record["k_parameter"] == 0.0)
    assert all("negentropy" in p for p in record["tv_scan"]["points"])
    # the final map is the full map denoised at the chosen weight
    assert np.allclose(spread.default.final_map,
                       tv.denoise(spread.weighted_map(), chosen * rms,
                                  tv_settings(default_params("diffmap"))), atol=1e-5)


def test_choice_is_deterministic_and_follows_the_seed(spread):
    again = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model)
    assert again.tv_weight == spread.default.tv_weight
    assert again.k_parameter == spread.default.k_parameter
    assert np.array_equal(again.final_map, spread.default.final_map)
    params = default_params("diffmap")
    params.validation.seed = 1
    other = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model, params)
    assert other.tv_weight != spread.default.tv_weight  # another free set, another curve
    assert abs(np.log10(other.tv_weight / spread.default.tv_weight)) < 0.15


def test_relative_weight_does_not_move_with_the_data_scale(spread):
    """Data 10x larger: same relative weight, 10x the weight in map units, same map."""
    case = spread.case
    scaled = [a.customized_copy(data=a.data() * 10, sigmas=a.sigmas() * 10)
              for a in (case.derivative, case.native)]
    f_model = spread.f_model.customized_copy(data=spread.f_model.data() * 10)
    result = compute_diffmap(*scaled, f_model)
    assert result.metadata["tv_weight_relative"] == pytest.approx(
        spread.default.metadata["tv_weight_relative"], rel=1e-3)
    assert result.tv_weight == pytest.approx(10 * spread.default.tv_weight, rel=1e-3)
    assert spread.cc(result.final_map) == pytest.approx(spread.cc(spread.default.final_map),
                                                        abs=1e-3)


def test_absolute_search_range_still_works(spread):
    params = default_params("diffmap")
    rms = float(spread.weighted_map().std())
    params.tv.search_range = [0.5 * rms, 2.0 * rms]
    result = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model, params)
    scored = [p.parameter for p in result.tv_scan.points]
    weights = scored + result.tv_scan.skipped  # coarse ends the scan did not need
    assert min(weights) == pytest.approx(0.5, rel=1e-3)
    assert max(weights) == pytest.approx(2.0, rel=1e-3)
    assert 0.5 * (1 - 1e-3) <= min(scored) <= max(scored) <= 2.0 * (1 + 1e-3)


def test_k_is_zero_when_its_curve_is_flat_within_noise(spread):
    raw = spread.default.raw_coefficients.data().as_numpy_array()
    scorer = FreeScorer(spread.grid, FreeSet.draw(spread.grid.miller_set), raw)
    chosen = choose_k(raw, spread.default.pair.sigma_delta, spread.grid, 1e-4, "validation",
                      scorer, 1.0)
    assert chosen.k == 0.0
    best = chosen.scan.best
    if best.parameter != 0.0:  # k differences of 1e-4 are far below the bootstrap noise
        assert not chosen.determined
        assert best.score - chosen.scan.point_at(0.0).score <= SIGNAL_Z * chosen.standard_error


class RisingKScorer:
    """A stand-in FreeScorer whose CC_free rises with k by ``slope`` per unit k, with a fixed
    paired standard error: the k rule alone, without maps."""

    def __init__(self, slope: float, standard_error: float):
        self.slope, self.standard_error, self.predictions = slope, standard_error, {}

    def working_maps(self, coefficients):
        return [np.zeros((4, 4, 4), np.float32)]

    def score(self, key, denoised_maps):
        self.predictions[key] = None
        return 0.1 + self.slope * key[1]

    def difference_error(self, a, b=None):
        return self.standard_error


@pytest.mark.parametrize("standard_error, expected_k", [(0.01, 0.0), (0.005, 1.0)])
def test_k_moves_only_for_a_gain_beyond_two_standard_errors(standard_error, expected_k):
    """A gain of k = 1 over k = 0 of 1.5 standard errors leaves k = 0 (not determined); one of
    3 standard errors takes k = 1.  (The best of several k against k = 0 is a selection: at
    one standard error noisy free sets moved k on weak changes.)"""
    raw = np.ones(10, complex)
    chosen = choose_k(raw, np.ones(10), None, 1.0, "validation",
                      RisingKScorer(0.015, standard_error), tv_relative_weight=1.0)
    assert chosen.scan.best.parameter == 1.0
    assert chosen.k == expected_k
    assert chosen.determined is (expected_k != 0.0)


def test_flat_k_is_said_in_the_log(spread):
    params = default_params("diffmap")
    params.kweight.k_max = 1e-4
    log = io.StringIO()
    result = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model, params,
                             log)
    assert result.k_parameter == 0.0
    best = result.kweight_scan.best.parameter
    assert best == 0.0 or "flat within its noise" in log.getvalue()


def test_negentropy_criterion_keeps_the_old_rule(spread):
    result = compute_diffmap(spread.case.derivative, spread.case.native, spread.f_model,
                             negentropy_params())
    assert result.metadata["criteria"]["tv"] == "negentropy"
    assert result.metadata["criteria"]["kweight"] == "negentropy"
    best = result.tv_scan.best
    assert 0.0 in [p.parameter for p in result.tv_scan.points]  # no denoising is scored
    assert best.score == max(p.score for p in result.tv_scan.points)


def test_phaseboost_is_at_least_as_good_as_diffmap(spread):
    boosted = compute_phaseboost(spread.case.derivative, spread.case.native, spread.f_model)
    assert spread.cc_output(boosted) >= spread.cc_output(spread.default) - 0.005
    assert len(boosted.metadata["loop_tv_weights"]) == 1


def test_free_set_is_seeded_and_of_the_asked_size(spread):
    miller_set = spread.grid.miller_set
    a, b = FreeSet.draw(miller_set, 0.1, 3), FreeSet.draw(miller_set, 0.1, 3)
    assert np.array_equal(a.free, b.free)
    assert not np.array_equal(a.free, FreeSet.draw(miller_set, 0.1, 4).free)
    assert a.n_free == pytest.approx(0.1 * miller_set.size(), rel=0.15)
    with pytest.raises(ValueError):
        FreeSet.draw(miller_set, 0.0)


def test_free_correlation_is_scale_free_and_signed():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50) + 1j * rng.normal(size=50)
    weights = rng.uniform(1, 4, 50)
    assert free_correlation(values, values, weights) == pytest.approx(1.0)
    assert free_correlation(-3 * values, values, weights) == pytest.approx(-1.0)
    assert free_correlation(np.zeros(50), values, weights) == 0.0
    noisy = values + 0.5 * rng.normal(size=50)
    assert free_correlation(7 * noisy, values, weights) == pytest.approx(
        free_correlation(noisy, values, weights))


def test_cell_a_few_percent_off_goes_onto_the_native_cell(spread):
    case = spread.case
    cell = [p * (1.02 if i < 3 else 1) for i, p in enumerate(case.derivative.unit_cell()
                                                             .parameters())]
    symmetry = crystal.symmetry(unit_cell=cell,
                                space_group_info=case.derivative.space_group_info())
    derivative = case.derivative.customized_copy(crystal_symmetry=symmetry)
    log = io.StringIO()
    result = compute_diffmap(derivative, case.native, spread.f_model, log=log)
    assert "put on the native's cell" in log.getvalue()
    assert result.map_coefficients.unit_cell().is_similar_to(case.native.unit_cell())
    assert spread.cc(result.final_map) == pytest.approx(spread.cc(spread.default.final_map),
                                                        abs=1e-6)
    far = case.derivative.customized_copy(crystal_symmetry=crystal.symmetry(
        unit_cell=[p * (1.05 if i < 3 else 1) for i, p in
                   enumerate(case.derivative.unit_cell().parameters())],
        space_group_info=case.derivative.space_group_info()))
    with pytest.raises(Sorry, match="max_cell_difference"):
        compute_diffmap(far, case.native, spread.f_model)


def test_working_map_holds_no_free_reflection(spread):
    raw = spread.default.raw_coefficients.data().as_numpy_array()
    scorer = FreeScorer(spread.grid, FreeSet.draw(spread.grid.miller_set, n_folds=3), raw)
    folds = scorer.free_set.fold
    for number, working in enumerate(scorer.working_maps(raw)):
        # each working map carries no trace of its fold and all of the other reflections
        back = spread.grid.to_coefficients(working)
        assert np.abs(back[folds == number]).max() < 1e-6 * np.abs(raw).max()
        assert np.allclose(back[folds != number], raw[folds != number], atol=1e-4)


def test_tie_boundary_probes_halve_the_gaps_beyond_the_tie():
    """Midpoints towards the next scored weight beyond each end of the tie, where that lies
    more than the tolerance away and negentropy does not fall towards the end."""
    from meteor_cctbx.maximize import ScanPoint, ScanResult
    from meteor_cctbx.parameter_choice import tie_boundary_probes

    scan = ScanResult("w", [ScanPoint(x, 0.0, 0.0) for x in (0.1, 0.316, 1.0, 3.16)])
    tied = [p for p in scan.points if p.parameter in (0.316, 1.0)]
    assert tie_boundary_probes(scan, tied, 0.1) == pytest.approx([0.1778, 1.7776], rel=1e-3)
    close = ScanResult("w", [ScanPoint(x, 0.0, 0.0) for x in (0.9, 1.0, 1.1)])
    assert tie_boundary_probes(close, [close.points[1]], 0.1) == []  # gaps < 0.1 decade
    edge = ScanResult("w", [ScanPoint(x, 0.0, 0.0) for x in (1.0, 3.16)])
    assert tie_boundary_probes(edge, [edge.points[0]], 0.1) == [pytest.approx(1.7776, 1e-3)]
    # negentropy falls from the tie's inside towards its upper end, rises towards the lower
    # end: only the lower end can move the choice within the tie, only it is probed
    rising_down = ScanResult("w", [ScanPoint(x, 0.0, 0.0, {"negentropy": n}) for x, n in
                                   ((0.1, 0.0), (0.316, 0.5), (0.5, 0.4), (1.0, 0.2),
                                    (3.16, 0.0))])
    tied = [p for p in rising_down.points if 0.3 < p.parameter < 2]
    assert tie_boundary_probes(rising_down, tied, 0.1) == [pytest.approx(0.1778, rel=1e-3)]


def test_the_tie_ends_within_the_scan_tolerance_of_an_untied_weight(spread):
    """With a signal, every end of the tie that has a scored weight beyond it has one within
    0.1 decade (the scan's tolerance): the range negentropy picks from is the data's tie, not
    the coarse grid's."""
    criteria = spread.default.metadata["criteria"]
    assert criteria["tv_determined_by_data"] is True
    lowest, highest = criteria["tv_tied_range"]
    evaluated = sorted(p.parameter for p in spread.default.tv_scan.points)
    below = [x for x in evaluated if x < lowest]
    above = [x for x in evaluated if x > highest]
    limit = SCAN_STEP_DECADES + 1e-9
    if below:
        assert np.log10(lowest / below[-1]) <= limit
    if above:
        assert np.log10(above[0] / highest) <= limit


def test_negentropy_rising_through_the_tie_leaves_the_choice_to_cc_free(source,
                                                                          phasing_model):
    """A non-isomorphous pair (derivative cell edges 1 % longer: a difference that is not
    sparse), a clear change: the full map's negentropy still rises at the tie's heavier end,
    so it marks no weight where TV just removes the noise, and CC_free's peak is taken (the
    vertex of the parabola through the scan points near the best, within the tie); that map is
    closer to the truth than the one at negentropy's end of the tie."""
    from meteor_cctbx.diffmap import complex_array
    from meteor_cctbx.map_metrics import map_correlation
    from meteor_cctbx.parameter_choice import best_uncollapsed

    case = family.make_case(source, "spread", 0.4, 1.0, cell_change=1.0)
    f_model = model_structure_factors(phasing_model, case.native).f_model
    log = io.StringIO()
    result = compute_diffmap(case.derivative, case.native, f_model, log=log)
    criteria = result.metadata["criteria"]
    lowest, highest = criteria["tv_tied_range"]
    assert criteria["tv_best_cc_free_taken"] is True
    best = best_uncollapsed(result.tv_scan)
    assert best.score >= CLEAR_SIGNAL_Z * criteria["tv_cc_free_standard_error"]
    assert criteria["tv_refinement_scan"]["best_parameter"] == highest > lowest
    chosen = result.metadata["tv_weight_relative"]
    assert chosen == cc_free_peak(result.tv_scan, lowest, highest)
    assert lowest <= chosen < highest
    assert abs(np.log10(chosen / best.parameter)) <= PEAK_FIT_HALF_WIDTH
    assert "negentropy still rises" in log.getvalue()
    difference = result.pair.weighted_difference
    weighted = result.grid.to_map(difference * kweight.kweights(
        difference, result.pair.sigma_delta, result.k_parameter))
    heavier_end = tv.denoise(weighted, highest * float(weighted.std()),
                             tv_settings(default_params("diffmap")))
    at_end = complex_array(result.pair.derivative, result.grid.to_coefficients(heavier_end))
    truth = case.true_difference
    # measured: 0.726 against 0.719
    assert map_correlation(result.map_coefficients, truth) > \
        map_correlation(at_end, truth) + 0.004


def scan_of(curve, weights) -> ScanResult:
    """A validation scan of CC_free ``curve(log10 weight)`` at ``weights`` (negentropy rising
    with the weight: no point collapsed)."""
    return ScanResult("tv_weight_relative", [
        ScanPoint(w, float(curve(np.log10(w))), 0.0, {"negentropy": float(w)}) for w in weights])


def test_cc_free_peak_is_the_vertex_of_the_parabola_near_the_best_within_the_tie():
    """Points on an exact parabola peaking at 0.5 (log10 -0.301), scanned on a 0.1-decade grid
    whose best point is 0.5012 away from it: the vertex is found between the points; points
    beyond PEAK_FIT_HALF_WIDTH of the best do not pull it; it stays within the tie; too few
    points or a curve without a maximum leave the best point."""
    peak = np.log10(0.5)
    weights = [0.1, 0.316, 0.398, 0.447, 0.562, 0.631, 0.708, 1.0, 3.16]

    def parabola_then_cliff(x):  # a parabola near the peak, falling off a cliff far above it
        return 0.3 - (x - peak) ** 2 - (2.0 if x > 0.2 else 0.0)

    scan = scan_of(parabola_then_cliff, weights)
    assert scan.best.parameter == 0.447
    assert cc_free_peak(scan, 0.1, 3.16) == pytest.approx(0.5, rel=1e-9)
    assert cc_free_peak(scan, 0.447, 0.631) == pytest.approx(0.5, rel=1e-9)
    assert cc_free_peak(scan, 0.52, 0.631) == 0.52  # the vertex outside the tie: its end
    sparse = scan_of(parabola_then_cliff, [0.1, 0.447, 3.16])  # one point within 0.3 decade
    assert cc_free_peak(sparse, 0.1, 3.16) == 0.447
    convex = scan_of(lambda x: (x - peak) ** 2, [0.398, 0.447, 0.562])
    assert cc_free_peak(convex, 0.398, 0.562) == convex.best.parameter


def test_no_signal_falls_back_and_warns(source, phasing_model):
    """A change far below the noise: validation sees nothing and says so."""
    case = family.make_case(source, "compact", 0.002, 2.0)
    f_model = model_structure_factors(phasing_model, case.native).f_model
    log = io.StringIO()
    result = compute_diffmap(case.derivative, case.native, f_model, log=log)
    assert result.metadata["criteria"]["tv_determined_by_data"] is False
    assert "no difference signal above noise" in log.getvalue()
    scan = result.tv_scan
    from meteor_cctbx.parameter_choice import is_collapsed

    # every candidate is tied, and the full map's negentropy decides over all of them
    criteria = result.metadata["criteria"]
    candidates = [p.parameter for p in scan.points if not is_collapsed(p, scan)]
    assert tuple(criteria["tv_tied_range"]) == (min(candidates), max(candidates))
    assert result.metadata["tv_weight_relative"] == \
        criteria["tv_refinement_scan"]["best_parameter"]
    # a flat curve ties every candidate: a coarse end first left out is scored too, unless
    # the scan's point beside it is a collapsed map (never a candidate, nor what lies beyond)

    lower, upper = default_params("diffmap").tv.relative_search_range
    assert set(scan.skipped) <= {upper}
    if scan.skipped:
        assert is_collapsed(max(scan.points, key=lambda p: p.parameter), scan)
    assert min(p.parameter for p in scan.points) == pytest.approx(lower)


def test_coarse_ends_are_left_out_only_when_not_needed(spread):
    """The ends of the coarse scan are denoised only when the best of its inner points is
    beside them (the bracket needs them then); the record lists those left out, and no point
    lies beyond them."""
    lower, upper = default_params("diffmap").tv.relative_search_range
    scan = spread.default.tv_scan
    scores = {round(float(np.log10(p.parameter)), 6): p.score for p in scan.points}
    coarse = [round(float(u), 6) for u in np.linspace(np.log10(lower), np.log10(upper), 5)]
    best_inner = max(coarse[1:-1], key=lambda u: scores[u])
    needed = ({lower} if best_inner == coarse[1] else set()) | \
        ({upper} if best_inner == coarse[-2] else set())
    assert sorted(scan.skipped) == pytest.approx(sorted({lower, upper} - needed))
    assert scan.skipped  # this case's optimum lies inside: at least one end is left out
    assert scan.as_dict()["skipped_end_points"] == scan.skipped
    assert all(lower <= p.parameter <= upper for p in scan.points)
    assert all(p.parameter not in scan.skipped for p in scan.points)


def test_collapsed_maps_are_not_candidates():
    """A higher CC_free on maps flattened past the negentropy peak is not taken."""
    from meteor_cctbx.maximize import ScanPoint, ScanResult
    from meteor_cctbx.parameter_choice import best_uncollapsed, is_collapsed

    points = [ScanPoint(w, cc, 0.0, {"negentropy": j}) for w, cc, j in
              [(0.1, 0.034, 0.001), (1.0, 0.038, 0.59), (2.7, 0.028, 0.002),
               (3.7, 0.071, 0.0017)]]
    scan = ScanResult("tv_weight_relative", points)
    assert scan.best.parameter == 3.7
    assert is_collapsed(points[3], scan) and not is_collapsed(points[0], scan)
    assert best_uncollapsed(scan).parameter == 1.0
