"""Thin console entry points: each module runs one ProgramTemplate with iotbx's CLI parser.

``run_as_command`` turns every ``Sorry`` into one line on stderr and a non-zero exit status,
so a bad input never shows a traceback.
"""
from __future__ import annotations

import sys
from typing import Sequence

from iotbx.cli_parser import run_program
from libtbx.utils import Sorry


def one_line(message: object) -> str:
    """Collapse a (possibly multi-line) message to one line."""
    return " ".join(str(message).split())


def explain_unrecognised_arguments(parser) -> None:
    """Replace the parser's generic 'not recognized' error by the reason for the first argument.

    Passed to ``run_program`` as ``custom_process_arguments``: it runs after files and PHIL are
    parsed, while ``parser.namespace.unknown`` holds what nothing could read.
    """
    from meteor_cctbx.file_checks import explain_unreadable_argument

    for argument in parser.namespace.unknown:
        explain_unreadable_argument(argument)


def run_as_command(program_class, args: Sequence[str] | None = None) -> int:
    """Run ``program_class`` on command-line ``args``; return the process exit status."""
    args = list(sys.argv[1:] if args is None else args)
    try:
        run_program(program_class=program_class, args=args,
                    custom_process_arguments=explain_unrecognised_arguments)
    except Sorry as error:
        sys.stdout.flush()
        print(f"Sorry: {one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted: no output was written past the last completed file.", file=sys.stderr)
        return 130
    return 0


def main_for(program_class):
    """Build a console-script ``main()`` for ``program_class``."""
    def main(args: Sequence[str] | None = None) -> int:
        return run_as_command(program_class, args)
    main.__doc__ = f"Console entry point of {program_class.__name__}."
    return main


