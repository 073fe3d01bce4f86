"""meteor.sharpen's inputs: the checks of the maps, half maps, map coefficients and model
iotbx's DataManager read, the method they call for, reading them as one map_model_manager,
and the resolution (given, the limit of the map coefficients, or where the half-map FSC falls
to 0.143), never finer than the map's Nyquist limit."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TextIO

from cctbx import miller
from iotbx.map_model_manager import map_model_manager as MapModelManager
from libtbx.utils import Sorry

from meteor_cctbx import sharpen
from meteor_cctbx.file_checks import check_input_file, check_map_file


@dataclass
class SharpenInputs:
    """The maps and model as one map_model_manager (origin shifted to (0, 0, 0)), the map
    coefficients of MTZ input (else None), and, for map input, the first map's labels and
    file name, which the sharpened map keeps."""

    mmm: MapModelManager
    map_coefficients: miller.array | None = None
    labels: list[str] | None = None
    file_name: str | None = None

    @property
    def has_half_maps(self) -> bool:
        return bool(self.mmm.map_manager_1() and self.mmm.map_manager_2())


def map_file_names(data_manager, params) -> list[str]:
    """The map files: full map, half maps, then any others, each group sorted by name
    (iotbx lists half maps in hash order, which differs from run to run)."""
    p = params.map_model
    names = [p.full_map] if p.full_map else []
    names += sorted(set(p.half_map) - set(names))
    return names + sorted(set(data_manager.get_real_map_names()) - set(names))


def has_half_maps(data_manager, params) -> bool:
    """Whether half maps were given (half_map=, or two or three map files)."""
    if params.map_model.half_map:
        return True
    return len(data_manager.get_real_map_names()) in (2, 3)


def resolve_method(data_manager, params) -> str:
    """The method to run: sharpening.method, with auto resolved from the inputs (a given B:
    b_factor; half maps: half_map; a model: model; else b_factor)."""
    s = params.sharpening
    if s.method != "auto":
        return s.method
    if s.b_sharpen is not None or s.b_iso is not None:
        return "b_factor"
    if has_half_maps(data_manager, params):
        return "half_map"
    if data_manager.get_model_names():
        return "model"
    return "b_factor"


def check_inputs(data_manager, params) -> str:
    """Sorry for inputs or settings that cannot run together; the method to run."""
    p = params
    for path in [p.map_model.full_map, p.map_model.model, *p.map_model.half_map]:
        if path:
            check_input_file(path)
    n_maps = len(data_manager.get_real_map_names())
    n_reflection_files = len(data_manager.get_miller_array_names())
    if n_maps == 0 and n_reflection_files == 0:
        raise Sorry("No map given: give a map (CCP4/MRC), two half maps (half_map=...) or "
                    "map coefficients (MTZ).")
    if n_maps and n_reflection_files:
        raise Sorry("Give either maps or map coefficients, not both: the MTZ "
                    f"{data_manager.get_miller_array_names()[0]} and the map "
                    f"{data_manager.get_real_map_names()[0]} were both given.")
    if n_reflection_files > 1:
        raise Sorry("Give one reflection file with map coefficients, not "
                    f"{n_reflection_files}.")
    if len(data_manager.get_model_names()) > 1:
        raise Sorry("Give at most one model.")
    if len(p.map_model.half_map) not in (0, 2):
        raise Sorry(f"Give exactly two half maps, not {len(p.map_model.half_map)} "
                    f"({', '.join(p.map_model.half_map)}).")
    check_maps_and_model(data_manager, params)
    s = p.sharpening
    method = resolve_method(data_manager, params)
    if s.b_sharpen is not None and s.b_iso is not None:
        raise Sorry("Give sharpening.b_sharpen or sharpening.b_iso, not both.")
    if s.search.b_min >= s.search.b_max:
        raise Sorry(f"sharpening.search.b_min ({s.search.b_min:g}) must be below "
                    f"sharpening.search.b_max ({s.search.b_max:g}).")
    if method == "half_map" and not has_half_maps(data_manager, params):
        raise Sorry("sharpening.method=half_map needs two half maps: give "
                    "half_map=<file 1> half_map=<file 2>.")
    if method == "model" and not data_manager.get_model_names():
        raise Sorry("sharpening.method=model needs a model: add a PDB/mmCIF file.")
    if method != "b_factor" and (s.b_sharpen is not None or s.b_iso is not None):
        raise Sorry(f"sharpening.b_sharpen and sharpening.b_iso apply to "
                    f"sharpening.method=b_factor, not {method}.")
    if (p.resolution is None and n_reflection_files == 0
            and not has_half_maps(data_manager, params)):
        raise Sorry("The resolution of a single map is not known: give "
                    "resolution=<nominal resolution in A>.")
    return method


def map_grid(map_manager) -> tuple:
    """What two maps must share to be combined: points, cell grid, origin, cell (A, 3 dp)."""
    cell = map_manager.unit_cell_crystal_symmetry().unit_cell().parameters()
    return (tuple(map_manager.map_data().all()), tuple(map_manager.unit_cell_grid),
            tuple(map_manager.origin_shift_grid_units), tuple(round(v, 3) for v in cell))


def check_maps_and_model(data_manager, params) -> None:
    """Sorry for a map cctbx cannot use (see file_checks.check_map_file), maps on
    different grids, or a model whose cell is not the map's."""
    from meteor_cctbx.reflections import fmt_cell, max_cell_difference

    names = map_file_names(data_manager, params)
    for name in names:
        check_map_file(name, allow_constant=False)
    if not names:
        return
    first = data_manager.get_real_map(names[0])
    for name in names[1:]:
        other = data_manager.get_real_map(name)
        if map_grid(other) != map_grid(first):
            raise Sorry(f"Map {name} is on another grid than {names[0]} (points, cell grid, "
                        f"origin, cell {map_grid(other)} against {map_grid(first)}): resample "
                        f"the maps onto one grid (e.g. phenix.map_box or a common box).")
    for model_name in data_manager.get_model_names():
        symmetry = data_manager.get_model(model_name).crystal_symmetry()
        if symmetry is None or symmetry.unit_cell() is None \
                or symmetry.unit_cell().volume() < 10:
            continue
        map_cell = first.unit_cell_crystal_symmetry().unit_cell()
        if max_cell_difference(symmetry.unit_cell(), map_cell) > 1.0:
            raise Sorry(f"Model {model_name} has the cell {fmt_cell(symmetry.unit_cell())} "
                        f"but the map {names[0]} has {fmt_cell(map_cell)}: give a model "
                        f"placed in the map's cell (or one without a CRYST1 record).")


def read_inputs(data_manager, params) -> SharpenInputs:
    """The maps and model, origin shifted to (0, 0, 0), and the map coefficients if given."""
    try:
        if not data_manager.get_miller_array_names():
            mmm = data_manager.get_map_model_manager(from_phil=True)
            # iotbx names and labels the average of two half maps after the one it lists
            # first, in hash order: the output takes them from the maps sorted by name
            names = map_file_names(data_manager, params)
            labels = list(data_manager.get_real_map(names[0]).labels or [])
            file_name = mmm.map_manager().file_name
            if len(names) >= 2 and "_and_" in str(file_name):
                file_name = "_and_".join(os.path.splitext(os.path.basename(n))[0]
                                         for n in names[:2]) + os.path.splitext(names[0])[1]
            return SharpenInputs(mmm, None, labels, file_name)
        map_coefficients = read_map_coefficients(data_manager, params.labels)
        map_manager = sharpen.map_manager_from_coefficients(map_coefficients)
        model = data_manager.get_model() if data_manager.get_model_names() else None
        return SharpenInputs(MapModelManager(map_manager=map_manager, model=model),
                             map_coefficients)
    except (AssertionError, RuntimeError, ValueError) as error:
        raise Sorry(f"The map and model inputs do not fit together ({error}): give maps "
                    f"on one grid and a model placed in the same cell.") from error


def read_map_coefficients(data_manager, labels: list[str] | None) -> miller.array:
    """The complex array named by ``labels`` (or the only one) in the reflection file,
    merged to one non-anomalous array."""
    file_name = data_manager.get_miller_array_names()[0]
    arrays = {a.info().label_string(): a for a in
              data_manager.get_miller_arrays(filename=file_name) if a.is_complex_array()}
    if not arrays:
        from meteor_cctbx.reflections import describe_arrays

        held = describe_arrays(data_manager.get_miller_arrays(filename=file_name))
        raise Sorry(f"{file_name} holds no map coefficients (amplitude + phase pairs), only "
                    f"{held}: give an MTZ with map coefficients (e.g. FWT,PHWT) or a map.")
    available = ", ".join(arrays)
    if labels:
        wanted = ",".join(label for item in labels for label in item.replace(",", " ").split())
        if wanted not in arrays:
            raise Sorry(f"No map coefficients labelled {wanted} in {file_name}: use "
                        f"labels= with one of: {available}.")
        return arrays[wanted].as_non_anomalous_array().merge_equivalents().array()
    if len(arrays) != 1:
        raise Sorry(f"{file_name} holds {len(arrays)} sets of map coefficients: choose "
                    f"one with labels= (available: {available}).")
    return next(iter(arrays.values())).as_non_anomalous_array().merge_equivalents().array()


def half_map_fsc(mmm: MapModelManager, log: TextIO) -> sharpen.FscCurve:
    """The FSC of the two half maps, logged with where it falls to the cutoff."""
    fsc = sharpen.half_map_fsc(mmm.map_manager_1(), mmm.map_manager_2())
    at = "n/a" if fsc.d_min is None else f"{fsc.d_min:.2f}"
    print(f"Half-map FSC = {sharpen.FSC_CUTOFF} at d = {at} A", file=log)
    return fsc


def choose_resolution(given: float | None, fsc: sharpen.FscCurve | None,
                      map_coefficients: miller.array | None, log: TextIO) -> float:
    """The resolution (A): ``given``, else the limit of the map coefficients, else where the
    half-map FSC falls to the cutoff; logged with its source."""
    if given is not None:
        resolution, source = given, "given"
    elif map_coefficients is not None:
        resolution, source = map_coefficients.d_min(), "limit of the map coefficients"
    elif fsc is not None and fsc.d_min is not None:
        resolution, source = fsc.d_min, f"half-map FSC = {sharpen.FSC_CUTOFF}"
    else:
        raise Sorry("The half maps do not correlate down to FSC = 0.143, so their "
                    "resolution is not known: give resolution=<nominal resolution in A>.")
    print(f"Resolution: {resolution:.2f} A ({source})", file=log)
    return resolution


def clamped_to_nyquist(resolution: float, map_manager, log: TextIO) -> float:
    """``resolution``, or the map's Nyquist limit (2 voxels, A) with a warning when finer."""
    cell = map_manager.unit_cell_crystal_symmetry().unit_cell().parameters()
    nyquist = 2 * max(edge / n for edge, n in zip(cell[:3], map_manager.unit_cell_grid))
    if resolution >= nyquist:
        return resolution
    print(f"Warning: resolution={resolution:g} A is finer than the map's Nyquist "
          f"limit (2 voxels = {nyquist:.3f} A); using {nyquist:.3f} A.", file=log)
    return nyquist
