"""Tests of meteor.local_scale on synthetic maps computed with cctbx from a model.

The ground truth: two copies of one random molecule in a box, the second at occupancy 0.5,
so every property of a half-occupied part can be checked against the matching voxel of the
full copy.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from cctbx import adptbx, crystal, maptbx, xray
from iotbx.map_manager import map_manager
from libtbx.utils import Sorry

from meteor_cctbx import local_scale as ls
from meteor_cctbx.command_line.local_scale import main

import scipy.ndimage  # noqa: E402 (scipy after cctbx, see meteor_cctbx.local_scale)
from scipy.spatial import cKDTree  # noqa: E402

from meteor_cctbx.phil import default_params
from meteor_cctbx.record import params_as_dict

from helpers import assert_one_line_sorry, read_map
from helpers import local_scale_params as params

PIXEL = 1.0
MOLECULE_EDGE = 24.0  # A, edge of the cube the molecule's atoms fill
GAP = 8.0  # A of solvent around each copy
BOX = (80, 40, 40)  # voxels: two copies side by side along x


def molecule_sites(seed: int = 7) -> np.ndarray:
    """Cartesian sites (A) of a random molecule filling a cube: a 2 A lattice, jittered by up
    to 0.35 A (so atoms stay >= 1.3 A apart), with 40 % of the points kept."""
    rng = np.random.default_rng(seed)
    axis = np.arange(1.0, MOLECULE_EDGE, 2.0)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    kept = lattice[rng.random(len(lattice)) < 0.4]
    return kept + rng.uniform(-0.35, 0.35, kept.shape)


def two_copy_structure(occupancy_b: float = 0.5) -> tuple[xray.structure, int]:
    """Copy A (occupancy 1) in the lower half of the box along x, copy B (``occupancy_b``)
    the same molecule shifted by half the box; returns the structure and the shift (voxels)."""
    cell = tuple(n * PIXEL for n in BOX) + (90.0, 90.0, 90.0)
    symmetry = crystal.symmetry(cell, "P1")
    structure = xray.structure(crystal_symmetry=symmetry)
    shift = BOX[0] // 2
    for copy, occupancy in enumerate((1.0, occupancy_b)):
        origin = np.array([GAP + copy * shift * PIXEL, GAP, GAP])
        for i, site in enumerate(molecule_sites()):
            structure.add_scatterer(xray.scatterer(
                label=f"C{copy}_{i}", scattering_type="C", occupancy=occupancy,
                u=adptbx.b_as_u(20.0),
                site=symmetry.unit_cell().fractionalize(tuple(site + origin))))
    return structure, shift


def density(structure: xray.structure, d_min: float = 2.5) -> np.ndarray:
    """Absolute-scale (F000 included) density of ``structure`` on the BOX grid, e/A^3."""
    f_calc = structure.structure_factors(d_min=d_min).f_calc()
    gridding = maptbx.crystal_gridding(structure.unit_cell(),
                                       space_group_info=structure.space_group_info(),
                                       pre_determined_n_real=BOX)
    fft_map = f_calc.fft_map(crystal_gridding=gridding, f_000=structure.f_000())
    fft_map.apply_volume_scaling()
    return fft_map.real_map_unpadded().as_numpy_array().astype(np.float32)


def with_noise(clean: np.ndarray, relative_sd: float, seed: int = 3) -> np.ndarray:
    """``clean`` plus white noise of ``relative_sd`` times its maximum."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32)
    return clean + np.float32(relative_sd * clean.max()) * noise


@pytest.fixture(scope="module")
def synthetic():
    structure, shift = two_copy_structure()
    clean = density(structure)
    sites = np.array(structure.sites_cart())
    grid_points = np.indices(BOX).reshape(3, -1).T * PIXEL
    distance, _ = cKDTree(sites).query(grid_points)
    full_copy = clean[:shift] > 0.1 * clean.max()  # density voxels of copy A
    return {"clean": clean, "shift": shift, "full_copy": full_copy,
            "atom_distance": distance.reshape(BOX).astype(np.float32)}


GEOMETRY = ls.GridGeometry.orthogonal(PIXEL)


def copies(grid: np.ndarray, synthetic) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``grid`` at copy A's density voxels and at the matching voxels of copy B."""
    shift, selection = synthetic["shift"], synthetic["full_copy"]
    return grid[:shift][selection], grid[shift:][selection]


# ---------------------------------------------------------------------------------------------
# Building blocks


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("steps", [np.diag([1.0, 1.2, 0.9]),
                                   np.array([[1.0, 0, 0], [0.4, 1.1, 0], [0.2, 0.3, 0.95]])])
def test_kernel_maximum_equals_brute_force_filter(periodic, steps):
    geometry = ls.GridGeometry(steps, periodic)
    footprint = ls.ball_footprint(3.1, geometry)
    values = np.random.default_rng(0).standard_normal((23, 17, 29)).astype(np.float32)
    expected = scipy.ndimage.maximum_filter(values, footprint=footprint,
                                            mode="wrap" if periodic else "constant",
                                            cval=-np.inf)
    np.testing.assert_array_equal(ls.kernel_maximum(values, footprint, periodic, workers=2),
                                  expected)


def test_ball_footprint_is_a_centred_sphere():
    footprint = ls.ball_footprint(6.0, ls.GridGeometry.orthogonal(0.5))
    assert footprint.shape == (25, 25, 25)
    np.testing.assert_array_equal(footprint, footprint[::-1, ::-1, ::-1])
    sphere_voxels = 4 / 3 * np.pi * 12 ** 3
    assert abs(footprint.sum() - sphere_voxels) / sphere_voxels < 0.02


@pytest.mark.parametrize("periodic, core, tolerance", [
    (True, slice(None), 1e-4),  # exact on a periodic grid
    (False, slice(20, 40), 0.02),  # a box's faces ring a little (mirrored padding)
])
def test_lowpass_keeps_low_and_removes_high_frequencies(periodic, core, tolerance):
    geometry = ls.GridGeometry.orthogonal(1.0, periodic)
    x = np.arange(60)[:, None, None]
    low = np.cos(2 * np.pi * 4 * x / 60) * np.ones((60, 30, 20))  # 15 A period: passes
    high = np.cos(2 * np.pi * 12 * x / 60) * np.ones((60, 30, 20))  # 5 A period: removed
    filtered = ls.lowpass((low + high).astype(np.float32), geometry, 8.0)
    np.testing.assert_allclose(filtered[core], low[core], atol=tolerance)


def test_lowpass_uses_the_metric_of_a_skewed_cell():
    """Plane waves of Miller index hkl on a triclinic cell pass or not by their d-spacing:
    (1, 3, 2) at 10.7 A passes, (1, -3, 2) at 5.7 A is removed."""
    unit_cell = crystal.symmetry((30.0, 35.0, 40.0, 70.0, 115.0, 75.0), "P1").unit_cell()
    shape = (30, 35, 40)
    steps = np.array([unit_cell.orthogonalize(tuple(1.0 / n if j == i else 0.0
                                                    for j in range(3)))
                      for i, n in enumerate(shape)])
    grid = np.indices(shape).astype(float) / np.array(shape)[:, None, None, None]
    waves = {hkl: np.cos(2 * np.pi * np.tensordot(hkl, grid, axes=1)).astype(np.float32)
             for hkl in [(1, 3, 2), (1, -3, 2), (1, 0, 1), (4, 4, -3)]}
    resolution = 8.0
    for hkl, wave in waves.items():
        d = unit_cell.d(hkl)
        passes = d >= resolution / (1 - ls.LOWPASS_EDGE)
        assert passes or d <= resolution / (1 + ls.LOWPASS_EDGE), "wave on the filter edge"
        kept = ls.lowpass(wave, ls.GridGeometry(steps, periodic=True), resolution)
        np.testing.assert_allclose(kept, wave if passes else 0 * wave, atol=1e-4)


def test_default_tau_gives_noise_exceedance():
    kernel_voxels = 257
    tau = ls.default_tau(kernel_voxels)
    noise = np.random.default_rng(1).standard_normal((4000, kernel_voxels))
    threshold = np.quantile(noise, tau)
    exceeding = np.mean(noise.max(axis=1) > threshold)
    assert abs(exceeding - ls.NOISE_EXCEEDANCE) < 0.02


# ---------------------------------------------------------------------------------------------
# Scale


@pytest.mark.parametrize("source, noise", [("lowpass", 0.05), ("raw", 0.01)])
def test_half_occupancy_copy_has_half_the_scale(synthetic, source, noise):
    result = ls.estimate_local_scale(with_noise(synthetic["clean"], noise), GEOMETRY,
                                     params(scale__source=source))
    full, half = copies(result.scale, synthetic)
    assert np.median(half / full) == pytest.approx(0.5, abs=0.02)


def test_scale_is_invariant_to_multiplying_the_map(synthetic):
    values = with_noise(synthetic["clean"], 0.02)
    scale = ls.estimate_local_scale(values, GEOMETRY, params()).scale
    scaled = ls.estimate_local_scale(values * np.float32(37.5), GEOMETRY, params()).scale
    np.testing.assert_allclose(scaled, scale, atol=1e-5)


@pytest.mark.parametrize("source, most_saturated", [("raw", 0.4), ("lowpass", 0.2)])
def test_scale_lies_in_zero_one_and_reaches_one(synthetic, source, most_saturated):
    scale = ls.estimate_local_scale(with_noise(synthetic["clean"], 0.02), GEOMETRY,
                                    params(scale__source=source)).scale
    assert scale.min() >= 0 and scale.max() == 1
    assert scale.dtype == np.float32
    # the reference sits at the strongest features, not at typical full-strength density
    full, _ = copies(scale, synthetic)
    assert np.mean(full == 1) < most_saturated


# ---------------------------------------------------------------------------------------------
# Confidence


def noise_only_voxels(synthetic, relative_sd: float) -> np.ndarray:
    """Voxels where the low-passed noise-free map is negligible next to the low-passed noise
    that ``with_noise(clean, relative_sd)`` adds: there the map is pure noise."""
    clean = synthetic["clean"]
    resolution = ls.default_lowpass(GEOMETRY)
    noise = ls.lowpass(with_noise(clean, relative_sd) - clean, GEOMETRY, resolution)
    return np.abs(ls.lowpass(clean, GEOMETRY, resolution)) < 0.25 * noise.std()


def test_confidence_is_zero_in_noise_and_one_in_density(synthetic):
    values = with_noise(synthetic["clean"], 0.05)
    result = ls.estimate_local_scale(values, GEOMETRY, params())
    noise_only = noise_only_voxels(synthetic, 0.05)
    assert noise_only.sum() > 5000
    assert result.confidence[noise_only].mean() < 0.01
    assert np.quantile(result.confidence[noise_only], 0.99) < 0.05
    full, half = copies(result.confidence, synthetic)
    assert np.median(full) > 0.99 and np.median(half) > 0.99


def test_confidence_never_decreases_with_value(synthetic):
    values = with_noise(synthetic["clean"], 0.05)
    lowpassed = ls.lowpass(values, GEOMETRY, ls.default_lowpass(GEOMETRY))
    model = ls.fit_solvent(lowpassed)
    probe = np.linspace(lowpassed.min() - 1, lowpassed.max() + 1, 20001)
    for hedge in (1.0, 3.0):
        confidence = model.confidence_of(probe, hedge)
        assert np.all(np.diff(confidence) >= 0)
        assert confidence[0] == 0 and confidence[-1] == 1


def solvent_and_molecule(n_solvent: int = 300_000, n_molecule: int = 200_000):
    """Values of a known mixture: Gaussian solvent (mean 0.1, sd 0.02) and molecule values
    spread well above it; returns the values and which of them are solvent."""
    rng = np.random.default_rng(5)
    solvent = rng.normal(0.1, 0.02, n_solvent)
    molecule = 0.1 + rng.gamma(4.0, 0.05, n_molecule)
    values = np.concatenate([solvent, molecule]).astype(np.float32)
    is_solvent = np.arange(values.size) < n_solvent
    return values, is_solvent


@pytest.mark.parametrize("use_mask", [False, True])
def test_solvent_fit_recovers_a_known_solvent_peak(use_mask):
    values, is_solvent = solvent_and_molecule()
    model = ls.fit_solvent(values, is_solvent if use_mask else None)
    assert model.mean == pytest.approx(0.1, abs=0.002)
    assert model.sigma == pytest.approx(0.02, rel=0.05)
    assert model.peak_share == pytest.approx(0.6, abs=0.03)
    confidence = model.confidence_of(values)
    assert np.mean(confidence[is_solvent] > 0.5) < 0.02
    assert np.mean(confidence[~is_solvent & (values > 0.2)] > 0.9) > 0.95


def test_solvent_mask_of_either_polarity_gives_the_same_model(synthetic):
    values = with_noise(synthetic["clean"], 0.05)
    lowpassed = ls.lowpass(values, GEOMETRY, ls.default_lowpass(GEOMETRY))
    molecule = (synthetic["atom_distance"] < 4.0).astype(np.float32)
    fits = {}
    for mask in (molecule, 1 - molecule):
        solvent, marks = ls.solvent_voxels_from_mask(mask, lowpassed)
        fits[marks] = ls.fit_solvent(lowpassed, solvent)
        np.testing.assert_array_equal(solvent, synthetic["atom_distance"] >= 4.0)
    assert set(fits) == {"molecule", "solvent"}
    assert fits["molecule"].mean == fits["solvent"].mean
    assert fits["molecule"].sigma == fits["solvent"].sigma


# ---------------------------------------------------------------------------------------------
# Modification


def test_amplify_brings_half_copy_to_cube_root_of_half(synthetic):
    values = with_noise(synthetic["clean"], 0.02)
    result = ls.estimate_local_scale(values, GEOMETRY, params(
        scale__source="lowpass", modify__mode="amplify", modify__power=3.0))
    confident = np.minimum(*copies(result.confidence, synthetic)) > 0.99
    assert confident.mean() > 0.8
    full, half = (part[confident] for part in copies(result.modified, synthetic))
    assert np.median(half / full) == pytest.approx(0.5 ** (1 / 3), abs=0.05)
    input_full, input_half = (part[confident] for part in copies(values, synthetic))
    assert np.median(input_half / input_full) == pytest.approx(0.5, abs=0.02)


def test_attenuate_and_sigmoid_factors():
    scale = np.array([0.01, 0.25, 0.5, 0.8, 1.0], dtype=np.float32)
    attenuate = ls.scale_factor(scale, "attenuate", 3.0, 0.5, 0.05)
    np.testing.assert_allclose(attenuate * scale, [0.01, 0.25 ** 3, 0.125, 0.8 ** 3, 1.0],
                               rtol=1e-6)
    sigmoid = ls.scale_factor(scale, "sigmoid", 3.0, 0.5, 0.05) * scale
    np.testing.assert_allclose(sigmoid[[0, 2, 4]], [0.01, 0.5, 1.0], rtol=1e-6)
    assert sigmoid[1] < 0.25 and sigmoid[3] > 0.8  # pushed away from the pivot


@pytest.mark.parametrize("mode", ["amplify", "attenuate", "sigmoid"])
def test_voxels_at_or_below_scale_limit_are_unchanged(synthetic, mode):
    values = with_noise(synthetic["clean"], 0.05)
    result = ls.estimate_local_scale(values, GEOMETRY, params(
        modify__mode=mode, modify__power=3.0, modify__scale_limit=0.3))
    at_limit = result.scale <= 0.3
    changed = result.scale > 0.3
    assert at_limit.sum() > 1000
    np.testing.assert_array_equal(result.modified[at_limit], values[at_limit])
    assert np.any(result.modified[changed] != values[changed])


@pytest.mark.parametrize("mode", ["amplify", "attenuate", "sigmoid"])
def test_zero_confidence_leaves_the_map_unchanged(synthetic, mode):
    values = with_noise(synthetic["clean"], 0.05)
    scale = ls.estimate_local_scale(values, GEOMETRY, params()).scale
    unchanged = ls.modify_map(values, scale, np.zeros_like(values), mode, 3.0, 0.5, 0.05,
                              exclude_solvent=False)
    np.testing.assert_array_equal(unchanged, values)


def test_output_stays_within_input_range_and_solvent_is_flattened(synthetic):
    values = with_noise(synthetic["clean"], 0.05)
    result = ls.estimate_local_scale(values, GEOMETRY, params(
        modify__mode="amplify", modify__power=10.0, solvent__exclude=True))
    assert values.min() <= result.modified.min() and result.modified.max() <= values.max()
    noise_only = noise_only_voxels(synthetic, 0.05)
    assert (np.abs(result.modified[noise_only]).mean()
            < 0.01 * np.abs(values[noise_only]).mean())
    full, _ = copies(result.modified, synthetic)
    input_full, _ = copies(values, synthetic)
    assert np.median(full / input_full) > 0.99  # density kept (amplified where partial)


@pytest.mark.parametrize("setting, message", [
    ({"modify__power": 0.5}, "modify.power"),
    ({"modify__pivot": 1.0}, "modify.pivot"),
    ({"scale__tau": 1.0}, "scale.tau"),
    ({"scale__lowpass": 1.5}, "scale.lowpass"),
    ({"solvent__hedge_confidence": 0.5}, "solvent.hedge_confidence"),
])
def test_out_of_range_settings_are_refused(setting, message):
    with pytest.raises(Sorry, match=message):
        ls.check_settings(params(**setting), GEOMETRY)


# ---------------------------------------------------------------------------------------------
# The program


ORIGIN = (10, -5, 3)
UNIT_CELL_GRID = (200, 150, 120)


def write_box_map(path: Path, values: np.ndarray, label: str) -> None:
    """Write ``values`` as a box of a larger cell, at a non-zero origin."""
    symmetry = crystal.symmetry(tuple(float(n) * PIXEL for n in UNIT_CELL_GRID)
                                + (90.0, 90.0, 90.0), "P1")
    template = map_manager(map_data=ls.as_flex_grid(values), unit_cell_grid=UNIT_CELL_GRID,
                           unit_cell_crystal_symmetry=symmetry, origin_shift_grid_units=ORIGIN,
                           wrapping=False)
    template.add_label(label)
    template.write_map(str(path))


@pytest.fixture(scope="module")
def box_map(synthetic, tmp_path_factory):
    directory = tmp_path_factory.mktemp("box")
    values = with_noise(synthetic["clean"], 0.02)
    write_box_map(directory / "two copies.mrc", values, "synthetic two-copy map")
    mask = (synthetic["atom_distance"] < 4.0).astype(np.float32)
    write_box_map(directory / "mask.mrc", mask, "molecule mask")
    return directory, values


def test_program_writes_every_output_on_the_input_grid(box_map, synthetic, capsys):
    directory, values = box_map
    prefix = directory / "out" / "run"
    prefix.parent.mkdir()
    status = main([str(directory / "two copies.mrc"), str(directory / "mask.mrc"),
                   "modify.mode=amplify", "modify.power=3", f"output.prefix={prefix}"])
    assert status == 0, capsys.readouterr().err
    for suffix in ("_scale.mrc", "_confidence.mrc", "_amplify.mrc", ".cxc", ".png", ".json"):
        assert Path(f"{prefix}{suffix}").stat().st_size > 0
    scale_mm, scale = read_map(Path(f"{prefix}_scale.mrc"))
    assert scale.shape == BOX
    assert scale_mm.map_data().origin() == ORIGIN
    assert tuple(scale_mm.unit_cell_grid) == UNIT_CELL_GRID
    assert scale_mm.unit_cell_crystal_symmetry().unit_cell().parameters()[:3] == (200, 150, 120)
    assert "synthetic two-copy map" in scale_mm.labels
    expected = ls.estimate_local_scale(values, GEOMETRY, params())
    np.testing.assert_allclose(scale, expected.scale, atol=1e-6)
    _, confidence = read_map(Path(f"{prefix}_confidence.mrc"))
    assert confidence.min() >= 0 and confidence.max() <= 1
    _, amplified = read_map(Path(f"{prefix}_amplify.mrc"))
    full, half = copies(amplified, synthetic)
    assert np.median(half / full) > 0.6  # amplified from 0.5

    record = json.loads(Path(f"{prefix}.json").read_text())
    assert record["parameters"]["modify.power"] == 3
    assert record["grid"]["origin"] == list(ORIGIN)
    assert record["levels"]["solvent_mask_marks"] == "molecule"
    assert record["levels"]["reference_level"] > record["levels"]["solvent_mean"]
    assert record["timings_s"]["total"] > 0
    assert "numpy" in record["versions"]

    script = Path(f"{prefix}.cxc").read_text()
    opened = [shlex.split(line)[1] for line in script.splitlines() if line.startswith("open ")]
    assert [(prefix.parent / name).resolve() for name in opened] == [
        (directory / "two copies.mrc").resolve(), Path(f"{prefix}_scale.mrc").resolve(),
        Path(f"{prefix}_amplify.mrc").resolve()]
    assert ('color sample ##name="run_input" map ##name="run_scale"' in script
            and 'volume ##name="run_modified" hide' in script)


def test_program_refuses_to_overwrite_and_bad_inputs_write_nothing(box_map, tmp_path,
                                                                   capsys):
    directory, _ = box_map
    prefix = tmp_path / "run"
    arguments = [str(directory / "two copies.mrc"), f"output.prefix={prefix}"]
    assert main(arguments) == 0
    before = {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    capsys.readouterr()
    assert_one_line_sorry(main(arguments), capsys.readouterr().err, "run_scale.mrc",
                          "output.overwrite=True")
    assert {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == before
    assert main(arguments + ["output.overwrite=True"]) == 0

    fresh = tmp_path / "fresh"
    for bad, fragment in (([str(directory / "missing.mrc")], "missing.mrc"),
                          ([str(directory / "two copies.mrc"), "modify.power=0.5"],
                           "modify.power"),
                          ([str(directory / "two copies.mrc"), "scale.kernel_radius=0.2"],
                           "scale.kernel_radius"),
                          ([str(directory / "two copies.mrc"), "scale.colour=red"],
                           "scale.colour")):
        capsys.readouterr()
        status = main(bad + [f"output.prefix={fresh}"])
        assert_one_line_sorry(status, capsys.readouterr().err, fragment)
    assert not list(tmp_path.glob("fresh*"))


def test_program_refuses_a_mask_on_another_grid(box_map, tmp_path, capsys):
    directory, values = box_map
    small = tmp_path / "small_mask.mrc"
    write_box_map(small, np.ones((40, 40, 40), dtype=np.float32), "wrong grid")
    status = main([str(directory / "two copies.mrc"), str(small),
                   f"output.prefix={tmp_path / 'run'}"])
    assert_one_line_sorry(status, capsys.readouterr().err, "small_mask.mrc", "grid")
    assert not list(tmp_path.glob("run*"))


def test_program_reads_map_coefficients_as_a_periodic_cell(tmp_path, capsys):
    structure, _ = two_copy_structure()
    f_calc = structure.structure_factors(d_min=3.0).f_calc()
    dataset = f_calc.as_mtz_dataset(column_root_label="FWT")
    dataset.add_miller_array(f_calc * 2, column_root_label="DELFWT")
    dataset.mtz_object().write(str(tmp_path / "coefficients.mtz"))
    prefix = tmp_path / "cell"
    arguments = [str(tmp_path / "coefficients.mtz"), f"output.prefix={prefix}"]
    assert_one_line_sorry(main(arguments), capsys.readouterr().err, "input.labels",
                          "FWT,PHIFWT", "DELFWT,PHIDELFWT")
    assert main(arguments + ["input.labels=FWT,PHIFWT", "solvent.exclude=True"]) == 0
    mm, scale = read_map(Path(f"{prefix}_scale.mrc"))
    _, computed = read_map(Path(f"{prefix}_input.mrc"))
    assert mm.wrapping() and scale.shape == computed.shape == tuple(mm.unit_cell_grid)
    assert Path(f"{prefix}_solvent_excluded.mrc").exists()
    record = json.loads(Path(f"{prefix}.json").read_text())
    assert record["grid"]["periodic"] is True
    full, half = (scale[:scale.shape[0] // 2], scale[scale.shape[0] // 2:])
    assert np.quantile(half, 0.99) < 0.7 * np.quantile(full, 0.99)


def test_show_defaults_is_a_parameter_file_that_runs(box_map, tmp_path, capsys):
    directory, _ = box_map
    assert main(["--show-defaults"]) == 0
    defaults = tmp_path / "defaults.eff"
    defaults.write_text(capsys.readouterr().out)
    assert "kernel_radius" in defaults.read_text()
    assert main([str(directory / "two copies.mrc"), str(defaults),
                 f"output.prefix={tmp_path / 'run'}"]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    expected = params_as_dict(default_params("local_scale"))
    given = {k: v for k, v in record["parameters"].items()
             if k in expected and k != "output.prefix"}
    assert given == {k: expected[k] for k in given} and len(given) == len(expected) - 1
    log_header = (tmp_path / "run.log").read_text().split("=" * 79)[0]
    assert "prefix = " in log_header and "kernel_radius" not in log_header  # only the prefix
