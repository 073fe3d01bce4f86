"""Every PHIL parameter of meteor.diffmap, meteor.phaseboost and meteor.local_scale is
settable on the command line and changes what a run gives: the map, the run record (without
its copy of the parameters and the run context), the set of files written, or the exit status.

Each case changes one parameter from a base run on a small example (d_min 3 A); a parameter
added to a .phil file without a case here fails test_every_parameter_has_a_case.  The few
parameters that by design change nothing (threads) are checked to change nothing.
"""
from __future__ import annotations

import contextlib
import io
import json
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
from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.programs.local_scale import Program as LocalScale
from meteor_cctbx.programs.phaseboost import Program as Phaseboost

from helpers import (FAST, assert_one_line_sorry, read_map, run_program, without_timings,
                     write_mtz)

PROGRAMS = {"diffmap": Diffmap, "phaseboost": Phaseboost, "local_scale": LocalScale}


def leaf_parameters(program: str) -> list[str]:
    """Full names of every parameter of a program's master PHIL."""
    names = []

    def walk(scope, prefix):
        for obj in scope.objects:
            if obj.is_scope:
                walk(obj, prefix + obj.name + ".")
            else:
                names.append(prefix + obj.name)
    walk(master_phil(program), "")
    return names


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
    phases.mtz (FC,PHIFC and FC2,PHIFC2), phases2.mtz, and for local_scale coefficients.mtz
    (FWT,PHIFWT and FWT2,PHIFWT2)."""
    from meteor_cctbx.model_phases import load_model, model_structure_factors

    directory = tmp_path_factory.mktemp("parameters")
    pair = write_example(directory / "example", d_min=3.0, ligand_occupancy=0.6, seed=0)
    der, nat = pair.derivative, pair.native
    write_mtz(directory / "der.mtz", {"F": der, "FALT": perturbed(der, 1)})
    write_mtz(directory / "nat.mtz", {"F": nat, "FALT": perturbed(nat, 2)})
    write_mtz(directory / "der2.mtz", {"F": perturbed(der, 3), "FALT": der})
    write_mtz(directory / "nat2.mtz", {"F": perturbed(nat, 4), "FALT": nat})
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


def run(program: str, args: list[str], directory: Path) -> dict:
    """Run a program in ``directory``; return what it gave: status, file names, the map
    values (or coefficients) of every map/MTZ output and the record without its parameters,
    run context, outputs list and timings."""
    directory.mkdir()
    with contextlib.chdir(directory), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()) as err:
        status = run_as_command(PROGRAMS[program], args)
    outcome = {"status": status, "error": err.getvalue().strip()[:300],
               "files": sorted(p.name for p in directory.iterdir()
                               if not p.name.startswith(".") and p.suffix != ".log")}
    for path in sorted(directory.iterdir()):
        if path.suffix == ".mtz":
            for array in iotbx.mtz.object(str(path)).as_miller_arrays():
                outcome[f"{path.name}:{array.info().label_string()}"] = \
                    array.data().as_numpy_array()
        elif path.suffix in (".mrc", ".ccp4"):
            outcome[path.name] = read_map(path)[1]
        elif path.suffix == ".json":
            record = json.loads(path.read_text())
            for key in ("parameters", "run", "outputs", "versions"):
                record.pop(key, None)
            outcome["record"] = without_timings(record)
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
MAP = "run_scale.mrc"

#: program -> parameter -> (base arguments, changed value, what must change: "map" (an MTZ
#: column or map values), "record", "files" or "status"; "any" for scans whose record or map
#: may move, "nothing" for parameters that by design must not change the result).
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


@pytest.mark.parametrize("program", sorted(CASES))
def test_every_parameter_has_a_case(program):
    """The subset goes this way round: a parameter added to the .phil needs a case here."""
    names = set(leaf_parameters(program))
    assert set(CASES[program]) <= names, set(CASES[program]) - names
    missing = names - set(CASES[program])
    if program == "phaseboost":  # its shared parameters are diffmap's cases (same code)
        missing -= set(CASES["diffmap"])
    assert not missing, f"parameters without a test case: {sorted(missing)}"


@pytest.mark.parametrize("program", sorted({*CASES, "sharpen", "extrapolate", "batch"}))
def test_every_parameter_has_a_caption_expert_level_and_help(program):
    """As mmtbx programs do: GUIs and --show-defaults=<level> rely on them."""
    def walk(scope, prefix):
        for obj in scope.objects:
            if obj.is_scope:
                yield from walk(obj, prefix + obj.name + ".")
            else:
                yield prefix + obj.name, obj
    for name, definition in walk(master_phil(program), ""):
        assert definition.short_caption and definition.help, name
        assert definition.expert_level in (0, 1, 2, 3), name


def test_every_case_value_is_what_the_parser_gives(data):
    """Each changed value parses (type, range, choice) and reaches the extract unchanged."""
    from iotbx.cli_parser import CCTBXParser
    from libtbx.utils import null_out

    for program, cases in CASES.items():
        for name, (_, value, _) in cases.items():
            parser = CCTBXParser(program_class=PROGRAMS[program], logger=null_out())
            parser.parse_args([f"{name}={value}"])
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
    """A file argument or a *.file_name=... value made absolute in ``directory``."""
    if "=" not in argument:
        return str(directory / argument)
    name, value = argument.split("=", 1)
    return f"{name}={directory / value}" if name.endswith("file_name") else argument


@pytest.mark.parametrize("program, name", [(p, n) for p in CASES for n in CASES[p]])
def test_changing_the_parameter_changes_the_run(program, name, data, local_scale_maps,
                                                tmp_path):
    base, value, expected = CASES[program][name]
    base_args = [absolute(a, data) for a in base]
    changed_args = [a for a in base_args if a.split("=")[0] != name] + [
        absolute(f"{name}={value}", data)]
    if name == "output.overwrite":  # the base run meets an existing output and refuses
        for directory in ("base", "changed"):
            (tmp_path / directory).mkdir()
            (tmp_path / directory / "run.mtz").write_bytes(b"previous")
        assert (run_in(program, base_args, tmp_path / "base"),
                run_in(program, changed_args, tmp_path / "changed")) == (1, 0)
        return
    before = base_run(program, base_args, tmp_path / "base")
    assert before["status"] == 0, (name, before["error"])
    after = run(program, changed_args, tmp_path / "changed")
    changed = differences(before, after)
    if expected == "nothing":
        assert not changed, (name, changed)
        return
    if expected == "status":  # refused with one Sorry, not a crash
        assert after["status"] == 1 and after["error"].startswith("Sorry: "), (name, after)
        return
    assert after["status"] == 0, (name, after["error"])
    maps = [k for k in changed if ":" in k or k.endswith((".mrc", ".ccp4"))]
    kinds = {"map": bool(maps), "record": "record" in changed, "files": "files" in changed}
    if expected == "any":
        assert any(kinds.values()), name
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
