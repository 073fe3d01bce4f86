"""meteor.diffmap inputs: file formats, label choice, intensities, column phases, bad input."""
import io
from pathlib import Path

import numpy as np
import pytest
from cctbx import crystal

from meteor_cctbx.programs.diffmap import Program
from meteor_cctbx.record import write_map_coefficients_mtz
from meteor_cctbx.map_metrics import map_correlation

from helpers import FAST, assert_one_line_sorry, mtz_arrays, run_program, write_mtz



@pytest.fixture(scope="module")
def files(example, tmp_path_factory):
    """Variants of the example's inputs, each made to exercise one input path."""
    d = tmp_path_factory.mktemp("inputs")
    pair = example.pair
    f = {"der": example.dir / "derivative.mtz", "nat": example.dir / "native.mtz",
         "model": example.dir / "model.pdb"}
    for role, array in (("der", pair.derivative), ("nat", pair.native)):
        text = io.StringIO()
        array.as_cif_simple(array_type="meas", out=text, data_name=role)
        f[f"{role}_cif"] = d / f"{role}.cif"
        f[f"{role}_cif"].write_text(text.getvalue())
        f[f"{role}_int"] = write_mtz(d / f"{role}_int.mtz", {"I": array.f_as_f_sq()})
        f[f"{role}_nosig"] = write_mtz(
            d / f"{role}_nosig.mtz", {"F": array.customized_copy(sigmas=None)})
    f["nat_p1"] = write_mtz(d / "nat_p1.mtz", {"F": pair.native.expand_to_p1()})
    bigger = crystal.symmetry(unit_cell=(37.8, 42.0, 46.2, 90, 90, 90),
                              space_group_symbol="P 21 21 21")
    f["nat_big_cell"] = write_mtz(
        d / "nat_big.mtz", {"F": pair.native.customized_copy(crystal_symmetry=bigger)})
    f["der_low"] = write_mtz(d / "der_low.mtz",
                             {"F": pair.derivative.resolution_filter(d_min=6)})
    f["nat_high"] = write_mtz(d / "nat_high.mtz",
                              {"F": pair.native.resolution_filter(d_max=5)})
    f["both"] = write_mtz(d / "both.mtz", {"F_on": pair.derivative, "F_off": pair.native})
    data = f["der"].read_bytes()
    f["truncated"] = d / "truncated.mtz"
    f["truncated"].write_bytes(data[: len(data) // 2])
    f["empty"] = d / "empty.mtz"
    f["empty"].write_bytes(b"")
    f["empty_model"] = d / "empty.pdb"
    f["empty_model"].write_text("CRYST1   36.000   40.000   44.000  90.00  90.00  90.00 "
                                "P 21 21 21\nEND\n")
    f["model_p1"] = d / "model_p1.pdb"
    f["model_p1"].write_text(f["model"].read_text().replace("P 21 21 21", "P 1       "))
    f["model_no_cryst1"] = d / "model_no_cryst1.pdb"
    f["model_no_cryst1"].write_text("\n".join(
        line for line in f["model"].read_text().splitlines()
        if not line.startswith(("CRYST1", "SCALE"))) + "\n")
    return f


def final_cc(example, directory: Path, prefix="meteor_diffmap") -> float:
    arrays = mtz_arrays(directory / f"{prefix}.mtz")
    return map_correlation(arrays["DELFWT,PHDELWT"], example.pair.true_difference)


def test_mmcif_and_mtz_inputs_give_the_same_map(example, files, in_tmp, capsys):
    status, _, err = run_program(Program, [files["der"], files["nat"], files["model"],
                                           "output.prefix=mtz"] + FAST, capsys)
    assert status == 0, err
    status, _, err = run_program(Program, [files["der_cif"], files["nat_cif"], files["model"],
                                           "output.prefix=cif"] + FAST, capsys)
    assert status == 0, err
    a = mtz_arrays(in_tmp / "mtz.mtz")["DELFWT,PHDELWT"]
    b = mtz_arrays(in_tmp / "cif.mtz")["DELFWT,PHDELWT"]
    assert a.indices().all_eq(b.indices())
    assert map_correlation(a, b) > 0.9999


def test_intensities_are_converted_with_french_wilson(example, files, in_tmp, capsys):
    status, out, err = run_program(Program, [files["der_int"], files["nat_int"], files["model"]]
                                   + FAST, capsys)
    assert status == 0, err
    assert "French-Wilson" in out
    assert final_cc(example, in_tmp) > 0.75


def test_labels_select_columns_from_one_file(example, files, in_tmp, capsys):
    status, _, err = run_program(
        Program, [files["both"], files["model"], f"native.file_name={files['both']}",
                  "derivative.labels=F_on,SIGF_on", "native.labels=F_off",
                  "output.prefix=one_file"] + FAST, capsys)
    assert status == 0, err
    status, _, err = run_program(Program, [files["der"], files["nat"], files["model"],
                                           "output.prefix=two_files"] + FAST, capsys)
    assert status == 0, err
    a = mtz_arrays(in_tmp / "one_file.mtz")["DELFWT,PHDELWT"]
    b = mtz_arrays(in_tmp / "two_files.mtz")["DELFWT,PHDELWT"]
    assert np.allclose(a.data().as_numpy_array(), b.data().as_numpy_array())
    assert final_cc(example, in_tmp, "one_file") > 0.7


def test_phases_from_a_column_replace_the_model(example, files, in_tmp, capsys):
    from meteor_cctbx.model_phases import load_model, model_structure_factors

    model = load_model(files["model"], example.pair.native.crystal_symmetry())
    f_model = model_structure_factors(model, example.pair.native).f_model
    phases_file = in_tmp / "fmodel.mtz"
    write_map_coefficients_mtz(phases_file, [(f_model, "FC", "PHIC")])
    status, _, err = run_program(Program, [files["der"], files["nat"], "output.prefix=model",
                                           files["model"]] + FAST, capsys)
    assert status == 0, err
    status, _, err = run_program(Program, [files["der"], files["nat"], "output.prefix=column",
                                           f"phases.file_name={phases_file}",
                                           "phases.labels=FC,PHIC"] + FAST, capsys)
    assert status == 0, err
    a = mtz_arrays(in_tmp / "model.mtz")["DELFWT,PHDELWT"]
    b = mtz_arrays(in_tmp / "column.mtz")["DELFWT,PHDELWT"]
    assert map_correlation(a, b) > 0.999


def test_model_without_cryst1_takes_the_data_symmetry(example, files, in_tmp, capsys):
    status, out, err = run_program(Program, [files["der"], files["nat"],
                                             files["model_no_cryst1"]] + FAST, capsys)
    assert status == 0, err
    assert "using the data's symmetry" in out


def test_amplitudes_without_sigmas(example, files, in_tmp, capsys):
    args = [files["der_nosig"], files["nat_nosig"], files["model"]]
    status, _, err = run_program(Program, args, capsys)
    assert_one_line_sorry(status, err, "sigmas", "kweight.mode=none")
    assert not list(in_tmp.glob("meteor_diffmap*"))
    status, out, err = run_program(Program, args + ["kweight.mode=none", "tv.mode=fixed"],
                                   capsys)
    assert status == 0, err
    assert "Warning: data without sigmas" in out


BAD_INPUTS = [
    (lambda f: [f["der"], "missing.mtz", f["model"]], ["missing.mtz", "not found"]),
    (lambda f: [f["truncated"], f["nat"], f["model"]], ["truncated.mtz"]),
    (lambda f: [f["empty"], f["nat"], f["model"]], ["empty.mtz", "empty"]),
    (lambda f: [f["der"].parent, f["nat"], f["model"]], ["is a directory"]),
    (lambda f: [f["der"], f["nat"], f["model"], "derivative.labels=FOO"],
     ["FOO", "not found", "available: F,SIGF (amplitude)"]),
    (lambda f: [f["der"], f["nat_p1"], f["model"]], ["Space groups differ", "P 1"]),
    (lambda f: [f["der"], f["nat_big_cell"], f["model"]],
     ["Cells differ", "isomorphism.max_cell_difference"]),
    (lambda f: [f["der"], f["nat"], f["empty_model"]], ["empty.pdb", "no atoms"]),
    (lambda f: [f["der"], f["nat"], f["model_p1"]], ["model_p1.pdb", "space group"]),
    (lambda f: [f["der_low"], f["nat_high"], f["model"]], ["share no reflections"]),
    (lambda f: [f["der"], f["nat"], f["model"], "d_min=40"], ["leaves no reflections"]),
    (lambda f: [f["der"], f["nat"], f["model"], "d_min=3", "d_max=2"], ["d_min=3"]),
    (lambda f: [f["der"], f["nat"], f["model"], "kweight.k_parameter=-1"],
     ["k_parameter", "-1"]),
    (lambda f: [f["der"], f["nat"], f["model"], "tv.weight=-0.1"], ["tv.weight"]),
    (lambda f: [f["der"], f["nat"], f["model"], "scaling.mode=bogus"],
     ["scaling.mode", "bogus"]),
    (lambda f: [f["der"], f["nat"], f["model"], "nonsense=1"], ["nonsense"]),
    (lambda f: [f["der"], f["model"]], ["Only one reflection file", "native.file_name"]),
    (lambda f: [f["der"], f["nat"]], ["No model given", "phases.labels"]),
    (lambda f: [f["both"], f["model"], f"native.file_name={f['both']}"],
     ["both come from", "derivative.labels", "native.labels"]),
    (lambda f: [f["both"], f["model"], f"native.file_name={f['both']}",
                "derivative.labels=F_on"],
     ["several possible Native", "F_on,SIGF_on", "F_off,SIGF_off", "native.labels"]),
    (lambda f: [f["der"], f["nat"], f["model"], "output.prefix=no/such/dir/x"],
     ["no/such/dir", "does not exist"]),
]


BAD_INPUT_IDS = ["missing_file", "truncated_mtz", "empty_file", "directory", "unknown_labels",
                 "space_groups_differ", "cells_differ", "model_without_atoms",
                 "model_symmetry_differs", "no_common_reflections", "resolution_cut_empties",
                 "d_min_above_d_max", "out_of_range_parameter", "negative_tv_weight",
                 "bad_choice", "unknown_parameter", "one_reflection_file", "no_model",
                 "same_file_without_labels", "ambiguous_labels", "output_directory_missing"]


@pytest.mark.parametrize("make_args, fragments", BAD_INPUTS, ids=BAD_INPUT_IDS)
def test_bad_input_is_one_clear_sorry_and_no_output(files, in_tmp, capsys, make_args,
                                                    fragments):
    status, _, err = run_program(Program, make_args(files), capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not [p for p in in_tmp.iterdir() if p.name != "missing.mtz"]
