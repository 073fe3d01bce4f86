"""Thin console entry points: each module runs one ProgramTemplate with iotbx's CLI parser.

``run_as_command`` turns every ``Sorry`` into one line on stderr and a non-zero exit status,
so a bad input never shows a traceback; any other exception becomes one line naming the step
that failed, the inputs and a log file that holds the traceback.  SIGTERM and SIGHUP stop a
run the way Ctrl-C does, so its temporary files are removed; the output lock is released
whatever happens.  Everything a program prints is also kept for ``<output.prefix>.log``, which
joins the program's output set with a header (versions, command line, non-default parameters,
citations; see run_log).
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Sequence

from iotbx.cli_parser import CCTBXParser, run_program
from libtbx.utils import Sorry, multi_out

from meteor_cctbx.messages import one_line


def explain_unrecognised_arguments(parser) -> None:
    """Replace iotbx's generic handling of unusable arguments by the reason for the first one.

    Passed to ``run_program`` as ``custom_process_arguments``: it runs after files and PHIL are
    parsed.  Arguments nothing could read are in ``parser.namespace.unknown``; files iotbx read
    as a type the program does not take (or could not classify) are missing from the
    DataManager.  Both would otherwise be ignored or reported without a reason.
    """
    from meteor_cctbx.argument_checks import explain_unreadable_argument

    for argument in parser.namespace.unknown:
        explain_unreadable_argument(argument)
    taken = set()
    for datatype in parser.data_manager.datatypes:
        names = getattr(parser.data_manager, f"get_{datatype}_names", lambda: [])()
        taken.update(os.path.abspath(name) for name in names)
    for file_name in parser.namespace.files or []:
        if os.path.abspath(file_name) not in taken:
            explain_unreadable_argument(file_name)


class MeteorParser(CCTBXParser):
    """iotbx's parser with parameter errors reported as one sentence naming the parameter,
    without the output parameters of libtbx's ProgramTemplate that our programs do not use,
    with reflection files converted once per process (see data_manager_state) and with help
    text in ``--show-defaults`` (an editable, documented .eff)."""

    def __init__(self, program_class, *args, **kwargs):
        from meteor_cctbx.data_manager_state import (convert_reflection_files_once,
                                                     forget_repeated_child_datatypes)
        from meteor_cctbx.phil import remove_unused_template_output

        super().__init__(program_class, *args, **kwargs)  # creates the DataManager
        forget_repeated_child_datatypes()
        convert_reflection_files_once(self.data_manager)
        remove_unused_template_output(self.master_phil)
        heading = "\n\nPHIL arguments:\n"
        if heading in self.description:  # --help lists the parameters that remain
            self.description = (self.description.split(heading)[0] + heading
                                + self.master_phil.as_str(prefix="  ", expert_level=3,
                                                          attributes_level=0))

    def parse_args(self, args, *rest, **kwargs):
        args = list(args)
        options = [a.split("=")[0].replace("_", "-") for a in args if a.startswith("--")]
        if "--show-defaults" in options and "--attributes-level" not in options:
            args.append("--attributes-level=1")  # each parameter with its .help
        try:
            return super().parse_args(args, *rest, **kwargs)
        except RuntimeError as error:  # libtbx.phil: bad value, out of range, bad syntax
            raise Sorry(f"{one_line(error)}; run with --show-defaults to see the allowed "
                        f"values.") from error

    def process_files(self, file_list, *args, **kwargs):
        """Check MTZ, mmCIF and map files in Python before iotbx's C readers see them: a
        damaged file would crash them or give an obscure message (see
        argument_checks.check_before_iotbx)."""
        from meteor_cctbx.argument_checks import check_before_iotbx

        for file_name in file_list:
            check_before_iotbx(file_name)
        return super().process_files(file_list, *args, **kwargs)

    def raise_Sorry_for_unused_phil(self):
        if self.unused_phil and self.unused_phil_raises_sorry \
                and not self.namespace.diff_params:
            unknown = ", ".join(one_line(phil) for phil in self.unused_phil)
            raise Sorry(f"Unknown parameter(s) {unknown} for {os.path.basename(self.prog)}: "
                        f"run with --show-defaults to list the parameters (in .eff files give "
                        f"full names, e.g. output.overwrite).")


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP, like KeyboardInterrupt for SIGINT."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def _stop(signal_number, frame) -> None:
    raise Stopped(signal_number)


@contextlib.contextmanager
def stopping_cleanly():
    """SIGTERM and SIGHUP raise ``Stopped`` while the block runs (main thread only), so that
    ``finally`` clauses remove temporary files; stdout and stderr closed by the caller
    (``>&-``) are replaced by /dev/null."""
    for descriptor, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(descriptor)
        except OSError:  # closed: keep files opened later from taking its number
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != descriptor:
                os.dup2(devnull, descriptor)
                os.close(devnull)
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
    handlers = {}
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        for number in (signal.SIGTERM, signal.SIGHUP):
            handlers[number] = signal.signal(number, _stop)
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def failed_step(error: BaseException) -> str:
    """'function (file.py:line)' of the innermost meteor_cctbx frame of the traceback (the
    step that failed), else of the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}meteor_cctbx{os.sep}" in f.filename] or frames
    if not ours:
        return "start-up"
    frame = ours[-1]
    return f"{frame.name} ({Path(frame.filename).name}:{frame.lineno})"


def write_error_log(program: str, args: Sequence[str], error: BaseException) -> Path:
    """Write the traceback, arguments and versions to ``<program>_error.log`` (e.g.
    meteor_diffmap_error.log) in the current directory (the temporary directory if that is not
    writable); return its path."""
    from meteor_cctbx.record import software_versions

    name = program
    text = (f"{name} {' '.join(args)}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__))
            + "\nversions: " + ", ".join(f"{k} {v}" for k, v in software_versions().items())
            + "\n")
    for directory in (Path.cwd(), Path(tempfile.gettempdir())):
        path = directory / f"{name.replace('.', '_')}_error.log"
        try:
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path(os.devnull)


def say(line: str) -> None:
    """Print ``line`` on stderr after what the log printed so far."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    print(line, file=sys.stderr)


def run_as_command(program_class, args: Sequence[str] | None = None) -> int:
    """Run ``program_class`` on command-line ``args``; return the process exit status."""
    from meteor_cctbx.record import COMMAND_LINE, RUN_LOG, release_outputs

    args = list(sys.argv[1:] if args is None else args)
    program = "meteor." + program_class.__module__.rsplit(".", 1)[-1]  # programs/<name>.py
    token = COMMAND_LINE.set([program, *map(str, args)])
    parsers: list[MeteorParser] = []
    text = io.StringIO()
    log_token = RUN_LOG.set(lambda: program_log(program_class, parsers[0], COMMAND_LINE.get(),
                                                text.getvalue()) if parsers else None)

    class RecordingParser(MeteorParser):  # keeps the parsed parameters for the run log
        def __init__(self, *parser_args, **kwargs):
            super().__init__(*parser_args, **kwargs)
            parsers.append(self)
    with stopping_cleanly():
        logger = multi_out()  # after stopping_cleanly, which replaces a closed stdout
        logger.register("stdout", sys.stdout)
        logger.register("run_log", text)
        try:
            run_program(program_class=program_class, args=args, parser_class=RecordingParser,
                        custom_process_arguments=explain_unrecognised_arguments,
                        logger=logger)
        except Sorry as error:
            say(f"Sorry: {one_line(error)}")
            return 1
        except SystemExit as exit_request:  # --help, --show-defaults
            return exit_request.code if isinstance(exit_request.code, int) else 0
        except (KeyboardInterrupt, Stopped) as stop:
            say(f"Interrupted ({'SIGINT' if isinstance(stop, KeyboardInterrupt) else stop}): "
                f"no new output was written; earlier outputs are unchanged.")
            return 128 + getattr(stop, "signal_number", signal.SIGINT)
        except Exception as error:  # a bug or an input nothing checked: one line, log kept
            log = write_error_log(program, args, error)
            inputs = " ".join(a for a in args if "=" not in a) or "none"
            say(f"Error: unexpected failure in {failed_step(error)} "
                f"({type(error).__name__}: {one_line(error)[:200]}) on inputs {inputs}; no "
                f"output was written. Please send {log} and the inputs to the meteor_cctbx "
                f"developers.")
            return 2
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            release_outputs()
            COMMAND_LINE.reset(token)
            RUN_LOG.reset(log_token)
    return 0


def program_log(program_class, parser, command_line: Sequence[str],
                text: str) -> tuple[Path, str] | None:
    """(``<output.prefix>.log``, its text) of the run being written: the run_log header, then
    what the program printed so far; None for a program without output.prefix."""
    from meteor_cctbx.citations import citation_lines
    from meteor_cctbx.run_log import non_default_parameters, run_log_header, run_log_path

    path = run_log_path(parser.working_phil.extract())
    if path is None:
        return None
    header = run_log_header(command_line, non_default_parameters(parser.master_phil,
                                                                 parser.working_phil),
                            citation_lines(getattr(program_class, "papers", ())))
    return path, header + text


def main_for(program_class):
    """Build a console-script ``main()`` for ``program_class``."""
    def main(args: Sequence[str] | None = None) -> int:
        from meteor_cctbx.malloc_tuning import keep_freed_memory

        keep_freed_memory()  # this process is ours: large maps reuse freed memory
        return run_as_command(program_class, args)
    main.__doc__ = f"Console entry point of {program_class.__name__}."
    return main


