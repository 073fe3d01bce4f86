"""meteor.local_scale as a ProgramTemplate: local map scale (occupancy proxy), solvent
confidence and confidence-weighted modification of partial scales."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from libtbx import group_args
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry, null_out

from meteor_cctbx import local_scale, solvent_fraction
from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.file_checks import check_map_file
from meteor_cctbx.phil import master_phil_str, refuse_unused_template_output
from meteor_cctbx.record import (atomic_path, check_outputs_writable, output_set,
                                 params_as_dict, run_context, software_versions, write_bytes,
                                 write_json, write_map_manager)
from meteor_cctbx.resources import check_cell_map_memory, check_memory

#: ChimeraX colours of the scale, 0 to 1 (viridis stops).
SCALE_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


@dataclass
class Inputs:
    """The map to analyse (a map_manager with its origin shifted to zero), where it came
    from, and the optional solvent-definition mask on the same grid."""

    map: object
    source: Path
    description: str
    from_coefficients: bool
    mask: object | None
    mask_source: Path | None
    resolution: float | None = None  # A: d_min of MTZ input, None for a map file


class Program(ProgramTemplate):
    description = """
meteor.local_scale: local scale of a map (0-1, a proxy for occupancy), the confidence that
each voxel is not solvent, and optionally a map in which confident partial scales are
amplified, attenuated or contrast-enhanced while solvent is left alone (or flattened).

The scale is the maximum of the map over a sphere (scale.kernel_radius) divided by a
full-scale reference: the highest quantile scale.tau of the map over tiles of the grid.
The confidence comes from a Gaussian fitted to the solvent peak of the low-passed map's
histogram, optionally guided by a solvent-definition mask (either polarity).

Inputs: a CCP4/MRC map of any box shape, and optionally a solvent-definition mask on the same
grid; or MTZ map coefficients (input.labels=FWT,PHWT when the file holds several), treated as
a periodic unit cell.

Outputs (prefix output.prefix, default meteor_local_scale): <prefix>_scale.mrc,
<prefix>_confidence.mrc, <prefix>_<mode>.mrc when modified (modify.mode, solvent.exclude),
<prefix>_input.mrc for MTZ input, <prefix>.cxc (ChimeraX: the input coloured by scale),
<prefix>.png (histogram, solvent fit, confidence), <prefix>.json (run record).

Usage:
  meteor.local_scale map.mrc
  meteor.local_scale map.mrc solvent_mask.mrc modify.mode=amplify modify.power=3
  meteor.local_scale refine.mtz input.labels=FWT,PHWT scale.source=lowpass
"""
    program_name = local_scale.PROGRAM_NAME
    datatypes = ["real_map", "miller_array", "phil"]
    master_phil_str = master_phil_str("local_scale")
    papers = PROGRAM_PAPERS["local_scale"]
    citations = citation_phil("local_scale")

    # ------------------------------------------------------------------------------------------
    def validate(self):
        refuse_unused_template_output(self.params, self.program_name)
        self.inputs = self.read_inputs()
        self.geometry = local_scale.GridGeometry.from_map_manager(self.inputs.map)
        local_scale.check_settings(self.params, self.geometry)
        check_memory(local_scale.peak_memory(self.inputs.map.map_data().all(), self.params,
                                             self.geometry),
                     f"The local scale of {self.inputs.source} with scale.kernel_radius="
                     f"{self.params.scale.kernel_radius or 'default'}",
                     "use a smaller scale.kernel_radius (a few A) or a smaller map box")
        self.outputs = self.output_paths()
        check_outputs_writable(list(self.outputs.values()), self.params.output.overwrite)

    def read_inputs(self) -> Inputs:
        """The map (from a map file or MTZ map coefficients) and the optional mask."""
        maps = self.data_manager.get_real_map_names()
        reflection_files = self.data_manager.get_miller_array_names()
        usage = ("give one map (and optionally a solvent-definition mask) or one MTZ file: "
                 "meteor.local_scale map.mrc [solvent_mask.mrc]")
        if len(reflection_files) > 1 or len(maps) > 2 or (reflection_files and len(maps) > 1):
            raise Sorry(f"Too many input files ({', '.join(reflection_files + maps)}): {usage}.")
        if reflection_files:
            source = Path(reflection_files[0])
            mm, description, resolution = self.map_from_coefficients(source)
            mask_names = maps
        elif maps:
            for k, name in enumerate(maps):
                check_map_file(name, allow_constant=k > 0)  # the mask may be constant
            source = Path(maps[0])
            mm = self.data_manager.get_real_map(maps[0])
            mm.shift_origin()
            description = f"map {source}"
            resolution = None
            mask_names = maps[1:]
        else:
            raise Sorry(f"No input map: {usage}.")
        mm.set_log(null_out())
        mask = None
        mask_source = None
        if mask_names:
            mask_source = Path(mask_names[0])
            mask = self.data_manager.get_real_map(mask_names[0])
            mask.shift_origin()
            self.check_same_grid(mm, source, mask, mask_source)
        return Inputs(mm, source, description, bool(reflection_files), mask, mask_source,
                      resolution)

    def map_from_coefficients(self, source: Path):
        """map_manager of the unit cell computed from the file's map coefficients, its
        description and d_min (A)."""
        from meteor_cctbx.grid import CellGrid
        from meteor_cctbx.reflections import (describe_arrays, label_string, normalise_labels,
                                              pick_array)

        arrays = self.data_manager.get_miller_arrays(filename=str(source))
        requested = normalise_labels(self.params.input.labels)
        if requested:
            coefficients = pick_array(arrays, requested, str(source), "Map-coefficient")
        else:
            candidates = [a for a in arrays if a.is_complex_array()]
            if len(candidates) != 1:
                found = "no" if not candidates else "several"
                raise Sorry(f"{source} holds {found} map-coefficient (amplitude + phase) "
                            f"arrays ({describe_arrays(arrays)}): choose one with "
                            f"input.labels=F,PHI.")
            coefficients = candidates[0]
        if not coefficients.is_complex_array():
            raise Sorry(f"Labels {label_string(coefficients)} in {source} are not map "
                        f"coefficients (amplitude + phase): give e.g. input.labels=FWT,PHWT.")
        if self.params.input.sampling < 2:
            raise Sorry(f"input.sampling={self.params.input.sampling:g} is below 2: the grid "
                        f"would not hold the map's resolution; use 3 or more.")
        labels = label_string(coefficients)
        if coefficients.anomalous_flag():
            coefficients = coefficients.average_bijvoet_mates()
        coefficients = coefficients.map_to_asu()
        check_cell_map_memory(coefficients.unit_cell(), coefficients.d_min(),
                              self.params.input.sampling, 40,
                              f"A map of the unit cell of {source} at spacing "
                              f"d_min/{self.params.input.sampling:g}",
                              "lower input.sampling (3 is usual)")
        cell_grid = CellGrid.for_set(coefficients, sampling=self.params.input.sampling)
        values = cell_grid.to_map(coefficients.data().as_numpy_array())
        mm = local_scale.unit_cell_map_manager(values, coefficients.crystal_symmetry(),
                                               f"{labels} from {source.name}")
        return mm, (f"map coefficients {labels} of {source} ({coefficients.size()} "
                    f"reflections, d_min {coefficients.d_min():.2f} A)"), coefficients.d_min()

    @staticmethod
    def check_same_grid(mm, source: Path, mask, mask_source: Path) -> None:
        """Sorry unless the mask covers the same grid points as the map."""
        map_grid = (mm.map_data().all(), mm.origin_shift_grid_units, mm.unit_cell_grid)
        mask_grid = (mask.map_data().all(), mask.origin_shift_grid_units, mask.unit_cell_grid)
        if map_grid != mask_grid:
            raise Sorry(f"Solvent-definition mask {mask_source} has a grid of "
                        f"{tuple(mask_grid[0])} points at origin {tuple(mask_grid[1])} but "
                        f"the map {source} has {tuple(map_grid[0])} at {tuple(map_grid[1])}: "
                        f"resample or box the mask onto the map's grid.")

    def output_paths(self) -> dict[str, Path]:
        """{role: path} of every file this run writes."""
        prefix = self.params.output.prefix
        if not prefix:
            raise Sorry("output.prefix is empty: give a name for the output files.")
        paths = {"scale": Path(f"{prefix}_scale.mrc"),
                 "confidence": Path(f"{prefix}_confidence.mrc")}
        if self.params.modify.mode != "none" or self.params.solvent.exclude:
            name = (self.params.modify.mode if self.params.modify.mode != "none"
                    else "solvent_excluded")
            paths["modified"] = Path(f"{prefix}_{name}.mrc")
        if self.inputs.from_coefficients:
            paths["input_map"] = Path(f"{prefix}_input.mrc")
        paths.update(chimerax=Path(f"{prefix}.cxc"), plot=Path(f"{prefix}.png"),
                     record=Path(f"{prefix}.json"))
        return paths

    # ------------------------------------------------------------------------------------------
    def run(self):
        started = time.perf_counter()
        inputs = self.inputs
        values = local_scale.map_manager_values(inputs.map)
        print(f"Input: {inputs.description}", file=self.logger)
        print(f"  grid {values.shape}, origin {inputs.map.origin_shift_grid_units}, voxel "
              f"{np.round(self.geometry.pixel_sizes, 3).tolist()} A, "
              f"{'periodic unit cell' if self.geometry.periodic else 'box'}",
              file=self.logger)
        mask_values = None
        if inputs.mask is not None:
            mask_values = local_scale.map_manager_values(inputs.mask)
            print(f"Solvent-definition mask: {inputs.mask_source}", file=self.logger)
        print("Local scale:", file=self.logger)
        self.result = local_scale.estimate_local_scale(
            values, self.geometry, self.params, solvent_mask=mask_values,
            log=lambda line: print(line, file=self.logger))
        self.envelope = self.molecular_envelope()
        with output_set():
            self.write_outputs(values)
            self.result.timings["total"] = time.perf_counter() - started
            write_json(self.outputs["record"], self.record())
        self.report()

    def molecular_envelope(self) -> solvent_fraction.MolecularEnvelope | None:
        """The solvent fraction by the definition meteor.sharpen shares (at the MTZ input's
        resolution, else 3 voxels); None, with a note, where the map shows no envelope."""
        clock = time.perf_counter()
        resolution = solvent_fraction.envelope_resolution(self.geometry.pixel_sizes,
                                                          self.inputs.resolution)
        try:
            envelope = solvent_fraction.molecular_envelope(
                self.inputs.map.map_data(), self.inputs.map.crystal_symmetry(), resolution)
        except Sorry:
            envelope = None
        self.result.timings["solvent_fraction"] = time.perf_counter() - clock
        print("  " + (envelope.describe() if envelope else "solvent fraction: no molecular "
                      "envelope found in the map"), file=self.logger)
        return envelope

    def write_outputs(self, values: np.ndarray) -> None:
        """Every output except the JSON record (written with it as one set, see
        record.output_set)."""
        clock = time.perf_counter()
        result = self.result
        maps = {"scale": (result.scale, "meteor.local_scale: local scale 0-1"),
                "confidence": (result.confidence, "meteor.local_scale: non-solvent confidence"),
                "modified": (result.modified, f"meteor.local_scale: modify.mode="
                             f"{self.params.modify.mode} power={self.params.modify.power:g}"),
                "input_map": (values, "meteor.local_scale: map from coefficients")}
        for role, (data, label) in maps.items():
            if role in self.outputs:
                mm = local_scale.map_manager_like(self.inputs.map, data, label)
                write_map_manager(self.outputs[role], mm)
        write_bytes(self.outputs["chimerax"], self.chimerax_script().encode())
        self.write_plot()
        result.timings["writing_outputs"] = time.perf_counter() - clock

    def chimerax_script(self) -> str:
        """ChimeraX commands: the input coloured by scale with a key; other maps hidden.

        Works in a session that already holds models: each map is opened with its own model
        name (open's ``name`` option) and every later command picks it by that name
        (``##name="..."``, a model-attribute specifier), never by a model number.  ChimeraX
        runs a .cxc file from its own directory, so paths are relative to it.
        """
        directory = self.outputs["chimerax"].parent.resolve()

        def quoted(path: Path) -> str:
            return '"' + os.path.relpath(Path(path).resolve(), directory) + '"'

        stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.outputs["chimerax"].stem)
        roles = {"input": self.outputs.get("input_map", self.inputs.source),
                 "scale": self.outputs["scale"], "modified": self.outputs.get("modified")}
        names = {role: f"{stem}_{role}" for role, path in roles.items() if path is not None}
        spec = {role: f'##name="{name}"' for role, name in names.items()}
        stops = np.linspace(0, 1, len(SCALE_COLOURS))
        palette = ":".join(f"{s:g},{c}" for s, c in zip(stops, SCALE_COLOURS))
        key = " ".join(f"{c}:{s:g}" if s in (0, 0.5, 1) else f"{c}:"
                       for s, c in zip(stops, SCALE_COLOURS))
        lines = [f"# meteor.local_scale: {roles['input']} coloured by local scale (0-1)"]
        lines += [f"open {quoted(roles[role])} name {name}"
                  for role, name in names.items()]
        lines += [f"volume {spec['input']} style surface",
                  f"volume {spec['scale']} hide",
                  f"color sample {spec['input']} map {spec['scale']} palette {palette} "
                  f"range 0,1",
                  f"key {key} pos 0.72,0.06 size 0.25,0.03",
                  "2dlabels text \"local scale\" xpos 0.72 ypos 0.1 size 16"]
        if "modified" in names:
            lines.append(f"volume {spec['modified']} hide")
        return "\n".join(lines) + "\n"

    def write_plot(self) -> None:
        """Histogram of the low-passed map with the solvent fit and confidence curve, and the
        distribution of the scale over confident voxels."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        solvent = self.result.solvent
        hedge = self.params.solvent.hedge_confidence
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        left.fill_between(solvent.centres, solvent.counts, step="mid", color="0.7",
                          label="map")
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
        scale = local_scale.regular_sample(self.result.scale, local_scale.SOLVENT_SAMPLE)
        confidence = local_scale.regular_sample(self.result.confidence,
                                                local_scale.SOLVENT_SAMPLE)
        right.hist(scale[confidence >= 0.5], bins=50, range=(0, 1), color="tab:green")
        right.set_xlabel("local scale S")
        right.set_ylabel("voxels with confidence >= 0.5"
                         + ("" if scale.size == self.result.scale.size else " (sampled)"))
        right.set_title(f"Scale (reference level {self.result.reference.level:.3g})",
                        fontsize=9)
        fig.suptitle(f"meteor.local_scale: {self.inputs.source.name}", fontsize=10)
        fig.tight_layout()
        with atomic_path(self.outputs["plot"]) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)

    def record(self) -> dict:
        """The JSON run record: inputs, grid, parameters, detected levels, timings, versions."""
        mm = self.inputs.map
        return {
            "program": self.program_name,
            "inputs": {"map": str(self.inputs.source), "description": self.inputs.description,
                       "solvent_mask": (str(self.inputs.mask_source)
                                        if self.inputs.mask_source else None)},
            "grid": {"shape": list(mm.map_data().all()),
                     "origin": list(mm.origin_shift_grid_units),
                     "unit_cell_grid": list(mm.unit_cell_grid),
                     "unit_cell": list(mm.unit_cell_crystal_symmetry().unit_cell().parameters()),
                     "voxel_size_A": self.geometry.pixel_sizes,
                     "periodic": self.geometry.periodic},
            "parameters": params_as_dict(self.params),
            "run": run_context([self.inputs.source, self.inputs.mask_source]),
            "levels": self.result.levels,
            "solvent_fraction": ({"value": self.envelope.solvent_fraction,
                                  "resolution_A": self.envelope.resolution,
                                  "definition": solvent_fraction.DEFINITION}
                                 if self.envelope else None),
            "timings_s": self.result.timings,
            "outputs": {role: str(path) for role, path in self.outputs.items()},
            "versions": software_versions(),
        }

    def report(self) -> None:
        levels = self.result.levels
        print(f"Reference (full-scale) level {levels['reference_level']:.4g}; solvent mean "
              f"{levels['solvent_mean']:.4g}, sd {levels['solvent_sigma']:.4g}; confidence "
              f"0.5 at {levels['confidence_0.5_level']:.4g}", file=self.logger)
        if levels["confident_fraction"] < 0.001:
            print("Warning: almost no voxel lies above the solvent distribution, so nothing "
                  "is modified; check the map's sign and that it is not solvent-flattened.",
                  file=self.logger)
        print("Outputs:", file=self.logger)
        for path in self.outputs.values():
            print(f"  {path}", file=self.logger)
        print(f"Total time {self.result.timings['total']:.1f} s", file=self.logger)

    def get_results(self):
        return group_args(outputs={role: str(path) for role, path in self.outputs.items()},
                          levels=self.result.levels, timings=dict(self.result.timings))
