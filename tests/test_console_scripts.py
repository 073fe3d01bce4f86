"""Each installed console script (setup.py entry points) run once in a subprocess, as a user
would: --help lists the parameters, --citations names the papers, and meteor.example then
meteor.diffmap make a map (the scripts of the venv, with this checkout on PYTHONPATH)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROGRAMS = ("diffmap", "phaseboost", "sharpen", "local_scale", "extrapolate")


def script(name: str) -> Path:
    path = BIN / f"meteor.{name}"
    if not path.exists():
        pytest.skip(f"{path} is not installed (pip install -e .)")
    return path


def run(arguments: list, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(a) for a in arguments], cwd=cwd, capture_output=True,
                          text=True, env=environment, timeout=300)


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_lists_the_parameters(name, tmp_path):
    result = run([script(name), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"meteor.{name}" in result.stdout and "output {" in result.stdout
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize("name, author", [("diffmap", "Rudin"), ("phaseboost", "Beck"),
                                          ("local_scale", "Forsberg"),
                                          ("sharpen", "Terwilliger"),
                                          ("extrapolate", "Genick")])
def test_citations_name_the_papers(name, author, tmp_path):
    result = run([script(name), "--citations"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert author in result.stdout


def test_example_then_diffmap_make_a_map_and_a_log(tmp_path):
    made = run([script("example"), "example", "--d-min", "3"], tmp_path)
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "example"
    inputs = sorted(p.name for p in directory.iterdir())
    assert {"derivative.mtz", "native.mtz", "model.pdb"} <= set(inputs), inputs
    result = run([script("diffmap"), "derivative.mtz", "native.mtz", "model.pdb",
                  "kweight.mode=fixed", "tv.mode=fixed", "d_min=3"], directory)
    assert result.returncode == 0, result.stderr
    log = (directory / "meteor_diffmap.log").read_text()
    header = log.split("=" * 79)[0]
    assert header.startswith("meteor.diffmap (meteor_cctbx ")
    assert "Command line: meteor.diffmap derivative.mtz native.mtz model.pdb" in header
    assert "d_min = 3" in header and "mode = optimize *fixed none" in header
    assert "Rudin LI, Osher S, Fatemi E (1992)" in header
    assert "Isomorphism (after scaling):" in log  # the program's own log follows
