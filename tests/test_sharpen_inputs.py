"""sharpen_inputs: the order of the map files, the method auto chooses, the source of the
resolution and its Nyquist limit, the choice of map coefficients, and the refusals."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from cctbx import crystal, miller
from cctbx.array_family import flex
from iotbx.data_manager import DataManager
from libtbx.utils import Sorry

from meteor_cctbx import sharpen_inputs
from helpers import map_manager_of, sharpen_params, write_mtz

SYMMETRY = crystal.symmetry((30, 30, 30, 90, 90, 90), "P1")


def data_manager(maps=(), reflections=(), models=()):
    return SimpleNamespace(get_real_map_names=lambda: list(maps),
                           get_miller_array_names=lambda: list(reflections),
                           get_model_names=lambda: list(models))


def test_map_files_are_the_full_map_then_half_maps_then_others_by_name():
    params = sharpen_params("map_model.full_map=full.ccp4", "map_model.half_map=z.ccp4",
                            "map_model.half_map=a.ccp4")
    dm = data_manager(maps=["other.ccp4", "z.ccp4", "full.ccp4", "a.ccp4", "b.ccp4"])
    assert sharpen_inputs.map_file_names(dm, params) == [
        "full.ccp4", "a.ccp4", "z.ccp4", "b.ccp4", "other.ccp4"]


@pytest.mark.parametrize("maps, models, settings, method", [
    (["m.ccp4"], [], [], "b_factor"),
    (["h1.ccp4", "h2.ccp4"], [], [], "half_map"),
    (["m.ccp4", "h1.ccp4", "h2.ccp4"], ["model.pdb"], [], "half_map"),
    (["m.ccp4"], ["model.pdb"], [], "model"),
    (["h1.ccp4", "h2.ccp4"], ["model.pdb"], ["sharpening.b_sharpen=30"], "b_factor"),
    (["m.ccp4"], ["model.pdb"], ["sharpening.b_iso=20"], "b_factor"),
    (["h1.ccp4", "h2.ccp4"], [], ["sharpening.method=model"], "model"),
])
def test_auto_method_follows_the_inputs(maps, models, settings, method):
    params = sharpen_params(*settings)
    assert sharpen_inputs.resolve_method(data_manager(maps, models=models), params) == method


def test_resolution_is_given_else_the_data_limit_else_the_half_map_fsc():
    fsc = SimpleNamespace(d_min=3.4)
    coefficients = SimpleNamespace(d_min=lambda: 2.8)
    for given, f, c, expected, source in [(2.5, fsc, coefficients, 2.5, "given"),
                                          (None, fsc, coefficients, 2.8, "limit of the map"),
                                          (None, fsc, None, 3.4, "half-map FSC = 0.143")]:
        log = io.StringIO()
        assert sharpen_inputs.choose_resolution(given, f, c, log) == expected
        assert source in log.getvalue()
    with pytest.raises(Sorry, match="do not correlate down to FSC = 0.143"):
        sharpen_inputs.choose_resolution(None, SimpleNamespace(d_min=None), None, io.StringIO())


def test_resolution_finer_than_two_voxels_is_clamped_with_a_warning():
    mm = map_manager_of(np.zeros((24, 24, 20)), SYMMETRY)  # voxels 1.25 and 1.5 A
    log = io.StringIO()
    assert sharpen_inputs.clamped_to_nyquist(3.5, mm, log) == 3.5 and not log.getvalue()
    assert sharpen_inputs.clamped_to_nyquist(2.0, mm, log) == pytest.approx(3.0)
    assert "finer than the map's Nyquist limit (2 voxels = 3.000 A)" in log.getvalue()


def write_coefficients_mtz(path, with_coefficients=True) -> dict:
    """An MTZ of amplitudes FP and, ``with_coefficients``, two sets of random map coefficients
    FA,PHIFA and FB,PHIFB; returns the latter by label."""
    indices = miller.build_set(SYMMETRY, anomalous_flag=False, d_min=4.0)
    rng = np.random.default_rng(0)
    data = [flex.complex_double(flex.double(rng.normal(size=indices.size())),
                                flex.double(rng.normal(size=indices.size()))) for _ in range(2)]
    columns = {"FP": indices.array(data=flex.double(rng.uniform(1, 2, indices.size())))}
    if with_coefficients:
        columns.update(FA=indices.array(data=data[0]), FB=indices.array(data=data[1]))
    write_mtz(path, columns)
    return dict(zip(("FA,PHIFA", "FB,PHIFB"), data))


def test_map_coefficients_are_chosen_by_labels_or_refused(tmp_path):
    written = write_coefficients_mtz(tmp_path / "two.mtz")
    dm = DataManager(["miller_array"])
    dm.process_miller_array_file(str(tmp_path / "two.mtz"))
    with pytest.raises(Sorry, match=r"holds 2 sets of map coefficients: choose one with "
                                    r"labels= \(available: FA,PHIFA, FB,PHIFB\)"):
        sharpen_inputs.read_map_coefficients(dm, None)
    for labels in (["FB,PHIFB"], ["FB PHIFB"], ["FB", "PHIFB"]):
        chosen = sharpen_inputs.read_map_coefficients(dm, labels)
        assert chosen.is_complex_array() and chosen.size() == written["FB,PHIFB"].size()
        assert np.allclose(np.abs(chosen.data().as_numpy_array()),
                           np.abs(written["FB,PHIFB"].as_numpy_array()), rtol=1e-5)
    with pytest.raises(Sorry, match="No map coefficients labelled FP,PHIFP"):
        sharpen_inputs.read_map_coefficients(dm, ["FP,PHIFP"])
    write_coefficients_mtz(tmp_path / "none.mtz", with_coefficients=False)
    dm = DataManager(["miller_array"])
    dm.process_miller_array_file(str(tmp_path / "none.mtz"))
    with pytest.raises(Sorry, match="none.mtz holds no map coefficients"):
        sharpen_inputs.read_map_coefficients(dm, None)


def test_maps_on_different_grids_are_refused_naming_both(tmp_path):
    rng = np.random.default_rng(1)
    map_manager_of(rng.normal(size=(24, 24, 24)), SYMMETRY).write_map(str(tmp_path / "a.ccp4"))
    map_manager_of(rng.normal(size=(24, 24, 20)), SYMMETRY).write_map(str(tmp_path / "b.ccp4"))
    dm = DataManager(["real_map"])
    for name in ("a.ccp4", "b.ccp4"):
        dm.process_real_map_file(str(tmp_path / name))
    params = sharpen_params()
    with pytest.raises(Sorry, match=r"b.ccp4 is on another grid than .*a.ccp4"):
        sharpen_inputs.check_maps_and_model(dm, params)


@pytest.mark.parametrize("settings, message", [
    (["sharpening.b_sharpen=10", "sharpening.b_iso=20"], "not both"),
    (["sharpening.search.b_min=50", "sharpening.search.b_max=50"], "must be below"),
    (["sharpening.method=half_map"], "needs two half maps"),
    (["sharpening.method=model"], "needs a model"),
    (["sharpening.method=model", "sharpening.b_sharpen=10"], "apply to sharpening.method"
                                                               "=b_factor"),
    ([], "resolution of a single map is not known"),
])
def test_conflicting_settings_are_one_sorry(tmp_path, settings, message):
    map_manager_of(np.random.default_rng(2).normal(size=(24, 24, 24)), SYMMETRY).write_map(
        str(tmp_path / "m.ccp4"))
    dm = DataManager(["real_map", "miller_array", "model"])
    dm.process_real_map_file(str(tmp_path / "m.ccp4"))
    if "sharpening.b_sharpen=10" in settings and "sharpening.method=model" in settings:
        dm.process_model_str("model.pdb", "CRYST1   30.000   30.000   30.000  90.00  90.00  "
                             "90.00 P 1\nATOM      1  CA  ALA A   1      10.000  10.000  10.000"
                             "  1.00 20.00           C\nEND\n")
    resolution = [] if message.startswith("resolution") else ["resolution=3"]
    with pytest.raises(Sorry, match=message):
        sharpen_inputs.check_inputs(dm, sharpen_params(*settings, *resolution))
