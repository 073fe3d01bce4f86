"""Blind occupancy of the minor state from a difference map: two estimators with a bootstrap
interval over reflections.

Inputs are complex coefficients on one reflection set, on the scale of the model (e/A^3 once
on a grid): ``native`` = |F_nat| exp(i phi_model), ``model`` = F_model and ``difference`` =
the raw isomorphous difference (|F_der| - |F_nat|) exp(i phi_model), derivative minus native.
Such a difference is the projection of F_der - F_nat on the model phases and carries about
half of the true difference density (Read 1986): at atom centres, 2 dF / q is the density the
pure minor state gains (or loses) there.  The raw difference is used because it is linear in
the data: denoising changes peak heights (TV flattens and the rescaling lifts them), which
would bias the ratios below.  The estimators read peaks (local extrema, the cell wrapping
around) beyond ``threshold`` x rms, beyond ``peak_fraction`` x the strongest of their sign
and, when sigmas are given, beyond what noise alone reaches: the rms of a map of the
measurement errors times sqrt(2 ln n), n the independent resolution elements of an
asymmetric unit (``noise_extreme``):

* ``vanish``: at which q does the extrapolated density 2 (rho_nat + dF/q) - rho_model at the
  negative difference peaks on the model's atoms fall to the solvent level (median of the
  native map where the model map is lowest)?  q = -2 <dF> / (<rho_nat> - solvent) over those
  peaks.  Curve: the fraction of the native's density left there, 1 - q_vanish/q.
* ``appear``: at which q do the positive difference peaks away from the model reach the
  median height of the model's atoms (local maxima of the model map above its rms) in the
  native map?  q = 2 <dF> / (median rho_nat - solvent).  Curve: q_appear/q.  Both maps
  are read blurred by ``appear_blur_b`` (exp(-B s^2/4), B 20 A^2: 0.5 A rms) at the peaks
  chosen on the unblurred difference: a height averaged over about an atom's volume depends
  less on how ordered the new atoms are than on how many there are, and averages in noise
  that did not select the peak (on the benchmark family the compact changes at q 0.2 and
  0.4, where appear alone holds, came within +-0.05 on 10 of 20 instead of 8, mean error
  0.045 instead of 0.054: a mobile site read less low, the rigid chromophore at twice the
  noise less high).
* ``combined`` (the default): vanish where it holds, else appear; when both hold, its
  interval is the envelope of theirs (a disagreement between the two criteria widens it).
  vanish first because it reads each atom that leaves against that atom's own native
  density, while appear assumes the minor state is as ordered as the model's median atom
  (a B-factor bias the bootstrap does not see): on the benchmark family's 36 changes where
  both held (spread changes, both sites, 1.8-2.5 A, the phasing model's error 0.3 or 0.6 A)
  vanish erred by 15 % of the occupancy on average, appear by 21 % and their
  inverse-variance mean, the previous default, by 19 %.

The peaks (and the solvent and atom voxels) are chosen once, on the maps of all reflections;
each estimate is then recomputed on ``n_bootstrap`` resamples of the reflections (Poisson(1)
weights per reflection, the same for the native and the difference) at those voxels, and the
interval is the central ``confidence`` part of the resampled estimates.  The bootstrap thus
measures how much the estimate depends on which reflections were measured; it does not see a
bias of the criterion itself (benchmarks/bench_extrapolate.py measures that on a family with
known truth).  An estimate is withheld (None, with a warning) when it rests on fewer than
``min_peaks`` peaks (default: two per symmetry copy), when its replicates reach zero, when it
is less than ``min_z`` bootstrap standard deviations from zero, or when it lies outside
``occupancy_range``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meteor_cctbx.grid import CellGrid  # cctbx before scipy.ndimage
from scipy import ndimage  # noqa: E402

BASE_ESTIMATORS = ("vanish", "appear")
ESTIMATORS = BASE_ESTIMATORS + ("combined",)
SOLVENT_QUANTILE = 0.3   # voxels where the model map is below this quantile count as solvent
APPEAR_BLUR_B = 20.0     # A^2: appear reads maps blurred by this B (module docstring)


@dataclass
class MapTriple:
    """Native, model and difference maps (float32, e/A^3) on one grid."""

    native: np.ndarray
    model: np.ndarray
    difference: np.ndarray


def local_maxima(real_map: np.ndarray) -> np.ndarray:
    """Voxels not lower than any of their 26 neighbours (the cell wraps around)."""
    return real_map == ndimage.maximum_filter(real_map, size=3, mode="wrap")


@dataclass
class Regions:
    """Voxels (from the maps of all reflections) the estimators read the maps at."""

    solvent: np.ndarray        # model map below its SOLVENT_QUANTILE: the solvent level
    model_peaks: np.ndarray    # local maxima of the model map above its rms: atom centres
    negative_peaks: np.ndarray  # local minima of the difference on the model's atoms
    positive_peaks: np.ndarray  # local maxima of the difference away from the model

    @classmethod
    def of(cls, maps: MapTriple, threshold: float, peak_fraction: float,
           noise_cut: float = 0.0) -> "Regions":
        """Difference peaks beyond ``threshold`` x the map's rms, beyond ``noise_cut`` (e/A^3)
        and beyond ``peak_fraction`` x the strongest of their sign."""
        model_rms = maps.model.std()
        atoms = maps.model > model_rms
        away = maps.model < 0.5 * model_rms
        difference = maps.difference
        cut = max(threshold * difference.std(), noise_cut)
        lowest = float(difference[atoms].min()) if atoms.any() else 0.0
        highest = float(difference[away].max()) if away.any() else 0.0
        negative = local_maxima(-difference) & atoms & \
            (difference < min(-cut, peak_fraction * lowest))
        positive = local_maxima(difference) & away & \
            (difference > max(cut, peak_fraction * highest))
        return cls(solvent=maps.model < np.quantile(maps.model, SOLVENT_QUANTILE),
                   model_peaks=local_maxima(maps.model) & atoms, negative_peaks=negative,
                   positive_peaks=positive)

    def counts(self) -> dict[str, int]:
        return {"vanish": int(self.negative_peaks.sum()),
                "appear": int(self.positive_peaks.sum())}


def ratio_estimates(maps: MapTriple, regions: Regions, min_peaks: int,
                    appear_maps: MapTriple | None = None) -> dict[str, float]:
    """q by the vanish and appear criteria on fixed ``regions`` (NaN where fewer than
    ``min_peaks`` peaks); appear reads ``appear_maps`` (the blurred maps) when given."""
    def solvent_level(triple: MapTriple) -> float:
        return float(np.median(triple.native[regions.solvent]))

    values = {"vanish": np.nan, "appear": np.nan}
    baseline = solvent_level(maps)
    if regions.negative_peaks.sum() >= min_peaks:
        native_height = float(maps.native[regions.negative_peaks].mean()) - baseline
        if native_height > 0:
            values["vanish"] = -2.0 * float(maps.difference[regions.negative_peaks].mean()) \
                / native_height
    read, read_baseline = ((maps, baseline) if appear_maps is None else
                           (appear_maps, solvent_level(appear_maps)))
    atom_height = float(np.median(read.native[regions.model_peaks])) - read_baseline
    if regions.positive_peaks.sum() >= min_peaks and atom_height > 0:
        values["appear"] = 2.0 * float(read.difference[regions.positive_peaks].mean()) / \
            atom_height
    return values


def blur_factors(grid: CellGrid, b_blur: float) -> np.ndarray | None:
    """exp(-B s^2 / 4) per reflection of ``grid`` (s = 1/d, B in A^2); None for B = 0."""
    if b_blur <= 0:
        return None
    d = grid.miller_set.d_spacings().data().as_numpy_array()
    return np.exp(-b_blur / (4.0 * d ** 2))


def estimator_curve(name: str, estimate: float, occupancies: np.ndarray) -> np.ndarray:
    """What the extrapolated map shows at each trial occupancy under estimator ``name``:
    vanish: native density left at native-only atoms (0 at the estimate); appear: new
    density relative to model atoms (1 at the estimate); combined: its estimate over q (1 at
    the estimate)."""
    if name == "vanish":
        return 1.0 - estimate / occupancies
    return estimate / occupancies


@dataclass
class EstimatorResult:
    """One estimator: estimate and interval (None when withheld), replicates, curve."""

    name: str
    estimate: float | None
    interval: tuple[float, float] | None
    point: float          # the ratio on all reflections (NaN when undefined)
    bootstrap_sd: float
    n_peaks: int
    replicates: np.ndarray
    curve_occupancy: np.ndarray
    curve_value: np.ndarray
    warning: str | None = None

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "interval": list(self.interval) if self.interval
                else None, "point": self.point, "bootstrap_sd": self.bootstrap_sd,
                "n_peaks": self.n_peaks, "warning": self.warning,
                "n_bootstrap": int(self.replicates.size),
                "curve": {"occupancy": self.curve_occupancy.tolist(),
                          "value": self.curve_value.tolist()}}


@dataclass
class OccupancyEstimate:
    """Every estimator's result and the one chosen (``method``)."""

    method: str
    estimators: dict[str, EstimatorResult]
    settings: dict = field(default_factory=dict)

    @property
    def chosen(self) -> EstimatorResult:
        return self.estimators[self.method]

    def as_dict(self) -> dict:
        chosen = self.chosen
        return {"estimate": chosen.estimate,
                "interval": list(chosen.interval) if chosen.interval else None,
                "method": self.method, "warning": chosen.warning, "settings": self.settings,
                "estimators": {k: v.as_dict() for k, v in self.estimators.items()}}


def summarise(name: str, value: float, n_peaks: int, replicates: np.ndarray,
              occupancies: np.ndarray, confidence: float, min_peaks: int, min_z: float,
              occupancy_range: tuple[float, float]) -> EstimatorResult:
    """Estimate, interval and the reason for withholding them, if any."""
    finite = replicates[np.isfinite(replicates)]
    sd = float(finite.std()) if finite.size > 1 else np.inf
    tail = 50 * (1 - confidence)
    warning = None
    if n_peaks < min_peaks or not np.isfinite(value):
        warning = (f"{name}: too little significant difference density "
                   f"({n_peaks} peaks beyond the noise, at least {min_peaks} needed)")
    elif finite.size < 0.9 * replicates.size or np.any(finite <= 0):
        warning = f"{name}: bootstrap replicates reach zero occupancy; the signal is too weak"
    elif value < min_z * sd:
        warning = (f"{name}: estimate {value:.3f} is within {min_z:g} bootstrap standard "
                   f"deviations ({sd:.3f}) of zero; the signal is too weak")
    low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
    lowest, highest = occupancy_range
    if warning is None and (low > highest or high < lowest):
        warning = (f"{name}: estimate {value:.3f} and its interval lie outside "
                   f"occupancy_range {lowest:g}-{highest:g}")
    estimate = interval = None
    if warning is None:
        # an occupancy cannot leave the range: an estimate whose interval reaches into it is
        # clipped to it (e.g. 1.01 [0.95, 1.07] -> 1 [0.95, 1])
        estimate = float(np.clip(value, lowest, highest))
        interval = (float(max(low, lowest)), float(min(high, highest)))
    curve = estimator_curve(name, value, occupancies) if np.isfinite(value) else \
        np.full(occupancies.shape, np.nan)
    return EstimatorResult(name, estimate, interval, float(value), sd, n_peaks, replicates,
                           occupancies, curve, warning)


def combined(estimators: dict[str, EstimatorResult], checks: dict) -> EstimatorResult:
    """vanish where it holds, else appear (module docstring); the interval is the envelope of
    the intervals of those that hold, so that a disagreement between the criteria widens it."""
    held = [estimators[name] for name in BASE_ESTIMATORS
            if estimators[name].estimate is not None]
    if not held:
        occupancies = checks["occupancies"]
        reasons = "; ".join(e.warning for e in estimators.values())
        return EstimatorResult("combined", None, None, np.nan, np.inf, 0, np.array([]),
                               occupancies, np.full(occupancies.shape, np.nan),
                               f"no estimator holds ({reasons})")
    first = held[0]
    result = summarise("combined", first.point, sum(e.n_peaks for e in held),
                       first.replicates, **checks)
    if result.estimate is not None:
        result.interval = (min(result.interval[0], *(e.interval[0] for e in held)),
                           max(result.interval[1], *(e.interval[1] for e in held)))
    result.warning = result.warning or (None if len(held) == len(estimators) else
                                        "combined: only " + ", ".join(e.name for e in held))
    return result


def noise_extreme(grid: CellGrid) -> float:
    """sqrt(2 ln n): about the largest of n independent standard normal values, for n the
    independent resolution elements, (d_min/2)^3 A^3 each, of an asymmetric unit; a peak
    below it x the noise rms may be noise alone."""
    miller_set = grid.miller_set
    n = miller_set.unit_cell().volume() / miller_set.space_group().order_z() / \
        (miller_set.d_min() / 2) ** 3
    return float(np.sqrt(2 * np.log(max(n, 2.0))))


def estimate_occupancy(native: np.ndarray, model: np.ndarray, difference: np.ndarray,
                       grid: CellGrid, method: str = "combined",
                       occupancy_range: tuple[float, float] = (0.02, 1.0),
                       threshold: float = 3.0, peak_fraction: float = 0.5,
                       appear_blur_b: float = APPEAR_BLUR_B, n_bootstrap: int = 100,
                       confidence: float = 0.95,
                       min_peaks: int | None = None, min_z: float = 4.0, seed: int = 0,
                       n_curve: int = 50, sigma_native: np.ndarray | None = None,
                       sigma_difference: np.ndarray | None = None) -> OccupancyEstimate:
    """Occupancy of the minor state by every estimator, ``method`` chosen (see module doc).

    Arrays are complex coefficients on ``grid``'s reflections; ``difference`` is the raw
    difference.  ``sigma_native`` / ``sigma_difference`` (amplitude sigmas, per reflection)
    make each resample also redraw the measurement errors.  ``seed`` makes the bootstrap
    reproducible.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"unknown occupancy method {method!r}; expected one of {ESTIMATORS}")
    if min_peaks is None:
        min_peaks = 2 * grid.miller_set.space_group().order_z()
    full = MapTriple(*(grid.to_map(a) for a in (native, model, difference)))
    rng = np.random.default_rng(seed)
    modulus = np.abs(native)
    unit_phases = np.where(modulus > 0, native / np.where(modulus > 0, modulus, 1), 1)
    noise_rms = noise_cut = 0.0
    if sigma_difference is not None:
        noise_rms = float(grid.to_map(rng.normal(size=native.size) * sigma_difference *
                                      unit_phases).std())
        noise_cut = noise_rms * noise_extreme(grid)
    regions = Regions.of(full, threshold, peak_fraction, noise_cut)
    blur = blur_factors(grid, appear_blur_b)

    def blurred(native_coefficients: np.ndarray, difference_coefficients: np.ndarray
                ) -> MapTriple | None:
        """The maps appear reads (None: the unblurred ones)."""
        if blur is None:
            return None
        return MapTriple(grid.to_map(native_coefficients * blur), full.model,
                         grid.to_map(difference_coefficients * blur))

    point = ratio_estimates(full, regions, min_peaks, blurred(native, difference))
    replicates = {name: np.empty(n_bootstrap) for name in BASE_ESTIMATORS}
    for i in range(n_bootstrap):
        weights = rng.poisson(1.0, size=native.size)
        native_i, difference_i = native, difference
        if sigma_native is not None and sigma_difference is not None:
            native_i = native + rng.normal(size=native.size) * sigma_native * unit_phases
            difference_i = difference + rng.normal(size=native.size) * sigma_difference * \
                unit_phases
        native_i, difference_i = native_i * weights, difference_i * weights
        sample = MapTriple(grid.to_map(native_i), full.model, grid.to_map(difference_i))
        for name, value in ratio_estimates(sample, regions, min_peaks,
                                           blurred(native_i, difference_i)).items():
            replicates[name][i] = value
    low, high = occupancy_range
    occupancies = np.linspace(low, high, n_curve)
    counts = regions.counts()
    checks = dict(occupancies=occupancies, confidence=confidence, min_peaks=min_peaks,
                  min_z=min_z, occupancy_range=occupancy_range)
    estimators = {name: summarise(name, point[name], counts[name], replicates[name], **checks)
                  for name in BASE_ESTIMATORS}
    estimators["combined"] = combined(estimators, checks)
    settings = {"noise_rms": noise_rms, "noise_cut": noise_cut, "threshold_rms": threshold,
                "peak_fraction": peak_fraction, "appear_blur_b": appear_blur_b,
                "n_bootstrap": n_bootstrap, "confidence": confidence, "min_peaks": min_peaks,
                "min_z": min_z, "seed": seed, "occupancy_range": [low, high]}
    return OccupancyEstimate(method, estimators, settings)
