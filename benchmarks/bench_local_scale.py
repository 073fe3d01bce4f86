"""Benchmark meteor.local_scale on a 400^3 map, against OccuPy measured in the same run.

    python benchmarks/bench_local_scale.py [--size 400] [--nproc 2] [--skip-occupy]

Builds (once) a synthetic cryo-EM-like map in benchmarks/_work/: three globular domains of
random "atoms" blurred to about 3.5 A, one domain at 40 % occupancy, plus white noise, 1 A
voxels.  Times the whole command line (read, estimate, write every output) of
``meteor.local_scale`` with and without amplification, then OccuPy (PyPI ``occupy``) in its
own virtual environment benchmarks/_work/occupy-venv, installed on first use with numpy 1.x
(OccuPy fails on numpy 2).  OccuPy is run
through its Python API (its command line needs a Qt display) at full size (max_box = size)
and at its default, which silently shrinks boxes above 256^3.  If OccuPy cannot be installed
or run, the script says why and reports our times only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work"
OCCUPY_VENV = WORK / "occupy-venv"


def build_map(path: Path, size: int, seed: int = 0) -> None:
    """Write the synthetic benchmark map (float32, 1 A voxels, origin 0) to ``path``."""
    from cctbx import crystal

    from meteor_cctbx.local_scale import unit_cell_map_manager
    import scipy.fft  # after cctbx (see meteor_cctbx.local_scale)

    rng = np.random.default_rng(seed)
    centre = size / 2
    domains = [((centre - 0.15 * size,) * 3, 0.2 * size, 1.0),
               ((centre + 0.12 * size, centre - 0.1 * size, centre + 0.1 * size), 0.15 * size,
                1.0),
               ((centre + 0.1 * size, centre + 0.2 * size, centre - 0.15 * size), 0.1 * size,
                0.4)]
    grid = np.zeros((size,) * 3, dtype=np.float32)
    for middle, radius, occupancy in domains:
        n_atoms = int(4 / 3 * np.pi * radius ** 3 / 15.0)  # one atom per 15 A^3
        direction = rng.normal(size=(n_atoms, 3))
        direction /= np.linalg.norm(direction, axis=1)[:, None]
        sites = np.array(middle) + direction * radius * rng.random(n_atoms)[:, None] ** (1 / 3)
        index = np.clip(np.round(sites).astype(int), 0, size - 1)
        np.add.at(grid, tuple(index.T), np.float32(occupancy))
    spectrum = scipy.fft.rfftn(grid, workers=-1)
    frequency = [np.fft.fftfreq(size), np.fft.fftfreq(size), np.fft.rfftfreq(size)]
    s2 = (frequency[0][:, None, None] ** 2 + frequency[1][None, :, None] ** 2
          + frequency[2][None, None, :] ** 2)
    spectrum *= np.exp(-(np.pi ** 2) * 2 * 1.2 ** 2 * s2).astype(np.float32)  # sd 1.2 A blur
    grid = scipy.fft.irfftn(spectrum, s=grid.shape, workers=-1).astype(np.float32)
    grid += np.float32(0.05 * grid.max()) * rng.standard_normal(grid.shape, dtype=np.float32)
    symmetry = crystal.symmetry((float(size),) * 3 + (90.0, 90.0, 90.0), "P1")
    mm = unit_cell_map_manager(grid, symmetry, "meteor_cctbx local_scale benchmark map")
    mm.set_wrapping(False)
    mm.write_map(str(path))


def timed(command: list[str], **options) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``command``; return it with its wall time and CPU time (user + system, s).

    On a shared machine the wall time depends on the other load; the CPU time much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, **options)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return completed, wall, cpu


def time_ours(map_path: Path, nproc: int, extra: list[str], name: str) -> dict:
    prefix = WORK / name
    command = [sys.executable, "-m", "meteor_cctbx.command_line.local_scale", str(map_path),
               f"output.prefix={prefix}", "output.overwrite=True", f"nproc={nproc}", *extra]
    completed, wall, cpu = timed(command)
    if completed.returncode != 0:
        raise SystemExit(f"meteor.local_scale failed:\n{completed.stderr}")
    record = json.loads(Path(f"{prefix}.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "steps_s": record["timings_s"]}


def occupy_python() -> Path | None:
    """Python of a virtual environment with OccuPy installed, or None (with the reason)."""
    python = OCCUPY_VENV / "bin" / "python"
    if not python.exists():
        print("Installing OccuPy into", OCCUPY_VENV)
        subprocess.run([sys.executable, "-m", "venv", str(OCCUPY_VENV)], check=True)
        # OccuPy calls numpy functions removed in numpy 2 (np.product): pin numpy 1.x.
        installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "occupy",
                                    "numpy<2"], capture_output=True, text=True)
        if installed.returncode != 0:
            print("OccuPy could not be installed:", installed.stderr.strip()[-500:])
            return None
    return python


def time_occupy(python: Path, map_path: Path, max_box: int) -> dict | None:
    """Wall and CPU time of OccuPy's scale estimate on ``map_path`` (None, with the reason,
    when it fails).  Its command line imports a Qt GUI and so cannot start without a display;
    its Python API runs the same estimate."""
    run_dir = WORK / f"occupy-run-{max_box}"
    run_dir.mkdir(exist_ok=True)
    script = ("from occupy_lib import estimate, args\n"
              f"estimate.occupy_run(args.occupy_options(input_map={str(map_path)!r}, "
              f"max_box={max_box}, chimerax=False))\n")
    completed, wall, cpu = timed([str(python), "-c", script], cwd=run_dir,
                                 env={**os.environ, "MPLBACKEND": "Agg"})
    if completed.returncode != 0:
        print(f"OccuPy (max_box={max_box}) failed:", completed.stderr.strip()[-500:])
        return None
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--skip-occupy", action="store_true")
    options = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    map_path = WORK / f"bench_{options.size}.mrc"
    if not map_path.exists():
        print(f"Building {map_path} ...")
        build_map(map_path, options.size)

    print(f"{options.size}^3 map, {options.nproc} threads")
    scale_only = time_ours(map_path, options.nproc, [], "ours_scale")
    amplified = time_ours(map_path, options.nproc,
                          ["modify.mode=amplify", "scale.source=lowpass"], "ours_amplify")
    for label, timing in (("scale + confidence", scale_only),
                          ("scale + confidence + amplify", amplified)):
        steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in timing["steps_s"].items())
        print(f"meteor.local_scale {label}: {timing['wall_s']:.1f} s wall, "
              f"{timing['cpu_s']:.1f} s CPU ({steps})")

    if options.skip_occupy:
        return
    python = occupy_python()
    if python is None:
        print("OccuPy unavailable: our times only.")
        return
    for label, max_box in ((f"at full size ({options.size}^3)", options.size),
                           ("default (shrinks to 256^3)", 256)):
        timing = time_occupy(python, map_path, max_box)
        if timing is not None:
            print(f"OccuPy {label}: {timing['wall_s']:.1f} s wall, {timing['cpu_s']:.1f} s "
                  f"CPU; OccuPy / meteor.local_scale (scale + confidence): wall "
                  f"{timing['wall_s'] / scale_only['wall_s']:.1f}x, CPU "
                  f"{timing['cpu_s'] / scale_only['cpu_s']:.1f}x")


if __name__ == "__main__":
    main()
