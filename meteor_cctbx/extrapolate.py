"""Extrapolated structure factors of the minor state, F_extr = F_base + N dF with N = 1/q:
the library API.

    from meteor_cctbx.extrapolate import compute_extrapolation
    result = compute_extrapolation(derivative, native, f_model)   # miller arrays in
    result.f_extr                  # FEXTR/SIGFEXTR amplitudes (for refinement)
    result.map_coefficients        # FWT/PHWT = F_base + 2 N dF
    result.occupancy_estimate      # occupancy.OccupancyEstimate (None when q was given)

Conventions: dF is derivative minus native, on the scale of F_model (after scaling the pair),
with model phases phi.  ``extrapolate.difference`` picks dF: ``raw`` (|F_der| - |F_nat|)
exp(i phi); ``diffmap`` / ``phaseboost`` the k-weighted, TV-denoised coefficients of
compute_diffmap / compute_phaseboost.  The TV stage rescales the map to the input's standard
deviation, so a denoised dF is brought back to raw-difference units by ``difference_gain``
(reduced-major-axis slope of the denoised on the raw difference map over the voxels where the
denoised map exceeds ``threshold`` x its rms) before extrapolating: N then means 1/q for every
choice.  A denoised difference that points against the raw one there (gain <= 0: the
denoising kept no signal) is replaced by the raw difference, with a warning.  ``formula``: ``fobs`` F_base = |F_nat| exp(i phi) (Coquelle-style F_nat + N dF);
``fcalc`` F_base = F_model.  Reflections whose extrapolated value points against the model
phase (a 'negative amplitude' |F_base| + N dF < 0 for raw dF) are handled by
``negative_amplitudes``: replaced by F_model (``fcalc``), set to zero, or dropped.
SIGFEXTR propagates the measurement errors through F_base + N (F_der - F_nat):
sqrt((1 - N)^2 sigma_nat^2 + N^2 sigma_der^2) for fobs, N sqrt(sigma_nat^2 + sigma_der^2) for
fcalc (for a denoised dF an upper bound).  FWT/PHWT = 2 F_extr - F_base = F_base + 2 N dF:
a difference projected on the model phases shows about half of the change (Read 1986), so the
extrapolated part is counted twice, as in a 2mFo-DFc map; DELFWT/PHDELWT = F_extr - F_model.
The occupancy estimators' noise (their noise cut and the bootstrap's redrawn errors of dF)
takes sigma_delta held to the spread of |F_der| - |F_nat| in each resolution shell
(``ScaledPair.sigma_delta_within_spread``): sigmas stated too large would raise the noise
cut until only the peaks that the noise lifted most remain, an estimate biased high or
withheld.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
from libtbx import Auto
from libtbx.utils import Sorry, null_out

from meteor_cctbx.diffmap import DiffmapResult, complex_array, compute_diffmap
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.occupancy import OccupancyEstimate, estimate_occupancy
from meteor_cctbx.phaseboost import compute_phaseboost
from meteor_cctbx.phil import choice, default_params
from meteor_cctbx.resolution_shells import lowered_shells_note


@dataclass
class ExtrapolationResult:
    """Output of compute_extrapolation; ``pair`` and ``grid`` are the difference stage's."""

    f_extr: miller.array                # FEXTR/SIGFEXTR amplitudes
    map_coefficients: miller.array      # FWT/PHWT, F_base + 2 N dF
    delta_coefficients: miller.array    # DELFWT/PHDELWT, F_extr - F_model
    occupancy: float
    difference: DiffmapResult
    difference_gain: float
    occupancy_estimate: OccupancyEstimate | None
    n_negative: int
    metadata: dict = field(default_factory=dict)

    @property
    def pair(self):
        return self.difference.pair

    @property
    def grid(self) -> CellGrid:
        return self.difference.grid


def difference_gain(processed_map: np.ndarray, raw_map: np.ndarray, threshold: float) -> float:
    """Factor by which a processed difference map exceeds the raw one where it has signal:
    sign(sum p r) sqrt(sum p^2 / sum r^2) over voxels |p| > threshold x rms(p)."""
    region = np.abs(processed_map) > threshold * processed_map.std()
    if not region.any():
        return 1.0
    p = processed_map[region].astype(np.float64)
    r = raw_map[region].astype(np.float64)
    if not np.any(r):
        return 1.0
    return float(np.sign(np.dot(p, r)) * np.sqrt(np.dot(p, p) / np.dot(r, r)))


def difference_stage(derivative: miller.array, native: miller.array, phases: miller.array,
                     params, log, on_scaled=None) -> tuple[DiffmapResult, np.ndarray]:
    """dF by extrapolate.difference and its coefficients (complex, on the pair's set)."""
    kind = choice(params.extrapolate.difference)
    if kind == "phaseboost":
        result = compute_phaseboost(derivative, native, phases, params, log, on_scaled)
        return result, result.map_coefficients.data().as_numpy_array()
    if kind == "raw":
        params = copy.deepcopy(params)
        params.kweight.mode = "none"
        params.tv.mode = "none"
    result = compute_diffmap(derivative, native, phases, params, log, on_scaled)
    source = result.raw_coefficients if kind == "raw" else result.map_coefficients
    return result, source.data().as_numpy_array()


def extrapolated_coefficients(base: np.ndarray, difference: np.ndarray, model: np.ndarray,
                              unit_phases: np.ndarray, occupancy: float, negative: str
                              ) -> tuple[np.ndarray, np.ndarray, int]:
    """F_base + dF/occupancy with 'negative amplitudes' handled; returns the coefficients, the
    mask of reflections kept (all but the negative ones when ``negative`` is drop) and the
    number of negative ones."""
    extrapolated = base + difference / occupancy
    is_negative = (extrapolated * np.conj(unit_phases)).real < 0
    keep = np.ones(base.size, dtype=bool)
    if negative == "fcalc":
        extrapolated = np.where(is_negative, model, extrapolated)
    elif negative == "zero":
        extrapolated = np.where(is_negative, 0, extrapolated)
    elif negative == "drop":
        keep = ~is_negative
    else:
        raise ValueError(f"unknown negative_amplitudes={negative!r}")
    return extrapolated, keep, int(is_negative.sum())


def propagated_sigmas(pair, occupancy: float, formula: str) -> np.ndarray | None:
    """sigma(F_extr) from the measurement errors (see module doc); None without sigmas."""
    if pair.derivative.sigmas() is None or pair.native.sigmas() is None:
        return None
    n = 1.0 / occupancy
    s_der = pair.derivative.sigmas().as_numpy_array()
    s_nat = pair.native.sigmas().as_numpy_array()
    if formula == "fobs":
        return np.hypot((1 - n) * s_nat, n * s_der)
    return n * np.hypot(s_nat, s_der)


class OccupancyNotEstimated(Sorry):
    """The chosen estimator withheld its value; ``estimate`` holds every estimator's result."""

    def __init__(self, estimate: OccupancyEstimate):
        super().__init__(
            f"The occupancy could not be estimated ({estimate.chosen.warning}); no value is "
            f"made up. Give extrapolate.occupancy=<value in (0, 1]> to extrapolate at a "
            f"chosen occupancy, or try another extrapolate.estimator.")
        self.estimate = estimate


def chosen_occupancy(estimate: OccupancyEstimate) -> float:
    """The chosen estimator's value, or OccupancyNotEstimated (a Sorry) naming why it was
    withheld and the way out."""
    if estimate.chosen.estimate is None:
        raise OccupancyNotEstimated(estimate)
    return estimate.chosen.estimate


#: Mean figure of merit of the model phases below which the log warns that the estimate reads
#: low: on the 8a6g family at 2.0 A the estimates fell by about 12 % (chromophore compact q1
#: 1.00 -> 0.88) as the phasing model's error doubled and the mean m fell from 0.82 to 0.58.
LOW_FIGURE_OF_MERIT = 0.7


def report_estimates(estimate: OccupancyEstimate, log) -> None:
    print(f"  Occupancy estimators ({estimate.settings['n_bootstrap']} bootstrap resamples "
          f"of the reflections, {100 * estimate.settings['confidence']:g} % intervals):",
          file=log)
    for name, result in estimate.estimators.items():
        mark = "*" if name == estimate.method else " "
        if result.estimate is None:
            print(f"   {mark}{name:9s} withheld: {result.warning}", file=log)
        else:
            print(f"   {mark}{name:9s} {result.estimate:.3f}  [{result.interval[0]:.3f}, "
                  f"{result.interval[1]:.3f}]  ({result.n_peaks} peaks)", file=log)
    blur = estimate.settings.get("appear_blur_b") or 0
    blurred = f" (both maps blurred by B {blur:g} A^2, which lessens this)" if blur else ""
    print("  (vanish reads the atoms that leave against their own native density; appear reads "
          "the new peaks against the model's median atom: a minor state less ordered than that "
          f"atom reads low, a more ordered one high{blurred}, by an amount the intervals do not "
          "include. combined takes vanish where it holds.)", file=log)
    mean_m = estimate.settings.get("mean_figure_of_merit")
    if mean_m is not None and mean_m < LOW_FIGURE_OF_MERIT:
        print(f"  Warning: the model phases' mean figure of merit is {mean_m:.2f}: a difference "
              f"on poor phases carries less of the change than the native map shows of the "
              f"model, so the estimates read low (on the benchmark family up to 12 % lower at "
              f"a mean m of 0.58 than at 0.82).", file=log)


def compute_extrapolation(derivative: miller.array, native: miller.array, phases: miller.array,
                          params=None, log=None, on_scaled=None) -> ExtrapolationResult:
    """Extrapolated structure factors and map coefficients of the minor state.

    ``params`` is the extrapolate PHIL extract (defaults when None): the difference-map scopes
    (scaling, kweight, tv, map, phaseboost) and ``extrapolate``.  ``phases`` is F_model (its
    amplitudes are the scaling reference and, for formula=fcalc, the base amplitudes).
    ``on_scaled(pair)``, if given, is called once the pair is scaled (as in compute_diffmap).
    """
    params = params if params is not None else default_params("extrapolate")
    log = log or null_out()
    settings = params.extrapolate
    start = time.perf_counter()
    difference, coefficients = difference_stage(derivative, native, phases, params, log,
                                                on_scaled)
    pair = difference.pair
    # the estimators read peak heights: on a grid finer than the TV stage's (map.sampling)
    peak_grid = CellGrid.for_set(difference.grid.miller_set, sampling=settings.peak_sampling)
    model_array, _ = phases.common_sets(pair.derivative)
    if not model_array.indices().all_eq(pair.derivative.indices()):
        raise RuntimeError("F_model and the scaled pair are not on the same reflections")
    model = model_array.data().as_numpy_array()
    if np.allclose(np.abs(model[model != 0]), 1.0):
        raise Sorry("meteor.extrapolate needs F_model amplitudes (a model, or phases.labels "
                    "naming an amplitude,phase pair such as FC,PHIC), not phases alone.")
    native_coefficients = pair.native.data().as_numpy_array() * pair.unit_phases
    raw = pair.raw_difference
    kind, gain, fallback = choice(settings.difference), 1.0, None
    if kind != "raw":
        gain = difference_gain(peak_grid.to_map(coefficients), peak_grid.to_map(raw),
                               settings.threshold)
        if gain <= 0:
            fallback = (f"the {kind} difference points against the raw difference where it is "
                        f"strongest (gain {gain:.3g}): its denoising removed the signal; the "
                        f"raw difference is extrapolated instead")
            print(f"  Warning: {fallback}.", file=log)
            kind, gain, coefficients = "raw", 1.0, raw
    calibrated = coefficients / gain
    print(f"  Extrapolating the {kind} difference (gain over the raw difference {gain:.3g}), "
          f"formula {settings.formula}", file=log)
    estimate = None
    if settings.occupancy is Auto or settings.occupancy is None:
        step = time.perf_counter()
        sigma_difference, spread_ratios = pair.sigma_delta_within_spread()
        note = None if spread_ratios is None else lowered_shells_note(spread_ratios)
        if note:
            print(f"  The estimators' noise: sigma_delta {note}", file=log)
        estimate = estimate_occupancy(
            native_coefficients, model, raw, peak_grid, method=settings.estimator,
            occupancy_range=tuple(settings.occupancy_range), threshold=settings.threshold,
            peak_fraction=settings.peak_fraction, appear_blur_b=settings.appear_blur_b,
            n_bootstrap=settings.n_bootstrap, confidence=settings.confidence,
            seed=settings.seed, sigma_native=None if pair.native.sigmas() is None else
            pair.native.sigmas().as_numpy_array(), sigma_difference=sigma_difference)
        if spread_ratios is not None:
            estimate.settings["sigma_difference_lowered_shells"] = int((spread_ratios < 1).sum())
            estimate.settings["sigma_difference_shells"] = int(spread_ratios.size)
        if pair.figures_of_merit is not None:
            estimate.settings["mean_figure_of_merit"] = float(pair.figures_of_merit.mean())
        report_estimates(estimate, log)
        print(f"  ({time.perf_counter() - step:.1f} s)", file=log)
        occupancy = chosen_occupancy(estimate)
    else:
        occupancy = float(settings.occupancy)
        if occupancy <= 0:
            raise Sorry("extrapolate.occupancy must be above 0 (N = 1/occupancy).")
    formula = choice(settings.formula)
    base = native_coefficients if formula == "fobs" else model
    extrapolated, keep, n_negative = extrapolated_coefficients(
        base, calibrated, model, pair.unit_phases, occupancy,
        choice(settings.negative_amplitudes))
    print(f"  Occupancy {occupancy:.3f} (N = {1 / occupancy:.3f}): {n_negative} of "
          f"{keep.size} reflections extrapolated below zero "
          f"({choice(settings.negative_amplitudes)})", file=log)
    miller_set = pair.derivative.select(flex.bool(keep))
    sigmas = propagated_sigmas(pair, occupancy, formula)
    f_extr = miller.array(miller_set, flex.double(np.abs(extrapolated[keep])),
                          None if sigmas is None else flex.double(sigmas[keep])
                          ).set_observation_type_xray_amplitude()
    fwt = complex_array(miller_set, 2 * extrapolated[keep] - base[keep])
    delfwt = complex_array(miller_set, extrapolated[keep] - model[keep])
    metadata = {"difference": difference.metadata, "difference_kind": kind,
                "difference_fallback": fallback, "difference_gain": gain, "formula": formula,
                "negative_amplitudes": choice(settings.negative_amplitudes),
                "n_negative": n_negative, "n_reflections_out": int(keep.sum()),
                "occupancy": estimate.as_dict() if estimate is not None else
                {"estimate": occupancy, "interval": None, "method": "given"},
                "seconds": time.perf_counter() - start}
    return ExtrapolationResult(f_extr, fwt, delfwt, occupancy, difference, gain, estimate,
                               n_negative, metadata)
