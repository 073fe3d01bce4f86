"""Choice of the k-weighting parameter and the TV weight of a difference map, by validation
against held-out reflections (default) or by the map's negentropy.

TV weights are searched in units of the rms of the map being denoised (``relative`` weights),
so the useful range does not move with the data's scale; the weight applied is reported in map
units too (e/A^3 for data on the model's scale).

* ``validation``: every candidate denoises the map of the working reflections of each free
  fold and is scored by CC_free pooled over the folds (``validation.FreeScorer``); the mean
  negentropy of the denoised working maps is recorded beside it.  Maps denoised past the
  negentropy maximum until their negentropy collapses (a map flattened to almost nothing) are
  not candidates.  The two ends of the coarse scan (0.1 and 10 x rms by default, where no
  change of the benchmark family had its optimum) are scored only when the scan needs them:
  when the best point lies next to one, or when the scan's end point beside one is tied with
  the best (a flat curve, whose tie must reach as far as before).  The scan points whose
  CC_free is within one paired bootstrap standard error of the best are tied: the data cannot
  tell them apart (the tie's ends are resolved to the scan's tolerance,
  ``tie_boundary_probes``).  Among them the weight is the one of highest negentropy of the
  full map (refined between the smallest and largest tied weight): on weak changes the
  optimum is sharp (a 15 % change of weight can cost 0.1 in CC with the truth) and lies where
  TV just removes the noise, which is where negentropy peaks, while CC_free is flat within its
  noise there; on strong changes the tie is narrow and CC_free decides.  Where the full map's
  negentropy has no maximum inside the tie but still rises at its heavier end (negentropy's
  own bias: it keeps growing as TV flattens a map), CC_free's peak is taken instead
  (``negentropy_within_tie``, ``cc_free_peak``: the vertex of a parabola through the scan points
  near the best, kept within the tie) on a clear change (best CC_free at least CLEAR_SIGNAL_Z
  standard errors).  When the best
  CC_free is below two standard errors (no difference signal the held-out reflections can
  see) every scan point is tied, and the log says so.  The final map
  is the full map denoised at the chosen weight.  k is chosen with TV applied (each k scored
  through the TV weight chosen at k = 0), and unless the best k beats k = 0 by more than
  SIGNAL_Z paired bootstrap standard errors (and K_MIN_GAIN) the data do not determine k, which
  is then 0: the best of several k against k = 0 is a selection, and at one standard error a
  noisy free set moved k to 1 on weak changes of the benchmark family's second site (gains of
  1.6 standard errors that other free-set seeds did not reproduce, costing up to 0.16 in CC
  with the truth).
* ``negentropy``: the denoised full map of highest negentropy (and k on the map before TV), as
  in meteor-maps.  On weak, spread-out changes its maximum lies past the weight that keeps the
  signal best (the negentropy of a map keeps rising as TV flattens it into a few blobs).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from meteor_cctbx import kweight, tv, voxel_statistics
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.maximize import ScanPoint, ScanResult, evaluate_point, maximize_scalar
from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.validation import FreeScorer

K_SCAN_POINTS = 3  # k = 0, k_max/2 (k_max only when k_max/2 is the better), then refinement
K_TOLERANCE_FRACTION = 0.25  # final k bracket, as a fraction of k_max
K_MIN_GAIN = 0.001  # a CC_free gain below this is of no consequence: k = 0, the simplest
REFINE_HALF_WIDTH = 0.3      # decades around the first TV weight when k changed it


SIGNAL_Z = 2.0  # CC_free (or k's gain over k = 0) must exceed this many standard errors
CLEAR_SIGNAL_Z = 10.0  # a best CC_free of this many standard errors or more: a clear change
NEGENTROPY_TOLERANCE = 0.02  # decades: the optimum of weak changes is that sharp
COLLAPSED_NEGENTROPY = 0.1  # see is_collapsed
MAX_BOUNDARY_PROBES = 6  # rounds of tie_boundary_probes (each halves a gap, 0.5 decade -> 0.1)
PEAK_FIT_HALF_WIDTH = 0.3  # decades: the scan points around the best that locate CC_free's peak


@dataclass
class TvChoice:
    """The chosen TV weight (relative to the map rms and in map units), its scan (parameters
    are relative weights) and the full map denoised at it.  ``determined`` is False when the
    validation found no signal above noise and the weight fell back to negentropy."""

    relative_weight: float
    weight: float
    criterion: str
    scan: ScanResult
    denoised_map: np.ndarray
    determined: bool = True
    standard_error: float | None = None
    refinement: ScanResult | None = None  # full-map negentropy within the tied range
    tied_range: tuple[float, float] | None = None  # relative weights within one SE of the best
    #: a clear change whose full-map negentropy still rose at the tie's heavier end: CC_free's
    #: peak (cc_free_peak) was taken instead of negentropy's choice
    best_cc_free_taken: bool = False


@dataclass
class KChoice:
    """The chosen k, its scan, and whether the data determined it."""

    k: float
    criterion: str
    scan: ScanResult
    determined: bool
    standard_error: float | None = None


def rms(real_map: np.ndarray) -> float:
    """Root-mean-square deviation of a map from its mean (map units)."""
    return voxel_statistics.mean_std(real_map)[1]


def choose_tv_weight(coefficients: np.ndarray, grid: CellGrid, settings: tv.TvSettings,
                     criterion: str, relative_range: tuple[float, float],
                     scorer: FreeScorer | None = None, n_coarse: int = 5,
                     tolerance: float = 0.1, within_noise: str = "negentropy",
                     report: Callable[[ScanPoint], None] | None = None,
                     report_refinement: Callable[[ScanPoint], None] | None = None) -> TvChoice:
    """Search the relative TV weight in ``relative_range`` (log scale, ``tolerance`` decades)
    for difference ``coefficients`` on ``grid``, by ``criterion``.

    With validation, ``within_noise`` says how the weight is taken among the scan points whose
    CC_free is within one paired standard error of the best: ``negentropy`` maximises the
    negentropy of the full map between the smallest and largest of them (to
    NEGENTROPY_TOLERANCE decades; reported through ``report_refinement``), ``best`` keeps the
    best-scoring point.
    """
    full_map = grid.to_map(coefficients)
    full_rms = rms(full_map)
    lower, upper = relative_range
    if criterion == "negentropy":
        scan, relative, denoised = maximize_negentropy(
            full_map, settings, lower, upper, n_coarse=n_coarse, tolerance=tolerance,
            extra_points=(0.0,), report=report)
        return TvChoice(relative, relative * full_rms, criterion, scan, denoised)
    if scorer is None:
        raise ValueError("validation needs a FreeScorer")
    working_maps = scorer.working_maps(coefficients)
    working_rms = [rms(working_map) for working_map in working_maps]

    def validated(relative: float) -> tuple[float, dict]:
        return score_working_maps(scorer, relative, working_maps, working_rms, relative,
                                  settings)

    def score_and_tie(relatives: list[float]):
        """Score more weights into the scan, then the tie again."""
        for x in relatives:
            point = evaluate_point(validated, x)
            scan.points.append(point)
            if report is not None:
                report(point)
        return tie(scan, scorer)

    scan = maximize_scalar(validated, lower, upper, name="tv_weight_relative",
                           n_coarse=n_coarse, log_scale=True, tolerance=tolerance,
                           lazy_ends=("lower", "upper"), report=report)
    best = best_uncollapsed(scan)
    if best is not scan.best:  # the maximum lay on collapsed maps: search again below them
        collapsed = min(p.parameter for p in scan.points
                        if p.parameter > best.parameter and is_collapsed(p, scan))
        factor = 10.0 ** REFINE_HALF_WIDTH
        rescan = maximize_scalar(validated, max(lower, best.parameter / factor),
                                 min(collapsed, best.parameter * factor),
                                 name="tv_weight_relative", n_coarse=3, log_scale=True,
                                 tolerance=tolerance, report=report)
        scan.points.extend(p for p in rescan.points
                           if p.parameter not in {q.parameter for q in scan.points})
        best = best_uncollapsed(scan)
    best, error, determined, tied = tie(scan, scorer)
    while True:  # a coarse end point left out beside a tied end of the scan: score it too
        evaluated = sorted(p.parameter for p in scan.points)
        tied_parameters = {p.parameter for p in tied}
        ends = [x for x in scan.skipped
                if (evaluated[0] if x < evaluated[0] else evaluated[-1]) in tied_parameters]
        if not ends:
            break
        scan.skipped = [x for x in scan.skipped if x not in ends]
        best, error, determined, tied = score_and_tie(ends)
    for _ in range(MAX_BOUNDARY_PROBES):  # the tie's ends resolved to the scan's tolerance
        probes = tie_boundary_probes(scan, tied, tolerance)
        if not probes:
            break
        best, error, determined, tied = score_and_tie(probes)
    lowest, highest = min(p.parameter for p in tied), max(p.parameter for p in tied)
    refinement, taken = None, False
    if within_noise == "negentropy" and highest > lowest:
        clear = is_clear_change(best.score, error)
        refinement, relative, denoised, rising = negentropy_within_tie(
            full_map, settings, lowest, highest,
            cc_free_peak(scan, lowest, highest) if clear else None, report_refinement)
        taken = rising and clear
    else:
        relative = best.parameter
        denoised = tv.denoise(full_map, relative * full_rms, settings)
    return TvChoice(relative, relative * full_rms, criterion, scan, denoised, determined,
                    error, refinement, (lowest, highest), taken)


def is_clear_change(cc_free: float | None, standard_error: float | None) -> bool:
    """A best CC_free of at least CLEAR_SIGNAL_Z bootstrap standard errors (False without
    either)."""
    return (cc_free is not None and standard_error is not None and standard_error > 0
            and cc_free >= CLEAR_SIGNAL_Z * standard_error)


def cc_free_peak(scan: ScanResult, lowest: float, highest: float) -> float:
    """The relative TV weight at the peak of CC_free between the scan points: the vertex of
    the least-squares parabola in log weight through the uncollapsed points within
    PEAK_FIT_HALF_WIDTH decades of the best, kept within the tie [lowest, highest] (the best
    point's weight when fewer than three points are that close or the parabola does not open
    downwards).  On the benchmark family's non-isomorphous pairs CC_free fell faster towards
    heavier weights than towards lighter ones and the truth's optimum lay 0.05-0.12 decade
    lighter than the best scan point (0.50 against 0.56-0.70 x rms); the vertex, on the
    lighter side there, raised diffmap on 32 of those 48 cases (+0.007 on average, up to
    +0.029) and lowered none (on the built-in example it lies heavier: 0.874 -> 0.895 x rms,
    CC with the truth 0.9476 -> 0.9484)."""
    best = best_uncollapsed(scan)
    centre = math.log10(best.parameter)
    near = [(math.log10(p.parameter), p.score) for p in uncollapsed(scan)
            if p.parameter > 0 and abs(math.log10(p.parameter) - centre) <= PEAK_FIT_HALF_WIDTH]
    if len(near) < 3:
        return best.parameter
    x, y = np.array(near).T
    curvature, slope, _ = np.polyfit(x - centre, y, 2)
    if curvature >= 0:
        return best.parameter
    vertex = centre - slope / (2 * curvature)
    return float(min(max(10.0 ** vertex, lowest), highest))


def negentropy_within_tie(real_map: np.ndarray, settings: tv.TvSettings, lowest: float,
                          highest: float, fallback: float | None,
                          report: Callable[[ScanPoint], None] | None = None
                          ) -> tuple[ScanResult, float, np.ndarray, bool]:
    """The relative TV weight among the tied ones, [lowest, highest]: the one of highest
    negentropy of ``real_map`` denoised, or ``fallback`` (CC_free's peak on a clear change,
    ``cc_free_peak``; None: none) where negentropy has no maximum inside the tie but still
    rises at its heavier end.  Negentropy marks the weight where TV just removes the noise
    where it peaks; rising through the whole tie it shows its own bias (it keeps growing as TV
    flattens a map).  On
    the benchmark family's non-isomorphous pairs, whose differences are not sparse, it took
    the tie's heavier end, 0.009-0.022 below the best CC_free point in CC with the truth; on
    a weak change (3 standard errors) the best CC_free point was 0.030 worse, hence the
    fallback for clear changes only.  Returns the negentropy scan, the weight, the map
    denoised at it and whether negentropy was rising."""
    refinement, relative, denoised = maximize_negentropy(
        real_map, settings, lowest, highest, n_coarse=3, tolerance=NEGENTROPY_TOLERANCE,
        report=report)
    rising = bool(relative >= highest)
    if rising and fallback is not None and fallback != relative:
        relative = fallback
        denoised = tv.denoise(real_map, relative * rms(real_map), settings)
    return refinement, relative, denoised, rising


def score_working_maps(scorer: FreeScorer, key: Hashable, working_maps: list[np.ndarray],
                       working_rms: list[float], relative_weight: float,
                       settings: tv.TvSettings) -> tuple[float, dict]:
    """CC_free (recorded under ``key``) of the folds' working maps, each denoised at
    ``relative_weight`` x its rms, and the mean negentropy of the denoised maps."""
    denoised = [tv.denoise(working_map, relative_weight * scale, settings)
                for working_map, scale in zip(working_maps, working_rms)]
    return (scorer.score(key, denoised),
            {"negentropy": float(np.mean([negentropy(m) for m in denoised]))})


def tie(scan: ScanResult, scorer: FreeScorer
        ) -> tuple[ScanPoint, float, bool, list[ScanPoint]]:
    """The best uncollapsed point of a validation scan, the standard error of its CC_free,
    whether that is a signal (above SIGNAL_Z standard errors), and the points tied with it
    (within one paired standard error; every point when there is no signal)."""
    best = best_uncollapsed(scan)
    candidates = uncollapsed(scan)
    error, *paired_errors = scorer.difference_errors(
        best.parameter, [None] + [p.parameter for p in candidates])
    determined = best.score > SIGNAL_Z * error
    # no signal the free reflections can see: every scan point is as good as the best
    tied = [p for p, paired_error in zip(candidates, paired_errors)
            if not determined or p is best or best.score - p.score <= paired_error]
    return best, error, determined, tied


def tie_boundary_probes(scan: ScanResult, tied: list[ScanPoint], tolerance: float
                        ) -> list[float]:
    """Weights that resolve the ends of the tie where the choice within it may depend on them:
    for the lowest and the highest tied point, the geometric midpoint towards the next scored
    point beyond it (tied or not, collapsed or not) when that lies more than ``tolerance``
    decades away and the working maps' negentropy does not fall from the tied point inside
    towards that end (negentropy picks the weight within the tie, so an end it falls towards
    cannot move the choice).  The scan refines around the best point only, so a wide tie may
    end at a coarse point half a decade from the next."""
    inside = sorted((p for p in tied if p.parameter > 0), key=lambda p: p.parameter)
    if not inside:
        return []
    evaluated = sorted({p.parameter for p in scan.points if p.parameter > 0})
    below = [x for x in evaluated if x < inside[0].parameter]
    above = [x for x in evaluated if x > inside[-1].parameter]
    ends = [(inside[0], inside[1] if len(inside) > 1 else None, below[-1] if below else None),
            (inside[-1], inside[-2] if len(inside) > 1 else None, above[0] if above else None)]
    probes = []
    for end, neighbour, beyond in ends:
        if beyond is None or abs(math.log10(end.parameter / beyond)) <= tolerance:
            continue
        if neighbour is not None and (end.others.get("negentropy", 0.0)
                                      < neighbour.others.get("negentropy", 0.0)):
            continue
        probes.append(math.sqrt(end.parameter * beyond))
    return probes


def maximize_negentropy(real_map: np.ndarray, settings: tv.TvSettings, lower: float,
                        upper: float, n_coarse: int, tolerance: float,
                        extra_points: tuple[float, ...] = (),
                        report: Callable[[ScanPoint], None] | None = None
                        ) -> tuple[ScanResult, float, np.ndarray]:
    """The relative TV weight in [lower, upper] whose denoised ``real_map`` has the highest
    negentropy: the scan, the weight and that denoised map."""
    map_rms = rms(real_map)
    best: dict = {}
    lock = threading.Lock()

    def score(relative: float) -> float:
        denoised = tv.denoise(real_map, relative * map_rms, settings)
        value = negentropy(denoised)
        with lock:
            if not best or value > best["score"]:
                best.update(score=value, relative=relative, map=denoised)
        return value

    scan = maximize_scalar(score, lower, upper, name="tv_weight_relative", n_coarse=n_coarse,
                           log_scale=True, tolerance=tolerance, extra_points=extra_points,
                           report=report)
    return scan, best["relative"], best["map"]


def is_collapsed(point: ScanPoint, scan: ScanResult) -> bool:
    """A point denoised past the scan's negentropy maximum into a map whose negentropy has
    fallen below COLLAPSED_NEGENTROPY of that maximum: flattened to almost nothing, its few
    remaining blobs predict held-out reflections by chance (seen on the family at 2.0 A)."""
    peak = max(scan.points, key=lambda p: p.others["negentropy"])
    return (point.parameter > peak.parameter and
            point.others["negentropy"] < COLLAPSED_NEGENTROPY * peak.others["negentropy"])


def uncollapsed(scan: ScanResult) -> list[ScanPoint]:
    """The scored points of a validation scan that are not collapsed (the candidates)."""
    return [p for p in scan.points if not is_collapsed(p, scan) and math.isfinite(p.score)]


def best_uncollapsed(scan: ScanResult) -> ScanPoint:
    """The best-scoring point of a validation scan that is not collapsed."""
    return max(uncollapsed(scan), key=lambda p: (p.score, -p.parameter))


def choose_k(raw: np.ndarray, sigma_delta: np.ndarray, grid: CellGrid, k_max: float,
             criterion: str, scorer: FreeScorer | None = None,
             tv_relative_weight: float | None = None,
             settings: tv.TvSettings = tv.TvSettings(),
             report: Callable[[ScanPoint], None] | None = None,
             tv_scan: ScanResult | None = None) -> KChoice:
    """Choose k in [0, k_max] for unweighted difference coefficients ``raw``.

    ``validation`` scores each k-weighted map after TV at ``tv_relative_weight`` by CC_free;
    ``negentropy`` scores the k-weighted map itself (before TV).  k = 0 is the point of
    ``tv_scan`` (a validation scan of the k = 0 map by the same ``scorer``) at that weight when
    it has one: the same maps, not denoised again.  k_max is scored only when k_max/2 scores
    better than k = 0 (a lazy end: the curve falls with k on every case of the benchmark
    family, and k_max could then only be chosen by a curve that rises again).
    """
    if criterion == "negentropy":
        scan = kweight.optimize_k(raw, sigma_delta, grid, k_max=k_max, report=report)
        return KChoice(scan.best.parameter, criterion, scan, determined=True)
    if scorer is None or tv_relative_weight is None:
        raise ValueError("validation of k needs a FreeScorer and a TV weight")

    known = [p for p in (tv_scan.points if tv_scan else ())
             if p.parameter == tv_relative_weight and p.parameter in scorer.predictions]

    def validated(k: float) -> tuple[float, dict]:
        if k == 0.0 and known:
            scorer.predictions[("k", k)] = scorer.predictions[known[0].parameter]
            return known[0].score, dict(known[0].others)
        working_maps = scorer.working_maps(raw * kweight.kweights(raw, sigma_delta, k))
        return score_working_maps(scorer, ("k", k), working_maps,
                                  [rms(working_map) for working_map in working_maps],
                                  tv_relative_weight, settings)

    scan = maximize_scalar(validated, 0.0, k_max, name="k_parameter", n_coarse=K_SCAN_POINTS,
                           tolerance=K_TOLERANCE_FRACTION * k_max, lazy_ends=("upper",),
                           report=report)
    best = scan.best
    if best.parameter == 0.0:
        return KChoice(0.0, criterion, scan, determined=True)
    error = scorer.difference_error(("k", best.parameter), ("k", 0.0))
    gain = best.score - scan.point_at(0.0).score
    if gain <= max(SIGNAL_Z * error, K_MIN_GAIN):
        return KChoice(0.0, criterion, scan, determined=False, standard_error=error)
    return KChoice(best.parameter, criterion, scan, determined=True, standard_error=error)


def refined_range(relative_weight: float, relative_range: tuple[float, float]
                  ) -> tuple[float, float]:
    """A range of +-REFINE_HALF_WIDTH decades around ``relative_weight``, inside
    ``relative_range``."""
    factor = 10.0 ** REFINE_HALF_WIDTH
    lower = max(relative_range[0], relative_weight / factor)
    upper = min(relative_range[1], relative_weight * factor)
    if not lower < upper:
        return relative_range
    return lower, upper


def relative_search_range(absolute_range: tuple[float, float] | None,
                          relative_range: tuple[float, float], map_rms: float
                          ) -> tuple[float, float]:
    """The relative search range: ``absolute_range`` (map units) divided by the map rms when
    given, else ``relative_range``."""
    if absolute_range is None:
        return tuple(relative_range)
    if map_rms == 0 or not math.isfinite(map_rms):
        raise ValueError("the map is flat: a TV weight range in map units cannot be used")
    return absolute_range[0] / map_rms, absolute_range[1] / map_rms
