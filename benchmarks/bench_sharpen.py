"""Benchmark meteor.sharpen's methods on a 128^3 map against cctbx on the same input, in the
same run.

    python benchmarks/bench_sharpen.py [--size 128] [--seed 1] [--nproc 2] [--local]
                                       [--json out.json]

The map is the synthetic truth of tests/test_sharpen.py scaled up: a chain of carbon atoms
(B = 20 A^2) filling a sphere of 0.3 x the cell in a P1 cell of 0.625 A voxels, structure
factors to 2.5 A, blurred by B = 100 A^2, white noise of 0.35 x its rms (full map) or 1.0 x
(each half map).  --seed changes the structure (and the noise): seed 1 is the tests' structure,
others are hold-out maps.  Rows (each with its CC with the unblurred truth and its time):

  meteor b_factor (3 scores)        sharpen_b_factor on the full map (FFT, search, final map)
  meteor b_factor, noise_weight     the same with the shell weight from the solvent's noise
  meteor half_map (FSC weight)      the default half-map method from the two half maps
  cctbx half_map_sharpen            cctbx's half-map shell sharpening (half_map_weighting=cctbx)
  cctbx model_sharpen               cctbx's map-model sharpening with the true model
  cctbx auto_sharpen b_iso_to_d_cut cctbx's auto_sharpen_map_or_map_coeffs as Phenix runs it
                                    (adjusted_sa target; density_select off: its default path
                                    imports Phenix's GUI)
  cctbx b_iso_to_d_cut, oracle      cctbx's apply_sharpening at the b_sharpen (0..300 step 10)
                                    that correlates best with the truth: the best any choice
                                    of B can do in Phenix's form (not a method: uses the truth)
  meteor.sharpen command            the whole command (read, search, diagnostics, 4 outputs)
  --local: meteor local (half maps) and cctbx's local half_map_sharpen, both whole calls
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cctbx import crystal, xray  # cctbx before scipy (see meteor_cctbx/sharpen.py)
from cctbx.array_family import flex
from cctbx.maptbx import segment_and_split_map
from iotbx.map_model_manager import map_model_manager as MapModelManager
import iotbx.pdb
import mmtbx.model

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sharpen import blurred, cc, chain_sites, map_manager  # noqa: E402

from meteor_cctbx import local_sharpen, sharpen  # noqa: E402

D_MIN = 2.5
BLUR = 100.0


def build(size: int, seed: int = 1):
    """Truth, noisy full map, two noisy half maps (numpy), crystal symmetry and the model."""
    cell = size * 0.625
    rng = np.random.default_rng(seed)
    symmetry = crystal.symmetry((cell,) * 3 + (90, 90, 90), "P1")
    radius = 0.3 * cell
    scatterers = flex.xray_scatterer()
    for site in chain_sites(int(0.11 * 4 / 3 * np.pi * radius**3), radius, rng) + cell / 2:
        scatterers.append(xray.scatterer("C", site=tuple(site / cell), b=20.0))
    structure = xray.structure(crystal_symmetry=symmetry, scatterers=scatterers)
    f_calc = structure.structure_factors(d_min=D_MIN).f_calc()

    def as_map(coefficients):
        from cctbx import maptbx
        gridding = maptbx.crystal_gridding(symmetry.unit_cell(),
                                           space_group_info=symmetry.space_group_info(),
                                           pre_determined_n_real=(size,) * 3)
        return coefficients.fft_map(crystal_gridding=gridding).real_map_unpadded(
        ).as_numpy_array()

    truth, clean = as_map(f_calc), as_map(blurred(f_calc, BLUR))
    noise = np.random.default_rng(seed - 1)
    noisy = clean + noise.normal(scale=0.35 * clean.std(), size=clean.shape)
    halves = [clean + noise.normal(scale=clean.std(), size=clean.shape) for _ in range(2)]
    return truth, noisy, halves, symmetry, structure


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1,
                        help="structure seed (noise: seed - 1); 1 is the tests' structure")
    parser.add_argument("--local", action="store_true",
                        help="also time local half-map sharpening (minutes)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    (truth, noisy, halves, symmetry, structure), seconds = timed(
        lambda: build(args.size, args.seed))
    print(f"Built {args.size}^3 synthetic maps ({structure.scatterers().size()} atoms) in "
          f"{seconds:.1f} s; CC(input, truth) = {cc(noisy, truth):.3f}, "
          f"CC(half-map average, truth) = {cc((halves[0] + halves[1]) / 2, truth):.3f}")
    rows = []

    def report(name, result_map, seconds, note=""):
        rows.append({"method": name, "seconds": seconds, "cc_truth": cc(result_map, truth),
                     "note": note})
        print(f"{name:34s} {seconds:8.2f} s   CC(truth) {rows[-1]['cc_truth']:.3f}   {note}",
              flush=True)

    form = sharpen.SharpeningForm(d_min=0.833 * D_MIN, d_cut=D_MIN)
    for score in sharpen.SCORES:
        result, seconds = timed(lambda: sharpen.sharpen_b_factor(
            map_manager(noisy, symmetry), D_MIN, form, score_name=score, workers=args.nproc))
        report(f"meteor b_factor ({score})", result.map_values, seconds,
               f"b_sharpen {result.b_sharpen:.1f}, {len(result.scan.points)} maps scored")

    def noise_weighted():
        fourier = sharpen.FourierMap.from_map(noisy, symmetry.unit_cell(), args.nproc)
        mm = map_manager(noisy, symmetry)
        molecule = sharpen.MolecularRegion.of_map(mm, D_MIN).mask
        weight = sharpen.ShellWeightedForm.from_solvent_noise(
            fourier, noisy.astype(np.float32), molecule, 0.833 * D_MIN)
        return sharpen.sharpen_b_factor(mm, D_MIN, weight, workers=args.nproc), weight

    (result, weight), seconds = timed(noise_weighted)
    report("meteor b_factor, noise_weight=solvent", result.map_values, seconds,
           f"b_sharpen {result.b_sharpen:.1f}, signal to {weight.d_signal:.2f} A")

    model = mmtbx.model.manager(model_input=iotbx.pdb.input(
        source_info=None, lines=structure.as_pdb_file()))
    def fsc_weighted():
        fourier = [sharpen.FourierMap.from_map(h, symmetry.unit_cell(), args.nproc)
                   for h in halves]
        fsc_form = sharpen.ShellWeightedForm.from_half_maps(*fourier, 0.833 * D_MIN)
        return sharpen.sharpen_b_factor(map_manager((halves[0] + halves[1]) / 2, symmetry),
                                        D_MIN, fsc_form, workers=args.nproc), fsc_form

    (result, fsc_form), seconds = timed(fsc_weighted)
    report("meteor half_map (FSC weight, default)", result.map_values, seconds,
           f"b_sharpen {result.b_sharpen:.1f}, signal to {fsc_form.d_signal:.2f} A")
    mmm = MapModelManager(map_manager_1=map_manager(halves[0], symmetry, wrapping=False),
                          map_manager_2=map_manager(halves[1], symmetry, wrapping=False))
    mmm.set_log(io.StringIO())
    sharpened, seconds = timed(lambda: sharpen.sharpen_with_half_maps(
        mmm, D_MIN, anisotropic=True, local=False, nproc=args.nproc))
    report("cctbx half_map_sharpen (aniso)", sharpened.map_data().as_numpy_array(), seconds)
    if args.local:
        def local_fsc_weighted():
            (overall, fsc_form), fourier = fsc_weighted(), [
                sharpen.FourierMap.from_map(h, symmetry.unit_cell(), args.nproc)
                for h in halves]
            average = sharpen.FourierMap.from_map((halves[0] + halves[1]) / 2,
                                                  symmetry.unit_cell(), args.nproc)
            molecule = sharpen.MolecularRegion.of_map(
                map_manager((halves[0] + halves[1]) / 2, symmetry), D_MIN).mask
            d_fit = max(D_MIN, fsc_form.d_signal)
            return local_sharpen.sharpen_b_locally(
                average, lambda b: fsc_form.factors(average.d_star_sq, b), fourier, molecule,
                overall.b_sharpen, d_fit, d_max=2 * d_fit, radius=1.6 * D_MIN, b_min=0.0,
                b_max=300.0)

        local, seconds = timed(local_fsc_weighted)
        report("meteor half_map local (FSC weight)", local.map_values, seconds,
               "overall choice + local B, all included")
        mmm = MapModelManager(map_manager_1=map_manager(halves[0], symmetry, wrapping=False),
                              map_manager_2=map_manager(halves[1], symmetry, wrapping=False))
        mmm.set_log(io.StringIO())
        sharpened, seconds = timed(lambda: sharpen.sharpen_with_half_maps(
            mmm, D_MIN, anisotropic=True, local=True, nproc=args.nproc))
        report("cctbx half_map_sharpen (aniso, local)", sharpened.map_data().as_numpy_array(),
               seconds, "the previous meteor.sharpen local path")
    mmm = MapModelManager(map_manager=map_manager(noisy, symmetry, wrapping=False),
                          model=model)
    mmm.set_log(io.StringIO())
    sharpened, seconds = timed(lambda: sharpen.sharpen_with_model(
        mmm, D_MIN, anisotropic=True, local=False, nproc=args.nproc))
    report("cctbx model_sharpen (aniso)", sharpened.map_data().as_numpy_array(), seconds)

    si, seconds = timed(lambda: segment_and_split_map.auto_sharpen_map_or_map_coeffs(
        resolution=D_MIN, crystal_symmetry=symmetry, map=flex.double(noisy),
        auto_sharpen_methods=["no_sharpening", "b_iso_to_d_cut"],
        density_select_in_auto_sharpen=False, box_in_auto_sharpen=False,
        nproc=args.nproc, out=io.StringIO()))
    report("cctbx auto_sharpen b_iso_to_d_cut", si.map_data.as_numpy_array(), seconds,
           f"{si.sharpening_method}, b_sharpen {si.b_sharpen:.1f}, adjusted_sa")
    full_coefficients = map_manager(noisy, symmetry).map_as_fourier_coefficients(
        d_min=0.833 * D_MIN)
    best = max(((b, cc(segment_and_split_map.apply_sharpening(
        map_coeffs=full_coefficients, n_real=(args.size,) * 3, b_sharpen=float(b),
        crystal_symmetry=symmetry, d_min=D_MIN, k_sharpen=10.0, b_blur_hires=200.0,
        out=io.StringIO()).map_data.as_numpy_array(), truth))
        for b in range(0, 301, 10)), key=lambda item: item[1])
    rows.append({"method": "cctbx b_iso_to_d_cut at the best B (oracle)", "seconds": None,
                 "cc_truth": best[1], "note": f"b_sharpen {best[0]} chosen with the truth"})
    print(f"{rows[-1]['method']:34s} {'':8s}     CC(truth) {best[1]:.3f}   {rows[-1]['note']}")

    with tempfile.TemporaryDirectory() as directory:
        map_manager(noisy, symmetry).write_map(str(Path(directory) / "in.ccp4"))
        _, seconds = timed(lambda: subprocess.run(
            [sys.executable, "-m", "meteor_cctbx.command_line.sharpen", "in.ccp4",
             f"resolution={D_MIN}", f"nproc={args.nproc}"], cwd=directory, check=True,
            stdout=subprocess.DEVNULL))
        from iotbx.map_manager import map_manager as read_map
        out = read_map(file_name=str(Path(directory) / "meteor_sharpen.ccp4"))
        report("meteor.sharpen command (b_factor)", out.map_data().as_numpy_array(), seconds,
               "whole command incl. I/O and diagnostics")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "nproc": args.nproc,
                                         "seed": args.seed,
                                         "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
