"""Run records and safe output: atomic file writing, the JSON record, PNG plots.

Every output file is written to a temporary file in its final directory, checked, and renamed
over the destination only when complete, so an interrupted run leaves either the previous file
or none.  Inside ``output_set()`` a program's outputs are renamed together at the end, after
all of them are complete, the JSON record last: a run that fails or is killed before then
leaves every previous output as it was.  ``check_outputs_writable`` also locks the output
prefix for the run (``claim_outputs``: a concurrent run with the same prefix gets a Sorry) and
removes the temporary files killed runs left; ``release_outputs`` ends the claim.
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import glob
import json
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from libtbx.utils import Sorry

# (temporary, destination) pairs of the output set being written, None outside output_set()
_staged: contextvars.ContextVar[list[tuple[str, Path]] | None] = contextvars.ContextVar(
    "meteor_staged_outputs", default=None)


#: Longest file name most file systems take (bytes), less the room the hidden temporary
#: name ``.<name>.XXXXXXXX.tmp<suffix>`` of ``atomic_path`` adds.
MAX_OUTPUT_NAME = 255 - 24


def check_outputs_writable(paths: Sequence[str | os.PathLike], overwrite: bool) -> None:
    """Raise Sorry before any work is done if an output exists or cannot be written; then
    claim the outputs for this process (``claim_outputs``).

    Writability is tried, not inferred from permission bits (which do not bind root and say
    nothing of read-only file systems): a temporary file is created and removed.
    """
    paths = [Path(p) for p in paths]
    for path in paths:
        directory = path.parent if str(path.parent) else Path(".")
        if not path.name or path.name.startswith("."):
            raise Sorry(f"Output name {path} would be a hidden file (output.prefix ends in "
                        f"'/' or '.'): give output.prefix a file stem, e.g. "
                        f"output.prefix={directory / 'run1'}.")
        if len(os.fsencode(path.name)) > MAX_OUTPUT_NAME:
            raise Sorry(f"Output name {path.name[:40]}... is {len(os.fsencode(path.name))} "
                        f"bytes long, more than file systems allow ({MAX_OUTPUT_NAME}): "
                        f"choose a shorter output.prefix.")
        try:
            if directory.exists() and not directory.is_dir():
                raise Sorry(f"Output directory {directory} is a file, not a directory: change "
                            f"output.prefix.")
            if not directory.is_dir():
                raise Sorry(f"Output directory {directory} does not exist: create it or "
                            f"change output.prefix.")
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".meteor_write_test."):
                pass
        except OSError as error:
            raise Sorry(f"Output directory {directory} is not writable "
                        f"({error.strerror or error}): choose another output.prefix.") from None
        if path.is_dir():
            raise Sorry(f"Output {path} is a directory: choose another output.prefix.")
        if path.exists() and not overwrite:
            raise Sorry(f"Output {path} already exists: set output.overwrite=True to replace "
                        f"it or choose another output.prefix.")
    claim_outputs(paths)


# Locks this process holds: lock path -> open file descriptor (fcntl.flock on it).
_locks: dict[Path, int] = {}


def lock_path(paths: Sequence[str | os.PathLike]) -> Path:
    """The lock file of an output set: ``.<common stem>.lock`` in the first output's
    directory (the common start of the names, e.g. ``run1`` for run1.mtz and run1_scale.mrc)."""
    first = Path(paths[0])
    stem = os.path.commonprefix([Path(p).name for p in paths]).rstrip("._-") or first.stem
    return (first.parent if str(first.parent) else Path(".")) / f".{stem}.lock"


def claim_outputs(paths: Sequence[str | os.PathLike]) -> None:
    """Lock the output set of ``paths`` for this process until ``release_outputs``, or Sorry
    when another run holds it; then remove what killed runs left of its temporary files.

    The lock is an exclusive ``flock`` on a hidden lock file beside the outputs, released by
    the kernel when a process dies (a lock file left by SIGKILL is taken over and removed by
    the next run).  Claiming a set this process already holds does nothing.
    """
    import fcntl

    path = lock_path(paths)
    key = path.resolve()
    if key in _locks:
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise Sorry(f"Cannot create the lock file {path} ({error.strerror or error}): "
                        f"choose another output.prefix.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Sorry(f"Another run is writing outputs with the same prefix ({path} is "
                        f"locked): wait for it to finish or choose another output.prefix."
                        ) from None
        try:  # the holder before us may have removed the file after we opened it
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    _locks[key] = fd
    for output in map(Path, paths):
        directory = output.parent if str(output.parent) else Path(".")
        pattern = f".{glob.escape(output.name)}.*.tmp{glob.escape(output.suffix)}"
        for leftover in directory.glob(pattern):
            _remove_quietly(str(leftover))


def release_outputs() -> None:
    """Remove the lock files this process holds and release the locks."""
    for key, fd in list(_locks.items()):
        with contextlib.suppress(OSError):
            if os.stat(key).st_ino == os.fstat(fd).st_ino:
                os.remove(key)
        os.close(fd)
        del _locks[key]


atexit.register(release_outputs)


#: Set by command_line.run_as_command: a function giving (path, text) of the run's log
#: (run_log), written as a member of the output set when it completes; None outside a
#: command-line run.
RUN_LOG: contextvars.ContextVar[Callable[[], tuple[Path, str] | None] | None] = \
    contextvars.ContextVar("meteor_run_log", default=None)


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Make the files written by ``atomic_path`` inside the block appear together at its end.

    Each is written and checked under a temporary name; when the block completes, the previous
    JSON record (the mark of a complete set) is removed and the new files are renamed into
    place, the JSON record last.  The run log (RUN_LOG) joins the set.  If the block fails,
    no destination is touched and the temporary files are removed.  Inside another set, the
    block's files join that set.
    """
    if _staged.get() is not None:
        yield
        return
    staged: list[tuple[str, Path]] = []
    token = _staged.set(staged)
    try:
        yield
        run_log = RUN_LOG.get()
        entry = run_log() if run_log is not None else None
        if entry is not None:
            write_bytes(entry[0], entry[1].encode())
        _staged.reset(token)
        token = None
        _commit(staged)
    except BaseException:
        for tmp, _ in staged:
            _remove_quietly(tmp)
        raise
    finally:
        if token is not None:
            _staged.reset(token)


#: Signals held back while a set is renamed into place, so that a stop cannot split it.
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _commit(staged: list[tuple[str, Path]]) -> None:
    staged = sorted(staged, key=lambda item: item[1].suffix == ".json")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        for _, path in staged:
            if path.suffix == ".json" and path.exists():
                os.remove(path)
        for tmp, path in staged:
            os.replace(tmp, path)
            _fsync_directory(path)
    except OSError as error:
        raise Sorry(f"Could not rename the outputs into place ({error.strerror or error}): "
                    f"check the output directory.") from error
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _fsync_directory(path: Path) -> None:
    """Make a rename durable (best effort: not every file system supports it)."""
    with contextlib.suppress(OSError):
        handle = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike,
                verify: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the destination's suffix so that writers which dispatch on the
    extension behave.  After the block the file is flushed to disk and ``verify(temporary)``
    (if given) checks it is complete, since some C writers report a full disk only on stderr.
    On any failure the temporary file is removed, the destination is left untouched, and the
    error is re-raised as a one-line Sorry (writers raise OSError or RuntimeError on a full
    disk).  Inside ``output_set()`` the rename waits for the end of the set.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                   dir=directory)
    except OSError as error:
        raise _write_failure(path, error) from error
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        staged = _staged.get()
        if staged is None:
            os.replace(tmp, path)
        else:
            staged.append((tmp, path))
    except (OSError, RuntimeError) as error:
        _remove_quietly(tmp)
        raise _write_failure(path, error) from error
    except BaseException:
        _remove_quietly(tmp)
        raise


def _write_failure(path: Path, error: Exception) -> Sorry:
    """One line for a failed write: the OS's reason, or the writer's message."""
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())
    return Sorry(f"Could not write {path}: {reason}; check free disk space and permissions.")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_with(path: str | os.PathLike, writer: Callable[[str], None],
               verify: Callable[[str], None] | None = None) -> None:
    """Atomically write ``path`` with ``writer(temporary_path)``, checked by ``verify``."""
    with atomic_path(path, verify) as tmp:
        writer(tmp)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Discard what C libraries print on file descriptor 2 (CCP4's write-error chatter) while
    the block runs; failures still surface through ``verify``."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def verify_ccp4_map(path: str) -> None:
    """RuntimeError unless ``path`` holds as many bytes as its CCP4/MRC header announces."""
    from meteor_cctbx.file_checks import ccp4_map_problem

    if ccp4_map_problem(path):
        raise RuntimeError("the map file is incomplete (No space left on device?)")


def verify_mtz(path: str) -> None:
    """RuntimeError unless ``path`` is a complete MTZ file."""
    from meteor_cctbx.mtz_check import check_mtz

    try:
        check_mtz(path)
    except Sorry:
        raise RuntimeError("the MTZ file is incomplete (No space left on device?)") from None


def to_jsonable(value):
    """Convert numpy scalars/arrays, paths and PHIL extracts into plain JSON values.

    Non-finite floats become None so the record is strict JSON.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def write_json(path: str | os.PathLike, record: dict) -> None:
    """Atomically write ``record`` as indented, key-sorted JSON."""
    text = json.dumps(to_jsonable(record), indent=2, sort_keys=True) + "\n"
    write_bytes(path, text.encode())


def software_versions() -> dict[str, str]:
    """Versions of Python and of the libraries whose numbers a run depends on."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": sys.platform}
    for name in ("meteor_cctbx", "cctbx-base", "numpy", "scipy", "scikit-image", "numba",
                 "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def params_as_dict(params) -> dict:
    """Flatten a PHIL extract into {"scope.name": value} (values as PHIL would print them)."""
    flat = {}

    def walk(node, prefix):
        for key, value in vars(node).items():
            if key.startswith("_"):
                continue
            name = f"{prefix}{key}"
            if hasattr(value, "__phil_path__"):
                walk(value, name + ".")
            elif isinstance(value, list) and value and hasattr(value[0], "__phil_path__"):
                flat[name] = [params_as_dict(item) for item in value]
            else:
                flat[name] = value
    walk(params, "")
    return to_jsonable(flat)


@dataclass
class Panel:
    """One plot panel: a curve of score against a parameter, with the chosen value marked."""

    title: str
    xlabel: str
    ylabel: str
    x: Sequence[float]
    y: Sequence[float]
    chosen: float | None = None
    log_x: bool = False
    extra_curves: list[tuple[str, Sequence[float], Sequence[float]]] = field(default_factory=list)
    secondary: tuple[str, Sequence[float]] | None = None  # (label, y) on a right-hand axis
    log_y: bool = False
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label), e.g. a tolerance


def write_panels_png(path: str | os.PathLike, panels: Sequence[Panel], title: str = "") -> None:
    """Atomically write a PNG with one subplot per panel (matplotlib Agg, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    columns = min(n, 2)
    rows = -(-n // columns)
    width, height = 5.2 * columns, 3.9 * rows
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    # fixed margins in inches (room for tick labels, axis labels and a right-hand axis):
    # matplotlib's tight_layout took a quarter of a second per figure
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.8 / width, bottom=0.55 / height,
                        top=1 - (0.7 if title else 0.4) / height, wspace=0.45, hspace=0.45)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.ravel(), panels):
        order = np.argsort(np.asarray(panel.x, dtype=float)) if len(panel.x) else []
        x = np.asarray(panel.x, dtype=float)[order] if len(panel.x) else []
        y = np.asarray(panel.y, dtype=float)[order] if len(panel.y) else []
        ax.plot(x, y, "o-", ms=3, lw=1, color="tab:blue", label=panel.ylabel)
        for label, ex, ey in panel.extra_curves:
            ax.plot(ex, ey, "-", lw=1, label=label)
        for level, label in panel.hlines:
            ax.axhline(level, color="grey", lw=1, ls=":", label=label)
        if panel.secondary is not None and len(x):
            label, values = panel.secondary
            twin = ax.twinx()
            twin.plot(x, np.asarray(values, dtype=float)[order], "s--", ms=2.5, lw=0.8,
                      color="tab:orange", label=label)
            twin.set_ylabel(label, color="tab:orange")
            twin.tick_params(axis="y", colors="tab:orange")
        if panel.chosen is not None:
            ax.axvline(panel.chosen, color="tab:red", lw=1, ls="--",
                       label=f"chosen {panel.chosen:.3g}")
        if panel.log_y and len(y) and np.all(y > 0):
            ax.set_yscale("log")
        if panel.chosen is not None or panel.extra_curves or panel.hlines:
            ax.legend(fontsize=7, loc="best")
        positive = [v for v in x if v > 0]
        if panel.log_x and positive:
            ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_xlim(left=0)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


@dataclass
class MtzNames:
    """CCP4's names for the data in an MTZ: project, crystal and dataset (and wavelength, A)."""

    project: str = "meteor"
    crystal: str = "crystal"
    dataset: str = "dataset"
    wavelength: float = 1.0


def write_map_coefficients_mtz(path: str | os.PathLike, columns: Sequence[tuple],
                               history: Sequence[str] = (), title: str = "",
                               names: MtzNames | None = None) -> None:
    """Atomically write complex miller arrays as amplitude/phase column pairs of one MTZ.

    ``columns`` holds (complex array, amplitude label, phase label) triples, or quadruples
    with a sigma label, whose sigmas (the complex array's ``sigmas()``) follow the phase as
    type Q; phases are written in degrees (MTZ type P), amplitudes as type F.  A real amplitude
    array with sigmas may stand as (array, "F", "SIGF"): columns F (type F) and SIGF (type Q).
    ``title`` (at most 70 characters) and ``names`` go into the MTZ header.
    """
    names = names or MtzNames()
    dataset = None
    for array, amplitude_label, phase_label, *sigma_label in columns:
        if not array.is_complex_array():
            if phase_label != "SIG" + amplitude_label or array.sigmas() is None:
                raise ValueError(f"amplitudes {amplitude_label} need sigmas labelled "
                                 f"SIG{amplitude_label}")
            parts = [(array, amplitude_label, "FQ")]
        else:
            sigmas = array.sigmas()
            array = array.customized_copy(sigmas=None)
            amplitudes = abs(array).set_observation_type_xray_amplitude()
            parts = [(amplitudes, amplitude_label, "F"),
                     (array.phases(deg=True), phase_label, "P")]
            if sigma_label and sigmas is not None:
                parts.append((amplitudes.customized_copy(data=sigmas), sigma_label[0], "Q"))
        for part, label, types in parts:
            if dataset is None:
                dataset = part.as_mtz_dataset(
                    column_root_label=label, column_types=types,
                    wavelength=names.wavelength, crystal_name=names.crystal,
                    project_name=names.project, dataset_name=names.dataset)
            else:
                dataset.add_miller_array(part, column_root_label=label, column_types=types)
    mtz = dataset.mtz_object()
    if title:
        mtz.set_title(title[:70])
    for line in history:
        mtz.add_history(line[:80])
    write_mtz(path, mtz)


_CREATION_TIME = re.compile(rb"CREATED_\d\d/\d\d/\d{4}_\d\d:\d\d:\d\d")


def write_mtz(path: str | os.PathLike, mtz) -> None:
    """Atomically write an iotbx.mtz object, checked complete.  Equal content gives equal
    bytes: the creation time CCP4 writes into each new column's COLSRC header record is
    replaced by a fixed text of the same length."""
    def writer(tmp: str) -> None:
        mtz.write(file_name=tmp)
        with open(tmp, "r+b") as handle:
            start = handle.read(12)
            order = "little" if start[9] >> 4 == 4 else "big"
            header_start = (int.from_bytes(start[4:8], order, signed=True) - 1) * 4
            handle.seek(header_start)
            header = _CREATION_TIME.sub(b"meteor_cctbx".ljust(27), handle.read())
            handle.seek(header_start)
            handle.write(header)
    write_with(path, writer, verify=verify_mtz)


_ASCTIME = re.compile(rb" (Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                      rb"Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4}")


def write_map_manager(path: str | os.PathLike, map_manager) -> None:
    """Atomically write an iotbx map_manager as a CCP4 map, checked complete.  Equal maps give
    equal bytes: the time iotbx appends to the first label is blanked."""
    def writer(tmp: str) -> None:
        with native_stderr_silenced():
            map_manager.write_map(tmp)
        with open(tmp, "r+b") as handle:
            header = bytearray(handle.read(1024))
            header[224:] = _ASCTIME.sub(lambda match: b" " * len(match.group()), header[224:])
            handle.seek(0)
            handle.write(header)
    write_with(path, writer, verify=verify_ccp4_map)


def write_cell_map_ccp4(path: str | os.PathLike, real_map: np.ndarray, unit_cell, space_group,
                        title: str) -> None:
    """Atomically write a float32 map covering the whole unit cell as a CCP4 map."""
    import iotbx.ccp4_map
    from cctbx.array_family import flex

    data = flex.float(np.ascontiguousarray(real_map, dtype=np.float32))
    labels = flex.std_string([title[:80]])

    def writer(tmp: str) -> None:
        with native_stderr_silenced():
            iotbx.ccp4_map.write_ccp4_map(file_name=tmp, unit_cell=unit_cell,
                                          space_group=space_group, map_data=data.as_double(),
                                          labels=labels)
    write_with(path, writer, verify=verify_ccp4_map)


# ---------------------------------------------------------------------------------------------
# What a run was: its command line, date, directory and input files (every program's record)

#: The command line of the program being run, set by command_line.run_as_command; None
#: outside it (then sys.argv is recorded).
COMMAND_LINE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "meteor_command_line", default=None)


def input_file_record(path: str | os.PathLike) -> dict:
    """{"path": as given, "bytes": size, "sha256": digest} of one input file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return {"path": os.fspath(path), "bytes": os.path.getsize(path),
            "sha256": digest.hexdigest()}


def run_context(input_files: Sequence[str | os.PathLike | None]) -> dict:
    """The record's "run" entry: command line (as one shell-quoted string), date (ISO 8601,
    UTC), working directory and each input file with its size and SHA-256."""
    import datetime
    import shlex

    arguments = COMMAND_LINE.get()
    arguments = list(sys.argv) if arguments is None else arguments
    seen = []
    for path in input_files:
        if path and os.fspath(path) not in seen:
            seen.append(os.fspath(path))
    return {"command_line": shlex.join(str(a) for a in arguments),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "working_directory": os.getcwd(),
            "input_files": [input_file_record(p) for p in seen if os.path.isfile(p)]}


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Set ``timings[stage]`` to the seconds (wall clock) the block took, if it completes."""
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
