"""Speed of meteor.diffmap / meteor.phaseboost against meteor-maps, and their cost against
cell size.

    python benchmarks/bench_speed.py [--parts A B] [--inputs real family]
        [--programs diffmap phaseboost] [--skip-meteor-maps] [--sizes 3x3x1 3x3x3 5x5x3 7x7x5]
        [--quick] [--out-dir benchmarks/_work/speed]

Run it with a Python that has cctbx and this package (e.g. /work/main/.venv/bin/python), alone
on the machine: every number is a wall-clock time.  Everything it writes goes under
``--out-dir`` (default ``benchmarks/_work/speed/``, git-ignored); the summary is
``<out-dir>/summary.json``.  ``--quick`` is a smoke test of a minute or two (family case at
3.5 A, two tiny cells at 3 A, the real data left out unless ``--inputs`` names them).

Before any timed run, every tool runs once, untimed, on a tiny pair (``--no-warm-up`` skips
it), so that no timed run pays for compiling numba's cached kernels or for a cold page cache.

Part A, speed against meteor-maps (issue 10, targets 10x for diffmap, 5x for phaseboost):
whole processes, one after another on the same machine, timed by wall clock with start-up,
imports, reading and writing included (``bench_difference_maps.run_ours`` and
``run_meteor_maps``: our console scripts with default parameters, meteor-maps' from its own
venv, see ``reference_tools.py``), on

* ``real``: ``scaled-test-data.mtz`` of 8a6g (F_on derivative, F_off native) with
  ``8a6g-chromophore-removed.pdb``; no truth, so each map is scored by its correlation with
  meteor-maps' published columns F_k, F_TV and F_itTV of that file;
* ``family``: the benchmark family's case compact / occupancy 0.4 / noise x1 on the 8a6g
  source at full resolution (``meteor_cctbx.family.source_8a6g(d_min=None)``, about 41k
  reflections to 1.41 A), every map scored by its correlation with the true difference
  F_der - F_nat (``meteor_cctbx.map_metrics.map_correlation``).

Per input it prints the table of ``bench_difference_maps`` (tool, seconds, meteor-maps /
ours of the same program, CCs, signal share near the ligand) and the lines
``diffmap speed-up: X (target 10)`` and ``phaseboost speed-up: Y (target 5)``.

Part B, cost against cell size: our meteor.diffmap (defaults) as a whole process on synthetic
pairs of growing cell at one d_min (2 A), from about 1 M to over 30 M map voxels.  The
structures are supercells: one random protein-like blob (``synthetic.random_protein_like``,
P 21 21 21, cell 43.2 x 48 x 52.8 A, 660 atoms, ~2 s) repeated m1 x m2 x m3 times, with odd
multipliers so that the supercell keeps P 21 21 21, every atom then shaken by 0.5 A rms so
that copies differ (no exact pseudo-translation), a ligand taken out near the asymmetric unit's
centre and the pair simulated with ``synthetic.make_pair`` (noise, scales, a phasing model with
errors).  A blob drawn directly in a large cell would not do: random_protein_like's cost grows
much faster than its atom count (~30 s for a 58 x 64 x 70 A cell already), while a 5x5x3
supercell (216 x 240 x 158 A, 49.5k atoms, 550k reflections) is built and written in ~10 s.
The default sizes 3x3x1 3x3x3 5x5x3 7x7x5 give TV grids (spacing d_min/2, map.sampling) of
about 1.1, 3.4, 9.7 and 32 M voxels (``--sizes 3`` takes the first three).  Each run goes through
a fresh wrapper process that reports the program's peak resident memory
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``).  Per size it prints cell, atoms, reflections,
voxels (the run's JSON record, ``result.grid``), wall seconds, peak memory, seconds per
million voxels and the map's correlation with the true difference.

A full run (both parts, meteor-maps included) should take some 20-30 minutes on 2 cores, most
of it meteor-maps (an estimate from the timings in issue 10, not measured with this script).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import iotbx.pdb  # noqa: F401  (cctbx before scipy/numpy-heavy modules, as elsewhere)
import numpy as np
from cctbx import crystal, xray
from cctbx.array_family import flex

BENCHMARKS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS_DIR))
import bench_difference_maps as bdm  # noqa: E402
import reference_tools  # noqa: E402

from meteor_cctbx import __version__ as OUR_VERSION  # noqa: E402
from meteor_cctbx import family, synthetic  # noqa: E402
from meteor_cctbx.example import write_amplitudes_mtz  # noqa: E402
from meteor_cctbx.map_metrics import map_correlation  # noqa: E402
from meteor_cctbx.record import write_bytes  # noqa: E402
from meteor_cctbx.reflections import read_miller_arrays  # noqa: E402

OUT_DIR = reference_tools.WORK_DIR / "speed"
PROGRAMS = bdm.PROGRAMS
INPUTS = ("real", "family")
SPEED_TARGETS = {"diffmap": 10.0, "phaseboost": 5.0}
FAMILY_CASE = ("compact", 0.4, 1.0)             # change, occupancy, noise scale
MIN_FAMILY_REFLECTIONS = 40000
AMPLITUDE_LABELS = ("F", "SIGF")                # columns of family.write_case / part B files

SIZE_BASE_CELL = (43.2, 48.0, 52.8)             # A, P 21 21 21
SIZE_D_MIN = 2.0                                # A
SIZE_MULTIPLIERS = ("3x3x1", "3x3x3", "5x5x3", "7x7x5")   # ~1.1, 3.4, 9.7, 32 M voxels
SIZE_SHAKE_RMS = 0.5                            # A, after tiling
QUICK = {"family_d_min": 3.5, "base_cell": (24.0, 26.0, 28.0), "size_d_min": 3.0,
         "sizes": ("1x1x1", "3x1x1")}


# ----------------------------------------------------------------------- part A: inputs

def build_family(out_dir: Path, data_dir: Path, d_min: float | None) -> bdm.InputSet:
    """The family case FAMILY_CASE on the 8a6g source cut at ``d_min`` (None: all data),
    written by family.write_case; scored against its true difference."""
    source = family.source_8a6g(data_dir, d_min=d_min)
    case = family.make_case(source, *FAMILY_CASE)
    paths = family.write_case(case, out_dir)
    info = {"case": case.name, "d_min": case.native.d_min(),
            "reflections": case.native.size(),
            **bdm.isomorphism_summary(case.derivative, case.native)}
    return bdm.InputSet("family", out_dir, paths["derivative"], AMPLITUDE_LABELS,
                        paths["native"], AMPLITUDE_LABELS, paths["model"], paths["derivative"],
                        paths["native"], case.true_difference.map_to_asu(), {},
                        case.signal_sites, info)


def launchers(with_meteor_maps: bool) -> dict[str, Any]:
    """Tool name -> the bench_difference_maps function that runs and times it."""
    tools = {"ours": bdm.run_ours}
    if with_meteor_maps:
        tools["meteor-maps"] = bdm.run_meteor_maps
    return tools


def run_tools(inputs: bdm.InputSet, programs: Sequence[str], with_meteor_maps: bool
              ) -> list[bdm.ToolRun]:
    """Per program, ours then meteor-maps, one after another."""
    runs = []
    for program in programs:
        for tool, launch in launchers(with_meteor_maps).items():
            print(f"[{inputs.name}] {tool} meteor.{program} ...", end=" ", flush=True)
            run = launch(program, inputs, inputs.directory)
            status = "ok" if run.ok else f"FAILED ({run.error or f'exit {run.returncode}'})"
            seconds = "-" if run.seconds is None else f"{run.seconds:.1f} s"
            print(f"{seconds} {status}", flush=True)
            runs.append(run)
    return runs


def speed_lines(inputs: bdm.InputSet, rows: Sequence[bdm.Row], programs: Sequence[str]
                ) -> tuple[list[str], dict[str, float | None]]:
    """'<program> speed-up: X (target T)' per program (meteor-maps seconds / ours), and on
    the family case the CC of ours minus meteor-maps' (no loss allowed)."""
    by_key = {row.key: row for row in rows}
    lines, speedups = [], {}
    for program in programs:
        target = SPEED_TARGETS[program]
        ours, ref = by_key.get(f"ours.{program}"), by_key.get(f"meteor_maps.{program}")
        speedups[program] = ref.ratio if ref is not None else None
        if ref is None or ref.ratio is None:
            lines.append(f"{program} speed-up: not measured (target {target:g})")
            continue
        verdict = "met" if ref.ratio >= target else "NOT met"
        lines.append(f"{program} speed-up: {ref.ratio:.1f} (target {target:g}): {verdict}; "
                     f"meteor-maps {ref.seconds:.1f} s / ours {ours.seconds:.1f} s")
        if inputs.truth is not None and ours.cc.get("truth") is not None \
                and ref.cc.get("truth") is not None:
            margin = ours.cc["truth"] - ref.cc["truth"]
            lines.append(f"{program} CC with truth: ours {ours.cc['truth']:.3f}, meteor-maps "
                         f"{ref.cc['truth']:.3f}, difference {margin:+.3f} "
                         f"({'no loss' if margin >= 0 else 'LOSS'})")
    return lines, speedups


def part_a(args, with_meteor_maps: bool) -> tuple[list[str], dict[str, Any]]:
    reports, summary = [], {}
    for name in args.inputs:
        directory = args.out_dir / name
        start = time.perf_counter()
        if name == "real":
            inputs = bdm.build_real(directory, args.data_dir)
        else:
            inputs = build_family(directory, args.data_dir, args.family_d_min)
        info = inputs.info
        note = ""
        if name == "family" and info["reflections"] < MIN_FAMILY_REFLECTIONS:
            note = f" (below the issue's {MIN_FAMILY_REFLECTIONS}: not the real benchmark)"
        print(f"\n[{name}] {info.get('case', 'scaled-test-data.mtz')}: d_min "
              f"{info['d_min']:.2f} A, {info['reflections']} reflections{note}, Riso "
              f"{info['riso_overall']:.3f}; inputs built in {time.perf_counter() - start:.0f} s",
              flush=True)
        runs = run_tools(inputs, args.programs, with_meteor_maps)
        rows = bdm.evaluate(runs, inputs)
        lines, speedups = speed_lines(inputs, rows, args.programs)
        title = (f"== A/{name}: whole-process wall time; "
                 + ("CC with the true difference" if inputs.truth is not None
                    else "CC with meteor-maps' published columns")
                 + "; time/ours = meteor-maps / ours of the same program")
        reports.append("\n".join([title, bdm.format_table(inputs, rows), *lines]))
        print("\n" + reports[-1] + "\n", flush=True)
        summary[name] = {"info": info, "speedups": speedups, "lines": lines,
                         "runs": [{"key": r.key, "seconds": r.seconds,
                                   "returncode": r.returncode, "error": r.error,
                                   "command": r.command, "log": str(r.log_path)} for r in runs],
                         "rows": [row.__dict__ for row in rows]}
    return reports, summary


# -------------------------------------------------------------- part B: cost against size

def parse_multipliers(text: str) -> tuple[int, int, int]:
    """'5x5x3' -> (5, 5, 3); odd multipliers only (an even one breaks P 21 21 21)."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 1 or v % 2 == 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"size {text!r}: give three odd multipliers of the base cell, e.g. 3x3x1")
    return values


def supercell(base: xray.structure, multipliers: Sequence[int], shake_rms: float, seed: int
              ) -> xray.structure:
    """``base`` (P 21 21 21) repeated m1 x m2 x m3 times in a cell that many times larger.

    With odd multipliers the tiled crystal has the same space group in the large cell (a 2_1
    screw's translation of half the large cell is a half plus whole small cells), so the atoms
    in the large cell's asymmetric-unit box are its asymmetric unit.  Every atom is then
    shaken by ``shake_rms`` A, so the copies differ."""
    space_group_info = base.space_group_info()
    if str(space_group_info) != "P 21 21 21":
        raise ValueError(f"supercells are built for P 21 21 21 only, not {space_group_info}")
    m = np.array(multipliers)
    expanded = base.expand_to_p1(sites_mod_positive=True)
    shifts = np.stack(np.meshgrid(*[np.arange(v) for v in m], indexing="ij"), -1).reshape(-1, 3)
    sites = ((np.array(expanded.sites_frac()).reshape(1, -1, 3) + shifts[:, None]) / m
             ).reshape(-1, 3)
    parameters = base.unit_cell().parameters()
    symmetry = crystal.symmetry(unit_cell=tuple(float(a * k) for a, k in zip(parameters, m))
                                + parameters[3:], space_group_info=space_group_info)
    asu = space_group_info.direct_space_asu()
    box_min = np.array([float(v) for v in asu.box_min()])
    box_max = np.array([float(v) for v in asu.box_max()])
    inside = np.all((sites >= box_min) & (sites < box_max), axis=1)
    scatterers = flex.xray_scatterer()
    for _ in range(len(shifts)):
        scatterers.extend(expanded.scatterers().deep_copy())
    structure = xray.structure(crystal.special_position_settings(symmetry),
                               scatterers.select(flex.bool(inside)))
    structure.set_sites_frac(flex.vec3_double(sites[inside]))
    if shake_rms > 0:
        flex.set_random_seed(seed)
        structure.shake_sites_in_place(rms_difference=shake_rms)
    return structure


def write_size_pair(structure: xray.structure, d_min: float, directory: Path, seed: int
                    ) -> synthetic.SyntheticPair:
    """The pair of ``structure`` without / with a ligand (synthetic.ligand_selection) as
    derivative.mtz, native.mtz (F, SIGF) and model.pdb (the phasing model) in ``directory``."""
    is_ligand = synthetic.ligand_selection(structure, seed=seed)
    pair = synthetic.make_pair(structure.select(flex.bool(~is_ligand)), structure, d_min,
                               seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    write_amplitudes_mtz(directory / "derivative.mtz", pair.derivative)
    write_amplitudes_mtz(directory / "native.mtz", pair.native)
    write_bytes(directory / "model.pdb",
                synthetic.structure_as_pdb(pair.phasing_model).encode())
    return pair


def files_in(directory: Path) -> SimpleNamespace:
    """What bench_difference_maps.run_ours reads: the files of write_size_pair."""
    return SimpleNamespace(model_pdb=directory / "model.pdb",
                           derivative_mtz=directory / "derivative.mtz",
                           derivative_labels=AMPLITUDE_LABELS,
                           native_mtz=directory / "native.mtz", native_labels=AMPLITUDE_LABELS)


def child_diffmap(directory: Path) -> int:
    """Wrapper process of one part-B run: our meteor.diffmap on the files in ``directory``;
    prints one JSON line with its wall seconds, exit code and peak resident memory (kB; the
    only child of this process, so RUSAGE_CHILDREN is that run's)."""
    run = bdm.run_ours("diffmap", files_in(directory), directory)
    print(json.dumps({"seconds": run.seconds, "returncode": run.returncode,
                      "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
    return 0


def warm_up(args, programs: Sequence[str], with_meteor_maps: bool) -> dict[str, Any]:
    """Untimed runs of every tool on a tiny pair (the quick base cell at 3 A), so that the
    timed runs find compiled caches (numba's TV kernels, .pyc files) and the files of both
    installations in the page cache, as in everyday use.  Failures are reported, not fatal."""
    directory = args.out_dir / "warm_up"
    base = synthetic.random_protein_like(unit_cell=QUICK["base_cell"] + (90.0, 90.0, 90.0),
                                         seed=args.seed)
    write_size_pair(base, QUICK["size_d_min"], directory, args.seed)
    seconds = {}
    for program in programs:
        for tool, launch in launchers(with_meteor_maps).items():
            run = launch(program, files_in(directory), directory)
            seconds[f"{tool} {program}"] = run.seconds if run.ok else None
    print("warm-up (untimed, tiny pair): " + ", ".join(
        f"{name} {'failed' if value is None else f'{value:.1f} s'}"
        for name, value in seconds.items()), flush=True)
    return seconds


@dataclass
class SizeRow:
    size: str
    cell: tuple[float, float, float]
    atoms: int
    reflections: int | None
    grid: list[int] | None
    voxels: int | None
    build_seconds: float
    seconds: float | None
    peak_rss_gib: float | None
    seconds_per_mvoxel: float | None
    cc_truth: float | None
    note: str = ""


def measure_size(base: xray.structure, size: str, args) -> SizeRow:
    """Build, write and run one size; the row of the table."""
    directory = args.out_dir / "sizes" / size
    start = time.perf_counter()
    structure = supercell(base, parse_multipliers(size), SIZE_SHAKE_RMS, args.seed)
    pair = write_size_pair(structure, args.size_d_min, directory, args.seed)
    build_seconds = time.perf_counter() - start
    cell = tuple(round(a, 1) for a in structure.unit_cell().parameters()[:3])
    print(f"[size {size}] cell {cell[0]} x {cell[1]} x {cell[2]} A, "
          f"{structure.scatterers().size()} atoms, {pair.native.size()} reflections, built in "
          f"{build_seconds:.0f} s; meteor.diffmap ...", end=" ", flush=True)
    row = SizeRow(size, cell, structure.scatterers().size(), None, None, None, build_seconds,
                  None, None, None, None)
    child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-diffmap",
                            str(directory)], capture_output=True, text=True)
    try:
        report = json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        row.note = f"wrapper failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}"
        print(row.note, flush=True)
        return row
    row.seconds, row.peak_rss_gib = report["seconds"], report["max_rss_kb"] / 1024 ** 2
    record_path = directory / "ours_diffmap.json"
    if report["returncode"] != 0 or not record_path.exists():
        row.note = f"exit {report['returncode']}; see {directory / 'ours_diffmap.log'}"
        print(row.note, flush=True)
        return row
    result = json.loads(record_path.read_text())["result"]
    row.grid, row.reflections = result["grid"], result["n_reflections"]
    row.voxels = int(np.prod(row.grid))
    row.seconds_per_mvoxel = row.seconds / (row.voxels / 1e6)
    coefficients = bdm.map_coefficients(read_miller_arrays(directory / "ours_diffmap.mtz"),
                                        "DELFWT", "PHDELWT")
    row.cc_truth = map_correlation(coefficients, pair.true_difference)
    print(f"{row.seconds:.1f} s, {row.peak_rss_gib:.2f} GiB", flush=True)
    return row


def format_sizes(rows: Sequence[SizeRow]) -> str:
    header = (f"{'size':<8}{'cell (A)':<22}{'atoms':>8}{'reflections':>12}{'grid':>16}"
              f"{'Mvoxels':>9}{'build s':>9}{'wall s':>8}{'peak GiB':>10}{'s/Mvox':>8}"
              f"{'CC truth':>10}  note")

    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [header, "-" * len(header)]
    for row in rows:
        cell = " x ".join(f"{a:g}" for a in row.cell)
        grid = "x".join(str(n) for n in row.grid) if row.grid else "-"
        lines.append(f"{row.size:<8}{cell:<22}{row.atoms:>8}{num(row.reflections, 'd'):>12}"
                     f"{grid:>16}{num(row.voxels and row.voxels / 1e6, '.2f'):>9}"
                     f"{row.build_seconds:>9.0f}{num(row.seconds, '.1f'):>8}"
                     f"{num(row.peak_rss_gib, '.2f'):>10}{num(row.seconds_per_mvoxel, '.2f'):>8}"
                     f"{num(row.cc_truth, '.3f'):>10}  {row.note}")
    return "\n".join(lines)


def part_b(args) -> tuple[str, dict[str, Any]]:
    start = time.perf_counter()
    base = synthetic.random_protein_like(unit_cell=tuple(args.base_cell) + (90.0, 90.0, 90.0),
                                         seed=args.seed)
    print(f"\n[sizes] base blob {base.scatterers().size()} atoms in "
          f"{' x '.join(f'{a:g}' for a in args.base_cell)} A (P 21 21 21), built in "
          f"{time.perf_counter() - start:.0f} s; d_min {args.size_d_min:g} A", flush=True)
    rows = [measure_size(base, size, args) for size in args.sizes]
    report = "\n".join([f"== B: our meteor.diffmap (defaults) against cell size, d_min "
                        f"{args.size_d_min:g} A; wall time of the whole process, peak resident "
                        f"memory of that process", format_sizes(rows)])
    print("\n" + report + "\n", flush=True)
    return report, {"base_cell": list(args.base_cell), "base_atoms": base.scatterers().size(),
                    "d_min": args.size_d_min, "shake_rms": SIZE_SHAKE_RMS,
                    "rows": [asdict(row) for row in rows]}


# ---------------------------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("A", "B"), default=["A", "B"])
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=None,
                        help="part A inputs (default: both; with --quick: family)")
    parser.add_argument("--programs", nargs="+", choices=PROGRAMS, default=list(PROGRAMS),
                        help="part A programs")
    parser.add_argument("--skip-meteor-maps", action="store_true")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="part B supercells of the base cell, e.g. 3x3x1 (odd multipliers), "
                        f"or one number N: the first N of {' '.join(SIZE_MULTIPLIERS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: family case at 3.5 A, sizes 1x1x1 3x1x1 of a 24 x 26 "
                        "x 28 A cell at 3 A")
    parser.add_argument("--family-d-min", type=float, default=None,
                        help="cut the family source at this d_min (A; default: all data)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="skip the untimed runs on a tiny pair before the timed ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=bdm.DATA_DIR)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--child-diffmap", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_diffmap:
        return args
    args.base_cell, args.size_d_min = SIZE_BASE_CELL, SIZE_D_MIN
    if args.quick:
        args.base_cell, args.size_d_min = QUICK["base_cell"], QUICK["size_d_min"]
        args.family_d_min = args.family_d_min or QUICK["family_d_min"]
    if args.inputs is None:
        args.inputs = ["family"] if args.quick else list(INPUTS)
    ladder = QUICK["sizes"] if args.quick else SIZE_MULTIPLIERS
    if args.sizes is None:
        args.sizes = list(ladder)
    elif len(args.sizes) == 1 and args.sizes[0].isdigit():
        args.sizes = list(SIZE_MULTIPLIERS[:int(args.sizes[0])])
    for size in args.sizes:
        try:
            parse_multipliers(size)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_diffmap:
        return child_diffmap(args.child_diffmap)
    if "A" in args.parts and not (args.data_dir / bdm.REAL_MTZ).exists():
        print(f"8a6g data not found in {args.data_dir}: part A skipped.")
        args.parts = [p for p in args.parts if p != "A"]
    meteor_version = bdm.meteor_maps_version("A" in args.parts and not args.skip_meteor_maps)
    with_meteor_maps = meteor_version is not None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = bdm.summary_header(args, meteor_version)
    print(f"meteor_cctbx {OUR_VERSION}, meteor-maps {meteor_version or 'not run'}, "
          f"{summary['cpus']} CPUs; outputs in {args.out_dir}", flush=True)
    if args.warm_up:
        programs = sorted(set(args.programs if "A" in args.parts else [])
                          | ({"diffmap"} if "B" in args.parts else set()))
        summary["warm_up_seconds"] = warm_up(args, programs, with_meteor_maps)
    reports = []
    if "A" in args.parts:
        reports_a, summary["speed"] = part_a(args, with_meteor_maps)
        reports += reports_a
    if "B" in args.parts:
        report_b, summary["sizes"] = part_b(args)
        reports.append(report_b)
    summary_path = args.out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    print("\n\n".join(["== summary =="] + reports))
    print(f"\nsummary written to {summary_path}")
    failed = [r["key"] for s in summary.get("speed", {}).values() for r in s["runs"]
              if r["returncode"] != 0 or r["error"]]
    failed += [r["size"] for r in summary.get("sizes", {}).get("rows", []) if r["note"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
