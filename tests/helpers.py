"""Helpers for running the programs in-process and reading their outputs."""
from __future__ import annotations

from pathlib import Path

import iotbx.mtz
import numpy as np

from meteor_cctbx.command_line import run_as_command

#: Fixed k and TV weight: a difference-map run in about a second (no scans).
FAST = ["kweight.mode=fixed", "tv.mode=fixed"]

#: Every output of a default-prefix meteor.diffmap run with output.map=True.
DIFFMAP_OUTPUTS = ("meteor_diffmap.mtz", "meteor_diffmap.json", "meteor_diffmap.png",
                   "meteor_diffmap.ccp4", "meteor_diffmap.log")


def example_inputs(example) -> list[str]:
    """Derivative, native and model files of an example fixture (conftest.example)."""
    return [str(example.dir / name) for name in ("derivative.mtz", "native.mtz", "model.pdb")]


def read_map(path: Path):
    """(map_manager, numpy array of its values) of a CCP4/MRC map file."""
    from iotbx.map_manager import map_manager

    manager = map_manager(str(path))
    return manager, manager.map_data().as_numpy_array()


def run_program(program_class, args, capsys) -> tuple[int, str, str]:
    """Run a program as its console script would; return (exit status, stdout, stderr)."""
    status = run_as_command(program_class, [str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def mtz_arrays(path: Path) -> dict:
    """Miller arrays of an MTZ keyed by label string (e.g. 'DELFWT,PHDELWT')."""
    return {a.info().label_string(): a for a in iotbx.mtz.object(str(path)).as_miller_arrays()}


def assert_one_line_sorry(status: int, err: str, *fragments: str) -> None:
    """Exit status 1 and a single 'Sorry: ...' line containing every fragment."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("Sorry: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def local_scale_params(**settings):
    """Default local_scale parameters with ``scope__name=value`` overrides."""
    from meteor_cctbx.phil import default_params

    extract = default_params("local_scale")
    for key, value in settings.items():
        scope, name = key.split("__")
        setattr(getattr(extract, scope), name, value)
    return extract


def sharpen_params(*settings: str):
    """meteor.sharpen parameters: the defaults with ``key=value`` settings (PHIL syntax)."""
    import libtbx.phil

    from meteor_cctbx.phil import master_phil

    master = master_phil("sharpen")
    return master.fetch(sources=[libtbx.phil.parse(s) for s in settings]).extract()


def cell_map_manager(values: np.ndarray, symmetry):
    """A map_manager of ``values`` covering the unit cell of ``symmetry`` (origin 0)."""
    from cctbx.array_family import flex
    from iotbx.map_manager import map_manager

    return map_manager(map_data=flex.double(np.ascontiguousarray(values, dtype=np.float64)),
                       unit_cell_grid=values.shape, unit_cell_crystal_symmetry=symmetry,
                       wrapping=True)


def map_on_grid(coefficients, n_real: tuple[int, int, int]) -> np.ndarray:
    """The map of ``coefficients`` on a unit-cell grid of ``n_real`` points."""
    from cctbx import maptbx

    gridding = maptbx.crystal_gridding(coefficients.unit_cell(),
                                       space_group_info=coefficients.space_group_info(),
                                       pre_determined_n_real=n_real)
    return coefficients.fft_map(crystal_gridding=gridding).real_map_unpadded().as_numpy_array()
