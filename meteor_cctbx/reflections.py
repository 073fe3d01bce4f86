"""Reading reflection data: amplitudes (|F|, with sigmas) and phases from MTZ / mmCIF / any
format iotbx reads; label choice and inference; French-Wilson for intensities; resolution cuts;
isomorphism checks and report.  Every problem is a one-line Sorry naming file and fix.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from cctbx import crystal, miller
from cctbx.array_family import flex
from libtbx.utils import Sorry, null_out

from meteor_cctbx.cif_check import check_cif, looks_like_cif
from meteor_cctbx.file_checks import check_input_file
from meteor_cctbx.messages import one_line
from meteor_cctbx.mtz_check import check_mtz, is_mtz


def read_miller_arrays(path: str | os.PathLike) -> list[miller.array]:
    """All miller arrays in a reflection file (MTZ, SF-mmCIF, ...), unmerged as stored, or Sorry.

    MTZ files are checked in Python first (``mtz_check``), so that a damaged file cannot crash
    CCP4's MTZ library; other binary files are refused rather than handed to iotbx, which
    would try to unpickle them.  A file is converted once per process while it is unchanged
    (iotbx's column grouping takes ~0.4 s for a 40k-reflection MTZ, and the command line's
    checks and the program both read it): each call gets its own copies of the arrays.
    """
    path = check_input_file(path, "reflection file")
    status = path.stat()
    cached = _read_miller_arrays(str(path), status.st_mtime_ns, status.st_size)
    return [array.customized_copy().set_info(array.info()) for array in cached]


@functools.lru_cache(maxsize=4)
def _read_miller_arrays(path_name: str, mtime_ns: int, size: int) -> tuple[miller.array, ...]:
    """read_miller_arrays of one version (modification time, size) of a file."""
    return tuple(_convert_reflection_file(Path(path_name)))


def _convert_reflection_file(path: Path) -> list[miller.array]:
    import iotbx.mtz
    from iotbx.reflection_file_reader import any_reflection_file
    from libtbx.utils import detect_binary_file

    mtz = is_mtz(path) or path.suffix.lower() == ".mtz"
    if mtz:
        check_mtz(path)
    elif looks_like_cif(path):
        check_cif(path)  # iotbx.cif's parser crashes on some damaged files
    elif detect_binary_file.from_initial_block(str(path)):
        raise Sorry(f"Cannot read {path}: a binary file that is not MTZ, and not a text "
                    f"reflection format iotbx reads (mmCIF, SCALEPACK, ...); re-export it as "
                    f"MTZ.")
    try:
        if mtz:  # iotbx.mtz directly: any_reflection_file would try text readers next
            arrays = iotbx.mtz.object(str(path)).as_miller_arrays(
                merge_equivalents=False,
                base_array_info=miller.array_info(source=str(path), source_type="ccp4_mtz"))
        else:
            reader = any_reflection_file(str(path))
            if reader.file_type() is None:
                raise Sorry(f"Cannot read {path}: not a reflection file iotbx recognises (MTZ, "
                            f"mmCIF, SCALEPACK, ...); check the file type.")
            arrays = reader.as_miller_arrays(merge_equivalents=False)
    except Sorry as error:  # ours, or iotbx's (CifBuilderError: several lines, no file name)
        if str(error).startswith(f"Cannot read {path}:"):
            raise
        raise Sorry(f"Cannot read {path}: {one_line(error, 200)}; check or re-export the file."
                    ) from error
    except Exception as error:  # iotbx raises RuntimeError/AssertionError/... on damaged files
        raise Sorry(f"Cannot read {path}: the file is damaged or truncated "
                    f"({one_line(error, 200)}); "
                    f"re-export it.") from error
    if not arrays:
        raise Sorry(f"Reflection file {path} holds no reflection data: give a file with "
                    f"amplitude or intensity columns.")
    return arrays


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

    Reflections with NaN/inf values, zero or negative sigmas, or index 0,0,0 are dropped;
    repeated, symmetry-equivalent (unmerged) and Bijvoet-mate observations are merged with
    cctbx; intensities, negative ones included, go through cctbx's French-Wilson treatment.
    Each of these steps that changes something says so in ``log``.
    """
    log = log or null_out()
    kind, labels = kind_of(array), label_string(array)
    if kind not in ("amplitude", "intensity"):
        raise Sorry(f"{role} array {labels} in {source} is not amplitudes or intensities "
                    f"({kind}); choose an F,SIGF or I,SIGI pair.")
    if kind == "intensity" and array.sigmas() is None:
        raise Sorry(f"{role} intensities {labels} in {source} have no sigmas, which "
                    f"French-Wilson needs: give I,SIGI labels or amplitudes.")
    array = _usable(array.map_to_asu(), f"{role} array {labels} in {source}", role, log)
    array = _without_outliers(array, kind, role, log)
    array = _merged(array, f"{role}: {source} {labels}", log)
    if kind == "intensity":
        negative = int((array.data() < 0).count(True))
        print(f"  {role}: French-Wilson conversion of {array.size()} intensities "
              f"({negative} negative) to amplitudes.", file=log)
        try:
            array = array.french_wilson(log=null_out())
        except Exception as error:  # cctbx asserts on data it cannot treat
            raise Sorry(f"French-Wilson failed for {role} intensities {labels} in {source} "
                        f"({one_line(error, 200)}): give amplitudes or check the columns."
                        ) from error
    negative = (array.data() < 0).count(True)
    if negative:
        raise Sorry(f"{role} amplitudes {labels} in {source} include {negative} negative "
                    f"values: these columns are not amplitudes; choose F,SIGF labels.")
    if not array.data().as_numpy_array().any():
        raise Sorry(f"{role} amplitudes {labels} in {source} are all zero: the columns hold "
                    f"no measurements; choose the F,SIGF (or I,SIGI) labels of the data.")
    return array.set_observation_type_xray_amplitude()


#: Amplitudes this many times the median (intensities its square) are damaged values.
OUTLIER_RATIO = 1000.0


def _without_outliers(array: miller.array, kind: str, role: str, log) -> miller.array:
    """``array`` without values absurdly far above the median (a damaged file's 3e38), which
    would ruin the scale fit; the log says how many went."""
    data = np.abs(array.data().as_numpy_array())
    positive = data[data > 0]
    if positive.size < 10:
        return array
    limit = float(np.median(positive)) * (OUTLIER_RATIO if kind == "amplitude"
                                          else OUTLIER_RATIO ** 2)
    outliers = data > limit
    if not outliers.any():
        return array
    print(f"  Warning: {role}: dropping {int(outliers.sum())} reflections with {kind} values "
          f"over {OUTLIER_RATIO:g}{'' if kind == 'amplitude' else '^2'} times the median "
          f"(largest {data.max():.3g}): damaged values that would ruin the scaling.", file=log)
    return array.select(flex.bool(~outliers))


def _usable(array: miller.array, what: str, role: str, log) -> miller.array:
    """``array`` without reflections that carry no usable measurement (said in ``log``)."""
    data = array.data().as_numpy_array()
    checks = [("NaN or infinite values", np.isfinite(data)),
              ("index 0,0,0", np.any(np.array(array.indices()).reshape(-1, 3) != 0, axis=1))]
    if array.sigmas() is not None:
        sigmas = array.sigmas().as_numpy_array()
        checks[0] = (checks[0][0], checks[0][1] & np.isfinite(sigmas))
        checks.append(("zero or negative sigma", ~np.isfinite(sigmas) | (sigmas > 0)))
    keep = np.ones(array.size(), bool)
    for reason, good in checks:
        bad = int((keep & ~good).sum())
        if bad:
            print(f"  {role}: dropping {bad} reflections with {reason}.", file=log)
        keep &= good
    if not keep.any():
        raise Sorry(f"{what} has no usable reflection (empty, or every one with NaN/inf "
                    f"values or a zero or negative sigma): give the right columns.")
    return array.select(flex.bool(keep)) if not keep.all() else array


def _merged(array: miller.array, what: str, log) -> miller.array:
    """One observation per unique reflection: Bijvoet mates, symmetry mates and repeats merged
    with cctbx's merge_equivalents (sigma-weighted mean when there are sigmas)."""
    if array.anomalous_flag():
        print(f"  {what} holds Bijvoet mates (anomalous data); averaging them.", file=log)
        array = array.as_non_anomalous_array().map_to_asu()
    if array.is_unique_set_under_symmetry():
        return array
    merging = array.merge_equivalents()
    merged = merging.array()
    r_int = merging.r_int()
    print(f"  {what}: {array.size()} observations of {merged.size()} unique "
          f"reflections (unmerged, repeated or Bijvoet-mate indices); merged with cctbx "
          f"(merge_equivalents{', sigma-weighted' if array.sigmas() is not None else ''}"
          f"{f', R_int {r_int:.3f}' if r_int is not None else ''}).", file=log)
    return merged


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

    Phases alone are returned as complex numbers of modulus 1 (the derivative is then scaled
    to the native).  A single phase label is phases alone even when the file pairs that
    column with amplitudes (PHIC of FC,PHIC): the amplitudes are not used.
    """
    arrays = read_miller_arrays(path)
    requested = normalise_labels(labels)
    paired = [a for a in arrays if a.is_complex_array() and len(requested) == 1
              and a.info() is not None and _short(a.info().labels[-1]) == _short(requested[0])]
    array = paired[0] if len(paired) == 1 else pick_array(arrays, requested, str(path),
                                                          "Phases")
    kind = kind_of(array)
    if kind == "map coefficients" and len(requested) == 1:
        return unit_phases(array).map_to_asu()
    if kind == "map coefficients":
        return array.map_to_asu()
    if array.is_real_array() and kind in ("phase", "other"):
        phases = array.data().as_numpy_array()
        unit = np.exp(1j * np.deg2rad(phases))
        return array.customized_copy(data=flex.complex_double(unit)).map_to_asu()
    raise Sorry(f"Phases labels '{','.join(requested)}' in {path} are {kind}, not phases: give "
                f"a phase column (PHI...) or an amplitude,phase pair (FC,PHIC).")


def mtz_dataset_names(path: str | os.PathLike, labels: Sequence[str] | str | None = None
                      ) -> tuple[str, str, str, float] | None:
    """(project, crystal, dataset, wavelength in A) of the MTZ dataset holding the first of
    ``labels`` (without labels: the first dataset with columns); None for other formats."""
    import iotbx.mtz

    if not is_mtz(path):
        return None
    wanted = normalise_labels(labels)[:1]
    for mtz_crystal in iotbx.mtz.object(str(path)).crystals():
        for dataset in mtz_crystal.datasets():
            columns = [c.label() for c in dataset.columns()]
            if [c for c in columns if c not in ("H", "K", "L")] and (
                    not wanted or wanted[0] in columns):
                return (mtz_crystal.project_name(), mtz_crystal.name(), dataset.name(),
                        dataset.wavelength())
    return None


def unit_phases(coefficients: miller.array) -> miller.array:
    """exp(i phi) of complex coefficients: their phases without their amplitudes."""
    values = coefficients.data().as_numpy_array()
    return coefficients.customized_copy(data=flex.complex_double(
        np.exp(1j * np.angle(values))))


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


@dataclass
class IndexingMatch:
    """The derivative on the native's indexing, and how it got there."""

    derivative: miller.array
    cell_difference: float  # largest relative cell difference, percent
    change_of_basis: str | None = None  # e.g. 'k,h,-l' when the derivative was reindexed
    correlations: dict[str, float] = field(default_factory=dict)  # CC with the native

    def as_dict(self) -> dict:
        return {"cell_difference_percent": self.cell_difference,
                "derivative_reindexed": self.change_of_basis,
                "indexing_correlations": self.correlations}


AMBIGUITY_MARGIN = 0.1  # CC by which another indexing must beat the file's to be used


def match_indexing(derivative: miller.array, native: miller.array,
                   max_cell_difference_percent: float, derivative_source: str,
                   native_source: str, log=None) -> IndexingMatch:
    """The derivative reindexed onto the native's setting and indexing, or Sorry.

    Candidates are the changes of basis (cctbx's similarity transformations of the cells)
    under which the derivative has the native's space group and a cell within the threshold:
    the identity and, for a lattice of higher symmetry than the space group, the alternative
    indexings (k,h,-l in P4, ...); or, for another setting of the same space group (permuted
    axes), the transformations onto the native's.  Where several remain, the one whose
    amplitudes correlate best with the native's is used; the file's own indexing is kept
    unless another beats it by ``AMBIGUITY_MARGIN``.  The log says what was done.
    """
    log = log or null_out()
    candidates = _indexing_candidates(derivative, native, max_cell_difference_percent)
    if not candidates:
        _refuse_non_isomorphous(derivative, native, max_cell_difference_percent,
                                derivative_source, native_source)
    correlations = ({name: _indexing_correlation(array, native)
                     for name, array in candidates.items()} if len(candidates) > 1 else {})
    name = next(iter(candidates))
    scores = ", ".join(f"{n} {cc:.3f}" for n, cc in correlations.items())
    if correlations:
        best = max(correlations, key=correlations.get)
        as_indexed = correlations.get("h,k,l")
        if as_indexed is None or correlations[best] > as_indexed + AMBIGUITY_MARGIN:
            name = best
        elif any(n != "h,k,l" and cc > as_indexed - AMBIGUITY_MARGIN
                 for n, cc in correlations.items()):
            print(f"  Warning: the derivative's indexing is ambiguous (CC with the native: "
                  f"{scores}); keeping the file's indexing.", file=log)
    reindexed = candidates[name]
    if name != "h,k,l":
        print(f"  Derivative {derivative_source} reindexed {name} onto the native's setting "
              f"and indexing{f' (CC with the native: {scores})' if scores else ''}.", file=log)
    return IndexingMatch(reindexed, max_cell_difference(reindexed.unit_cell(),
                                                        native.unit_cell()),
                         None if name == "h,k,l" else name, correlations)


def _indexing_candidates(derivative: miller.array, native: miller.array,
                         max_cell_difference_percent: float) -> dict[str, miller.array]:
    """Distinct reindexed copies of the derivative that match the native's symmetry, keyed by
    the change of basis ('h,k,l' first when the file's own indexing qualifies)."""
    from cctbx import crystal, sgtbx

    fraction = max_cell_difference_percent / 100
    matrices = derivative.unit_cell().similarity_transformations(
        native.unit_cell(), relative_length_tolerance=fraction,
        absolute_angle_tolerance=fraction * 90, unimodular_generator_range=1)
    operators = [sgtbx.change_of_basis_op()] + [
        sgtbx.change_of_basis_op(sgtbx.rt_mx(sgtbx.rot_mx(m, 1))) for m in matrices]
    candidates: dict[str, miller.array] = {}
    seen: set[bytes] = set()
    for operator in operators:
        group = derivative.space_group_info().change_basis(operator)
        if group.group() != native.space_group():
            continue
        cell = derivative.unit_cell().change_basis(operator)
        if max_cell_difference(cell, native.unit_cell()) > max_cell_difference_percent:
            continue
        array = derivative.change_basis(operator).customized_copy(
            crystal_symmetry=crystal.symmetry(unit_cell=cell,
                                              space_group_info=native.space_group_info())
        ).map_to_asu()
        key = array.indices().as_vec3_double().as_numpy_array().tobytes()
        if key not in seen:
            seen.add(key)
            candidates[operator.as_hkl()] = array
    return candidates


def _indexing_correlation(derivative: miller.array, native: miller.array) -> float:
    """Mean CC of the amplitudes in resolution shells (weighted by reflections), or 0."""
    shells = [s for s in isomorphism_shells(derivative, native) if math.isfinite(s.cc_iso)]
    n = sum(s.n for s in shells)
    return sum(s.cc_iso * s.n for s in shells) / n if n else 0.0


def _refuse_non_isomorphous(derivative: miller.array, native: miller.array,
                            max_cell_difference_percent: float, derivative_source: str,
                            native_source: str) -> None:
    """The Sorry for data sets no change of basis makes isomorphous."""
    sg_d, sg_n = derivative.space_group_info(), native.space_group_info()
    if sg_d.type().number() != sg_n.type().number():
        raise Sorry(f"Space groups differ: {derivative_source} is {sg_d}, {native_source} is "
                    f"{sg_n}; isomorphous difference maps need the same space group.")
    difference = max_cell_difference(derivative.unit_cell(), native.unit_cell())
    raise Sorry(f"Cells differ by {difference:.2f} % ({derivative_source}: "
                f"{fmt_cell(derivative.unit_cell())}; {native_source}: "
                f"{fmt_cell(native.unit_cell())}), more than "
                f"isomorphism.max_cell_difference={max_cell_difference_percent} % in any "
                f"setting: the data are not isomorphous (raise the threshold to proceed "
                f"anyway).")


def max_cell_difference(cell_a, cell_b) -> float:
    """Largest relative difference of cell edges (percent) or angles (percent of the angle)."""
    a, b = np.array(cell_a.parameters()), np.array(cell_b.parameters())
    return float(np.max(np.abs(a - b) / ((a + b) / 2)) * 100)


def fmt_cell(cell) -> str:
    return " ".join(f"{p:.2f}" for p in cell.parameters())


def check_same_crystal_form(symmetry: crystal.symmetry, reference: crystal.symmetry,
                            subject: str, reference_name: str,
                            max_cell_difference_percent: float, space_group_fix: str,
                            cell_fix: str) -> None:
    """Sorry unless ``symmetry`` (of ``subject``) has the space group of ``reference`` (of
    ``reference_name``) and a cell within ``max_cell_difference_percent`` of its cell (see
    max_cell_difference); each message ends with what to do about it."""
    if symmetry.space_group() != reference.space_group():
        raise Sorry(f"{subject} is in space group {symmetry.space_group_info()} but "
                    f"{reference_name} in {reference.space_group_info()}: {space_group_fix}.")
    difference = max_cell_difference(symmetry.unit_cell(), reference.unit_cell())
    if difference > max_cell_difference_percent:
        raise Sorry(f"{subject}'s cell ({fmt_cell(symmetry.unit_cell())}) differs by "
                    f"{difference:.2f} % from {reference_name}'s "
                    f"({fmt_cell(reference.unit_cell())}), more than "
                    f"isomorphism.max_cell_difference={max_cell_difference_percent} %: "
                    f"{cell_fix}.")


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
