"""local_scale_outputs and local_scale_inputs on their own: output names, the ChimeraX script,
map coefficients to a unit-cell map, the mask's grid check."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cctbx import crystal, miller
from cctbx.array_family import flex
from libtbx.utils import Sorry

from meteor_cctbx.local_scale import unit_cell_map_manager
from meteor_cctbx.local_scale_inputs import check_same_grid, map_from_coefficients
from meteor_cctbx.local_scale_outputs import chimerax_script, output_paths

from helpers import local_scale_params as params


@pytest.mark.parametrize("settings, from_coefficients, extra", [
    ({}, False, set()),
    ({"modify__mode": "amplify"}, False, {"modified"}),
    ({"solvent__exclude": True}, True, {"modified", "input_map"})])
def test_output_paths_follow_the_settings(settings, from_coefficients, extra):
    paths = output_paths(params(output__prefix="out/run", **settings), from_coefficients)
    assert set(paths) == {"scale", "confidence", "chimerax", "plot", "record"} | extra
    assert all(str(p).startswith("out/run") for p in paths.values())
    if "modified" in paths:
        assert paths["modified"].name == ("run_amplify.mrc" if settings.get("modify__mode")
                                          else "run_solvent_excluded.mrc")


def test_empty_prefix_is_one_sorry():
    with pytest.raises(Sorry, match="output.prefix is empty"):
        output_paths(params(output__prefix=""), False)


def test_chimerax_script_uses_relative_paths_and_model_names(tmp_path):
    outputs = output_paths(params(output__prefix=str(tmp_path / "out" / "my run"),
                                  modify__mode="amplify"), False)
    script = chimerax_script(outputs, tmp_path / "maps" / "input map.mrc")
    lines = script.splitlines()
    opens = [line for line in lines if line.startswith("open ")]
    assert opens == ['open "../maps/input map.mrc" name my_run_input',
                     'open "my run_scale.mrc" name my_run_scale',
                     'open "my run_amplify.mrc" name my_run_modified']
    assert 'color sample ##name="my_run_input" map ##name="my_run_scale"' in script
    assert not any(re.search(r"(^|\s)#\d+(\s|$|\.)", line) for line in lines)  # no model numbers


def test_map_from_coefficients_picks_the_labelled_array_and_keeps_the_cell():
    symmetry = crystal.symmetry((20, 22, 24, 90, 90, 90), "P1")
    indices = miller.build_set(symmetry, anomalous_flag=False, d_min=3.0)
    rng = np.random.default_rng(0)
    values = flex.complex_double(rng.normal(size=indices.size()) + 1j * rng.normal(
        size=indices.size()))
    first = miller.array(indices, values).set_info(miller.array_info(labels=["FWT", "PHWT"]))
    second = miller.array(indices, values * 2).set_info(miller.array_info(labels=["F2", "P2"]))
    settings = SimpleNamespace(labels=["F2", "P2"], sampling=3)
    mm, description, d_min = map_from_coefficients([first, second], Path("x.mtz"), settings)
    assert d_min == pytest.approx(indices.d_min())
    assert "F2,P2" in description and mm.unit_cell_grid == mm.map_data().all()
    mm_first, _, _ = map_from_coefficients([first, second], Path("x.mtz"),
                                           SimpleNamespace(labels=["FWT", "PHWT"], sampling=3))
    a, b = mm.map_data().as_numpy_array(), mm_first.map_data().as_numpy_array()
    assert np.allclose(a, 2 * b, atol=1e-5 * np.abs(a).max())
    with pytest.raises(Sorry, match="several map-coefficient"):
        map_from_coefficients([first, second], Path("x.mtz"),
                              SimpleNamespace(labels=None, sampling=3))
    with pytest.raises(Sorry, match="below 2"):
        map_from_coefficients([first], Path("x.mtz"), SimpleNamespace(labels=None, sampling=1))


def test_mask_on_another_grid_is_one_sorry():
    symmetry = crystal.symmetry((20, 20, 20, 90, 90, 90), "P1")
    mm = unit_cell_map_manager(np.zeros((20, 20, 20), np.float32), symmetry, "map")
    other = unit_cell_map_manager(np.zeros((10, 10, 10), np.float32), symmetry, "mask")
    check_same_grid(mm, Path("map.mrc"), mm, Path("mask.mrc"))
    with pytest.raises(Sorry, match="mask.mrc has a grid of"):
        check_same_grid(mm, Path("map.mrc"), other, Path("mask.mrc"))
