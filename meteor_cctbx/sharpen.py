"""Map sharpening: B-factor search by a map-clarity score, half-map and model FSC-weighted
sharpening (cctbx's map_model_manager), and the diagnostics every method reports.

Conventions: B-factors in Å², resolutions and d-spacings in Å, d*² = 1/d² in Å⁻².  A Fourier
coefficient is scaled by exp(B·d*²/4), so a positive B sharpens and a negative B blurs.  Maps are
float32 numpy arrays indexed [x, y, z] over the map_manager's box (origin shifted to (0, 0, 0)).
"""
from __future__ import annotations

# cctbx before scipy: in this build, loading scipy.special (pulled in by scipy.fft) before
# boost_python's extension makes the latter crash on import.
from cctbx import maptbx, miller
from cctbx.array_family import flex
from cctbx.maptbx import segment_and_split_map
from iotbx.map_manager import map_manager as MapManager
from iotbx.map_model_manager import map_model_manager as MapModelManager
from libtbx.utils import Sorry, null_out

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.fft
import scipy.optimize

from meteor_cctbx.grid import CellGrid
from meteor_cctbx.maximize import ScanPoint, ScanResult, maximize_scalar
from meteor_cctbx.negentropy import negentropy
from meteor_cctbx.solvent_fraction import molecular_envelope

SCORES = ("negentropy", "kurtosis", "adjusted_sa")
FSC_CUTOFF = 0.143


# ----------------------------------------------------------------------------------------------
# Fourier coefficients of a map, computed once


def d_star_sq_of_grid(shape: tuple[int, int, int], unit_cell) -> np.ndarray:
    """d*² (Å⁻²) of every coefficient of ``scipy.fft.rfftn`` on a grid spanning ``unit_cell``."""
    h = (np.fft.fftfreq(shape[0]) * shape[0]).astype(np.float64)[:, None, None]
    k = (np.fft.fftfreq(shape[1]) * shape[1]).astype(np.float64)[None, :, None]
    l = (np.fft.rfftfreq(shape[2]) * shape[2]).astype(np.float64)[None, None, :]
    aa, bb, cc, ab, ac, bc = unit_cell.reciprocal_metrical_matrix()
    d_star_sq = (aa * h * h + bb * k * k + cc * l * l
                 + 2.0 * (ab * h * k + ac * h * l + bc * k * l))
    return d_star_sq.astype(np.float32)


@dataclass
class FourierMap:
    """A real-space map held as its Fourier coefficients (rfftn layout) and their d*²."""

    coefficients: np.ndarray
    d_star_sq: np.ndarray
    shape: tuple[int, int, int]
    workers: int = -1

    @classmethod
    def from_map(cls, values: np.ndarray, unit_cell, workers: int = -1) -> FourierMap:
        """Transform ``values`` (the map over one box of ``unit_cell``) once."""
        values = np.asarray(values, dtype=np.float32)
        return cls(coefficients=scipy.fft.rfftn(values, workers=workers),
                   d_star_sq=d_star_sq_of_grid(values.shape, unit_cell),
                   shape=values.shape, workers=workers)

    def synthesize(self, factors: np.ndarray) -> np.ndarray:
        """The map whose coefficients are these coefficients times ``factors`` (float32)."""
        scaled = self.coefficients * factors.astype(np.float32, copy=False)
        return scipy.fft.irfftn(scaled, s=self.shape, workers=self.workers).astype(
            np.float32, copy=False)

    def hermitian_weights(self) -> np.ndarray:
        """How many coefficients of the full transform each stored coefficient stands for."""
        weights = np.full(self.coefficients.shape[-1], 2.0)
        weights[0] = 1.0
        if self.shape[2] % 2 == 0:
            weights[-1] = 1.0
        return np.broadcast_to(weights, self.coefficients.shape)

    def shells(self, d_min: float, n_shells: int) -> tuple[np.ndarray, np.ndarray]:
        """(selection, shell index of each selected term): ``n_shells`` shells of equal d*³
        width from ∞ to ``d_min``; F000 and terms beyond d_min are not selected."""
        d_star_sq_max = 1.0 / d_min**2
        selected = (self.d_star_sq > 0) & (self.d_star_sq <= d_star_sq_max)
        s3 = self.d_star_sq[selected] ** 1.5
        shell = np.minimum((s3 / d_star_sq_max**1.5 * n_shells).astype(np.int64), n_shells - 1)
        return selected, shell

    def shell_rms(self, d_min: float, n_shells: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean d*² and rms |F| of the filled shells (see ``shells``)."""
        selected, shell = self.shells(d_min, n_shells)
        counts = np.bincount(shell, minlength=n_shells)
        power = np.bincount(shell, weights=np.abs(self.coefficients[selected]) ** 2,
                            minlength=n_shells)
        mean_d_star_sq = np.bincount(shell, weights=self.d_star_sq[selected],
                                     minlength=n_shells)
        filled = counts > 0
        return (mean_d_star_sq[filled] / counts[filled],
                np.sqrt(power[filled] / counts[filled]))


@dataclass
class ShellFsc:
    """Fourier shell correlation of two maps on one grid: per shell, mean d*² (Å⁻²), FSC and
    the number of independent terms."""

    d_star_sq: np.ndarray
    fsc: np.ndarray
    counts: np.ndarray

    @classmethod
    def of_maps(cls, fourier_1: FourierMap, fourier_2: FourierMap, d_min: float,
                n_shells: int = 24) -> ShellFsc:
        selected, shell = fourier_1.shells(d_min, n_shells)
        a, b = fourier_1.coefficients[selected], fourier_2.coefficients[selected]
        counts = np.bincount(shell, minlength=n_shells)
        cross = np.bincount(shell, weights=a.real * b.real + a.imag * b.imag,
                            minlength=n_shells)
        power_1 = np.bincount(shell, weights=np.abs(a) ** 2, minlength=n_shells)
        power_2 = np.bincount(shell, weights=np.abs(b) ** 2, minlength=n_shells)
        mean_d_star_sq = np.bincount(shell, weights=fourier_1.d_star_sq[selected],
                                     minlength=n_shells)
        filled = (counts > 0) & (power_1 > 0) & (power_2 > 0)
        return cls(d_star_sq=mean_d_star_sq[filled] / counts[filled],
                   fsc=cross[filled] / np.sqrt(power_1[filled] * power_2[filled]),
                   counts=counts[filled])


def map_manager_from_coefficients(coefficients: miller.array,
                                  sampling: float = 3.0) -> MapManager:
    """The map of complex, non-anomalous ``coefficients`` over the whole unit cell.

    Absolute scale, ρ(x) = (1/V) Σ F(h) exp(−2πi h·x) (e/Å³ for F in electrons; F000 absent, so
    the mean is 0), on cctbx's crystal_gridding for the space group (spacing ≈ d_min/sampling,
    dimensions compatible with the symmetry), origin at (0, 0, 0), wrapping.
    """
    cell_grid = CellGrid.for_set(coefficients, sampling=sampling)
    values = cell_grid.to_map(coefficients.data().as_numpy_array())
    return MapManager(map_data=flex.double(values.astype(np.float64)),
                      unit_cell_grid=cell_grid.n_real,
                      unit_cell_crystal_symmetry=coefficients.crystal_symmetry(),
                      wrapping=True)


# ----------------------------------------------------------------------------------------------
# The resolution-dependent sharpening factor


@dataclass(frozen=True)
class SharpeningForm:
    """The sharpening factor exp(B(d)·d*²/4): b_sharpen to d_cut, blurred beyond it.

    B(d) = b_sharpen for every d ≥ d_cut (so terms to the resolution are sharpened by the full
    B and never blurred) and, beyond d_cut, switches smoothly to b_sharpen − b_blur_hires:
    B(d) = b_sharpen − b_blur_hires·(1 − w), w = 2 / (1 + exp(k_sharpen·(d_cut − d))), which is
    1 at d_cut and falls to 0 within about 1/k_sharpen Å.  (Phenix's b_iso_to_d_cut centres its
    logistic on d_cut, which halves the terms at the resolution and blurs the shells just inside
    it.)  Without ``b_blur_hires`` terms beyond d_cut are left unsharpened when sharpening and
    blurred like the rest when blurring.  Without ``d_cut`` or ``k_sharpen`` B(d) = b_sharpen
    everywhere.  Terms with d < ``d_min`` are dropped; F000 is never changed (factor 1).
    """

    d_min: float
    d_cut: float | None = None
    k_sharpen: float | None = 10.0
    b_blur_hires: float | None = 200.0

    def switches(self, b_sharpen: float) -> bool:
        """Whether B changes at d_cut for this b_sharpen (else B(d) = b_sharpen everywhere)."""
        return bool(self.d_cut is not None and self.k_sharpen and
                    not (self.b_blur_hires is None and b_sharpen < 0))

    def high_resolution_b(self, b_sharpen: float) -> float:
        """B applied to terms well beyond d_cut."""
        if not self.switches(b_sharpen):
            return b_sharpen
        return b_sharpen - self.b_blur_hires if self.b_blur_hires is not None else 0.0

    @property
    def d_signal(self) -> float:
        """d (Å) of the highest-resolution terms kept."""
        return self.d_min

    def as_dict(self) -> dict:
        return {"form": "b_to_d_cut", "d_min": self.d_min, "d_cut": self.d_cut,
                "k_sharpen": self.k_sharpen, "b_blur_hires": self.b_blur_hires}

    def describe(self, b_sharpen: float) -> str:
        if not self.switches(b_sharpen):
            return f"applied at every resolution, Fourier terms to {self.d_min:.2f} A"
        return (f"applied for d >= d_cut = {self.d_cut:.2f} A, switching to "
                f"{self.high_resolution_b(b_sharpen):.1f} A^2 beyond, Fourier terms to "
                f"{self.d_min:.2f} A")

    def factors(self, d_star_sq: np.ndarray, b_sharpen: float) -> np.ndarray:
        """Per-coefficient factors (float32) for sharpening by ``b_sharpen`` Å²."""
        quarter_s2 = d_star_sq.astype(np.float32) / 4.0
        if self.switches(b_sharpen):
            with np.errstate(divide="ignore"):
                d = 1.0 / np.sqrt(d_star_sq, dtype=np.float32)
            beyond = np.clip(self.k_sharpen * (self.d_cut - d), 0.0, 20.0)
            low_res = 2.0 / (1.0 + np.exp(beyond))
            b_of_d = (b_sharpen * low_res
                      + self.high_resolution_b(b_sharpen) * (1.0 - low_res))
        else:
            b_of_d = np.float32(b_sharpen)
        exponent = (b_of_d * quarter_s2).astype(np.float32)
        exponent[d_star_sq > 1.0 / self.d_min**2] = -np.inf
        return np.exp(exponent)


@dataclass(frozen=True)
class ShellWeightedForm:
    """Sharpening factor exp(B·d*²/4)·C(d*²), C the fraction of a map's power in a resolution
    shell that is signal: the weight that makes the map the best linear estimate of its
    noise-free signal, shell by shell (a Wiener filter), before B restores the fall-off.

    From two half maps C = 2·FSC/(1 + FSC) for their average (Rosenthal & Henderson's C_ref
    squared); from one map C = 1 − N/P, P the shell's power and N the noise power estimated from
    the solvent (``from_solvent_noise``).  C is interpolated linearly in d*² between shell
    centres, and is 0 from the first shell whose statistic (FSC, or C) is not above
    ``significance``/√(terms in the shell) on (noise alone gives ~1/√n), so no shell of noise is
    sharpened.  Terms with d below ``d_min`` are dropped; F000 is kept (factor 1).
    """

    d_min: float
    d_star_sq: np.ndarray  # shell centres, Å⁻²
    weight: np.ndarray
    statistic: np.ndarray  # FSC of the half maps, or the signal fraction C
    counts: np.ndarray
    source: str  # "half-map FSC" or "solvent noise"

    @classmethod
    def _cut(cls, d_min: float, d_star_sq: np.ndarray, weight: np.ndarray,
             statistic: np.ndarray, counts: np.ndarray, source: str,
             significance: float) -> ShellWeightedForm:
        weight = np.clip(weight, 0.0, 1.0)
        noise_like = statistic <= significance / np.sqrt(counts)
        if noise_like.any():
            weight[int(np.argmax(noise_like)):] = 0.0
        return cls(d_min=d_min, d_star_sq=d_star_sq, weight=weight, statistic=statistic,
                   counts=counts, source=source)

    @classmethod
    def from_half_maps(cls, fourier_1: FourierMap, fourier_2: FourierMap, d_min: float,
                       n_shells: int = 24, significance: float = 3.0) -> ShellWeightedForm:
        fsc = ShellFsc.of_maps(fourier_1, fourier_2, d_min, n_shells)
        form = cls._cut(d_min, fsc.d_star_sq, 2.0 * fsc.fsc / (1.0 + np.maximum(fsc.fsc, 0.0)),
                        fsc.fsc, fsc.counts, "half-map FSC", significance)
        if not form.weight[0] > 0:
            raise Sorry(f"The two half maps share no signal (their FSC is not significant even "
                        f"at d = {1 / math.sqrt(fsc.d_star_sq[0]):.1f} A): give two half maps "
                        f"of one reconstruction, or use sharpening.method=b_factor.")
        return form

    @classmethod
    def from_solvent_noise(cls, fourier: FourierMap, values: np.ndarray, molecule: np.ndarray,
                           d_min: float, n_shells: int = 24, significance: float = 3.0
                           ) -> ShellWeightedForm | None:
        """C from the noise in the solvent (outside the bool mask ``molecule``), taken as
        stationary: the shell power of the solvent's deviations from their mean, over the
        solvent fraction.  ``d_min`` must not go beyond the data (shells without data would be
        whitened rounding errors).  None when the solvent is under 10 % of the map, or when no
        shell holds significant signal."""
        solvent = ~molecule
        fraction = float(solvent.mean())
        if fraction < 0.1:
            return None
        selected, shell = fourier.shells(d_min, n_shells)
        counts = np.bincount(shell, minlength=n_shells)
        power = np.bincount(shell, weights=np.abs(fourier.coefficients[selected]) ** 2,
                            minlength=n_shells)
        # the noise is measured on the whitened map (every shell of rms 1): masking a map
        # spreads each shell's power into its neighbours, which for a blurred map would swamp
        # the weak high-resolution shells with low-resolution power
        whitening = np.zeros(fourier.coefficients.shape, dtype=np.float32)
        rms = np.sqrt(power / np.maximum(counts, 1))
        whitening[selected] = np.where(rms[shell] > 0, 1.0 / np.maximum(rms[shell], 1e-30),
                                       0.0)
        white = fourier.synthesize(whitening)
        noise = scipy.fft.rfftn(np.where(solvent, white - white[solvent].mean(), 0.0),
                                workers=fourier.workers)
        noise_power = np.bincount(shell, weights=np.abs(noise[selected]) ** 2,
                                  minlength=n_shells) / fraction
        centres = np.bincount(shell, weights=fourier.d_star_sq[selected], minlength=n_shells)
        filled = (counts > 0) & (rms > 0)
        signal = 1.0 - noise_power[filled] / counts[filled]  # whitened power: 1 per term
        form = cls._cut(d_min, centres[filled] / counts[filled], signal.copy(), signal,
                        counts[filled], "solvent noise", significance)
        return form if form.weight[0] > 0 else None

    @property
    def d_signal(self) -> float:
        """d (Å) of the last shell with weight > 0."""
        kept = self.d_star_sq[self.weight > 0]
        return float(1.0 / math.sqrt(kept.max())) if kept.size else math.inf

    def factors(self, d_star_sq: np.ndarray, b_sharpen: float) -> np.ndarray:
        """Per-coefficient factors (float32) for sharpening by ``b_sharpen`` Å²."""
        weight = np.interp(d_star_sq, self.d_star_sq, self.weight).astype(np.float32)
        exponent = (np.float32(b_sharpen / 4.0) * d_star_sq).astype(np.float32)
        exponent[(d_star_sq > 1.0 / self.d_min**2) | (weight == 0)] = -np.inf
        factors = np.exp(exponent) * weight
        factors[d_star_sq == 0] = 1.0
        return factors

    def as_dict(self) -> dict:
        return {"form": "shell_weighted", "weight_from": self.source, "d_min": self.d_min,
                "d_signal": self.d_signal, "shell_d_star_sq": self.d_star_sq,
                "shell_statistic": self.statistic, "shell_terms": self.counts,
                "shell_weight": self.weight}

    def describe(self, b_sharpen: float) -> str:
        kind = ("2 FSC/(1 + FSC)" if self.source == "half-map FSC"
                else "1 - noise/power, noise from the solvent")
        return (f"applied with the shell weight {kind}, which drops every term beyond "
                f"d = {self.d_signal:.2f} A (no significant signal); Fourier terms to "
                f"{self.d_min:.2f} A")


# ----------------------------------------------------------------------------------------------
# Map-clarity scores


def kurtosis(values: np.ndarray) -> float:
    """Pearson kurtosis ⟨(x−μ)⁴⟩/σ⁴ of all values (3 for a Gaussian), as cctbx's get_kurtosis."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x - x.mean()
    second = np.mean(x * x)
    return float(np.mean((x * x) ** 2) / second**2) if second > 0 else -math.inf


@dataclass
class MolecularRegion:
    """cctbx's low-resolution molecular mask of a map and the solvent fraction it implies."""

    mask: np.ndarray
    solvent_fraction: float

    @classmethod
    def of_map(cls, map_manager: MapManager, resolution: float,
               solvent_content: float | None = None) -> MolecularRegion:
        """The molecular envelope and solvent fraction of meteor_cctbx.solvent_fraction (the
        definition every program shares) at ``resolution``."""
        envelope = molecular_envelope(map_manager.map_data(), map_manager.crystal_symmetry(),
                                      resolution, solvent_content)
        return cls(mask=envelope.mask, solvent_fraction=envelope.solvent_fraction)


@dataclass
class AdjustedSaSettings:
    """Settings of the adjusted surface area score (names and defaults as in Phenix)."""

    region_weight: float | None = None
    fraction_occupied: float = 0.20
    sa_percent: float = 30.0
    max_regions_to_test: int = 30


class AdjustedSurfaceArea:
    """Terwilliger's adjusted surface area, scored by cctbx (segment_and_split_map.score_map).

    adjusted_sa = sa_ratio − region_weight · normalized_regions.  Without a given region weight it
    is calibrated as Phenix's auto-sharpen does (region_weight_method=delta_ratio) from the maps
    at both ends and 3/8 from the sharpest end of the B search (``calibrate``).
    """

    region_weight_default = 30.0
    region_weight_buffer = 0.1

    def __init__(self, map_manager: MapManager, solvent_fraction: float,
                 settings: AdjustedSaSettings):
        self.info = segment_and_split_map.sharpening_info()
        self.info.crystal_symmetry = map_manager.crystal_symmetry()
        self.info.wrapping = map_manager.wrapping()
        self.info.solvent_fraction = solvent_fraction
        self.info.fraction_occupied = settings.fraction_occupied
        self.info.sa_percent = settings.sa_percent
        self.info.max_regions_to_test = settings.max_regions_to_test
        self.info.region_weight = 0.0
        self.info.sharpening_target = "adjusted_sa"
        self.region_weight = settings.region_weight

    def components(self, values: np.ndarray) -> tuple[float, float]:
        """(sa_ratio, normalized_regions) of a map, from cctbx's score_map."""
        scored = segment_and_split_map.score_map(
            map_data=flex.double(np.asarray(values, dtype=np.float64)),
            sharpening_info_obj=self.info, out=null_out())
        if scored.sa_ratio is None:  # fewer than two regions: no surface to measure
            return 0.0, 0.0
        return float(scored.sa_ratio), float(scored.normalized_regions)

    def calibrate(self, sharpest: tuple[float, float], blurriest: tuple[float, float],
                  middle: tuple[float, float]) -> float:
        """Set region_weight from (sa_ratio, normalized_regions) at three B values."""
        (sa_0, nr_0), (sa_1, nr_1), (sa_2, nr_2) = sharpest, blurriest, middle
        if sa_0 - sa_1 < 0 or nr_0 - nr_1 < 0:
            self.region_weight = self.region_weight_default
            return self.region_weight
        weight = (sa_0 - sa_1) / max(1e-10, nr_0 - nr_1)
        upper = max(1e-10, (sa_2 - sa_1) / max(0.001, nr_2 - nr_1))
        lower = max(1e-10, (sa_0 - sa_2) / max(0.001, nr_0 - nr_2))
        buffer = max(0.0, upper - lower) * self.region_weight_buffer
        lower, upper = lower + buffer, upper - buffer
        if lower < upper:
            weight = min(max(weight, lower), upper)
        self.region_weight = weight
        return weight

    def __call__(self, values: np.ndarray) -> float:
        sa_ratio, normalized_regions = self.components(values)
        return sa_ratio - self.region_weight * normalized_regions


# ----------------------------------------------------------------------------------------------
# B-factor sharpening


@dataclass
class BSearch:
    """Range and sampling of the b_sharpen search: a coarse scan, then bracket refinement."""

    b_min: float = -100.0
    b_max: float = 300.0
    n_steps: int = 21
    tolerance: float = 5.0


@dataclass
class BFactorSharpening:
    """Result of B-factor sharpening: the B applied, how it was chosen, and the map."""

    b_sharpen: float
    choice: str
    map_values: np.ndarray
    scan: ScanResult | None = None
    solvent_fraction: float | None = None
    region_weight: float | None = None
    b_iso_before: float | None = None
    d_signal: float = 0.0  # Å: the map holds no terms with d below this


def make_score(name: str, map_manager: MapManager, resolution: float,
               solvent_content: float | None = None,
               adjusted_sa: AdjustedSaSettings | None = None
               ) -> tuple[Callable[[np.ndarray], float], float | None]:
    """The clarity score ``name`` of trial maps of ``map_manager``, and the solvent fraction used.

    negentropy: of the values inside cctbx's molecular mask (over the whole map the flat solvent
    dominates the value distribution and blurring always wins); kurtosis: of all values, as
    Phenix and mmtbx score it; adjusted_sa: cctbx's score_map (region weight not yet calibrated
    unless given).
    """
    if name == "kurtosis":
        return kurtosis, None
    region = MolecularRegion.of_map(map_manager, resolution, solvent_content)
    if name == "negentropy":
        inside = np.flatnonzero(region.mask.ravel())
        return (lambda values: negentropy(values.ravel()[inside])), region.solvent_fraction
    if name == "adjusted_sa":
        return (AdjustedSurfaceArea(map_manager, region.solvent_fraction,
                                    adjusted_sa or AdjustedSaSettings()),
                region.solvent_fraction)
    raise ValueError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")


def search_b_sharpen(fourier: FourierMap, form: SharpeningForm | ShellWeightedForm,
                     score: Callable[[np.ndarray], float], search: BSearch,
                     report: Callable[[ScanPoint], None] | None = None) -> ScanResult:
    """Maximise ``score`` of the map sharpened by b_sharpen over [search.b_min, search.b_max].

    Each trial costs one vectorised factor and one inverse FFT of the stored coefficients.
    """
    def score_of_b(b_sharpen: float) -> float:
        return score(fourier.synthesize(form.factors(fourier.d_star_sq, b_sharpen)))

    if isinstance(score, AdjustedSurfaceArea) and score.region_weight is None:
        b_middle = search.b_max - 0.375 * (search.b_max - search.b_min)
        score.calibrate(*(score.components(
            fourier.synthesize(form.factors(fourier.d_star_sq, b)))
            for b in (search.b_max, search.b_min, b_middle)))
    no_sharpening = (0.0,) if search.b_min < 0.0 < search.b_max else ()
    return maximize_scalar(score_of_b, search.b_min, search.b_max, name="b_sharpen",
                           n_coarse=search.n_steps, tolerance=search.tolerance,
                           extra_points=no_sharpening, report=report)


def wilson_b(map_coefficients: miller.array, d_min: float) -> float:
    """Overall B (Å²) of map coefficients by cctbx's ML anisotropic scaling (mean of B_cart)."""
    amplitudes = map_coefficients.amplitudes()
    amplitudes.set_observation_type_xray_amplitude()
    return float(segment_and_split_map.get_b_iso(amplitudes, d_min=d_min))


def search_for_map(search: BSearch, map_wilson_b: float | None) -> BSearch:
    """The search range for a map of Wilson B ``map_wilson_b``: a blurred map (B > 0) is never
    blurred further, so its search starts at b_sharpen = 0 at the lowest."""
    if map_wilson_b is None or map_wilson_b <= 0 or search.b_min >= 0:
        return search
    if search.b_max <= 0:
        raise Sorry(f"sharpening.search.b_max = {search.b_max:g} would blur a map whose "
                    f"Wilson B is already {map_wilson_b:.1f} A^2: give a positive b_max.")
    return BSearch(b_min=0.0, b_max=search.b_max, n_steps=search.n_steps,
                   tolerance=search.tolerance)


def sharpen_b_factor(map_manager: MapManager, resolution: float,
                     form: SharpeningForm | ShellWeightedForm, *,
                     score_name: str = "negentropy", search: BSearch | None = None,
                     b_sharpen: float | None = None, b_iso: float | None = None,
                     map_wilson_b: float | None = None,
                     solvent_content: float | None = None,
                     adjusted_sa: AdjustedSaSettings | None = None, workers: int = -1,
                     report: Callable[[ScanPoint], None] | None = None) -> BFactorSharpening:
    """Sharpen ``map_manager`` (origin at (0, 0, 0)) by one B, given or searched.

    ``b_sharpen`` applies that B; ``b_iso`` applies B_map − b_iso, B_map the map's Wilson B to
    ``resolution`` (``map_wilson_b``, computed when not given), so the result has overall
    B ≈ b_iso; otherwise the B maximising ``score_name`` over ``search`` is applied, never
    below 0 for a blurred map (B_map > 0).
    """
    fourier = FourierMap.from_map(map_manager.map_data().as_numpy_array(),
                                  map_manager.crystal_symmetry().unit_cell(), workers)
    details: dict = {}
    if map_wilson_b is None and b_sharpen is None:
        map_wilson_b = wilson_b(map_manager.map_as_fourier_coefficients(d_min=form.d_min),
                                resolution)
    if b_sharpen is not None:
        choice = "given b_sharpen"
    elif b_iso is not None:
        b_sharpen, choice = map_wilson_b - b_iso, f"target b_iso = {b_iso:g}"
        details["b_iso_before"] = map_wilson_b
    else:
        score, details["solvent_fraction"] = make_score(
            score_name, map_manager, resolution, solvent_content, adjusted_sa)
        details["scan"] = search_b_sharpen(fourier, form, score,
                                           search_for_map(search or BSearch(), map_wilson_b),
                                           report)
        details["region_weight"] = getattr(score, "region_weight", None)
        b_sharpen, choice = details["scan"].best.parameter, f"maximum of {score_name}"
    return BFactorSharpening(
        b_sharpen=b_sharpen, choice=choice, d_signal=form.d_signal,
        map_values=fourier.synthesize(form.factors(fourier.d_star_sq, b_sharpen)), **details)


def sharpen_map_coefficients(map_coefficients: miller.array, form: SharpeningForm,
                             b_sharpen: float) -> miller.array:
    """Map coefficients scaled by the same factor as the map (reflections beyond d_min dropped)."""
    d_star_sq = map_coefficients.d_star_sq().data().as_numpy_array()
    factors = form.factors(d_star_sq, b_sharpen).astype(np.float64)
    keep = factors > 0
    selected = map_coefficients.select(flex.bool(keep))
    return selected.customized_copy(data=selected.data() * flex.double(factors[keep]))


# ----------------------------------------------------------------------------------------------
# Half-map and model sharpening (cctbx's map_model_manager)

SHARPENED_ID = "sharpened"


def sharpen_with_half_maps(mmm: MapModelManager, resolution: float, *, anisotropic: bool,
                           local: bool, nproc: int = 1) -> MapManager:
    """FSC-weighted shell sharpening of mmm's map from its two half maps (cctbx).

    mmm must hold map_manager, map_manager_1 and map_manager_2; the result is a new map_manager
    on the same grid and origin.
    """
    # cctbx's overall-local-overall path scales the half maps too and asserts that every map
    # it scales has an output id
    mmm.half_map_sharpen(resolution=resolution, anisotropic_sharpen=anisotropic,
                         local_sharpen=local, overall_sharpen_before_and_after_local=local,
                         map_id_to_be_scaled_list=["map_manager", "map_manager_1",
                                                   "map_manager_2"],
                         map_id_scaled_list=[SHARPENED_ID, SHARPENED_ID + "_1",
                                             SHARPENED_ID + "_2"], nproc=nproc)
    return _sharpened_map(mmm, "half-map")


def sharpen_with_model(mmm: MapModelManager, resolution: float, *, anisotropic: bool,
                       local: bool, nproc: int = 1) -> MapManager:
    """Map-model FSC-weighted shell sharpening of mmm's map (cctbx); mmm must hold a model."""
    mmm.model_sharpen(resolution=resolution, anisotropic_sharpen=anisotropic,
                      local_sharpen=local, overall_sharpen_before_and_after_local=local,
                      map_id_to_be_scaled_list=["map_manager"],
                      map_id_scaled_list=[SHARPENED_ID], nproc=nproc)
    return _sharpened_map(mmm, "model-based")


def _sharpened_map(mmm: MapModelManager, what: str) -> MapManager:
    sharpened = mmm.get_map_manager_by_id(SHARPENED_ID)
    if sharpened is None:
        raise Sorry(f"cctbx's {what} sharpening produced no map (see the log above): try "
                    f"sharpening.method=b_factor.")
    return sharpened


@dataclass
class FscCurve:
    """Fourier shell correlation between two maps, and d at FSC = 0.143."""

    d: np.ndarray
    fsc: np.ndarray
    d_min: float | None

    def as_dict(self) -> dict:
        return {"d": self.d, "fsc": self.fsc, "d_at_fsc_0.143": self.d_min}


def half_map_fsc(half_1: MapManager, half_2: MapManager) -> FscCurve:
    """FSC of two half maps (origin at (0, 0, 0)) to the grid's Nyquist limit (cctbx)."""
    d_nyquist = maptbx.d_min_from_map(half_1.map_data(), half_1.crystal_symmetry().unit_cell(),
                                      resolution_factor=0.5)
    f_1 = half_1.map_as_fourier_coefficients(d_min=d_nyquist)
    f_2 = half_2.map_as_fourier_coefficients(d_min=d_nyquist)
    result = f_1.d_min_from_fsc(other=f_2, fsc_cutoff=FSC_CUTOFF)
    if result.fsc is None:
        raise Sorry("Could not compute the FSC of the two half maps: check that they are maps "
                    "of the same molecule on the same grid.")
    return FscCurve(d=result.fsc.d.as_numpy_array(), fsc=result.fsc.fsc.as_numpy_array(),
                    d_min=result.d_min)


# ----------------------------------------------------------------------------------------------
# What a method did to the map


@dataclass
class AppliedScale:
    """What a method did to the amplitudes: rms ratio sharpened/input in shells, and the
    effective B, the single B whose sharpening exp(B·d*²/4) of the input correlates best with
    the sharpened map (Fourier terms from ∞ to ``d_min``)."""

    d_star_sq: np.ndarray
    log_ratio: np.ndarray
    d_min: float
    effective_b: float
    correlation: float

    def as_dict(self) -> dict:
        return {"d_star_sq": self.d_star_sq, "ln_rms_ratio": self.log_ratio,
                "d_min": self.d_min, "effective_b": self.effective_b,
                "cc_at_effective_b": self.correlation}


def applied_scale(before: np.ndarray, after: np.ndarray, unit_cell, d_min: float,
                  n_shells: int = 20, workers: int = -1) -> AppliedScale:
    """Compare the sharpened map ``after`` with the input ``before`` (same grid) to ``d_min``."""
    fourier_before = FourierMap.from_map(before, unit_cell, workers)
    fourier_after = FourierMap.from_map(after, unit_cell, workers)
    d_star_sq, rms_before = fourier_before.shell_rms(d_min, n_shells)
    _, rms_after = fourier_after.shell_rms(d_min, n_shells)
    usable = (rms_before > 0) & (rms_after > 0)

    # CC(B) from sums in fine shells of d*² (F000 excluded): Re(F_before·conj F_after), |F|².
    n_fine = 200
    terms = (fourier_before.d_star_sq > 0) & (fourier_before.d_star_sq <= 1.0 / d_min**2)
    shell = np.minimum((fourier_before.d_star_sq[terms] * d_min**2 * n_fine).astype(np.int64),
                       n_fine - 1)
    weight = fourier_before.hermitian_weights()[terms]
    a, b = fourier_before.coefficients[terms], fourier_after.coefficients[terms]
    cross = np.bincount(shell, weights=weight * (a.real * b.real + a.imag * b.imag),
                        minlength=n_fine)
    power_before = np.bincount(shell, weights=weight * np.abs(a) ** 2, minlength=n_fine)
    power_after = float(np.sum(weight * np.abs(b) ** 2))
    quarter_s2 = np.bincount(shell, weights=fourier_before.d_star_sq[terms] / 4.0,
                             minlength=n_fine) / np.maximum(np.bincount(shell, minlength=n_fine),
                                                            1)

    def minus_cc(b_factor: float) -> float:
        exponent = b_factor * quarter_s2
        scale = np.exp(exponent - exponent.max())  # CC does not depend on an overall factor
        return -float(np.sum(cross * scale) /
                      math.sqrt(np.sum(power_before * scale**2) * power_after))

    best = scipy.optimize.minimize_scalar(minus_cc, bounds=(-500.0, 1000.0), method="bounded",
                                          options={"xatol": 0.1})
    return AppliedScale(d_star_sq=d_star_sq[usable],
                        log_ratio=np.log(rms_after[usable] / rms_before[usable]), d_min=d_min,
                        effective_b=float(best.x), correlation=-float(best.fun))


def map_manager_like(template: MapManager, values: np.ndarray) -> MapManager:
    """A map_manager with ``values`` on ``template``'s grid, cell, origin shift and labels."""
    return template.customized_copy(map_data=flex.double(values.astype(np.float64)))
