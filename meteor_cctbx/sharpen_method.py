"""meteor.sharpen's sharpening step: the method sharpen_inputs.resolve_method chose, run on
the inputs with the sharpening.* settings, with its log lines and run-record entries; and the
diagnostics of the result (the effective B of the applied scale, the Wilson B before and
after).  The science is in sharpen and local_sharpen."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
from iotbx.map_manager import map_manager as MapManager
from libtbx.utils import Sorry, null_out

from meteor_cctbx import local_sharpen, sharpen, solvent_fraction
from meteor_cctbx.maximize import scan_point_logger
from meteor_cctbx.sharpen_inputs import SharpenInputs


@dataclass
class Sharpened:
    """The sharpened map, the B-factor result of b_factor and half_map (fsc) sharpening
    (else None), and the run-record entries of the step ("b_factor", "local")."""

    map: MapManager
    b_factor: sharpen.BFactorSharpening | None = None
    record: dict = field(default_factory=dict)


@dataclass
class Diagnostics:
    """The scale the sharpening applied and the overall (Wilson) B (A^2) of the map before
    and after it, measured to ``wilson_b_d_min`` (A)."""

    scale: sharpen.AppliedScale
    wilson_b_before: float
    wilson_b_after: float
    wilson_b_d_min: float

    def as_record(self) -> dict:
        return {"effective_b": self.scale.effective_b, "applied_scale": self.scale.as_dict(),
                "wilson_b_before": self.wilson_b_before, "wilson_b_after": self.wilson_b_after,
                "wilson_b_d_min": self.wilson_b_d_min}


def sharpening_form(params, resolution: float, d_min: float) -> sharpen.SharpeningForm:
    """The single-B form of sharpening.d_cut (default the resolution), k_sharpen and
    b_blur_hires, with Fourier terms to ``d_min`` (A)."""
    s = params.sharpening
    return sharpen.SharpeningForm(d_min=d_min, d_cut=s.d_cut or resolution,
                                  k_sharpen=s.k_sharpen, b_blur_hires=s.b_blur_hires)


def fourier_map(map_manager, workers: int) -> sharpen.FourierMap:
    return sharpen.FourierMap.from_map(map_manager.map_data().as_numpy_array(),
                                       map_manager.crystal_symmetry().unit_cell(), workers)


def sharpen_by_method(method: str, inputs: SharpenInputs, params, resolution: float,
                      d_min: float, map_wilson_b: float, workers: int,
                      log: TextIO) -> Sharpened:
    """The map sharpened by ``method`` (sharpening.*; ``d_min``: Fourier limit, A;
    ``map_wilson_b``: the input's Wilson B, A^2, which centres the search)."""
    s = params.sharpening
    mmm, map_coefficients = inputs.mmm, inputs.map_coefficients
    nproc = params.nproc or os.cpu_count() or 1
    mmm.set_log(log if params.output.verbose else null_out())
    if method == "half_map" and s.half_map_weighting == "cctbx":
        return Sharpened(sharpen.sharpen_with_half_maps(
            mmm, resolution, anisotropic=s.anisotropic, local=s.local, nproc=nproc))
    if method == "model":
        return Sharpened(sharpen.sharpen_with_model(mmm, resolution, anisotropic=s.anisotropic,
                                                    local=s.local, nproc=nproc))
    halves = ([fourier_map(m, workers) for m in (mmm.map_manager_1(), mmm.map_manager_2())]
              if inputs.has_half_maps else None)
    if method == "half_map":
        form = sharpen.ShellWeightedForm.from_half_maps(*halves, d_min)
    else:
        form = sharpening_form(params, resolution, d_min)
        if s.noise_weight == "solvent" and s.b_sharpen is None and s.b_iso is None:
            # shells to the resolution (and never past the data): terms beyond it carry
            # no signal the weight could be measured on
            to = max(resolution, map_coefficients.d_min()) if map_coefficients \
                else resolution
            form = solvent_noise_form(mmm.map_manager(), resolution, to,
                                      params.solvent_content, workers, log) or form
    search = sharpen.search_for_map(
        sharpen.BSearch(b_min=s.search.b_min, b_max=s.search.b_max,
                        n_steps=s.search.n_steps, tolerance=s.search.tolerance),
        map_wilson_b)
    if s.b_sharpen is None and s.b_iso is None:
        print(f"Searching b_sharpen from {search.b_min:g} to {search.b_max:g} "
              f"A^2 ({search.n_steps} steps, refined to {search.tolerance:g} "
              f"A^2), maximising {s.score}:", file=log)
    result = sharpen.sharpen_b_factor(
        mmm.map_manager(), resolution, form, score_name=s.score, search=search,
        b_sharpen=s.b_sharpen, b_iso=s.b_iso, map_wilson_b=map_wilson_b,
        solvent_content=params.solvent_content,
        adjusted_sa=sharpen.AdjustedSaSettings(
            region_weight=s.adjusted_sa.region_weight,
            fraction_occupied=s.adjusted_sa.fraction_occupied,
            sa_percent=s.adjusted_sa.sa_percent,
            max_regions_to_test=s.adjusted_sa.max_regions_to_test),
        workers=workers, report=scan_point_logger(log, "b_sharpen", s.score, " A^2", "  "))
    record = {"b_factor": b_factor_record(result, form, s.score, resolution, log)}
    if s.local:
        result.map_values, record["local"] = sharpen_locally(
            mmm.map_manager(), form, result, search, halves, params, resolution, workers, log)
    return Sharpened(sharpen.map_manager_like(mmm.map_manager(), result.map_values), result,
                     record)


def solvent_noise_form(map_manager, resolution: float, d_min: float,
                       solvent_content: float | None, workers: int,
                       log: TextIO) -> sharpen.ShellWeightedForm | None:
    """The shell weight from the noise in the solvent, or None (logged) without one."""
    values = map_manager.map_data().as_numpy_array().astype(np.float32)
    molecule = sharpen.MolecularRegion.of_map(map_manager, resolution, solvent_content).mask
    form = sharpen.ShellWeightedForm.from_solvent_noise(
        sharpen.FourierMap.from_map(values, map_manager.crystal_symmetry().unit_cell(),
                                    workers), values, molecule, d_min)
    if form is None:
        print("No noise weight: the solvent is under 10 % of the map or no shell "
              "holds significant signal; sharpening without it.", file=log)
    return form


def sharpen_locally(map_manager, form, result: sharpen.BFactorSharpening,
                    search: sharpen.BSearch, halves, params, resolution: float, workers: int,
                    log: TextIO) -> tuple[np.ndarray, dict]:
    """The map sharpened voxel by voxel around the global b_sharpen (local_sharpen.py), and
    its run-record entry."""
    s = params.sharpening
    d_fit = max(resolution, result.d_signal)
    d_max = s.local_d_max or 2.0 * d_fit
    radius = s.local_radius or 1.6 * resolution
    if not d_max > d_fit:
        raise Sorry(f"sharpening.local_d_max ({d_max:g} A) must be above the resolution "
                    f"the local B is fitted to ({d_fit:.2f} A).")
    fourier = fourier_map(map_manager, workers)
    molecule = sharpen.MolecularRegion.of_map(map_manager, resolution,
                                              params.solvent_content).mask
    local = local_sharpen.sharpen_b_locally(
        fourier, lambda b: form.factors(fourier.d_star_sq, b),
        halves or [fourier], molecule, result.b_sharpen, d_fit, d_max=d_max,
        radius=radius, b_min=search.b_min, b_max=search.b_max)
    summary = local.summary()
    record = {"from": "half maps" if halves else "map", "d_max": d_max, "d_min": d_fit,
              **summary}
    low, _, median, _, high = summary["b_applied"]
    print(f"Local sharpening (local B from the {record['from']}, "
          f"{d_max:.2f}-{d_fit:.2f} A, window rms {radius:.1f} A): b_sharpen in the "
          f"molecule {median:.1f} A^2 (5-95 %: {low:.1f} to {high:.1f})", file=log)
    return local.map_values, record


def b_factor_record(result: sharpen.BFactorSharpening, form, score_name: str,
                    resolution: float, log: TextIO) -> dict:
    """The run-record entry of a B-factor sharpening, its choice logged."""
    if result.solvent_fraction is not None:
        print(f"Solvent fraction: {result.solvent_fraction:.2f} "
              f"({solvent_fraction.DEFINITION} at {resolution:.2f} A)", file=log)
    if result.region_weight is not None:
        print(f"adjusted_sa region weight: {result.region_weight:.2f}", file=log)
    if result.b_iso_before is not None:
        print(f"Overall B of the input map: {result.b_iso_before:.1f} A^2", file=log)
    print(f"Chosen b_sharpen: {result.b_sharpen:.1f} A^2 ({result.choice}); "
          f"{form.describe(result.b_sharpen)}", file=log)
    return {"b_sharpen": result.b_sharpen, "choice": result.choice,
            "score": score_name if result.scan else None,
            "scan": result.scan.as_dict() if result.scan else None,
            "solvent_fraction": result.solvent_fraction, "region_weight": result.region_weight,
            "wilson_b_before": result.b_iso_before, **form.as_dict()}


def diagnose(input_map, sharpened: Sharpened, resolution: float, d_min: float,
             wilson_b_before: float, workers: int, log: TextIO) -> Diagnostics:
    """The applied scale and the Wilson B before and after, to the resolution or, for an
    FSC-weighted form that has no terms beyond it, to the resolution of its signal; logged."""
    scale = sharpen.applied_scale(
        input_map.map_data().as_numpy_array(), sharpened.map.map_data().as_numpy_array(),
        input_map.crystal_symmetry().unit_cell(), resolution, workers=workers)
    d_wilson = resolution
    if sharpened.b_factor is not None and sharpened.b_factor.d_signal > resolution:
        d_wilson = sharpened.b_factor.d_signal
        wilson_b_before = sharpen.wilson_b(input_map.map_as_fourier_coefficients(d_min=d_min),
                                           d_wilson)
    wilson_b_after = sharpen.wilson_b(sharpened.map.map_as_fourier_coefficients(d_min=d_min),
                                      d_wilson)
    print(f"Effective B applied: {scale.effective_b:.1f} A^2 (the input sharpened "
          f"by exp(B d*^2/4) to {resolution:.2f} A correlates best with the result: "
          f"CC {scale.correlation:.3f})", file=log)
    print(f"Overall (Wilson) B of the map to {d_wilson:.2f} A: {wilson_b_before:.1f} A^2 "
          f"before, {wilson_b_after:.1f} A^2 after", file=log)
    return Diagnostics(scale, wilson_b_before, wilson_b_after, d_wilson)
