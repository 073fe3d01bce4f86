"""Checks on input paths that turn every unusable file into one clear Sorry."""
from __future__ import annotations

import os
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
    if not os.access(path, os.R_OK):
        raise Sorry(f"{what.capitalize()} {path} is not readable: check its permissions.")
    if path.stat().st_size == 0:
        raise Sorry(f"{what.capitalize()} {path} is empty: give the complete file.")
    return path


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
        raise Sorry(f"Cannot read {path} as a CCP4/MRC map: the file is damaged or not a map.")
    if suffix in MODEL_SUFFIXES:
        from meteor_cctbx.model_phases import load_model

        load_model(path)  # raises the specific Sorry (no atoms, unreadable, ...)
        raise Sorry(f"Cannot read {path} as a model: the file is damaged or not a PDB/mmCIF "
                    f"model.")
    raise Sorry(f"Cannot use {path}: not a reflection (MTZ, mmCIF), model (PDB, mmCIF) or map "
                f"(CCP4/MRC) file.")
