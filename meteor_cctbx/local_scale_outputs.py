"""meteor.local_scale's outputs besides the maps: their names, the ChimeraX script, the PNG
plot and the JSON run record."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from libtbx.utils import Sorry

from meteor_cctbx import local_scale, solvent_fraction
from meteor_cctbx.record import atomic_path, params_as_dict, run_context, software_versions

#: ChimeraX colours of the scale, 0 to 1 (viridis stops).
SCALE_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def output_paths(params, from_coefficients: bool) -> dict[str, Path]:
    """{role: path} of every file a run writes (output.prefix; the modified map only with
    modify.mode or solvent.exclude, the input map only for MTZ input)."""
    prefix = params.output.prefix
    if not prefix:
        raise Sorry("output.prefix is empty: give a name for the output files.")
    paths = {"scale": Path(f"{prefix}_scale.mrc"),
             "confidence": Path(f"{prefix}_confidence.mrc")}
    if params.modify.mode != "none" or params.solvent.exclude:
        name = params.modify.mode if params.modify.mode != "none" else "solvent_excluded"
        paths["modified"] = Path(f"{prefix}_{name}.mrc")
    if from_coefficients:
        paths["input_map"] = Path(f"{prefix}_input.mrc")
    paths.update(chimerax=Path(f"{prefix}.cxc"), plot=Path(f"{prefix}.png"),
                 record=Path(f"{prefix}.json"))
    return paths


def chimerax_script(outputs: dict[str, Path], input_source: Path) -> str:
    """ChimeraX commands: the input coloured by scale with a key; other maps hidden.

    Works in a session that already holds models: each map is opened with its own model name
    (open's ``name`` option) and every later command picks it by that name
    (``##name="..."``, a model-attribute specifier), never by a model number.  ChimeraX runs a
    .cxc file from its own directory, so paths are relative to it.
    """
    directory = outputs["chimerax"].parent.resolve()

    def quoted(path: Path) -> str:
        return '"' + os.path.relpath(Path(path).resolve(), directory) + '"'

    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", outputs["chimerax"].stem)
    roles = {"input": outputs.get("input_map", input_source), "scale": outputs["scale"],
             "modified": outputs.get("modified")}
    names = {role: f"{stem}_{role}" for role, path in roles.items() if path is not None}
    spec = {role: f'##name="{name}"' for role, name in names.items()}
    stops = np.linspace(0, 1, len(SCALE_COLOURS))
    palette = ":".join(f"{s:g},{c}" for s, c in zip(stops, SCALE_COLOURS))
    key = " ".join(f"{c}:{s:g}" if s in (0, 0.5, 1) else f"{c}:"
                   for s, c in zip(stops, SCALE_COLOURS))
    lines = [f"# meteor.local_scale: {roles['input']} coloured by local scale (0-1)"]
    lines += [f"open {quoted(roles[role])} name {name}" for role, name in names.items()]
    lines += [f"volume {spec['input']} style surface", f"volume {spec['scale']} hide",
              f"color sample {spec['input']} map {spec['scale']} palette {palette} range 0,1",
              f"key {key} pos 0.72,0.06 size 0.25,0.03",
              "2dlabels text \"local scale\" xpos 0.72 ypos 0.1 size 16"]
    if "modified" in names:
        lines.append(f"volume {spec['modified']} hide")
    return "\n".join(lines) + "\n"


def write_plot(path: Path, result: local_scale.LocalScaleResult, hedge: float,
               title: str) -> None:
    """Histogram of the low-passed map with the solvent fit and the confidence curve (to the
    power ``hedge``), and the distribution of the scale over confident voxels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    solvent = result.solvent
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.fill_between(solvent.centres, solvent.counts, step="mid", color="0.7", label="map")
    left.plot(solvent.centres, solvent.solvent, color="tab:blue", lw=1.2,
              label=f"solvent fit (mean {solvent.mean:.3g}, sd {solvent.sigma:.3g})")
    left.set_yscale("log")
    left.set_ylim(0.5, 2 * solvent.counts.max())
    cumulative = np.cumsum(solvent.counts) / solvent.counts.sum()
    top = solvent.centres[np.searchsorted(cumulative, 0.999)]
    left.set_xlim(solvent.mean - 6 * solvent.sigma,
                  max(top, solvent.level_at_confidence(0.99) + 2 * solvent.sigma))
    left.set_xlabel("low-passed map value")
    left.set_ylabel("voxels")
    twin = left.twinx()
    twin.plot(solvent.centres, solvent.confidence ** hedge, color="tab:red", lw=1.2,
              label="confidence")
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("confidence (not solvent)", color="tab:red")
    left.legend(loc="upper right", fontsize=7)
    left.set_title("Solvent model and confidence", fontsize=9)
    scale = local_scale.regular_sample(result.scale, local_scale.SOLVENT_SAMPLE)
    confidence = local_scale.regular_sample(result.confidence, local_scale.SOLVENT_SAMPLE)
    right.hist(scale[confidence >= 0.5], bins=50, range=(0, 1), color="tab:green")
    right.set_xlabel("local scale S")
    right.set_ylabel("voxels with confidence >= 0.5"
                     + ("" if scale.size == result.scale.size else " (sampled)"))
    right.set_title(f"Scale (reference level {result.reference.level:.3g})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_record(program_name: str, inputs, geometry, params, result,
               envelope: solvent_fraction.MolecularEnvelope | None,
               outputs: dict[str, Path]) -> dict:
    """The JSON run record: inputs, grid, parameters, detected levels, solvent fraction,
    timings, outputs, versions."""
    mm = inputs.map
    return {
        "program": program_name,
        "inputs": {"map": str(inputs.source), "description": inputs.description,
                   "solvent_mask": str(inputs.mask_source) if inputs.mask_source else None},
        "grid": {"shape": list(mm.map_data().all()),
                 "origin": list(mm.origin_shift_grid_units),
                 "unit_cell_grid": list(mm.unit_cell_grid),
                 "unit_cell": list(mm.unit_cell_crystal_symmetry().unit_cell().parameters()),
                 "voxel_size_A": geometry.pixel_sizes, "periodic": geometry.periodic},
        "parameters": params_as_dict(params),
        "run": run_context([inputs.source, inputs.mask_source]),
        "levels": result.levels,
        "solvent_fraction": ({"value": envelope.solvent_fraction,
                              "resolution_A": envelope.resolution,
                              "definition": solvent_fraction.DEFINITION} if envelope else None),
        "timings_s": result.timings,
        "outputs": {role: str(path) for role, path in outputs.items()},
        "versions": software_versions(),
    }
