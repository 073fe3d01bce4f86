"""Master PHIL parameter files of every program.

Each program has ``<program>.phil``; scopes shared between programs live in their own files and
are pulled in with a line ``include file <name>.phil``, expanded here so that ``--show-defaults``
shows every parameter in full.
"""
from __future__ import annotations

from pathlib import Path

import libtbx.phil

PHIL_DIR = Path(__file__).resolve().parent


def master_phil_str(name: str) -> str:
    """Return the text of ``phil/<name>.phil`` with its ``include file`` lines expanded."""
    lines = []
    for line in (PHIL_DIR / f"{name}.phil").read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[:2] == ["include", "file"]:
            lines.append(master_phil_str(Path(words[2]).stem))
        else:
            lines.append(line)
    return "\n".join(lines)


def master_phil(name: str) -> libtbx.phil.scope:
    """Parsed master PHIL scope of program ``name``."""
    return libtbx.phil.parse(master_phil_str(name))


def default_params(name: str) -> libtbx.phil.scope_extract:
    """Default parameters of program ``name`` as a PHIL extract (for the Python API)."""
    return master_phil(name).extract()


def choice(value: str | None) -> str:
    """A PHIL choice as a string: libtbx.phil extracts the choice ``none`` as Python None."""
    return "none" if value is None else str(value)
