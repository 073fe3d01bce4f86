"""Run records and safe output: atomic file writing, the JSON record, PNG plots.

Every output file is written to a temporary file in its final directory and renamed over the
destination only when complete, so an interrupted run leaves either the previous file or none.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from libtbx.utils import Sorry


def check_outputs_writable(paths: Sequence[str | os.PathLike], overwrite: bool) -> None:
    """Raise Sorry before any work is done if an output exists or cannot be written."""
    for path in map(Path, paths):
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            raise Sorry(f"Output directory {directory} does not exist: create it or change "
                        f"output.prefix.")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise Sorry(f"Output directory {directory} is not writable: choose another "
                        f"output.prefix.")
        if path.is_dir():
            raise Sorry(f"Output {path} is a directory: choose another output.prefix.")
        if path.exists() and not overwrite:
            raise Sorry(f"Output {path} already exists: set output.overwrite=True to replace "
                        f"it or choose another output.prefix.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the destination's suffix so that writers which dispatch on the
    extension behave.  On any failure (including a full disk) the temporary file is removed,
    the destination is left untouched, and the error is re-raised as Sorry when it is an OSError.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _remove_quietly(tmp)
        raise Sorry(f"Could not write {path}: {error.strerror or error}; check free disk space "
                    f"and permissions.") from error
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Atomically write ``path`` with ``writer(temporary_path)``."""
    with atomic_path(path) as tmp:
        writer(tmp)


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
    for name in ("meteor_cctbx", "cctbx-base", "numpy", "scipy", "scikit-image"):
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


def write_panels_png(path: str | os.PathLike, panels: Sequence[Panel], title: str = "") -> None:
    """Atomically write a PNG with one subplot per panel (matplotlib Agg, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        order = np.argsort(np.asarray(panel.x, dtype=float)) if len(panel.x) else []
        x = np.asarray(panel.x, dtype=float)[order] if len(panel.x) else []
        y = np.asarray(panel.y, dtype=float)[order] if len(panel.y) else []
        ax.plot(x, y, "o-", ms=3, lw=1)
        for label, ex, ey in panel.extra_curves:
            ax.plot(ex, ey, "-", lw=1, label=label)
        if panel.extra_curves:
            ax.legend(fontsize=7)
        if panel.chosen is not None:
            ax.axvline(panel.chosen, color="tab:red", lw=1, ls="--")
        positive = [v for v in x if v > 0]
        if panel.log_x and positive:
            ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_xlim(left=0)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_map_coefficients_mtz(path: str | os.PathLike, columns: Sequence[tuple],
                               history: Sequence[str] = ()) -> None:
    """Atomically write complex miller arrays as amplitude/phase column pairs of one MTZ.

    ``columns`` holds (complex array, amplitude label, phase label) triples; phases are written
    in degrees (MTZ type P), amplitudes as type F.
    """
    dataset = None
    for array, amplitude_label, phase_label in columns:
        amplitudes = abs(array).set_observation_type_xray_amplitude()
        phases = array.phases(deg=True)
        if dataset is None:
            dataset = amplitudes.as_mtz_dataset(column_root_label=amplitude_label,
                                                column_types="F")
        else:
            dataset.add_miller_array(amplitudes, column_root_label=amplitude_label,
                                     column_types="F")
        dataset.add_miller_array(phases, column_root_label=phase_label, column_types="P")
    mtz = dataset.mtz_object()
    for line in history:
        mtz.add_history(line[:80])
    write_with(path, lambda tmp: mtz.write(file_name=tmp))


def write_cell_map_ccp4(path: str | os.PathLike, real_map: np.ndarray, unit_cell, space_group,
                        title: str) -> None:
    """Atomically write a float32 map covering the whole unit cell as a CCP4 map."""
    import iotbx.ccp4_map
    from cctbx.array_family import flex

    data = flex.float(np.ascontiguousarray(real_map, dtype=np.float32))
    labels = flex.std_string([title[:80]])
    write_with(path, lambda tmp: iotbx.ccp4_map.write_ccp4_map(
        file_name=tmp, unit_cell=unit_cell, space_group=space_group,
        map_data=data.as_double(), labels=labels))
