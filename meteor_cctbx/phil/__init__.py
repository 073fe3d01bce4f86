"""Master PHIL parameter files of every program.

Each program has ``<program>.phil``; scopes shared between programs live in their own files and
are pulled in with a line ``include file <name>.phil``, expanded here so that ``--show-defaults``
shows every parameter in full.
"""
from __future__ import annotations

import re
from pathlib import Path

import libtbx.phil
from libtbx.utils import Sorry

PHIL_DIR = Path(__file__).resolve().parent

#: Parameters that libtbx's ProgramTemplate adds to every program's output scope and that our
#: programs do not use (each writes a set of files named from output.prefix): removed from the
#: command-line interface (command_line.MeteorParser) and refused when set through iotbx's own
#: parser.
UNUSED_TEMPLATE_OUTPUT = ("filename", "file_name", "suffix", "serial", "serial_format",
                          "target_output_format")

# A help string continued on the next line ("... \<newline>   more"): one space between.
_CONTINUATION = re.compile(r"[ \t]*\\\n[ \t]*")


def master_phil_str(name: str) -> str:
    """Return the text of ``phil/<name>.phil`` with its ``include file`` lines expanded."""
    lines = []
    for line in (PHIL_DIR / f"{name}.phil").read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[:2] == ["include", "file"]:
            lines.append(master_phil_str(Path(words[2]).stem))
        else:
            lines.append(line)
    return _CONTINUATION.sub(" ", "\n".join(lines))


def remove_unused_template_output(master: libtbx.phil.scope) -> None:
    """Drop UNUSED_TEMPLATE_OUTPUT from ``master``'s output scope (in place)."""
    for scope in master.objects:
        if scope.is_scope and scope.name == "output":
            scope.objects = [o for o in scope.objects if o.name not in UNUSED_TEMPLATE_OUTPUT]


def refuse_unused_template_output(params, program_name: str) -> None:
    """Sorry if a parameter of UNUSED_TEMPLATE_OUTPUT was changed from libtbx's default (possible
    only through iotbx's own parser, which adds them)."""
    output = getattr(params, "output", None)
    defaults = {"serial": 0, "serial_format": "%03d"}
    for name in UNUSED_TEMPLATE_OUTPUT:
        value = getattr(output, name, None)
        if value is not None and value != defaults.get(name):
            raise Sorry(f"output.{name}={value} is not used by {program_name}, which names "
                        f"every output from output.prefix: set output.prefix instead.")


def master_phil(name: str) -> libtbx.phil.scope:
    """Parsed master PHIL scope of program ``name``."""
    return libtbx.phil.parse(master_phil_str(name))


def default_params(name: str) -> libtbx.phil.scope_extract:
    """Default parameters of program ``name`` as a PHIL extract (for the Python API)."""
    return master_phil(name).extract()


def choice(value: str | None) -> str:
    """A PHIL choice as a string: libtbx.phil extracts the choice ``none`` as Python None."""
    return "none" if value is None else str(value)
