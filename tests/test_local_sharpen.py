"""Local sharpening on a map whose two molecules are blurred by different B (known truth)."""
from __future__ import annotations

import json

# cctbx before scipy (see meteor_cctbx/sharpen.py)
from cctbx import crystal, xray
from cctbx.array_family import flex

import numpy as np
import pytest

from meteor_cctbx import local_sharpen, sharpen
from helpers import cc, chain_sites, map_manager_of, map_on_grid, read_map, run_sharpen

CELL = 48.0
GRID = 80
D_MIN = 2.5
B_ATOMS = 20.0
BLUR = (20.0, 80.0)  # extra B of the molecule at x < CELL/2 and of the one at x > CELL/2


@pytest.fixture(scope="module")
def two_molecules():
    """Two compact chains (radius 7 A, 10 A apart) in a 48 A P1 cell: truth (all atoms
    B = 20 A^2), the map with each molecule blurred by its own B, two noisy half maps
    (noise 1 x the signal rms each), and the two molecules' regions of the grid."""
    rng = np.random.default_rng(1)
    symmetry = crystal.symmetry((CELL,) * 3 + (90, 90, 90), "P1")
    radius = 7.0
    n_atoms = int(0.11 * 4 / 3 * np.pi * radius**3)
    sites = np.concatenate([chain_sites(n_atoms, radius, rng) + [CELL / 4, CELL / 2, CELL / 2],
                            chain_sites(n_atoms, radius, rng) +
                            [3 * CELL / 4, CELL / 2, CELL / 2]])

    def structure(blur):
        scatterers = flex.xray_scatterer()
        for site in sites:
            extra = blur[0] if site[0] < CELL / 2 else blur[1]
            scatterers.append(xray.scatterer("C", site=tuple(site / CELL), b=B_ATOMS + extra))
        return xray.structure(crystal_symmetry=symmetry, scatterers=scatterers)

    truth, clean = (map_on_grid(structure(blur).structure_factors(d_min=D_MIN).f_calc(),
                                (GRID,) * 3) for blur in ((0.0, 0.0), BLUR))
    noise = np.random.default_rng(0)
    halves = [clean + noise.normal(scale=clean.std(), size=clean.shape) for _ in range(2)]
    x = (np.arange(GRID) + 0.5) * CELL / GRID
    molecule = sharpen.MolecularRegion.of_map(map_manager_of(truth, symmetry), D_MIN).mask
    left = molecule & (x[:, None, None] < CELL / 2)
    return {"symmetry": symmetry, "truth": truth, "halves": halves,
            "regions": (left, molecule & ~left)}


def test_local_b_recovers_each_molecules_blur(two_molecules):
    """Local B of the half maps minus local B of the truth, median over each molecule."""
    unit_cell = two_molecules["symmetry"].unit_cell()
    halves = [sharpen.FourierMap.from_map(h, unit_cell) for h in two_molecules["halves"]]
    truth = sharpen.FourierMap.from_map(two_molecules["truth"], unit_cell)
    blurred = local_sharpen.local_b(halves, D_MIN).b_map
    reference = local_sharpen.local_b([truth], D_MIN).b_map
    for region, blur in zip(two_molecules["regions"], BLUR):
        recovered = float(np.median(blurred[region]) - np.median(reference[region]))
        assert recovered == pytest.approx(blur, abs=15.0)


def test_slope_to_b_calibration_inverts_a_uniform_b():
    """A map blurred by one B everywhere: the local B is that B (plus the unblurred map's)."""
    rng = np.random.default_rng(4)
    symmetry = crystal.symmetry((32.0,) * 3 + (90, 90, 90), "P1")
    values = rng.normal(size=(48, 48, 48)).astype(np.float32)  # white: B = 0
    fourier = sharpen.FourierMap.from_map(values, symmetry.unit_cell())
    for b in (0.0, 60.0):
        blurred = fourier.synthesize(np.exp(-b * fourier.d_star_sq / 4.0))
        estimate = local_sharpen.local_b(
            [sharpen.FourierMap.from_map(blurred, symmetry.unit_cell())], D_MIN).b_map
        assert float(np.median(estimate)) == pytest.approx(b, abs=5.0)


def test_local_sharpening_program_sharpens_the_blurred_molecule_more(two_molecules, tmp_path,
                                                                     monkeypatch):
    for i, half in enumerate(two_molecules["halves"]):
        map_manager_of(half, two_molecules["symmetry"]).write_map(str(tmp_path / f"h{i}.ccp4"))
    common = ["half_map=h0.ccp4", "half_map=h1.ccp4", f"resolution={D_MIN}"]
    assert run_sharpen([*common, "output.prefix=overall"], tmp_path, monkeypatch) == 0
    assert run_sharpen([*common, "sharpening.local=True", "output.prefix=local"], tmp_path,
                       monkeypatch) == 0
    record = json.loads((tmp_path / "local.json").read_text())
    assert record["local"]["from"] == "half maps"
    maps = {p: read_map(tmp_path / f"{p}.ccp4")[1]
            for p in ("overall", "local")}
    truth = two_molecules["truth"]
    left, right = two_molecules["regions"]
    assert cc(maps["local"][right], truth[right]) > cc(maps["overall"][right], truth[right])
    assert cc(maps["local"], truth) >= cc(maps["overall"], truth) - 0.005


def test_local_sharpening_of_a_single_map_and_a_bad_window(two_molecules, tmp_path,
                                                          monkeypatch, capsys):
    average = (two_molecules["halves"][0] + two_molecules["halves"][1]) / 2
    map_manager_of(average, two_molecules["symmetry"]).write_map(str(tmp_path / "map.ccp4"))
    common = ["map.ccp4", f"resolution={D_MIN}", "sharpening.local=True"]
    assert run_sharpen([*common, "sharpening.local_d_max=2"], tmp_path, monkeypatch) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "sharpening.local_d_max" in error
    assert not list(tmp_path.glob("meteor_sharpen*"))
    assert run_sharpen(common, tmp_path, monkeypatch) == 0
    record = json.loads((tmp_path / "meteor_sharpen.json").read_text())
    assert record["local"]["from"] == "map" and record["method"] == "b_factor"
    assert min(record["local"]["b_applied"]) >= 0.0  # a blurred map is never blurred
    out = read_map(tmp_path / "meteor_sharpen.ccp4")[1]
    assert cc(out, two_molecules["truth"]) > cc(average, two_molecules["truth"])
