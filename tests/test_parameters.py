"""Every PHIL parameter of every program (meteor.diffmap, meteor.phaseboost,
meteor.local_scale, meteor.sharpen, meteor.extrapolate, meteor.batch) is settable on the
command line and changes what a run gives: the map, the run record (without its copy of the
parameters and the run context), the set of files written, the exit status, the printed log
(output.verbose) or, for meteor.batch, the local Dask cluster it asks for.

Each case changes one parameter from a base run on a small example (d_min 3 A); a parameter
added to a .phil file without a case here fails test_every_parameter_has_a_case.  The few
parameters that by design change nothing (threads) are checked to change nothing.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import shutil
from pathlib import Path

import iotbx.mtz
import iotbx.pdb
import numpy as np
import pytest
from cctbx.array_family import flex

from meteor_cctbx.command_line import run_as_command
from meteor_cctbx.example import write_example
from meteor_cctbx.phil import choice, master_phil
from meteor_cctbx.programs.batch import Program as Batch
from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.programs.extrapolate import Program as Extrapolate
from meteor_cctbx.programs.local_scale import Program as LocalScale
from meteor_cctbx.programs.phaseboost import Program as Phaseboost
from meteor_cctbx.programs.sharpen import Program as Sharpen

from helpers import (FAST, assert_one_line_sorry, chain_sites, map_manager_of, map_on_grid,
                     read_map, run_program, without_timings, write_mtz)

PROGRAMS = {"diffmap": Diffmap, "phaseboost": Phaseboost, "local_scale": LocalScale,
            "sharpen": Sharpen, "extrapolate": Extrapolate, "batch": Batch}

#: program -> the programs whose cases cover its shared parameters (the same code runs them)
SHARED_CASES = {"phaseboost": ("diffmap",), "extrapolate": ("diffmap", "phaseboost")}


@functools.cache
def leaf_definitions(program: str) -> dict:
    """Full name -> definition of every parameter of a program's master PHIL."""
    definitions = {}

    def walk(scope, prefix):
        for obj in scope.objects:
            if obj.is_scope:
                walk(obj, prefix + obj.name + ".")
            else:
                definitions[prefix + obj.name] = obj
    walk(master_phil(program), "")
    return definitions


def leaf_parameters(program: str) -> list[str]:
    """Full names of every parameter of a program's master PHIL."""
    return list(leaf_definitions(program))


def setting_arguments(program: str, name: str, value: str) -> list[str]:
    """Command-line arguments setting ``name`` to ``value``: one per word of the value for a
    .multiple parameter (two half maps, several derivatives), else one."""
    definition = leaf_definitions(program).get(name)
    if definition is not None and definition.multiple:
        return [f"{name}={word}" for word in value.split()]
    return [f"{name}={value}"]


def perturbed(array, seed: int, relative: float = 0.05):
    """``array`` with amplitudes multiplied by 1 + relative * N(0, 1)."""
    rng = np.random.default_rng(seed)
    values = array.data().as_numpy_array()
    return array.customized_copy(data=flex.double(np.abs(values * (1 + relative * rng.normal(
        size=values.size)))))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """der.mtz / nat.mtz (F and FALT, a perturbed copy), der2.mtz and nat2.mtz (other noise),
    der_cell.mtz (cell 2 % longer in a), model.pdb and model2.pdb (sites moved 0.2 A rms),
    phases.mtz (FC,PHIFC and FC2,PHIFC2), phases2.mtz, for local_scale coefficients.mtz
    (FWT,PHIFWT and FWT2,PHIFWT2), and for meteor.batch series/der.mtz (der2.mtz under
    der.mtz's name)."""
    from meteor_cctbx.model_phases import load_model, model_structure_factors

    directory = tmp_path_factory.mktemp("parameters")
    pair = write_example(directory / "example", d_min=3.0, ligand_occupancy=0.6, seed=0)
    der, nat = pair.derivative, pair.native
    write_mtz(directory / "der.mtz", {"F": der, "FALT": perturbed(der, 1)})
    write_mtz(directory / "nat.mtz", {"F": nat, "FALT": perturbed(nat, 2)})
    write_mtz(directory / "der2.mtz", {"F": perturbed(der, 3), "FALT": der})
    write_mtz(directory / "nat2.mtz", {"F": perturbed(nat, 4), "FALT": nat})
    (directory / "series").mkdir()
    shutil.copy(directory / "der2.mtz", directory / "series" / "der.mtz")
    cell = list(der.unit_cell().parameters())
    cell[0] *= 1.02
    from cctbx import crystal
    longer = crystal.symmetry(tuple(cell), space_group_info=der.space_group_info())
    write_mtz(directory / "der_cell.mtz", {"F": der.customized_copy(crystal_symmetry=longer)})
    shutil.copy(directory / "example" / "model.pdb", directory / "model.pdb")
    pdb = iotbx.pdb.input(str(directory / "model.pdb"))
    hierarchy = pdb.construct_hierarchy()
    atoms = hierarchy.atoms()
    rng = np.random.default_rng(5)
    atoms.set_xyz(atoms.extract_xyz() + flex.vec3_double(rng.normal(scale=0.12, size=(
        atoms.size(), 3))))
    (directory / "model2.pdb").write_text(hierarchy.as_pdb_string(
        crystal_symmetry=pdb.crystal_symmetry()))
    symmetry = nat.crystal_symmetry()
    f_model = model_structure_factors(load_model(directory / "model.pdb", symmetry), nat).f_model
    f_model2 = model_structure_factors(load_model(directory / "model2.pdb", symmetry),
                                       nat).f_model
    write_mtz(directory / "phases.mtz", {"FC": f_model, "FC2": f_model2})
    write_mtz(directory / "phases2.mtz", {"FC": f_model2})
    native_map = f_model.customized_copy(data=f_model.data())  # map of the phasing model
    noisy = native_map.customized_copy(data=native_map.data() * flex.double(
        1 + 0.3 * rng.normal(size=native_map.size())))
    write_mtz(directory / "coefficients.mtz", {"FWT": native_map, "FWT2": noisy})
    return directory


_BASE_RUNS: dict[tuple, dict] = {}


def base_run(program: str, args: list[str], directory: Path) -> dict:
    """``run`` of a base argument list, once per module (many cases share a base)."""
    key = (program, tuple(args))
    if key not in _BASE_RUNS:
        _BASE_RUNS[key] = run(program, args, directory)
    return _BASE_RUNS[key]


#: What the meteor.batch runs asked of distributed.LocalCluster (RequestedCluster), cleared
#: before each run.
LOCAL_CLUSTER_REQUESTS: list[dict] = []


def run(program: str, args: list[str], directory: Path) -> dict:
    """Run a program in ``directory`` (made if absent); return what it gave: status, the
    paths of the files written (in subfolders too; logs apart), the map values (or
    coefficients) of every map/MTZ output ("map <file>"), every JSON record without its
    parameters, run context, outputs list and timings ("record <file>"), the number of lines
    printed and the local Dask clusters asked for."""
    directory.mkdir(exist_ok=True)
    LOCAL_CLUSTER_REQUESTS.clear()
    with contextlib.chdir(directory), contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        status = run_as_command(PROGRAMS[program], args)
    written = sorted(p for p in directory.rglob("*") if p.is_file()
                     and not p.name.startswith(".") and p.suffix != ".log")
    outcome = {"status": status, "error": err.getvalue().strip()[:300],
               "files": [p.relative_to(directory).as_posix() for p in written],
               "log lines": out.getvalue().count("\n"),
               "local cluster": list(LOCAL_CLUSTER_REQUESTS)}
    for path in written:
        name = path.relative_to(directory).as_posix()
        if path.suffix == ".mtz":
            for array in iotbx.mtz.object(str(path)).as_miller_arrays():
                outcome[f"map {name}:{array.info().label_string()}"] = \
                    array.data().as_numpy_array()
        elif path.suffix in (".mrc", ".ccp4"):
            outcome[f"map {name}"] = read_map(path)[1]
        elif path.suffix == ".json":
            record = json.loads(path.read_text())
            for key in ("parameters", "run", "outputs", "versions"):
                record.pop(key, None)
            outcome[f"record {name}"] = without_timings(record)
    return outcome


def differences(a: dict, b: dict) -> list[str]:
    """Keys whose values differ between two outcomes."""
    changed = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            changed.append(key)
        elif isinstance(a[key], np.ndarray):
            if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key]):
                changed.append(key)
        elif a[key] != b[key]:
            changed.append(key)
    return changed


def kinds_changed(changed: list[str]) -> dict[str, bool]:
    """Which kinds of result the changed outcome keys belong to."""
    return {"map": any(k.startswith("map ") for k in changed),
            "record": any(k.startswith("record ") for k in changed),
            "files": "files" in changed, "log": "log lines" in changed,
            "cluster": "local cluster" in changed}


D = ["derivative.file_name=der.mtz", "native.file_name=nat.mtz", "model.file_name=model.pdb",
     "derivative.labels=F,SIGF", "native.labels=F,SIGF", "output.prefix=run"] + FAST
OPTIMIZE_TV = [a for a in D if a != "tv.mode=fixed"] + ["tv.max_iterations=10"]
OPTIMIZE_K = [a for a in D if a != "kweight.mode=fixed"]
OPTIMIZE_BOTH = [a for a in OPTIMIZE_TV if a != "kweight.mode=fixed"]
PHASES = [a for a in D if a != "model.file_name=model.pdb"] + ["phases.file_name=phases.mtz",
                                                               "phases.labels=FC,PHIFC"]
IMAGE_TV = D + ["tv.periodic=False"]
CELL = [a for a in D if a != "derivative.file_name=der.mtz"] + [
    "derivative.file_name=der_cell.mtz"]

# meteor.sharpen on the small maps of sharpen_maps: one map with B searched (SHARPEN), a
# given B (SHARPEN_B, local sharpening on it), half maps (FSC weighting, or cctbx's), a model
# (cctbx's map-model sharpening), adjusted_sa's score on a short scan
SHARPEN = ["map_model.full_map=sharpen_map.ccp4", "resolution=3", "output.prefix=run"]
SHARPEN_B = SHARPEN + ["sharpening.b_sharpen=40"]
SHARPEN_LOCAL = SHARPEN_B + ["sharpening.local=True"]
HALF_MAPS = ["map_model.half_map=half_1.ccp4", "map_model.half_map=half_2.ccp4",
             "resolution=3", "output.prefix=run"]
MODEL_SHARPEN = SHARPEN + ["map_model.model=sharpen_model.pdb"]
ADJUSTED_SA = SHARPEN + ["sharpening.score=adjusted_sa", "sharpening.search.n_steps=5",
                         "sharpening.search.tolerance=50"]
# meteor.extrapolate at a given occupancy, and with the occupancy estimated (few resamples)
# on extrapolate_case, whose ligand the appear estimator finds at 3 A
EXTRAPOLATE = D + ["extrapolate.occupancy=0.5"]
ESTIMATE = ["derivative.file_name=family/derivative.mtz", "native.file_name=family/native.mtz",
            "model.file_name=family/model.pdb", "output.prefix=run",
            "extrapolate.n_bootstrap=10"] + FAST
# meteor.batch: D's derivative against D's native, one dataset on the module's Dask worker
BATCH = [a for a in D if not a.startswith("output.prefix")] + [
    "output.directory=batch", "dask.n_workers=1", "dask.threads_per_worker=1"]
#: dask.scheduler's changed value, replaced by the address of the module's Dask scheduler
SCHEDULER = "tcp://the-module-scheduler"

#: program -> parameter -> (base arguments, changed value, what must change: "map" (an MTZ
#: column or map values), "record", "files", "status", "log" (the number of lines printed)
#: or "cluster" (the local Dask cluster asked for); "any" for scans whose record or map may
#: move, "nothing" for parameters that by design must not change the result).  A value of a
#: .multiple parameter gives one argument per word.
CASES = {
    "diffmap": {
        "derivative.file_name": (D, "der2.mtz", "map"),
        "derivative.labels": (D, "FALT,SIGFALT", "map"),
        "native.file_name": (D, "nat2.mtz", "map"),
        "native.labels": (D, "FALT,SIGFALT", "map"),
        "phases.file_name": (PHASES, "phases2.mtz", "map"),
        "phases.labels": (PHASES, "FC2,PHIFC2", "map"),
        "model.file_name": (D, "model2.pdb", "map"),
        "model.scattering_table": (D, "electron", "map"),
        "model.bulk_solvent": (D, "False", "map"),
        "d_min": (D, "3.5", "map"),
        "d_max": (D, "10", "map"),
        "isomorphism.max_cell_difference": (CELL, "0.5", "status"),
        "isomorphism.n_bins": (D, "4", "record"),
        "scaling.mode": (D, "isotropic", "map"),
        "figure_of_merit.mode": (D, "none", "map"),
        "kweight.mode": (D, "none", "map"),
        "kweight.criterion": (OPTIMIZE_K, "negentropy", "any"),
        "kweight.k_parameter": (D, "0.5", "map"),
        "kweight.k_max": (OPTIMIZE_K, "0.2", "any"),
        "tv.mode": (D, "none", "map"),
        "tv.criterion": (OPTIMIZE_TV, "negentropy", "any"),
        "tv.weight": (D, "0.05", "map"),
        "tv.relative_search_range": (OPTIMIZE_TV, "0.5 2", "any"),
        "tv.search_range": (OPTIMIZE_TV, "0.001 0.05", "any"),
        "tv.max_iterations": (D, "5", "map"),
        "tv.tolerance": (IMAGE_TV, "0.01", "map"),
        "tv.periodic": (D, "False", "map"),
        "validation.free_fraction": (OPTIMIZE_BOTH, "0.25", "any"),
        "validation.seed": (OPTIMIZE_BOTH, "7", "any"),
        "validation.n_bootstrap": (OPTIMIZE_BOTH, "20", "any"),
        "validation.n_folds": (OPTIMIZE_BOTH, "1", "any"),
        "validation.within_noise": (OPTIMIZE_BOTH, "best", "any"),
        "map.sampling": (D, "4", "map"),
        "output.prefix": (D, "other", "files"),
        "output.overwrite": (D, "True", "status"),  # base run meets an existing run.mtz
        "output.map": (D, "True", "files"),
        "output.map_sampling": (D + ["output.map=True"], "4", "map"),
    },
    "phaseboost": {
        "model.bulk_solvent": (D + ["phaseboost.max_iterations=3"], "False", "map"),
        "kweight.k_parameter": (D + ["phaseboost.max_iterations=3"], "0.5", "map"),
        "tv.weight": (D + ["phaseboost.max_iterations=3"], "0.05", "map"),
        "phaseboost.tv_criterion": (D + ["phaseboost.max_iterations=3"], "negentropy", "map"),
        "phaseboost.loop_weight_scale": (D + ["phaseboost.max_iterations=3"], "3", "map"),
        "phaseboost.final_parameters": (D + ["phaseboost.max_iterations=3"], "retrieved",
                                        "map"),
        "phaseboost.tv_weights_to_scan": (D + ["phaseboost.max_iterations=3",
                                               "phaseboost.tv_criterion=negentropy"],
                                          "0.02 0.05", "map"),
        "phaseboost.convergence_tolerance": (D + ["phaseboost.max_iterations=3"], "90", "map"),
        "phaseboost.max_iterations": (D + ["phaseboost.max_iterations=3"], "1", "map"),
        "phaseboost.loop_sampling": (D + ["phaseboost.max_iterations=3"], "2", "map"),
        "phaseboost.final_weight_scale": (OPTIMIZE_TV + ["phaseboost.max_iterations=3"], "0.5",
                                           "map"),
        "phaseboost.reproducibility_check": (D + ["phaseboost.max_iterations=3"], "False",
                                              "record"),
        "phaseboost.reproducibility_threshold": (D + ["phaseboost.max_iterations=3"], "1",
                                                  "map"),
        "output.prefix": (D + ["phaseboost.max_iterations=1"], "other", "files"),
    },
    "local_scale": {
        "input.labels": (["coefficients.mtz", "input.labels=FWT,PHIFWT", "output.prefix=run"],
                         "FWT2,PHIFWT2", "map"),
        "input.sampling": (["coefficients.mtz", "input.labels=FWT,PHIFWT", "output.prefix=run"],
                           "4", "map"),
        "scale.source": (["map.mrc", "output.prefix=run"], "lowpass", "map"),
        "scale.lowpass": (["map.mrc", "output.prefix=run"], "12", "map"),
        "scale.kernel_radius": (["map.mrc", "output.prefix=run"], "3", "map"),
        "scale.tau": (["map.mrc", "output.prefix=run"], "0.9", "map"),
        "solvent.mask_marks": (["map.mrc", "mask.mrc", "output.prefix=run"], "solvent", "map"),
        "solvent.hedge_confidence": (["map.mrc", "output.prefix=run", "modify.mode=amplify"],
                                     "4", "map"),
        "solvent.exclude": (["map.mrc", "output.prefix=run"], "True", "files"),
        "modify.mode": (["map.mrc", "output.prefix=run"], "amplify", "files"),
        "modify.power": (["map.mrc", "output.prefix=run", "modify.mode=amplify"], "3", "map"),
        "modify.pivot": (["map.mrc", "output.prefix=run", "modify.mode=sigmoid"], "0.3", "map"),
        "modify.scale_limit": (["map.mrc", "output.prefix=run", "modify.mode=amplify"], "0.5",
                               "map"),
        "output.prefix": (["map.mrc", "output.prefix=run"], "other", "files"),
        "nproc": (["map.mrc", "output.prefix=run", "nproc=2"], "1", "nothing"),
    },
    "sharpen": {
        "map_model.full_map": (SHARPEN_B, "sharpen_map2.ccp4", "map"),
        "map_model.half_map": (HALF_MAPS, "half_1.ccp4 half_3.ccp4", "map"),
        "map_model.model": (MODEL_SHARPEN, "sharpen_model2.pdb", "map"),
        "labels": (["sharpen.mtz", "labels=FWT,PHIFWT", "output.prefix=run"], "FWT2,PHIFWT2",
                   "map"),
        "resolution": (SHARPEN_B, "3.5", "map"),
        "solvent_content": (SHARPEN, "0.8", "any"),
        "sharpening.method": (HALF_MAPS, "b_factor", "map"),
        "sharpening.half_map_weighting": (HALF_MAPS, "cctbx", "map"),
        "sharpening.noise_weight": (SHARPEN, "none", "any"),
        "sharpening.score": (SHARPEN, "kurtosis", "record"),
        "sharpening.b_sharpen": (SHARPEN_B, "80", "map"),
        "sharpening.b_iso": (SHARPEN + ["sharpening.b_iso=10"], "0", "map"),
        "sharpening.d_cut": (SHARPEN_B, "4", "map"),
        "sharpening.k_sharpen": (SHARPEN_B, "0", "map"),
        "sharpening.b_blur_hires": (SHARPEN_B, "20", "map"),
        "sharpening.d_min_ratio": (SHARPEN_B, "0.95", "map"),
        "sharpening.anisotropic": (MODEL_SHARPEN, "False", "map"),
        "sharpening.local": (SHARPEN_B, "True", "map"),
        "sharpening.local_radius": (SHARPEN_LOCAL, "2.5", "map"),
        "sharpening.local_d_max": (SHARPEN_LOCAL, "8", "map"),
        "sharpening.search.b_min": (SHARPEN, "30", "record"),  # -100 is raised to 0 here
        "sharpening.search.b_max": (SHARPEN, "150", "record"),
        "sharpening.search.n_steps": (SHARPEN, "5", "record"),
        "sharpening.search.tolerance": (SHARPEN, "1", "record"),
        "sharpening.adjusted_sa.region_weight": (ADJUSTED_SA, "5", "record"),
        "sharpening.adjusted_sa.fraction_occupied": (ADJUSTED_SA, "0.4", "record"),
        "sharpening.adjusted_sa.sa_percent": (ADJUSTED_SA, "60", "record"),
        "sharpening.adjusted_sa.max_regions_to_test": (ADJUSTED_SA, "2", "record"),
        "nproc": (SHARPEN_B + ["nproc=2"], "1", "nothing"),
        "output.prefix": (SHARPEN_B, "other", "files"),
        "output.verbose": (MODEL_SHARPEN, "True", "log"),  # cctbx's tables
    },
    "extrapolate": {
        "extrapolate.difference": (EXTRAPOLATE, "raw", "map"),
        "extrapolate.occupancy": (EXTRAPOLATE, "0.3", "map"),
        "extrapolate.occupancy_range": (ESTIMATE, "0.1 0.9", "record"),
        "extrapolate.estimator": (ESTIMATE, "appear", "record"),  # vanish: withheld here
        "extrapolate.formula": (EXTRAPOLATE, "fcalc", "map"),
        "extrapolate.negative_amplitudes": (EXTRAPOLATE, "drop", "map"),
        "extrapolate.threshold": (EXTRAPOLATE, "2", "map"),  # voxels of the gain
        "extrapolate.peak_fraction": (ESTIMATE, "0.3", "record"),
        "extrapolate.peak_sampling": (ESTIMATE, "4", "record"),
        "extrapolate.appear_blur_b": (ESTIMATE, "0", "record"),
        "extrapolate.n_bootstrap": (ESTIMATE, "20", "record"),
        "extrapolate.confidence": (ESTIMATE, "0.8", "record"),
        "extrapolate.seed": (ESTIMATE, "7", "record"),
    },
    "batch": {
        "batch.program": (BATCH, "phaseboost", "files"),
        # a finished batch in the directory: reused, or computed again
        "batch.resume": (BATCH + ["output.overwrite=True"], "False", "record"),
        "derivative.file_name": (BATCH, "series/der.mtz", "map"),  # same stem, other data
        "native.file_name": (BATCH, "nat2.mtz", "map"),
        "dask.scheduler": (BATCH, SCHEDULER, "record"),
        "dask.n_workers": (BATCH, "2", "record"),
        "dask.threads_per_worker": (BATCH, "2", "record"),
        "dask.allowed_failures": (BATCH, "0", "cluster"),
        "output.directory": (BATCH, "other", "files"),
        "output.prefix": (BATCH, "other", "files"),
    },
}


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """A placeholder for each PNG (drawing is most of a small run's time; the plots are
    checked elsewhere and are no part of what these tests compare)."""
    from meteor_cctbx.record import write_bytes

    def placeholder(path, *args, **kwargs):
        write_bytes(path, b"plot")
    monkeypatch.setattr("meteor_cctbx.programs.difference_program.write_panels_png",
                        placeholder)
    monkeypatch.setattr("meteor_cctbx.programs.local_scale.write_plot", placeholder)
    monkeypatch.setattr("meteor_cctbx.sharpen_outputs.write_panels_png", placeholder)
    monkeypatch.setattr("meteor_cctbx.batch_summary.write_panels_png", placeholder)


@pytest.fixture(scope="module")
def local_scale_maps(data) -> Path:
    """map.mrc (the unit-cell map local_scale computes from FWT,PHWT) and mask.mrc (its voxels
    above the median: the molecule), beside the reflection files."""
    from meteor_cctbx.local_scale import map_manager_like
    from meteor_cctbx.record import write_map_manager

    made = run("local_scale", [str(data / "coefficients.mtz"), "input.labels=FWT,PHIFWT",
                               "output.prefix=make"], data / "make")
    assert made["status"] == 0, made["error"]
    manager, values = read_map(data / "make" / "make_input.mrc")
    shutil.copy(data / "make" / "make_input.mrc", data / "map.mrc")
    manager.shift_origin()
    mask = (values > np.median(values)).astype(np.float32)
    write_map_manager(data / "mask.mrc", map_manager_like(manager, mask, "molecule mask"))
    return data


@pytest.fixture(scope="module")
def sharpen_maps(data) -> Path:
    """For meteor.sharpen, beside the reflection files: the 3 A density of a chain of 300
    carbon atoms (B 40 A^2) in a 30 x 30 x 36 A P1 cell on a 24 x 24 x 30 grid with noise
    (0.3 x its rms) as sharpen_map.ccp4 and, other noise, sharpen_map2.ccp4; half_1/2/3.ccp4
    (noise 1 x its rms); sharpen.mtz (its map coefficients FWT,PHIFWT and, noisier,
    FWT2,PHIFWT2) and the chain as sharpen_model.pdb and, sites moved 0.3 A rms,
    sharpen_model2.pdb."""
    from cctbx import crystal, xray

    rng = np.random.default_rng(6)
    cell = np.array([30.0, 30.0, 36.0])
    scatterers = flex.xray_scatterer()
    for site in chain_sites(300, 9.0, rng) + cell / 2:
        scatterers.append(xray.scatterer("C", site=tuple(site / cell), b=40.0))
    structure = xray.structure(crystal_symmetry=crystal.symmetry(
        (*cell, 90, 90, 90), "P1"), scatterers=scatterers)
    f_calc = structure.structure_factors(d_min=3.0).f_calc()
    clean = map_on_grid(f_calc, (24, 24, 30))
    symmetry = f_calc.crystal_symmetry()

    def write(name, noise):
        noisy = clean + rng.normal(scale=noise * clean.std(), size=clean.shape)
        map_manager_of(noisy, symmetry, wrapping=False).write_map(str(data / name))
    for name, noise in (("sharpen_map.ccp4", 0.3), ("sharpen_map2.ccp4", 0.3),
                        ("half_1.ccp4", 1.0), ("half_2.ccp4", 1.0), ("half_3.ccp4", 1.0)):
        write(name, noise)
    noise = flex.complex_double(flex.double(rng.normal(size=f_calc.size())),
                                flex.double(rng.normal(size=f_calc.size())))
    noisier = f_calc.customized_copy(
        data=f_calc.data() + noise * (0.5 * flex.mean(flex.abs(f_calc.data()))))
    write_mtz(data / "sharpen.mtz", {"FWT": f_calc, "FWT2": noisier})
    (data / "sharpen_model.pdb").write_text(structure.as_pdb_file())
    moved = structure.deep_copy_scatterers()
    moved.set_sites_cart(moved.sites_cart() + flex.vec3_double(
        rng.normal(scale=0.3 / np.sqrt(3), size=(moved.scatterers().size(), 3))))
    (data / "sharpen_model2.pdb").write_text(moved.as_pdb_file())
    return data


class RequestedCluster:
    """distributed.LocalCluster as the meteor.batch cases meet it: it records what the batch
    asked for (worker processes and their FFT/TV threads, restarts of a task) and hands the
    batch the module's scheduler, whose one worker process is already running: a cluster per
    case would cost seconds of start-up each (test_batch starts real local clusters)."""

    address = ""  # of the module's scheduler (dask_worker), set by the test

    def __init__(self, n_workers, threads_per_worker, processes, env, **settings):
        import dask

        LOCAL_CLUSTER_REQUESTS.append({
            "n_workers": n_workers, "threads_per_worker": threads_per_worker,
            "processes": processes, "env": env,
            "allowed_failures": dask.config.get("distributed.scheduler.allowed-failures")})
        self.scheduler_address = self.address

    def close(self) -> None:
        """The module's cluster outlives each batch."""


@pytest.fixture(scope="module")
def dask_worker() -> str:
    """A Dask scheduler with one worker process (one thread) on 127.0.0.1; its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.CRITICAL,
                      env={"NUMBA_NUM_THREADS": "1"}) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def batch_on_the_module_worker(dask_worker, monkeypatch) -> None:
    """meteor.batch runs whose local clusters are RequestedCluster."""
    import distributed

    connect = distributed.Client

    def client(address=None, **settings):
        return connect(getattr(address, "scheduler_address", address), **settings)
    monkeypatch.setattr(RequestedCluster, "address", dask_worker)
    monkeypatch.setattr(distributed, "LocalCluster", RequestedCluster)
    monkeypatch.setattr(distributed, "Client", client)


@pytest.fixture(scope="module")
def extrapolate_case(data) -> Path:
    """family/: derivative.mtz, native.mtz and model.pdb of the small family's compact case
    at occupancy 0.5 and the real noise level, 3 A (meteor_cctbx.family)."""
    from meteor_cctbx.family import make_case, source_small, write_case

    write_case(make_case(source_small(d_min=3.0), "compact", 0.5, 1.0), data / "family")
    return data


#: program -> the fixture its cases need (inputs beside data's, or the Dask worker)
PROGRAM_FIXTURES = {"local_scale": "local_scale_maps", "sharpen": "sharpen_maps",
                    "extrapolate": "extrapolate_case", "batch": "batch_on_the_module_worker"}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_parameter_has_a_case(program):
    """The subset goes this way round: a parameter added to the .phil needs a case here."""
    names = set(leaf_parameters(program))
    assert set(CASES[program]) <= names, set(CASES[program]) - names
    missing = names - set(CASES[program])
    for other in SHARED_CASES.get(program, ()):  # shared parameters: the other's cases
        missing -= set(CASES[other])
    assert not missing, f"parameters without a test case: {sorted(missing)}"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_parameter_has_a_caption_expert_level_and_help(program):
    """As mmtbx programs do: GUIs and --show-defaults=<level> rely on them."""
    for name, definition in leaf_definitions(program).items():
        assert definition.short_caption and definition.help, name
        assert definition.expert_level in (0, 1, 2, 3), name


def test_every_case_value_is_what_the_parser_gives():
    """Each changed value parses (type, range, choice) and reaches the extract unchanged."""
    from iotbx.cli_parser import CCTBXParser
    from libtbx.utils import null_out

    for program, cases in CASES.items():
        for name, (_, value, _) in cases.items():
            parser = CCTBXParser(program_class=PROGRAMS[program], logger=null_out())
            parser.parse_args(setting_arguments(program, name, value))
            extracted = parser.working_phil.extract()
            for part in name.split("."):
                extracted = getattr(extracted, part)
            rendered = " ".join(map(str, extracted)) if isinstance(extracted, list) \
                else choice(extracted)  # the choice none is extracted as None
            try:
                same = np.allclose([float(x) for x in rendered.replace(",", " ").split()],
                                   [float(x) for x in value.replace(",", " ").split()])
            except ValueError:
                same = rendered.replace(",", " ").split() == value.replace(",", " ").split()
            assert same, (program, name, rendered, value)


def absolute(argument: str, directory: Path) -> str:
    """A file argument, a *.file_name=... or a map_model.*=... value made absolute in
    ``directory``."""
    if "=" not in argument:
        return str(directory / argument)
    name, value = argument.split("=", 1)
    is_file = name.endswith("file_name") or name.startswith("map_model.")
    return f"{name}={directory / value}" if is_file else argument


@pytest.mark.parametrize("program, name", [(p, n) for p in CASES for n in CASES[p]])
def test_changing_the_parameter_changes_the_run(program, name, data, tmp_path, request):
    if program in PROGRAM_FIXTURES:
        request.getfixturevalue(PROGRAM_FIXTURES[program])
    base, value, expected = CASES[program][name]
    if value == SCHEDULER:
        value = request.getfixturevalue("dask_worker")
    base_args = [absolute(a, data) for a in base]
    changed_args = [a for a in base_args if a.split("=")[0] != name] + [
        absolute(a, data) for a in setting_arguments(program, name, value)]
    if name == "output.overwrite":  # the base run meets an existing output and refuses
        for directory in ("base", "changed"):
            (tmp_path / directory).mkdir()
            (tmp_path / directory / "run.mtz").write_bytes(b"previous")
        assert (run_in(program, base_args, tmp_path / "base"),
                run_in(program, changed_args, tmp_path / "changed")) == (1, 0)
        return
    if name == "batch.resume":  # both runs meet the finished batch of the base arguments
        finished = run(program, base_args, tmp_path / "finished")
        assert finished["status"] == 0, finished["error"]
        for directory in ("base", "changed"):
            shutil.copytree(tmp_path / "finished", tmp_path / directory)
        before = run(program, base_args, tmp_path / "base")
    else:
        before = base_run(program, base_args, tmp_path / "base")
    assert before["status"] == 0, (name, before["error"])
    after = run(program, changed_args, tmp_path / "changed")
    changed = differences(before, after)
    if expected == "nothing":  # the log may say how many threads ran
        assert not [k for k in changed if k != "log lines"], (name, changed)
        return
    if expected == "status":  # refused with one Sorry, not a crash
        assert after["status"] == 1 and after["error"].startswith("Sorry: "), (name, after)
        return
    assert after["status"] == 0, (name, after["error"])
    kinds = kinds_changed(changed)
    if expected == "any":
        assert kinds["map"] or kinds["record"] or kinds["files"], (name, changed)
    else:
        assert kinds[expected], (name, changed)


def run_in(program: str, args: list[str], directory: Path) -> int:
    """Exit status of a run in an existing directory."""
    with contextlib.chdir(directory), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        return run_as_command(PROGRAMS[program], args)


@pytest.mark.parametrize("program, setting", [
    ("diffmap", "validation.seed=-1"), ("extrapolate", "extrapolate.seed=-1"),
    ("sharpen", "sharpening.b_blur_hires=-10"), ("sharpen", "sharpening.search.n_steps=2"),
    ("extrapolate", "extrapolate.confidence=1.2"), ("batch", "dask.n_workers=0")])
def test_values_outside_the_phil_range_are_one_sorry_naming_the_parameter(program, setting,
                                                                          tmp_path, capsys):
    """Ranges live in the PHIL types: the parser refuses them before any work or output."""
    import importlib

    program_class = importlib.import_module(f"meteor_cctbx.programs.{program}").Program
    with contextlib.chdir(tmp_path):
        status, _, err = run_program(program_class, [setting], capsys)
    assert_one_line_sorry(status, err, setting.split("=")[0], "allowed value")
    assert not list(tmp_path.iterdir())
