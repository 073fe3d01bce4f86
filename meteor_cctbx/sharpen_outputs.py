"""meteor.sharpen's outputs: their names, the sharpened map coefficients, the MTZ project /
crystal / dataset names, the diagnostic plot panels, and the writing of the set (map, MTZ,
PNG, JSON record; all or none appear)."""
from __future__ import annotations

import os
from typing import TextIO

import numpy as np
from libtbx.utils import Sorry

from meteor_cctbx import sharpen
from meteor_cctbx.record import (MtzNames, Panel, check_outputs_writable, output_set,
                                 write_json, write_map_coefficients_mtz, write_map_manager,
                                 write_panels_png)
from meteor_cctbx.sharpen_inputs import SharpenInputs
from meteor_cctbx.sharpen_method import Diagnostics, Sharpened

PROGRAM_NAME = "meteor.sharpen"
OUTPUT_SUFFIXES = (".ccp4", ".mtz", ".json", ".png")


def output_paths(prefix: str) -> dict[str, str]:
    """{ccp4, mtz, json, png: <prefix>.<suffix>}."""
    if not prefix:
        raise Sorry("output.prefix is empty: give output.prefix=<path and file stem>.")
    return {suffix[1:]: prefix + suffix for suffix in OUTPUT_SUFFIXES}


def mtz_names(data_manager, labels: list[str] | None) -> MtzNames:
    """Project and crystal of an MTZ input (its dataset + '_sharpened'), else the map's
    file name as crystal."""
    from meteor_cctbx.reflections import mtz_dataset_names

    inputs = data_manager.get_miller_array_names() or data_manager.get_real_map_names()
    found = mtz_dataset_names(inputs[0], labels) if inputs else None
    if found:
        return MtzNames(found[0], found[1], f"{found[2]}_sharpened",
                        found[3] if found[3] > 0 else 1.0)
    return MtzNames(crystal=os.path.splitext(os.path.basename(inputs[0]))[0]
                    if inputs else "crystal", dataset="sharpened")


def panels(score_name: str, b_factor: sharpen.BFactorSharpening | None,
           scale: sharpen.AppliedScale, fsc: sharpen.FscCurve | None) -> list[Panel]:
    """The plot: the score against B (a B search), the half-map FSC (half maps), and the
    applied scale against d*^2 with the line of the effective B."""
    found = []
    if b_factor is not None and b_factor.scan is not None:
        points = b_factor.scan.points
        found.append(Panel(title=f"{score_name} against B", xlabel="b_sharpen (A^2)",
                           ylabel=score_name, x=[p.parameter for p in points],
                           y=[p.score for p in points], chosen=b_factor.b_sharpen))
    if fsc is not None:
        found.append(Panel(title="Half-map FSC", xlabel="1/d (1/A)", ylabel="FSC",
                           x=1.0 / fsc.d, y=fsc.fsc,
                           chosen=1.0 / fsc.d_min if fsc.d_min else None))
    line = scale.effective_b * scale.d_star_sq / 4.0
    line += np.mean(scale.log_ratio - line)
    found.append(Panel(title=f"Applied scale (effective B {scale.effective_b:.1f} A^2)",
                       xlabel="d*^2 (1/A^2)", ylabel="ln(rms F out / rms F in)",
                       x=scale.d_star_sq, y=scale.log_ratio,
                       extra_curves=[("effective B", scale.d_star_sq, line)]))
    return found


def output_coefficients(inputs: SharpenInputs, sharpened: Sharpened,
                        form: sharpen.SharpeningForm, d_min: float):
    """The map coefficients of the result: the input's sharpened by the chosen B for MTZ
    input with a B-factor result (every reflection kept), else those of the sharpened map
    to ``d_min`` (A)."""
    if inputs.map_coefficients is not None and sharpened.b_factor is not None:
        return sharpen.sharpen_map_coefficients(inputs.map_coefficients, form,
                                                sharpened.b_factor.b_sharpen)
    return sharpened.map.map_as_fourier_coefficients(d_min=d_min)


def write_outputs(paths: dict[str, str], overwrite: bool, method: str, inputs: SharpenInputs,
                  sharpened: Sharpened, coefficients, diagnostics: Diagnostics,
                  fsc: sharpen.FscCurve | None, names: MtzNames, score_name: str,
                  record: dict, log: TextIO) -> None:
    """Write the outputs as one set (see record.output_set): all or none appear.  The map
    keeps the input map's labels and file name (map input)."""
    check_outputs_writable(paths.values(), overwrite)
    result = sharpened.map
    if inputs.labels is not None:
        result.labels, result.file_name = list(inputs.labels), inputs.file_name
    caption = f"{PROGRAM_NAME} {method}: effective B {diagnostics.scale.effective_b:.1f} A**2"
    result.set_program_name(PROGRAM_NAME)
    result.add_label(caption)
    with output_set():
        write_map_manager(paths["ccp4"], result)
        write_map_coefficients_mtz(paths["mtz"], [(coefficients, "FWT", "PHWT")],
                                   history=[caption], title=caption, names=names)
        write_panels_png(paths["png"], panels(score_name, sharpened.b_factor,
                                              diagnostics.scale, fsc),
                         title=f"{PROGRAM_NAME} ({method})")
        write_json(paths["json"], record)
    for path in paths.values():
        print(f"Wrote {path}", file=log)
