"""Promises of the difference-map parameters and inputs checked for what they do, not only
that they change something (tests/test_parameters.py): bulk solvent gives better phases, the
scattering table is used, resolution cuts and isomorphism shells, TV search range and
iterations, map sampling, F+sigma preferred over I+sigma, get_results, the reindexing record.
Small example at d_min 3 A."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cctbx import sgtbx
from libtbx.utils import Sorry

from meteor_cctbx import tv
from meteor_cctbx.diffmap import compute_diffmap, tv_settings
from meteor_cctbx.example import write_example
from meteor_cctbx.map_metrics import map_correlation
from meteor_cctbx.model_phases import load_model, model_structure_factors
from meteor_cctbx.phil import default_params
from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.reflections import select_amplitudes
from meteor_cctbx.synthetic import true_structure_factors

from helpers import FAST, run_program


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("small")
    pair = write_example(directory, d_min=3.0, ligand_occupancy=0.6, seed=0)
    model = load_model(directory / "model.pdb", pair.native.crystal_symmetry())
    return directory, pair, model


def phase_correlation(f_model, structure) -> float:
    """Map CC of |F_true| exp(i phi_model) with the true map: how good the model's phases are."""
    truth = true_structure_factors(structure, f_model)
    phased = truth.customized_copy(data=type(truth.data())(
        np.abs(truth.data().as_numpy_array())
        * np.exp(1j * np.angle(f_model.data().as_numpy_array()))))
    return map_correlation(phased, truth)


def test_bulk_solvent_gives_better_phases_and_fit(small):
    """The true native here has no solvent, but its model has coordinate and B errors; the
    flat bulk-solvent fit absorbs the low-resolution mismatch: lower R and phases closer to
    the truth."""
    _, pair, model = small
    with_solvent = model_structure_factors(model, pair.native, bulk_solvent=True)
    without = model_structure_factors(model, pair.native, bulk_solvent=False)
    assert with_solvent.r_work < without.r_work
    assert phase_correlation(with_solvent.f_model, pair.native_structure) > \
        phase_correlation(without.f_model, pair.native_structure)


def test_scattering_table_is_the_one_used(small):
    _, pair, model = small
    xray = model_structure_factors(model, pair.native, "n_gaussian", bulk_solvent=False)
    electron = model_structure_factors(model, pair.native, "electron", bulk_solvent=False)
    assert electron.scattering_table == "electron"
    types = model.get_xray_structure().scattering_type_registry().last_table()
    assert types == "electron"
    # the same sites, other form factors: phases nearly equal, amplitudes not
    x, e = (a.f_model.data().as_numpy_array() for a in (xray, electron))
    assert np.corrcoef(np.abs(x), np.abs(e))[0, 1] < 0.999
    with pytest.raises(Sorry, match="scattering_table"):
        model_structure_factors(model, pair.native, "bogus")


def test_resolution_cuts_and_isomorphism_shells_in_the_record(small, in_tmp, capsys):
    directory, _, _ = small
    status, _, err = run_program(Diffmap, [directory / n for n in ("derivative.mtz",
                                                                  "native.mtz", "model.pdb")]
                                 + FAST + ["d_min=3.5", "d_max=12", "isomorphism.n_bins=4"],
                                 capsys)
    assert status == 0, err
    record = json.loads((in_tmp / "meteor_diffmap.json").read_text())
    for role in ("derivative", "native"):
        summary = record["data"][role]
        assert 3.5 <= summary["d_min"] < 3.6 and 11 < summary["d_max"] <= 12
    shells = record["data"]["isomorphism_shells"]
    assert len(shells) == 4
    assert shells[0]["d_max"] <= 12 and shells[-1]["d_min"] >= 3.5


def test_cell_difference_above_the_threshold_is_one_sorry(small, in_tmp, capsys):
    from cctbx import crystal

    directory, pair, _ = small
    cell = list(pair.derivative.unit_cell().parameters())
    cell[0] *= 1.02
    longer = pair.derivative.customized_copy(crystal_symmetry=crystal.symmetry(
        tuple(cell), space_group_info=pair.derivative.space_group_info()))
    longer.as_mtz_dataset(column_root_label="F").mtz_object().write(str(in_tmp / "long.mtz"))
    args = [in_tmp / "long.mtz", directory / "native.mtz", directory / "model.pdb"] + FAST
    status, _, err = run_program(Diffmap, args + ["isomorphism.max_cell_difference=1"], capsys)
    assert status == 1 and "Sorry" in err and "max_cell_difference" in err, err
    status, out, err = run_program(Diffmap, args + ["isomorphism.max_cell_difference=3"], capsys)
    assert status == 0, err
    assert "largest cell difference 1.98 %" in out and "put on the native's cell" in out


@pytest.fixture(scope="module")
def f_model(small):
    _, pair, model = small
    return model_structure_factors(model, pair.native).f_model


def test_tv_scan_stays_inside_the_relative_search_range(small, f_model):
    _, pair, _ = small
    params = default_params("diffmap")
    params.kweight.mode = "fixed"
    params.tv.relative_search_range = [0.5, 2.0]
    params.tv.max_iterations = 10
    result = compute_diffmap(pair.derivative, pair.native, f_model, params)
    scanned = [p.parameter for p in result.tv_scan.points]
    ends = scanned + result.tv_scan.skipped  # coarse ends the scan did not need
    assert min(ends) == pytest.approx(0.5) and max(ends) == pytest.approx(2.0)
    assert 0.5 - 1e-9 <= min(scanned) <= max(scanned) <= 2.0 + 1e-9
    assert 0.5 <= result.metadata["tv_weight_relative"] <= 2.0


def test_tv_max_iterations_and_map_sampling_reach_the_solver_and_grid(small, f_model):
    from meteor_cctbx import kweight

    _, pair, _ = small
    params = default_params("diffmap")
    params.kweight.mode = params.tv.mode = "fixed"
    params.tv.max_iterations, params.map.sampling = 7, 4.0
    result = compute_diffmap(pair.derivative, pair.native, f_model, params)
    cell = np.array(pair.native.unit_cell().parameters()[:3])
    spacing = cell / np.array(result.grid.n_real)
    assert (spacing <= pair.native.d_min() / 4.0 + 1e-6).all()
    assert (spacing > pair.native.d_min() / 4.0 * 0.75).all()  # not much finer than asked
    raw = result.pair.weighted_difference
    weighted = result.grid.to_map(raw * kweight.kweights(raw, result.pair.sigma_delta,
                                                         params.kweight.k_parameter))
    seven = tv.denoise(weighted, params.tv.weight, tv_settings(params))
    params.tv.max_iterations = 50
    fifty = tv.denoise(weighted, params.tv.weight, tv_settings(params))
    assert np.array_equal(result.final_map, seven) and not np.array_equal(seven, fifty)


def test_amplitudes_with_sigmas_are_preferred_over_intensities(small):
    """An MTZ holding I,SIGI and F,SIGF: the amplitudes are taken, as the help says."""
    _, pair, _ = small
    amplitudes = pair.native
    intensities = amplitudes.f_as_f_sq()
    for order in ([intensities, amplitudes], [amplitudes, intensities]):
        chosen = select_amplitudes(order, "both.mtz", None, "Native")
        assert np.array_equal(chosen.data().as_numpy_array(),
                              amplitudes.data().as_numpy_array())
    only_intensities = select_amplitudes([intensities], "i.mtz", None, "Native")
    assert only_intensities.is_xray_amplitude_array()  # French-Wilson


def test_get_results_is_the_map_written(small, in_tmp):
    """ProgramTemplate's get_results(): the DiffmapResult whose map is the MTZ's DELFWT."""
    import contextlib
    import io

    from iotbx.cli_parser import run_program as iotbx_run_program

    from meteor_cctbx.command_line import MeteorParser
    from helpers import mtz_arrays
    directory, _, _ = small
    with contextlib.redirect_stdout(io.StringIO()):
        result = iotbx_run_program(Diffmap, parser_class=MeteorParser, args=[
            str(directory / n) for n in ("derivative.mtz", "native.mtz", "model.pdb")] + FAST)
    written = mtz_arrays(in_tmp / "meteor_diffmap.mtz")["DELFWT,PHDELWT"]
    assert result.k_parameter == 0.05 and result.tv_weight == 0.01
    assert map_correlation(result.map_coefficients, written) > 0.99999


def test_reindexing_is_recorded_with_its_operator(small, in_tmp, capsys):
    directory, pair, _ = small
    given = pair.derivative.change_basis(sgtbx.change_of_basis_op("k,l,h")).map_to_asu()
    given.as_mtz_dataset(column_root_label="F").mtz_object().write(str(in_tmp / "perm.mtz"))
    status, _, err = run_program(Diffmap, [in_tmp / "perm.mtz", directory / "native.mtz",
                                           directory / "model.pdb"] + FAST, capsys)
    assert status == 0, err
    operator = json.loads((in_tmp / "meteor_diffmap.json").read_text())["data"][
        "derivative_reindexed"]
    assert operator is not None
    back = given.change_basis(sgtbx.change_of_basis_op(operator))
    assert back.unit_cell().is_similar_to(pair.native.unit_cell())


def test_phaseboost_is_deterministic(small, f_model):
    """Two runs on the same inputs give the same retrieved phases and map, bit for bit (the
    program-level check with files is test_robustness.test_identical_runs_give_identical_files)."""
    from meteor_cctbx.phaseboost import compute_phaseboost

    _, pair, _ = small
    params = default_params("phaseboost")
    params.phaseboost.max_iterations = 3
    runs = [compute_phaseboost(pair.derivative, pair.native, f_model, params) for _ in range(2)]
    for name in ("derivative_coefficients", "map_coefficients"):
        a, b = (getattr(r, name).data().as_numpy_array() for r in runs)
        assert np.array_equal(a, b), name
    assert [i.tv_weight for i in runs[0].iterations] == [i.tv_weight for i in runs[1].iterations]
