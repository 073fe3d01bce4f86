"""meteor.diffmap as a program: files in, MTZ/JSON/PNG out, PHIL, .eff files, errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from meteor_cctbx.grid import CellGrid
from meteor_cctbx.map_metrics import map_correlation
from meteor_cctbx.programs.diffmap import Program

from helpers import (assert_one_line_sorry, example_inputs, mtz_arrays, read_map,
                     run_program)


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
    assert final > raw + 0.25 and final > 0.93, (raw, final)  # 0.938 measured (raw 0.621)
    assert (out / "meteor_diffmap.png").stat().st_size > 1000
    assert (out / "meteor_diffmap.ccp4").stat().st_size > 1000
    for heading in ("Data:", "Isomorphism (after scaling):", "Riso", "CCiso", "TV weight =",
                    "k =", "Scaling (anisotropic)"):
        assert heading in log



def test_ccp4_map_is_the_output_coefficients_on_a_finer_grid(finished_run):
    """<prefix>.ccp4 is the map of DELFWT/PHDELWT on a grid of spacing d_min/3
    (output.map_sampling), finer than the TV stage's d_min/2 (map.sampling)."""
    out, _ = finished_run
    record = json.loads((out / "meteor_diffmap.json").read_text())
    assert record["result"]["map_sampling"] == 2  # map.sampling=Auto of meteor.diffmap
    assert record["parameters"]["output.map_sampling"] == 3
    coefficients = mtz_arrays(out / "meteor_diffmap.mtz")["DELFWT,PHDELWT"]
    expected = CellGrid.for_set(coefficients, sampling=3)
    tv_grid = CellGrid.for_set(coefficients, sampling=2)
    assert expected.n_voxels > 2 * tv_grid.n_voxels
    manager, values = read_map(out / "meteor_diffmap.ccp4")
    assert tuple(manager.map_data().all()) == expected.n_real
    reference = expected.to_map(coefficients.data().as_numpy_array())
    np.testing.assert_allclose(values, reference, atol=1e-5 * float(np.abs(reference).max()))

def test_json_record(finished_run):
    out, _ = finished_run
    record = json.loads((out / "meteor_diffmap.json").read_text())
    assert record["program"] == "meteor.diffmap"
    assert record["parameters"]["kweight.mode"] == "optimize"
    result = record["result"]
    tv_points = result["tv_scan"]["points"]
    best = max(tv_points, key=lambda p: p["score"])["parameter"]
    lowest, highest = result["criteria"]["tv_tied_range"]  # the recorded choice: in the tie
    assert lowest <= best <= highest and lowest <= result["tv_weight_relative"] <= highest
    refinement = result["criteria"]["tv_refinement_scan"]
    within_tie = highest > lowest and not result["criteria"]["tv_best_cc_free_taken"]
    assert result["tv_weight_relative"] == (refinement["best_parameter"] if within_tie
                                            else best)
    assert result["criteria"]["tv"] == result["criteria"]["kweight"] == "validation"
    for scan in ("tv_scan", "kweight_scan"):  # both criteria recorded at every scan point
        assert all({"parameter", "score", "negentropy", "seconds"} <= set(point)
                   for point in result[scan]["points"])
    assert result["k_parameter"] in [p["parameter"] for p in result["kweight_scan"]["points"]]
    assert set(result["timings_seconds"]) >= {"scaling_and_grid", "kweight", "tv", "total"}
    assert record["versions"]["cctbx-base"] != "not installed"
    shells = record["data"]["isomorphism_shells"]
    assert len(shells) == record["parameters"]["isomorphism.n_bins"] == 10
    assert sum(s["n"] for s in shells) == result["n_reflections"]
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
    record = json.loads((in_tmp / "meteor_diffmap.json").read_text())
    from meteor_cctbx.phil import default_params
    from meteor_cctbx.record import params_as_dict
    expected = {**params_as_dict(default_params("diffmap")), "kweight.mode": "fixed",
                "tv.mode": "fixed"}
    recorded = {k: v for k, v in record["parameters"].items() if k in expected}
    assert recorded == {k: v for k, v in expected.items() if k in recorded}
    assert len(recorded) >= 30  # the .eff set every parameter, to its default


def test_console_script_bad_input_exits_cleanly(tmp_path):
    bad = tmp_path / "broken.mtz"
    bad.write_bytes(b"MTZ \x00\x00garbage" * 10)
    result = subprocess.run([sys.executable, "-m", "meteor_cctbx.command_line.diffmap",
                             str(bad), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Sorry:") and "broken.mtz" in result.stderr
    assert not list(tmp_path.glob("meteor_diffmap*"))
