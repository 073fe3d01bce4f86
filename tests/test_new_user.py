"""What a new user trips over (issue 12): programs run one after another in one folder, phase
columns, options that did nothing, --show-defaults as a documented .eff, ChimeraX scripts in
a busy session, CCP4 conventions in the MTZ, the run record, the log's order."""
from __future__ import annotations

import json
import os
import re
import shlex

import iotbx.mtz
import iotbx.phil
import numpy as np
import pytest

from meteor_cctbx.command_line import MeteorParser
from meteor_cctbx.phil import UNUSED_TEMPLATE_OUTPUT, default_params
from meteor_cctbx.programs import diffmap, local_scale, phaseboost, sharpen
from meteor_cctbx.record import write_map_coefficients_mtz

from helpers import (FAST, assert_one_line_sorry, difference_columns, example_inputs, mtz_arrays,
                     run_program)

PROGRAMS = {"diffmap": diffmap.Program, "phaseboost": phaseboost.Program,
            "sharpen": sharpen.Program, "local_scale": local_scale.Program}


# 2. default outputs ---------------------------------------------------------------------------

def test_every_program_has_its_own_default_prefix():
    prefixes = {name: default_params(name).output.prefix for name in PROGRAMS}
    assert prefixes == {name: f"meteor_{name}" for name in PROGRAMS}


@pytest.fixture(scope="module")
def diffmap_then_local_scale(example, tmp_path_factory):
    """The issue's sequence in one folder, default outputs: diffmap with output.map=True,
    then local_scale on its map.  Returns (folder, statuses, diffmap's record before)."""
    from meteor_cctbx.command_line import run_as_command

    folder = tmp_path_factory.mktemp("one_folder")
    here = os.getcwd()
    os.chdir(folder)
    try:
        first = run_as_command(diffmap.Program, example_inputs(example) + FAST
                               + ["output.map=True"])
        record = (folder / "meteor_diffmap.json").read_bytes()
        second = run_as_command(local_scale.Program, ["meteor_diffmap.ccp4"])
    finally:
        os.chdir(here)
    return folder, (first, second), record


def test_local_scale_of_a_diffmap_map_in_the_same_folder(diffmap_then_local_scale):
    """No collision, and diffmap's record is untouched."""
    folder, statuses, record = diffmap_then_local_scale
    assert statuses == (0, 0)
    assert (folder / "meteor_local_scale_scale.mrc").exists()
    assert (folder / "meteor_diffmap.json").read_bytes() == record


# 6. ChimeraX script in a session with models already open -----------------------------------

def test_chimerax_script_names_its_models(diffmap_then_local_scale):
    """Each map is opened under a model name of its own and every command addresses models
    by those names, never by a model number that another open model may hold."""
    folder, _, _ = diffmap_then_local_scale
    commands = [shlex.split(line) for line in
                (folder / "meteor_local_scale.cxc").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    opened = {}
    for words in commands:
        if words[0] == "open":
            assert words[2] == "name", words
            opened[words[3]] = (folder / words[1]).resolve()
    assert opened == {"meteor_local_scale_input": (folder / "meteor_diffmap.ccp4").resolve(),
                      "meteor_local_scale_scale": (folder / "meteor_local_scale_scale.mrc"
                                                   ).resolve()}
    text = "\n".join(" ".join(w) for w in commands if w[0] != "open")
    numbered = [w for words in commands if words[0] not in ("open", "key")  # key: colours
                for w in words if re.match(r"#\d", w)]
    assert not numbered, "a command addresses a model by number"
    used = set(re.findall(r'##name=(\S+)', text))
    assert used == set(opened)
    assert "color sample ##name=meteor_local_scale_input map ##name=meteor_local_scale_scale" \
        in text


# 3. a phase column alone --------------------------------------------------------------------

def test_phase_column_alone_does_not_bring_its_amplitudes(example, example_f_model, in_tmp,
                                                          capsys):
    """phases.labels=PHIC uses the phases only and scales the derivative to the native;
    phases.labels=FC,PHIC scales both to FC (here 3 x F_model, so the scales differ); without
    figures of merit, which FC,PHIC would bring and PHIC cannot, so that only scales differ."""
    write_map_coefficients_mtz(in_tmp / "refine.mtz", [(example_f_model * 3, "FC", "PHIC")])
    records = {}
    for labels in ("PHIC", "FC,PHIC"):
        prefix = labels.replace(",", "_")
        status, out, err = run_program(
            diffmap.Program, example_inputs(example)[:2] + FAST + [
                "phases.file_name=refine.mtz", f"phases.labels={labels}",
                "figure_of_merit.mode=none", f"output.prefix={prefix}"], capsys)
        assert status == 0, err
        records[labels] = json.loads((in_tmp / f"{prefix}.json").read_text())
        if labels == "PHIC":
            assert "phases only: the derivative is scaled to the native" in out
    phase_only = records["PHIC"]["result"]["scaling"]
    with_amplitudes = records["FC,PHIC"]["result"]["scaling"]
    assert phase_only["native"]["mode"] == "none" and phase_only["native"]["k"] == 1
    assert with_amplitudes["native"]["mode"] == "anisotropic"
    assert with_amplitudes["native"]["k"] == pytest.approx(3, rel=0.05)
    a = mtz_arrays(in_tmp / "PHIC.mtz")["DELFWT,PHDELWT"].data().as_numpy_array()
    b = mtz_arrays(in_tmp / "FC_PHIC.mtz")["DELFWT,PHDELWT"].data().as_numpy_array()
    assert not np.allclose(a, b)
    # phases alone: the difference stays on the native's scale, not on FC's
    assert np.isclose(np.abs(a).mean() / np.abs(b).mean(),
                      1 / with_amplitudes["native"]["k"], rtol=0.1)


# 4. options that did nothing ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["diffmap", "sharpen", "local_scale"])
def test_unused_template_output_options_are_gone(name, capsys):
    status, out, _ = run_program(PROGRAMS[name], ["--show-defaults"], capsys)
    assert status == 0
    output_scope = re.search(r"^output \{(.*?)^\}", out, re.M | re.S).group(1)
    assert "prefix =" in output_scope and "overwrite =" in output_scope
    for option in UNUSED_TEMPLATE_OUTPUT:
        assert f"{option} =" not in output_scope, option
    status, _, err = run_program(PROGRAMS[name], ["output.file_name=x.mtz"], capsys)
    assert_one_line_sorry(status, err, "Unknown parameter", "output.file_name")


def test_unused_template_output_options_are_refused_through_iotbx(example, in_tmp, capsys):
    """Through iotbx's own parser (pipelines), where libtbx adds them, setting one is an
    error rather than silently ignored."""
    from iotbx.cli_parser import run_program as iotbx_run_program
    from libtbx.utils import Sorry

    with pytest.raises(Sorry, match="output.serial=3 is not used by meteor.diffmap"):
        iotbx_run_program(program_class=diffmap.Program,
                          args=example_inputs(example) + FAST + ["output.serial=3"])
    assert not list(in_tmp.iterdir())


# 5. --show-defaults is a documented .eff ----------------------------------------------------

@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_show_defaults_is_an_editable_documented_eff(name, capsys):
    status, out, _ = run_program(PROGRAMS[name], ["--show-defaults"], capsys)
    assert status == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^[a-z_]+ (=|\{)", line))
    eff = "\n".join(lines[start:])
    parameters = [i for i, line in enumerate(lines) if re.match(r"^\s*[a-z_0-9]+ = ", line)]
    undocumented = [lines[i] for i in parameters if ".help" not in lines[i + 1]]
    assert not undocumented
    helps = re.findall(r'\.help = ((?:"[^"]*"\s*)+)', eff)
    text = " ".join(" ".join(re.findall(r'"([^"]*)"', h)) for h in helps)
    assert "  " not in text, re.findall(r".{30}  .{10}", text)[:3]
    parser = MeteorParser(PROGRAMS[name])
    user = iotbx.phil.parse(eff)
    _, unused = parser.master_phil.fetch(source=user, track_unused_definitions=True)
    assert unused == []
    assert parser.master_phil.fetch_diff(source=user).as_str().strip() == ""


# 7. CCP4 conventions in the MTZ; what the JSON records ----------------------------------------

@pytest.fixture(scope="module")
def named_run(example, tmp_path_factory):
    """diffmap on inputs whose MTZ headers name project, crystal and dataset; no scaling, no
    figures of merit and fixed k, so that SIGDF can be checked against the input sigmas."""
    from meteor_cctbx.command_line import run_as_command

    folder = tmp_path_factory.mktemp("named")
    for role, dataset in (("derivative", "ligand"), ("native", "apo")):
        array = getattr(example.pair, role)
        array.as_mtz_dataset(column_root_label="F", project_name="soak",
                             crystal_name="lysozyme", dataset_name=dataset,
                             wavelength=0.9793).mtz_object().write(str(folder / f"{role}.mtz"))
    (folder / "model.pdb").write_bytes((example.dir / "model.pdb").read_bytes())
    args = ["derivative.mtz", "native.mtz", "model.pdb", "scaling.mode=none",
            "figure_of_merit.mode=none", "kweight.mode=fixed", "kweight.k_parameter=0.5",
            "tv.mode=fixed"]
    here = os.getcwd()
    os.chdir(folder)
    try:
        status = run_as_command(diffmap.Program, args)
    finally:
        os.chdir(here)
    assert status == 0
    return folder, args


def test_mtz_has_title_names_from_inputs_and_sigdf(named_run, example):
    folder, _ = named_run
    mtz = iotbx.mtz.object(str(folder / "meteor_diffmap.mtz"))
    assert mtz.title().startswith("meteor.diffmap difference map ligand_minus_apo")
    (crystal,) = [c for c in mtz.crystals() if c.name() != "HKL_base"]
    (dataset,) = crystal.datasets()
    assert (crystal.project_name(), crystal.name(), dataset.name()) == \
        ("soak", "lysozyme", "ligand_minus_apo")
    assert dataset.wavelength() == pytest.approx(0.9793, abs=1e-4)
    types = {c.label(): c.type() for c in dataset.columns()}
    assert (types["DF"], types["PHIDF"], types["SIGDF"]) == ("F", "P", "Q")
    # SIGDF = w sigma_D with the map's k-weights w, computed here from the inputs alone
    raw, weighted, sigdf, sigma_d = difference_columns(folder / "meteor_diffmap.mtz",
                                                       example.pair)
    delta_sq = np.abs(raw) ** 2
    w = 1 / (1 + sigma_d ** 2 / np.mean(sigma_d ** 2) + 0.5 * delta_sq / delta_sq.mean())
    w /= w.mean()
    assert np.allclose(sigdf, w * sigma_d, rtol=1e-4)
    assert np.allclose(weighted, w * raw, rtol=1e-4, atol=1e-4)


def test_json_records_command_line_date_input_files_and_versions(named_run):
    import datetime
    import hashlib
    from importlib import metadata

    folder, args = named_run
    record = json.loads((folder / "meteor_diffmap.json").read_text())
    run = record["run"]
    assert run["command_line"] == "meteor.diffmap " + " ".join(args)
    age = datetime.datetime.now(datetime.timezone.utc) - \
        datetime.datetime.fromisoformat(run["date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=30)
    assert run["working_directory"] == str(folder)
    assert [f["path"] for f in run["input_files"]] == args[:3]
    for entry in run["input_files"]:
        data = (folder / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    for package in ("numba", "matplotlib", "numpy", "scipy", "scikit-image", "cctbx-base"):
        assert record["versions"][package] == metadata.version(package)


@pytest.mark.parametrize("name", ["sharpen", "local_scale"])
def test_every_program_records_its_run(name, diffmap_then_local_scale, tmp_path, capsys,
                                       monkeypatch):
    folder, _, _ = diffmap_then_local_scale
    monkeypatch.chdir(tmp_path)
    map_file = str(folder / "meteor_diffmap.ccp4")
    args = [map_file, "resolution=2", "sharpening.b_sharpen=20"] if name == "sharpen" \
        else [map_file]
    status, _, err = run_program(PROGRAMS[name], args, capsys)
    assert status == 0, err
    record = json.loads((tmp_path / f"meteor_{name}.json").read_text())
    assert record["run"]["command_line"] == f"meteor.{name} " + " ".join(args)
    assert [f["path"] for f in record["run"]["input_files"]] == [map_file]
    assert "numba" in record["versions"] and "matplotlib" in record["versions"]
    if name == "sharpen":
        mtz = iotbx.mtz.object(str(tmp_path / "meteor_sharpen.mtz"))
        assert mtz.title().startswith("meteor.sharpen b_factor: effective B")
        assert [d.name() for c in mtz.crystals() for d in c.datasets()][-1] == "sharpened"


# 8. the log's order; one solvent fraction -----------------------------------------------------

def test_isomorphism_report_comes_right_after_scaling(example, in_tmp, capsys):
    status, out, err = run_program(diffmap.Program, example_inputs(example) + FAST, capsys)
    assert status == 0, err
    lines = out.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert first("Scaling (") < first("Isomorphism (after scaling):") \
        < first("k-weighting with k =") < first("TV denoising with weight")


@pytest.fixture(scope="module")
def model_map(example, example_f_model, tmp_path_factory):
    """A CCP4 map of the example's F_model over the unit cell (grid d_min/3)."""
    from meteor_cctbx.grid import CellGrid
    from meteor_cctbx.record import write_cell_map_ccp4

    path = tmp_path_factory.mktemp("model_map") / "model_map.ccp4"
    grid = CellGrid.for_set(example_f_model, sampling=3)
    write_cell_map_ccp4(path, grid.to_map(example_f_model.data().as_numpy_array()),
                        example_f_model.unit_cell(), example_f_model.space_group(), "F_model")
    return path


@pytest.mark.parametrize("resolution", [2.5, 4.0])
def test_solvent_fraction_is_phenix_low_resolution_mask(model_map, resolution):
    """The shared definition reproduces cctbx's get_solvent_fraction_from_low_res_mask."""
    import iotbx.ccp4_map
    from cctbx.maptbx import segment_and_split_map
    from libtbx.utils import null_out

    from meteor_cctbx.solvent_fraction import molecular_envelope

    reader = iotbx.ccp4_map.map_reader(str(model_map))
    data, symmetry = reader.map_data().as_double(), reader.crystal_symmetry()
    mask, fraction = segment_and_split_map.get_solvent_fraction_from_low_res_mask(
        crystal_symmetry=symmetry, map_data=data, fraction_of_max_mask_threshold=0.05,
        mask_resolution=resolution, return_mask_and_solvent_fraction=True, out=null_out())
    envelope = molecular_envelope(data, symmetry, resolution)
    assert 0.3 < envelope.solvent_fraction < 0.8
    assert envelope.solvent_fraction == pytest.approx(fraction, abs=1e-4)
    assert np.mean(envelope.mask == (mask.as_numpy_array() > 0.5)) > 0.9999


def test_sharpen_and_local_scale_report_one_solvent_fraction(model_map, tmp_path, capsys,
                                                             monkeypatch):
    from meteor_cctbx.solvent_fraction import DEFINITION

    monkeypatch.chdir(tmp_path)
    status, out, err = run_program(local_scale.Program, [model_map], capsys)
    assert status == 0, err
    assert DEFINITION in out
    reported = json.loads((tmp_path / "meteor_local_scale.json").read_text())
    fraction = reported["solvent_fraction"]
    assert fraction["definition"] == DEFINITION
    status, out, err = run_program(sharpen.Program, [model_map,
                                                     f"resolution={fraction['resolution_A']}"],
                                   capsys)
    assert status == 0, err
    assert DEFINITION in out
    sharpened = json.loads((tmp_path / "meteor_sharpen.json").read_text())
    assert sharpened["b_factor"]["solvent_fraction"] == pytest.approx(fraction["value"],
                                                                      abs=1e-9)
    assert "solvent_fraction" not in reported["levels"]  # the Gaussian's share is named apart
