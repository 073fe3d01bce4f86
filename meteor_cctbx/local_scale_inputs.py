"""meteor.local_scale's inputs: the map (a CCP4/MRC map, or a unit-cell map computed from MTZ
map coefficients) and the optional solvent-definition mask on the same grid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libtbx.utils import Sorry, null_out

from meteor_cctbx import local_scale
from meteor_cctbx.file_checks import check_map_file
from meteor_cctbx.resources import check_cell_map_memory

USAGE = ("give one map (and optionally a solvent-definition mask) or one MTZ file: "
         "meteor.local_scale map.mrc [solvent_mask.mrc]")


@dataclass
class Inputs:
    """The map to analyse (a map_manager with its origin shifted to zero), where it came
    from, and the optional solvent-definition mask on the same grid."""

    map: object
    source: Path
    description: str
    from_coefficients: bool
    mask: object | None
    mask_source: Path | None
    resolution: float | None = None  # A: d_min of MTZ input, None for a map file


def read_inputs(data_manager, params) -> Inputs:
    """The map (from a map file or MTZ map coefficients, input.*) and the optional mask, from
    the files iotbx's DataManager read."""
    maps = data_manager.get_real_map_names()
    reflection_files = data_manager.get_miller_array_names()
    if len(reflection_files) > 1 or len(maps) > 2 or (reflection_files and len(maps) > 1):
        raise Sorry(f"Too many input files ({', '.join(reflection_files + maps)}): {USAGE}.")
    if reflection_files:
        source = Path(reflection_files[0])
        mm, description, resolution = map_from_coefficients(
            data_manager.get_miller_arrays(filename=str(source)), source, params.input)
        mask_names = maps
    elif maps:
        for k, name in enumerate(maps):
            check_map_file(name, allow_constant=k > 0)  # the mask may be constant
        source = Path(maps[0])
        mm = data_manager.get_real_map(maps[0])
        mm.shift_origin()
        description, resolution, mask_names = f"map {source}", None, maps[1:]
    else:
        raise Sorry(f"No input map: {USAGE}.")
    mm.set_log(null_out())
    mask, mask_source = None, None
    if mask_names:
        mask_source = Path(mask_names[0])
        mask = data_manager.get_real_map(mask_names[0])
        mask.shift_origin()
        check_same_grid(mm, source, mask, mask_source)
    return Inputs(mm, source, description, bool(reflection_files), mask, mask_source,
                  resolution)


def map_from_coefficients(arrays, source: Path, settings):
    """map_manager of the unit cell computed from one of ``arrays`` (the file's miller arrays;
    settings.labels picks one, settings.sampling sets the grid), its description and d_min
    (A)."""
    from meteor_cctbx.grid import CellGrid
    from meteor_cctbx.reflections import (describe_arrays, label_string, normalise_labels,
                                          pick_array)

    requested = normalise_labels(settings.labels)
    if requested:
        coefficients = pick_array(arrays, requested, str(source), "Map-coefficient")
    else:
        candidates = [a for a in arrays if a.is_complex_array()]
        if len(candidates) != 1:
            found = "no" if not candidates else "several"
            raise Sorry(f"{source} holds {found} map-coefficient (amplitude + phase) "
                        f"arrays ({describe_arrays(arrays)}): choose one with "
                        f"input.labels=F,PHI.")
        coefficients = candidates[0]
    if not coefficients.is_complex_array():
        raise Sorry(f"Labels {label_string(coefficients)} in {source} are not map "
                    f"coefficients (amplitude + phase): give e.g. input.labels=FWT,PHWT.")
    if settings.sampling < 2:
        raise Sorry(f"input.sampling={settings.sampling:g} is below 2: the grid would not "
                    f"hold the map's resolution; use 3 or more.")
    labels = label_string(coefficients)
    if coefficients.anomalous_flag():
        coefficients = coefficients.average_bijvoet_mates()
    coefficients = coefficients.map_to_asu()
    check_cell_map_memory(coefficients.unit_cell(), coefficients.d_min(), settings.sampling,
                          40, f"A map of the unit cell of {source} at spacing "
                          f"d_min/{settings.sampling:g}", "lower input.sampling (3 is usual)")
    cell_grid = CellGrid.for_set(coefficients, sampling=settings.sampling)
    values = cell_grid.to_map(coefficients.data().as_numpy_array())
    mm = local_scale.unit_cell_map_manager(values, coefficients.crystal_symmetry(),
                                           f"{labels} from {source.name}")
    return mm, (f"map coefficients {labels} of {source} ({coefficients.size()} "
                f"reflections, d_min {coefficients.d_min():.2f} A)"), coefficients.d_min()


def check_same_grid(mm, source: Path, mask, mask_source: Path) -> None:
    """Sorry unless the mask covers the same grid points as the map."""
    map_grid = (mm.map_data().all(), mm.origin_shift_grid_units, mm.unit_cell_grid)
    mask_grid = (mask.map_data().all(), mask.origin_shift_grid_units, mask.unit_cell_grid)
    if map_grid != mask_grid:
        raise Sorry(f"Solvent-definition mask {mask_source} has a grid of "
                    f"{tuple(mask_grid[0])} points at origin {tuple(mask_grid[1])} but "
                    f"the map {source} has {tuple(map_grid[0])} at {tuple(map_grid[1])}: "
                    f"resample or box the mask onto the map's grid.")
