"""sharpen_outputs: output names, the plot panels (the effective-B line has slope B/4), the
output map coefficients for MTZ and map input, the MTZ names, and a written set that keeps
the input map's labels."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import iotbx.mtz
import numpy as np
import pytest
from cctbx import crystal, miller
from cctbx.array_family import flex
from iotbx.map_model_manager import map_model_manager as MapModelManager
from libtbx.utils import Sorry

from meteor_cctbx import sharpen
from meteor_cctbx.sharpen_inputs import SharpenInputs
from meteor_cctbx.sharpen_method import Sharpened, diagnose
from meteor_cctbx.sharpen_outputs import (mtz_names, output_coefficients, output_paths, panels,
                                          write_outputs)
from helpers import map_manager_of, map_on_grid, read_map

SYMMETRY = crystal.symmetry((30, 30, 30, 90, 90, 90), "P1")


def test_output_paths_are_the_prefix_with_each_suffix():
    assert output_paths("out/run") == {"ccp4": "out/run.ccp4", "mtz": "out/run.mtz",
                                       "json": "out/run.json", "png": "out/run.png"}
    with pytest.raises(Sorry, match="output.prefix is empty"):
        output_paths("")


def test_panels_show_the_scan_the_fsc_and_the_effective_b_line():
    points = [SimpleNamespace(parameter=b, score=-(b - 40) ** 2) for b in (0, 20, 40, 60)]
    b_factor = SimpleNamespace(scan=SimpleNamespace(points=points), b_sharpen=40)
    fsc = SimpleNamespace(d=np.array([8.0, 4.0, 2.0]), fsc=np.array([1.0, 0.5, 0.1]), d_min=3.0)
    d_star_sq = np.linspace(0.01, 0.25, 12)
    scale = SimpleNamespace(effective_b=36.0, d_star_sq=d_star_sq,
                            log_ratio=np.sin(20 * d_star_sq) + 9 * d_star_sq)
    scan, curve, applied = panels("kurtosis", b_factor, scale, fsc)
    assert (scan.x, scan.y, scan.chosen, scan.ylabel) == (
        [0, 20, 40, 60], [-1600, -400, 0, -400], 40, "kurtosis")
    assert np.allclose(curve.x, [0.125, 0.25, 0.5]) and curve.chosen == pytest.approx(1 / 3)
    _, x, line = applied.extra_curves[0]
    assert np.polyfit(x, line, 1)[0] == pytest.approx(9.0)  # effective B / 4
    assert np.mean(line) == pytest.approx(np.mean(scale.log_ratio))
    only = panels("negentropy", None, scale, SimpleNamespace(**{**vars(fsc), "d_min": None}))
    assert len(only) == 2 and only[0].chosen is None


@pytest.fixture(scope="module")
def coefficients():
    indices = miller.build_set(SYMMETRY, anomalous_flag=False, d_min=3.0)
    rng = np.random.default_rng(4)
    data = flex.complex_double(flex.double(rng.normal(size=indices.size())),
                               flex.double(rng.normal(size=indices.size())))
    scale = flex.exp(-30 * indices.d_star_sq().data() / 4)
    return indices.array(data=data * scale)


def test_mtz_input_keeps_every_reflection_map_input_the_map_terms(coefficients):
    form = sharpen.SharpeningForm(d_min=2.5, d_cut=3.0)
    mm = map_manager_of(map_on_grid(coefficients, (30, 30, 30)), SYMMETRY)
    result = Sharpened(mm, SimpleNamespace(b_sharpen=25.0))
    from_mtz = output_coefficients(SharpenInputs(MapModelManager(map_manager=mm), coefficients),
                                   result, form, 2.5)
    assert from_mtz.indices().all_eq(coefficients.indices())
    factors = form.factors(coefficients.d_star_sq().data().as_numpy_array(), 25.0)
    assert np.allclose(from_mtz.data().as_numpy_array(),
                       coefficients.data().as_numpy_array() * factors, rtol=1e-6)
    from_map = output_coefficients(SharpenInputs(MapModelManager(map_manager=mm)), result,
                                   form, 2.5)
    assert from_map.d_min() >= 2.5 and from_map.size() > coefficients.size()
    matched = [a.data().as_numpy_array() for a in (from_map.common_set(coefficients),
                                                   coefficients.common_set(from_map))]
    assert len(matched[0]) == coefficients.size()  # the map's own terms, unsharpened
    assert np.allclose(*(m / np.linalg.norm(m) for m in matched), atol=1e-6)


def test_mtz_names_come_from_the_mtz_dataset_or_the_map_file(coefficients, tmp_path):
    dataset = coefficients.as_mtz_dataset(column_root_label="FWT", wavelength=0.98)
    mtz = dataset.mtz_object()
    mtz.crystals()[1].set_name("xtal").set_project_name("proj")
    mtz.crystals()[1].datasets()[0].set_name("soak")
    mtz.write(str(tmp_path / "in.mtz"))
    dm = SimpleNamespace(get_miller_array_names=lambda: [str(tmp_path / "in.mtz")],
                         get_real_map_names=lambda: [])
    names = mtz_names(dm, ["FWT,PHIFWT"])
    assert (names.project, names.crystal, names.dataset) == ("proj", "xtal", "soak_sharpened")
    assert names.wavelength == pytest.approx(0.98)
    dm = SimpleNamespace(get_miller_array_names=lambda: [],
                         get_real_map_names=lambda: ["/data/emd_1234_full.map"])
    names = mtz_names(dm, None)
    assert (names.crystal, names.dataset) == ("emd_1234_full", "sharpened")


def test_the_written_set_keeps_the_input_labels_and_names_the_method(coefficients, tmp_path):
    mm = map_manager_of(map_on_grid(coefficients, (30, 30, 30)), SYMMETRY)
    sharpened = Sharpened(mm.customized_copy(map_data=mm.map_data() * 2.0))
    diagnostics = diagnose(mm, sharpened, 3.0, 2.5, 30.0, 1, io.StringIO())
    inputs = SharpenInputs(MapModelManager(map_manager=mm), None, ["input map label"],
                           "in.ccp4")
    paths = output_paths(str(tmp_path / "run"))
    log = io.StringIO()
    write_outputs(paths, False, "half_map", inputs, sharpened,
                  output_coefficients(inputs, sharpened, None, 2.5), diagnostics, None,
                  mtz_names(SimpleNamespace(get_miller_array_names=lambda: [],
                                            get_real_map_names=lambda: ["in.ccp4"]), None),
                  "negentropy", {"method": "half_map"}, log)
    labels = list(read_map(paths["ccp4"])[0].labels)
    caption = f"meteor.sharpen half_map: effective B {diagnostics.scale.effective_b:.1f} A**2"
    assert labels[0] == "meteor.sharpen on in.ccp4"  # the input's file name
    assert "input map label" in labels and caption in labels
    mtz = iotbx.mtz.object(paths["mtz"])
    assert mtz.title() == caption and caption in "".join(mtz.history())
    assert json.loads(open(paths["json"]).read()) == {"method": "half_map"}
    assert log.getvalue().count("Wrote ") == 4
    with pytest.raises(Sorry, match="overwrite"):
        write_outputs(paths, False, "half_map", inputs, sharpened, None, diagnostics, None,
                      None, "negentropy", {}, log)
