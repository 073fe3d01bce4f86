"""The isomorphous difference map (derivative minus native) on miller arrays: the library API.

    from meteor_cctbx.diffmap import compute_diffmap
    result = compute_diffmap(derivative, native, f_model)   # miller arrays in
    result.map_coefficients                                  # complex miller array out

``derivative`` and ``native`` are amplitude arrays (|F|, sigmas recommended); ``phases`` is a
complex array (F_model or FC,PHIC: amplitudes serve as the scaling reference, phases as the
phases of both data sets), or complex numbers of modulus one when only phases are known (then
the derivative is scaled onto the native).  Steps: common reflections -> scaling ->
dF = (|F_der| - |F_nat|) exp(i phi) -> times the figures of merit m of the model phases
(figure_of_merit.mode; not with phases alone) -> k-weighting -> TV denoising.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
from libtbx import Auto
from libtbx.utils import Sorry, null_out

from meteor_cctbx import kweight, parameter_choice, resolution_shells, tv
from meteor_cctbx.figure_of_merit import sigmaa_figures_of_merit
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.maximize import ScanResult, scan_point_logger
from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.phil import choice, default_params
from meteor_cctbx.reflections import fmt_cell, max_cell_difference
from meteor_cctbx.scaling import ScaleFit, fit_scale
from meteor_cctbx.validation import FreeScorer, FreeSet


@dataclass
class ScaledPair:
    """Derivative and native amplitudes on common reflections, scaled, with unit phases."""

    derivative: miller.array
    native: miller.array
    unit_phases: np.ndarray  # exp(i phi), complex, one per reflection
    derivative_scale: ScaleFit
    native_scale: ScaleFit
    #: figure of merit of each model phase (figure_of_merit.mode; None: not weighted)
    figures_of_merit: np.ndarray | None = None

    @property
    def delta_f(self) -> np.ndarray:
        """|F_der| - |F_nat| (scaled), signed."""
        return self.derivative.data().as_numpy_array() - self.native.data().as_numpy_array()

    @property
    def raw_difference(self) -> np.ndarray:
        """(|F_der| - |F_nat|) exp(i phi), unweighted (DF_RAW)."""
        return self.delta_f * self.unit_phases

    def weighted(self, coefficients: np.ndarray) -> np.ndarray:
        """``coefficients`` times the figures of merit (unchanged without them)."""
        return coefficients if self.figures_of_merit is None else \
            coefficients * self.figures_of_merit

    @property
    def weighted_difference(self) -> np.ndarray:
        """m (|F_der| - |F_nat|) exp(i phi): the difference the map is made of."""
        return self.weighted(self.raw_difference)

    @property
    def sigma_delta(self) -> np.ndarray | None:
        """sqrt(sigma_der^2 + sigma_nat^2), or None when either data set lacks sigmas."""
        if self.derivative.sigmas() is None or self.native.sigmas() is None:
            return None
        return np.hypot(self.derivative.sigmas().as_numpy_array(),
                        self.native.sigmas().as_numpy_array())

    def sigma_delta_within_spread(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """sigma_delta held to the spread of delta_f by resolution shell
        (``resolution_shells.sigmas_within_spread``: where |F_der| - |F_nat| spread less than
        their sigmas say, the noise is their rms) and each shell's ratio <dF^2> / <sigma^2>;
        (None, None) without sigmas."""
        if self.sigma_delta is None:
            return None, None
        return resolution_shells.sigmas_within_spread(
            self.sigma_delta, self.delta_f, self.derivative.d_spacings().data().as_numpy_array())


def on_native_symmetry(array: miller.array, native: miller.array, what: str,
                       max_cell_difference_percent: float = 3.0) -> miller.array:
    """``array`` given the native's crystal symmetry when its cell differs a little (real pairs
    differ by a few per cent); Sorry for another space group or a cell beyond the threshold."""
    from meteor_cctbx.reflections import check_same_crystal_form

    if array.crystal_symmetry().is_similar_symmetry(native.crystal_symmetry()):
        return array
    check_same_crystal_form(array.crystal_symmetry(), native.crystal_symmetry(), f"The {what}",
                            "the native", max_cell_difference_percent,
                            "give data of the same crystal form",
                            "the data are not isomorphous (raise the threshold to proceed)")
    return array.customized_copy(crystal_symmetry=native.crystal_symmetry())


def common_reflections(derivative: miller.array, native: miller.array, phases: miller.array,
                       max_cell_difference_percent: float = 3.0
                       ) -> tuple[miller.array, miller.array, miller.array]:
    """The three arrays restricted to the reflections all of them have, in the same order, on
    the native's crystal symmetry (see ``on_native_symmetry``)."""
    derivative = on_native_symmetry(derivative, native, "derivative",
                                    max_cell_difference_percent)
    phases = on_native_symmetry(phases, native, "phase source", max_cell_difference_percent)
    derivative, native = derivative.common_sets(native)
    derivative, phases = derivative.common_sets(phases)
    native, _ = native.common_sets(derivative)
    if derivative.size() == 0:
        raise Sorry("The derivative, native and phases share no reflections: check that they "
                    "belong to the same crystal form and resolution range.")
    return derivative, native, phases


def scale_pair(derivative: miller.array, native: miller.array, phases: miller.array,
               mode: str, max_cell_difference_percent: float = 3.0,
               figure_of_merit: str = "none") -> ScaledPair:
    """Scale both data sets to |phases| (when it carries amplitudes) or the derivative to the
    native (when the phases have unit modulus); return them with the unit phases and, for
    ``figure_of_merit`` = "sigmaa" and phases with amplitudes, the phases' figures of merit."""
    derivative, native, phases = common_reflections(derivative, native, phases,
                                                    max_cell_difference_percent)
    values = phases.data().as_numpy_array()
    modulus = np.abs(values)
    unit_phases = np.where(modulus > 0, values / np.where(modulus > 0, modulus, 1), 1.0 + 0j)
    phases_only = np.allclose(modulus[modulus > 0], 1.0)
    reference = native if phases_only else abs(phases)
    native_fit = fit_scale(native, reference, "none" if phases_only else mode)
    scaled_native = native_fit.apply(native)
    derivative_fit = fit_scale(derivative, scaled_native if phases_only else reference, mode)
    figures = (sigmaa_figures_of_merit(scaled_native, phases)
               if figure_of_merit == "sigmaa" and not phases_only else None)
    return ScaledPair(derivative_fit.apply(derivative), scaled_native, unit_phases,
                      derivative_fit, native_fit, figures)


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


def tv_settings(params) -> tv.TvSettings:
    return tv.TvSettings(max_iterations=params.tv.max_iterations,
                         tolerance=params.tv.tolerance, periodic=params.tv.periodic)


def free_set(grid: CellGrid, params) -> FreeSet:
    """The free reflections of the grid's set (validation.free_fraction, validation.seed)."""
    return FreeSet.draw(grid.miller_set, params.validation.free_fraction,
                        params.validation.seed, params.validation.n_folds)


def free_scorer(grid: CellGrid, raw: np.ndarray, params) -> FreeScorer:
    """Scorer against the measured (unweighted) difference at the free reflections."""
    return FreeScorer(grid, free_set(grid, params), raw,
                      n_bootstrap=params.validation.n_bootstrap)


def search_range(coefficients: np.ndarray, grid: CellGrid, params) -> tuple[float, float]:
    """TV search range relative to the map rms (tv.relative_search_range, or tv.search_range
    in map units)."""
    absolute = tuple(params.tv.search_range) if params.tv.search_range else None
    return parameter_choice.relative_search_range(
        absolute, tuple(params.tv.relative_search_range),
        parameter_choice.rms(grid.to_map(coefficients)))


def search_tv(coefficients: np.ndarray, grid: CellGrid, params, raw: np.ndarray, log,
              relative_range: tuple[float, float] | None = None, n_coarse: int = 5,
              scorer: FreeScorer | None = None) -> parameter_choice.TvChoice:
    """TV weight search (tv.criterion) for ``coefficients``; validation against ``raw`` (with
    ``scorer``, or a new one)."""
    criterion = choice(params.tv.criterion)
    relative_range = relative_range or search_range(coefficients, grid, params)
    print(f"  Choosing the TV weight by {criterion} (relative weights "
          f"{relative_range[0]:.3g}-{relative_range[1]:.3g} x map rms):", file=log)
    if criterion == "validation":
        scorer = scorer or free_scorer(grid, raw, params)
    else:
        scorer = None
    if scorer is not None:
        print(f"    {scorer.free_set.n_free} free reflections in {scorer.free_set.n_folds} "
              f"fold(s) of {params.validation.free_fraction:.0%} (seed "
              f"{params.validation.seed}); each scan point denoises one working map per fold",
              file=log)
    within_noise = choice(params.validation.within_noise)
    chosen = parameter_choice.choose_tv_weight(
        coefficients, grid, tv_settings(params), criterion, relative_range, scorer,
        n_coarse=n_coarse, within_noise=within_noise,
        report=scan_point_logger(log, "TV weight", criterion, " x rms"),
        report_refinement=scan_point_logger(log, "TV weight",
                                            "negentropy (all reflections)", " x rms"))
    if chosen.refinement is not None:
        lowest, highest = chosen.tied_range
        taken = (f"negentropy still rises at {highest:.3g} (no maximum inside) on a clear "
                 f"change: CC_free's peak, {chosen.relative_weight:.3g} x rms, is taken"
                 if chosen.best_cc_free_taken else
                 f"the weight of highest negentropy there is {chosen.relative_weight:.3g} x rms")
        print(f"  CC_free is within one standard error of the best from {lowest:.3g} to "
              f"{highest:.3g} x rms: {taken}.", file=log)
    if not chosen.determined:
        best = parameter_choice.best_uncollapsed(chosen.scan)  # the point tie() measured
        print(f"  Warning: no difference signal above noise in the held-out reflections (best "
              f"CC_free {best.score:.4f}, standard error "
              f"{chosen.standard_error:.4f}): the TV weight is not determined by validation; "
              f"using the scan's highest negentropy, {chosen.relative_weight:.3g} x rms.",
              file=log)
    return chosen


def search_k(raw: np.ndarray, sigma_delta: np.ndarray, grid: CellGrid, params,
             tv_relative_weight: float | None, log, scorer: FreeScorer | None = None,
             tv_scan: ScanResult | None = None) -> parameter_choice.KChoice:
    """k search (kweight.criterion); validation scores each k after TV at
    ``tv_relative_weight`` (with ``scorer``, or a new one; k = 0 is taken from ``tv_scan``
    when that scan, by the same scorer, has the point), and falls back to negentropy when there
    is no TV step."""
    criterion = choice(params.kweight.criterion)
    if criterion == "validation" and tv_relative_weight is None:
        print("  k cannot be validated without TV denoising (tv.mode=none): choosing it by "
              "negentropy.", file=log)
        criterion = "negentropy"
    where = f" after TV at {tv_relative_weight:.3g} x rms" if criterion == "validation" else ""
    print(f"  Choosing k by {criterion}{where}:", file=log)
    if criterion == "validation":
        scorer = scorer or free_scorer(grid, raw, params)
    else:
        scorer = tv_scan = None
    chosen = parameter_choice.choose_k(raw, sigma_delta, grid, params.kweight.k_max, criterion,
                                       scorer, tv_relative_weight, tv_settings(params),
                                       report=scan_point_logger(log, "k", criterion),
                                       tv_scan=tv_scan)
    if not chosen.determined:
        best = chosen.scan.best
        print(f"  The CC_free curve over k is flat within its noise (best k = "
              f"{best.parameter:.3g} gains {best.score - chosen.scan.point_at(0.0).score:.4f},"
              f" not above {parameter_choice.SIGNAL_Z:g} x its standard error "
              f"{chosen.standard_error:.4f}): the data do not determine k; "
              f"using the simplest value, k = 0.", file=log)
    return chosen


@dataclass
class Enhancement:
    """k-weighting then TV denoising of difference coefficients, with their scans.

    ``tv_weight`` is in map units (e/A^3 on the model's scale), ``tv_relative_weight`` in units
    of the rms of the map that was denoised."""

    coefficients: np.ndarray
    final_map: np.ndarray
    k_parameter: float | None
    kweight_scan: ScanResult | None
    tv_weight: float | None
    tv_scan: ScanResult | None
    negentropy: dict
    timings: dict
    tv_relative_weight: float | None = None
    criteria: dict = field(default_factory=dict)
    k_determined: bool | None = None


def enhance(raw: np.ndarray, sigma_delta: np.ndarray | None, grid: CellGrid, params, log
            ) -> Enhancement:
    """k-weight (kweight.*) then TV-denoise (tv.*) difference coefficients ``raw``.

    With kweight.criterion=validation, the TV weight is chosen first at k = 0, k is then
    validated through TV at that weight, and the TV weight is refined around it if k moved.
    """
    timings = {}
    raw_map = grid.to_map(raw)
    print(f"  Difference map rms {raw_map.std():.4g}, negentropy {negentropy(raw_map):.5f}",
          file=log)
    k_mode, tv_mode = choice(params.kweight.mode), choice(params.tv.mode)
    if k_mode != "none" and sigma_delta is None:
        raise Sorry("k-weighting needs sigmas for both data sets and at least one has none: "
                    "give F,SIGF labels or set kweight.mode=none.")
    if k_mode == "none" and sigma_delta is None:
        print("  Warning: data without sigmas; fine without k-weighting, but the map "
              "cannot down-weight poorly measured reflections.", file=log)
    step = time.perf_counter()
    k, k_choice, first_tv = None, None, None
    if k_mode == "fixed":
        k = params.kweight.k_parameter
    elif k_mode == "optimize":
        tv_relative, scorer = None, None
        if choice(params.kweight.criterion) == "validation" and tv_mode != "none":
            k0_coefficients = raw * kweight.kweights(raw, sigma_delta, 0.0)
            scorer = free_scorer(grid, raw, params)  # one free set for the TV weight and k
            if tv_mode == "optimize":
                first_tv = search_tv(k0_coefficients, grid, params, raw, log, scorer=scorer)
                tv_relative = first_tv.relative_weight
            else:
                tv_relative = params.tv.weight / parameter_choice.rms(
                    grid.to_map(k0_coefficients))
        k_choice = search_k(raw, sigma_delta, grid, params, tv_relative, log, scorer,
                            first_tv.scan if first_tv is not None else None)
        k = k_choice.k
    coefficients = raw if k is None else raw * kweight.kweights(raw, sigma_delta, k)
    weighted_map = raw_map if k is None else grid.to_map(coefficients)
    timings["kweight"] = time.perf_counter() - step
    if k is not None:
        print(f"  k-weighting with k = {k:.4g}: negentropy {negentropy(weighted_map):.5f}",
              file=log)
    step = time.perf_counter()
    final_map, weight, relative, tv_choice = weighted_map, None, None, None
    if tv_mode == "fixed":
        weight = params.tv.weight
        final_map = tv.denoise(weighted_map, weight, tv_settings(params))
        relative = weight / parameter_choice.rms(weighted_map)
    elif tv_mode == "optimize":
        if first_tv is not None and k == 0.0:
            tv_choice = first_tv  # the k = 0 search already denoised this very map
        elif first_tv is not None:
            tv_choice = search_tv(coefficients, grid, params, raw, log,
                                  parameter_choice.refined_range(
                                      first_tv.relative_weight,
                                      search_range(coefficients, grid, params)), n_coarse=3)
        else:
            tv_choice = search_tv(coefficients, grid, params, raw, log)
        final_map, weight, relative = (tv_choice.denoised_map, tv_choice.weight,
                                       tv_choice.relative_weight)
    if weight is not None:
        coefficients = grid.to_coefficients(final_map)
        print(f"  TV denoising with weight {weight:.4g} ({relative:.3g} x rms): negentropy "
              f"{negentropy(final_map):.5f}", file=log)
    timings["tv"] = time.perf_counter() - step
    criteria = {"kweight": k_choice.criterion if k_choice else None,
                "tv": tv_choice.criterion if tv_choice else None,
                "tv_determined_by_data": tv_choice.determined if tv_choice else None,
                # bootstrap standard errors of CC_free (validation.n_bootstrap) behind the
                # determined / not determined decisions; None without validation
                "tv_cc_free_standard_error": tv_choice.standard_error if tv_choice else None,
                "k_cc_free_standard_error": k_choice.standard_error if k_choice else None,
                # relative weights whose CC_free is within one standard error of the best,
                # and the full-map negentropy scan between them (validation.within_noise)
                "tv_tied_range": list(tv_choice.tied_range)
                if tv_choice and tv_choice.tied_range else None,
                "tv_refinement_scan": tv_choice.refinement.as_dict()
                if tv_choice and tv_choice.refinement else None,
                # a clear change whose full-map negentropy still rose at the tie's heavier
                # end: CC_free's peak was taken (parameter_choice.cc_free_peak)
                "tv_best_cc_free_taken": tv_choice.best_cc_free_taken if tv_choice else None}
    return Enhancement(coefficients, final_map, k, k_choice.scan if k_choice else None, weight,
                       tv_choice.scan if tv_choice else None,
                       {"raw": negentropy(raw_map), "kweighted": negentropy(weighted_map),
                        "final": negentropy(final_map)}, timings, relative, criteria,
                       k_choice.determined if k_choice else None)


#: map.sampling=Auto of a difference map's TV stage: grid spacing d_min/2 (the data's Nyquist
#: rate).  On the benchmark family (64 cases) against d_min/3: CC with the truth +0.011 on
#: average, up to +0.13 on weak changes, at most 0.002 lower on strong ones, lower (by up to
#: 0.041) only on three twice-noisy cases at the noise floor; a third of the voxels.
DIFFMAP_SAMPLING = 2.0


def grid_sampling(sampling, default: float) -> float:
    """A grid-sampling parameter's value, or ``default`` when it is Auto (or None)."""
    return default if sampling is None or sampling is Auto else float(sampling)


def tv_grid_sampling(params) -> float:
    """map.sampling, or DIFFMAP_SAMPLING when it is Auto (every difference map's TV stage)."""
    return grid_sampling(params.map.sampling, DIFFMAP_SAMPLING)


def scale_and_grid(derivative: miller.array, native: miller.array, phases: miller.array,
                   params, log, sampling: float) -> tuple[ScaledPair, CellGrid]:
    """Scale the pair (scaling.mode) and build the unit-cell grid of spacing about
    d_min/``sampling`` (map.sampling as tv_grid_sampling resolves it); log both."""
    scaling_mode = choice(params.scaling.mode)
    if not derivative.crystal_symmetry().is_similar_symmetry(native.crystal_symmetry()):
        print(f"  The derivative's cell ({fmt_cell(derivative.unit_cell())}) differs by "
              f"{max_cell_difference(derivative.unit_cell(), native.unit_cell()):.2f} % from "
              f"the native's ({fmt_cell(native.unit_cell())}): its reflections are put on "
              f"the native's cell.", file=log)
    fom_mode = choice(params.figure_of_merit.mode)
    pair = scale_pair(derivative, native, phases, scaling_mode,
                      params.isomorphism.max_cell_difference, fom_mode)
    d, n = pair.derivative_scale, pair.native_scale
    print(f"  Scaling ({scaling_mode}) on {pair.derivative.size()} common reflections: "
          f"derivative k={d.k:.4g} B_iso={d.b_iso:.2f} A^2 R {d.r_before:.3f} -> "
          f"{d.r_after:.3f}; native k={n.k:.4g} B_iso={n.b_iso:.2f} A^2 R {n.r_before:.3f} -> "
          f"{n.r_after:.3f}", file=log)
    if pair.figures_of_merit is not None:
        print(f"  Difference weighted by the figures of merit of the model phases (sigmaA): "
              f"mean m {pair.figures_of_merit.mean():.3f}", file=log)
    elif fom_mode == "sigmaa":
        print("  The phases carry no amplitudes: no figures of merit, the difference is not "
              "weighted by them.", file=log)
    grid = CellGrid.for_set(pair.derivative, sampling=sampling)
    print(f"  Map grid {grid.n_real[0]} x {grid.n_real[1]} x {grid.n_real[2]} "
          f"({grid.n_voxels} voxels, spacing about d_min/{sampling:g})", file=log)
    return pair, grid


def complex_array(miller_set: miller.set, values: np.ndarray) -> miller.array:
    return miller.array(miller_set, flex.complex_double(np.asarray(values, np.complex128)))


def result_metadata(pair: ScaledPair, grid: CellGrid, enhancement: Enhancement,
                    sampling: float) -> dict:
    """Scaling, negentropies, chosen parameters, scans and timings for the run record."""
    return {"n_reflections": pair.derivative.size(), "grid": list(grid.n_real),
            "map_sampling": sampling,
            "mean_figure_of_merit": None if pair.figures_of_merit is None
            else float(pair.figures_of_merit.mean()),
            "scaling": {"derivative": pair.derivative_scale.as_dict(),
                        "native": pair.native_scale.as_dict()},
            "negentropy": enhancement.negentropy,
            "k_parameter": enhancement.k_parameter, "tv_weight": enhancement.tv_weight,
            "tv_weight_relative": enhancement.tv_relative_weight,
            "criteria": enhancement.criteria, "k_determined_by_data": enhancement.k_determined,
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
    sampling = tv_grid_sampling(params)
    pair, grid = scale_and_grid(derivative, native, phases, params, log, sampling)
    if on_scaled is not None:
        on_scaled(pair)
    prepared = time.perf_counter()
    raw = pair.raw_difference
    enhancement = enhance(pair.weighted(raw), pair.sigma_delta, grid, params, log)
    metadata = result_metadata(pair, grid, enhancement, sampling)
    metadata["timings_seconds"].update(scaling_and_grid=prepared - start,
                                       total=time.perf_counter() - start)
    return DiffmapResult(
        map_coefficients=complex_array(pair.derivative, enhancement.coefficients),
        raw_coefficients=complex_array(pair.derivative, raw), pair=pair, grid=grid,
        final_map=enhancement.final_map, k_parameter=enhancement.k_parameter,
        tv_weight=enhancement.tv_weight, kweight_scan=enhancement.kweight_scan,
        tv_scan=enhancement.tv_scan, metadata=metadata)
