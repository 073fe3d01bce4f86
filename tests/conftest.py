"""Shared fixtures: a small synthetic isomorphous pair with known truth, written as files."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from meteor_cctbx.example import write_example

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "8a6g"


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> SimpleNamespace:
    """The built-in example at 2.0 A: ``.dir`` holds derivative.mtz, native.mtz, model.pdb and
    truth.mtz; ``.pair`` is the SyntheticPair behind them (arrays and true difference)."""
    directory = tmp_path_factory.mktemp("example")
    pair = write_example(directory, d_min=2.0, ligand_occupancy=0.6, seed=0)
    return SimpleNamespace(dir=directory, pair=pair)


@pytest.fixture(scope="session")
def example_f_model(example):
    """F_model (bulk solvent, n_gaussian) of the example's phasing model on the native set."""
    from meteor_cctbx.model_phases import load_model, model_structure_factors

    model = load_model(example.dir / "model.pdb", example.pair.native.crystal_symmetry())
    return model_structure_factors(model, example.pair.native).f_model


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run the test inside an empty temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def shared_data_or_skip() -> Path:
    if not (SHARED_DATA / "scaled-test-data.mtz").exists():
        pytest.skip(f"real test data not present at {SHARED_DATA}")
    return SHARED_DATA


os.environ.setdefault("MPLBACKEND", "Agg")
