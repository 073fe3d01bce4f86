"""Checks on input paths that turn every unusable file into one clear Sorry."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from libtbx.utils import Sorry

REFLECTION_SUFFIXES = (".mtz", ".hkl", ".sca", ".cif", ".mmcif", ".ent")
MODEL_SUFFIXES = (".pdb", ".cif", ".mmcif", ".ent")
MAP_SUFFIXES = (".ccp4", ".mrc", ".map")


def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Return ``path`` as a Path if it names a readable, non-empty regular file, else Sorry."""
    path = Path(path)
    if not path.exists():
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


def ccp4_map_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete CCP4/MRC map (its header and size disagree), or None."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        header = handle.read(1024)
    if len(header) < 1024:
        return f"{size} bytes, shorter than a map header"
    order = ">" if header[212] >> 4 == 1 else "<"
    nx, ny, nz, mode = struct.unpack(order + "4i", header[:16])
    (symmetry_bytes,) = struct.unpack(order + "i", header[92:96])
    if min(nx, ny, nz) < 1 or mode not in MAP_VALUE_BYTES or symmetry_bytes < 0:
        return f"header gives grid {nx} x {ny} x {nz}, mode {mode}"
    expected = 1024 + symmetry_bytes + nx * ny * nz * MAP_VALUE_BYTES[mode]
    if size != expected:
        return f"{size} bytes where the header announces {expected}"
    return None


def check_map_file(path: str | os.PathLike) -> None:
    """Sorry unless ``path`` is a complete CCP4/MRC map."""
    problem = ccp4_map_problem(path)
    if problem:
        raise Sorry(f"Cannot read {path}: not a complete CCP4/MRC map ({problem}); the file is "
                    f"damaged or truncated: re-export it.")


def check_before_iotbx(path: str | os.PathLike) -> None:
    """Sorry for a file that iotbx's C readers would crash on or report obscurely: an MTZ file
    is read here first (checked in Python, then loaded, so that errors name the file and the
    fix), a CCP4/MRC map is checked complete; other files pass unchecked."""
    path = Path(path)
    if not path.is_file():
        return
    from meteor_cctbx.mtz_check import is_mtz

    if is_mtz(path) or path.suffix.lower() == ".mtz":
        from meteor_cctbx.reflections import read_miller_arrays

        read_miller_arrays(path)
    elif path.suffix.lower() in MAP_SUFFIXES:
        check_map_file(check_input_file(path, "map file"))


def explain_unreadable_argument(argument: str) -> None:
    """Raise the Sorry that says why a command-line argument could not be used.

    Called for arguments iotbx's parser recognised neither as a file nor as a parameter.
    """
    if "=" in argument:
        raise Sorry(f"Parameter {argument} is not recognised: run with --show-defaults to "
                    f"list the parameters.")
    path = check_input_file(argument, "file")
    suffix = path.suffix.lower()
    if suffix in REFLECTION_SUFFIXES:
        from meteor_cctbx.reflections import read_miller_arrays

        read_miller_arrays(path)  # raises the specific Sorry
    if suffix in MAP_SUFFIXES:
        check_map_file(path)
        raise Sorry(f"Cannot read {path} as a CCP4/MRC map: the file is damaged or not a map.")
    if suffix in MODEL_SUFFIXES:
        from meteor_cctbx.model_phases import load_model

        load_model(path)  # raises the specific Sorry (no atoms, unreadable, ...)
        raise Sorry(f"Cannot read {path} as a model: the file is damaged or not a PDB/mmCIF "
                    f"model.")
    raise Sorry(f"Cannot use {path}: not a reflection (MTZ, mmCIF), model (PDB, mmCIF) or map "
                f"(CCP4/MRC) file.")
