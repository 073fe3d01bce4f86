"""The isomorphous difference map (derivative minus native) on miller arrays: the library API.

    from meteor_cctbx.diffmap import compute_diffmap
    result = compute_diffmap(derivative, native, f_model)   # miller arrays in
    result.map_coefficients                                  # complex miller array out

``derivative`` and ``native`` are amplitude arrays (|F|, sigmas recommended); ``phases`` is a
complex array (F_model or FC,PHIC: amplitudes serve as the scaling reference, phases as the
phases of both data sets), or complex numbers of modulus one when only phases are known (then
the derivative is scaled onto the native).  Steps: common reflections -> scaling ->
dF = (|F_der| - |F_nat|) exp(i phi) -> k-weighting -> TV denoising.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
from libtbx.utils import Sorry, null_out

from meteor_cctbx import kweight, tv
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.maximize import ScanPoint, ScanResult
from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.phil import choice, default_params
from meteor_cctbx.scaling import ScaleFit, fit_scale


@dataclass
class ScaledPair:
    """Derivative and native amplitudes on common reflections, scaled, with unit phases."""

    derivative: miller.array
    native: miller.array
    unit_phases: np.ndarray  # exp(i phi), complex, one per reflection
    derivative_scale: ScaleFit
    native_scale: ScaleFit

    @property
    def delta_f(self) -> np.ndarray:
        """|F_der| - |F_nat| (scaled), signed."""
        return self.derivative.data().as_numpy_array() - self.native.data().as_numpy_array()

    @property
    def sigma_delta(self) -> np.ndarray | None:
        """sqrt(sigma_der^2 + sigma_nat^2), or None when either data set lacks sigmas."""
        if self.derivative.sigmas() is None or self.native.sigmas() is None:
            return None
        return np.hypot(self.derivative.sigmas().as_numpy_array(),
                        self.native.sigmas().as_numpy_array())


def common_reflections(derivative: miller.array, native: miller.array, phases: miller.array
                       ) -> tuple[miller.array, miller.array, miller.array]:
    """The three arrays restricted to the reflections all of them have, in the same order."""
    derivative, native = derivative.common_sets(native)
    derivative, phases = derivative.common_sets(phases)
    native, _ = native.common_sets(derivative)
    if derivative.size() == 0:
        raise Sorry("The derivative, native and phases share no reflections: check that they "
                    "belong to the same crystal form and resolution range.")
    return derivative, native, phases


def scale_pair(derivative: miller.array, native: miller.array, phases: miller.array,
               mode: str) -> ScaledPair:
    """Scale both data sets to |phases| (when it carries amplitudes) or the derivative to the
    native (when the phases have unit modulus); return them with the unit phases."""
    derivative, native, phases = common_reflections(derivative, native, phases)
    values = phases.data().as_numpy_array()
    modulus = np.abs(values)
    unit_phases = np.where(modulus > 0, values / np.where(modulus > 0, modulus, 1), 1.0 + 0j)
    phases_only = np.allclose(modulus[modulus > 0], 1.0)
    reference = native if phases_only else abs(phases)
    native_fit = fit_scale(native, reference, "none" if phases_only else mode)
    derivative_fit = fit_scale(derivative, native_fit.apply(native) if phases_only
                               else reference, mode)
    return ScaledPair(derivative_fit.apply(derivative), native_fit.apply(native), unit_phases,
                      derivative_fit, native_fit)


@dataclass
class DiffmapResult:
    """Output of compute_diffmap: map coefficients, the chosen parameters and the scans."""

    map_coefficients: miller.array  # final complex coefficients (DELFWT/PHDELWT)
    raw_coefficients: miller.array  # (|F_der| - |F_nat|) exp(i phi), unweighted
    pair: ScaledPair
    grid: CellGrid
    final_map: np.ndarray  # float32 unit-cell map of map_coefficients' TV stage (e/A^3)
    k_parameter: float | None = None
    tv_weight: float | None = None
    kweight_scan: ScanResult | None = None
    tv_scan: ScanResult | None = None
    metadata: dict = field(default_factory=dict)


def _reporter(label: str, log):
    def report(point: ScanPoint) -> None:
        print(f"    {label} = {point.parameter:<10.5g} negentropy = {point.score:.5f}  "
              f"({point.seconds:.2f} s)", file=log, flush=True)
    return report


def weighted_coefficients(raw: np.ndarray, sigma_delta: np.ndarray | None, grid: CellGrid,
                          params, log) -> tuple[np.ndarray, float | None, ScanResult | None]:
    """Difference coefficients ``raw`` after k-weighting (mode none / fixed / optimize)."""
    mode = choice(params.kweight.mode)
    if mode == "none":
        if sigma_delta is None:
            print("  Warning: data without sigmas; fine without k-weighting, but the map "
                  "cannot down-weight poorly measured reflections.", file=log)
        return raw, None, None
    if sigma_delta is None:
        raise Sorry("k-weighting needs sigmas for both data sets and at least one has none: "
                    "give F,SIGF labels or set kweight.mode=none.")
    if mode == "fixed":
        k = params.kweight.k_parameter
        return raw * kweight.kweights(raw, sigma_delta, k), k, None
    print("  Optimising k by negentropy:", file=log)
    scan = kweight.optimize_k(raw, sigma_delta, grid, k_max=params.kweight.k_max,
                              report=_reporter("k", log))
    k = scan.best.parameter
    return raw * kweight.kweights(raw, sigma_delta, k), k, scan


def tv_settings(params) -> tv.TvSettings:
    return tv.TvSettings(max_iterations=params.tv.max_iterations,
                         tolerance=params.tv.tolerance, periodic=params.tv.periodic)


def denoised_map(real_map: np.ndarray, params, log
                 ) -> tuple[np.ndarray, float | None, ScanResult | None]:
    """TV stage on a real-space map (mode none / fixed / optimize)."""
    mode = choice(params.tv.mode)
    if mode == "none":
        return real_map, None, None
    settings = tv_settings(params)
    if mode == "fixed":
        return tv.denoise(real_map, params.tv.weight, settings), params.tv.weight, None
    lower, upper = params.tv.search_range
    print("  Optimising the TV weight by negentropy:", file=log)
    optimum = tv.optimize_tv_weight(real_map, lower, upper, settings,
                                    report=_reporter("TV weight", log))
    return optimum.denoised_map, optimum.weight, optimum.scan


def scale_and_grid(derivative: miller.array, native: miller.array, phases: miller.array,
                   params, log) -> tuple[ScaledPair, CellGrid]:
    """Scale the pair (scaling.mode) and build the unit-cell grid (map.sampling); log both."""
    scaling_mode = choice(params.scaling.mode)
    pair = scale_pair(derivative, native, phases, scaling_mode)
    d, n = pair.derivative_scale, pair.native_scale
    print(f"  Scaling ({scaling_mode}) on {pair.derivative.size()} common reflections: "
          f"derivative k={d.k:.4g} B_iso={d.b_iso:.2f} A^2 R {d.r_before:.3f} -> "
          f"{d.r_after:.3f}; native k={n.k:.4g} B_iso={n.b_iso:.2f} A^2 R {n.r_before:.3f} -> "
          f"{n.r_after:.3f}", file=log)
    grid = CellGrid.for_set(pair.derivative, sampling=params.map.sampling)
    print(f"  Map grid {grid.n_real[0]} x {grid.n_real[1]} x {grid.n_real[2]} "
          f"({grid.n_voxels} voxels)", file=log)
    return pair, grid


@dataclass
class Enhancement:
    """k-weighting then TV denoising of difference coefficients, with their scans."""

    coefficients: np.ndarray
    final_map: np.ndarray
    k_parameter: float | None
    kweight_scan: ScanResult | None
    tv_weight: float | None
    tv_scan: ScanResult | None
    negentropy: dict
    timings: dict


def enhance(raw: np.ndarray, sigma_delta: np.ndarray | None, grid: CellGrid, params, log
            ) -> Enhancement:
    """k-weight (kweight.*) then TV-denoise (tv.*) difference coefficients ``raw``."""
    timings = {}
    raw_map = grid.to_map(raw)
    print(f"  Difference map rms {raw_map.std():.4g}, negentropy {negentropy(raw_map):.5f}",
          file=log)
    step = time.perf_counter()
    coefficients, k, k_scan = weighted_coefficients(raw, sigma_delta, grid, params, log)
    weighted_map = raw_map if k is None else grid.to_map(coefficients)
    timings["kweight"] = time.perf_counter() - step
    if k is not None:
        print(f"  k-weighting with k = {k:.4g}: negentropy {negentropy(weighted_map):.5f}",
              file=log)
    step = time.perf_counter()
    final_map, weight, tv_scan = denoised_map(weighted_map, params, log)
    if weight is not None:
        coefficients = grid.to_coefficients(final_map)
        print(f"  TV denoising with weight {weight:.4g}: negentropy "
              f"{negentropy(final_map):.5f}", file=log)
    timings["tv"] = time.perf_counter() - step
    return Enhancement(coefficients, final_map, k, k_scan, weight, tv_scan,
                       {"raw": negentropy(raw_map), "kweighted": negentropy(weighted_map),
                        "final": negentropy(final_map)}, timings)


def complex_array(miller_set: miller.set, values: np.ndarray) -> miller.array:
    return miller.array(miller_set, flex.complex_double(np.asarray(values, np.complex128)))


def result_metadata(pair: ScaledPair, grid: CellGrid, enhancement: Enhancement) -> dict:
    """Scaling, negentropies, chosen parameters, scans and timings for the run record."""
    return {"n_reflections": pair.derivative.size(), "grid": list(grid.n_real),
            "scaling": {"derivative": pair.derivative_scale.as_dict(),
                        "native": pair.native_scale.as_dict()},
            "negentropy": enhancement.negentropy,
            "k_parameter": enhancement.k_parameter, "tv_weight": enhancement.tv_weight,
            "kweight_scan": enhancement.kweight_scan.as_dict() if enhancement.kweight_scan
            else None,
            "tv_scan": enhancement.tv_scan.as_dict() if enhancement.tv_scan else None,
            "timings_seconds": dict(enhancement.timings)}


def compute_diffmap(derivative: miller.array, native: miller.array, phases: miller.array,
                    params=None, log=None, on_scaled=None) -> DiffmapResult:
    """Isomorphous difference map coefficients, derivative minus native.

    ``params`` is the diffmap PHIL extract (defaults when None); its scaling, kweight, tv and
    map scopes are used.  Progress goes to ``log``; ``on_scaled(pair)``, if given, is called
    with the ScaledPair as soon as the data are scaled (the programs' isomorphism report).
    """
    params = params if params is not None else default_params("diffmap")
    log = log or null_out()
    start = time.perf_counter()
    pair, grid = scale_and_grid(derivative, native, phases, params, log)
    if on_scaled is not None:
        on_scaled(pair)
    prepared = time.perf_counter()
    raw = pair.delta_f * pair.unit_phases
    enhancement = enhance(raw, pair.sigma_delta, grid, params, log)
    metadata = result_metadata(pair, grid, enhancement)
    metadata["timings_seconds"].update(scaling_and_grid=prepared - start,
                                       total=time.perf_counter() - start)
    return DiffmapResult(
        map_coefficients=complex_array(pair.derivative, enhancement.coefficients),
        raw_coefficients=complex_array(pair.derivative, raw), pair=pair, grid=grid,
        final_map=enhancement.final_map, k_parameter=enhancement.k_parameter,
        tv_weight=enhancement.tv_weight, kweight_scan=enhancement.kweight_scan,
        tv_scan=enhancement.tv_scan, metadata=metadata)
