"""Figures of merit of model phases, for weighting a difference on those phases.

A difference (|F_der| - |F_nat|) exp(i phi_model) carries the change along the model phase; where
that phase is wrong the term adds noise to the map instead.  The figure of merit
m = <cos(phase error)> of each reflection's model phase, from sigmaA between the native
amplitudes and the model's (Read 1986; mmtbx.scaling.sigmaa_estimation), is small for weak
reflections and at resolutions where the model is poor, and m dF exp(i phi) is the map of least
expected error, as in cctbx's fobs_minus_fobs_map (which takes Fobs x FOM from mmtbx.f_model).
"""
from __future__ import annotations

import numpy as np
from cctbx import miller
from cctbx.array_family import flex

KERNEL_WIDTH_REFLECTIONS = 200  # sigmaA's resolution kernel, in reflections (mmtbx's usual)
#: decimals kept: the estimator's rounding noise (1e-12 between data sets that differ by a
#: constant factor) must not reach the choices made on the weighted map
DECIMALS = 6


def sigmaa_figures_of_merit(observed: miller.array, model: miller.array) -> np.ndarray:
    """Figure of merit (0..1, unitless) of the model phases of each reflection of
    ``observed`` (amplitudes, any scale), from sigmaA against ``model`` (complex or amplitudes
    on the same reflections, in the same order)."""
    from mmtbx.scaling import sigmaa_estimation

    if not observed.indices().all_eq(model.indices()):
        raise ValueError("observed and model amplitudes must be on the same reflections")
    amplitudes = observed.customized_copy(sigmas=None).set_observation_type_xray_amplitude()
    flags = amplitudes.customized_copy(data=flex.bool(amplitudes.size(), False))
    estimator = sigmaa_estimation.sigmaa_estimator(
        miller_obs=amplitudes, miller_calc=abs(model), r_free_flags=flags,
        kernel_width_free_reflections=min(KERNEL_WIDTH_REFLECTIONS, amplitudes.size()))
    # the estimator works on the asymmetric unit: match its reflections back to ours
    fom = estimator.fom()
    pairs = miller.match_indices(amplitudes.map_to_asu().indices(), fom.indices()).pairs()
    values = np.ones(amplitudes.size())
    values[np.array(pairs.column(0))] = fom.data().as_numpy_array()[np.array(pairs.column(1))]
    return np.clip(np.round(values, DECIMALS), 0.0, 1.0)
