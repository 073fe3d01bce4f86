"""Checks on input paths that turn every unusable file into one clear Sorry."""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libtbx.utils import Sorry

REFLECTION_SUFFIXES = (".mtz", ".hkl", ".sca", ".cif", ".mmcif", ".ent")
MODEL_SUFFIXES = (".pdb", ".cif", ".mmcif", ".ent")
MAP_SUFFIXES = (".ccp4", ".mrc", ".map")
NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows file systems)


def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Return ``path`` as a Path if it names a readable, non-empty regular file, else Sorry."""
    path = Path(path)
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > NAME_MAX:
        raise Sorry(f"{what.capitalize()} {str(path)[:60]}... not found: a name in the path is "
                    f"{longest} bytes long, more than file systems allow ({NAME_MAX}); check "
                    f"the path.")
    try:
        exists = path.exists()
    except OSError as error:
        raise Sorry(f"{what.capitalize()} {path} cannot be looked up "
                    f"({error.strerror or error}): check the path.") from None
    if not exists:
        raise Sorry(f"{what.capitalize()} {path} not found: check the path.")
    if path.is_dir():
        raise Sorry(f"{what.capitalize()} {path} is a directory, not a file: give the file "
                    f"inside it.")
    try:  # tried, not inferred from permission bits (which do not bind root)
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        raise Sorry(f"{what.capitalize()} {path} is not readable ({error.strerror or error}): "
                    f"check its permissions.") from None
    if path.stat().st_size == 0:
        raise Sorry(f"{what.capitalize()} {path} is empty: give the complete file.")
    return path


MAP_VALUE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}  # CCP4/MRC data modes
MAP_MODE_NAMES = {0: "8-bit integers", 1: "16-bit integers", 2: "32-bit floats",
                  6: "unsigned 16-bit integers", 12: "16-bit floats"}


@dataclass
class MapHeader:
    """What the checks need of a CCP4/MRC header: grid, data mode, cell (A, degrees)."""

    byte_order: str
    grid: tuple[int, int, int]
    mode: int
    cell: tuple[float, ...]
    data_start: int
    cell_grid: tuple[int, int, int]
    axis_order: tuple[int, int, int]  # MAPC, MAPR, MAPS: a permutation of 1, 2, 3
    space_group: int
    map_stamp: bytes  # 'MAP ' in every CCP4/MRC map since 2000
    labels: list[bytes]  # the NLABL 80-byte labels (all 10 when NLABL is out of range)
    n_labels: int


def read_map_header(path: str | os.PathLike) -> MapHeader | None:
    """The header of a CCP4/MRC file, or None when the file is shorter than one."""
    with open(path, "rb") as handle:
        header = handle.read(1024)
    if len(header) < 1024:
        return None
    order = ">" if header[212] >> 4 == 1 else "<"
    nx, ny, nz, mode = struct.unpack(order + "4i", header[:16])
    cell = struct.unpack(order + "6f", header[40:64])
    cell_grid = struct.unpack(order + "3i", header[28:40])
    axis_order = struct.unpack(order + "3i", header[64:76])
    (space_group, symmetry_bytes) = struct.unpack(order + "2i", header[88:96])
    return MapHeader(order, (nx, ny, nz), mode, cell,
                     1024 + symmetry_bytes if symmetry_bytes >= 0 else -1, cell_grid,
                     axis_order, space_group, header[208:212],
                     [header[224 + 80 * k:304 + 80 * k] for k in range(10)],
                     struct.unpack(order + "i", header[220:224])[0])


def ccp4_map_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete CCP4/MRC map (its header and size disagree), or None."""
    size = os.path.getsize(path)
    header = read_map_header(path)
    if header is None:
        return f"{size} bytes, shorter than a map header"
    nx, ny, nz = header.grid
    if min(nx, ny, nz) < 1 or header.mode not in MAP_VALUE_BYTES or header.data_start < 0:
        return f"header gives grid {nx} x {ny} x {nz}, mode {header.mode}"
    expected = header.data_start + nx * ny * nz * MAP_VALUE_BYTES[header.mode]
    if size != expected:
        return f"{size} bytes where the header announces {expected}"
    return None


def check_map_file(path: str | os.PathLike, allow_constant: bool = True) -> None:
    """Sorry unless ``path`` is a complete CCP4/MRC map of 32-bit floats (the one mode cctbx
    reads) with a positive cell and finite values, not all equal unless ``allow_constant``
    (a mask may be)."""
    problem = ccp4_map_problem(path)
    if problem:
        raise Sorry(f"Cannot read {path}: not a complete CCP4/MRC map ({problem}); the file is "
                    f"damaged or truncated: re-export it.")
    header = read_map_header(path)
    if header.mode != 2:
        raise Sorry(f"Map {path} stores {MAP_MODE_NAMES[header.mode]} (MRC mode "
                    f"{header.mode}), but cctbx reads only 32-bit floats (mode 2): convert it, "
                    f"e.g. with IMOD's 'newstack -mode 2' or the mrcfile Python package.")
    if header.map_stamp != b"MAP ":
        raise Sorry(f"Cannot read {path}: no 'MAP ' stamp at byte 208 of the header (not a "
                    f"CCP4/MRC map, an old-style one, or a damaged header); re-export the map.")
    if not 0 <= header.n_labels <= 10:
        raise Sorry(f"Cannot read {path}: the header announces {header.n_labels} labels (at "
                    f"most 10 fit); the header is damaged: re-export the map.")
    try:
        for label in header.labels[:header.n_labels]:
            label.decode("utf-8")
    except UnicodeDecodeError:
        raise Sorry(f"Cannot read {path}: a header label is not text (the header is damaged);"
                    f" re-export the map.") from None
    if sorted(header.axis_order) != [1, 2, 3] or min(header.cell_grid) < 1 \
            or not 0 <= header.space_group <= 230:
        raise Sorry(f"Cannot read {path}: the map header is damaged (axis order "
                    f"{header.axis_order}, cell grid {header.cell_grid}, space group "
                    f"{header.space_group}); re-export the map.")
    if not all(math.isfinite(v) for v in header.cell) or min(header.cell[:3]) <= 0 \
            or not all(0 <= v < 180 for v in header.cell[3:]):
        raise Sorry(f"Map {path} has no valid cell in its header (a, b, c, alpha, beta, gamma "
                    f"= {', '.join(f'{v:g}' for v in header.cell)}): set the cell (or voxel "
                    f"size) in the header, e.g. with mrcfile's voxel_size, and re-run.")
    values = np.memmap(path, dtype=header.byte_order + "f4", mode="r",
                       offset=header.data_start, shape=(int(np.prod(header.grid)),))
    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite]
        raise Sorry(f"Map {path} has {bad.size} voxels that are not numbers "
                    f"({int(np.isnan(bad).sum())} NaN, {int(np.isinf(bad).sum())} infinite): "
                    f"repair or recompute the map.")
    if not allow_constant and values.size and values.min() == values.max():
        raise Sorry(f"Map {path} is constant (every voxel {float(values[0]):g}): it holds no "
                    f"density; give the map itself, not a blank or masked-out one.")
