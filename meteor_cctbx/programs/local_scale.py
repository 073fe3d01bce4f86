"""meteor.local_scale as a ProgramTemplate: local map scale (occupancy proxy), solvent
confidence and confidence-weighted modification of partial scales.  Inputs are read by
local_scale_inputs, the science is local_scale, the outputs other than maps are made by
local_scale_outputs; this class orders the steps and writes the set."""
from __future__ import annotations

import time

import numpy as np
from libtbx import group_args
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from meteor_cctbx import local_scale, solvent_fraction
from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.local_scale_inputs import read_inputs
from meteor_cctbx.local_scale_outputs import (chimerax_script, output_paths, run_record,
                                              write_plot)
from meteor_cctbx.phil import master_phil_str, refuse_unused_template_output
from meteor_cctbx.record import (check_outputs_writable, output_set, write_bytes, write_json,
                                 write_map_manager)
from meteor_cctbx.resources import check_memory


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

    def validate(self):
        refuse_unused_template_output(self.params, self.program_name)
        self.inputs = read_inputs(self.data_manager, self.params)
        self.geometry = local_scale.GridGeometry.from_map_manager(self.inputs.map)
        local_scale.check_settings(self.params, self.geometry)
        check_memory(local_scale.peak_memory(self.inputs.map.map_data().all(), self.params,
                                             self.geometry),
                     f"The local scale of {self.inputs.source} with scale.kernel_radius="
                     f"{self.params.scale.kernel_radius or 'default'}",
                     "use a smaller scale.kernel_radius (a few A) or a smaller map box")
        self.outputs = output_paths(self.params, self.inputs.from_coefficients)
        check_outputs_writable(list(self.outputs.values()), self.params.output.overwrite)

    def run(self):
        started = time.perf_counter()
        inputs, log = self.inputs, self.logger
        values = local_scale.map_manager_values(inputs.map)
        print(f"Input: {inputs.description}", file=log)
        print(f"  grid {values.shape}, origin {inputs.map.origin_shift_grid_units}, voxel "
              f"{np.round(self.geometry.pixel_sizes, 3).tolist()} A, "
              f"{'periodic unit cell' if self.geometry.periodic else 'box'}", file=log)
        mask_values = None
        if inputs.mask is not None:
            mask_values = local_scale.map_manager_values(inputs.mask)
            print(f"Solvent-definition mask: {inputs.mask_source}", file=log)
        print("Local scale:", file=log)
        self.result = local_scale.estimate_local_scale(
            values, self.geometry, self.params, solvent_mask=mask_values, log=log)
        self.envelope = self.molecular_envelope()
        with output_set():
            self.write_outputs(values)
            self.result.timings["total"] = time.perf_counter() - started
            write_json(self.outputs["record"], run_record(
                self.program_name, inputs, self.geometry, self.params, self.result,
                self.envelope, self.outputs))
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
        """Every output except the JSON record (written with it as one set)."""
        clock = time.perf_counter()
        result, modify = self.result, self.params.modify
        maps = {"scale": (result.scale, "meteor.local_scale: local scale 0-1"),
                "confidence": (result.confidence, "meteor.local_scale: non-solvent confidence"),
                "modified": (result.modified, f"meteor.local_scale: modify.mode={modify.mode} "
                             f"power={modify.power:g}"),
                "input_map": (values, "meteor.local_scale: map from coefficients")}
        for role, (data, label) in maps.items():
            if role in self.outputs:
                write_map_manager(self.outputs[role],
                                  local_scale.map_manager_like(self.inputs.map, data, label))
        write_bytes(self.outputs["chimerax"],
                    chimerax_script(self.outputs, self.inputs.source).encode())
        write_plot(self.outputs["plot"], result, self.params.solvent.hedge_confidence,
                   f"meteor.local_scale: {self.inputs.source.name}")
        result.timings["writing_outputs"] = time.perf_counter() - clock

    def report(self) -> None:
        levels, log = self.result.levels, self.logger
        print(f"Reference (full-scale) level {levels['reference_level']:.4g}; solvent mean "
              f"{levels['solvent_mean']:.4g}, sd {levels['solvent_sigma']:.4g}; confidence "
              f"0.5 at {levels['confidence_0.5_level']:.4g}", file=log)
        if levels["confident_fraction"] < 0.001:
            print("Warning: almost no voxel lies above the solvent distribution, so nothing "
                  "is modified; check the map's sign and that it is not solvent-flattened.",
                  file=log)
        print("Outputs:", file=log)
        for path in self.outputs.values():
            print(f"  {path}", file=log)
        print(f"Total time {self.result.timings['total']:.1f} s", file=log)

    def get_results(self):
        return group_args(outputs={role: str(path) for role, path in self.outputs.items()},
                          levels=self.result.levels, timings=dict(self.result.timings))
