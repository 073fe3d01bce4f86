"""Reading reflection data: amplitudes (|F|, with sigmas) and phases from MTZ / mmCIF / any
format iotbx reads; label choice and inference; French-Wilson for intensities; resolution cuts;
isomorphism checks and report.  Every problem is a one-line Sorry naming file and fix.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
from libtbx.utils import Sorry, null_out

from meteor_cctbx.file_checks import check_input_file


def read_miller_arrays(path: str | os.PathLike) -> list[miller.array]:
    """All miller arrays in a reflection file (MTZ, SF-mmCIF, ...), or Sorry."""
    from iotbx.reflection_file_reader import any_reflection_file

    path = check_input_file(path, "reflection file")
    try:
        reader = any_reflection_file(str(path))
        if reader.file_type() is None:
            if path.suffix.lower() == ".mtz":
                raise Sorry(f"Cannot read {path}: not a valid MTZ file (damaged or "
                            f"truncated); re-export it.")
            raise Sorry(f"Cannot read {path}: not a reflection file iotbx recognises (MTZ, "
                        f"mmCIF, SCALEPACK, ...); check the file type.")
        arrays = reader.as_miller_arrays()
    except Sorry:
        raise
    except Exception as error:  # iotbx raises RuntimeError/AssertionError/... on damaged files
        raise Sorry(f"Cannot read {path}: the file is damaged or truncated ({one_line(error)}); "
                    f"re-export it.") from error
    if not arrays:
        raise Sorry(f"Reflection file {path} holds no reflection data: give a file with "
                    f"amplitude or intensity columns.")
    return arrays


def one_line(error: object) -> str:
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__


def label_string(array: miller.array) -> str:
    return ",".join(array.info().labels) if array.info() is not None else "?"


def kind_of(array: miller.array) -> str:
    """Human-readable kind of an array: amplitude, intensity, phase, complex, other."""
    if array.is_complex_array():
        return "map coefficients"
    if array.is_xray_intensity_array():
        return "intensity"
    if array.is_xray_amplitude_array() or array.is_xray_reconstructed_amplitude_array():
        return "amplitude"
    labels = array.info().labels if array.info() is not None else []
    if array.is_real_array() and labels and _is_phase_label_type(array):
        return "phase"
    return "other"


def _is_phase_label_type(array: miller.array) -> bool:
    info = array.info()
    hint = getattr(info, "type_hints_from_file", None)
    if hint:
        return hint == "phase_degrees"
    return any(label.upper().startswith("PH") for label in info.labels)


def describe_arrays(arrays: Sequence[miller.array]) -> str:
    """'F_on,SIGF_on (amplitude); ...' for messages listing what a file holds."""
    return "; ".join(f"{label_string(a)} ({kind_of(a)})" for a in arrays)


def normalise_labels(labels: Sequence[str] | str | None) -> list[str]:
    """Accept ['F,SIGF'], ['F', 'SIGF'] or 'F,SIGF'; return ['F', 'SIGF'] ([] when unset)."""
    if labels is None:
        return []
    if isinstance(labels, str):
        labels = [labels]
    return [part for item in labels for part in str(item).replace(",", " ").split()]


def _short(label: str) -> str:
    """mmCIF item names are matched with or without their category (_refln.F_meas_au)."""
    return label.rsplit(".", 1)[-1]


def labels_match(array: miller.array, requested: Sequence[str]) -> bool:
    """True when ``requested`` names the array's columns (all, or the leading ones).

    mmCIF arrays carry their data block's name as a first label, which may be left out.
    """
    have = list(array.info().labels) if array.info() is not None else []
    for labels in (have, have[1:]):
        if 0 < len(requested) <= len(labels) and all(
                r == h or _short(r) == _short(h) for r, h in zip(requested, labels)):
            return True
    return False


def pick_array(arrays: Sequence[miller.array], requested: Sequence[str], source: str,
               role: str) -> miller.array:
    """The one array whose labels match ``requested``, or Sorry listing what is available."""
    matches = [a for a in arrays if labels_match(a, requested)]
    if len(matches) == 1:
        return matches[0]
    wanted = ",".join(requested)
    if not matches:
        raise Sorry(f"{role} labels '{wanted}' not found in {source}; available: "
                    f"{describe_arrays(arrays)}.")
    raise Sorry(f"{role} labels '{wanted}' match several arrays in {source}: "
                f"{describe_arrays(matches)}; give the full labels.")


def infer_amplitude_array(arrays: Sequence[miller.array], source: str,
                          role: str) -> miller.array:
    """Choose the amplitude (or intensity) array when no labels are given.

    Preference: amplitudes with sigmas (F+Q), then intensities with sigmas (J+Q), then
    amplitudes alone.  More than one candidate at the first level that has any is an error
    listing the candidates.
    """
    tiers = [
        [a for a in arrays if kind_of(a) == "amplitude" and a.sigmas() is not None],
        [a for a in arrays if kind_of(a) == "intensity" and a.sigmas() is not None],
        [a for a in arrays if kind_of(a) == "amplitude"],
    ]
    for candidates in tiers:
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = " or ".join(label_string(a) for a in candidates)
            raise Sorry(f"{source} holds several possible {role} arrays ({names}): choose one "
                        f"with {role.lower()}.labels=...")
    raise Sorry(f"{source} has no amplitude or intensity array for the {role}; available: "
                f"{describe_arrays(arrays)}.")


def as_amplitudes(array: miller.array, source: str, role: str,
                  log=None) -> miller.array:
    """Merged, non-anomalous amplitudes |F| (with sigmas when present) of an F or I array.

    Unmerged or anomalous data are merged (Bijvoet mates averaged); intensities go through
    cctbx's French-Wilson treatment; reflections with non-finite values are dropped.
    """
    log = log or null_out()
    kind = kind_of(array)
    if kind not in ("amplitude", "intensity"):
        raise Sorry(f"{role} array {label_string(array)} in {source} is not amplitudes or "
                    f"intensities ({kind}); choose an F,SIGF or I,SIGI pair.")
    array = array.map_to_asu()
    if array.size() == 0:
        raise Sorry(f"{role} array {label_string(array)} in {source} is empty.")
    if not array.is_unique_set_under_symmetry():
        print(f"  {role}: {source} has symmetry-equivalent reflections; merging them.", file=log)
        array = array.merge_equivalents().array()
    if array.anomalous_flag():
        print(f"  {role}: averaging Bijvoet mates of {label_string(array)}.", file=log)
        array = array.average_bijvoet_mates()
    array = _drop_non_finite(array, source, role, log)
    if kind == "intensity":
        if array.sigmas() is None:
            raise Sorry(f"{role} intensities {label_string(array)} in {source} have no sigmas, "
                        f"which French-Wilson needs: give I,SIGI labels or amplitudes.")
        array = _positive_sigmas(array, source, role, log)
        print(f"  {role}: French-Wilson conversion of {array.size()} intensities to "
              f"amplitudes.", file=log)
        array = array.french_wilson(log=null_out())
    elif array.sigmas() is not None:
        array = _positive_sigmas(array, source, role, log)
    negative = (array.data() < 0).count(True)
    if negative:
        raise Sorry(f"{role} amplitudes {label_string(array)} in {source} include {negative} "
                    f"negative values: these columns are not amplitudes; choose F,SIGF labels.")
    return array.set_observation_type_xray_amplitude()


def _drop_non_finite(array: miller.array, source: str, role: str, log) -> miller.array:
    data = array.data().as_numpy_array()
    finite = np.isfinite(data)
    if array.sigmas() is not None:
        finite &= np.isfinite(array.sigmas().as_numpy_array())
    bad = int((~finite).sum())
    if bad == array.size():
        raise Sorry(f"{role} array {label_string(array)} in {source} has no finite values.")
    if bad:
        print(f"  {role}: dropping {bad} reflections with NaN or infinite values.", file=log)
        array = array.select(flex.bool(finite))
    return array


def _positive_sigmas(array: miller.array, source: str, role: str, log) -> miller.array:
    sigmas = array.sigmas().as_numpy_array()
    good = sigmas > 0
    bad = int((~good).sum())
    if bad == array.size():
        raise Sorry(f"{role} sigmas of {label_string(array)} in {source} are all zero or "
                    f"negative: give the right sigma column.")
    if bad:
        print(f"  {role}: dropping {bad} reflections with zero or negative sigma.", file=log)
        array = array.select(flex.bool(good))
    return array


def select_amplitudes(arrays: Sequence[miller.array], source: str,
                      labels: Sequence[str] | str | None, role: str, log=None) -> miller.array:
    """Amplitudes of ``role`` ('Derivative', 'Native') among a file's arrays, by labels or
    inference, as merged non-anomalous |F|."""
    requested = normalise_labels(labels)
    array = (pick_array(arrays, requested, source, role) if requested
             else infer_amplitude_array(arrays, source, role))
    if array.crystal_symmetry() is None or array.space_group_info() is None \
            or array.unit_cell() is None:
        raise Sorry(f"{source} has no crystal symmetry for {label_string(array)}: give a file "
                    f"with cell and space group.")
    if log is not None:
        print(f"  {role}: {source} labels {label_string(array)}", file=log)
    return as_amplitudes(array, source, role, log)


def load_amplitudes(path: str | os.PathLike, labels: Sequence[str] | str | None, role: str,
                    log=None) -> miller.array:
    """Amplitudes of ``role`` read from the reflection file ``path``."""
    return select_amplitudes(read_miller_arrays(path), str(path), labels, role, log)


def load_phases(path: str | os.PathLike, labels: Sequence[str] | str) -> miller.array:
    """Complex coefficients (e.g. FC,PHIC) or phases alone (degrees) from a reflection file.

    Phases alone are returned as complex numbers of modulus 1.
    """
    arrays = read_miller_arrays(path)
    requested = normalise_labels(labels)
    array = pick_array(arrays, requested, str(path), "Phases")
    kind = kind_of(array)
    if kind == "map coefficients":
        return array.map_to_asu()
    if array.is_real_array() and kind in ("phase", "other"):
        phases = array.data().as_numpy_array()
        unit = np.exp(1j * np.deg2rad(phases))
        return array.customized_copy(data=flex.complex_double(unit)).map_to_asu()
    raise Sorry(f"Phases labels '{','.join(requested)}' in {path} are {kind}, not phases: give "
                f"a phase column (PHI...) or an amplitude,phase pair (FC,PHIC).")


def resolution_cut(array: miller.array, d_min: float | None, d_max: float | None,
                   source: str) -> miller.array:
    """Keep reflections with d_min <= d <= d_max (A); Sorry if nothing is left."""
    if d_min is None and d_max is None:
        return array
    cut = array.resolution_filter(d_max=d_max or 0, d_min=d_min or 0)
    if cut.size() == 0:
        low, high = array.d_max_min()
        raise Sorry(f"Resolution cut d_min={d_min} d_max={d_max} leaves no reflections of "
                    f"{source} (data extend {low:.2f}-{high:.2f} A): widen the range.")
    return cut


def check_isomorphous(derivative: miller.array, native: miller.array,
                      max_cell_difference_percent: float, derivative_source: str,
                      native_source: str) -> float:
    """Sorry unless the two data sets share a space group and have cells within the threshold.

    Returns the largest relative cell-edge difference in percent.
    """
    sg_d, sg_n = derivative.space_group_info(), native.space_group_info()
    if sg_d.group() != sg_n.group():
        raise Sorry(f"Space groups differ: {derivative_source} is {sg_d}, {native_source} is "
                    f"{sg_n}; isomorphous difference maps need the same space group and setting.")
    difference = max_cell_difference(derivative.unit_cell(), native.unit_cell())
    if difference > max_cell_difference_percent:
        raise Sorry(f"Cells differ by {difference:.2f} % ({derivative_source}: "
                    f"{fmt_cell(derivative.unit_cell())}; {native_source}: "
                    f"{fmt_cell(native.unit_cell())}), more than "
                    f"isomorphism.max_cell_difference={max_cell_difference_percent} %: the data "
                    f"are not isomorphous (raise the threshold to proceed anyway).")
    return difference


def max_cell_difference(cell_a, cell_b) -> float:
    """Largest relative difference of cell edges (percent) or angles (percent of the angle)."""
    a, b = np.array(cell_a.parameters()), np.array(cell_b.parameters())
    return float(np.max(np.abs(a - b) / ((a + b) / 2)) * 100)


def fmt_cell(cell) -> str:
    return " ".join(f"{p:.2f}" for p in cell.parameters())


def data_summary(array: miller.array) -> dict:
    """Cell, space group, resolution range, reflection count and completeness of an array."""
    low, high = array.d_max_min()
    return {"unit_cell": list(array.unit_cell().parameters()),
            "space_group": str(array.space_group_info()),
            "d_max": low, "d_min": high, "n_reflections": array.size(),
            "completeness": array.completeness(), "has_sigmas": array.sigmas() is not None}


@dataclass
class IsomorphismShell:
    d_max: float
    d_min: float
    n: int
    r_iso: float
    cc_iso: float


def isomorphism_shells(derivative: miller.array, native: miller.array,
                       n_bins: int = 10) -> list[IsomorphismShell]:
    """Riso = sum|Fd - Fn| / sum (Fd + Fn)/2 and CCiso per resolution shell (cctbx binner).

    Both arrays must already be on a common scale and the same reflections.
    """
    fd, fn = derivative.common_sets(native)
    fd.setup_binner(n_bins=min(n_bins, max(fd.size() // 50, 1)))
    bins = fd.binner().bin_indices().as_numpy_array()
    d, n = fd.data().as_numpy_array(), fn.data().as_numpy_array()
    shells = []
    for i_bin in fd.binner().range_used():
        sel = bins == i_bin
        if sel.sum() < 2:
            continue
        low, high = fd.binner().bin_d_range(i_bin)
        denominator = np.sum(d[sel] + n[sel]) / 2
        r_iso = float(np.sum(np.abs(d[sel] - n[sel])) / denominator) if denominator else math.nan
        cc = float(np.corrcoef(d[sel], n[sel])[0, 1]) if np.std(d[sel]) * np.std(n[sel]) else \
            math.nan
        shells.append(IsomorphismShell(low, high, int(sel.sum()), r_iso, cc))
    return shells
