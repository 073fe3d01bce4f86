"""reflections.check_same_crystal_form: the one check of space group and cell that the
difference-map inputs (diffmap.on_native_symmetry) and the phasing model
(model_phases.load_model) share."""
from __future__ import annotations

import pytest
from cctbx import crystal, miller
from libtbx.utils import Sorry

from meteor_cctbx.diffmap import on_native_symmetry
from meteor_cctbx.model_phases import load_model
from meteor_cctbx.reflections import check_same_crystal_form

NATIVE = crystal.symmetry((40, 50, 60, 90, 90, 90), "P 21 21 21")


def check(symmetry, threshold=3.0):
    check_same_crystal_form(symmetry, NATIVE, "The test", "the native", threshold,
                            "fix the group", "fix the cell")


def test_cells_within_the_threshold_pass_beyond_it_are_refused_with_the_difference():
    check(crystal.symmetry((40.8, 50, 60, 90, 90, 90), "P 21 21 21"))  # 1.98 %
    with pytest.raises(Sorry, match=r"The test's cell \(42.00 50.00 60.00 90.00 90.00 90.00\) "
                                    r"differs by 4.88 % from the native's \(40.00 .*\), more "
                                    r"than isomorphism.max_cell_difference=3.0 %: fix the cell"):
        check(crystal.symmetry((42, 50, 60, 90, 90, 90), "P 21 21 21"))
    check(crystal.symmetry((42, 50, 60, 90, 90, 90), "P 21 21 21"), threshold=5.0)


def test_another_space_group_is_refused_whatever_the_cell():
    with pytest.raises(Sorry, match="The test is in space group P 1 21 1 but the native in "
                                    "P 21 21 21: fix the group"):
        check(crystal.symmetry((40, 50, 60, 90, 90, 90), "P 1 21 1"), threshold=100)


def test_both_callers_use_it(tmp_path):
    near = miller.build_set(crystal.symmetry((41, 50, 60, 90, 90, 90), "P 21 21 21"),
                            anomalous_flag=False, d_min=5).array()
    native = miller.build_set(NATIVE, anomalous_flag=False, d_min=5).array()
    assert on_native_symmetry(near, native, "derivative").unit_cell().is_similar_to(
        NATIVE.unit_cell())
    with pytest.raises(Sorry, match="The derivative's cell .*max_cell_difference=1 %"):
        on_native_symmetry(near, native, "derivative", 1)
    path = tmp_path / "model.pdb"
    path.write_text("CRYST1   41.000   50.000   60.000  90.00  90.00  90.00 P 21 21 21\n"
                    "ATOM      1  CA  ALA A   1      10.000  10.000  10.000  1.00 20.00"
                    "           C\nEND\n")
    assert load_model(path, NATIVE).crystal_symmetry().unit_cell().is_similar_to(
        NATIVE.unit_cell())
    with pytest.raises(Sorry, match=r"Model .*model.pdb's cell .* differs by 2.47 % from the "
                                    r"data's .* give a model for these data"):
        load_model(path, NATIVE, max_cell_difference_percent=2)
