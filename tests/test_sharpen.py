"""meteor.sharpen on synthetic maps whose truth is known: density of a hand-built chain of atoms
(cctbx structure factors), blurred by B = 100 Å² and given noise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# cctbx before scipy (see meteor_cctbx/sharpen.py)
from cctbx import crystal, miller, xray
from cctbx.array_family import flex
import iotbx.mtz
from iotbx.map_model_manager import map_model_manager as MapModelManager

import numpy as np
import pytest
import scipy.stats

from meteor_cctbx import sharpen
from meteor_cctbx.synthetic import random_protein_like

from helpers import cc, chain_sites, map_manager_of, map_on_grid, read_map, run_sharpen

CELL = 40.0
GRID = 64
D_MIN = 2.5
BLUR = 100.0
FORM = sharpen.SharpeningForm(d_min=0.833 * D_MIN, d_cut=D_MIN)


def blurred(coefficients: miller.array, b: float) -> miller.array:
    factors = flex.exp(-b * coefficients.d_star_sq().data() / 4.0)
    return coefficients.customized_copy(data=coefficients.data() * factors)


@pytest.fixture(scope="module")
def structure():
    """800 carbon atoms (B = 20 Å²) filling a sphere of radius 12 Å in a 40 Å P1 cell."""
    rng = np.random.default_rng(1)
    symmetry = crystal.symmetry((CELL,) * 3 + (90, 90, 90), "P1")
    scatterers = flex.xray_scatterer()
    for site in chain_sites(800, 12.0, rng) + CELL / 2:
        scatterers.append(xray.scatterer("C", site=tuple(site / CELL), b=20.0))
    return xray.structure(crystal_symmetry=symmetry, scatterers=scatterers)


@pytest.fixture(scope="module")
def data(structure):
    """Truth map, its blurred (B = 100 Å²) noisy version, two noisy half maps."""
    f_calc = structure.structure_factors(d_min=D_MIN).f_calc()
    truth = map_on_grid(f_calc, (GRID,) * 3)
    clean = map_on_grid(blurred(f_calc, BLUR), (GRID,) * 3)
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(scale=0.35 * clean.std(), size=clean.shape)
    halves = [clean + rng.normal(scale=clean.std(), size=clean.shape) for _ in range(2)]
    return {"f_calc": f_calc, "symmetry": f_calc.crystal_symmetry(), "truth": truth,
            "noisy": noisy, "halves": halves}


def brute_force_best_cc(values: np.ndarray, truth: np.ndarray) -> float:
    fourier = sharpen.FourierMap.from_map(values, crystal.symmetry(
        (CELL,) * 3 + (90, 90, 90), "P1").unit_cell())
    return max(cc(fourier.synthesize(FORM.factors(fourier.d_star_sq, b)), truth)
               for b in np.arange(-100.0, 301.0, 5.0))


# ----------------------------------------------------------------------------------------------
# Building blocks


def test_grid_d_star_sq_matches_cctbx_for_a_triclinic_cell():
    unit_cell = crystal.symmetry((31.0, 37.0, 43.0, 71.0, 98.0, 107.0), "P1").unit_cell()
    shape = (12, 10, 14)
    grid = sharpen.d_star_sq_of_grid(shape, unit_cell)
    for h, k, l in [(1, 0, 0), (0, -3, 2), (-5, 4, 7), (3, 4, 1), (-5, -4, 7)]:
        expected = unit_cell.d_star_sq((h, k, l))
        assert grid[h % shape[0], k % shape[1], l] == pytest.approx(expected, rel=1e-5)


def test_sharpening_form_leaves_f000_switches_at_d_cut_and_drops_beyond_d_min():
    d = np.array([np.inf, 20.0, 4.0, 2.2, 1.5])
    d_star_sq = np.where(np.isinf(d), 0.0, 1.0 / d**2).astype(np.float32)
    form = sharpen.SharpeningForm(d_min=2.0, d_cut=3.0, k_sharpen=10.0, b_blur_hires=200.0)
    factors = form.factors(d_star_sq, 80.0)
    assert factors[0] == 1.0
    assert factors[1] == pytest.approx(np.exp(80.0 / 4 / 20.0**2), rel=1e-4)
    assert factors[2] == pytest.approx(np.exp(80.0 / 4 / 4.0**2), rel=1e-3)
    assert factors[3] == pytest.approx(np.exp(-120.0 / 4 / 2.2**2), rel=1e-2)  # 80 - 200
    assert factors[4] == 0.0
    plain = sharpen.SharpeningForm(d_min=2.0, d_cut=3.0, k_sharpen=0.0)
    assert plain.factors(d_star_sq, -50.0)[3] == pytest.approx(np.exp(-50.0 / 4 / 2.2**2),
                                                               rel=1e-4)


def test_effective_b_of_a_plain_b_sharpening_is_that_b(data):
    unit_cell = data["symmetry"].unit_cell()
    fourier = sharpen.FourierMap.from_map(data["noisy"], unit_cell)
    plain = sharpen.SharpeningForm(d_min=D_MIN, k_sharpen=0.0)
    for b in (-40.0, 60.0):
        after = fourier.synthesize(plain.factors(fourier.d_star_sq, b))
        result = sharpen.applied_scale(data["noisy"], after, unit_cell, D_MIN)
        assert result.effective_b == pytest.approx(b, abs=1.0)
        assert result.correlation > 0.999


# ----------------------------------------------------------------------------------------------
# b_factor: search by clarity score


@pytest.mark.parametrize("score", ["negentropy", "kurtosis"])
def test_b_factor_search_recovers_the_best_single_b_map(data, score):
    mm = map_manager_of(data["noisy"], data["symmetry"])
    result = sharpen.sharpen_b_factor(mm, D_MIN, FORM, score_name=score)
    cc_in = cc(data["noisy"], data["truth"])
    cc_out = cc(result.map_values, data["truth"])
    assert cc_out > cc_in + 0.03
    assert cc_out >= brute_force_best_cc(data["noisy"], data["truth"]) - 0.02


@pytest.fixture(scope="module")
def scans(data):
    mm = map_manager_of(data["noisy"], data["symmetry"])
    return {score: sharpen.sharpen_b_factor(mm, D_MIN, FORM, score_name=score)
            for score in sharpen.SCORES}


@pytest.mark.parametrize("score", sharpen.SCORES)
def test_each_score_picks_the_maximum_of_its_own_scan(scans, score):
    result = scans[score]
    best = max(result.scan.points, key=lambda p: p.score)
    assert result.b_sharpen == best.parameter
    assert len({round(p.parameter, 6) for p in result.scan.points}) == len(result.scan.points)


def test_kurtosis_scan_values_are_the_kurtosis_of_the_trial_maps(data, scans):
    """The scan scores really are kurtosis (cctbx's score_map overwrote it with adjusted_sa)."""
    fourier = sharpen.FourierMap.from_map(data["noisy"], data["symmetry"].unit_cell())
    for point in scans["kurtosis"].scan.points[::5]:
        trial = fourier.synthesize(FORM.factors(fourier.d_star_sq, point.parameter))
        assert point.score == pytest.approx(scipy.stats.kurtosis(trial.ravel(), fisher=False),
                                            rel=1e-4)
    assert abs(scans["kurtosis"].b_sharpen - scans["adjusted_sa"].b_sharpen) > 10.0


def test_adjusted_sa_scan_values_follow_cctbx_score_map(data, scans):
    from cctbx.maptbx import segment_and_split_map

    result = scans["adjusted_sa"]
    fourier = sharpen.FourierMap.from_map(data["noisy"], data["symmetry"].unit_cell())
    point = result.scan.points[7]
    trial = fourier.synthesize(FORM.factors(fourier.d_star_sq, point.parameter))
    info = segment_and_split_map.sharpening_info()
    info.solvent_fraction, info.wrapping = result.solvent_fraction, True
    info.fraction_occupied, info.sa_percent, info.max_regions_to_test = 0.2, 30.0, 30
    info.region_weight, info.sharpening_target = result.region_weight, "adjusted_sa"
    scored = segment_and_split_map.score_map(map_data=flex.double(trial.astype(np.float64)),
                                             sharpening_info_obj=info)
    assert point.score == pytest.approx(scored.adjusted_sa, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# half_map


def test_half_map_sharpening_beats_the_plain_average(data):
    """cryo-EM-like half maps (not wrapped), resolution from their FSC, default settings."""
    h1, h2 = (map_manager_of(h, data["symmetry"], wrapping=False) for h in data["halves"])
    fsc = sharpen.half_map_fsc(h1, h2)
    assert 2.5 < fsc.d_min < 4.5 and fsc.fsc[0] > 0.5
    mmm = MapModelManager(map_manager_1=h1, map_manager_2=h2)
    average = mmm.map_manager().map_data().as_numpy_array()
    sharpened = sharpen.sharpen_with_half_maps(mmm, fsc.d_min, anisotropic=True, local=False)
    assert cc(sharpened.map_data().as_numpy_array(), data["truth"]) > \
        cc(average, data["truth"]) + 0.05


def test_fsc_weight_follows_the_half_maps_and_drops_noise_shells(data):
    unit_cell = data["symmetry"].unit_cell()
    f_1, f_2 = (sharpen.FourierMap.from_map(h, unit_cell) for h in data["halves"])
    form = sharpen.ShellWeightedForm.from_half_maps(f_1, f_2, 0.833 * D_MIN)
    fsc = form.statistic
    assert fsc[0] > 0.9 and np.all(form.weight <= 1) and np.all(form.weight >= 0)
    kept = form.weight > 0
    assert np.allclose(form.weight[kept], 2 * fsc[kept] / (1 + fsc[kept]))
    assert not kept[-1] and 3.0 < form.d_signal < 5.0  # the halves' signal ends near 3.5 A
    factors = form.factors(np.array([0.0, form.d_star_sq[0], 1 / 2.2**2, 1 / 2.0**2],
                                    dtype=np.float32), 40.0)
    assert factors[0] == 1.0 and factors[2] == factors[3] == 0.0
    assert factors[1] == pytest.approx(form.weight[0] * np.exp(10.0 * form.d_star_sq[0]),
                                       rel=1e-4)


def test_half_map_program_beats_cctbx_half_map_sharpen(data, tmp_path, monkeypatch):
    """Half maps of a map blurred by B = 100 A^2 (noise 1 x the signal rms in each half): the
    default (FSC weight, B by negentropy) correlates with the unblurred truth better than
    cctbx's half_map_sharpen (half_map_weighting=cctbx) and reaches 0.90."""
    for i, half in enumerate(data["halves"]):
        map_manager_of(half, data["symmetry"]).write_map(str(tmp_path / f"half_{i}.ccp4"))
    halves = ["half_map=half_0.ccp4", "half_map=half_1.ccp4", f"resolution={D_MIN}"]
    assert run_sharpen([*halves, "output.prefix=fsc"], tmp_path, monkeypatch) == 0
    assert run_sharpen([*halves, "sharpening.half_map_weighting=cctbx", "output.prefix=cctbx"],
                       tmp_path, monkeypatch) == 0
    ours, theirs = (cc(read_map(tmp_path / f"{p}.ccp4")[1],
                       data["truth"]) for p in ("fsc", "cctbx"))
    record = json.loads((tmp_path / "fsc.json").read_text())
    assert record["method"] == "half_map" and record["b_factor"]["weight_from"] == "half-map FSC"
    assert ours >= 0.90 and ours > theirs + 0.03


# ----------------------------------------------------------------------------------------------
# The program


def test_program_writes_map_coefficients_record_and_plot(data, tmp_path, monkeypatch):
    map_manager_of(data["noisy"], data["symmetry"]).write_map(str(tmp_path / "in.ccp4"))
    assert run_sharpen(["in.ccp4", f"resolution={D_MIN}"], tmp_path, monkeypatch) == 0
    record = json.loads((tmp_path / "meteor_sharpen.json").read_text())
    assert record["method"] == "b_factor"
    points = record["b_factor"]["scan"]["points"]
    assert len(points) >= 21 and record["b_factor"]["b_sharpen"] == max(
        points, key=lambda p: p["score"])["parameter"]
    assert record["effective_b"] is not None and record["timings"]
    out = read_map(tmp_path / "meteor_sharpen.ccp4")[1]
    assert cc(out, data["truth"]) > cc(data["noisy"], data["truth"])
    labels = iotbx.mtz.object(str(tmp_path / "meteor_sharpen.mtz")).column_labels()
    assert "FWT" in labels and "PHWT" in labels
    assert (tmp_path / "meteor_sharpen.png").stat().st_size > 0


def test_mtz_and_map_input_give_the_same_answer(data, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    coefficients = blurred(data["f_calc"], BLUR)
    noise = flex.complex_double(flex.double(rng.normal(size=coefficients.size())),
                                flex.double(rng.normal(size=coefficients.size())))
    coefficients = coefficients.customized_copy(
        data=coefficients.data() + noise * (0.3 * flex.mean(flex.abs(coefficients.data()))))
    coefficients.as_mtz_dataset(column_root_label="2FOFCWT").mtz_object().write(
        str(tmp_path / "in.mtz"))
    coefficients.fft_map(resolution_factor=1 / 3).as_map_manager().write_map(
        str(tmp_path / "in.ccp4"))
    d_min = coefficients.d_min()
    assert run_sharpen(["in.mtz", "labels=2FOFCWT,PHI2FOFCWT", "output.prefix=from_mtz"], tmp_path,
                       monkeypatch) == 0
    assert run_sharpen(["in.ccp4", f"resolution={d_min}", "output.prefix=from_map"], tmp_path,
                       monkeypatch) == 0
    records = [json.loads((tmp_path / f"{p}.json").read_text()) for p in ("from_mtz", "from_map")]
    assert records[0]["b_factor"]["b_sharpen"] == pytest.approx(
        records[1]["b_factor"]["b_sharpen"], abs=2.5)
    maps = [read_map(tmp_path / f"{p}.ccp4")[1]
            for p in ("from_mtz", "from_map")]
    assert maps[0].shape == maps[1].shape and cc(*maps) > 0.999


def std_ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.std(a) / np.std(b))


def assert_grid_fits_space_group(path) -> None:
    """iotbx reads the map's cell grid and space group; the grid is one cctbx accepts for it
    (refine_gridding leaves a compatible grid unchanged)."""
    mm = read_map(path)[0]
    group = mm.unit_cell_crystal_symmetry().space_group()
    assert tuple(group.refine_gridding(mm.unit_cell_grid)) == tuple(mm.unit_cell_grid)


def test_map_to_coefficients_to_sharpen_equals_map_to_sharpen(data, tmp_path, monkeypatch):
    """Round trip: the map's own Fourier coefficients (to the same Fourier limit) as an MTZ give
    the map route's result on the same absolute scale (searched B, defaults otherwise)."""
    mm = map_manager_of(data["noisy"], data["symmetry"])
    mm.write_map(str(tmp_path / "in.ccp4"))
    mm.map_as_fourier_coefficients(d_min=0.833 * D_MIN).as_mtz_dataset(
        column_root_label="FWT").mtz_object().write(str(tmp_path / "in.mtz"))
    assert run_sharpen(["in.ccp4", f"resolution={D_MIN}", "output.prefix=from_map"], tmp_path,
                       monkeypatch) == 0
    assert run_sharpen(["in.mtz", f"resolution={D_MIN}", "output.prefix=from_mtz"], tmp_path,
                       monkeypatch) == 0
    records = [json.loads((tmp_path / f"{p}.json").read_text()) for p in ("from_map", "from_mtz")]
    assert records[1]["b_factor"]["b_sharpen"] == pytest.approx(
        records[0]["b_factor"]["b_sharpen"], abs=5.0)  # masks on 64^3 and 60^3 grids
    assert [f["path"] for f in records[1]["run"]["input_files"]] == ["in.mtz"]
    assert [f["path"] for f in records[0]["run"]["input_files"]] == ["in.ccp4"]
    # the MTZ holds no grid (cctbx picks 60^3 for it, the map has 64^3): compare both maps'
    # Fourier terms on one grid
    terms = [read_map(tmp_path / f"{p}.ccp4")[0].map_as_fourier_coefficients(
                 d_min=0.833 * D_MIN) for p in ("from_map", "from_mtz")]
    terms = terms[0].common_sets(terms[1])
    maps = [sharpen.map_manager_from_coefficients(t).map_data().as_numpy_array()
            for t in terms]
    assert cc(*maps) >= 0.999
    assert std_ratio(maps[1], maps[0]) == pytest.approx(1.0, abs=0.01)
    for prefix in ("from_map", "from_mtz"):
        assert_grid_fits_space_group(tmp_path / f"{prefix}.ccp4")


@pytest.fixture(scope="module")
def orthorhombic():
    """Blurred (B = 80 A^2) map coefficients of a protein-like blob in P2_12_12_1 to 2.5 A."""
    structure = random_protein_like("P 21 21 21", (36, 40, 44, 90, 90, 90), seed=2)
    f_calc = structure.structure_factors(d_min=D_MIN).f_calc()
    return blurred(f_calc, 80.0)


def test_mtz_route_is_on_the_absolute_scale_on_a_symmetry_grid(orthorhombic, tmp_path,
                                                                monkeypatch):
    """P2_12_12_1 map coefficients: the output map is (1/V) sum F exp(-2 pi i h.x) of the
    sharpened coefficients (cctbx's volume-scaled FFT, computed independently), on a grid
    valid for the space group, and equals the result from the same map given as CCP4."""
    coefficients = orthorhombic
    coefficients.as_mtz_dataset(column_root_label="FWT").mtz_object().write(
        str(tmp_path / "in.mtz"))
    sharpen.map_manager_from_coefficients(coefficients).write_map(str(tmp_path / "in.ccp4"))
    assert_grid_fits_space_group(tmp_path / "in.ccp4")
    common = ["sharpening.b_sharpen=50", "sharpening.d_min_ratio=1"]
    assert run_sharpen(["in.mtz", "output.prefix=from_mtz", *common], tmp_path, monkeypatch) == 0
    assert run_sharpen(["in.ccp4", f"resolution={coefficients.d_min()}", "output.prefix=from_map",
                        *common], tmp_path, monkeypatch) == 0
    from_mtz = read_map(tmp_path / "from_mtz.ccp4")[0]
    assert from_mtz.unit_cell_crystal_symmetry().space_group_info().type().number() == 19
    assert_grid_fits_space_group(tmp_path / "from_mtz.ccp4")
    assert_grid_fits_space_group(tmp_path / "from_map.ccp4")
    values = from_mtz.map_data().as_numpy_array()
    expected_coefficients = coefficients.customized_copy(data=coefficients.data() * flex.exp(
        50.0 * coefficients.d_star_sq().data() / 4.0))
    expected = map_on_grid(expected_coefficients, from_mtz.unit_cell_grid, volume_scaled=True)
    assert cc(values, expected) > 0.9999
    assert std_ratio(values, expected) == pytest.approx(1.0, abs=0.01)
    from_map = read_map(tmp_path / "from_map.ccp4")[1]
    assert cc(from_map, values) >= 0.999
    assert std_ratio(from_map, values) == pytest.approx(1.0, abs=0.01)


# ----------------------------------------------------------------------------------------------
# b_factor never blurs a blurred map


def with_shell_noise(coefficients: miller.array, fraction: float,
                     rng: np.random.Generator) -> miller.array:
    """Complex Gaussian noise of rms ``fraction`` x the rms |F| of each resolution shell times
    (0.3 + 0.7 (d_min/d)^2), as errors grow with resolution in real data."""
    d_star_sq = coefficients.d_star_sq().data().as_numpy_array()
    values = coefficients.data().as_numpy_array()
    shell = np.minimum((d_star_sq / d_star_sq.max() * 10).astype(int), 9)
    rms = np.sqrt(np.bincount(shell, np.abs(values) ** 2) / np.bincount(shell))[shell]
    sigma = fraction * rms * (0.3 + 0.7 * d_star_sq / d_star_sq.max()) / np.sqrt(2)
    noise = rng.normal(size=values.size) + 1j * rng.normal(size=values.size)
    return coefficients.customized_copy(data=flex.complex_double(values + sigma * noise))


@pytest.mark.parametrize("d_min, cell", [(1.5, 30.0), (2.5, 40.0), (4.0, 48.0)])
def test_b_factor_sharpening_lowers_the_wilson_b_and_keeps_the_data(d_min, cell, tmp_path,
                                                                   monkeypatch):
    """Map coefficients blurred by B = 100 A^2 with noise (default settings, resolution from
    the data): the Wilson B goes down, every term to the data's resolution is kept with a
    factor >= 1, and the map correlates better with the unblurred truth."""
    rng = np.random.default_rng(5)
    symmetry = crystal.symmetry((cell,) * 3 + (90, 90, 90), "P1")
    scatterers = flex.xray_scatterer()
    n_atoms = int(800 * (cell / 40.0) ** 3 * 0.6)
    for site in chain_sites(n_atoms, 0.3 * cell, rng) + cell / 2:
        scatterers.append(xray.scatterer("C", site=tuple(site / cell), b=20.0))
    f_calc = xray.structure(crystal_symmetry=symmetry, scatterers=scatterers
                            ).structure_factors(d_min=d_min).f_calc()
    observed = with_shell_noise(blurred(f_calc, BLUR), 0.5, rng)
    observed.as_mtz_dataset(column_root_label="FWT").mtz_object().write(str(tmp_path / "in.mtz"))
    assert run_sharpen(["in.mtz"], tmp_path, monkeypatch) == 0
    record = json.loads((tmp_path / "meteor_sharpen.json").read_text())
    assert record["resolution"] == pytest.approx(observed.d_min())
    # the default noise weight from the solvent keeps every shell to the data's resolution
    assert record["b_factor"]["weight_from"] == "solvent noise"
    assert record["b_factor"]["d_signal"] <= observed.d_min() + 0.05
    assert record["b_factor"]["b_sharpen"] >= 0
    assert record["wilson_b_after"] < record["wilson_b_before"] - 0.5 * \
        record["b_factor"]["b_sharpen"]
    out = iotbx.mtz.object(str(tmp_path / "meteor_sharpen.mtz")).as_miller_arrays()[0]
    ratio = flex.abs(out.common_set(observed).data()) / flex.abs(
        observed.common_set(out).data())
    assert out.size() == observed.size() and flex.min(ratio) >= 1 - 1e-6
    truth = sharpen.map_manager_from_coefficients(f_calc).map_data().as_numpy_array()
    before = sharpen.map_manager_from_coefficients(observed).map_data().as_numpy_array()
    after = read_map(tmp_path / "meteor_sharpen.ccp4")[1]
    assert cc(after, truth) > cc(before, truth) + 0.01


def test_solvent_noise_weight_estimates_the_signal_fraction(data):
    """White noise of 0.35 x the rms of a map blurred by 100 A^2: the weight from the solvent
    is near 1 at low resolution, drops where the blurred signal sinks below the noise, and
    sharpening with it beats sharpening every term to the resolution."""
    mm = map_manager_of(data["noisy"], data["symmetry"])
    values = data["noisy"].astype(np.float32)
    fourier = sharpen.FourierMap.from_map(values, data["symmetry"].unit_cell())
    molecule = sharpen.MolecularRegion.of_map(mm, D_MIN).mask
    form = sharpen.ShellWeightedForm.from_solvent_noise(fourier, values, molecule, FORM.d_min)
    assert form.source == "solvent noise" and form.weight[0] > 0.8
    assert 3.0 < form.d_signal < 4.5 and not form.weight[-1]
    weighted = sharpen.sharpen_b_factor(mm, D_MIN, form)
    plain = sharpen.sharpen_b_factor(mm, D_MIN, FORM)
    assert cc(weighted.map_values, data["truth"]) > cc(plain.map_values, data["truth"]) + 0.005


def test_single_map_default_beats_every_b_of_phenix_form(data, tmp_path, monkeypatch):
    """The default (solvent noise weight, B by negentropy) against cctbx's b_iso_to_d_cut
    sharpening (apply_sharpening, d_cut = resolution) at its best B for the truth."""
    import io

    from cctbx.maptbx import segment_and_split_map

    map_manager_of(data["noisy"], data["symmetry"]).write_map(str(tmp_path / "in.ccp4"))
    assert run_sharpen(["in.ccp4", f"resolution={D_MIN}"], tmp_path, monkeypatch) == 0
    ours = cc(read_map(tmp_path / "meteor_sharpen.ccp4")[1],
              data["truth"])
    coefficients = map_manager_of(data["noisy"], data["symmetry"]).map_as_fourier_coefficients(
        d_min=0.833 * D_MIN)
    best_phenix = max(cc(segment_and_split_map.apply_sharpening(
        map_coeffs=coefficients, n_real=(GRID,) * 3, b_sharpen=float(b),
        crystal_symmetry=data["symmetry"], d_min=D_MIN, k_sharpen=10.0, b_blur_hires=200.0,
        out=io.StringIO()).map_data.as_numpy_array(), data["truth"])
        for b in range(0, 201, 10))
    assert ours > best_phenix


def test_search_never_blurs_a_blurred_noisy_map(data):
    """Noise 3x the signal: a clarity score may prefer blurring; the search stops at B = 0."""
    rng = np.random.default_rng(9)
    very_noisy = data["noisy"] + rng.normal(scale=3.0 * data["noisy"].std(),
                                            size=data["noisy"].shape)
    result = sharpen.sharpen_b_factor(map_manager_of(very_noisy, data["symmetry"]), D_MIN, FORM)
    assert min(p.parameter for p in result.scan.points) == 0.0
    assert result.b_sharpen >= 0.0


def test_nonzero_origin_cell_and_labels_round_trip(data, tmp_path, monkeypatch):
    box = data["noisy"][4:60, 6:58, 2:62]
    origin = (-20, 7, 33)
    mm = map_manager_of(box, data["symmetry"], origin=origin, cell_grid=(GRID,) * 3)
    mm.add_label("synthetic test box")
    mm.write_map(str(tmp_path / "box.ccp4"))
    assert run_sharpen(["box.ccp4", f"resolution={D_MIN}", "sharpening.b_sharpen=50"], tmp_path,
                       monkeypatch) == 0
    before, after = (read_map(tmp_path / name)[0] for name in ("box.ccp4",
                                                                "meteor_sharpen.ccp4"))
    assert after.map_data().origin() == before.map_data().origin() == origin
    assert after.map_data().all() == before.map_data().all()
    assert after.unit_cell_grid == before.unit_cell_grid
    assert after.unit_cell_crystal_symmetry().is_similar_symmetry(
        before.unit_cell_crystal_symmetry())
    assert any("synthetic test box" in label for label in after.labels)
    expected = sharpen.FourierMap.from_map(box, before.crystal_symmetry().unit_cell())
    expected_map = expected.synthesize(FORM.factors(expected.d_star_sq, 50.0))
    assert cc(after.map_data().as_numpy_array(), expected_map) > 0.999


def test_bad_input_is_one_line_and_writes_nothing(data, tmp_path, monkeypatch, capsys):
    map_manager_of(data["noisy"], data["symmetry"]).write_map(str(tmp_path / "in.ccp4"))
    blurred(data["f_calc"], BLUR).as_mtz_dataset(column_root_label="FWT").mtz_object().write(
        str(tmp_path / "in.mtz"))
    assert run_sharpen(["in.ccp4"], tmp_path, monkeypatch) == 1
    assert "resolution=" in capsys.readouterr().err
    assert run_sharpen(["in.mtz", "labels=F,PHI"], tmp_path, monkeypatch) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "FWT,PHIFWT" in error
    assert not list(tmp_path.glob("meteor_sharpen*"))
    (tmp_path / "meteor_sharpen.json").write_text("keep")
    assert run_sharpen(["in.ccp4", f"resolution={D_MIN}"], tmp_path, monkeypatch) == 1
    assert "output.overwrite=True" in capsys.readouterr().err
    assert (tmp_path / "meteor_sharpen.json").read_text() == "keep"
    assert not (tmp_path / "meteor_sharpen.ccp4").exists()


def test_show_defaults_is_a_parameter_file_that_runs(data, tmp_path, monkeypatch, capsys):
    assert run_sharpen(["--show-defaults"], tmp_path, monkeypatch) == 0
    (tmp_path / "defaults.eff").write_text(capsys.readouterr().out)
    map_manager_of(data["noisy"], data["symmetry"]).write_map(str(tmp_path / "in.ccp4"))
    assert run_sharpen(["defaults.eff", "in.ccp4", f"resolution={D_MIN}",
                        "sharpening.score=kurtosis"], tmp_path, monkeypatch) == 0
    assert json.loads((tmp_path / "meteor_sharpen.json").read_text())["b_factor"]["score"] == \
        "kurtosis"


def test_auto_with_a_model_runs_model_sharpening(data, structure, tmp_path, monkeypatch,
                                                 capsys):
    """Model sharpening (cctbx) with a Phenix-sized log; cctbx's tables only when verbose."""
    map_manager_of(data["noisy"], data["symmetry"], wrapping=False).write_map(
        str(tmp_path / "in.ccp4"))
    (tmp_path / "model.pdb").write_text(structure.as_pdb_file())
    capsys.readouterr()
    assert run_sharpen(["in.ccp4", "model.pdb", f"resolution={D_MIN}"], tmp_path, monkeypatch) == 0
    quiet = capsys.readouterr().out.count("\n")
    assert run_sharpen(["in.ccp4", "model.pdb", f"resolution={D_MIN}", "output.verbose=True",
                        "output.prefix=verbose"], tmp_path, monkeypatch) == 0
    assert quiet < 150 < capsys.readouterr().out.count("\n")
    record = json.loads((tmp_path / "meteor_sharpen.json").read_text())
    assert record["method"] == "model" and record["effective_b"] > 0
    out = read_map(tmp_path / "meteor_sharpen.ccp4")[1]
    assert cc(out, data["truth"]) > cc(data["noisy"], data["truth"]) + 0.02


def test_half_map_outputs_do_not_depend_on_the_hash_seed(data, tmp_path):
    """Two runs in fresh interpreters with different PYTHONHASHSEED write identical files."""
    for i, half in enumerate(data["halves"]):
        map_manager_of(half[::2, ::2, ::2], data["symmetry"]).write_map(
            str(tmp_path / f"half_{i}.ccp4"))
    root = Path(__file__).resolve().parents[1]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-c", "from meteor_cctbx.command_line.sharpen import "
                        "main; main()", "half_map=half_0.ccp4", "half_map=half_1.ccp4",
                        "resolution=5", f"output.prefix=seed_{seed}"], cwd=tmp_path, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    for suffix in (".ccp4", ".mtz"):
        assert (tmp_path / f"seed_1{suffix}").read_bytes() == \
            (tmp_path / f"seed_2{suffix}").read_bytes()
    label = read_map(tmp_path / "seed_1.ccp4")[0].labels[0]
    assert "half_0_and_half_1.ccp4" in label


def test_half_maps_without_common_signal_are_one_sorry(data, tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(11)
    for i in range(2):
        map_manager_of(rng.normal(size=(32, 32, 32)), data["symmetry"]).write_map(
            str(tmp_path / f"noise_{i}.ccp4"))
    assert run_sharpen(["half_map=noise_0.ccp4", "half_map=noise_1.ccp4", "resolution=4"],
                       tmp_path, monkeypatch) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "share no signal" in error
    assert not list(tmp_path.glob("meteor_sharpen*"))
