"""Why a command-line argument cannot be used: files checked before iotbx's readers see them,
and the reason for arguments iotbx's parser could not place.

This module sits above the readers (reflections, model_phases) and file_checks below them,
so that no import circle joins them.
"""
from __future__ import annotations

import os
from pathlib import Path

from libtbx.utils import Sorry

from meteor_cctbx.cif_check import check_cif, looks_like_cif
from meteor_cctbx.file_checks import (MAP_SUFFIXES, MODEL_SUFFIXES, REFLECTION_SUFFIXES,
                                      check_input_file, check_map_file)
from meteor_cctbx.mtz_check import is_mtz

PHIL_SUFFIXES = (".eff", ".phil", ".params", ".def")


def check_before_iotbx(path: str | os.PathLike) -> None:
    """Sorry for a file that iotbx's C readers would crash on or report obscurely: CIF text is
    checked for the syntax iotbx.cif parses safely, an MTZ file is read here first (checked in
    Python, then loaded, so that errors name the file and the fix), a CCP4/MRC map is checked
    complete; other files pass unchecked."""
    path = Path(path)
    try:
        if not path.is_file():
            return
    except OSError:  # e.g. a name too long: check_input_file explains it later
        return
    if looks_like_cif(path) and not is_mtz(path):
        check_cif(path)  # iotbx.cif's parser crashes on some damaged files
    elif is_mtz(path) or path.suffix.lower() == ".mtz":
        from meteor_cctbx.reflections import read_miller_arrays

        read_miller_arrays(path)
    elif path.suffix.lower() in MAP_SUFFIXES:
        check_map_file(check_input_file(path, "map file"))


def check_phil_file(path: Path) -> None:
    """Sorry naming the syntax error of a parameter file libtbx.phil cannot parse."""
    import libtbx.phil

    try:
        libtbx.phil.parse(file_name=str(path))
    except Exception as error:  # libtbx.phil raises RuntimeError with the line
        raise Sorry(f"Parameter file {path} is not valid PHIL ({' '.join(str(error).split())}):"
                    f" fix its syntax (every '{{' needs its '}}', values key=value).") from None


def explain_unreadable_argument(argument: str) -> None:
    """Raise the Sorry that says why a command-line argument could not be used.

    Called for arguments iotbx's parser recognised neither as a file nor as a parameter.
    """
    if "=" in argument:
        raise Sorry(f"Parameter {argument} is not recognised: run with --show-defaults to "
                    f"list the parameters.")
    path = check_input_file(argument, "file")
    suffix = path.suffix.lower()
    if suffix in PHIL_SUFFIXES:
        check_phil_file(path)
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
    if suffix not in PHIL_SUFFIXES:
        with open(path, "rb") as handle:
            start = handle.read(4096)
        if b"{" in start and b"}" not in start or start.count(b"{") != start.count(b"}"):
            check_phil_file(path)
    raise Sorry(f"Cannot use {path}: not a reflection (MTZ, mmCIF), model (PDB, mmCIF), map "
                f"(CCP4/MRC) or parameter (.eff) file.")
