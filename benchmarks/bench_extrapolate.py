"""Benchmark meteor.extrapolate on the realistic two-state family (meteor_cctbx.family).

    python benchmarks/bench_extrapolate.py [--d-min 2.0] [--changes compact spread [loop]]
        [--occupancies 0.1 0.2 0.4 1.0] [--noise 1 2] [--n-bootstrap 100]
        [--difference diffmap|phaseboost|raw] [--shake-rms 0.3] [--sigma-scale 1]
        [--out-dir DIR]

Run it with a Python that has cctbx and this package.  It writes ``summary.json`` under
``--out-dir`` (default ``benchmarks/_work/extrapolate``, git-ignored) and prints one table.
The full family (2 changes x 4 occupancies x 2 noise levels, 8a6g at 2.0 A) takes about 3
minutes on 2 cores.

For every case, with default parameters (difference = diffmap unless ``--difference``,
occupancy = auto), through the library API that the program calls (compute_extrapolation):

* the blind occupancy (the default estimator and each estimator), its 95 % bootstrap
  interval, and whether the interval covers the true occupancy q;
* the correlation with the true pure minor-state map (FMINOR of the family) of
  - the extrapolated map FWT at the estimate (``extr``),
  - the native map |F_nat| exp(i phi_model) (``native``),
  - the extrapolated map of the raw difference at the same estimate (``raw``),
  within 3 A of the atoms that change (``near``) and over the unit cell (``cell``).
When the estimate is withheld (signal too weak) the correlations are taken at the true q and
marked with ``*``: they then say what extrapolation could give, not what the program gives.
The last line counts the cases at q = 0.2 and 0.4 (issue 14's hold-out occupancies) whose
estimate lies within +-0.08 of the truth, and how many of those intervals cover it.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import iotbx.pdb  # noqa: F401  (cctbx before scipy.ndimage / matplotlib)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meteor_cctbx.diffmap import complex_array  # noqa: E402
from meteor_cctbx.extrapolate import OccupancyNotEstimated, compute_extrapolation  # noqa: E402
from meteor_cctbx.family import (ALL_CHANGES, CHANGES, SITES_8A6G, make_case,  # noqa: E402
                                 source_8a6g, with_sigmas_scaled)
from meteor_cctbx.map_metrics import map_correlation, map_correlation_near  # noqa: E402
from meteor_cctbx.model_phases import model_from_pdb_text, model_structure_factors  # noqa: E402
from meteor_cctbx.phil import default_params  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "8a6g"
WORK = ROOT / "benchmarks" / "_work" / "extrapolate"
NEAR_RADIUS = 3.0
HOLD_OUT_OCCUPANCIES = (0.2, 0.4)   # issue 14's hold-out targets: within +-0.08, covered
HOLD_OUT_TOLERANCE = 0.08


def f_model_of(case) -> "miller.array":
    """F_model (bulk solvent) of the case's phasing model on its native reflections."""
    model = model_from_pdb_text(case.phasing_model_pdb, case.native.crystal_symmetry())
    return model_structure_factors(model, case.native).f_model


def with_settings(params, **settings):
    params = copy.deepcopy(params)
    for key, value in settings.items():
        setattr(params.extrapolate, key, value)
    return params


def correlations(coefficients, truth, sites) -> dict[str, float]:
    return {"near": map_correlation_near(coefficients, truth, sites, NEAR_RADIUS),
            "cell": map_correlation(coefficients, truth)}


def run_case(case, params) -> dict:
    f_model = f_model_of(case)
    start = time.perf_counter()
    withheld = None
    try:
        result = compute_extrapolation(case.derivative, case.native, f_model, params)
        estimate = result.occupancy_estimate
    except OccupancyNotEstimated as error:
        withheld, estimate = str(error), error.estimate
        result = compute_extrapolation(case.derivative, case.native, f_model,
                                       with_settings(params, occupancy=case.occupancy))
    seconds = time.perf_counter() - start
    occupancy = result.occupancy
    raw = compute_extrapolation(case.derivative, case.native, f_model,
                                with_settings(params, difference="raw", occupancy=occupancy))
    pair = result.pair
    native_map = complex_array(pair.native, pair.native.data().as_numpy_array() *
                               pair.unit_phases)
    truth, sites = case.true_minor, case.signal_sites
    row = {"case": case.name, "change": case.change, "noise": case.noise_scale,
           "true_q": case.occupancy, "withheld": withheld, "seconds": seconds,
           "occupancy_used": occupancy, "difference_gain": result.difference_gain,
           "cc": {"extr": correlations(result.map_coefficients, truth, sites),
                  "native": correlations(native_map, truth, sites),
                  "raw": correlations(raw.map_coefficients, truth, sites)}}
    row["estimators"] = {name: {"estimate": e.estimate, "interval": e.interval,
                                "point": e.point, "warning": e.warning}
                         for name, e in estimate.estimators.items()}
    chosen = estimate.chosen
    row.update(method=estimate.method, estimate=chosen.estimate, interval=chosen.interval)
    if chosen.interval is not None:
        row["covered"] = bool(chosen.interval[0] <= case.occupancy <= chosen.interval[1])
    return row


def fmt(value, width=6, digits=3) -> str:
    return f"{value:{width}.{digits}f}" if isinstance(value, (int, float)) and \
        value is not None and np.isfinite(value) else f"{'-':>{width}s}"


def print_table(rows: list[dict]) -> None:
    print(f"{'case':34s} {'q':>4s} {'est':>6s} {'interval':>15s} {'cov':>4s} {'vanish':>6s} "
          f"{'appear':>6s} | near: {'extr':>5s} {'native':>6s} {'raw':>5s} | cell: "
          f"{'extr':>5s} {'native':>6s} {'raw':>5s}")
    for row in rows:
        est = row.get("estimate")
        interval = row.get("interval")
        estimators = row.get("estimators") or {}
        point = {k: v["estimate"] for k, v in estimators.items()}
        star = "*" if est is None else " "
        cc = row["cc"]
        print(f"{row['case']:34s} {row['true_q']:4.1f} {fmt(est)} "
              f"{('[' + fmt(interval[0], 5) + ',' + fmt(interval[1], 5) + ']') if interval else 'withheld':>15s} "
              f"{('yes' if row.get('covered') else 'no') if interval else '-':>4s} "
              f"{fmt(point.get('vanish'))} {fmt(point.get('appear'))} | "
              f"{star}{fmt(cc['extr']['near'], 5)} {fmt(cc['native']['near'])} "
              f"{fmt(cc['raw']['near'], 5)} | {star}{fmt(cc['extr']['cell'], 5)} "
              f"{fmt(cc['native']['cell'])} {fmt(cc['raw']['cell'], 5)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-min", type=float, default=2.0)
    parser.add_argument("--site", choices=sorted(SITES_8A6G), default="chromophore",
                        help="where the change happens (meteor_cctbx.family.SITES_8A6G): the "
                        "chromophore, or a second site (hold-out-like check of the defaults)")
    parser.add_argument("--changes", nargs="+", default=list(CHANGES),
                        choices=ALL_CHANGES)
    parser.add_argument("--occupancies", nargs="+", type=float, default=[0.1, 0.2, 0.4, 1.0])
    parser.add_argument("--noise", nargs="+", type=float, default=[1.0, 2.0])
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--appear-blur-b", type=float, default=None,
                        help="extrapolate.appear_blur_b (default: the program's)")
    parser.add_argument("--shake-rms", type=float, default=0.3,
                        help="rms shift (A) of the true native from the phasing model")
    parser.add_argument("--sigma-scale", type=float, default=1.0,
                        help="state both data sets' sigmas this many times the noise drawn "
                        "(family.with_sigmas_scaled; 1: honest)")
    parser.add_argument("--estimator", default="combined")
    parser.add_argument("--out-dir", type=Path, default=WORK)
    parser.add_argument("--difference", choices=("diffmap", "phaseboost", "raw"),
                        default="diffmap", help="extrapolate.difference: which dF is "
                        "extrapolated (the raw-dF comparison column stays raw)")
    args = parser.parse_args(argv)
    if not (DATA / "scaled-test-data.mtz").exists():
        print(f"8a6g data not found at {DATA}", file=sys.stderr)
        return 1
    params = default_params("extrapolate")
    params.extrapolate.n_bootstrap = args.n_bootstrap
    if args.appear_blur_b is not None:
        params.extrapolate.appear_blur_b = args.appear_blur_b
    params.extrapolate.estimator = args.estimator
    params.extrapolate.difference = args.difference
    source = source_8a6g(DATA, d_min=args.d_min, site=args.site, shake_rms=args.shake_rms)
    rows = []
    for change in args.changes:
        for occupancy in args.occupancies:
            for noise in args.noise:
                case = make_case(source, change, occupancy, noise)
                if args.sigma_scale != 1:
                    case = with_sigmas_scaled(case, args.sigma_scale)
                rows.append(run_case(case, params))
                print(f"  {case.name}: {rows[-1]['seconds']:.1f} s", file=sys.stderr,
                      flush=True)
    print_table(rows)
    held = [r for r in rows if r.get("estimate") is not None]
    for change in args.changes:
        mine = [r for r in held if r["change"] == change]
        if mine:
            errors = [abs(r["estimate"] - r["true_q"]) for r in mine]
            print(f"{change}: {len(mine)} estimated of "
                  f"{sum(r['change'] == change for r in rows)}, mean |error| "
                  f"{np.mean(errors):.3f}, max {np.max(errors):.3f}, intervals covering "
                  f"{sum(r['covered'] for r in mine)}/{len(mine)}")
    # the hold-out occupancies: recovered within +-0.08 with a covering interval?
    target = [r for r in rows if r["true_q"] in HOLD_OUT_OCCUPANCIES]
    if target:
        hits = [r for r in target if r.get("estimate") is not None and
                abs(r["estimate"] - r["true_q"]) <= HOLD_OUT_TOLERANCE]
        print(f"q in {HOLD_OUT_OCCUPANCIES}: {len(hits)} of {len(target)} within "
              f"+-{HOLD_OUT_TOLERANCE:g}, {sum(bool(r.get('covered')) for r in hits)} of "
              f"them covered ({sum(r.get('estimate') is None for r in target)} withheld)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "summary.json").write_text(json.dumps(
        {"d_min": args.d_min, "estimator": args.estimator, "rows": rows}, indent=1,
        default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
