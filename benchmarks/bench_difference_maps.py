"""Benchmark meteor.diffmap / meteor.phaseboost against meteor-maps and cctbx's Fo-Fo map.

    python benchmarks/bench_difference_maps.py [--inputs synthetic real]
        [--programs diffmap phaseboost] [--skip-meteor-maps] [--d-min 1.5]
        [--sigma-fraction 0.1] [--coordinate-error 0.4] [--b-error-fraction 0.2]

Run it with a Python that has cctbx and this package (e.g. /tmp/venv/bin/python).  Everything
it writes goes under ``benchmarks/_work/difference_maps/`` (git-ignored); the summary is
``benchmarks/_work/difference_maps/summary.json``.  A full run (both inputs, both programs,
meteor-maps included) takes 15-20 minutes on 2 cores, most of it meteor-maps.

On each input set, one after another on the same machine, it runs as whole subprocesses and
times by wall clock (start-up, imports, file reading and writing included):

* ours: ``meteor.diffmap`` and ``meteor.phaseboost`` with default parameters (final map
  ``DELFWT/PHDELWT``; the diffmap MTZ also gives the unweighted ``DF_RAW/PHIDF_RAW``, shown as
  the "raw dF" row, untimed);
* meteor-maps (PyPI ``meteor-maps``, its own venv, see ``reference_tools.py``; never imported
  here): ``meteor.diffmap`` and ``meteor.phaseboost`` with defaults (``F/PHI``);
* cctbx: ``python -m mmtbx.command_line.fobs_minus_fobs_map`` (derivative = f_obs_1, native =
  f_obs_2, phases of the native's F_model with bulk solvent), plain and ``multiscale=True``
  (``FoFo/PHFc``).  These anchors run whatever ``--programs`` says.

Input sets:

* ``synthetic``: a pair simulated from PDB 8a6g with ``meteor_cctbx.synthetic.make_pair``:
  native = ``8a6g-chromophore-removed.pdb``, derivative = ``8a6g.pdb`` (the chromophore OHD A 68
  with its three alternate conformations at the file's occupancies; note that the two files
  are separate refinements, so some side chains and waters differ too and belong to the true
  difference), ``--d-min`` (default 1.5 A, close to the data's 1.41 A and a little cheaper),
  Gaussian noise of ``--sigma-fraction`` x <|F|> in the highest shell (0.3 x that at low
  resolution), scale/anisotropy differences, and a phasing model with ``--coordinate-error`` A
  rms coordinate errors and B-factors off by ``--b-error-fraction``.  The phasing model is
  written with the native's residue names and chains.  Scored by the correlation of each
  map with the true complex difference F_der - F_nat over the unit cell (common reflections;
  ``meteor_cctbx.map_metrics.map_correlation``).
* ``real``: ``scaled-test-data.mtz`` of 8a6g (F_on derivative, F_off native) with
  ``8a6g-chromophore-removed.pdb``.  No truth: each map's correlation with meteor-maps'
  published columns F_k/PHI_k, F_TV/PHI_TV and F_itTV/PHI_itTV in the same file.

On both, the "signal" column is the fraction of the map's sum of squares within 4 A of any
symmetry copy of the chromophore atoms (OHD A 68 of 8a6g.pdb), to compare with the raw
difference map's.  Each input set gets a table: tool, seconds, time / ours (ours of the same
program; the Fo-Fo anchors against ours diffmap), the correlations and the signal fraction.

cctbx quirk: ``fobs_minus_fobs_map`` given the *same* MTZ twice (``f_obs_1_file_name`` =
``f_obs_2_file_name``, different labels) reads the first label for both data sets and writes a
zero map (R = 0 between "derivative" and "native").  The script therefore gives it two
single-data-set MTZ files (written from the same arrays) and checks its log for which file
became data set 0 (the derivative).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import iotbx.pdb  # cctbx before scipy/numpy-heavy modules, as elsewhere in the package
import mmtbx.model
from cctbx import miller
from cctbx.array_family import flex

import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS_DIR))
import reference_tools  # noqa: E402  (standard library only; runs meteor-maps by subprocess)

from meteor_cctbx import __version__ as OUR_VERSION  # noqa: E402
from meteor_cctbx import synthetic  # noqa: E402
from meteor_cctbx.map_metrics import map_correlation, variance_fraction_near  # noqa: E402
from meteor_cctbx.reflections import (  # noqa: E402
    isomorphism_shells, load_amplitudes, read_miller_arrays)
from meteor_cctbx.scaling import fit_scale  # noqa: E402

OUT_DIR = reference_tools.WORK_DIR / "difference_maps"
DATA_DIR = reference_tools.DATA_8A6G
REAL_MTZ = "scaled-test-data.mtz"
NATIVE_MODEL = "8a6g-chromophore-removed.pdb"
COMPLEX_MODEL = "8a6g.pdb"
SIGNAL_SELECTION = "chain A and resseq 68 and resname OHD"
SIGNAL_RADIUS = 4.0
REFERENCE_COLUMNS = {"F_k": ("F_k", "PHI_k"), "F_TV": ("F_TV", "PHI_TV"),
                     "F_itTV": ("F_itTV", "PHI_itTV")}
PROGRAMS = ("diffmap", "phaseboost")
INPUTS = ("synthetic", "real")


# ----------------------------------------------------------------------------------- inputs

@dataclass
class InputSet:
    """Files every tool reads, and what the maps are scored against."""

    name: str
    directory: Path
    derivative_mtz: Path
    derivative_labels: tuple[str, str]
    native_mtz: Path
    native_labels: tuple[str, str]
    model_pdb: Path
    # fobs_minus_fobs_map needs one data set per file (see the module docstring)
    cctbx_derivative_mtz: Path
    cctbx_native_mtz: Path
    truth: miller.array | None
    references: dict[str, miller.array]
    signal_sites: flex.vec3_double
    info: dict[str, Any] = field(default_factory=dict)


def read_model(path: Path, d_min: float) -> mmtbx.model.manager:
    """mmtbx model with n_gaussian scattering factors; occupancies as in the file."""
    model = mmtbx.model.manager(model_input=iotbx.pdb.input(file_name=str(path)))
    model.setup_scattering_dictionaries(scattering_table="n_gaussian", d_min=d_min)
    return model


def signal_sites(data_dir: Path) -> flex.vec3_double:
    """Cartesian sites of the chromophore (all alternate conformations) in 8a6g.pdb."""
    hierarchy = iotbx.pdb.input(file_name=str(data_dir / COMPLEX_MODEL)).construct_hierarchy()
    selection = hierarchy.atom_selection_cache().selection(SIGNAL_SELECTION)
    return hierarchy.atoms().extract_xyz().select(selection)


def write_amplitudes(array: miller.array, path: Path, labels: tuple[str, str]) -> None:
    """Amplitudes and sigmas as one MTZ data set with columns ``labels``."""
    mtz = array.as_mtz_dataset(column_root_label=labels[0]).mtz_object()
    if labels[1] != f"SIG{labels[0]}":
        mtz.get_column(f"SIG{labels[0]}").set_label(labels[1])
    mtz.write(str(path))


def write_phasing_model(native: mmtbx.model.manager, perturbed, path: Path) -> None:
    """The native model's hierarchy (residue names, chains, altlocs kept) with the perturbed
    structure's coordinates and B-factors, with CRYST1."""
    hierarchy = native.get_hierarchy().deep_copy()
    atoms = hierarchy.atoms()
    if atoms.size() != perturbed.scatterers().size():
        raise RuntimeError("phasing model and native hierarchy differ in atom count")
    atoms.set_xyz(perturbed.sites_cart())
    atoms.set_b(perturbed.extract_u_iso_or_u_equiv() * (8 * np.pi ** 2))
    path.write_text(hierarchy.as_pdb_string(crystal_symmetry=native.crystal_symmetry()))


def isomorphism_summary(derivative: miller.array, native: miller.array) -> dict[str, Any]:
    """Riso (overall and by shell) after anisotropic scaling of the derivative to the native."""
    scaled = fit_scale(derivative, native, "anisotropic").apply(derivative)
    fd, fn = scaled.common_sets(native)
    d, n = fd.data().as_numpy_array(), fn.data().as_numpy_array()
    shells = isomorphism_shells(fd, fn)
    return {"riso_overall": float(np.abs(d - n).sum() / ((d + n).sum() / 2)),
            "riso_shells": [(round(s.d_max, 2), round(s.d_min, 2), round(s.r_iso, 3))
                            for s in shells]}


def build_synthetic(out_dir: Path, data_dir: Path, d_min: float, sigma_fraction: float,
                    coordinate_error: float, b_error_fraction: float, seed: int) -> InputSet:
    """Simulate the 8a6g pair and write derivative.mtz, native.mtz, phasing_model.pdb,
    truth.mtz (FTRUE/PHIFTRUE) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    native_model = read_model(data_dir / NATIVE_MODEL, d_min)
    complex_model = read_model(data_dir / COMPLEX_MODEL, d_min)
    pair = synthetic.make_pair(native_model.get_xray_structure(),
                               complex_model.get_xray_structure(), d_min,
                               sigma_fraction=sigma_fraction, coordinate_error=coordinate_error,
                               b_error_fraction=b_error_fraction, seed=seed)
    derivative_mtz, native_mtz = out_dir / "derivative.mtz", out_dir / "native.mtz"
    write_amplitudes(pair.derivative, derivative_mtz, ("F", "SIGF"))
    write_amplitudes(pair.native, native_mtz, ("F", "SIGF"))
    model_pdb = out_dir / "phasing_model.pdb"
    write_phasing_model(native_model, pair.phasing_model, model_pdb)
    truth = pair.true_difference.map_to_asu()
    truth.as_mtz_dataset(column_root_label="FTRUE").mtz_object().write(
        str(out_dir / "truth.mtz"))
    true_sites = native_model.get_xray_structure().sites_cart()
    shift = (pair.phasing_model.sites_cart() - true_sites).norms()
    info = {"d_min": d_min, "sigma_fraction": sigma_fraction,
            "coordinate_error": coordinate_error, "b_error_fraction": b_error_fraction,
            "seed": seed, "reflections": pair.native.size(),
            "phasing_model_rms_shift": float(np.sqrt(np.mean(shift.as_numpy_array() ** 2))),
            **isomorphism_summary(pair.derivative, pair.native)}
    return InputSet("synthetic", out_dir, derivative_mtz, ("F", "SIGF"), native_mtz,
                    ("F", "SIGF"), model_pdb, derivative_mtz, native_mtz, truth, {},
                    signal_sites(data_dir), info)


def map_coefficients(arrays: Sequence[miller.array], amplitude: str, phase: str
                     ) -> miller.array:
    """Complex map coefficients (asymmetric unit) from an amplitude and a phase column
    (degrees), whether iotbx grouped them into one complex array or not."""
    by_first_label = {}
    for array in arrays:
        labels = array.info().labels
        if array.is_complex_array() and labels[:2] == [amplitude, phase]:
            return array.map_to_asu()
        by_first_label.setdefault(labels[0], array)
    if amplitude not in by_first_label or phase not in by_first_label:
        raise KeyError(f"columns {amplitude}/{phase} not found")
    f, phi = by_first_label[amplitude].common_sets(by_first_label[phase])
    return f.phase_transfer(phi, deg=True).map_to_asu()


def build_real(out_dir: Path, data_dir: Path) -> InputSet:
    """The 8a6g light/dark data; single-data-set copies for fobs_minus_fobs_map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mtz = data_dir / REAL_MTZ
    derivative = load_amplitudes(mtz, "F_on,SIGF_on", "Derivative")
    native = load_amplitudes(mtz, "F_off,SIGF_off", "Native")
    cctbx_derivative, cctbx_native = out_dir / "derivative_F_on.mtz", out_dir / "native_F_off.mtz"
    write_amplitudes(derivative, cctbx_derivative, ("F_on", "SIGF_on"))
    write_amplitudes(native, cctbx_native, ("F_off", "SIGF_off"))
    arrays = read_miller_arrays(mtz)
    references = {name: map_coefficients(arrays, *columns)
                  for name, columns in REFERENCE_COLUMNS.items()}
    info = {"d_min": derivative.d_min(), "reflections": derivative.size(),
            **isomorphism_summary(derivative, native)}
    return InputSet("real", out_dir, mtz, ("F_on", "SIGF_on"), mtz, ("F_off", "SIGF_off"),
                    data_dir / NATIVE_MODEL, cctbx_derivative, cctbx_native, None, references,
                    signal_sites(data_dir), info)


# ------------------------------------------------------------------------------------ runs

@dataclass
class ToolRun:
    """One timed subprocess and where its map coefficients are."""

    key: str            # e.g. "ours.diffmap"
    label: str          # row name in the table
    family: str         # "diffmap" or "phaseboost": which of ours its time is compared with
    command: list[str]
    log_path: Path
    output_mtz: Path
    columns: tuple[str, str]
    seconds: float | None = None
    returncode: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.output_mtz.exists() and self.error is None


def timed_subprocess(command: Sequence[str], log_path: Path, cwd: Path) -> tuple[float, int]:
    """Run ``command`` with stdout+stderr to ``log_path``; (wall seconds, return code)."""
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        start = time.perf_counter()
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=cwd).returncode
        return time.perf_counter() - start, returncode


def our_command(program: str) -> list[str]:
    """Our console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / f"meteor.{program}"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"meteor_cctbx.command_line.{program}"]


def run_ours(program: str, inputs: InputSet, out_dir: Path) -> ToolRun:
    prefix = f"ours_{program}"
    command = our_command(program) + [
        str(inputs.model_pdb),
        f"derivative.file_name={inputs.derivative_mtz}",
        f"derivative.labels={','.join(inputs.derivative_labels)}",
        f"native.file_name={inputs.native_mtz}",
        f"native.labels={','.join(inputs.native_labels)}",
        f"output.prefix={prefix}", "output.overwrite=True"]
    run = ToolRun(f"ours.{program}", f"ours meteor.{program}", program, command,
                  out_dir / f"{prefix}.log", out_dir / f"{prefix}.mtz", ("DELFWT", "PHDELWT"))
    run.output_mtz.unlink(missing_ok=True)
    run.seconds, run.returncode = timed_subprocess(command, run.log_path, out_dir)
    return run


def run_fobs_minus_fobs(inputs: InputSet, out_dir: Path, multiscale: bool) -> ToolRun:
    name = "cctbx_fofo_multiscale" if multiscale else "cctbx_fofo"
    output = out_dir / f"{name}.mtz"
    command = [sys.executable, "-m", "mmtbx.command_line.fobs_minus_fobs_map",
               f"f_obs_1_file_name={inputs.cctbx_derivative_mtz}",
               f"f_obs_1_label={','.join(inputs.derivative_labels)}",
               f"f_obs_2_file_name={inputs.cctbx_native_mtz}",
               f"f_obs_2_label={','.join(inputs.native_labels)}",
               f"phase_source={inputs.model_pdb}", f"output_file={output}",
               f"multiscale={multiscale}"]
    label = "cctbx Fo-Fo multiscale" if multiscale else "cctbx Fo-Fo"
    run = ToolRun(name.replace("_", ".", 1), label, "diffmap", command,
                  out_dir / f"{name}.log", output, ("FoFo", "PHFc"))
    output.unlink(missing_ok=True)
    run.seconds, run.returncode = timed_subprocess(command, run.log_path, out_dir)
    # data set 0 must be the derivative (f_obs_1 - f_obs_2 = derivative minus native)
    sources = re.findall(r"Miller array info: (\S+?):", run.log_path.read_text())
    if sources[:2] != [str(inputs.cctbx_derivative_mtz), str(inputs.cctbx_native_mtz)]:
        run.error = f"unexpected data set order in the log: {sources[:2]}"
    return run


def run_meteor_maps(program: str, inputs: InputSet, out_dir: Path) -> ToolRun:
    output = out_dir / f"meteor_maps_{program}.mtz"
    result = reference_tools.run_meteor(
        program, inputs.derivative_mtz, inputs.native_mtz, inputs.model_pdb, output, [],
        derivative_labels=inputs.derivative_labels, native_labels=inputs.native_labels)
    run = ToolRun(f"meteor_maps.{program}", f"meteor-maps meteor.{program}", program,
                  result["command"] or [], Path(result["log_path"]), output,
                  (reference_tools.OUTPUT_AMPLITUDE_LABEL, reference_tools.OUTPUT_PHASE_LABEL),
                  result["seconds"], result["returncode"])
    if result["command"] is None:
        run.error = result["log_tail"]
    return run


# ------------------------------------------------------------------------------ evaluation

@dataclass
class Row:
    label: str
    key: str
    family: str | None
    seconds: float | None
    ratio: float | None            # seconds / ours seconds of the same family
    cc: dict[str, float | None]    # "truth" or reference column name -> CC
    signal: float | None
    note: str = ""


def score(coefficients: miller.array, inputs: InputSet) -> tuple[dict[str, float], float]:
    """CC with the truth (synthetic) or each reference column (real), and signal fraction."""
    targets = {"truth": inputs.truth} if inputs.truth is not None else inputs.references
    cc = {name: map_correlation(coefficients, target) for name, target in targets.items()}
    signal = variance_fraction_near(coefficients, inputs.signal_sites, radius=SIGNAL_RADIUS)
    return cc, signal


def evaluate(runs: Sequence[ToolRun], inputs: InputSet) -> list[Row]:
    """Rows for every run (in order), the raw dF of our diffmap, and the targets."""
    ours_seconds = {r.family: r.seconds for r in runs if r.key.startswith("ours.") and r.ok}
    rows: list[Row] = []
    for run in runs:
        ours = ours_seconds.get(run.family)
        ratio = run.seconds / ours if run.seconds is not None and ours else None
        if not run.ok:
            note = run.error or f"exit {run.returncode}; see {run.log_path}"
            rows.append(Row(run.label, run.key, run.family, run.seconds, ratio, {}, None,
                            note.splitlines()[-1] if note else ""))
            continue
        try:
            arrays = read_miller_arrays(run.output_mtz)
            cc, signal = score(map_coefficients(arrays, *run.columns), inputs)
        except Exception as error:  # keep the other rows (and the timings) of a long run
            rows.append(Row(run.label, run.key, run.family, run.seconds, ratio, {}, None,
                            f"cannot score {run.output_mtz}: {error}"))
            continue
        rows.append(Row(run.label, run.key, run.family, run.seconds, ratio, cc, signal))
        if run.key == "ours.diffmap":
            cc, signal = score(map_coefficients(arrays, "DF_RAW", "PHIDF_RAW"), inputs)
            rows.append(Row("  raw dF (ours DF_RAW)", "ours.raw", None, None, None, cc, signal,
                            "untimed: unweighted model-phased difference"))
    if inputs.truth is not None:
        rows.append(Row("truth", "truth", None, None, None, {"truth": 1.0},
                        variance_fraction_near(inputs.truth, inputs.signal_sites,
                                               radius=SIGNAL_RADIUS), "untimed"))
    for name, reference in inputs.references.items():
        cc, signal = score(reference, inputs)
        rows.append(Row(f"reference column {name}", f"reference.{name}", None, None, None, cc,
                        signal, "untimed: meteor-maps' published map"))
    return rows


def format_table(inputs: InputSet, rows: Sequence[Row]) -> str:
    cc_names = ["truth"] if inputs.truth is not None else list(inputs.references)
    cc_headers = ["CC truth"] if inputs.truth is not None else [f"CC {n}" for n in cc_names]
    header = (f"{'tool':<30}{'seconds':>9}{'time/ours':>11}  {'vs':<11}"
              + "".join(f"{h:>10}" for h in cc_headers) + f"{'signal':>9}  note")
    lines = [header, "-" * len(header)]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for row in rows:
        vs = f"ours {row.family}" if row.ratio is not None and not row.key.startswith("ours.") \
            else ""
        lines.append(f"{row.label:<30}{num(row.seconds, '.1f'):>9}"
                     f"{num(row.ratio, '.2f'):>11}  {vs:<11}"
                     + "".join(f"{num(row.cc.get(n), '.3f'):>10}" for n in cc_names)
                     + f"{num(row.signal, '.3f'):>9}  {row.note}")
    return "\n".join(lines)


def target_lines(inputs: InputSet, rows: Sequence[Row]) -> list[str]:
    """The issue's targets: ours >= 10x faster than meteor-maps; higher CC with the truth
    than meteor-maps' diffmap and cctbx's Fo-Fo maps (synthetic)."""
    by_key = {row.key: row for row in rows}
    lines = []
    for program in PROGRAMS:
        ours, ref = by_key.get(f"ours.{program}"), by_key.get(f"meteor_maps.{program}")
        if ours and ref and ref.ratio is not None:
            verdict = "met" if ref.ratio >= 10 else "NOT met"
            lines.append(f"speed {program}: meteor-maps {ref.seconds:.1f} s / ours "
                         f"{ours.seconds:.1f} s = {ref.ratio:.1f}x (target >= 10x: {verdict})")
    if inputs.truth is not None:
        anchors = [by_key[k] for k in ("meteor_maps.diffmap", "cctbx.fofo",
                                       "cctbx.fofo_multiscale")
                   if k in by_key and by_key[k].cc.get("truth") is not None]
        if anchors:
            best = max(anchors, key=lambda r: r.cc["truth"])
            for program in PROGRAMS:
                ours = by_key.get(f"ours.{program}")
                if ours and ours.cc.get("truth") is not None:
                    margin = ours.cc["truth"] - best.cc["truth"]
                    verdict = "met" if margin > 0 else "NOT met"
                    lines.append(f"CC ours {program} {ours.cc['truth']:.3f} vs best anchor "
                                 f"({best.label.strip()}) {best.cc['truth']:.3f}: "
                                 f"{margin:+.3f} (target > 0: {verdict})")
    return lines


# ------------------------------------------------------------------------------------ main

def git_state() -> dict[str, Any]:
    repo = BENCHMARKS_DIR.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "modified": [line[3:] for line in git("status", "--porcelain").splitlines()
                         if line[:2].strip() and not line.startswith("??")]}


def meteor_maps_version(wanted: bool) -> str | None:
    """meteor-maps' version once its venv is ready (installed if needed), None when not
    ``wanted`` or when it cannot be installed (said so: the benchmark runs without it)."""
    if not wanted:
        return None
    bin_dir = reference_tools.ensure_meteor_venv()
    if bin_dir is None:
        print("meteor-maps could not be installed: running without it.")
        return None
    return reference_tools.meteor_version(bin_dir) or "unknown version"


def summary_header(args: argparse.Namespace, meteor_version: str | None) -> dict[str, Any]:
    """What a summary.json records about the run: date, machine, versions, git, arguments."""
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "meteor_cctbx": OUR_VERSION, "meteor_maps": meteor_version, "git": git_state(),
            "arguments": {k: str(v) if isinstance(v, Path) else v
                          for k, v in vars(args).items()}}


def run_input_set(inputs: InputSet, programs: Sequence[str], with_meteor_maps: bool
                  ) -> list[ToolRun]:
    """All tools on one input set, one after another."""
    plan: list[tuple[str, Any]] = []
    plan += [(f"ours meteor.{p}", lambda p=p: run_ours(p, inputs, inputs.directory))
             for p in programs]
    plan += [(f"cctbx fobs_minus_fobs_map multiscale={m}",
              lambda m=m: run_fobs_minus_fobs(inputs, inputs.directory, m))
             for m in (False, True)]
    if with_meteor_maps:
        plan += [(f"meteor-maps meteor.{p}",
                  lambda p=p: run_meteor_maps(p, inputs, inputs.directory)) for p in programs]
    runs = []
    for description, launch in plan:
        print(f"[{inputs.name}] {description} ...", end=" ", flush=True)
        run = launch()
        status = "ok" if run.ok else f"FAILED ({run.error or f'exit {run.returncode}'})"
        seconds = "-" if run.seconds is None else f"{run.seconds:.1f} s"
        print(f"{seconds} {status}", flush=True)
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--programs", nargs="+", choices=PROGRAMS, default=list(PROGRAMS))
    parser.add_argument("--skip-meteor-maps", action="store_true")
    parser.add_argument("--d-min", type=float, default=1.5,
                        help="resolution of the synthetic pair (A); the real data use all")
    parser.add_argument("--sigma-fraction", type=float, default=0.1)
    parser.add_argument("--coordinate-error", type=float, default=0.4)
    parser.add_argument("--b-error-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    if not (args.data_dir / REAL_MTZ).exists():
        print(f"8a6g data not found in {args.data_dir}: nothing to benchmark (skipped).")
        return 0
    meteor_version = meteor_maps_version(not args.skip_meteor_maps)
    with_meteor_maps = meteor_version is not None
    summary: dict[str, Any] = {**summary_header(args, meteor_version), "inputs": {}}
    print(f"meteor_cctbx {OUR_VERSION}, meteor-maps {meteor_version or 'not run'}, "
          f"{summary['cpus']} CPUs; outputs in {args.out_dir}", flush=True)

    reports = []
    for name in args.inputs:
        directory = args.out_dir / name
        if name == "synthetic":
            inputs = build_synthetic(directory, args.data_dir, args.d_min, args.sigma_fraction,
                                     args.coordinate_error, args.b_error_fraction, args.seed)
        else:
            inputs = build_real(directory, args.data_dir)
        shells = ", ".join(f"{r:.3f}" for _, _, r in inputs.info["riso_shells"])
        print(f"\n[{name}] d_min {inputs.info['d_min']:.2f} A, "
              f"{inputs.info['reflections']} reflections, Riso {inputs.info['riso_overall']:.3f}"
              f" (shells low->high: {shells})", flush=True)
        runs = run_input_set(inputs, args.programs, with_meteor_maps)
        rows = evaluate(runs, inputs)
        table = format_table(inputs, rows)
        targets = target_lines(inputs, rows)
        title = (f"== {name}: " + ("CC with the true difference map" if inputs.truth is not None
                                   else "CC with meteor-maps' reference columns")
                 + f"; signal = share of sum of squares within {SIGNAL_RADIUS:g} A of OHD A 68")
        reports.append("\n".join([title, table, *targets]))
        print("\n" + reports[-1] + "\n", flush=True)
        summary["inputs"][name] = {
            "info": inputs.info,
            "files": {"derivative": str(inputs.derivative_mtz), "native": str(inputs.native_mtz),
                      "model": str(inputs.model_pdb)},
            "runs": [{"key": r.key, "seconds": r.seconds, "returncode": r.returncode,
                      "error": r.error, "command": r.command, "log": str(r.log_path),
                      "output_mtz": str(r.output_mtz)} for r in runs],
            "rows": [row.__dict__ for row in rows],
            "targets": targets}

    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = args.out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    print("\n\n".join(["== summary =="] + reports))
    print(f"\nsummary written to {summary_path}")
    failed = [r["key"] for s in summary["inputs"].values() for r in s["runs"]
              if r["returncode"] != 0 or r["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
