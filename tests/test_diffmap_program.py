"""meteor.diffmap as a program: files in, MTZ/JSON/PNG out, PHIL, .eff files, errors."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meteor_cctbx.phil import master_phil
from meteor_cctbx.programs.diffmap import Program
from meteor_cctbx.map_metrics import map_correlation

from helpers import FAST, assert_one_line_sorry, example_inputs, mtz_arrays, run_program

PACKAGE = Path(__file__).resolve().parents[1] / "meteor_cctbx"


@pytest.fixture(scope="module")
def finished_run(example, tmp_path_factory):
    """One default run of the program; returns its output directory and stdout."""
    import os

    out = tmp_path_factory.mktemp("diffmap_run")
    cwd = os.getcwd()
    os.chdir(out)
    try:
        from meteor_cctbx.command_line import run_as_command
        import io
        import contextlib

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            status = run_as_command(Program, [str(p) for p in example_inputs(example)] +
                                    ["output.map=True"])
    finally:
        os.chdir(cwd)
    assert status == 0, buffer.getvalue()[-3000:]
    return out, buffer.getvalue()


def test_outputs_and_map_quality(example, finished_run):
    out, log = finished_run
    arrays = mtz_arrays(out / "meteor_diffmap.mtz")
    assert set(arrays) == {"DELFWT,PHDELWT", "DF,PHIDF", "SIGDF", "DF_RAW,PHIDF_RAW"}
    truth = example.pair.true_difference
    final = map_correlation(arrays["DELFWT,PHDELWT"], truth)
    raw = map_correlation(arrays["DF_RAW,PHIDF_RAW"], truth)
    assert final > raw + 0.1 and final > 0.8
    assert (out / "meteor_diffmap.png").stat().st_size > 1000
    assert (out / "meteor_diffmap.ccp4").stat().st_size > 1000
    for heading in ("Data:", "Isomorphism (after scaling):", "Riso", "CCiso", "TV weight =",
                    "k =", "Scaling (anisotropic)"):
        assert heading in log


def test_json_record(finished_run):
    out, _ = finished_run
    record = json.loads((out / "meteor_diffmap.json").read_text())
    assert record["program"] == "meteor.diffmap"
    assert record["parameters"]["kweight.mode"] == "optimize"
    result = record["result"]
    assert result["tv_weight_relative"] == result["tv_scan"]["best_parameter"]
    assert result["criteria"]["tv"] == result["criteria"]["kweight"] == "validation"
    for scan in ("tv_scan", "kweight_scan"):  # both criteria recorded at every scan point
        assert all({"parameter", "score", "negentropy", "seconds"} <= set(point)
                   for point in result[scan]["points"])
    assert result["k_parameter"] in [p["parameter"] for p in result["kweight_scan"]["points"]]
    assert set(result["timings_seconds"]) >= {"scaling_and_grid", "kweight", "tv", "total"}
    assert record["versions"]["cctbx-base"] != "not installed"
    assert len(record["data"]["isomorphism_shells"]) >= 5
    assert record["data"]["model"]["bulk_solvent"] is True


def test_existing_output_is_not_overwritten(example, in_tmp, capsys):
    (in_tmp / "meteor_diffmap.mtz").write_bytes(b"previous result")
    status, _, err = run_program(Program, example_inputs(example), capsys)
    assert_one_line_sorry(status, err, "meteor_diffmap.mtz", "output.overwrite=True")
    assert (in_tmp / "meteor_diffmap.mtz").read_bytes() == b"previous result"
    assert not (in_tmp / "meteor_diffmap.json").exists()


def test_show_defaults_eff_runs_unchanged(example, in_tmp, capsys):
    status, out, _ = run_program(Program, ["--show-defaults"], capsys)
    assert status == 0
    eff = out[out.index("derivative {"):]
    (in_tmp / "defaults.eff").write_text(eff)
    args = example_inputs(example) + [in_tmp / "defaults.eff", "kweight.mode=fixed", "tv.mode=fixed"]
    status, out, err = run_program(Program, args, capsys)
    assert status == 0, err
    assert (in_tmp / "meteor_diffmap.mtz").exists()


def leaf_parameters():
    names = []

    def walk(scope, prefix):
        for obj in scope.objects:
            if obj.is_scope:
                walk(obj, prefix + obj.name + ".")
            else:
                names.append(prefix + obj.name)
    walk(master_phil("diffmap"), "")
    return names


def test_every_parameter_is_settable_and_used(example, in_tmp, capsys):
    """Every PHIL parameter can be set on the command line and is read by the code."""
    from iotbx.cli_parser import CCTBXParser
    from libtbx.utils import null_out

    values = {"derivative.file_name": str(example.dir / "derivative.mtz"),
              "native.file_name": str(example.dir / "native.mtz"),
              "derivative.labels": "F,SIGF", "native.labels": "F,SIGF",
              "phases.file_name": "x.mtz", "phases.labels": "FC,PHIC",
              "model.file_name": str(example.dir / "model.pdb"),
              "model.scattering_table": "electron", "model.bulk_solvent": "False",
              "d_min": "2.1", "d_max": "20", "isomorphism.max_cell_difference": "1.5",
              "isomorphism.n_bins": "7", "scaling.mode": "isotropic", "kweight.mode": "fixed",
              "kweight.k_parameter": "0.3", "kweight.k_max": "0.8", "tv.mode": "fixed",
              "tv.weight": "0.02", "tv.search_range": "0.002 0.5", "tv.max_iterations": "30",
              "tv.tolerance": "1e-5", "tv.periodic": "False", "map.sampling": "2.5",
              "output.prefix": "custom", "output.overwrite": "True", "output.map": "True"}
    names = leaf_parameters()
    assert set(names) >= set(values), set(names) - set(values)
    ours = [n for n in names if n in values]
    parser = CCTBXParser(program_class=Program, logger=null_out())
    parser.parse_args([f"{name}={values[name]}" for name in ours])
    extract = parser.working_phil.extract()
    for name in ours:
        value = extract
        for part in name.split("."):
            value = getattr(value, part)
        rendered = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        assert rendered.replace(",", " ").split() == \
            values[name].replace(",", " ").split() or float(rendered) == float(values[name]), name
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for name in ours:
        attribute = "." + name.split(".")[-1]
        assert re.search(re.escape(attribute) + r"\b", source), f"{name} is never read"


def test_console_script_bad_input_exits_cleanly(tmp_path):
    bad = tmp_path / "broken.mtz"
    bad.write_bytes(b"MTZ \x00\x00garbage" * 10)
    result = subprocess.run([sys.executable, "-m", "meteor_cctbx.command_line.diffmap",
                             str(bad), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Sorry:") and "broken.mtz" in result.stderr
    assert not list(tmp_path.glob("meteor_diffmap*"))
