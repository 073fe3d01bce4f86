"""``<prefix>.log`` beside a program's outputs: a header with the program and meteor_cctbx
versions, the command line, the parameters that differ from the defaults and the papers to
cite, then everything the program printed up to the writing of its outputs.  It is written as
a member of the output set (record.RUN_LOG, set by command_line.run_as_command)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence

import libtbx.phil


def non_default_parameters(master: libtbx.phil.scope, working: libtbx.phil.scope) -> str:
    """The PHIL text of the parameters of ``working`` that differ from ``master``."""
    return master.fetch_diff(source=working).as_str().strip()


def run_log_header(command_line: Sequence[str], non_default: str,
                   citations: Sequence[str]) -> str:
    """The lines at the top of a run log (see module docstring)."""
    from meteor_cctbx import __version__
    from meteor_cctbx.record import software_versions

    versions = ", ".join(f"{k} {v}" for k, v in software_versions().items())
    lines = [f"{command_line[0]} (meteor_cctbx {__version__})",
             f"Command line: {shlex.join(str(a) for a in command_line)}",
             f"Versions: {versions}",
             "Parameters changed from the defaults:",
             *("  " + line for line in (non_default or "(none)").splitlines())]
    if citations:
        lines += ["Please cite:", *("  " + line for line in citations)]
    return "\n".join(lines) + "\n" + "=" * 79 + "\n"


def run_log_path(params) -> Path | None:
    """``<output.prefix>.log``, or None for a program without output.prefix."""
    prefix = getattr(getattr(params, "output", None), "prefix", None)
    return Path(f"{prefix}.log") if prefix else None
