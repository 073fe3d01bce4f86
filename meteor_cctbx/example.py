"""The built-in example: a synthetic isomorphous pair written as ordinary input files.

    derivative.mtz  F,SIGF of the derivative (native + a ~10-atom ligand)
    native.mtz      F,SIGF of the native
    model.pdb       the native model with coordinate and B-factor errors (for phases)
    truth.mtz       FTRUE,PHTRUE: the true derivative-minus-native structure factors
"""
from __future__ import annotations

from pathlib import Path

from meteor_cctbx.record import write_bytes, write_map_coefficients_mtz, write_mtz
from meteor_cctbx.synthetic import SyntheticPair, small_example, structure_as_pdb

EXAMPLE_FILES = ("derivative.mtz", "native.mtz", "model.pdb", "truth.mtz")


def write_amplitudes_mtz(path: Path, amplitudes) -> None:
    """Atomically write amplitudes and sigmas as columns F, SIGF."""
    write_mtz(path, amplitudes.as_mtz_dataset(column_root_label="F").mtz_object())


def write_example(directory: str | Path, d_min: float = 1.8, ligand_occupancy: float = 0.6,
                  seed: int = 0) -> SyntheticPair:
    """Write the example files into ``directory`` (created if needed); return the pair."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pair = small_example(d_min=d_min, ligand_occupancy=ligand_occupancy, seed=seed)
    write_amplitudes_mtz(directory / "derivative.mtz", pair.derivative)
    write_amplitudes_mtz(directory / "native.mtz", pair.native)
    write_bytes(directory / "model.pdb", structure_as_pdb(pair.phasing_model).encode())
    write_map_coefficients_mtz(directory / "truth.mtz", [(pair.true_difference, "FTRUE",
                                                          "PHTRUE")])
    return pair
