"""Inputs of the difference-map programs (diffmap, phaseboost): which file is which, reading
amplitudes and phases, resolution cuts, isomorphism checks, model structure factors, and the
data summary for the log and the run record."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cctbx import miller
from libtbx.utils import Sorry

from meteor_cctbx import reflections
from meteor_cctbx.model_phases import (ModelStructureFactors, describe_model, load_model,
                                       model_structure_factors)
from meteor_cctbx.phil import choice


@dataclass
class DifferenceInputs:
    """Amplitudes of both data sets (resolution-cut) and the native phases, ready to scale."""

    derivative: miller.array
    native: miller.array
    phases: miller.array  # complex: F_model, FC/PHIC from a file, or unit-modulus phases
    model_phases: ModelStructureFactors | None
    files: dict
    summary: dict = field(default_factory=dict)


def resolve_files(params, reflection_files: Sequence[str], model_files: Sequence[str]
                  ) -> dict:
    """Decide the derivative, native, phases and model files from PHIL and positional files.

    The first reflection file is the derivative, the second the native, unless
    derivative.file_name / native.file_name say otherwise.
    """
    named = {os.path.abspath(f) for f in (params.derivative.file_name, params.native.file_name,
                                          params.phases.file_name) if f}
    # iotbx also loads files named by path parameters: only the others are positional
    remaining = [f for f in reflection_files if os.path.abspath(f) not in named]
    derivative = params.derivative.file_name or (remaining.pop(0) if remaining else None)
    native = params.native.file_name or (remaining.pop(0) if remaining else None)
    if derivative is None and native is not None and reflection_files:
        derivative = native  # one file named twice: the labels say which columns are which
    if derivative is None:
        raise Sorry("No reflection files given: give the derivative and the native files "
                    "(meteor.diffmap derivative.mtz native.mtz model.pdb).")
    if native is None:
        raise Sorry(f"Only one reflection file ({derivative}) given: give the native file too, "
                    f"or native.file_name={derivative} with native.labels=... when both data "
                    f"sets are in it.")
    if remaining:
        raise Sorry(f"Too many reflection files: {' '.join(remaining)} unused; give exactly "
                    f"the derivative and the native.")
    if not reflections.normalise_labels(params.phases.labels) and params.phases.file_name:
        raise Sorry(f"phases.file_name={params.phases.file_name} given without phases.labels: "
                    f"name the phase columns, e.g. phases.labels=FC,PHIC.")
    model_files = [f for f in model_files
                   if os.path.abspath(f) != os.path.abspath(params.model.file_name or "")]
    model = params.model.file_name or (model_files[0] if model_files else None)
    if len(model_files) > 1 and not params.model.file_name:
        raise Sorry(f"Several models given ({' '.join(model_files)}): give one, or choose "
                    f"with model.file_name=...")
    uses_column_phases = bool(reflections.normalise_labels(params.phases.labels))
    if model is None and not uses_column_phases:
        raise Sorry("No model given: give the native model (PDB/mmCIF) for phases, or "
                    "phases.labels=... to take native phases from a column.")
    if (os.path.abspath(derivative) == os.path.abspath(native)
            and not (reflections.normalise_labels(params.derivative.labels)
                     or reflections.normalise_labels(params.native.labels))):
        raise Sorry(f"Derivative and native both come from {derivative}: give "
                    f"derivative.labels=... and native.labels=... to say which columns are "
                    f"which.")
    return {"derivative": derivative, "native": native,
            "phases": (params.phases.file_name or native) if uses_column_phases else None,
            "model": None if uses_column_phases and not params.model.file_name else model}


def check_not_identical(derivative: miller.array, native: miller.array, derivative_source: str,
                        native_source: str) -> None:
    """Sorry when the two data sets hold the same amplitudes: their difference is zero.  (The
    derivative's cell may differ from the native's within isomorphism.max_cell_difference:
    it is compared on the native's.)"""
    a, b = derivative.customized_copy(crystal_symmetry=native.crystal_symmetry()).common_sets(
        native)
    if a.size() and a.size() == native.size() and a.data().all_eq(b.data()):
        raise Sorry(f"The derivative ({derivative_source}) and the native ({native_source}) "
                    f"hold identical amplitudes: their difference map would be rounding "
                    f"noise; give the two different data sets (derivative first).")


@dataclass
class NativeSide:
    """What every derivative measured against one native shares: the native amplitudes
    (resolution-cut) and the phases with their scaling reference (F_model or file columns).
    meteor.batch computes it once and gives it to every dataset's program."""

    native: miller.array
    phases: miller.array
    model_phases: ModelStructureFactors | None
    phases_summary: dict  # {"model": ...} for model phases, {} for column phases


class _ArrayReader:
    """Reads each reflection file once; selects amplitudes and applies the resolution cut."""

    def __init__(self, params, log):
        self.params, self.log = params, log
        self.arrays_by_file: dict[str, list[miller.array]] = {}

    def amplitudes(self, role: str, path: str, labels) -> miller.array:
        if path not in self.arrays_by_file:
            self.arrays_by_file[path] = reflections.read_miller_arrays(path)
        array = reflections.select_amplitudes(self.arrays_by_file[path], path, labels, role,
                                              self.log)
        if array.sigmas() is None and choice(self.params.kweight.mode) != "none":
            raise Sorry(f"{role} amplitudes {reflections.label_string(array)} in {path} have "
                        f"no sigmas, which k-weighting needs: give F,SIGF labels or set "
                        f"kweight.mode=none.")
        return reflections.resolution_cut(array, self.params.d_min, self.params.d_max, path)


def native_phases(params, files: dict, native: miller.array, log
                  ) -> tuple[miller.array, ModelStructureFactors | None, dict]:
    """Phases for ``native``: from the phase columns, or F_model of the model; logged."""
    if files["phases"] is not None:
        phases = reflections.load_phases(files["phases"], params.phases.labels)
        phases_only = len(reflections.normalise_labels(params.phases.labels)) == 1
        print(f"  Phases: {files['phases']} labels "
              f"{','.join(reflections.normalise_labels(params.phases.labels))}"
              + (" (phases only: the derivative is scaled to the native)" if phases_only
                 else " (amplitudes as the scaling reference)"), file=log)
        return phases, None, {}
    start = time.perf_counter()
    model = load_model(files["model"], native.crystal_symmetry(),
                       params.isomorphism.max_cell_difference, log)
    model_phases = model_structure_factors(model, native, params.model.scattering_table,
                                           params.model.bulk_solvent)
    print(f"  Model: {files['model']} ({describe_model(model)}, "
          f"{params.model.scattering_table} table, bulk solvent "
          f"{'on' if params.model.bulk_solvent else 'off'}): R(native, F_model) = "
          f"{model_phases.r_work:.3f}  ({time.perf_counter() - start:.1f} s)", file=log)
    return model_phases.f_model, model_phases, {"model": model_phases.as_dict()}


def load_native_side(params, files: dict, log) -> NativeSide:
    """Read the native amplitudes and compute their phases (``files`` as from resolve_files;
    the derivative entry is not used)."""
    print("Native data:", file=log)
    native = _ArrayReader(params, log).amplitudes("Native", files["native"],
                                                  params.native.labels)
    s = reflections.data_summary(native)
    print(f"  native {s['space_group']} cell {' '.join(f'{p:.2f}' for p in s['unit_cell'])}  "
          f"{s['d_max']:.2f}-{s['d_min']:.2f} A  {s['n_reflections']} reflections", file=log)
    return NativeSide(native, *native_phases(params, files, native, log))


def load_difference_inputs(params, files: dict, log, native_side: NativeSide | None = None
                           ) -> DifferenceInputs:
    """Read and check everything the difference programs need; print the data summary.

    With ``native_side`` (the same native files and parameters, computed beforehand), the
    native is not read again and its phases are not recomputed.
    """
    reader = _ArrayReader(params, log)
    print("Data:", file=log)
    derivative = reader.amplitudes("Derivative", files["derivative"], params.derivative.labels)
    native = (reader.amplitudes("Native", files["native"], params.native.labels)
              if native_side is None else native_side.native)
    indexing = reflections.match_indexing(
        derivative, native, params.isomorphism.max_cell_difference, files["derivative"],
        files["native"], log)
    derivative, cell_difference = indexing.derivative, indexing.cell_difference
    check_not_identical(derivative, native, files["derivative"], files["native"])
    summary = {"derivative": reflections.data_summary(derivative),
               "native": reflections.data_summary(native), **indexing.as_dict()}
    for role in ("derivative", "native"):
        s = summary[role]
        print(f"  {role:10s} {s['space_group']:12s} cell {' '.join(f'{p:.2f}' for p in s['unit_cell'])}"
              f"  {s['d_max']:.2f}-{s['d_min']:.2f} A  {s['n_reflections']} reflections  "
              f"completeness {100 * s['completeness']:.1f} %", file=log)
    print(f"  largest cell difference {cell_difference:.2f} %", file=log)
    if native_side is None:
        native_side = NativeSide(native, *native_phases(params, files, native, log))
    summary.update(native_side.phases_summary)
    return DifferenceInputs(derivative, native, native_side.phases, native_side.model_phases,
                            {k: (str(Path(v)) if v else None) for k, v in files.items()},
                            summary)
