"""Iterative TV phase retrieval for the derivative (a crystallographic Gerchberg-Saxton loop),
then k-weighting and TV denoising as in meteor.diffmap: the library API.

    from meteor_cctbx.phaseboost import compute_phaseboost
    result = compute_phaseboost(derivative, native, f_model)
    result.map_coefficients, result.derivative_coefficients, result.iterations

Loop, with F_nat = |F_nat| exp(i phi_nat) fixed and dF = (|F_der| - |F_nat|) exp(i phi_nat) to
start: map of dF -> TV denoising, not rescaled -> coefficients dF' ->
F_der' = (dF' + F_nat) |F_der| / |dF' + F_nat| (measured derivative amplitudes kept, derivative
phases updated) -> dF = F_der' - F_nat.  The loop's TV weight is, by default
(``tv_criterion=validation``), ``loop_weight_scale`` times the weight validated on the initial
difference map (held-out reflections, as in meteor.diffmap; Auto: 0.75 for a clear change,
1 near the noise floor, see auto_loop_weight_scale), kept for every iteration; with
``tv_criterion=negentropy`` it is, at each iteration, the weight among ``tv_weights_to_scan``
giving the highest negentropy (meteor-maps' rule), and the loop also stops when that
negentropy decreases (the update is discarded).  It stops when the mean absolute change of the
derivative phases falls below ``convergence_tolerance`` (degrees) or after ``max_iterations``.
The loop works on the unweighted difference (it imposes the measured amplitudes); the initial
and final maps are of the difference times the figures of merit m of the model phases, as in
meteor.diffmap.  By default (``final_parameters=initial``) the final map of m (F_der' - F_nat)
is k-weighted and denoised with the k and the TV weight (in map units) chosen on the initial
map, and the loop uses every reflection; a second validation would need free reflections kept
out of the loop (``final_parameters=retrieved`` does that; on the benchmark family at 2.0 A
its maps correlate as well or worse with the truth on every case, by up to 0.024).

Reproducibility (``reproducibility_check``, on by default): the loop runs again on two halves
of the data, |F_der| + z and |F_der| - z with z ~ N(0, sigma_delta) (data fission), each for at
most the loop's iterations; where the components across the model phases of the two retrieved
differences correlate below ``reproducibility_threshold``, the loop's phase change is noise and
the final map is the initial one (meteor.diffmap's).  The halves' noises are independent only
when z's variance is that of the data's own noise: in a resolution shell where sigma_delta
exceeds the rms of |F_der| - |F_nat| (which noise alone cannot exceed: weak amplitudes, whose
folded noise is smaller than their sigma, or errors stated too large), z is drawn at that rms
instead (``ScaledPair.sigma_delta_within_spread``); a larger z would make the halves' noises
anti-correlated and the check stricter than its threshold says.

Grids: the initial and final maps are on meteor.diffmap's grid (map.sampling, Auto d_min/2),
so the initial map and its choice are diffmap's; the loop runs on a finer grid
(phaseboost.loop_sampling, Auto d_min/3), at the initial map's relative TV weight times the
ratio of the spacings (TV's per-voxel weight for one continuous regulariser is inversely
proportional to the spacing).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from cctbx import miller
from libtbx import Auto
from libtbx.utils import null_out

from meteor_cctbx import kweight, parameter_choice, resolution_shells, tv
from meteor_cctbx.diffmap import (DiffmapResult, Enhancement, complex_array, enhance, free_set,
                                  grid_sampling, result_metadata, scale_and_grid, search_tv,
                                  tv_grid_sampling, tv_settings)
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.maximize import ScanResult, scan_point_logger
from meteor_cctbx.phil import choice, default_params
from meteor_cctbx.validation import FreeSet, free_correlation

STOP_CONVERGED = "phase change below tolerance"
STOP_NEGENTROPY = "negentropy after TV decreased"
STOP_MAX_ITERATIONS = "max_iterations reached"


@dataclass
class Iteration:
    """One pass of the loop: chosen TV weight, negentropy after TV, mean phase change (deg)."""

    iteration: int
    tv_weight: float
    negentropy: float
    phase_change: float
    seconds: float


@dataclass
class PhaseRetrieval:
    """Retrieved derivative structure factors and the history of the loop."""

    derivative: np.ndarray  # complex F_der' on the grid's reflections
    iterations: list[Iteration]
    stop_reason: str


def mean_phase_change(before: np.ndarray, after: np.ndarray) -> float:
    """Mean absolute difference of the phases of two complex arrays, degrees in [0, 180]."""
    difference = np.angle(after * np.conj(before))
    return float(np.degrees(np.abs(difference)).mean())


def retrieve_derivative_phases(derivative_amplitudes: np.ndarray, native: np.ndarray,
                               grid: CellGrid, tv_weights: list[float],
                               settings: tv.TvSettings, convergence_tolerance: float,
                               max_iterations: int, log=None,
                               free: FreeSet | None = None) -> PhaseRetrieval:
    """Run the phase-retrieval loop; ``native`` is complex F_nat, amplitudes are |F_der|.

    With one weight in ``tv_weights`` it is used at every iteration; with several, each
    iteration takes the one of highest negentropy and the loop stops when that decreases.
    The reflections of the ``free`` set are left out of every map the loop denoises; their
    phases are still updated, from the other reflections alone, so that they can validate
    the final map without having seen their own measurement.
    """
    log = log or null_out()
    native_phases = np.exp(1j * np.angle(native))
    derivative = derivative_amplitudes * native_phases
    iterations: list[Iteration] = []
    stop_reason = STOP_MAX_ITERATIONS
    for number in range(1, max_iterations + 1):
        start = time.perf_counter()
        difference = derivative - native
        difference_map = grid.to_map(difference if free is None else free.working(difference))
        best_score, best_weight, best_map = -np.inf, None, None
        for weight in tv_weights:
            denoised = tv.denoise(difference_map, weight, settings, rescale=False)
            score = negentropy(denoised)
            if score > best_score:
                best_score, best_weight, best_map = score, weight, denoised
        if len(tv_weights) > 1 and iterations and best_score < iterations[-1].negentropy:
            stop_reason = STOP_NEGENTROPY
            print(f"    iteration {number:3d}: negentropy {best_score:.5f} below the previous "
                  f"{iterations[-1].negentropy:.5f}; stopping", file=log, flush=True)
            break
        updated = grid.to_coefficients(best_map) + native
        modulus = np.abs(updated)
        updated = np.where(modulus > 0, updated / np.where(modulus > 0, modulus, 1),
                           native_phases) * derivative_amplitudes
        change = mean_phase_change(derivative, updated)
        derivative = updated
        iterations.append(Iteration(number, best_weight, best_score, change,
                                    time.perf_counter() - start))
        print(f"    iteration {number:3d}: TV weight {best_weight:<7.4g} negentropy "
              f"{best_score:.5f}  phase change {change:8.4f} deg  "
              f"({iterations[-1].seconds:.2f} s)", file=log, flush=True)
        if change < convergence_tolerance:
            stop_reason = STOP_CONVERGED
            break
    return PhaseRetrieval(derivative, iterations, stop_reason)


#: phaseboost.loop_sampling=Auto: the loop's grid spacing d_min/3.  Benchmark family (64
#: cases): the whole of phaseboost at d_min/2 was on average as good as at d_min/3 but up to
#: 0.046 lower on weak changes; the loop at d_min/3 with the initial and final maps at d_min/2
#: gained 0.006 on average over d_min/3 throughout (up to 0.13 on weak changes, 0.018 lower
#: at most, at the noise floor).
LOOP_SAMPLING = 3.0


def loop_grid_sampling(params) -> float:
    """phaseboost.loop_sampling, or LOOP_SAMPLING when it is Auto."""
    return grid_sampling(params.phaseboost.loop_sampling, LOOP_SAMPLING)

STRONG_SIGNAL_LOOP_SCALE = 0.75


def auto_loop_weight_scale(cc_free: float | None, standard_error: float | None) -> float:
    """loop_weight_scale=Auto: STRONG_SIGNAL_LOOP_SCALE for a clear change (the initial map's
    best CC_free at least parameter_choice.CLEAR_SIGNAL_Z standard errors), else 1.  Measured
    on the benchmark family (both resolutions): 0.75 raised phaseboost's CC with the truth on
    every spread change at q >= 0.2 (+0.001 ... +0.013; those are 23-49 standard errors, 8-10
    for q0.2 x2) and cost up to 0.025 on the weak compact ones (4-6 standard errors); between,
    within +-0.003."""
    return (STRONG_SIGNAL_LOOP_SCALE if parameter_choice.is_clear_change(cc_free, standard_error)
            else 1.0)


def loop_tv_weights(initial_difference: np.ndarray, weighted_initial: np.ndarray,
                    first: Enhancement | None, grid_factor: float, grid: CellGrid, params,
                    log) -> tuple[list[float], ScanResult | None, float | None]:
    """The loop's TV weights (map units, for the map of ``initial_difference`` on the loop's
    ``grid``) by phaseboost.tv_criterion, the validation scan behind them (None for
    negentropy, whose weights are tv_weights_to_scan) and the scale applied (None for
    negentropy).  With validation: the relative weight chosen on the initial map (``first``,
    on the map grid) times ``grid_factor`` (the map grid's spacing over the loop grid's: TV's
    per-voxel weight for the same continuous regulariser grows as the spacing shrinks), or,
    when ``first`` chose none, a validation of ``weighted_initial`` on the loop grid; times
    loop_weight_scale (Auto: auto_loop_weight_scale)."""
    boost = params.phaseboost
    if choice(boost.tv_criterion) == "negentropy":
        return list(boost.tv_weights_to_scan), None, None
    if first is not None and first.tv_relative_weight is not None:
        relative, scan = first.tv_relative_weight * grid_factor, first.tv_scan
        error = first.criteria.get("tv_cc_free_standard_error")
        if grid_factor != 1:
            print(f"  Loop TV weight on the loop grid: the initial map's "
                  f"{first.tv_relative_weight:.3g} x rms times the ratio of the grid "
                  f"spacings, {grid_factor:.3g}.", file=log)
    else:
        validated = search_tv(weighted_initial, grid, params, weighted_initial, log)
        relative, scan, error = (validated.relative_weight, validated.scan,
                                 validated.standard_error)
    scale, why = boost.loop_weight_scale, ""
    if scale is None or scale is Auto:
        # the point whose CC_free the standard error belongs to (tie: the best uncollapsed)
        cc_free = (parameter_choice.best_uncollapsed(scan).score
                   if scan is not None and error else None)
        scale = auto_loop_weight_scale(cc_free, error)
        measured = (f"the initial map's best CC_free {cc_free:.4f} is {cc_free / error:.1f} "
                    f"standard errors" if cc_free is not None
                    else "no validation of the initial map")
        why = (f" ({measured}; {STRONG_SIGNAL_LOOP_SCALE:g} at "
               f"{parameter_choice.CLEAR_SIGNAL_Z:g} or more)")
    print(f"  Loop TV weight: validated on the initial difference map, times {scale:g}{why}.",
          file=log)
    weight = relative * parameter_choice.rms(grid.to_map(initial_difference))
    return [weight * scale], scan, scale


def across_phase_component(difference: np.ndarray, unit_phases: np.ndarray) -> np.ndarray:
    """The part of complex ``difference`` perpendicular to the phases ``unit_phases``
    (exp(i phi)): i Im(D exp(-i phi)) exp(i phi), what a change of phase adds to D."""
    return 1j * np.imag(difference * np.conj(unit_phases)) * unit_phases


@dataclass
class Reproducibility:
    """phaseboost.reproducibility_check: the correlation of the phase changes that the loop
    retrieves from two independent halves of the data, the threshold it was held to, and the
    resolution shells in which z's sigma was lowered to the differences' rms
    (``resolution_shells.sigmas_within_spread``: their count and the smallest ratio
    <dF^2> / <sigma^2>)."""

    correlation: float
    threshold: float
    seconds: float
    lowered_shells: int = 0
    n_shells: int = 0
    smallest_ratio: float = 1.0

    @property
    def reproducible(self) -> bool:
        return self.correlation >= self.threshold

    def as_dict(self) -> dict:
        return {"correlation": self.correlation, "threshold": self.threshold,
                "reproducible": self.reproducible, "seconds": self.seconds,
                "final_map": "retrieved" if self.reproducible else "initial",
                "fission_sigma": {"lowered_shells": self.lowered_shells,
                                  "n_shells": self.n_shells,
                                  "smallest_ratio": self.smallest_ratio}}


def check_reproducibility(derivative_amplitudes: np.ndarray, native: np.ndarray,
                          sigma_delta: np.ndarray, weights: np.ndarray | None,
                          retrieve, threshold: float, seed: int) -> Reproducibility:
    """Data fission of the loop: ``retrieve(amplitudes)`` (the loop, as run on the data) on
    |F_der| + z and |F_der| - z with z ~ N(0, sigma_delta) (two halves with independent noise
    when the amplitudes' noise is Gaussian of that sigma), and the complex correlation of the
    components of their retrieved differences F_der' - F_nat (times ``weights``, the figures
    of merit, when given) across the phases of ``native``."""
    start = time.perf_counter()
    noise = np.random.default_rng(seed).normal(size=derivative_amplitudes.shape) * sigma_delta
    unit_phases = np.exp(1j * np.angle(native))
    across = [across_phase_component(
        retrieve(np.abs(derivative_amplitudes + sign * noise)) - native, unit_phases)
        for sign in (1.0, -1.0)]
    # the correlation of the weighted components: each reflection counts weights^2
    squared = np.ones(native.shape) if weights is None else weights ** 2
    return Reproducibility(free_correlation(*across, squared), threshold,
                           time.perf_counter() - start)


#: phaseboost.final_weight_scale=Auto: below this final relative weight (x the retrieved map's
#: rms) the weight is lowered, as (relative / FINAL_WEIGHT_REFERENCE)^FINAL_WEIGHT_POWER and
#: not below FINAL_WEIGHT_FLOOR.  A weight that is a small multiple of the map's rms means the
#: rms is dominated by the change: there the loop has recovered much of the difference across
#: the model phases that the initial map's weight was also smoothing, and the best final
#: weight on the benchmark family (112 cases: both sites, 1.8 and 2.0 A, isomorphous and
#: cell +1/+2 %) lay at 0.6-0.7 of the initial one (strong spread changes, every cell-changed
#: pair), while at 0.8-1 x rms (compact and weak changes) it stayed at about 1.  Held-out
#: reflections cannot choose it, they carry the model phases: CC_free again on the retrieved
#: map chose 0.72-1.79 of the initial weight on the isomorphous cases, on a loop run without
#: them 0.89-1.2, SURE from the sigmas 0.3 (docs/parameter_choice.md).
FINAL_WEIGHT_REFERENCE = 0.7
FINAL_WEIGHT_POWER = 4.0
FINAL_WEIGHT_FLOOR = 0.6


def final_weight_scale(value, relative: float) -> tuple[float, str]:
    """phaseboost.final_weight_scale: a number as given; Auto by the final relative weight
    (see FINAL_WEIGHT_REFERENCE); with the reason for the log."""
    if value is not None and value is not Auto:
        return float(value), " (phaseboost.final_weight_scale)"
    if relative >= FINAL_WEIGHT_REFERENCE:
        return 1.0, (f" ({relative:.3g} x the retrieved map's rms, at least "
                     f"{FINAL_WEIGHT_REFERENCE:g})")
    scale = max(FINAL_WEIGHT_FLOOR, (relative / FINAL_WEIGHT_REFERENCE) ** FINAL_WEIGHT_POWER)
    return scale, (f" ({relative:.3g} x the retrieved map's rms, below "
                   f"{FINAL_WEIGHT_REFERENCE:g}: a change that dominates the map, whose phases "
                   f"the loop has recovered)")


def enhance_as_initial(first: Enhancement, difference: np.ndarray,
                       sigma_delta: np.ndarray | None, grid: CellGrid, params, log
                       ) -> Enhancement:
    """k-weight and TV-denoise the retrieved ``difference`` with the k and the TV weight chosen
    on the initial map (``first``): the same weight in map units (not the same multiple of the
    map's rms: the retrieved map has the initial map's noise and more signal), or, where the
    initial map's CC_free tied a range of weights, the weight of highest negentropy of the
    retrieved map in that range (in map units too; the initial map's CC_free peak where that
    negentropy still rises at the range's heavier end, as in diffmap); ``first``'s scans and
    criteria are kept as the record of the choice."""
    start = time.perf_counter()
    k = first.k_parameter
    coefficients = (difference if k is None
                    else difference * kweight.kweights(difference, sigma_delta, k))
    weighted_map = grid.to_map(coefficients)
    final_map, weight, relative = weighted_map, None, first.tv_relative_weight
    tied = first.criteria.get("tv_tied_range")
    retrieved_rms = parameter_choice.rms(weighted_map)
    to_retrieved = 1.0
    if relative is not None and choice(params.tv.mode) == "optimize" and retrieved_rms > 0:
        # the initial map's weights in map units: the retrieved map carries the same
        # measurement noise (the loop keeps the measured amplitudes) while its rms grows with
        # the signal the new phases recover, so the same multiple of its rms would smooth more
        to_retrieved = first.tv_weight / relative / retrieved_rms
        relative *= to_retrieved
        tied = [bound * to_retrieved for bound in tied] if tied else tied
    if relative is not None and tied and tied[1] > tied[0] and \
            choice(params.validation.within_noise) == "negentropy":
        # the weights the initial map's CC_free could not tell apart: as in diffmap, the
        # negentropy of the (retrieved) full map decides among them
        print(f"  TV weight: the highest negentropy of the retrieved map between {tied[0]:.3g} "
              f"and {tied[1]:.3g} x its rms (the weights, in map units, within one standard "
              f"error of the initial map's best CC_free):", file=log)
        best = parameter_choice.best_uncollapsed(first.tv_scan) if first.tv_scan else None
        clear = best is not None and parameter_choice.is_clear_change(
            best.score, first.criteria.get("tv_cc_free_standard_error"))
        fallback = (parameter_choice.cc_free_peak(first.tv_scan,
                                                  *first.criteria["tv_tied_range"])
                    * to_retrieved if clear else None)
        _, relative, final_map, rising = parameter_choice.negentropy_within_tie(
            weighted_map, tv_settings(params), tied[0], tied[1], fallback,
            report=scan_point_logger(log, "TV weight", "negentropy", " x rms"))
        if rising and fallback is not None:
            print(f"  Negentropy still rises at {tied[1]:.3g} (no maximum inside) on a clear "
                  f"change: the initial map's CC_free peak, {relative:.3g} x rms, is taken.",
                  file=log)
        weight = relative * parameter_choice.rms(weighted_map)
    elif relative is not None:
        weight = (params.tv.weight if choice(params.tv.mode) == "fixed" else
                  relative * parameter_choice.rms(weighted_map))
        final_map = None  # denoised below, once the weight is final
    scale = None
    if relative is not None and choice(params.tv.mode) == "optimize" and \
            choice(params.tv.criterion) == "validation":
        scale, why = final_weight_scale(params.phaseboost.final_weight_scale, relative)
        print(f"  Final TV weight: the initial map's times {scale:.3g}{why}.", file=log)
        if scale != 1:
            weight, relative, final_map = weight * scale, relative * scale, None
    if final_map is None:
        final_map = tv.denoise(weighted_map, weight, tv_settings(params))
    if weight is not None:
        coefficients = grid.to_coefficients(final_map)
        print(f"  TV denoising with weight {weight:.4g} ({relative:.3g} x rms"
              f"{'' if k is None else f'; k = {k:.4g}'}): negentropy "
              f"{negentropy(final_map):.5f}", file=log)
    return dataclasses.replace(
        first, coefficients=coefficients, final_map=final_map, tv_weight=weight,
        tv_relative_weight=relative, criteria={**first.criteria, "final_weight_scale": scale},
        negentropy={"raw": negentropy(grid.to_map(difference)),
                    "kweighted": negentropy(weighted_map), "final": negentropy(final_map)},
        timings={**first.timings, "final": time.perf_counter() - start})


def reproducibility_of(retrieve, derivative_amplitudes: np.ndarray, native: np.ndarray,
                       pair, params, log) -> Reproducibility | None:
    """phaseboost.reproducibility_check for the loop ``retrieve`` (amplitudes -> complex
    F_der'), with the log lines; None when it is off or the data lack sigmas."""
    boost = params.phaseboost
    if not boost.reproducibility_check:
        return None
    if pair.sigma_delta is None:
        print("  Reproducibility check skipped: the data have no sigmas.", file=log)
        return None
    print("  Reproducibility check: the loop on two halves of the data, |F_der| +- z with "
          "z ~ N(0, sigma_delta), each for at most the loop's iterations ...", file=log,
          flush=True)
    sigmas, ratios = pair.sigma_delta_within_spread()
    note = resolution_shells.lowered_shells_note(ratios)
    if note:
        print(f"    z's sigma {note}", file=log)
    check = check_reproducibility(derivative_amplitudes, native, sigmas,
                                  pair.figures_of_merit, retrieve,
                                  boost.reproducibility_threshold, params.validation.seed)
    check = dataclasses.replace(check, lowered_shells=int((ratios < 1).sum()),
                                n_shells=ratios.size, smallest_ratio=float(min(ratios.min(), 1)))
    verdict = ("reproducible" if check.reproducible else
               "NOT reproducible: the loop's phase change is within the noise")
    print(f"    correlation of the halves' phase changes {check.correlation:.3f} (threshold "
          f"{check.threshold:g}): {verdict} ({check.seconds:.1f} s)", file=log)
    return check


@dataclass
class PhaseboostResult(DiffmapResult):
    """DiffmapResult plus the retrieved derivative and the loop's history."""

    derivative_coefficients: miller.array | None = None  # F_DERIV/PHI_DERIV
    iterations: list[Iteration] = field(default_factory=list)
    stop_reason: str = ""
    loop_tv_scan: ScanResult | None = None  # validation scan behind the loop's TV weight


def compute_phaseboost(derivative: miller.array, native: miller.array, phases: miller.array,
                       params=None, log=None, on_scaled=None) -> PhaseboostResult:
    """Derivative-minus-native map with derivative phases retrieved by iterative TV.

    ``params`` is the phaseboost PHIL extract (defaults when None): scaling, kweight, tv, map
    and phaseboost scopes.  Inputs (and ``on_scaled``) as for compute_diffmap.
    """
    params = params if params is not None else default_params("phaseboost")
    log = log or null_out()
    start = time.perf_counter()
    sampling = tv_grid_sampling(params)
    pair, grid = scale_and_grid(derivative, native, phases, params, log, sampling)
    if on_scaled is not None:
        on_scaled(pair)
    loop_sampling = loop_grid_sampling(params)
    loop_grid = grid if loop_sampling == sampling else \
        CellGrid.for_set(pair.derivative, sampling=loop_sampling)
    if loop_grid is not grid:
        print(f"  Loop grid {loop_grid.n_real[0]} x {loop_grid.n_real[1]} x "
              f"{loop_grid.n_real[2]} ({loop_grid.n_voxels} voxels, spacing about "
              f"d_min/{loop_sampling:g}); the initial and final maps on the map grid",
              file=log)
    native_coefficients = pair.native.data().as_numpy_array() * pair.unit_phases
    derivative_amplitudes = pair.derivative.data().as_numpy_array()
    boost = params.phaseboost
    initial = pair.raw_difference
    weighted_initial = pair.weighted(initial)
    loop_start = time.perf_counter()
    as_initial = choice(boost.final_parameters) == "initial"
    first = None
    if as_initial:
        print("  k-weighting and TV denoising chosen on the initial difference map:", file=log)
        first = enhance(weighted_initial, pair.sigma_delta, grid, params, log)
    loop_weights, loop_scan, loop_scale = loop_tv_weights(
        initial, weighted_initial, first, loop_sampling / sampling, loop_grid, params, log)
    validating = "validation" in (choice(params.tv.criterion), choice(params.kweight.criterion))
    # re-chosen after the loop by validation: its free reflections must not enter the loop
    free = free_set(loop_grid, params) if validating and not as_initial else None
    print(f"  Iterative TV phase retrieval (weights {' '.join(f'{w:.4g}' for w in loop_weights)}"
          f", tolerance {boost.convergence_tolerance} deg, at most {boost.max_iterations} "
          f"iterations{'' if free is None else f'; {free.n_free} free reflections left out'}):",
          file=log)
    def retrieve(amplitudes: np.ndarray, max_iterations: int, loop_log=None) -> PhaseRetrieval:
        return retrieve_derivative_phases(
            amplitudes, native_coefficients, loop_grid, loop_weights, tv_settings(params),
            boost.convergence_tolerance, max_iterations, loop_log, free)

    retrieval = retrieve(derivative_amplitudes, boost.max_iterations, log)
    loop_seconds = time.perf_counter() - loop_start
    print(f"  Stopped after {len(retrieval.iterations)} iterations: {retrieval.stop_reason}",
          file=log)
    # the halves run at most as many iterations as the loop on the data did
    reproducibility = reproducibility_of(
        lambda amplitudes: retrieve(amplitudes, len(retrieval.iterations)).derivative,
        derivative_amplitudes, native_coefficients, pair, params, log)
    retrieved_difference = retrieval.derivative - native_coefficients
    if reproducibility is not None and not reproducibility.reproducible:
        print("  Final map: the initial difference map (the retrieved phase change is not "
              "reproducible).", file=log)
        enhancement = first if as_initial else enhance(weighted_initial, pair.sigma_delta,
                                                       grid, params, log)
    elif as_initial:
        print("  Final map of F_der' - F_nat with the initial map's k and TV weight:", file=log)
        enhancement = enhance_as_initial(first, pair.weighted(retrieved_difference),
                                         pair.sigma_delta, grid, params, log)
    else:
        print("  Final k-weighting and TV denoising of F_der' - F_nat:", file=log)
        enhancement = enhance(pair.weighted(retrieved_difference), pair.sigma_delta, grid,
                              params, log)
    metadata = result_metadata(pair, grid, enhancement, sampling)
    metadata.update(loop_sampling=loop_sampling, loop_grid=list(loop_grid.n_real),
                    stop_reason=retrieval.stop_reason,
                    iterations=[vars(i) for i in retrieval.iterations],
                    loop_tv_weights=loop_weights, loop_weight_scale=loop_scale,
                    reproducibility=reproducibility.as_dict() if reproducibility else None,
                    loop_tv_scan=loop_scan.as_dict() if loop_scan else None)
    metadata["timings_seconds"].update(phase_retrieval=loop_seconds,
                                       reproducibility_check=reproducibility.seconds
                                       if reproducibility else None,
                                       total=time.perf_counter() - start)
    return PhaseboostResult(
        map_coefficients=complex_array(pair.derivative, enhancement.coefficients),
        raw_coefficients=complex_array(pair.derivative, initial), pair=pair, grid=grid,
        final_map=enhancement.final_map, k_parameter=enhancement.k_parameter,
        tv_weight=enhancement.tv_weight, kweight_scan=enhancement.kweight_scan,
        tv_scan=enhancement.tv_scan, metadata=metadata,
        derivative_coefficients=complex_array(pair.derivative, retrieval.derivative),
        iterations=retrieval.iterations, stop_reason=retrieval.stop_reason,
        loop_tv_scan=loop_scan)
