"""Benchmark meteor.batch: a batch of derivatives against one native, against the same runs one
by one, and its throughput against the number of local Dask workers.

    python benchmarks/bench_batch.py [--n 8] [--d-min 2.5] [--workers 1 2] [--program diffmap]

Run it with a Python that has cctbx and this package.  Everything it writes goes under
``benchmarks/_work/batch/`` (git-ignored); the summary is ``benchmarks/_work/batch/summary.json``.

Inputs: the real 8a6g data (``/work/shared/data/8a6g``, or ``--data-dir``): native = F_off,
derivatives = F_on with ``--n`` different draws of extra Gaussian noise (0.5 x SIGF_on, seeded),
all cut at ``--d-min``; phasing model 8a6g-chromophore-removed.pdb.  Without the data, a
synthetic series from ``meteor_cctbx.synthetic.small_example`` (ligand occupancies 0.2-1.0).

Timed by wall clock, one after another on the same machine, every run from a clean directory:

* ``one by one, processes``: the program's console script once per derivative, as a shell loop
  would (start-up, imports, native reading and F_model with bulk solvent every time);
* ``one by one, one process``: the program's ``Program`` run per derivative inside one Python
  process (imports paid once; native and F_model still every time);
* ``meteor.batch, W workers``: the console script with a local cluster of W worker processes
  (start-up, cluster start, native side once, summary included).

It prints seconds, datasets per minute and each time against the batch with one worker, and
checks that every batch wrote byte-identical MTZ files to the one-by-one runs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import meteor_cctbx  # noqa: F401  (cctbx before scipy/matplotlib)
import numpy as np
from cctbx.array_family import flex

from meteor_cctbx.example import write_amplitudes_mtz
from meteor_cctbx.record import write_bytes
from meteor_cctbx.reflections import load_amplitudes
from meteor_cctbx.synthetic import small_example, structure_as_pdb

WORK = Path(__file__).resolve().parent / "_work" / "batch"
DATA_DIR = Path("/work/shared/data/8a6g")


def write_real_series(out: Path, data_dir: Path, n: int, d_min: float
                      ) -> tuple[list[Path], Path, Path]:
    """Native F_off and ``n`` noisy copies of F_on at ``d_min``; returns derivatives, native,
    model."""
    mtz = data_dir / "scaled-test-data.mtz"
    native = load_amplitudes(mtz, "F_off,SIGF_off", "Native").resolution_filter(d_min=d_min)
    light = load_amplitudes(mtz, "F_on,SIGF_on", "Derivative").resolution_filter(d_min=d_min)
    write_amplitudes_mtz(out / "native.mtz", native)
    derivatives = []
    for i in range(n):
        rng = np.random.default_rng(i)
        sigmas = light.sigmas().as_numpy_array()
        noise = 0.5 * sigmas * rng.normal(size=sigmas.size)
        data = np.abs(light.data().as_numpy_array() + noise)
        noisy = light.customized_copy(data=flex.double(data),
                                      sigmas=flex.double(sigmas * np.sqrt(1.25)))
        path = out / "derivatives" / f"light_{i + 1:02d}.mtz"
        write_amplitudes_mtz(path, noisy)
        derivatives.append(path)
    model = out / "model.pdb"
    shutil.copy(data_dir / "8a6g-chromophore-removed.pdb", model)
    return derivatives, out / "native.mtz", model


def write_synthetic_series(out: Path, n: int, d_min: float) -> tuple[list[Path], Path, Path]:
    derivatives = []
    for i, occupancy in enumerate(np.linspace(0.2, 1.0, n)):
        pair = small_example(d_min=d_min, ligand_occupancy=float(occupancy), seed=0)
        path = out / "derivatives" / f"occupancy_{i + 1:02d}.mtz"
        write_amplitudes_mtz(path, pair.derivative)
        derivatives.append(path)
    write_amplitudes_mtz(out / "native.mtz", pair.native)
    write_bytes(out / "model.pdb", structure_as_pdb(pair.phasing_model).encode())
    return derivatives, out / "native.mtz", out / "model.pdb"


def console(program: str) -> list[str]:
    return [sys.executable, "-m", f"meteor_cctbx.command_line.{program}"]


def timed(command: Sequence[str], cwd: Path, log: Path) -> float:
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(list(command), cwd=cwd, stdout=handle,
                              stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {code}): see {log}")
    return seconds


def one_by_one_processes(program: str, derivatives, native, model, out: Path) -> float:
    total = 0.0
    for path in derivatives:
        total += timed(console(program) + [str(path), str(native), str(model)],
                       out / path.stem, out / f"{path.stem}.log")
    return total


def one_by_one_in_process(program: str, derivatives, native, model, out: Path) -> float:
    from meteor_cctbx.batch import PROGRAMS
    from meteor_cctbx.command_line import run_as_command

    program_class = PROGRAMS[program].program_class()
    start = time.perf_counter()
    for path in derivatives:
        (out / path.stem).mkdir(parents=True)
        os.chdir(out / path.stem)
        with contextlib.redirect_stdout(io.StringIO()):
            if run_as_command(program_class, [str(path), str(native), str(model)]) != 0:
                raise SystemExit(f"{program} failed on {path}")
    os.chdir(WORK)
    return time.perf_counter() - start


def batch_run(program: str, derivatives, native, model, out: Path, workers: int) -> float:
    return timed(console("batch") + [str(model), f"native.file_name={native}",
                                     f"batch.program={program}", f"dask.n_workers={workers}",
                                     f"output.directory={out / 'meteor_batch'}"]
                 + [f"derivative.file_name={p}" for p in derivatives], out, out / "batch.log")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="derivatives (>= 8 for the README)")
    parser.add_argument("--d-min", type=float, default=2.5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--program", default="diffmap", choices=["diffmap", "phaseboost"])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    inputs = WORK / "inputs"
    (inputs / "derivatives").mkdir(parents=True)
    real = (args.data_dir / "scaled-test-data.mtz").exists()
    derivatives, native, model = (
        write_real_series(inputs, args.data_dir, args.n, args.d_min) if real
        else write_synthetic_series(inputs, args.n, args.d_min))
    kind = f"8a6g F_on x {args.n} noise draws vs F_off" if real else "synthetic occupancy series"
    print(f"{len(derivatives)} derivatives ({kind}), d_min {args.d_min} A, "
          f"meteor.{args.program}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    prefix = f"meteor_{args.program}.mtz"
    times = {"one by one, processes": one_by_one_processes(
        args.program, derivatives, native, model, WORK / "processes")}
    times["one by one, one process"] = one_by_one_in_process(
        args.program, derivatives, native, model, WORK / "in_process")
    for workers in args.workers:
        out = WORK / f"batch_{workers}"
        times[f"meteor.batch, {workers} worker{'s' * (workers > 1)}"] = batch_run(
            args.program, derivatives, native, model, out, workers)
        for path in derivatives:
            single = (WORK / "processes" / path.stem / prefix).read_bytes()
            if (out / "meteor_batch" / path.stem / prefix).read_bytes() != single:
                raise SystemExit(f"batch MTZ of {path.stem} differs from the single run")
    reference = times[f"meteor.batch, {args.workers[0]} worker{'s' * (args.workers[0] > 1)}"]
    print(f"\n| run | seconds | datasets / min | time / batch with {args.workers[0]} worker |")
    print("|---|---|---|---|")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.1f} | {60 * len(derivatives) / seconds:.1f} | "
              f"{seconds / reference:.2f} |")
    print(f"\nload after: {os.getloadavg()[0]:.1f}; every batch MTZ byte-identical to its "
          f"single run")
    summary = {"n": len(derivatives), "inputs": kind, "d_min": args.d_min,
               "program": args.program, "seconds": times, "cores": os.cpu_count()}
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
