"""The batch's summary: summary.csv (one row per dataset), summary.json (the rows and the run
record) and summary.png (the series at a glance), written as one output set.

Rows hold ``dataset``, ``status`` (ok / failed), ``reason`` (the Sorry of a failed dataset),
``derivative`` (file), ``seconds``, then the program's columns (batch.PROGRAMS): resolution
``d_min`` (A), ``riso`` / ``cciso`` (all reflections, after scaling), the chosen
``k_parameter`` and ``tv_weight``, ``negentropy`` of the final map, ``peak_max_sigma`` /
``peak_min_sigma`` (the final map's extreme values over its rms), and per program more
(phaseboost: ``iterations``; extrapolate: ``occupancy``).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from meteor_cctbx.record import Panel, output_set, write_bytes, write_json, write_panels_png

SUMMARY_FILES = ("summary.csv", "summary.json", "summary.png")

# (column, axis label) of the panels of summary.png, where the rows have the column
PLOTTED = (("peak_max_sigma", "highest peak (map rms)"), ("riso", "Riso"),
           ("negentropy", "negentropy of the final map"), ("occupancy", "occupancy"))


def columns(rows: Sequence[dict]) -> list[str]:
    """Every column of the rows, in order of first appearance (the base columns first)."""
    return list(dict.fromkeys(name for row in rows for name in row))


def csv_text(rows: Sequence[dict]) -> str:
    names = columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buffer.getvalue()


def row_values(rows: Sequence[dict], column: str) -> np.ndarray:
    """A numeric column over the rows: NaN where a dataset failed or lacks the value."""
    values = [row.get(column) if row.get("status") == "ok" else None for row in rows]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def summary_panels(rows: Sequence[dict]) -> list[Panel]:
    """One panel per plotted column present: its value against the dataset number (1-based,
    in the order of summary.csv); failed datasets are gaps."""
    numbers = np.arange(1, len(rows) + 1)
    panels = []
    for column, label in PLOTTED:
        values = row_values(rows, column)
        if np.isfinite(values).any():
            keep = np.isfinite(values)
            panels.append(Panel(label, "dataset (row of summary.csv)", column,
                                list(numbers[keep]), list(values[keep])))
    return panels


def previous_record(directory: Path) -> dict | None:
    """summary.json of an earlier batch in ``directory``: None when absent; ValueError when
    it is not a meteor.batch summary."""
    path = directory / "summary.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(record, dict) or record.get("program") != "meteor.batch":
        raise ValueError("not written by meteor.batch")
    return record


def write_summary(directory: Path, rows: Sequence[dict], record: dict) -> dict[str, Path]:
    """Write summary.csv, summary.json (``record`` plus the rows) and summary.png together."""
    paths = {name.split(".")[1]: directory / name for name in SUMMARY_FILES}
    ok = sum(row["status"] == "ok" for row in rows)
    with output_set():
        write_bytes(paths["csv"], csv_text(rows).encode())
        write_panels_png(paths["png"], summary_panels(rows),
                         title=f"meteor.batch: {ok} of {len(rows)} datasets ok")
        write_json(paths["json"], {**record, "datasets": list(rows),
                                   "n_ok": ok, "n_failed": len(rows) - ok,
                                   "outputs": {k: str(v) for k, v in paths.items()}})
    return paths
