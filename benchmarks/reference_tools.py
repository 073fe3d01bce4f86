"""Run the reference implementation (PyPI ``meteor-maps``) for benchmarks.

The reference tool lives in its own virtual environment,
``benchmarks/_work/meteor-venv`` (git-ignored), and is only ever run as a
subprocess through its console scripts ``meteor.diffmap`` and
``meteor.phaseboost``; nothing from meteor-maps is imported into this process.
This module uses the standard library only, so it can be imported from any
interpreter (the cctbx one included).

Library use::

    from reference_tools import ensure_meteor_venv, run_meteor
    result = run_meteor("diffmap", deriv_mtz, native_mtz, model_pdb, out_mtz, [],
                        derivative_labels=("F_on", "SIGF_on"),
                        native_labels=("F_off", "SIGF_off"))

CLI (runs both programs with default settings on the 8a6g test data)::

    python benchmarks/reference_tools.py [--programs diffmap phaseboost]

Notes on meteor-maps' command line (checked against meteor-maps 0.5.1):

* positional arguments are ``derivative_mtz native_mtz`` (order matters); the
  same MTZ may be given twice, the column flags pick the data;
* columns: ``-da/-du`` (derivative amplitude/uncertainty), ``-na/-nu`` (native);
* ``-s`` phasing model (PDB/CIF), ``-o`` output MTZ, ``-m`` metadata JSON;
* it refuses to overwrite existing ``-o``/``-m`` files, so :func:`run_meteor`
  deletes them first;
* the output MTZ holds the final map as ``F`` / ``PHI`` / ``SIGF``
  (see the ``OUTPUT_*_LABEL`` constants).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

BENCHMARKS_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCHMARKS_DIR / "_work"
VENV_DIR = WORK_DIR / "meteor-venv"
METEOR_PACKAGE = "meteor-maps"
PROGRAMS = ("diffmap", "phaseboost")

# Labels of the final map in the MTZ written by meteor.diffmap / meteor.phaseboost.
OUTPUT_AMPLITUDE_LABEL = "F"
OUTPUT_PHASE_LABEL = "PHI"
OUTPUT_UNCERTAINTY_LABEL = "SIGF"
OUTPUT_LABELS = (OUTPUT_AMPLITUDE_LABEL, OUTPUT_PHASE_LABEL, OUTPUT_UNCERTAINTY_LABEL)

DATA_8A6G = Path("/work/shared/data/8a6g")

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _venv_bin(venv_dir: Path = VENV_DIR) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin")


def _scripts_present(bin_dir: Path) -> bool:
    return all((bin_dir / f"meteor.{p}").exists() for p in PROGRAMS)


def ensure_meteor_venv(venv_dir: Path = VENV_DIR, package: str = METEOR_PACKAGE) -> Path | None:
    """Create the reference venv and install meteor-maps there, if not done yet.

    Idempotent: an existing venv with both console scripts is reused as is.
    ``package`` may carry a version pin (e.g. ``"meteor-maps==0.5.1"``), which
    only takes effect on a fresh install.

    Returns the venv's bin directory, or None (after printing why) on failure.
    """
    venv_dir = Path(venv_dir)
    bin_dir = _venv_bin(venv_dir)
    if _scripts_present(bin_dir):
        return bin_dir

    python = shutil.which("python3") or sys.executable
    steps = []
    if not (bin_dir / "python").exists():
        steps.append([python, "-m", "venv", str(venv_dir)])
    steps.append([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", package])

    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    for cmd in steps:
        print(f"[reference_tools] $ {' '.join(cmd)}", flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            print(f"[reference_tools] cannot set up {package}: {exc}", file=sys.stderr)
            return None
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            print(
                f"[reference_tools] cannot set up {package}: command exited with "
                f"{proc.returncode}\n{tail}",
                file=sys.stderr,
            )
            return None

    if not _scripts_present(bin_dir):
        print(
            f"[reference_tools] {package} installed but meteor.diffmap/meteor.phaseboost "
            f"missing from {bin_dir}",
            file=sys.stderr,
        )
        return None
    return bin_dir


def meteor_version(bin_dir: Path | None = None) -> str | None:
    """Installed meteor-maps version in the reference venv (queried by subprocess)."""
    bin_dir = bin_dir or _venv_bin()
    cmd = [
        str(Path(bin_dir) / "python"),
        "-c",
        "import importlib.metadata as m; print(m.version('meteor-maps'))",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return proc.stdout.strip() or None


def mtz_column_labels(mtz_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(label, type) of each column in an MTZ file, read from its header (stdlib only)."""
    data = Path(mtz_path).read_bytes()
    if data[:4] != b"MTZ ":
        raise ValueError(f"{mtz_path}: not an MTZ file")
    # Machine stamp: high nibble of the first byte is 4 for little-endian ints.
    endian = "<" if (data[8] >> 4) == 4 else ">"
    (header_word,) = struct.unpack(endian + "i", data[4:8])
    if header_word < 0:  # MTZ2 large-file variant: 64-bit offset at bytes 12-19
        (header_word,) = struct.unpack(endian + "q", data[12:20])
    offset = (header_word - 1) * 4
    labels = []
    for start in range(offset, len(data), 80):
        record = data[start : start + 80].decode("ascii", errors="replace")
        if record.startswith("END"):
            break
        if record.startswith("COLUMN"):
            fields = record.split()
            labels.append((fields[1], fields[2]))
    return labels


def summarize_metadata(program: str, metadata_json: str | os.PathLike[str]) -> dict[str, Any]:
    """Chosen parameters from a meteor metadata JSON.

    Keys: ``k_parameter`` (None when k-weighting was off), ``tv_weight`` (final
    TV weight), ``initial_negentropy`` / ``final_negentropy`` of the final TV
    step, and for phaseboost ``iterations`` and ``iterative_tv_weights``.
    """
    meta = json.loads(Path(metadata_json).read_text())
    if program == "diffmap":
        kmeta = meta.get("k_parameter_optimization")
        tvmeta = meta["tv_weight_optimization"]
        extra: dict[str, Any] = {}
    else:
        kmeta = meta.get("kparameter_metadata")
        tvmeta = meta["final_tv_pass"]
        iterations = meta.get("iterative_tv_iterations") or []
        extra = {
            "iterations": len(iterations),
            "iterative_tv_weights": [it["tv_weight"] for it in iterations],
            # average phase change of the last iteration, in degrees
            "final_phase_change": iterations[-1]["average_phase_change"] if iterations else None,
        }
    return {
        "k_parameter": kmeta["optimal_parameter_value"] if kmeta else None,
        "tv_weight": tvmeta["optimal_parameter_value"],
        "initial_negentropy": tvmeta["initial_negentropy"],
        "final_negentropy": tvmeta["optimal_negentropy"],
        **extra,
    }


def run_meteor(
    program: str,
    derivative_mtz: str | os.PathLike[str],
    native_mtz: str | os.PathLike[str],
    model_pdb: str | os.PathLike[str],
    out_mtz: str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    derivative_labels: tuple[str, str] = ("F", "SIGF"),
    native_labels: tuple[str, str] = ("F", "SIGF"),
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``meteor.<program>`` from the reference venv and time it.

    ``program`` is ``"diffmap"`` or ``"phaseboost"``. The metadata JSON is
    written next to ``out_mtz`` (same stem, ``.json``) and the full log to
    ``.log``; existing files with those names are removed first. ``env`` adds
    environment variables (e.g. thread limits) for the subprocess.

    Returns a dict with ``seconds`` (wall time of the subprocess),
    ``returncode`` (None on timeout), ``output_mtz`` / ``metadata_json``
    (paths, None when not written), ``log_tail``, plus ``command``,
    ``log_path``, ``output_labels`` (amplitude, phase, uncertainty),
    ``output_columns`` (labels found in the MTZ) and ``summary`` (see
    :func:`summarize_metadata`) when available.
    """
    if program.startswith("meteor."):
        program = program[len("meteor.") :]
    if program not in PROGRAMS:
        raise ValueError(f"program must be one of {PROGRAMS}, got {program!r}")

    out_mtz = Path(out_mtz).resolve()
    metadata_path = out_mtz.with_suffix(".json")
    log_path = out_mtz.with_suffix(".log")
    result: dict[str, Any] = {
        "program": f"meteor.{program}",
        "seconds": None,
        "returncode": None,
        "output_mtz": None,
        "metadata_json": None,
        "log_tail": "",
        "command": None,
        "log_path": str(log_path),
        "output_labels": OUTPUT_LABELS,
        "output_columns": None,
        "summary": None,
    }

    bin_dir = ensure_meteor_venv()
    if bin_dir is None:
        result["log_tail"] = "meteor-maps venv unavailable"
        return result

    out_mtz.parent.mkdir(parents=True, exist_ok=True)
    for stale in (out_mtz, metadata_path):
        stale.unlink(missing_ok=True)  # meteor refuses to overwrite outputs

    cmd = [
        str(bin_dir / f"meteor.{program}"),
        str(Path(derivative_mtz).resolve()),
        str(Path(native_mtz).resolve()),
        "-s", str(Path(model_pdb).resolve()),
        "-da", derivative_labels[0],
        "-du", derivative_labels[1],
        "-na", native_labels[0],
        "-nu", native_labels[1],
        "-o", str(out_mtz),
        "-m", str(metadata_path),
        *extra_args,
    ]
    result["command"] = cmd
    run_env = {**os.environ, "NO_COLOR": "1", **(env or {})}

    # The log is streamed to a file so that long runs can be followed live.
    with log_path.open("w") as log_file:
        log_file.write("$ " + " ".join(cmd) + "\n")
        log_file.flush()
        start = time.perf_counter()
        try:
            returncode: int | None = subprocess.run(
                cmd, stdout=log_file, stderr=subprocess.STDOUT,
                timeout=timeout, env=run_env, cwd=out_mtz.parent,
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = None
        result["seconds"] = time.perf_counter() - start
        if returncode is None:
            log_file.write(f"\n[reference_tools] timed out after {timeout} s\n")
    result["returncode"] = returncode

    output = _ANSI_ESCAPE.sub("", log_path.read_text(errors="replace"))
    result["log_tail"] = "\n".join(output.splitlines()[-30:])

    if out_mtz.exists():
        result["output_mtz"] = str(out_mtz)
        try:
            result["output_columns"] = [label for label, _ in mtz_column_labels(out_mtz)]
        except (OSError, ValueError, IndexError, struct.error):
            pass
    if metadata_path.exists():
        result["metadata_json"] = str(metadata_path)
        try:
            result["summary"] = summarize_metadata(program, metadata_path)
        except (KeyError, ValueError, TypeError):
            pass
    return result


def _format_command(cmd: Sequence[str]) -> str:
    return " ".join(f"'{c}'" if " " in c else c for c in cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run meteor.diffmap and meteor.phaseboost with default settings on 8a6g."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_8A6G)
    parser.add_argument("--out-dir", type=Path, default=WORK_DIR / "reference_8a6g")
    parser.add_argument("--programs", nargs="+", choices=PROGRAMS, default=list(PROGRAMS))
    parser.add_argument("--timeout", type=float, default=None, help="per-run limit in seconds")
    args = parser.parse_args(argv)

    bin_dir = ensure_meteor_venv()
    if bin_dir is None:
        return 1
    print(f"meteor-maps {meteor_version(bin_dir)} in {bin_dir}", flush=True)

    mtz = args.data_dir / "scaled-test-data.mtz"
    model = args.data_dir / "8a6g-chromophore-removed.pdb"
    results = []
    for program in args.programs:
        out_mtz = args.out_dir / f"meteor_{program}.mtz"
        print(f"\n== meteor.{program} ==", flush=True)
        res = run_meteor(
            program, mtz, mtz, model, out_mtz, [],
            derivative_labels=("F_on", "SIGF_on"),
            native_labels=("F_off", "SIGF_off"),
            timeout=args.timeout,
        )
        results.append(res)
        print("$ " + _format_command(res["command"] or []))
        print(f"returncode {res['returncode']}, wall time {res['seconds']:.1f} s")
        print(f"output {res['output_mtz']} columns {res['output_columns']}")
        if res["summary"]:
            s = res["summary"]
            print(f"k = {s['k_parameter']}, TV weight = {s['tv_weight']:.4g}, "
                  f"negentropy {s['initial_negentropy']:.4g} -> {s['final_negentropy']:.4g}")
            if "iterations" in s:
                print(f"iterations {s['iterations']}, "
                      f"final phase change {s['final_phase_change']:.3g} deg")
        if res["returncode"] != 0:
            print(res["log_tail"])
        sys.stdout.flush()

    # summary.json maps "meteor.<program>" to its latest result (merged across runs).
    summary_path = args.out_dir / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.exists():
        try:
            previous = json.loads(summary_path.read_text())
            summary = previous if isinstance(previous, dict) else {}
        except ValueError:
            pass
    summary["meteor_maps_version"] = meteor_version(bin_dir)
    summary.update({r["program"]: r for r in results})
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"\nsummary written to {summary_path}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
