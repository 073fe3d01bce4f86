"""The realistic benchmark family: meteor.diffmap / meteor.phaseboost against the noise-free
truth, a brute-force oracle of the TV weight, meteor-maps and cctbx's Fo-Fo maps.

    python benchmarks/bench_family.py [--d-min 1.8] [--site chromophore]
        [--changes compact spread [loop]] [--occupancies 0.1 0.2 0.4 1.0] [--noise 1 2]
        [--cell-change 0 1 2] [--shake-rms 0.3] [--sigma-scale 1] [--meteor-maps] [--no-cctbx]
        [--no-phaseboost] [--no-diffmap] [--oracle-points 21] [--set KEY=VALUE ...]

Cases come from ``meteor_cctbx.family`` (8a6g: the chromophore-free model as native, the
chromophore as ligand, compact or spread change (or ``loop``, a loop swung by 3-6 A),
occupancy q, noise drawn from the real sigmas x1 or x2, true structures shaken by 0.3 A so
the phasing model is wrong; ``--shake-rms`` makes it more or less wrong; ``--sigma-scale``
states the sigmas that many times the noise drawn, as real data may).
``--site phe100_tyr183`` moves the change to a second site of the same crystal (the side
chains of Phe 100 and Tyr 183 taken out of the native model: 15 atoms at B ~33 A^2 instead of
the chromophore's ~19), which none of the defaults was tuned on.  ``--cell-change 1 2`` adds
non-isomorphous pairs: the derivative crystal's cell edges 1 or 2 % longer, its molecules
rigid (``family.make_case``); their truth holds the lattice change too.  Every map
is scored by its correlation over the unit cell with the true complex difference
F_der - F_nat.  Per case the rows are:

* ``DF_RAW``: (|F_der| - |F_nat|) exp(i phi_model), scaled as ours;
* ``k-weighted``: the same with the k chosen by the default (validation), before TV;
* ``TV negentropy``: meteor.diffmap with tv.criterion = kweight.criterion = negentropy;
* ``TV validation``: meteor.diffmap with defaults (held-out reflections);
* ``oracle``: the best CC over fixed TV weights (a log grid of ``--oracle-points`` from 0.03
  to 10 x map rms, refined to 0.01 decade around the best) on the default's k-weighted map;
* ``phaseboost`` (validation), its own oracle (final TV weight brute force on its retrieved
  difference), and ``phaseboost negentropy`` (meteor-maps' loop rule, ``--pb-negentropy``);
* ``phaseboost reproducibility``: the correlation of the phase changes retrieved from two
  halves of the data (phaseboost.reproducibility_check), parameter 1 where it passed the
  threshold (the final map is then of the retrieved difference, else the initial map);
* ``meteor-maps diffmap / phaseboost`` (``--meteor-maps``; run as subprocesses from their own
  venv, see reference_tools.py) and cctbx ``fobs_minus_fobs_map`` plain and multiscale.

``--set key=value`` (repeatable) runs our programs with that PHIL parameter instead of its
default, the oracles with the same TV settings: an alternative is measured on the whole family
with the same rows (e.g. ``--set tv.max_iterations=100``; a phaseboost-only key such as
``phaseboost.loop_weight_scale`` needs ``--no-diffmap``).

Our programs run in-process through the library API (the same code the command line runs);
everything written goes under benchmarks/_work/family/.  The summary lines compare the
default with the oracle, with DF_RAW and with the best anchor.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import iotbx.pdb  # noqa: F401  (cctbx before scipy-heavy modules)
import numpy as np
from cctbx import miller

BENCHMARKS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS_DIR))
import reference_tools  # noqa: E402

from meteor_cctbx import family, kweight, tv  # noqa: E402
from meteor_cctbx.diffmap import compute_diffmap, tv_settings  # noqa: E402
from meteor_cctbx.example import write_amplitudes_mtz  # noqa: E402
from meteor_cctbx.grid import CellGrid  # noqa: E402
from meteor_cctbx.map_metrics import map_correlation  # noqa: E402
from meteor_cctbx.maximize import maximize_scalar  # noqa: E402
from meteor_cctbx.model_phases import model_from_pdb_text, model_structure_factors  # noqa: E402
from meteor_cctbx.phaseboost import compute_phaseboost  # noqa: E402
from meteor_cctbx.reflections import read_miller_arrays  # noqa: E402

OUT_DIR = reference_tools.WORK_DIR / "family"
SCORING_SAMPLING = 3.0  # grid of the CC with truth: spacing d_min/3, for every map alike


def aligned(values: miller.array, miller_set: miller.set) -> np.ndarray:
    """Complex values of ``values`` on the reflections of ``miller_set`` (0 where absent)."""
    pairs = miller.match_indices(miller_set.indices(), values.indices()).pairs()
    out = np.zeros(miller_set.size(), complex)
    out[np.array(pairs.column(0))] = values.data().as_numpy_array()[np.array(pairs.column(1))]
    return out


class Scorer:
    """CC with the true difference map of map coefficients on a case's reflections, both maps
    on one grid of spacing d_min/3 whatever grid a program denoised on: the map a user gets
    from the output MTZ (band-limited, like the anchors' maps).  A real-space map (a TV stage)
    is first transformed to coefficients on its own grid, as the programs do before writing."""

    def __init__(self, miller_set: miller.set, truth: miller.array):
        self.grid = CellGrid.for_set(miller_set, sampling=SCORING_SAMPLING)
        self.truth_map = self.grid.to_map(aligned(truth, self.grid.miller_set)).ravel()

    def cc_coefficients(self, coefficients: np.ndarray) -> float:
        real_map = self.grid.to_map(coefficients).ravel()
        return float(np.corrcoef(real_map, self.truth_map)[0, 1])

    def cc_map(self, real_map: np.ndarray, grid: CellGrid) -> float:
        return self.cc_coefficients(grid.to_coefficients(real_map))


def oracle(coefficients: np.ndarray, grid: CellGrid, scorer: Scorer, settings, points: int
           ) -> tuple[float, float]:
    """Best CC with truth over relative TV weights (0.03-10 x rms) of the map of
    ``coefficients`` denoised on ``grid`` (the program's): a log grid of ``points``, then
    bracket refinement to 0.01 decade; (CC, relative weight)."""
    weighted_map = grid.to_map(coefficients)
    rms = float(weighted_map.std())
    scan = maximize_scalar(lambda relative: scorer.cc_map(
        tv.denoise(weighted_map, relative * rms, settings), grid),
        0.03, 10.0, n_coarse=points, log_scale=True, tolerance=0.01)
    return scan.best.score, scan.best.parameter


def program_params(program: str, overrides: list[str]):
    """The PHIL extract of ``program`` with ``overrides`` (key=value, as on the command line)
    applied; unknown keys are an error."""
    from meteor_cctbx.phil import master_phil

    master = master_phil(program)
    interpreter = master.command_line_argument_interpreter(assume_when_ambiguous=False)
    sources = [interpreter.process_arg(arg=item) for item in overrides]
    return master.fetch(sources=sources).extract() if sources else master.extract()


def with_criterion(program: str, criterion: str, overrides: list[str] = ()):
    params = program_params(program, list(overrides))
    params.tv.criterion = params.kweight.criterion = criterion
    if program == "phaseboost":
        params.phaseboost.tv_criterion = criterion
    return params


def run_ours(case, f_model, args) -> dict:
    rows = {}
    if args.diffmap:
        params = program_params("diffmap", args.set)
        start = time.perf_counter()
        result = compute_diffmap(case.derivative, case.native, f_model, params)
        seconds = time.perf_counter() - start
        scorer = Scorer(result.grid.miller_set, case.true_difference)
        raw = result.raw_coefficients.data().as_numpy_array()
        sigma_delta = result.pair.sigma_delta
        difference = result.pair.weighted_difference  # what the TV stage was given
        weighted = difference * kweight.kweights(difference, sigma_delta,
                                                 result.k_parameter or 0.0)
        rows["DF_RAW"] = (scorer.cc_coefficients(raw), None, None)
        rows["k-weighted"] = (scorer.cc_coefficients(weighted), result.k_parameter, None)
        rows["TV validation (default)"] = (scorer.cc_map(result.final_map, result.grid),
                                           result.metadata["tv_weight_relative"], seconds)
        start = time.perf_counter()
        negentropy = compute_diffmap(case.derivative, case.native, f_model,
                                     with_criterion("diffmap", "negentropy", args.set))
        rows["TV negentropy"] = (scorer.cc_map(negentropy.final_map, negentropy.grid),
                                 negentropy.metadata["tv_weight_relative"],
                                 time.perf_counter() - start)
        rows["oracle (best fixed TV weight)"] = oracle(weighted, result.grid, scorer,
                                                       tv_settings(params),
                                                       args.oracle_points) + (None,)
    if args.phaseboost:
        params = program_params("phaseboost", args.set)
        start = time.perf_counter()
        boost = compute_phaseboost(case.derivative, case.native, f_model, params)
        scorer = Scorer(boost.grid.miller_set, case.true_difference)
        sigma_delta = boost.pair.sigma_delta
        rows["phaseboost (default)"] = (scorer.cc_map(boost.final_map, boost.grid),
                                        boost.metadata["tv_weight_relative"],
                                        time.perf_counter() - start)
        retrieved = boost.pair.weighted(
            boost.derivative_coefficients.data().as_numpy_array()
            - boost.pair.native.data().as_numpy_array() * boost.pair.unit_phases)
        retrieved = retrieved * kweight.kweights(retrieved, sigma_delta,
                                                 boost.k_parameter or 0.0)
        rows["phaseboost oracle"] = oracle(retrieved, boost.grid, scorer,
                                           tv_settings(params), args.oracle_points) + (None,)
        rows["phaseboost iterations"] = (float(len(boost.iterations)), None, None)
        check = boost.metadata["reproducibility"]
        if check is not None:  # the correlation of the halves' phase changes, and the verdict
            rows["phaseboost reproducibility"] = (check["correlation"],
                                                  float(check["reproducible"]), None)
        if args.pb_negentropy:
            start = time.perf_counter()
            old = compute_phaseboost(case.derivative, case.native, f_model,
                                     with_criterion("phaseboost", "negentropy", args.set))
            rows["phaseboost negentropy"] = (scorer.cc_map(old.final_map, old.grid), None,
                                             time.perf_counter() - start)
    return rows


def run_anchors(case, paths: dict, out_dir: Path, args) -> dict:
    """cctbx Fo-Fo (plain, multiscale) and meteor-maps, as subprocesses."""
    import bench_difference_maps as bdm

    inputs = SimpleNamespace(cctbx_derivative_mtz=paths.get("derivative_native_cell",
                                                            paths["derivative"]),
                             cctbx_native_mtz=paths["native"], derivative_mtz=paths["derivative"],
                             native_mtz=paths["native"], derivative_labels=("F", "SIGF"),
                             native_labels=("F", "SIGF"), model_pdb=paths["model"])
    runs = []
    if args.cctbx:
        runs += [bdm.run_fobs_minus_fobs(inputs, out_dir, m) for m in (False, True)]
    if args.meteor_maps:
        runs += [bdm.run_meteor_maps(p, inputs, out_dir)
                 for p in (("diffmap", "phaseboost") if args.phaseboost else ("diffmap",))]
    rows = {}
    for run in runs:
        if not run.ok:
            rows[run.label] = (float("nan"), None, run.seconds)
            continue
        coefficients = bdm.map_coefficients(read_miller_arrays(run.output_mtz), *run.columns)
        rows[run.label] = (map_correlation(coefficients, case.true_difference), None,
                           run.seconds)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-min", type=float, default=1.8)
    parser.add_argument("--site", choices=sorted(family.SITES_8A6G), default="chromophore",
                        help="where the change happens (meteor_cctbx.family.SITES_8A6G): the "
                        "chromophore, or a second site (hold-out-like check of the defaults)")
    parser.add_argument("--changes", nargs="+", default=list(family.CHANGES),
                        choices=family.ALL_CHANGES)
    parser.add_argument("--occupancies", nargs="+", type=float,
                        default=list(family.OCCUPANCIES))
    parser.add_argument("--noise", nargs="+", type=float, default=list(family.NOISE_SCALES))
    parser.add_argument("--cell-change", nargs="+", type=float, default=[0.0],
                        help="per cent longer cell edges of the derivative crystal (0: "
                             "isomorphous)")
    parser.add_argument("--shake-rms", type=float, default=0.3,
                        help="rms shift (A) of the true native from the phasing model: how "
                        "wrong the model phases are")
    parser.add_argument("--meteor-maps", action="store_true")
    parser.add_argument("--no-cctbx", dest="cctbx", action="store_false")
    parser.add_argument("--no-phaseboost", dest="phaseboost", action="store_false")
    parser.add_argument("--no-diffmap", dest="diffmap", action="store_false",
                        help="only the phaseboost rows (and the anchors)")
    parser.add_argument("--pb-negentropy", action="store_true")
    parser.add_argument("--oracle-points", type=int, default=13)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a PHIL parameter of our programs for every run of them (and the "
                             "oracles' TV settings), e.g. tv.max_iterations=100; repeatable; "
                             "a key the program lacks is an error")
    parser.add_argument("--sigma-scale", type=float, default=1.0,
                        help="state both data sets' sigmas this many times the noise drawn "
                             "(family.with_sigmas_scaled; 1: honest)")
    parser.add_argument("--data-dir", type=Path, default=reference_tools.DATA_8A6G)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if not (args.data_dir / "scaled-test-data.mtz").exists():
        print(f"8a6g data not found in {args.data_dir}: nothing to benchmark (skipped).")
        return 0
    if args.meteor_maps and reference_tools.ensure_meteor_venv() is None:
        print("meteor-maps could not be installed: running without it.")
        args.meteor_maps = False
    for program, runs in (("diffmap", args.diffmap), ("phaseboost", args.phaseboost)):
        if runs:
            program_params(program, args.set)  # unknown keys fail here, before any case
    if args.set:
        print(f"our programs run with {' '.join(args.set)} (the '(default)' rows below)")
    source = family.source_8a6g(args.data_dir, d_min=args.d_min, site=args.site,
                                shake_rms=args.shake_rms)
    model = model_from_pdb_text(source.phasing_model_pdb)
    summary = {}
    for case in family.family_cases(source, args.changes, args.occupancies, args.noise,
                                    cell_changes=args.cell_change):
        if args.sigma_scale != 1:
            case = family.with_sigmas_scaled(case, args.sigma_scale)
        print(f"\n== {case.name}: {case.native.size()} reflections", flush=True)
        out_dir = args.out_dir / case.name
        paths = family.write_case(case, out_dir)
        if not case.derivative.crystal_symmetry().is_similar_symmetry(
                case.native.crystal_symmetry()):
            # fobs_minus_fobs_map stops on a cell mismatch: it gets the derivative relabelled
            # with the native's cell, as our programs do and a user would have to
            paths["derivative_native_cell"] = out_dir / "derivative_native_cell.mtz"
            write_amplitudes_mtz(paths["derivative_native_cell"], case.derivative.customized_copy(
                crystal_symmetry=case.native.crystal_symmetry()))
        f_model = model_structure_factors(model, case.native).f_model
        rows = run_ours(case, f_model, args)
        rows.update(run_anchors(case, paths, out_dir, args))
        for label, (cc, parameter, seconds) in rows.items():
            extra = "" if parameter is None else f"  parameter {parameter:.3g}"
            timing = "" if seconds is None else f"  {seconds:.1f} s"
            print(f"  {label:<34} {cc:7.3f}{extra}{timing}", flush=True)
        summary[case.name] = {label: list(values) for label, values in rows.items()}
    print("\n" + summary_table(summary))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


def summary_table(summary: dict) -> str:
    """One line per case: CCs of the main rows and the default's margins."""
    columns = ["DF_RAW", "k-weighted", "TV negentropy", "TV validation (default)",
               "oracle (best fixed TV weight)", "phaseboost (default)", "phaseboost oracle",
               "meteor-maps meteor.diffmap", "meteor-maps meteor.phaseboost", "cctbx Fo-Fo",
               "cctbx Fo-Fo multiscale"]
    short = ["raw", "kw", "TVneg", "TVval", "oracle", "pb", "pb-orc", "mm-dm", "mm-pb", "fofo",
             "fofo-ms"]
    lines = [f"{'case':<34}" + "".join(f"{s:>8}" for s in short)
             + f"{'val-orc':>9}{'pb-dm':>8}"]
    for name, rows in summary.items():
        def cc(label):
            return rows[label][0] if label in rows else float("nan")
        lines.append(f"{name:<34}" + "".join(f"{cc(c):8.3f}" for c in columns)
                     + f"{cc(columns[3]) - cc(columns[4]):9.3f}"
                     + f"{cc(columns[5]) - cc(columns[3]):8.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
