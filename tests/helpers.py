"""Helpers for running the programs in-process and reading their outputs."""
from __future__ import annotations

from pathlib import Path

import iotbx.mtz

from meteor_cctbx.command_line import run_as_command


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
