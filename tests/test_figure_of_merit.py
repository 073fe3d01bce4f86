"""Figure-of-merit weighting of the difference: the figures of merit track the model's real
phase errors, and the weighted map is closer to the truth, most on a non-isomorphous pair."""
import io

import iotbx.pdb  # noqa: F401  (cctbx first)
import numpy as np
import pytest
from cctbx import miller
from cctbx.array_family import flex

from meteor_cctbx import family
from meteor_cctbx.diffmap import compute_diffmap
from meteor_cctbx.figure_of_merit import sigmaa_figures_of_merit
from meteor_cctbx.map_metrics import map_correlation
from meteor_cctbx.model_phases import model_from_pdb_text, model_structure_factors
from meteor_cctbx.phil import default_params
from meteor_cctbx.synthetic import true_structure_factors


def unweighted_params():
    params = default_params("diffmap")
    params.figure_of_merit.mode = "none"
    return params


def test_figures_of_merit_follow_the_true_phase_error(example, example_f_model):
    """Shell by shell, the mean figure of merit rises and falls with the mean cosine of the
    model phases' true error (the true native known), and is about as large."""
    native = example.pair.native
    f_model = example_f_model.common_set(native)
    truth = true_structure_factors(example.pair.native_structure, native)
    fom = sigmaa_figures_of_merit(native, f_model)
    assert fom.shape == (native.size(),) and 0 <= fom.min() and fom.max() <= 1
    cosine = np.cos(np.angle(f_model.data().as_numpy_array()
                             * np.conj(truth.data().as_numpy_array())))
    shells = np.minimum((native.d_min() / native.d_spacings().data().as_numpy_array()) ** 3
                        * 8, 7.999).astype(int)
    mean_fom = np.array([fom[shells == s].mean() for s in range(8)])
    mean_cosine = np.array([cosine[shells == s].mean() for s in range(8)])
    # measured: 0.88 -> 0.74 against 0.87 -> 0.76, at most 0.033 apart
    assert np.corrcoef(mean_fom, mean_cosine)[0, 1] > 0.8, (mean_fom, mean_cosine)
    assert np.abs(mean_fom - mean_cosine).max() < 0.06, (mean_fom, mean_cosine)
    # per reflection: reflections given a high figure of merit have the smaller errors
    high = fom > np.median(fom)
    assert cosine[high].mean() > cosine[~high].mean() + 0.1


def test_figures_of_merit_need_the_same_reflections(example, example_f_model):
    with pytest.raises(ValueError, match="same reflections"):
        sigmaa_figures_of_merit(example.pair.native, example_f_model.select(
            flex.bool(np.arange(example_f_model.size()) % 2 == 0)))


@pytest.fixture(scope="module")
def non_isomorphous():
    """The small family's spread change at q 0.4 in a derivative crystal 2 % larger."""
    source = family.source_small(d_min=2.0)
    model = model_from_pdb_text(source.phasing_model_pdb)
    case = family.make_case(source, "spread", 0.4, 1.0, cell_change=2.0)
    return case, model_structure_factors(model, case.native).f_model


def test_weighting_brings_a_non_isomorphous_map_closer_to_the_truth(non_isomorphous):
    case, f_model = non_isomorphous
    assert not case.derivative.unit_cell().is_similar_to(case.native.unit_cell())
    log = io.StringIO()
    weighted = compute_diffmap(case.derivative, case.native, f_model, log=log)
    assert "put on the native's cell" in log.getvalue()
    assert "figures of merit of the model phases" in log.getvalue()
    unweighted = compute_diffmap(case.derivative, case.native, f_model, unweighted_params())
    truth = case.true_difference
    cc_weighted = map_correlation(weighted.map_coefficients, truth)
    cc_unweighted = map_correlation(unweighted.map_coefficients, truth)
    cc_raw = map_correlation(weighted.raw_coefficients, truth)
    # measured: 0.676 against 0.652 unweighted and 0.550 for DF_RAW
    assert cc_weighted > cc_unweighted + 0.01, (cc_weighted, cc_unweighted)
    assert cc_weighted > cc_raw + 0.05, (cc_weighted, cc_raw)
    assert 0.5 < weighted.metadata["mean_figure_of_merit"] < 1
    assert unweighted.metadata["mean_figure_of_merit"] is None
    # DF_RAW stays the unweighted difference
    assert np.array_equal(weighted.raw_coefficients.data().as_numpy_array(),
                          unweighted.raw_coefficients.data().as_numpy_array())


def test_phases_alone_give_no_figures_of_merit(example, example_f_model):
    values = example_f_model.data().as_numpy_array()
    unit = miller.array(example_f_model, type(example_f_model.data())(values / np.abs(values)))
    log = io.StringIO()
    result = compute_diffmap(example.pair.derivative, example.pair.native, unit, log=log)
    assert result.pair.figures_of_merit is None
    assert "no figures of merit" in log.getvalue()


def test_program_writes_the_weighted_difference_and_records_the_mean(example, in_tmp,
                                                                      capsys):
    """DF and SIGDF carry the same weight w m per reflection (k-weights and figures of merit):
    |DF| / |DF_RAW| = SIGDF / sigma_D; the JSON holds the mean figure of merit."""
    import json

    from helpers import FAST, difference_columns, example_inputs, run_program
    from meteor_cctbx.programs import diffmap

    # unscaled, so that SIGDF can be compared with the input sigmas
    status, out, err = run_program(diffmap.Program, example_inputs(example) + FAST +
                                   ["scaling.mode=none"], capsys)
    assert status == 0, err
    assert "figures of merit of the model phases" in out
    raw, weighted, sigdf, sigma_d = difference_columns(in_tmp / "meteor_diffmap.mtz",
                                                       example.pair)
    strong = np.abs(raw) > 0.1 * np.abs(raw).mean()
    ratio = np.abs(weighted)[strong] / np.abs(raw)[strong]
    assert np.allclose(ratio, sigdf[strong] / sigma_d[strong], rtol=1e-3)
    mean_fom = json.loads((in_tmp / "meteor_diffmap.json").read_text())["result"][
        "mean_figure_of_merit"]
    assert 0.5 < mean_fom < 1
    assert ratio.std() > 0.05  # a per-reflection weight, not one constant
